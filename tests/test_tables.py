"""The notebooks' display tables that their stated findings are checked on, against hand-worked frames."""

import pandas as pd
import pytest

from pruning_utils import tables
from pruning_utils.artifacts import UNRECORDED
from pruning_utils.tables import at_smallest_budget, machines_by_seed, most_sensitive, most_sensitive_across_seeds


def _scan(accuracies: dict[str, list[float]], strategy: str = "filter", seed: int = 0) -> pd.DataFrame:
    rows = [{"strategy": strategy, "seed": seed, "layer": layer, "sparsity": s, "accuracy": a}
            for layer, accs in accuracies.items() for s, a in zip((0.0, 0.5, 0.9), accs)]
    return pd.DataFrame(rows)


def test_most_sensitive_names_the_lowest_layer_at_the_sparsity_and_counts_layers_never_below_the_threshold():
    scan = _scan({"conv0": [0.8, 0.3, 0.2], "conv1": [0.8, 0.6, 0.55], "conv2": [0.8, 0.7, 0.4]})
    table = most_sensitive({"filter": scan}, sparsity=0.5, threshold=0.5)
    assert table.loc["filter"].tolist() == ["conv0", 30.0, 1]  # only conv1 stays >= 0.5 up to 0.9


def test_most_sensitive_across_seeds_has_a_column_per_seed():
    scans = pd.concat([_scan({"conv0": [0.8, 0.3, 0.2], "conv5": [0.8, 0.4, 0.1]}, seed=0),
                       _scan({"conv0": [0.8, 0.5, 0.2], "conv5": [0.8, 0.4, 0.1]}, seed=1),
                       _scan({"conv0": [0.8, 0.2, 0.2], "conv5": [0.8, 0.9, 0.1]}, "kernel", seed=0)])
    table = most_sensitive_across_seeds(scans)
    assert table.index.tolist() == ["filter", "kernel"]
    assert table.loc["filter"].tolist() == ["conv0", "conv5"] and table.at["kernel", 0] == "conv0"


def test_at_smallest_budget_reads_each_allocation_at_its_smallest_budget():
    front = pd.DataFrame({"strategy": ["kernel"] * 4, "allocation": ["uniform", "uniform", "guided", "guided"],
                          "budget": [0.5, 0.1, 0.1, 0.5], "acc_finetuned": [80.0, 20.0, 60.0, 81.0]})
    table = at_smallest_budget(front)
    assert table.loc["kernel", "uniform"] == 20.0 and table.loc["kernel", "guided"] == 60.0


def test_machines_by_seed_names_where_each_seed_computed_each_step():
    rows = [("dense", "dense.pt", 0, ("A",)), ("dense", "dense.pt", 1, ("A",)),
            ("prune_finetune", "finetune_history_kernel.csv", 0, ("A",)),
            ("prune_finetune", "finetune_history_kernel.csv", 1, ("B",)),
            ("narrow_dense", "narrow_dense.csv", 0, ("B", "A", "B")),  # points on two machines
            ("narrow_dense", "narrow_dense.csv", 1, ("A", "B")), ("latency", "latency.csv", 0, ("A",))]
    seconds = pd.DataFrame(rows, columns=["step", "artifact", "seed", "machines"])
    table = machines_by_seed(seconds)
    assert table.loc[("narrow_dense", "narrow_dense.csv")].tolist() == ["A, B", "A, B", True]
    assert table.loc[("prune_finetune", "finetune_history_kernel.csv")].tolist() == ["A", "B", False]
    assert table["one machine"].to_dict() == {("dense", "dense.pt"): True,
                                              ("prune_finetune", "finetune_history_kernel.csv"): False,
                                              ("narrow_dense", "narrow_dense.csv"): True, ("latency", "latency.csv"): True}
    # points whose machine was not recorded may have run anywhere: never one machine, even where every seed says so
    unknown = pd.DataFrame([("narrow_dense", "narrow_dense.csv", seed, ("A", UNRECORDED)) for seed in (0, 1)],
                           columns=["step", "artifact", "seed", "machines"])
    assert not machines_by_seed(unknown)["one machine"].any()


def test_at_equal_size_interpolates_in_log_size_within_each_curve():
    front = pd.DataFrame({"strategy": ["filter"] * 3 + ["kernel"] * 2, "allocation": ["uniform"] * 5,
                          "conv_weights_effective_pct": [1.0, 4.0, 16.0, 10.0, 40.0],
                          "acc_finetuned": [20.0, 40.0, 80.0, 50.0, 70.0]})
    table = tables.at_equal_size(front, [2.0, 8.0, 20.0, 0.5])
    assert table.loc[("filter", "uniform")].tolist()[:2] == pytest.approx([30.0, 60.0])  # halfway in log size
    assert table.loc[("kernel", "uniform"), 20.0] == pytest.approx(60.0)
    assert table.loc[("filter", "uniform")].isna().tolist() == [False, False, True, True]  # outside 1..16: empty
    assert table.loc[("kernel", "uniform")].isna().tolist() == [True, True, False, True]
    assert list(table.index.names) == ["strategy", "allocation"]
