"""Is pruning worth it? Dense networks trained from scratch at the pruned models' sizes (notebook 07).

:func:`narrow_dense` trains, per Table 2 model, a dense network of the same architecture at the
width whose conv weights match the pruned model's and, separately, at the width whose multiply-adds
match, for as many epochs as the pruned model saw in all (dense training + fine-tuning), after Liu
et al. 2019, "Rethinking the value of network pruning" (``narrow_dense.csv``). The sizes matched are
*effective* (:func:`effective_sizes`): what the pruned model keeps once compacted, so a removed
filter also takes the next layer's input channels that read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import pandas as pd
import torch

from .artifacts import step_key
from .compact import effective_counts
from .criteria import STRATEGIES
from .evaluation import evaluate
from .experiments import Point, experiment_table
from .model import VGG16, conv_layers, count_multiply_adds, scaled_channels
from .runs import Run
from .steps import epoch_logger, pruned_model, table2
from .training import train

NARROW_COLUMNS = ["strategy", "matched", "width", "channels", "conv_weights", "multiply_adds", "epochs",
                  "test_acc", "target_conv_weights", "target_multiply_adds"]


def conv_weight_count(model: torch.nn.Module) -> int:
    """Number of conv weights (biases not counted, as in "% conv weights left")."""
    return sum(conv.weight.numel() for conv in conv_layers(model).values())


def effective_sizes(run: Run) -> pd.DataFrame:
    """Per strategy, what the run's Table 2 model physically keeps: the conv weights and multiply-adds
    of :func:`pruning_utils.compact.effective_counts` on the masks at Table 1's sparsities (the masks
    fine-tuning keeps). A removed filter takes the next layer's input channels with it, so for filter
    pruning these are well below the masked counts of ``results.csv``."""
    rows = []
    for strategy in STRATEGIES:
        counts = effective_counts(pruned_model(run, strategy))
        rows.append({"strategy": strategy, "conv_weights": counts["conv_weights"],
                     "multiply_adds": counts["multiply_adds"]})
    return pd.DataFrame(rows)


def narrow_widths(width: float, sizes: pd.DataFrame) -> pd.DataFrame:
    """Per row of ``sizes`` (strategy, conv_weights, multiply_adds: the pruned models' effective
    counts, :func:`effective_sizes`), the widths below ``width`` whose dense conv weights / multiply-adds
    come nearest."""
    by_channels: dict[tuple[int, ...], float] = {}  # the smallest width giving each channel configuration
    for i in range(8, 257):
        candidate = round(width * i / 256, 6)
        by_channels.setdefault(scaled_channels(candidate), candidate)
    candidates = list(by_channels.values())
    conv_of = {w: conv_weight_count(VGG16(width=w)) for w in candidates}
    macs_of = {w: count_multiply_adds(VGG16(width=w)) for w in candidates}
    rows = []
    for _, r in sizes.iterrows():
        targets = {"conv weights": float(r["conv_weights"]), "multiply-adds": float(r["multiply_adds"])}
        for matched, table in (("conv weights", conv_of), ("multiply-adds", macs_of)):
            best = min(candidates, key=lambda w: (abs(table[w] - targets[matched]), w))
            rows.append({"strategy": r["strategy"], "matched": matched, "width": best,
                         "target_conv_weights": targets["conv weights"], "target_multiply_adds": targets["multiply-adds"]})
    return pd.DataFrame(rows)


def _train_narrow(run: Run, width: float, epochs: int) -> list[dict]:
    p = run.profile
    model = run.new_model(width)
    train(model, run.data.train_x, run.data.train_y, replace(p.train, epochs=epochs), batch_size=p.batch_size,
          seed=run.seed, device=run.device, precision=run.precision, progress=False,
          on_epoch_end=epoch_logger(run, f"narrow dense width {width}", epochs))
    return [{"channels": "/".join(str(c.out_channels) for c in list(conv_layers(model).values())[::3]),
             "conv_weights": conv_weight_count(model), "multiply_adds": count_multiply_adds(model), "epochs": epochs,
             "test_acc": 100 * evaluate(model, run.data.test_x, run.data.test_y, batch_size=p.eval_batch_size,
                                        device=run.device, precision=run.precision)}]


def narrow_dense(run: Run, force: bool | None = None) -> pd.DataFrame:
    """Dense networks from scratch at the widths matching each Table 2 model's effective size
    (:func:`effective_sizes`; see the module docstring).

    Each trains with the dense recipe for ``train.epochs + finetune.epochs`` epochs (the pruned
    model's whole budget). Points with the same width are trained once."""
    table2(run, force=False)  # the pruned models it matches must be current
    widths = narrow_widths(run.profile.width, effective_sizes(run))
    epochs = run.profile.train.epochs + run.profile.finetune.epochs
    inputs = {"data": run.data_inputs(), "seed": run.seed, "epochs": epochs,
              **run.settings("dropout", "head_init", "batch_size", "train", "precision", "eval_batch_size")}
    points: list[Point] = []
    for _, w in widths.iterrows():
        key = step_key("narrow_dense", {**inputs, "width": w["width"]})
        fixed = w.to_dict()
        points.append((key, f"{w['strategy']} {w['matched']}", fixed, partial(_train_narrow, run, w["width"], epochs)))
    return experiment_table(run, "narrow_dense", points, NARROW_COLUMNS, force)


def pruned_sizes(runs: Sequence[Run], results: pd.DataFrame) -> pd.DataFrame:
    """Table 2 rows (``seed``, ``strategy``, ``acc_finetuned``) of ``runs``' seeds with the pruned
    models' effective conv weights and multiply-adds (:func:`effective_sizes`)."""
    sizes = pd.concat([effective_sizes(run).assign(seed=run.seed) for run in runs], ignore_index=True)
    return results.merge(sizes, on=["seed", "strategy"])
