"""The README's result tables, generated from a run's artifacts and the benchmark records.

``python -m pruning_utils.summary data/runs/cpu`` rewrites the blocks of README.md between
``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` markers, so the numbers quoted in
the README are always those of the committed run (nothing typed in by hand).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

from .original import DENSE_TEST_ACCURACY, TABLE1, TABLE2
from . import prose
from .artifacts import Store, recorded_steps
from .criteria import STRATEGIES
from .runs import project_root, resolve_path


def _md(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (no extra dependency)."""
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


SHOWN = ("dense.pt", "sparsities.csv", "results.csv", "filter_outputs.csv", "latency.csv", "frontier.csv",
         "criteria.csv", "iterative.csv")  # the artifacts the README's blocks show


def run_label(run_dir: Path) -> str:
    """Where the shown artifacts came from, read from their own provenance records (each value once)."""
    store = Store(run_dir, {})
    records = [r for r in (store.record(name) for name in SHOWN) if r is not None]
    if not records:
        return "(no recorded artifacts)"

    def values(field: str, pick=lambda v: v) -> str:
        return " / ".join(dict.fromkeys(str(pick(r[field])) for r in records if field in r))

    return (f"profile `{values('profile')}` (width {_recorded_width(run_dir)}), seed {values('seed')}, "
            f"data: {values('data', lambda d: d['source'])}, {values('precision')} on {values('device')} "
            f"({values('cpu')}), code {values('code_version')}; accuracies are test-set accuracy in eval mode "
            "unless marked")


def _recorded_width(run_dir: Path) -> float | str:
    """The model width the run's dense model was trained at, from its provenance record ("?" without one)."""
    return (Store(run_dir, {}).record("dense.pt") or {"inputs": {}})["inputs"].get("width", "?")


def table1_markdown(run_dir: Path) -> str:
    ours = pd.read_csv(run_dir / "sparsities.csv")
    merged = ours.merge(TABLE1, on="layer", suffixes=(" ours", " original"))
    cols = ["layer"] + [f"{s} {who}" for s in STRATEGIES for who in ("ours", "original")]
    return _md(merged[cols])


def table2_markdown(run_dir: Path) -> str:
    dense = json.loads((run_dir / "dense_metrics.json").read_text())
    results = pd.read_csv(run_dir / "results.csv").set_index("strategy")
    original = TABLE2.set_index("strategy")
    rows = [{
        "model": "dense", "% params left (ours / orig.)": "100 / 100", "% conv weights left": "100",
        "after pruning": f"{100 * dense['test_accuracy']:.1f}",
        "after pruning, train mode": f"{100 * dense['test_accuracy_train_mode']:.1f}",
        "after BN recal.": "-", "after fine-tuning": "-",
        "original: after pruning / fine-tuning (train mode)": f"{DENSE_TEST_ACCURACY} (dense)",
    }]
    for s in STRATEGIES:
        r, o = results.loc[s], original.loc[s]
        rows.append({
            "model": s,
            "% params left (ours / orig.)": f"{r['params_kept_pct']:.1f} / {o['params_kept_pct']:.2f}",
            "% conv weights left": f"{r['conv_weights_kept_pct']:.1f}",
            "after pruning": f"{r['acc_pruned']:.1f}",
            "after pruning, train mode": f"{r['acc_pruned_train_mode']:.1f}",
            "after BN recal.": f"{r['acc_recalibrated']:.1f}",
            "after fine-tuning": f"{r['acc_finetuned']:.1f} ({int(r['finetune_epochs'])} ep.)",
            "original: after pruning / fine-tuning (train mode)": f"{o['acc_pruned']:.2f} / {o['acc_finetuned']:.2f}",
        })
    return _md(pd.DataFrame(rows))


def differences_markdown(run_dir: Path) -> str:
    """Why our numbers differ from the original's, each reason with the measurement behind it."""
    dense = json.loads((run_dir / "dense_metrics.json").read_text())
    results = pd.read_csv(run_dir / "results.csv").set_index("strategy")
    outputs = pd.read_csv(run_dir / "filter_outputs.csv").set_index("filter_outputs")["acc_pruned"]
    record = json.loads((run_dir / "provenance" / "dense.pt.json").read_text())
    pruned_eval = ", ".join(f"{s} {results.at[s, 'acc_pruned']:.1f}%" for s in STRATEGIES)
    pruned_train = ", ".join(f"{s} {results.at[s, 'acc_pruned_train_mode']:.1f}%" for s in STRATEGIES)
    recal = ", ".join(f"{s} {results.at[s, 'acc_recalibrated']:.1f}%" for s in STRATEGIES)
    return "\n".join([
        f"- **Eval vs train mode.** The original measured accuracy without `model.eval()` (BatchNorm batch "
        f"statistics, dropout on). Right after pruning, in eval mode: {pruned_eval}; the same models in train "
        f"mode: {pruned_train}. Batch statistics re-normalise the shifted activations, which is why the original "
        f"saw {TABLE2['acc_pruned'].min():.0f}-{TABLE2['acc_pruned'].max():.0f}% right after pruning where running "
        f"statistics give far less. BN recalibration (re-estimating "
        f"the running statistics on training batches, no gradient step) recovers most of it: {recal}. "
        f"Dense: {100 * dense['test_accuracy']:.1f}% eval mode, {100 * dense['test_accuracy_train_mode']:.1f}% "
        f"train mode.",
        f"- **Pruned filters removed vs kept.** The original zeroed a filter's weights but kept its conv bias and "
        f"BatchNorm shift, so the channel still emitted a constant. Filter pruning at our Table 1 sparsities: "
        f"{outputs.get('kept (original)', float('nan')):.1f}% right after pruning with them kept, "
        f"{outputs.get('removed (ours)', float('nan')):.1f}% with them removed (eval mode).",
        "- **Validation vs test set for choosing sparsities.** The original chose its sparsities from scans on the "
        "test set (and its scan scored only the last test batch); ours come from the "
        f"{record['data']['val']:,}-image validation split held out of training, so the test numbers are not tuned "
        "on the test set.",
        f"- **Model and recipe.** Ours: profile `{record['profile']}` (width {record['inputs']['width']}, "
        f"{record['inputs']['train']['epochs']} epochs {record['inputs']['train']['optimizer']}, head dropout "
        f"{record['inputs']['dropout']}) on {record['data']['source']}; the original: full width, 100 epochs of "
        "Adam on the official images. Parameter percentages differ too: at width 0.25 the classifier head holds a "
        "much larger share of the parameters, so '% params left' of the whole model stays high even when most "
        "conv weights are gone; compare '% conv weights left'.",
    ])


def beyond_markdown(run_dir: Path) -> str:
    """Notebook 06's findings, from its cached CSVs (what exists of them)."""
    parts = []
    if (run_dir / "latency.csv").exists():
        parts.append("**Real speed.** " + prose.latency_prose(pd.read_csv(run_dir / "latency.csv")))
    if (run_dir / "frontier.csv").exists():
        parts.append("**How far (equal conv budgets, short fine-tune).**\n\n"
                     + prose.frontier_prose(pd.read_csv(run_dir / "frontier.csv")))
    if (run_dir / "criteria.csv").exists():
        parts.append("**Which weights: L2 vs L1 vs random at Table 1's sparsities** (test accuracy).\n\n"
                     + prose.criteria_prose(pd.read_csv(run_dir / "criteria.csv")))
    if (run_dir / "iterative.csv").exists():
        parts.append("**One shot vs iterative.** " + prose.iterative_prose(pd.read_csv(run_dir / "iterative.csv")))
    return "\n\n".join(parts) or "(notebook 06 has not run)"


def benchmarks_markdown(records_dir: Path) -> str:
    lines = []
    scan = records_dir / "sensitivity_scan.json"
    if scan.exists():
        r = json.loads(scan.read_text())
        steps = "; ".join(f"{a['configuration']} {a['seconds']:.0f} s (x{a['step_ratio']:.2f}"
                          f"{', sampled' if 'sample' in a['how'] else ''})" for a in r.get("ablation", []))
        limit = (f"; floor at the bf16 matmul peak {r['floor_seconds']:.1f} s, **limit {100 * r['limit']:.0f}%**, "
                 f"**method-only {r['method_only']['bf16']:.2f}x** (bf16)" if "limit" in r else "")
        lines.append(
            f"- Sensitivity scan ({r['strategy']}, {r['points']} points, {r['images']:,} validation images, width "
            f"{r['width']}, {r['weights']}, {r.get('cpu', 'CPU not recorded')}, {r['threads']} threads, {r['when']}): "
            f"{steps or 'naive ' + format(r['naive_seconds'], '.0f') + ' s, ours ' + format(r['ours_seconds'], '.0f') + ' s'}"
            f"{limit}; **speedup {r['speedup']:.2f}x, identical: {r['identical']}** "
            f"(`python benchmarks/sensitivity_scan.py`)."
        )
    train = records_dir / "train_throughput.json"
    if train.exists():
        r = json.loads(train.read_text())
        peak = r.get("matmul_peak_mac_per_s")
        for name, m in r["results"].items():
            steps = "".join(f"; {a['configuration']} {a['img_per_s']:.0f} (x{a['step_ratio']:.2f})"
                            for a in m.get("ablation", []))
            efficiency = (f", **{100 * m['efficiency_of_bf16_peak']:.0f}% of the bf16 matmul peak** "
                          f"({peak['bf16'] / 1e9:.0f} GMAC/s measured in the same run)" if peak else "")
            where = ""
            if "step_seconds_by_op_group" in m:
                groups = m["step_seconds_by_op_group"]
                where = (f"; under torch.compile (not used by the study) {m['compiled_img_per_s']:.0f} img/s "
                         f"(x{m['compiled_img_per_s'] / m['ours_img_per_s']:.2f}); our step's time: " + ", ".join(
                             f"{g} {100 * v / groups['total']:.0f}%" for g, v in groups.items() if g != "total")
                         + f", the convolutions alone at {100 * m['convolutions_efficiency_of_bf16_peak']:.0f}% of "
                         "the bf16 peak")
            lines.append(
                f"- Training throughput, {name} (batch {r['batch_size']}, {r.get('cpu', 'CPU not recorded')}, "
                f"{r['threads']} threads, {r['when']}): original style {m['original_img_per_s']:.0f} img/s{steps}; "
                f"ours {m['ours_img_per_s']:.0f} img/s ({m['ours_precision']}), **speedup {m['speedup']:.2f}x**"
                f"{efficiency}{where} (`python benchmarks/train_throughput.py`)."
            )
        full = next((m for m in r["results"].values() if m["width"] == 1.0), None)
        if full is not None:
            lines.append(
                f"- What the `paper` profile needs without a GPU, from the full-width measurement above: about "
                f"{full['epoch_seconds_ours_45k']:.0f} s per training epoch of 45,000 images with our step "
                f"({full['ours_precision']}), so about {full['epoch_seconds_ours_45k'] * 100 / 3600:.1f} h for the "
                f"100 dense epochs and {full['epoch_seconds_ours_45k'] * 60 / 3600:.1f} h for 3 x 20 fine-tuning "
                f"epochs; peak process memory during the benchmark {full['peak_process_memory_mb']:.0f} MB. "
                "(Estimates from measured throughput, not a completed paper run.)"
            )
    lines += deployment_lines(records_dir / "deployment.json")
    return "\n".join(lines) or "(no benchmark records yet: run `make benchmarks`)"


def deployment_lines(path: Path) -> list[str]:
    """The deployment benchmark's record: compacted against dense per runtime, at the largest batch."""
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    ok = [x for x in r["results"] if x["failure"] is None]
    batch = max(x["batch"] for x in ok)
    lines = []
    for width in sorted({x["width"] for x in ok}):
        parts = []
        for runtime in dict.fromkeys(x["runtime"] for x in ok):
            ms = {x["model"]: x["median_ms"] for x in ok
                  if x["width"] == width and x["batch"] == batch and x["runtime"] == runtime}
            if "dense" in ms and "filter-compacted" in ms:
                parts.append(f"{runtime} {ms['dense']:.1f} -> {ms['filter-compacted']:.1f} ms "
                             f"({ms['dense'] / ms['filter-compacted']:.2f}x)")
        macs = r["models"][str(width)]
        ratio = macs["dense"]["multiply_adds"] / macs["filter-compacted"]["multiply_adds"]
        lines.append(f"- Deployment, width {width}, batch {batch} ({r['cpu']}, {r['threads']} threads, "
                     f"{r['when']}): dense -> compacted filter-pruned model (the original's Table 1 filter "
                     f"sparsities, {ratio:.2f}x fewer multiply-adds), median per batch: " + "; ".join(parts) + ".")
    summary = r["summary"]
    lines.append(f"- Best runtime for compaction at width {summary['width']}, batch {summary['batch']}: "
                 f"{summary['best_runtime']}, **compacted speedup / MAC ratio {summary['speedup_over_mac_ratio']:.2f}**"
                 + (" ({:.2f}-{:.2f} at the extremes of the rounds)".format(*summary["speedup_over_mac_ratio_spread"])
                    if summary.get("speedup_over_mac_ratio_spread") else "") + "; "
                 "masked models (zeros kept in dense tensors): " + (
                     "; ".join(f"{m}: {', '.join(g)}" for m, g in summary["masked_gains"].items() if g)
                     or "no gain beyond the spread in any runtime") + " (`python benchmarks/deployment.py`).")
    return lines


def study_run_dirs(run_dir: Path) -> dict[int, Path]:
    """The study's runs by seed: the seeds of ``study.json`` (else the run's own), each in
    ``run_dir`` (the run's own seed) or ``run_dir/seed-<n>``."""
    from .across_seeds import seed_run_dir

    base = json.loads((run_dir / "run.json").read_text())["seed"]
    study = run_dir / "study.json"
    seeds = json.loads(study.read_text())["seeds"] if study.exists() else [base]
    return {s: seed_run_dir(run_dir, base, s) for s in seeds}


def _per_seed(dirs: dict[int, Path], name: str, partial: bool = False) -> pd.DataFrame | None:
    """``name`` of every seed's run with a ``seed`` column; None if a seed lacks it, or with
    ``partial`` the seeds that have it (None if none has)."""
    frames = []
    for seed, path in dirs.items():
        if not (path / name).exists():
            if partial:
                continue
            return None
        frame = (pd.DataFrame([json.loads((path / name).read_text())]) if name.endswith(".json")
                 else pd.read_csv(path / name))
        frames.append(frame.assign(seed=seed))
    return pd.concat(frames, ignore_index=True) if frames else None


def _seeds_of(frame: pd.DataFrame, dirs: dict[int, Path]) -> str:
    """"3 seeds" or "seeds 0, 1 of 0, 1, 2" for a partial :func:`_per_seed` frame."""
    held = sorted(frame["seed"].unique())
    if len(held) == len(dirs):
        return f"{len(held)} seeds"
    return f"seed{'s' if len(held) > 1 else ''} {', '.join(map(str, held))} only (of {', '.join(map(str, dirs))})"


def _curve_lr(run_dir: Path) -> float:
    """The constant rate the run's recovery curves were computed with, from their provenance record."""
    record = Store(run_dir, {}).record(f"recovery_curve_{STRATEGIES[0]}.csv")
    return float(record["inputs"]["recovery"]["recipe"]["lr"])


def _emptied_filters(run_dir: Path, strategy: str) -> dict[str, tuple[int, int]]:
    """Filters left with no weight when the run's stored dense model is pruned at its stored Table 1."""
    from .model_files import load_model
    from .recovery_study import emptied_filters_when_pruned
    from .steps import sparsity_dict

    dense = load_model(run_dir / "dense.pt")[0]
    return emptied_filters_when_pruned(dense, sparsity_dict(pd.read_csv(run_dir / "sparsities.csv"), strategy), strategy)


def seeds_markdown(run_dir: Path) -> str:
    """The multi-seed findings (notebook 07) as far as every seed has them, and what is still missing."""
    from . import recovery_study, tables
    from .original import EVAL_MODE_CHECKPOINTS

    dirs = study_run_dirs(run_dir)
    if len(dirs) < 2:
        return 'One seed so far: `make report SEEDS="0 1 2"` runs the multi-seed study (notebook 07).'
    wanted = {"dense model": "dense_metrics.json", "Table 2": "results.csv", "original budgets": "original_budgets.csv",
              "narrow dense": "narrow_dense.csv"}
    progress = pd.DataFrame([{"seed": s, **{k: "done" if (d / f).exists() else "missing" for k, f in wanted.items()}}
                             for s, d in dirs.items()])
    parts = [f"Seeds {', '.join(map(str, dirs))}; what each seed's run holds:", "", _md(progress), ""]
    metrics, results = _per_seed(dirs, "dense_metrics.json"), _per_seed(dirs, "results.csv")
    if metrics is not None:
        parts += [prose.seeds_dense_prose(metrics), ""]
    if metrics is not None and results is not None:
        if results["finetune_epochs"].nunique() > 1:
            parts += ["Table 2 across seeds: not shown, the seeds' Table 2 used different fine-tuning lengths "
                      f"({sorted(results['finetune_epochs'].unique())} epochs).", ""]
        else:
            table = tables.table2_across_seeds(results, metrics, recovery_study.RECOVERY_TARGETS)
            parts += [f"Table 2 across seeds ({int(results['finetune_epochs'].iloc[0])} fine-tuning epochs; mean ± sd, "
                      "test accuracy % in eval mode), against the recovery targets:", "",
                      _md(table.reset_index()), "", prose.table2_seeds_prose(table), ""]
    budgets = _per_seed(dirs, "original_budgets.csv", partial=True)
    if budgets is not None:
        table = tables.original_budgets_table(budgets, EVAL_MODE_CHECKPOINTS)
        parts += [f"At the original's per-layer sparsities (mean ± sd over {_seeds_of(budgets, dirs)}):", "",
                  _md(table.reset_index()), ""]
    narrow = _per_seed(dirs, "narrow_dense.csv", partial=True)
    if narrow is not None and results is not None:
        table = tables.narrow_table(narrow, results)
        parts += [f"Pruned models against narrow dense networks trained from scratch (same total epochs; mean ± sd "
                  f"over {_seeds_of(narrow, dirs)}, Table 2 over the same seeds):", "", prose.narrow_prose(table), ""]
    base = run_dir
    curve_parts = {s: c for s in STRATEGIES if (c := _per_seed(dirs, f"recovery_curve_{s}.csv", partial=True)) is not None}
    curves = pd.concat([c.assign(strategy=s) for s, c in curve_parts.items()], ignore_index=True) if curve_parts else None
    if results is not None and len(curve_parts) == len(STRATEGIES):
        readout = recovery_study.curve_readout(curves, int(results["finetune_epochs"].iloc[0]))
        parts += [prose.recovery_seeds_prose(readout, _curve_lr(run_dir)), ""]
    checks = [part.assign(strategy=s) for s in STRATEGIES
              if (part := _per_seed(dirs, f"recovery_curve_batchnorm_{s}.csv", partial=True)) is not None]
    if checks:
        check = pd.concat(checks, ignore_index=True)
        emptied = {(s, seed): _emptied_filters(dirs[seed], s) for s, seed in
                   check[["strategy", "seed"]].drop_duplicates().itertuples(index=False)}
        parts += [prose.batchnorm_prose(recovery_study.batchnorm_readout(check, curves, emptied)), ""]
    if (base / "recovered_frontier.csv").exists() and metrics is not None:
        front = pd.read_csv(base / "recovered_frontier.csv")
        sd = 100 * metrics["test_accuracy"].std()
        parts += ["", "The guided frontier with measured deep sparsities, recovered as Table 2 (seed of the main run):",
                  "", prose.frontier_prose(front, "Table 2's fine-tuning"), "",
                  prose.monotone_prose(recovery_study.frontier_exceptions(front, sd), sd)]
    methods = _per_seed(dirs, "recovery_methods.csv", partial=True)
    if methods is not None and metrics is not None:
        table = tables.methods_across_seeds(methods, metrics, recovery_study.RECOVERY_TARGETS)
        parts += ["", prose.methods_seeds_prose(table)]
    return "\n".join(parts).rstrip()


def notebook_times_markdown(run_dir: Path) -> str:
    """Seconds each notebook's steps took when they were computed, from the run's provenance records
    (each step once per key; a point-cached step counts its points), with the machines that made
    them (a CPU, or a GPU and its host CPU); a lower bound is marked where some points carry no time."""
    frame = recorded_steps(run_dir)
    if frame.empty:
        return "(no records)"
    table = frame.groupby("notebook").agg(seconds=("seconds", "sum"), steps=("seconds", "size"),
                                          lower=("lower_bound", "sum"),
                                          computed=("created", lambda c: f"{min(c)[:16]} .. {max(c)[:16]}"),
                                          on=("machines", lambda m: ", ".join(sorted(set().union(*m)))))
    table["minutes"] = [f"{s / 60:.1f}{' +' if n else ''}" for s, n in zip(table["seconds"], table["lower"])]
    lower = int(table["lower"].sum())
    machines = sorted(set().union(*frame["machines"]))
    return (_md(table.reset_index()[["notebook", "minutes", "steps", "on", "computed"]])
            + f"\n\nIn all {frame['seconds'].sum() / 60:.1f} min{'+' if lower else ''} of computation on "
            f"{', '.join(machines)} (wall-clock of each step as recorded; a step made of points counts each point's "
            "own time; a step computed while another job ran reads slower; a GPU's minutes are not a CPU's)."
            + (f" Minutes marked + are lower bounds: {lower} step{'s' if lower != 1 else ''} of points cached before "
               "points recorded their time count only the time recorded." if lower else ""))


def paper_markdown(run_dir: Path) -> str:
    """The paper profile's run (the original's recipe at full width, computed on a GPU), if committed."""
    if not (run_dir / "run.json").exists():
        return "(no paper-profile run committed)"
    return f"Run: {run_label(run_dir)}.\n\n" + seeds_markdown(run_dir)


def width_markdown(run_dir: Path, wide_dir: Path) -> str:
    """The same pipeline on a wider model (``wide_dir``, one seed) beside the main run's seed: Table 1's
    sparsities and Table 2's recovery at each width, each drop from that width's own dense model."""
    from . import tables

    if not (wide_dir / "results.csv").exists() or not (wide_dir / "dense_metrics.json").exists():
        return "(no wider run committed)"
    rows, widths = [], {}
    for where in (run_dir, wide_dir):
        width = _recorded_width(where)
        dense = 100 * json.loads((where / "dense_metrics.json").read_text())["test_accuracy"]
        widths[width] = where
        for r in pd.read_csv(where / "results.csv").itertuples():
            rows.append({"strategy": r.strategy, "width": width, "dense (%)": round(dense, 1),
                         "% params left": round(r.params_kept_pct, 1),
                         "% conv weights left": round(r.conv_weights_kept_pct, 1),
                         "after fine-tuning (%)": round(r.acc_finetuned, 1),
                         "drop from dense (points)": round(dense - r.acc_finetuned, 1)})
    table = pd.DataFrame(rows).sort_values(["strategy", "width"], key=lambda c: c.map(
        {s: i for i, s in enumerate(STRATEGIES)}) if c.name == "strategy" else c, kind="stable")
    chosen = pd.concat({w: pd.read_csv(d / "sparsities.csv").set_index("layer") for w, d in widths.items()}, axis=1)
    cells = pd.DataFrame({s: [" -> ".join(f"{chosen[(w, s)][layer]:.1f}" for w in widths) for layer in chosen.index]
                          for s in STRATEGIES}, index=chosen.index).reset_index()
    drops = table.pivot(index="strategy", columns="width", values="drop from dense (points)").reindex(list(STRATEGIES))
    narrow_w, wide_w = list(widths)
    words = ", ".join(f"{s} {drops.at[s, narrow_w] - drops.at[s, wide_w]:+.1f}" for s in STRATEGIES)
    dirs = study_run_dirs(run_dir)
    results, metrics = _per_seed(dirs, "results.csv"), _per_seed(dirs, "dense_metrics.json")
    spread = ""
    if results is not None and metrics is not None and len(dirs) > 1:
        sd = tables.drop_from_dense(results, metrics).groupby(results["strategy"]).std()
        spread = (f"; at width {narrow_w} the drop's sd over {len(dirs)} seeds is "
                  + ", ".join(f"{s} {sd[s]:.1f}" for s in STRATEGIES) + " points")
    wide_metrics = json.loads((wide_dir / "dense_metrics.json").read_text())
    finding = (f"One seed (seed {json.loads((wide_dir / 'run.json').read_text())['seed']}) at width {wide_w} "
               f"({wide_metrics['parameters']:,} parameters). "
               f"How much smaller the drop from dense is at width {wide_w} than at {narrow_w} (points, same seed): "
               f"{words}{spread}.")
    return (f"Run: {run_label(wide_dir)}.\n\n" + finding + "\n\n" + _md(table) + "\n\nTable 1's rule at each width (sparsity chosen per "
            f"layer, width {' -> '.join(map(str, widths))}):\n\n" + _md(cells))


def update_readme(run_dir: Path, readme: Path | None = None) -> Path:
    readme = readme or project_root() / "README.md"
    text = readme.read_text()
    blocks = {
        "run-label": run_label(run_dir),
        "table1": table1_markdown(run_dir),
        "table2": table2_markdown(run_dir),
        "differences": differences_markdown(run_dir),
        "beyond": beyond_markdown(run_dir),
        "seeds": seeds_markdown(run_dir),
        "paper": paper_markdown(resolve_path("data/runs/paper")),
        "width": width_markdown(run_dir, resolve_path(f"data/runs/{run_dir.name}-w0.5")),
        "times": notebook_times_markdown(run_dir),
        "benchmarks": benchmarks_markdown(resolve_path("data/benchmarks")),
    }
    for name, content in blocks.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- /generated:{name} -->)", re.S)
        if pattern.search(text):  # (an empty block too)
            text = pattern.sub(lambda m: m.group(1) + content + "\n" + m.group(2), text)
    readme.write_text(text)
    return readme


if __name__ == "__main__":
    print(update_readme(resolve_path(sys.argv[1] if len(sys.argv) > 1 else "data/runs/cpu")))
