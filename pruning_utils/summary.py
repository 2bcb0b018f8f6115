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
from .pruners import STRATEGIES
from .runs import project_root, resolve_path


def _md(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (no extra dependency)."""
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def run_label(run_dir: Path) -> str:
    record = json.loads((run_dir / "run.json").read_text())
    p = record["profile"]
    return (f"profile `{p['name']}`, width {p['width']}, seed {record['seed']}, data: {record['data']['source']}, "
            f"{record['precision']} on {record['device']}, code {record['code_version']}; accuracies are test-set "
            f"accuracy in eval mode unless marked")


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
        "model": "dense", "% params left (ours / orig.)": "100 / 100", "% conv params left": "100",
        "after pruning": f"{100 * dense['test_accuracy']:.2f}",
        "after pruning, train mode": f"{100 * dense['test_accuracy_train_mode']:.2f}",
        "after BN recal.": "-", "after fine-tuning": "-",
        "original: after pruning / fine-tuning (train mode)": f"{DENSE_TEST_ACCURACY} (dense)",
    }]
    for s in STRATEGIES:
        r, o = results.loc[s], original.loc[s]
        rows.append({
            "model": s,
            "% params left (ours / orig.)": f"{r['params_remaining_pct']:.2f} / {o['params_remaining_pct']:.2f}",
            "% conv params left": f"{r['conv_params_remaining_pct']:.2f}",
            "after pruning": f"{r['acc_pruned']:.2f}",
            "after pruning, train mode": f"{r['acc_pruned_train_mode']:.2f}",
            "after BN recal.": f"{r['acc_recalibrated']:.2f}",
            "after fine-tuning": f"{r['acc_finetuned']:.2f} ({int(r['finetune_epochs'])} ep.)",
            "original: after pruning / fine-tuning (train mode)": f"{o['acc_pruned']:.2f} / {o['acc_finetuned']:.2f}",
        })
    return _md(pd.DataFrame(rows))


def benchmarks_markdown(records_dir: Path) -> str:
    lines = []
    scan = records_dir / "sensitivity_scan.json"
    if scan.exists():
        r = json.loads(scan.read_text())
        lines.append(
            f"- Sensitivity scan ({r['strategy']}, {r['points']} points, {r['images']:,} validation images, width "
            f"{r['width']}, {r['weights']}, {r['threads']} threads, {r['when']}): naive {r['naive_seconds']:.0f} s, "
            f"ours {r['ours_seconds']:.0f} s, **speedup {r['speedup']:.2f}x, identical: {r['identical']}** "
            f"(`python benchmarks/sensitivity_scan.py`)."
        )
    train = records_dir / "train_throughput.json"
    if train.exists():
        r = json.loads(train.read_text())
        for name, m in r["results"].items():
            lines.append(
                f"- Training throughput, {name} (batch {r['batch_size']}, {r['threads']} threads, {r['when']}): "
                f"original style {m['original_img_per_s']:.0f} img/s, ours {m['ours_img_per_s']:.0f} img/s "
                f"({m['ours_precision']}), **speedup {m['speedup']:.2f}x** (`python benchmarks/train_throughput.py`)."
            )
    return "\n".join(lines) or "(no benchmark records yet: run `make benchmarks`)"


def update_readme(run_dir: Path, readme: Path | None = None) -> Path:
    readme = readme or project_root() / "README.md"
    text = readme.read_text()
    blocks = {
        "run-label": run_label(run_dir),
        "table1": table1_markdown(run_dir),
        "table2": table2_markdown(run_dir),
        "benchmarks": benchmarks_markdown(resolve_path("data/benchmarks")),
    }
    for name, content in blocks.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(\n<!-- /generated:{name} -->)", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda m: m.group(1) + content + m.group(2), text)
    readme.write_text(text)
    return readme


if __name__ == "__main__":
    print(update_readme(resolve_path(sys.argv[1] if len(sys.argv) > 1 else "data/runs/cpu")))
