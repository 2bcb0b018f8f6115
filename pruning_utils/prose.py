"""The notebooks' prose: every number in it is read from the run's artifacts passed in."""

from __future__ import annotations

import pandas as pd

from .across_seeds import exceeds_spread, format_mean_sd, mean_spread
from .criteria import STRATEGIES
from .latency import speed_verdict
from .original import DENSE_TEST_ACCURACY, TABLE2
from .recovery_study import PLATEAU_MIN_GAIN, PLATEAU_SMOOTHING, PLATEAU_WINDOW, UNSTABLE_DROP
from .runs import Run


def signed(value: float, decimals: int = 1) -> str:
    """``value`` with its sign (``+1.9``, ``-0.3``); a value that rounds to zero reads ``+0.0``, never ``-0.0``."""
    return f"{round(value, decimals) + 0.0:+.{decimals}f}"


def dense_prose(run: Run, metrics: dict) -> str:
    return (
        f"The dense model of this run ({run.profile.name} profile, width {run.profile.width}, "
        f"{metrics['epochs']} epochs, {metrics['train_seconds_total'] / 60:.1f} min of training on {run.device}) "
        f"reaches **{100 * metrics['test_accuracy']:.1f}%** test accuracy in eval mode "
        f"({100 * metrics['test_accuracy_train_mode']:.1f}% measured in train mode, as the original did), "
        f"with {metrics['parameters']:,} parameters. The original report's dense model: {DENSE_TEST_ACCURACY}% "
        f"(full width, 100 epochs, train-mode evaluation). Data: {metrics['data']}."
    )


HEAD_INITS = {"normal": "N(0, 0.01)", "kaiming": "He-normal"}  # Linear init -> words


def head_check_prose(check: pd.DataFrame) -> str:
    """What :func:`pruning_utils.steps.head_check` measured, in one sentence."""
    last = check[check["epoch"] == check["epoch"].max()].set_index("head")
    epochs = int(check["epoch"].max())
    original, ours = last.loc["original"], last.loc["this profile"]
    return (f"Trained for {epochs} epoch{'s' if epochs > 1 else ''} of this profile's recipe from the same seed, "
            f"the model reaches {ours['val_acc']:.1f}% validation accuracy with this profile's head (dropout "
            f"{ours['dropout']:g}, {HEAD_INITS[ours['head_init']]} init) and {original['val_acc']:.1f}% with the "
            f"original's (dropout {original['dropout']:g}, {HEAD_INITS[original['head_init']]} init).")


def _first_below(scan: pd.DataFrame, threshold: float) -> dict[str, float | None]:
    out = {}
    for layer, group in scan.groupby("layer", sort=False):
        below = group[group["accuracy"] < threshold]["sparsity"]
        out[layer] = float(below.min()) if len(below) else None
    return out


def sensitivity_prose(run: Run, scans: dict[str, pd.DataFrame]) -> str:
    lines = []
    for strategy, scan in scans.items():
        at_half = scan[scan["sparsity"] == 0.5].set_index("layer")["accuracy"]
        worst, best = at_half.idxmin(), at_half.idxmax()
        never = [l for l, s in _first_below(scan, run.profile.threshold).items() if s is None]
        lines.append(
            f"- **{strategy}**: at sparsity 0.5 the most sensitive layer is `{worst}` "
            f"({100 * at_half[worst]:.1f}% validation accuracy), the least `{best}` ({100 * at_half[best]:.1f}%); "
            f"{len(never)} of {scan['layer'].nunique()} layers never fall below {100 * run.profile.threshold:.0f}% "
            f"up to sparsity {scan['sparsity'].max():.1f}."
        )
    dense = scans[next(iter(scans))].query("sparsity == 0")["accuracy"].iloc[0]
    return (f"Dense validation accuracy: {100 * dense:.1f}%.\n\n" + "\n".join(lines))


def results_prose(run: Run, results: pd.DataFrame, outputs: pd.DataFrame) -> str:
    r = results.set_index("strategy")
    o = TABLE2.set_index("strategy")
    lines = [
        f"- **{s}**: {r.at[s, 'params_kept_pct']:.1f}% of the parameters left "
        f"(original {o.at[s, 'params_kept_pct']:.1f}%); test accuracy {r.at[s, 'acc_pruned']:.1f}% right after "
        f"pruning in eval mode ({r.at[s, 'acc_pruned_train_mode']:.1f}% in train mode), "
        f"{r.at[s, 'acc_recalibrated']:.1f}% after BN recalibration, {r.at[s, 'acc_finetuned']:.1f}% after "
        f"{int(r.at[s, 'finetune_epochs'])} fine-tuning epochs (original: {o.at[s, 'acc_pruned']:.1f}% and "
        f"{o.at[s, 'acc_finetuned']:.1f}%)."
        for s in STRATEGIES
    ]
    (kept, removed), (kept_recal, removed_recal) = (outputs.set_index("filter_outputs")[c].tolist()
                                                    for c in ("acc_pruned", "acc_recalibrated"))
    dense = run.load_json("dense_metrics.json")
    return (
        f"Dense: {100 * dense['test_accuracy']:.1f}% (eval mode). Profile `{run.profile.name}`, width "
        f"{run.profile.width}, data: {run.data.source}.\n\n" + "\n".join(lines) + "\n\n"
        f"Filter pruning with the pruned filters' bias and BatchNorm kept (the original) gives {kept:.1f}% right "
        f"after pruning and {kept_recal:.1f}% after BN recalibration; with them removed {removed:.1f}% and "
        f"{removed_recal:.1f}%."
    )


def weights_prose(stats: pd.DataFrame) -> str:
    s = stats.set_index("model")
    dense = s.loc["dense"]
    lines = []
    for strategy in STRATEGIES:
        p, f = s.loc[f"{strategy} pruned"], s.loc[f"{strategy} fine-tuned"]
        lines.append(
            f"- **{strategy}**: {100 * p['non_zero'] / dense['non_zero']:.1f}% of the conv weights stay non-zero; "
            f"mean |w| {dense['mean_abs']:.4f} (dense) -> {p['mean_abs']:.4f} (pruned) -> {f['mean_abs']:.4f} "
            f"(fine-tuned), standard deviation {dense['std']:.4f} -> {p['std']:.4f} -> {f['std']:.4f}."
        )
    shift = {st: s.loc[f"{st} pruned", "mean_abs"] / dense["mean_abs"] for st in STRATEGIES}
    order = sorted(shift, key=shift.get, reverse=True)
    return (f"Pruning by magnitude removes weights near zero, so the surviving weights' mean |w| grows: most for "
            f"**{order[0]}** ({shift[order[0]]:.2f}x the dense mean), then {order[1]} ({shift[order[1]]:.2f}x) and "
            f"{order[2]} ({shift[order[2]]:.2f}x). Fine-grained pruning cuts exactly at a magnitude threshold; "
            f"kernel and filter pruning remove whole units whose individual weights span a range of values.\n\n"
            + "\n".join(lines))


def activations_prose(stats: pd.DataFrame) -> str:
    s = stats.set_index("model")
    lines = [
        f"- **{name}**: {100 * row['non_zero'] / row['total']:.1f}% of the post-ReLU activations are non-zero, "
        f"mean non-zero activation {row['mean_abs']:.3f}."
        for name, row in s.iterrows()
    ]
    return "For this image:\n\n" + "\n".join(lines)


def latency_prose(table: pd.DataFrame) -> str:
    t = table.set_index(["model", "batch_size"])
    dense = {b: t.loc[("dense", b)] for b in (1, 256)}
    spread = {"faster": "faster beyond the rounds' spread", "slower": "slower beyond the rounds' spread",
              "within spread": "within the rounds' spread"}
    verdicts = {(m, b): speed_verdict(dense[b], t.loc[(m, b)]) for m in table["model"].unique() for b in (1, 256)}
    lines = []
    for model in table["model"].unique():
        if model == "dense":
            continue
        r256 = t.loc[(model, 256)]
        speeds = " and ".join(f"{verdicts[model, b][0]:.2f}x (batch {b}, {spread[verdicts[model, b][1]]})"
                              for b in (1, 256))
        lines.append(
            f"- **{model}**: {100 * r256['masked_multiply_adds'] / dense[256]['masked_multiply_adds']:.0f}% "
            f"of the dense multiply-adds if masked weights were skipped, {100 * r256['multiply_adds'] / dense[256]['multiply_adds']:.0f}% "
            f"actually computed; latency {speeds} the dense model's speed; saved file {r256['file_size_bytes'] / 1e6:.2f} MB."
        )
    masked_faster = sorted({f"{m} at batch {b}" for (m, b), (_, v) in verdicts.items()
                            if v == "faster" and t.loc[(m, b), "multiply_adds"] == dense[b]["multiply_adds"]})
    measured = ("None of the masked models is faster than the dense model beyond the rounds' spread."
                if not masked_faster else
                f"Faster beyond the rounds' spread all the same, though computing as much: {', '.join(masked_faster)} "
                "(a drift of the machine during the measurement, or a kernel that skips zeros; not explained here).")
    return ("Speed-up relative to the dense model (median CPU latency over interleaved rounds, fp32; the spread is the "
            "fastest to the slowest round):\n\n" + "\n".join(lines) + "\n\n"
            "Masked models run the same dense convolutions as the dense model: their zeros are multiplied like any "
            "other weight, so fine-grained and kernel sparsity buys no speed without sparse kernels, and masked "
            f"filter pruning none either. {measured} Only the compacted filter model computes fewer multiply-adds.")


def frontier_prose(frontier: pd.DataFrame, fine_tune: str = "a short fine-tune") -> str:
    lines = []
    for (strategy, allocation), g in frontier.groupby(["strategy", "allocation"], sort=False):
        g = g.sort_values("budget")
        ok = g[g["acc_finetuned"] >= 80.0]
        smallest = f"{ok['conv_weights_kept_pct'].min():.1f}%" if len(ok) else "none of the budgets"
        lines.append(f"- **{strategy}, {allocation}**: after {fine_tune}, accuracy at the smallest budget "
                     f"({g['conv_weights_kept_pct'].iloc[0]:.1f}% of conv weights kept) is "
                     f"{g['acc_finetuned'].iloc[0]:.1f}%; the smallest budget still at >= 80%: {smallest}.")
    return "\n".join(lines)


def monotone_prose(exceptions: pd.DataFrame, spread: float) -> str:
    """Whether a frontier falls as its budget shrinks (:func:`pruning_utils.recovery_study.frontier_exceptions`)."""
    within = (f"within the dense models' seed-to-seed sd ({spread:.1f} points)" if spread == spread
              else "at all (one seed: no spread measured)")
    if exceptions.empty:
        return f"The frontier is monotone {within}: no smaller budget beats a larger one."
    listed = "; ".join(f"{r['strategy']} ({r['allocation']}): {r['smaller budget']:g} beats {r['larger budget']:g} by "
                       f"{r['gain (points)']:.1f} points" for _, r in exceptions.iterrows())
    return f"Not monotone {within}: {listed}."


def criteria_prose(criteria: pd.DataFrame) -> str:
    means = criteria.groupby(["strategy", "criterion"], sort=False)["acc_finetuned"].mean()
    pruned = criteria.groupby(["strategy", "criterion"], sort=False)["acc_recalibrated"].mean()
    names = list(criteria["criterion"].unique())
    lines = []
    for strategy in criteria["strategy"].unique():
        m, p = means[strategy], pruned[strategy]
        lines.append(
            f"- **{strategy}**: after BN recalibration "
            + ", ".join(f"{c} {p.get(c, float('nan')):.1f}%" for c in names)
            + "; after the short fine-tune " + ", ".join(f"{c} {m.get(c, float('nan')):.1f}%" for c in names)
            + " (random: mean over its seeds)."
        )
    return "\n".join(lines)


def iterative_prose(iterative: pd.DataFrame) -> str:
    final = iterative.sort_values("round").groupby(["strategy", "rounds"], sort=False).tail(1)
    final = final.sort_values(["strategy", "rounds"], key=lambda c: c.map(STRATEGIES.index) if c.name == "strategy" else c)
    totals = iterative.groupby(["strategy", "rounds"])["finetune_epochs"].sum()
    lines = [f"- **{r.strategy}**, {r.rounds} round(s): {r.acc_after_round:.1f}% at "
             f"{r.conv_weights_kept_pct:.1f}% conv weights kept" for r in final.itertuples()]
    return (f"Final accuracy at the same budget and the same total fine-tuning epochs "
            f"({', '.join(str(int(t)) for t in sorted(set(totals)))} in all per schedule):\n\n" + "\n".join(lines))



# --- notebook 07: across seeds ------------------------------------------------------------------


def _ms(values: pd.Series, decimals: int = 1) -> str:
    return format_mean_sd(float(values.mean()), float(values.std()), decimals)


def seeds_dense_prose(metrics: pd.DataFrame) -> str:
    acc = 100 * metrics["test_accuracy"]
    return (f"Over {len(acc)} seeds the dense model reaches **{_ms(acc)}%** test accuracy in eval mode "
            f"(mean ± sd; min {acc.min():.1f}, max {acc.max():.1f}). Differences smaller than about this sd "
            "between two single-seed results say nothing.")


def sensitivity_claims_prose(scans: pd.DataFrame, results: pd.DataFrame) -> str:
    """The original's three claims checked against the seed-to-seed spread.

    ``scans``: seed, strategy, layer, sparsity, accuracy; ``results``: Table 2 rows with a seed column."""
    lines = []
    half = scans[scans["sparsity"] == 0.5]
    worst = half.loc[half.groupby(["seed", "strategy"])["accuracy"].idxmin()]
    for strategy, group in worst.groupby("strategy", sort=False):
        counts = group["layer"].value_counts()
        lines.append(f"- Most sensitive layer at sparsity 0.5, **{strategy}**: "
                     + ", ".join(f"`{layer}` in {n} of {len(group)} seeds" for layer, n in counts.items()) + ".")
    dense = scans[scans["sparsity"] == 0].groupby("seed")["accuracy"].first()
    gains = scans[scans["sparsity"] > 0].assign(gain=lambda f: 100 * (f["accuracy"] - f["seed"].map(dense)))
    stats = gains.groupby(["strategy", "layer", "sparsity"])["gain"].agg(["mean", "std"])
    real = stats[(stats["mean"] > 0) & (stats["mean"] > stats["std"])]
    lines.append(f"- Layers that *gain* validation accuracy when pruned: {int((stats['mean'] > 0).sum())} of "
                 f"{len(stats)} (strategy, layer, sparsity) cells gain on average, {len(real)} by more than their "
                 f"seed-to-seed sd (largest mean gain {stats['mean'].max():.2f} points).")
    s = mean_spread(results, "strategy", ["acc_finetuned"])["acc_finetuned"]
    best = s["mean"].idxmax()
    others = [o for o in s.index if o != best]
    clear = [o for o in others if exceeds_spread(s.at[best, "mean"], s.at[best, "sd"], s.at[o, "mean"], s.at[o, "sd"])]
    lines.append(f"- Highest accuracy after fine-tuning: **{best}** ({format_mean_sd(s.at[best, 'mean'], s.at[best, 'sd'])}%); "
                 + (f"ahead of {', '.join(clear)} by more than the spreads" if clear else "not ahead of any other by more than the spreads")
                 + (f", within the spread of {', '.join(o for o in others if o not in clear)}" if len(clear) < len(others) else "")
                 + ". Note that the strategies keep different fractions of the weights (Table 1's rule), so this compares procedures, not criteria at equal size.")
    return "\n".join(lines)


def recovery_seeds_prose(readout: pd.DataFrame, curve_lr: float) -> str:
    """:func:`pruning_utils.recovery_study.curve_readout` in words: does fine-tuning past Table 2's
    length still gain, beyond the seed spread, and where do the curves level off (if they are stable)?"""
    lines = []
    for s, r in readout.iterrows():
        ft, end = int(r["finetune_epochs"]), int(r["end_epoch"])
        gain = r["test_at_end"] - r["test_at_finetune"]
        beyond = exceeds_spread(r["test_at_end"], r["test_at_end_sd"], r["test_at_finetune"], r["test_at_finetune_sd"])
        verdict = (f"still gains {signed(gain)} points from epoch {ft} to {end}, more than the seeds' spread" if beyond and gain > 0
                   else f"{signed(gain)} points from epoch {ft} to {end}, within the seeds' spread" if r["seeds"] > 1
                   else f"{signed(gain)} points from epoch {ft} to {end} (one seed, no spread)")
        seeds = " / ".join("none" if e is None else str(e) for e in r["plateau_seeds"])
        level = (f"the mean curve levels off at epoch {r['plateau_mean_curve']}" if r["plateau_mean_curve"] is not None
                 else "the mean curve does not level off")
        if r["unstable"]:
            level = (f"the curves are unstable at this rate (validation accuracy falls by up to {r['max_drop']:.0f} "
                     f"points from one epoch to the next), so their plateau epochs (mean curve "
                     f"{r['plateau_mean_curve'] if r['plateau_mean_curve'] is not None else 'none'}; seeds {seeds}) "
                     "are not a reliable reading")
        else:
            level += f" (seeds: {seeds})"
        lines.append(f"- **{s}**: test accuracy {format_mean_sd(r['test_at_finetune'], r['test_at_finetune_sd'])}% at "
                     f"epoch {ft}, {format_mean_sd(r['test_at_end'], r['test_at_end_sd'])}% at epoch {end}: {verdict}; "
                     f"{level}.")
    low, n = int(readout["seeds"].min()), int(readout["seeds"].max())
    seeds = f"{n} seed{'s' if n != 1 else ''}" if low == n else f"{low} to {n} seeds (per strategy, as each line says)"
    return (f"Fine-tuning at a constant rate of {curve_lr:g} (the original's way), {seeds}, "
            f"mean ± sd. A curve levels off where {PLATEAU_WINDOW} more epochs gain less than {PLATEAU_MIN_GAIN} "
            f"points of validation accuracy ({PLATEAU_SMOOTHING}-epoch average):\n\n" + "\n".join(lines))


def batchnorm_prose(readout: pd.DataFrame) -> str:
    """:func:`pruning_utils.recovery_study.batchnorm_readout` in words: where a recovery curve's falls come from."""
    lines = []
    for (s, seed), r in readout.iterrows():
        measured = (f"validation accuracy falls by up to {r['fall_eval']:.1f} points from one epoch to the next in eval "
                    f"mode, {r['fall_recalibrated']:.1f} after re-estimating BatchNorm's statistics and "
                    f"{r['fall_batch_stats']:.1f} with batch statistics")
        if r["cause"] == "stable":
            verdict = f"no fall above {UNSTABLE_DROP:g} points: stable"
        else:
            verdict = (f"{r['falls']} fall{'s' if r['falls'] != 1 else ''} above {UNSTABLE_DROP:g} points, where the "
                       f"re-estimation adds {r['recovered_at_falls']:.1f} points on average: ")
            verdict += ("the falls come from stale running statistics, not from the weights"
                        if r["cause"] == "running statistics" else
                        "the re-estimated model falls too, so the weights themselves get worse at those epochs")
        plateau = r["plateau_recalibrated"]
        level = ("the re-estimated curve does not level off" if plateau is None
                 else f"the re-estimated curve levels off at epoch {plateau}")
        rerun = ("" if "same_as_curve" not in r or pd.isna(r["same_as_curve"]) else
                 ", the curve's own training" if r["same_as_curve"] else
                 ", the curve's settings and seed on another machine than the curve's (so its falls come at other "
                 "epochs)")
        empty = ("" if "emptied_filters" not in r or pd.isna(r["emptied_filters"]) else
                 f"; filters with no weight left at Table 1's sparsities: {r['emptied_filters']}")
        lines.append(f"- **{s}**, seed {seed}, {r['epochs']} epochs{rerun}: {measured}; {verdict}; {level}{empty}.")
    why = (" A filter left with no weight is removed with its conv bias and BatchNorm scale and shift (since "
           "2026-11-29; before, it kept them and output a near-constant whose running statistics rested on a variance "
           "near zero, so in eval mode any lag of its running mean was divided by about the square root of "
           "BatchNorm's eps)." if "emptied_filters" in readout else "")
    return ("The recovery curves trained again step for step, validation accuracy measured three ways after every "
            f"epoch.{why}\n\n" + "\n".join(lines))


def methods_seeds_prose(table: pd.DataFrame, reference: str = "one-cycle (Table 2)") -> str:
    """:func:`pruning_utils.tables.methods_across_seeds` in words: per strategy, the best way to
    recover, whether it beats ``reference`` beyond the spread, and whether any meets the target."""
    column = f"vs {reference} (points)"
    lines = []
    for strategy, group in table.groupby(level="strategy", sort=False):
        group = group.droplevel("strategy").sort_values(column, ascending=False)
        best = group.index[0]
        r = group.loc[best]
        if best == reference:
            verdict = f"none beats {reference}"
        elif r["seeds"] < 2:
            verdict = f"{signed(r[column])} points over {reference} on one seed, no spread measured"
        else:
            verdict = (f"{signed(r[column])} points over {reference}, "
                       + ("beyond the seeds' spread" if r["beyond the spread"] else "within the seeds' spread"))
        met = [m for m in group.index if group.at[m, "met (mean)"]]
        single = (" on this one seed (the target is a mean over seeds)" if met and group.loc[met, "seeds"].max() < 2
                  else "")
        lines.append(f"- **{strategy}**: best {best}, {r['after recovery (%)']}% ({verdict}); drop from dense "
                     f"{r['drop from dense (points)']} points against a target of {r['target drop']}: "
                     + (f"met by {', '.join(met)}{single}." if met else "**no method meets it**."))
    n = int(table["seeds"].max())
    low = int(table["seeds"].min())
    over = ("on one seed, no spread measured" if n == 1 else f"mean ± sd over {n} seeds" if low == n
            else f"mean ± sd over {low} to {n} seeds (per strategy)")
    return f"The four ways to recover at equal epochs, {over}:\n\n" + "\n".join(lines)


def table2_seeds_prose(table: pd.DataFrame) -> str:
    met = table["met (mean)"]
    lines = [f"- **{s}**: {table.at[s, 'after fine-tuning']}% after fine-tuning, "
             f"{table.at[s, 'drop from dense (points)']} points below its dense model (target {table.at[s, 'target drop']}): "
             f"{'met' if met[s] else '**not met**'}." for s in table.index]
    return "\n".join(lines)


def original_budgets_prose(table: pd.DataFrame) -> str:
    return "\n".join(
        f"- **{s}** at the original's sparsities: {table.at[s, '% params left']}% of the parameters left, "
        f"{table.at[s, 'after fine-tuning']}% after fine-tuning (the original's model: "
        f"{table.at[s, 'original: after fine-tuning (eval mode)']}% in eval mode)." for s in table.index)


def narrow_prose(table: pd.DataFrame) -> str:
    lines = []
    for (strategy, matched), r in table.iterrows():
        diff = r["pruned - narrow (points)"]
        if r["seeds"] < 2:
            verdict = ("pruning ahead" if diff > 0 else "the narrow network ahead") + " on one seed (no spread measured)"
        else:
            verdict = ("within the seed spread" if not r["beyond the spread"] else
                       ("pruning wins" if diff > 0 else "the narrow network wins"))
        lines.append(f"- **{strategy}**, equal {matched}: pruned {r['pruned, fine-tuned (%)']}% against narrow dense "
                     f"(width {r['narrow width']}) {r['narrow dense (%)']}%: {signed(diff)} points, {verdict}.")
    return "\n".join(lines)

