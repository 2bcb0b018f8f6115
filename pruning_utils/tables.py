"""The notebooks' display tables, built from a run's artifacts and rounded for reading."""

from __future__ import annotations

import pandas as pd

from .criteria import STRATEGIES
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
    """The dense model's accuracy (eval and train mode) and size, rounded for display."""
    rows = {
        "test accuracy, eval mode (%)": f"{100 * metrics['test_accuracy']:.2f}",
        "test accuracy, train mode as the original (%)": f"{100 * metrics['test_accuracy_train_mode']:.2f}",
        "validation accuracy (%)": f"{100 * metrics['val_accuracy']:.2f}",
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
    """Our Table 2 (rounded, test accuracy %) with the original's numbers in extra rows."""
    ours = results.assign(source="ours").round(2)
    theirs = TABLE2.assign(source="original (train mode)")
    table = pd.concat([ours, theirs], ignore_index=True)
    return table.set_index(["strategy", "source"]).sort_index()[list(RESULT_COLUMNS)].rename(columns=RESULT_COLUMNS)


def criteria_summary(criteria: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (min-max over seeds) per strategy and criterion, rounded."""
    stats = criteria.groupby(["strategy", "criterion"], sort=False)[["acc_pruned", "acc_recalibrated",
                                                                    "acc_finetuned"]].agg(["mean", "min", "max"])
    return stats.round(2)
