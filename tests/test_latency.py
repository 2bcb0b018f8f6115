"""The latency table: one row per (model, batch size), sizes that tell masked from compacted models."""

import copy

import pandas as pd
import pytest
import torch

from pruning_utils.compact import compact
from pruning_utils.counting import count_multiply_adds_masked, count_remaining_parameters
from pruning_utils import cpu_probe, latency
from pruning_utils.latency import LATENCY_COLUMNS, cpu_model, describe_cpu, latency_table, speed_verdict
from pruning_utils.masks import prune_model
from pruning_utils.tables import speed_table
from pruning_utils.model import CONV_NAMES, conv_layers, count_multiply_adds


def test_latency_table_columns_and_sizes(trained_tiny):
    masked = prune_model(copy.deepcopy(trained_tiny), dict.fromkeys(CONV_NAMES, 0.5), "filter")
    small = compact(masked)
    models = {"dense": trained_tiny, "filter masked": masked, "filter compact": small}
    threads = torch.get_num_threads()
    table = latency_table(models, batch_sizes=(1, 8), repeats=2, warmup=1, threads=1)
    assert list(table.columns) == LATENCY_COLUMNS
    assert table[["model", "batch_size"]].values.tolist() == [[m, b] for m in models for b in (1, 8)]
    assert table[["median_ms", "images_per_s", "parameters", "multiply_adds", "file_size_bytes"]].gt(0).all().all()
    assert (table["images_per_s"] * table["median_ms"] / 1000 - table["batch_size"]).abs().max() < 1e-9
    assert ((table["min_ms"] <= table["median_ms"]) & (table["median_ms"] <= table["max_ms"])).all()
    by_model = table.groupby("model").first()
    for name, model in models.items():
        assert by_model.at[name, "parameters"] == count_remaining_parameters(model)["total"]
        assert by_model.at[name, "multiply_adds"] == count_multiply_adds(model)
        assert by_model.at[name, "masked_multiply_adds"] == count_multiply_adds_masked(model)["total"]
    assert by_model.at["filter compact", "parameters"] < by_model.at["filter masked", "parameters"]
    assert by_model.at["filter masked", "parameters"] < by_model.at["dense", "parameters"]
    assert by_model.at["filter compact", "file_size_bytes"] < by_model.at["filter masked", "file_size_bytes"]
    assert by_model.at["filter masked", "multiply_adds"] == by_model.at["dense", "multiply_adds"]
    assert by_model.at["filter masked", "masked_multiply_adds"] < by_model.at["dense", "masked_multiply_adds"]
    assert by_model.at["filter compact", "multiply_adds"] < by_model.at["filter masked", "multiply_adds"]
    assert torch.get_num_threads() == threads  # restored
    assert hasattr(conv_layers(masked)["conv0"], "weight_mask")  # the table works on copies


def test_latency_table_rejects_bad_arguments(trained_tiny):
    with pytest.raises(ValueError, match="batch_sizes .*0"):
        latency_table({"dense": trained_tiny}, batch_sizes=(0,))
    with pytest.raises(ValueError, match="batch_sizes"):
        latency_table({"dense": trained_tiny}, batch_sizes=())
    with pytest.raises(ValueError, match="repeats .*0"):
        latency_table({"dense": trained_tiny}, repeats=0)
    with pytest.raises(ValueError, match="rounds .*0"):
        latency_table({"dense": trained_tiny}, rounds=0)
    with pytest.raises(ValueError, match="warmup .*-1"):
        latency_table({"dense": trained_tiny}, warmup=-1)
    with pytest.raises(ValueError, match="threads .*0"):
        latency_table({"dense": trained_tiny}, threads=0)
    with pytest.raises(ValueError, match="at least one model"):
        latency_table({})


def test_latency_rounds_interleave_every_model_and_batch(trained_tiny):
    """Each round times every (model, batch) once, as ``repeats`` back-to-back passes, in an order
    shuffled per round: a drift of the machine cannot fall on one model alone."""
    calls = []
    models = {}
    for name in ("a", "b"):
        model = copy.deepcopy(trained_tiny)
        model.register_forward_pre_hook(lambda module, args, name=name: calls.append((name, args[0].shape[0])))
        models[name] = model
    rounds, repeats = 6, 2
    table = latency_table(models, batch_sizes=(1, 3), repeats=repeats, warmup=1, rounds=rounds, threads=1)
    configs = [(m, b) for m in models for b in (1, 3)]
    timed = calls[-rounds * len(configs) * repeats:]  # before them: size counting and warmup passes
    orders = []
    for r in range(rounds):
        chunk = timed[r * len(configs) * repeats:(r + 1) * len(configs) * repeats]
        order = chunk[::repeats]
        assert chunk == [c for c in order for _ in range(repeats)]  # one config's passes back to back
        assert sorted(order) == sorted(configs)  # every config once per round
        orders.append(order)
    assert len({tuple(o) for o in orders}) > 1  # shuffled afresh per round
    assert table[["model", "batch_size"]].values.tolist() == [list(c) for c in configs]


def test_speed_verdict_reports_a_difference_only_beyond_the_spread():
    dense = {"median_ms": 10.0, "min_ms": 9.0, "max_ms": 11.0}
    assert speed_verdict(dense, {"median_ms": 5.0, "min_ms": 4.0, "max_ms": 6.0}) == (2.0, "faster")
    assert speed_verdict(dense, {"median_ms": 8.0, "min_ms": 7.0, "max_ms": 9.5})[1] == "within spread"
    assert speed_verdict(dense, {"median_ms": 20.0, "min_ms": 12.0, "max_ms": 25.0})[1] == "slower"


def test_cpu_model_names_the_processor():
    name = cpu_model()
    assert isinstance(name, str) and name.strip() == name and name
    try:
        listed = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
    except OSError:
        listed = []
    if listed:
        assert name.startswith(listed[0] + " (")


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: {family}
model\t\t: {model}
model name\t: AMD EPYC
flags\t\t: fpu sse2 {flags}

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 99
model\t\t: 99
model name\t: Another
flags\t\t: fpu
"""


def test_two_cpus_with_one_marketing_name_are_told_apart(monkeypatch):
    zen3 = describe_cpu(CPUINFO.format(family=25, model=1, flags="fma avx2"))
    zen4 = describe_cpu(CPUINFO.format(family=25, model=17, flags="fma avx2 avx512f avx512_bf16"))
    assert zen3 == "AMD EPYC (AuthenticAMD family 25 model 1; avx2)"  # the first processor's block only
    assert zen4 == "AMD EPYC (AuthenticAMD family 25 model 17; avx2, avx512f, avx512_bf16)"
    assert describe_cpu("model name\t: X\n") == "X (unknown vendor family ? model ?; no avx2/avx512f/avx512_bf16/amx_bf16)"
    # what is keyed by the machine gets different keys: the probe's answers, the latency table
    # what is keyed by the machine (the probes' answers, the latency table: machine_inputs) is keyed apart
    keys = []
    for described in (zen3, zen4):
        monkeypatch.setattr(latency, "cpu_model", lambda described=described: described)
        keys.append((latency.machine_inputs(), cpu_probe.probe_key(0.25, 256), cpu_probe.eval_probe_key(0.25, "fp32", [])))
    assert all(a != b for a, b in zip(*keys)) and keys[1][0]["cpu"] == zen4


def _latency_rows(masked_ms: tuple[float, float, float]) -> pd.DataFrame:
    """A latency table of a dense and a masked model (same multiply-adds) and a compacted one."""
    rows = []
    for model, (median, low, high), macs in [("dense", (10.0, 9.0, 11.0), 100), ("kernel (masked)", masked_ms, 100),
                                             ("filter (compacted)", (4.0, 3.5, 4.5), 20)]:
        for batch in (1, 256):
            rows.append({"model": model, "batch_size": batch, "median_ms": median, "min_ms": low, "max_ms": high,
                         "images_per_s": batch / median, "parameters": 1, "multiply_adds": macs,
                         "masked_multiply_adds": macs // 2, "file_size_bytes": 1000})
    return pd.DataFrame(rows, columns=LATENCY_COLUMNS)


def test_speed_table_gives_each_speed_up_and_whether_it_exceeds_the_rounds_spread():
    table = speed_table(_latency_rows((8.0, 7.0, 9.5)))  # 10 / 8 = 1.25x, spreads 9-11 and 7-9.5 overlap
    assert table.loc[("kernel (masked)", 1)].tolist() == [1.25, "within spread"]
    assert table.loc[("filter (compacted)", 256)].tolist() == [2.5, "faster"]  # 4.5 < 9
    assert "dense" not in table.index.get_level_values("model")
    table = speed_table(_latency_rows((12.0, 11.5, 12.5)))  # slowest round of dense 11 < fastest masked 11.5
    assert table.loc[("kernel (masked)", 256)].tolist() == [0.83, "slower"]
