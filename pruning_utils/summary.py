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
    """A DataFrame as a GitHub markdown table (no extra dependency), truth values as yes/no."""
    from .tables import readable

    frame = readable(frame)
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


Currency = dict[Path, dict[str, str]]  # run dir -> result -> "current" or why not (staleness.study_currency)


def _why_not(currency: Currency | None, path: Path, result: str) -> str | None:
    """Why ``result`` of the run in ``path`` is not current; None if it is, or if nobody asked."""
    from .staleness import CURRENT

    why = (currency or {}).get(path, {}).get(result)
    return None if why in (None, CURRENT) else why


def _current_only(frame: pd.DataFrame, path: Path, name: str, currency: Currency | None) -> pd.DataFrame:
    """The rows of artifact ``name`` of the run in ``path`` that are current (all of them if
    ``currency`` is None); a file that is one result (``name`` -> result in :data:`FILE_RESULT`)
    keeps all its rows or none. Table 2 (``results.csv``) is read row by row from the rows' own
    artifacts (``table2_<strategy>.json``), those of the current rows: ``results.csv`` is remade
    from them only when its step runs, so a row recomputed since would otherwise show its old values."""
    if currency is None:
        return frame
    if name == "results.csv":
        rows = [json.loads((path / f"table2_{s}.json").read_text()) for s in STRATEGIES
                if _why_not(currency, path, f"Table 2 {s}") is None and (path / f"table2_{s}.json").exists()]
        return pd.DataFrame(rows).reindex(columns=frame.columns)
    result = FILE_RESULT.get(name)
    return frame if result is None or _why_not(currency, path, result) is None else frame.iloc[:0]


FILE_RESULT = {**{f"recovery_curve_{s}.csv": f"recovery curve {s}" for s in STRATEGIES},
               "recovery_methods.csv": "recovery methods", "original_budgets.csv": "original budgets",
               "narrow_dense.csv": "narrow dense", "recovery_curve_batchnorm_kernel.csv": "BatchNorm check kernel",
               "filter_outputs.csv": "filter outputs", "latency.csv": "latency", "frontier.csv": "frontier",
               "criteria.csv": "criteria", "iterative.csv": "iterative", "recovered_frontier.csv": "recovered frontier"}


def not_current_markdown(currency: Currency | None, paths: dict[str, Path]) -> str:
    """What the blocks above leave out because this code would not reuse it: per run (``paths``:
    label -> run dir), the results grouped by the first stale link; empty when all is current."""
    from .staleness import CURRENT, is_missing

    lines = []
    for label, path in paths.items():
        by_reason: dict[str, list[str]] = {}
        for result, why in (currency or {}).get(path, {}).items():
            if why != CURRENT and not is_missing(why):
                by_reason.setdefault(why, []).append(result)
        lines += [f"- {label}: {', '.join(results)} ({why})" for why, results in by_reason.items()]
    if not lines:
        return ""
    return ("Not current under this code, so not shown (made by earlier code; `make report` recomputes them, "
            "each line names the first input that changed):\n\n" + "\n".join(lines))


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


def head_markdown(run_dir: Path, currency: Currency | None = None) -> str:
    """Notebook 01's check of the profile's head against the original's (``head_check.csv``)."""
    why = _why_not(currency, run_dir, "head check")
    if why or not (run_dir / "head_check.csv").exists():
        return f"Not current in this run ({why or 'missing head_check.csv'}); `make report` computes it."
    return prose.head_check_prose(pd.read_csv(run_dir / "head_check.csv"))


def table1_markdown(run_dir: Path, currency: Currency | None = None) -> str:
    ours = pd.read_csv(run_dir / "sparsities.csv")
    for s in STRATEGIES:  # a column its scan no longer gives is not shown
        if _why_not(currency, run_dir, f"Table 1 {s}"):
            ours[s] = "not current"
    merged = ours.merge(TABLE1, on="layer", suffixes=(" ours", " original"))
    cols = ["layer"] + [f"{s} {who}" for s in STRATEGIES for who in ("ours", "original")]
    return _md(merged[cols])


def table2_markdown(run_dir: Path, currency: Currency | None = None) -> str:
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
        if _why_not(currency, run_dir, f"Table 2 {s}"):
            rows.append({"model": s, **{c: "not current" for c in rows[0] if c != "model"},
                         "original: after pruning / fine-tuning (train mode)":
                             f"{o['acc_pruned']:.2f} / {o['acc_finetuned']:.2f}"})
            continue
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


def differences_markdown(run_dir: Path, currency: Currency | None = None) -> str:
    """Why our numbers differ from the original's, each reason with the measurement behind it (from
    the current results only)."""
    dense = json.loads((run_dir / "dense_metrics.json").read_text())
    results = _current_only(pd.read_csv(run_dir / "results.csv"), run_dir, "results.csv", currency).set_index("strategy")
    outputs = _current_only(pd.read_csv(run_dir / "filter_outputs.csv"), run_dir, "filter_outputs.csv", currency)
    outputs = outputs.set_index("filter_outputs")["acc_pruned"]
    record = json.loads((run_dir / "provenance" / "dense.pt.json").read_text())
    shown = [s for s in STRATEGIES if s in results.index]
    pruned_eval = ", ".join(f"{s} {results.at[s, 'acc_pruned']:.1f}%" for s in shown)
    pruned_train = ", ".join(f"{s} {results.at[s, 'acc_pruned_train_mode']:.1f}%" for s in shown)
    recal = ", ".join(f"{s} {results.at[s, 'acc_recalibrated']:.1f}%" for s in shown)
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


def _after_blank(parts: list[str], *lines: str) -> list[str]:
    """``lines`` to append to the markdown lines ``parts``, after one blank line (none added where
    ``parts`` already ends with one)."""
    return ([""] if parts and parts[-1] != "" else []) + list(lines)


def beyond_markdown(run_dir: Path, currency: Currency | None = None) -> str:
    """Notebook 06's findings, from its cached CSVs (what exists of them and is current)."""
    def shown(name: str) -> bool:
        return (run_dir / name).exists() and not _why_not(currency, run_dir, FILE_RESULT[name])

    def epochs(frame: pd.DataFrame) -> str:
        n = sorted(frame["finetune_epochs"].unique())
        return f"{'/'.join(map(str, n))} fine-tuning epoch{'s' if n != [1] else ''} per point"

    parts = []
    if shown("latency.csv"):
        parts.append("**Real speed.** " + prose.latency_prose(pd.read_csv(run_dir / "latency.csv")))
    if shown("frontier.csv"):
        front = pd.read_csv(run_dir / "frontier.csv")
        parts.append(f"**How far (equal conv budgets, {epochs(front)}).**\n\n" + prose.frontier_prose(front))
    if shown("criteria.csv"):
        crit = pd.read_csv(run_dir / "criteria.csv")
        parts.append(f"**Which weights: L2, L1, random and Taylor at Table 1's sparsities** (test accuracy, "
                     f"{epochs(crit)}).\n\n" + prose.criteria_prose(crit))
    if shown("iterative.csv"):
        parts.append("**One shot vs iterative.** " + prose.iterative_prose(pd.read_csv(run_dir / "iterative.csv")))
    return "\n\n".join(parts) or "(nothing of notebook 06 is current in this run)"


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


def _per_seed(dirs: dict[int, Path], name: str, partial: bool = False,
              currency: Currency | None = None) -> pd.DataFrame | None:
    """``name`` of every seed's run with a ``seed`` column, its current rows only
    (:func:`_current_only`); None if a seed has none, or with ``partial`` the seeds that have
    some (None if none has)."""
    frames = []
    for seed, path in dirs.items():
        frame = None
        if (path / name).exists():
            frame = (pd.DataFrame([json.loads((path / name).read_text())]) if name.endswith(".json")
                     else _current_only(pd.read_csv(path / name), path, name, currency))
        if frame is None or frame.empty:
            if partial:
                continue
            return None
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


HOLDINGS = {"Table 1": [f"Table 1 {s}" for s in STRATEGIES], "Table 2": [f"Table 2 {s}" for s in STRATEGIES],
            "recovery curves": [f"recovery curve {s}" for s in STRATEGIES], "recovery methods": ["recovery methods"],
            "original budgets": ["original budgets"], "narrow dense": ["narrow dense"],
            "BatchNorm check": ["BatchNorm check kernel"]}


def _holding(currency: Currency, path: Path, results: list[str]) -> str:
    """One cell of the holdings table: ``current``, ``stale``, ``missing``, ``-`` (not asked) or the
    strategies that are current (``current: filter``)."""
    from .staleness import CURRENT, is_missing

    whys = [currency.get(path, {}).get(r) for r in results]
    if all(w is None for w in whys):
        return "-"
    current = [r.rsplit(" ", 1)[-1] for r, w in zip(results, whys) if w == CURRENT]
    if len(current) == len(results):
        return "current"
    if current:
        return "current: " + ", ".join(current)
    return "missing" if all(w is None or is_missing(w) for w in whys) else "stale"


def seeds_markdown(run_dir: Path, currency: Currency | None = None) -> str:
    """The multi-seed findings (notebook 07) as far as every seed has them current, and what is
    still missing or stale."""
    from . import recovery_study, tables
    from .original import EVAL_MODE_CHECKPOINTS

    dirs = study_run_dirs(run_dir)
    if len(dirs) < 2:
        return 'One seed so far: `make report SEEDS="0 1 2"` runs the multi-seed study (notebook 07).'
    if currency is None:
        wanted = {"dense model": "dense_metrics.json", "Table 2": "results.csv",
                  "original budgets": "original_budgets.csv", "narrow dense": "narrow_dense.csv"}
        progress = pd.DataFrame([{"seed": s, **{k: "done" if (d / f).exists() else "missing" for k, f in wanted.items()}}
                                 for s, d in dirs.items()])
    else:
        progress = pd.DataFrame([{"seed": s, **{k: _holding(currency, d, r) for k, r in HOLDINGS.items()}}
                                 for s, d in dirs.items()])
        progress = progress.loc[:, (progress != "-").any()]
    parts = [f"Seeds {', '.join(map(str, dirs))}; what each seed's run holds"
             + (" (current: what this code reuses)" if currency is not None else "") + ":", "", _md(progress), ""]
    metrics, results = _per_seed(dirs, "dense_metrics.json"), _per_seed(dirs, "results.csv", currency=currency)
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
    budgets = _per_seed(dirs, "original_budgets.csv", partial=True, currency=currency)
    if budgets is not None:
        table = tables.original_budgets_table(budgets, EVAL_MODE_CHECKPOINTS)
        parts += [f"At the original's per-layer sparsities (mean ± sd over {_seeds_of(budgets, dirs)}):", "",
                  _md(table.reset_index()), ""]
    narrow = _per_seed(dirs, "narrow_dense.csv", partial=True, currency=currency)
    if narrow is not None and results is not None:
        table = tables.narrow_table(narrow, results)
        parts += [f"Pruned models against narrow dense networks trained from scratch (same total epochs; mean ± sd "
                  f"over {_seeds_of(narrow, dirs)}, Table 2 over the same seeds):", "", prose.narrow_prose(table), ""]
    base = run_dir
    curve_parts = {s: c for s in STRATEGIES if (c := _per_seed(dirs, f"recovery_curve_{s}.csv", partial=True, currency=currency)) is not None}
    curves = pd.concat([c.assign(strategy=s) for s, c in curve_parts.items()], ignore_index=True) if curve_parts else None
    if results is not None and len(curve_parts) == len(STRATEGIES):
        readout = recovery_study.curve_readout(curves, int(results["finetune_epochs"].iloc[0]))
        parts += [prose.recovery_seeds_prose(readout, _curve_lr(run_dir)), ""]
    checks = [part.assign(strategy=s) for s in STRATEGIES
              if (part := _per_seed(dirs, f"recovery_curve_batchnorm_{s}.csv", partial=True, currency=currency)) is not None]
    if checks:
        check = pd.concat(checks, ignore_index=True)
        emptied = {(s, seed): _emptied_filters(dirs[seed], s) for s, seed in
                   check[["strategy", "seed"]].drop_duplicates().itertuples(index=False)}
        parts += [prose.batchnorm_prose(recovery_study.batchnorm_readout(check, curves, emptied)), ""]
    if ((base / "recovered_frontier.csv").exists() and metrics is not None
            and not _why_not(currency, base, "recovered frontier")):
        front = pd.read_csv(base / "recovered_frontier.csv")
        sd = 100 * metrics["test_accuracy"].std()
        parts += _after_blank(parts, "The guided frontier with measured deep sparsities, recovered as Table 2 (seed "
                              "of the main run):", "", prose.frontier_prose(front, "Table 2's fine-tuning"), "",
                              prose.monotone_prose(recovery_study.frontier_exceptions(front, sd), sd))
    methods = _per_seed(dirs, "recovery_methods.csv", partial=True, currency=currency)
    if methods is not None and metrics is not None:
        table = tables.methods_across_seeds(methods, metrics, recovery_study.RECOVERY_TARGETS)
        parts += _after_blank(parts, prose.methods_seeds_prose(table), "")
    stale = not_current_markdown(currency, {f"seed {s}": d for s, d in dirs.items()})
    if stale:
        parts += _after_blank(parts, stale)
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


def paper_markdown(run_dir: Path, currency: Currency | None = None) -> str:
    """The paper profile's run (the original's recipe at full width, computed on a GPU), if committed."""
    if not (run_dir / "run.json").exists():
        return "(no paper-profile run committed)"
    return f"Run: {run_label(run_dir)}.\n\n" + seeds_markdown(run_dir, currency)


def width_markdown(run_dir: Path, wide_dir: Path, currency: Currency | None = None) -> str:
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
        for r in _current_only(pd.read_csv(where / "results.csv"), where, "results.csv", currency).itertuples():
            rows.append({"strategy": r.strategy, "width": width, "dense (%)": round(dense, 1),
                         "% params left": round(r.params_kept_pct, 1),
                         "% conv weights left": round(r.conv_weights_kept_pct, 1),
                         "after fine-tuning (%)": round(r.acc_finetuned, 1),
                         "drop from dense (points)": round(dense - r.acc_finetuned, 1)})
    table = pd.DataFrame(rows).sort_values(["strategy", "width"], key=lambda c: c.map(
        {s: i for i, s in enumerate(STRATEGIES)}) if c.name == "strategy" else c, kind="stable")
    chosen = pd.concat({w: pd.read_csv(d / "sparsities.csv").set_index("layer") for w, d in widths.items()}, axis=1)
    cells = pd.DataFrame({s: [" -> ".join("not current" if _why_not(currency, d, f"Table 1 {s}")
                                          else f"{chosen[(w, s)][layer]:.1f}" for w, d in widths.items())
                              for layer in chosen.index]
                          for s in STRATEGIES}, index=chosen.index).reset_index()
    drops = table.pivot(index="strategy", columns="width", values="drop from dense (points)").reindex(list(STRATEGIES))
    narrow_w, wide_w = list(widths)
    both = [s for s in STRATEGIES if drops.loc[s].notna().all()]  # current at both widths
    words = ", ".join(f"{s} {prose.signed(drops.at[s, narrow_w] - drops.at[s, wide_w])}" for s in both) or "(none current)"
    dirs = study_run_dirs(run_dir)
    results = _per_seed(dirs, "results.csv", currency=currency)
    metrics = _per_seed(dirs, "dense_metrics.json")
    spread = ""
    if results is not None and metrics is not None and len(dirs) > 1:
        sd = tables.drop_from_dense(results, metrics).groupby(results["strategy"]).std()
        spread = (f"; at width {narrow_w} the drop's sd over {len(dirs)} seeds is "
                  + ", ".join(f"{s} {sd[s]:.1f}" for s in both if s in sd) + " points")
    wide_metrics = json.loads((wide_dir / "dense_metrics.json").read_text())
    finding = (f"One seed (seed {json.loads((wide_dir / 'run.json').read_text())['seed']}) at width {wide_w} "
               f"({wide_metrics['parameters']:,} parameters). "
               f"How much smaller the drop from dense is at width {wide_w} than at {narrow_w} (points, same seed): "
               f"{words}{spread}.")
    stale = not_current_markdown(currency, {f"width {w}": d for w, d in widths.items()})
    return (f"Run: {run_label(wide_dir)}.\n\n" + finding + "\n\n" + _md(table) + "\n\nTable 1's rule at each width (sparsity chosen per "
            f"layer, width {' -> '.join(map(str, widths))}):\n\n" + _md(cells) + (f"\n\n{stale}" if stale else ""))


def readme_currency(run_dirs: list[Path]) -> Currency:
    """:func:`pruning_utils.staleness.study_currency` of every committed study the README shows."""
    from .staleness import study_currency

    found: Currency = {}
    for path in run_dirs:
        if (path / "run.json").exists():
            found |= study_currency(path)
    return found


def update_readme(run_dir: Path, readme: Path | None = None) -> Path:
    """Rewrite the README's generated blocks from the committed runs, showing only what this code
    would reuse (:func:`readme_currency`; needs the CIFAR-10 source the runs were made from)."""
    readme = readme or project_root() / "README.md"
    text = readme.read_text()
    paper, wide = resolve_path("data/runs/paper"), resolve_path(f"data/runs/{run_dir.name}-w0.5")
    currency = readme_currency([run_dir, paper, wide])
    main_stale = not_current_markdown(currency, {"this run": run_dir})
    blocks = {
        "run-label": run_label(run_dir),
        "head": head_markdown(run_dir, currency),
        "table1": table1_markdown(run_dir, currency),
        "table2": table2_markdown(run_dir, currency) + (f"\n\n{main_stale}" if main_stale else ""),
        "differences": differences_markdown(run_dir, currency),
        "beyond": beyond_markdown(run_dir, currency),
        "seeds": seeds_markdown(run_dir, currency),
        "paper": paper_markdown(paper, currency),
        "width": width_markdown(run_dir, wide, currency),
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
