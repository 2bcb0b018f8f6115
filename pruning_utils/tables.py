"""The notebooks' display tables, built from a run's artifacts and rounded for reading."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .across_seeds import format_mean_sd, mean_spread, paired_difference
from .artifacts import UNRECORDED
from .criteria import STRATEGIES
from .latency import speed_verdict
from .original import TABLE1, TABLE2


RESULT_COLUMNS = {
    "params_kept_pct": "% params left",
    "conv_weights_kept_pct": "% conv weights left",
    "multiply_adds_kept_pct": "% multiply-adds left (masked)",
    "acc_pruned": "after pruning",
    "acc_pruned_train_mode": "after pruning (train mode)",
    "acc_recalibrated": "after BN recalibration",
    "acc_finetuned": "after fine-tuning",
}


def dense_summary(metrics: dict) -> pd.DataFrame:
    """The dense model's accuracy (eval and train mode; to 0.1 points, as the seed-to-seed spread of
    notebook 07 supports) and size, for display."""
    rows = {
        "test accuracy, eval mode (%)": f"{100 * metrics['test_accuracy']:.1f}",
        "test accuracy, train mode as the original (%)": f"{100 * metrics['test_accuracy_train_mode']:.1f}",
        "validation accuracy (%)": f"{100 * metrics['val_accuracy']:.1f}",
        "parameters": f"{metrics['parameters']:,}",
        "multiply-adds (M)": f"{metrics['multiply_adds'] / 1e6:.2f}",
    }
    return pd.DataFrame({"dense": rows})


def scan_table(scans: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Accuracy (%) per (strategy, layer) row and sparsity column, rounded to 0.1."""
    frame = pd.concat(scans.values())
    table = frame.pivot_table(index=["strategy", "layer"], columns="sparsity", values="accuracy", sort=False)
    return (100 * table).round(1)


def beside_original_table1(ours: pd.DataFrame) -> pd.DataFrame:
    merged = ours.merge(TABLE1, on="layer", suffixes=(" (ours)", " (original)"))
    return merged[["layer"] + [f"{s} ({who})" for s in STRATEGIES for who in ("ours", "original")]]


def beside_original_table2(results: pd.DataFrame) -> pd.DataFrame:
    """Our Table 2 (test accuracy %, rounded to 0.1) with the original's numbers in extra rows."""
    ours = results.assign(source="ours").round(1)
    theirs = TABLE2.assign(source="original (train mode)")
    table = pd.concat([ours, theirs], ignore_index=True)
    return table.set_index(["strategy", "source"]).sort_index()[list(RESULT_COLUMNS)].rename(columns=RESULT_COLUMNS)


def criteria_summary(criteria: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (min-max over seeds) per strategy and criterion, rounded to 0.1."""
    stats = criteria.groupby(["strategy", "criterion"], sort=False)[["acc_pruned", "acc_recalibrated",
                                                                    "acc_finetuned"]].agg(["mean", "min", "max"])
    return stats.round(1)


def _mean_sd_cells(stats: pd.DataFrame, columns: list[str], decimals: int) -> pd.DataFrame:
    return pd.DataFrame({c: [format_mean_sd(m, s, decimals) for m, s in zip(stats[(c, "mean")], stats[(c, "sd")])]
                         for c in columns}, index=stats.index)


def dense_across_seeds(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per seed and as mean ± sd: the dense model's test (eval and train mode) and validation accuracy (%)."""
    cols = {"test_accuracy": "test, eval mode (%)", "test_accuracy_train_mode": "test, train mode (%)",
            "val_accuracy": "validation (%)"}
    pct = metrics.assign(**{c: 100 * metrics[c] for c in cols})
    rows = pct.set_index("seed")[list(cols)].round(1).astype(str)
    stats = mean_spread(pct.assign(all="mean ± sd"), "all", list(cols))
    table = pd.concat([rows, _mean_sd_cells(stats, list(cols), 1)])
    table.index = [f"seed {i}" if not isinstance(i, str) else i for i in table.index]
    return table.rename(columns=cols)


def table1_across_seeds(table1: pd.DataFrame) -> pd.DataFrame:
    """Per layer and strategy: the sparsity each seed chose ("0.5 / 0.6 / 0.5"), beside the original's."""
    cells = {s: table1.groupby("layer", sort=False)[s].apply(lambda v: " / ".join(f"{x:.1f}" for x in v))
             for s in STRATEGIES}
    ours = pd.DataFrame(cells)
    theirs = TABLE1.set_index("layer")
    return pd.concat({"seeds": ours, "original": theirs[list(STRATEGIES)]}, axis=1).swaplevel(axis=1)[
        [(s, who) for s in STRATEGIES for who in ("seeds", "original")]]


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` for a reader: columns of truth values (``met (mean)``, :data:`PAIRED`) read
    ``yes``/``no`` instead of ``True``/``False``; other columns unchanged. Display only: the prose
    reads the truth values of the frame itself."""
    shown = frame.copy()
    for column in frame.select_dtypes(bool).columns:
        shown[column] = frame[column].map({True: "yes", False: "no"})
    return shown


def drop_from_dense(rows: pd.DataFrame, dense: pd.DataFrame) -> pd.Series:
    """Per row (with a ``seed`` column), its seed's dense test accuracy minus ``acc_finetuned``, in
    points (``dense``: ``seed, test_accuracy`` as a fraction)."""
    return rows["seed"].map(dense.set_index("seed")["test_accuracy"] * 100) - rows["acc_finetuned"]


def table2_across_seeds(results: pd.DataFrame, dense: pd.DataFrame, targets: dict[str, float]) -> pd.DataFrame:
    """Table 2 as mean ± sd over seeds, with the drop from each seed's dense model and the target.

    ``results``: Table 2 rows with a ``seed`` column; ``dense``: ``seed, test_accuracy`` (fraction)."""
    frame = results.assign(drop=drop_from_dense(results, dense))
    columns = ["params_kept_pct", "conv_weights_kept_pct", "acc_pruned", "acc_recalibrated", "acc_finetuned", "drop"]
    stats = mean_spread(frame, "strategy", columns)
    table = _mean_sd_cells(stats, columns, 1)
    table["target drop"] = [f"<= {targets[s]:.1f}" for s in table.index]
    table["met (mean)"] = [bool(stats.at[s, ("drop", "mean")] <= targets[s]) for s in table.index]
    table["seeds"] = stats[("n", "")].astype(int)
    names = {**RESULT_COLUMNS, "drop": "drop from dense (points)"}
    return table.rename(columns=names)


def original_budgets_table(budgets: pd.DataFrame, eval_mode: dict[str, float]) -> pd.DataFrame:
    """At the original's per-layer sparsities: ours (mean ± sd) beside the original's numbers."""
    columns = ["params_kept_pct", "acc_pruned", "acc_finetuned"]
    ours = _mean_sd_cells(mean_spread(budgets, "strategy", columns), columns, 1)
    theirs = TABLE2.set_index("strategy")
    ours["original: % params left"] = theirs["params_kept_pct"].round(1)
    ours["original: after fine-tuning (train mode)"] = theirs["acc_finetuned"]
    ours["original: after fine-tuning (eval mode)"] = [eval_mode[s] for s in ours.index]
    return ours.rename(columns=RESULT_COLUMNS)


PAIRED = "paired t: p < 0.05"  # a difference on the same seeds beyond chance (across_seeds.paired_difference)


def _paired(a: pd.Series, b: pd.Series) -> dict:
    """``a - b`` over the seeds (the index) both have: mean ± sd of the per-seed differences, the paired
    t-test's two-sided p, and whether p < 0.05."""
    both = pd.concat([a, b], axis=1, join="inner").dropna()
    diff = paired_difference(both.iloc[:, 0].tolist(), both.iloc[:, 1].tolist())
    return {"difference (points)": format_mean_sd(diff["mean"], diff["sd"]), "p": round(diff["p"], 3),
            PAIRED: bool(diff["p"] < 0.05)}


def narrow_table(narrow: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Pruned (Table 2) against narrow dense networks at equal conv weights / multiply-adds, mean ± sd
    over the seeds that have narrow networks (Table 2 restricted to the same seeds), and the pruned
    model minus the narrow network judged on the per-seed differences (each seed's narrow network is
    matched to that seed's pruned model)."""
    pruned = mean_spread(results[results["seed"].isin(narrow["seed"].unique())], "strategy", ["acc_finetuned"])
    dense = mean_spread(narrow, ["strategy", "matched"], ["test_acc", "width"])
    rows = []
    for (strategy, matched), r in dense.iterrows():
        p = pruned.loc[strategy]
        low, high = r[("width", "min")], r[("width", "max")]  # seeds' pruned models may match different widths
        width = f"{low:.3f}" if round(low, 3) == round(high, 3) else f"{low:.3f}-{high:.3f}"
        mine = narrow[(narrow["strategy"] == strategy) & (narrow["matched"] == matched)].set_index("seed")["test_acc"]
        rows.append({"strategy": strategy, "matched": matched, "narrow width": width,
                     "narrow dense (%)": format_mean_sd(r[("test_acc", "mean")], r[("test_acc", "sd")]),
                     "pruned, fine-tuned (%)": format_mean_sd(p[("acc_finetuned", "mean")], p[("acc_finetuned", "sd")]),
                     "pruned - narrow (points)": round(p[("acc_finetuned", "mean")] - r[("test_acc", "mean")], 1),
                     **_paired(results[results["strategy"] == strategy].set_index("seed")["acc_finetuned"], mine),
                     "seeds": int(r[("n", "")])})
    return pd.DataFrame(rows).set_index(["strategy", "matched"])


def methods_across_seeds(methods: pd.DataFrame, dense: pd.DataFrame, targets: dict[str, float],
                         reference: str = "one-cycle (Table 2)") -> pd.DataFrame:
    """The ways to recover (``recovery_methods`` rows with a ``seed`` column) as mean ± sd over seeds,
    per strategy and method: accuracy, drop from each seed's dense model against the target, and the
    difference to ``reference`` judged on the per-seed differences (``dense``: ``seed, test_accuracy``)."""
    frame = methods.assign(drop=drop_from_dense(methods, dense))
    stats = mean_spread(frame, ["strategy", "method"], ["acc_finetuned", "drop"])
    by_seed = methods.pivot_table(index=["strategy", "seed"], columns="method", values="acc_finetuned")
    rows = []
    for (strategy, method), r in stats.iterrows():
        ref = stats.loc[(strategy, reference)]
        acc, sd = r[("acc_finetuned", "mean")], r[("acc_finetuned", "sd")]
        paired = (_paired(by_seed.loc[strategy, method], by_seed.loc[strategy, reference]) if method != reference
                  else {"difference (points)": "", "p": float("nan"), PAIRED: False})
        rows.append({"strategy": strategy, "method": method, "after recovery (%)": format_mean_sd(acc, sd),
                     "drop from dense (points)": format_mean_sd(r[("drop", "mean")], r[("drop", "sd")]),
                     "target drop": f"<= {targets[strategy]:.1f}",
                     "met (mean)": bool(r[("drop", "mean")] <= targets[strategy]),
                     f"vs {reference} (points)": round(acc - ref[("acc_finetuned", "mean")], 1),
                     **paired, "seeds": int(r[("n", "")])})
    return pd.DataFrame(rows).set_index(["strategy", "method"])


def most_sensitive(scans: dict[str, pd.DataFrame], sparsity: float, threshold: float) -> pd.DataFrame:
    """Per strategy: the layer with the lowest scan accuracy at ``sparsity`` (the layer pruned alone),
    that accuracy (%), and how many layers never fall below ``threshold`` within the scanned sparsities."""
    rows = {}
    for strategy, scan in scans.items():
        at = scan[scan["sparsity"] == sparsity].set_index("layer")["accuracy"]
        lowest = scan.groupby("layer", sort=False)["accuracy"].min()
        rows[strategy] = {"most sensitive layer": at.idxmin(), "its accuracy (%)": round(100 * at.min(), 1),
                          "layers never below the threshold": int((lowest >= threshold).sum())}
    return pd.DataFrame(rows).T.rename_axis("strategy")


def most_sensitive_across_seeds(scans: pd.DataFrame, sparsity: float = 0.5) -> pd.DataFrame:
    """The most sensitive layer at ``sparsity`` per strategy (rows) and seed (columns); ``scans`` has a
    ``seed`` column."""
    at = scans[scans["sparsity"] == sparsity].reset_index(drop=True)  # idxmin's labels must be unique
    worst = at.loc[at.groupby(["strategy", "seed"], sort=False)["accuracy"].idxmin()]
    return worst.pivot(index="strategy", columns="seed", values="layer").reindex(at["strategy"].unique())


def speed_table(speed: pd.DataFrame) -> pd.DataFrame:
    """Each model's speed-up over the dense model at the same batch size (ratio of median latencies)
    and :func:`pruning_utils.latency.speed_verdict`'s reading of the rounds' spread."""
    t = speed.set_index(["model", "batch_size"])
    rows = {(m, b): speed_verdict(t.loc[("dense", b)], t.loc[(m, b)]) for m, b in t.index if m != "dense"}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["speed-up", "verdict"])
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["model", "batch_size"])
    return frame.round({"speed-up": 2})


def at_smallest_budget(front: pd.DataFrame, column: str = "acc_finetuned") -> pd.DataFrame:
    """``column`` at each (strategy, allocation)'s smallest budget: strategies as rows, allocations as columns."""
    front = front.reset_index(drop=True)  # idxmin's labels must be unique
    smallest = front.loc[front.groupby(["strategy", "allocation"], sort=False)["budget"].idxmin()]
    return smallest.pivot(index="strategy", columns="allocation", values=column)


def at_equal_size(front: pd.DataFrame, sizes: list[float], size: str = "conv_weights_effective_pct",
                  column: str = "acc_finetuned") -> pd.DataFrame:
    """``column`` of each (strategy, allocation) curve of ``front`` read at the given ``sizes`` (% kept,
    by ``size``): interpolated linearly in log size between the curve's two nearest points, empty
    (NaN) outside the sizes the curve spans. Rows: (strategy, allocation); columns: ``sizes``. Curves
    whose points sit at different sizes (masked budgets met, effective sizes not) are so compared at
    equal size."""
    rows = {}
    for (strategy, allocation), curve in front.groupby(["strategy", "allocation"], sort=False):
        curve = curve.sort_values(size)
        x, y = np.log(curve[size].to_numpy(float)), curve[column].to_numpy(float)
        rows[(strategy, allocation)] = [float(np.interp(np.log(at), x, y)) if x[0] <= np.log(at) <= x[-1]
                                        else float("nan") for at in sizes]
    index = pd.MultiIndex.from_tuples(list(rows), names=["strategy", "allocation"])
    return pd.DataFrame(list(rows.values()), index=index, columns=list(sizes))


def machines_by_seed(seconds: pd.DataFrame) -> pd.DataFrame:
    """Which machine computed each step of each seed, from :func:`pruning_utils.across_seeds.step_seconds`:
    a row per step (and the first of its artifacts, which names the strategy), a column per seed, and
    whether the seeds that have it computed it on one machine (a step of points: every machine its
    points ran on; points whose machine was not recorded may have run anywhere, so never one machine)."""
    label = seconds.assign(machine=seconds["machines"].map(lambda m: ", ".join(sorted(set(m)))))
    table = label.pivot_table(index=["step", "artifact"], columns="seed", values="machine", aggfunc="first",
                              sort=False)
    unknown = table.apply(lambda row: row.astype(str).str.contains(UNRECORDED).any(), axis=1)
    return table.assign(**{"one machine": (table.nunique(axis=1) == 1) & ~unknown})
