"""The study's steps, one function each, as the notebooks call them.

Each step reads its inputs from the run directory, writes its outputs there, and skips work
whose outputs are complete (``force=True`` redoes it). Long steps show progress and resume from
checkpoints. Artifacts (per run directory):

- ``01_train``: ``dense.pt``, ``dense_history.csv``, ``dense_metrics.json``, ``layers.csv``
- ``02_sensitivity``: ``sensitivity_<strategy>.csv``
- ``03_prune_finetune``: ``sparsities.csv`` (Table 1), ``results.csv`` (Table 2),
  ``pruned_<strategy>.pt``, ``finetuned_<strategy>.pt``, ``finetune_history_<strategy>.csv``,
  ``filter_outputs.csv`` (original vs removed filter outputs)
"""

from __future__ import annotations

import time

import pandas as pd
import torch
from torch import nn

from .compact import compact, copy_model, latency_table
from .data import to_float
from .model import CONV_NAMES, VGG16, conv_layers, count_multiply_adds
from .original import DENSE_TEST_ACCURACY, TABLE1, TABLE2
from .pruners import STRATEGIES, count_multiply_adds_masked, count_remaining_parameters, prune_model
from .runs import Run, load_model, require, save_model
from .sensitivity import choose_sparsities, scan_sensitivity
from .train import autocast, evaluate, prepare_batch, recalibrate_batchnorm, train

SEVEN_MODELS = ("dense",) + tuple(f"{s} {stage}" for s in STRATEGIES for stage in ("pruned", "fine-tuned"))


def check_strategy(strategy: str, allow_all: bool = True) -> tuple[str, ...]:
    """The strategies a ``strategy`` parameter names (``all`` -> all three); ValueError otherwise."""
    valid = STRATEGIES + (("all",) if allow_all else ())
    if strategy not in valid:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {' | '.join(valid)}")
    return STRATEGIES if strategy == "all" else (strategy,)


def test_accuracy(run: Run, model: nn.Module) -> float:
    """Test accuracy in eval mode, at the run's precision."""
    return evaluate(model, run.data.test_x, run.data.test_y, batch_size=run.profile.eval_batch_size,
                    device=run.device, precision=run.precision)


def val_accuracy(run: Run, model: nn.Module) -> float:
    return evaluate(model, run.data.val_x, run.data.val_y, batch_size=run.profile.eval_batch_size,
                    device=run.device, precision=run.precision)


@torch.no_grad()
def train_mode_accuracy(run: Run, model: nn.Module) -> float:
    """Test accuracy measured the way the original report did: train mode (BatchNorm batch
    statistics, dropout on), on a copy so the model's running statistics are untouched.

    The test images go in a seeded random order: the JPEG copy stores them class by class, and
    batch statistics of one-class batches would make this number much worse than the
    original's (its torchvision test set comes in a mixed order).
    """
    probe = copy_model(model).train()
    rng_state = torch.get_rng_state()
    generator = torch.Generator().manual_seed(run.seed)
    order = torch.randperm(len(run.data.test_x), generator=generator)
    x, y = run.data.test_x[order], run.data.test_y[order]
    torch.manual_seed(run.seed)
    correct = 0
    batch = run.profile.batch_size
    for start in range(0, len(x), batch):
        with autocast(run.device, run.precision):
            logits = probe(prepare_batch(x[start : start + batch], run.device))
        correct += int((logits.argmax(1).cpu() == y[start : start + batch]).sum())
    torch.set_rng_state(rng_state)
    return correct / len(x)


def layer_table(model: nn.Module) -> pd.DataFrame:
    """Per conv layer: shape, parameters and multiply-adds of one 32x32 image."""
    macs = count_multiply_adds_masked(model)
    params = count_remaining_parameters(model)
    rows = []
    for name, conv in conv_layers(model).items():
        rows.append({
            "layer": name,
            "in_channels": conv.in_channels,
            "out_channels": conv.out_channels,
            "parameters": params[name],
            "multiply_adds": macs[name],
        })
    return pd.DataFrame(rows)


def train_dense(run: Run, force: bool = False, progress: bool = True) -> tuple[VGG16, pd.DataFrame, dict]:
    """Train (or resume, or load) the dense model; save model, history and metrics."""
    if not force and run.path("dense.pt").exists() and run.path("dense_metrics.json").exists():
        model, _ = load_model(run.path("dense.pt"), run.device)
        metrics = run.load_json("dense_metrics.json")
        if metrics.get("metrics_version") != METRICS_VERSION:  # evaluation changed: re-measure, no retraining
            metrics |= _dense_metrics(run, model)
            run.save_json("dense_metrics.json", metrics)
        return model, run.load_csv("dense_history.csv"), metrics
    model = run.new_model()
    checkpoint = run.path("checkpoints/dense.ckpt")
    if force and checkpoint.exists():
        checkpoint.unlink()
    started = time.perf_counter()
    history = train(
        model, run.data.train_x, run.data.train_y, run.profile.train, batch_size=run.profile.batch_size,
        val=(run.data.val_x, run.data.val_y), seed=run.seed, device=run.device, precision=run.precision,
        checkpoint=checkpoint, eval_batch_size=run.profile.eval_batch_size, progress=progress, desc="dense",
    )
    model.eval()
    metrics = _dense_metrics(run, model) | {
        "train_seconds_this_call": time.perf_counter() - started,
        "train_seconds_total": float(history["seconds"].sum()),
        "epochs": int(len(history)),
        "data": run.data.source,
        "precision": run.precision,
    }
    save_model(model, run.path("dense.pt"), **metrics)
    run.save_csv("dense_history.csv", history)
    run.save_csv("layers.csv", layer_table(model))
    run.save_json("dense_metrics.json", metrics)
    return model, history, metrics


METRICS_VERSION = 2  # bump when how the dense model is measured changes


def _dense_metrics(run: Run, model: nn.Module) -> dict:
    return {
        "test_accuracy": test_accuracy(run, model),
        "val_accuracy": val_accuracy(run, model),
        "test_accuracy_train_mode": train_mode_accuracy(run, model),
        "parameters": count_remaining_parameters(model)["total"],
        "multiply_adds": count_multiply_adds(model),
        "metrics_version": METRICS_VERSION,
    }


def load_dense(run: Run) -> VGG16:
    model, _ = load_model(require(run, "dense.pt"), run.device)
    return model


def sensitivity(run: Run, strategy: str, force: bool = False, progress: bool = True) -> pd.DataFrame:
    """The per-layer scan of one strategy on the validation split (cached in the run)."""
    name = f"sensitivity_{strategy}.csv"
    if not force and run.path(name).exists():
        return run.load_csv(name)
    model = load_dense(run)
    scan = scan_sensitivity(model, run.data.val_x, run.data.val_y, strategy,
                            sparsities=run.profile.scan_sparsities, batch_size=run.profile.eval_batch_size,
                            precision=run.precision, progress=progress)
    run.save_csv(name, scan)
    return scan


def chosen_sparsities(run: Run) -> pd.DataFrame:
    """Table 1: per layer and strategy, the sparsity chosen by the original's rule from the scans."""
    table = {}
    for strategy in STRATEGIES:
        scan = run.load_csv(f"sensitivity_{strategy}.csv")
        table[strategy] = choose_sparsities(scan, run.profile.threshold)
    frame = pd.DataFrame(table).reindex(list(CONV_NAMES))
    frame.index.name = "layer"
    return frame.reset_index()


def prune_finetune(
    run: Run, strategy: str, sparsities: dict[str, float], force: bool = False, progress: bool = True
) -> dict:
    """Prune the dense model, BN-recalibrate, fine-tune; save both models; return Table 2's row."""
    pruned_path, tuned_path = run.path(f"pruned_{strategy}.pt"), run.path(f"finetuned_{strategy}.pt")
    if not force and pruned_path.exists() and tuned_path.exists():
        return load_model(tuned_path)[1]["row"]
    model = prune_model(load_dense(run), sparsities, strategy)
    params = count_remaining_parameters(model)
    macs = count_multiply_adds_masked(model)
    row = {
        "strategy": strategy,
        "params_remaining_pct": 100 * params["total"] / params["total_dense"],
        "conv_params_remaining_pct": 100 * params["conv"] / params["conv_dense"],
        "masked_multiply_adds_pct": 100 * macs["total"] / macs["total_dense"],
        "acc_pruned": 100 * test_accuracy(run, model),
        "acc_pruned_train_mode": 100 * train_mode_accuracy(run, model),
    }
    save_model(model, pruned_path, strategy=strategy, stage="pruned", sparsities=sparsities)
    recalibrate_batchnorm(model, run.data.train_x, num_batches=run.profile.recalibration_batches,
                          batch_size=run.profile.batch_size, seed=run.seed, device=run.device,
                          precision=run.precision)
    row["acc_recalibrated"] = 100 * test_accuracy(run, model)
    checkpoint = run.path(f"checkpoints/finetune_{strategy}.ckpt")
    if force and checkpoint.exists():
        checkpoint.unlink()
    history = train(
        model, run.data.train_x, run.data.train_y, run.profile.finetune, batch_size=run.profile.batch_size,
        val=(run.data.val_x, run.data.val_y), seed=run.seed, device=run.device, precision=run.precision,
        checkpoint=checkpoint, eval_batch_size=run.profile.eval_batch_size, progress=progress,
        desc=f"fine-tune {strategy}",
    )
    model.eval()
    row["acc_finetuned"] = 100 * test_accuracy(run, model)
    row["finetune_epochs"] = int(len(history))
    run.save_csv(f"finetune_history_{strategy}.csv", history)
    save_model(model, tuned_path, strategy=strategy, stage="fine-tuned", sparsities=sparsities, row=row)
    return row


def filter_output_comparison(run: Run, sparsities: dict[str, float]) -> pd.DataFrame:
    """Filter pruning at the chosen sparsities with the original's behaviour (conv bias and
    BatchNorm of a pruned filter kept, so it still emits a constant) vs. outputs removed:
    test accuracy right after pruning and after BN recalibration, eval mode.
    """
    rows = []
    for remove in (False, True):
        model = prune_model(load_dense(run), sparsities, "filter", remove_filter_outputs=remove)
        row = {"filter_outputs": "removed (ours)" if remove else "kept (original)",
               "acc_pruned": 100 * test_accuracy(run, model)}
        recalibrate_batchnorm(model, run.data.train_x, num_batches=run.profile.recalibration_batches,
                              batch_size=run.profile.batch_size, seed=run.seed, device=run.device,
                              precision=run.precision)
        row["acc_recalibrated"] = 100 * test_accuracy(run, model)
        rows.append(row)
    return pd.DataFrame(rows)


def load_seven(run: Run) -> dict[str, nn.Module]:
    """Dense, and each strategy pruned and fine-tuned, keyed as in :data:`SEVEN_MODELS`."""
    models = {"dense": load_dense(run)}
    for strategy in STRATEGIES:
        models[f"{strategy} pruned"] = load_model(require(run, f"pruned_{strategy}.pt"), run.device)[0]
        models[f"{strategy} fine-tuned"] = load_model(require(run, f"finetuned_{strategy}.pt"), run.device)[0]
    return models


def conv_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Effective weight of each conv layer (``weight_orig * weight_mask`` where pruned)."""
    return {
        name: (conv.weight_orig * conv.weight_mask if hasattr(conv, "weight_mask") else conv.weight).detach().cpu()
        for name, conv in conv_layers(model).items()
    }


@torch.no_grad()
def conv_activations(model: VGG16, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Post-ReLU activation of each conv layer for one uint8 image [3, 32, 32], eval mode."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        model.features._modules[name.replace("conv", "relu")].register_forward_hook(
            lambda m, i, o, name=name: captured.__setitem__(name, o.detach().float().cpu().clone())
        )
        for name in CONV_NAMES
    ]
    model.eval()
    try:
        device = next(model.parameters()).device
        model(to_float(image.unsqueeze(0)).to(device))
    finally:
        for hook in hooks:
            hook.remove()
    return captured


# ---------------------------------------------------------------------------------------------
# Tables and prose for the notebooks. Every number below is read from the run's artifacts.


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


def dense_prose(run: Run, metrics: dict) -> str:
    return (
        f"The dense model of this run ({run.profile.name} profile, width {run.profile.width}, "
        f"{metrics['epochs']} epochs, {metrics['train_seconds_total'] / 60:.1f} min of training on {run.device}) "
        f"reaches **{100 * metrics['test_accuracy']:.2f}%** test accuracy in eval mode "
        f"({100 * metrics['test_accuracy_train_mode']:.2f}% measured in train mode, as the original did), "
        f"with {metrics['parameters']:,} parameters. The original report's dense model: {DENSE_TEST_ACCURACY}% "
        f"(full width, 100 epochs, train-mode evaluation). Data: {metrics['data']}."
    )


def scan_table(scans: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Accuracy (%) per (strategy, layer) row and sparsity column, rounded to 0.1."""
    frame = pd.concat(scans.values())
    table = frame.pivot_table(index=["strategy", "layer"], columns="sparsity", values="accuracy", sort=False)
    return (100 * table).round(1)


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


def sparsity_dict(table: pd.DataFrame, strategy: str) -> dict[str, float]:
    """One strategy's column of Table 1 as ``{layer: sparsity}``."""
    return {layer: float(s) for layer, s in zip(table["layer"], table[strategy])}


def beside_original_table1(ours: pd.DataFrame) -> pd.DataFrame:
    merged = ours.merge(TABLE1, on="layer", suffixes=(" (ours)", " (original)"))
    return merged[["layer"] + [f"{s} ({who})" for s in STRATEGIES for who in ("ours", "original")]]


RESULT_COLUMNS = {
    "params_remaining_pct": "% params left",
    "conv_params_remaining_pct": "% conv params left",
    "masked_multiply_adds_pct": "% multiply-adds left (masked)",
    "acc_pruned": "after pruning",
    "acc_pruned_train_mode": "after pruning (train mode)",
    "acc_recalibrated": "after BN recalibration",
    "acc_finetuned": "after fine-tuning",
}


def results_table(rows: list[dict]) -> pd.DataFrame:
    """Table 2 from :func:`prune_finetune` rows."""
    return pd.DataFrame(rows)[["strategy", *RESULT_COLUMNS, "finetune_epochs"]]


def beside_original_table2(results: pd.DataFrame) -> pd.DataFrame:
    """Our Table 2 (rounded, test accuracy %) with the original's numbers in extra rows."""
    ours = results.assign(source="ours").round(2)
    theirs = TABLE2.assign(source="original (train mode)")
    table = pd.concat([ours, theirs], ignore_index=True)
    return table.set_index(["strategy", "source"]).sort_index()[list(RESULT_COLUMNS)].rename(columns=RESULT_COLUMNS)


def results_prose(run: Run, results: pd.DataFrame, outputs: pd.DataFrame) -> str:
    r = results.set_index("strategy")
    o = TABLE2.set_index("strategy")
    lines = [
        f"- **{s}**: {r.at[s, 'params_remaining_pct']:.1f}% of the parameters left "
        f"(original {o.at[s, 'params_remaining_pct']:.1f}%); test accuracy {r.at[s, 'acc_pruned']:.1f}% right after "
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
        f"Dense: {100 * dense['test_accuracy']:.2f}% (eval mode). Profile `{run.profile.name}`, width "
        f"{run.profile.width}, data: {run.data.source}.\n\n" + "\n".join(lines) + "\n\n"
        f"Filter pruning with the pruned filters' bias and BatchNorm kept (the original) gives {kept:.1f}% right "
        f"after pruning and {kept_recal:.1f}% after BN recalibration; with them removed {removed:.1f}% and "
        f"{removed_recal:.1f}%."
    )


def distribution_stats(per_model: dict[str, dict[str, torch.Tensor]]) -> pd.DataFrame:
    """Per model: non-zero values over all layers, their mean |value| and standard deviation."""
    rows = []
    for name, tensors in per_model.items():
        values = torch.cat([t.flatten().float() for t in tensors.values()])
        nz = values[values != 0]
        rows.append({"model": name, "non_zero": int(nz.numel()), "total": int(values.numel()),
                     "mean_abs": round(float(nz.abs().mean()), 4) if nz.numel() else 0.0,
                     "std": round(float(nz.std()), 4) if nz.numel() > 1 else 0.0})
    return pd.DataFrame(rows)


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


def test_image(run: Run, index: int) -> tuple[torch.Tensor, str]:
    """Test image ``index`` (uint8 [3, 32, 32]) and its class name; IndexError names the range."""
    n = len(run.data.test_x)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise IndexError(f"image_index must be an integer in [0, {n - 1}], got {index!r}")
    return run.data.test_x[index], run.data.classes[int(run.data.test_y[index])]


# ---------------------------------------------------------------------------------------------
# 06_beyond: what structure buys in real speed


def speed_models(run: Run) -> dict[str, nn.Module]:
    """The fine-tuned models as masked (dense kernels) and the filter model compacted."""
    models = load_seven(run)
    chosen = {"dense": models["dense"]}
    for strategy in STRATEGIES:
        chosen[f"{strategy} (masked)"] = models[f"{strategy} fine-tuned"]
    chosen["filter (compacted)"] = compact(models["filter fine-tuned"])
    return chosen


@torch.no_grad()
def compaction_error(run: Run, masked: nn.Module, compacted: nn.Module, images: int = 1000) -> dict:
    """Largest absolute difference of the logits of a masked and its compacted model on the first
    ``images`` test images (eval mode, fp32), and whether their predictions agree."""
    x = to_float(run.data.test_x[:images]).to(run.device)
    a, b = masked.eval()(x), compacted.eval()(x)
    return {"images": images, "max_abs_logit_difference": float((a - b).abs().max()),
            "same_predictions": bool(torch.equal(a.argmax(1), b.argmax(1)))}


def latency(run: Run, models: dict[str, nn.Module], force: bool = False) -> pd.DataFrame:
    """CPU latency table of ``models`` (cached in ``latency.csv``); see :func:`compact.latency_table`."""
    if not force and run.path("latency.csv").exists():
        return run.load_csv("latency.csv")
    table = latency_table({k: m.cpu() for k, m in models.items()}, batch_sizes=(1, 256),
                          repeats=run.profile.latency_repeats)
    run.save_csv("latency.csv", table)
    return table


def latency_prose(table: pd.DataFrame) -> str:
    t = table.set_index(["model", "batch_size"])
    dense = {b: t.loc[("dense", b), "median_ms"] for b in (1, 256)}
    lines = []
    for model in table["model"].unique():
        if model == "dense":
            continue
        r1, r256 = t.loc[(model, 1)], t.loc[(model, 256)]
        lines.append(
            f"- **{model}**: {100 * r256['masked_multiply_adds'] / t.loc[('dense', 256), 'masked_multiply_adds']:.0f}% "
            f"of the dense multiply-adds if masked weights were skipped, {100 * r256['multiply_adds'] / t.loc[('dense', 256), 'multiply_adds']:.0f}% "
            f"actually computed; latency {dense[1] / r1['median_ms']:.2f}x (batch 1) and "
            f"{dense[256] / r256['median_ms']:.2f}x (batch 256) the dense model's speed; "
            f"saved file {r256['file_size_bytes'] / 1e6:.2f} MB."
        )
    return ("Speed-up relative to the dense model (median CPU latency, fp32):\n\n" + "\n".join(lines) + "\n\n"
            "Masked models run the same dense convolutions as the dense model: their zeros are multiplied like any "
            "other weight, so fine-grained and kernel sparsity buys no speed without sparse kernels, and masked "
            "filter pruning none either. Only the compacted filter model computes fewer multiply-adds.")


def frontier_prose(frontier: pd.DataFrame) -> str:
    lines = []
    for (strategy, allocation), g in frontier.groupby(["strategy", "allocation"], sort=False):
        g = g.sort_values("budget")
        ok = g[g["acc_finetuned"] >= 80.0]
        smallest = f"{ok['conv_params_kept_pct'].min():.1f}%" if len(ok) else "none of the budgets"
        lines.append(f"- **{strategy}, {allocation}**: after a short fine-tune, accuracy at the smallest budget "
                     f"({g['conv_params_kept_pct'].iloc[0]:.1f}% of conv weights kept) is "
                     f"{g['acc_finetuned'].iloc[0]:.1f}%; the smallest budget still at >= 80%: {smallest}.")
    return "\n".join(lines)


def criteria_summary(criteria: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (min-max over seeds) per strategy and criterion, rounded."""
    stats = criteria.groupby(["strategy", "criterion"], sort=False)[["acc_pruned", "acc_recalibrated",
                                                                    "acc_finetuned"]].agg(["mean", "min", "max"])
    return stats.round(2)


def criteria_prose(criteria: pd.DataFrame) -> str:
    means = criteria.groupby(["strategy", "criterion"], sort=False)["acc_finetuned"].mean()
    pruned = criteria.groupby(["strategy", "criterion"], sort=False)["acc_recalibrated"].mean()
    lines = []
    for strategy in criteria["strategy"].unique():
        m, p = means[strategy], pruned[strategy]
        lines.append(
            f"- **{strategy}**: after BN recalibration L2 {p.get('L2', float('nan')):.1f}%, L1 "
            f"{p.get('L1', float('nan')):.1f}%, random {p.get('random', float('nan')):.1f}% (mean over seeds); "
            f"after the short fine-tune L2 {m.get('L2', float('nan')):.1f}%, L1 {m.get('L1', float('nan')):.1f}%, "
            f"random {m.get('random', float('nan')):.1f}%."
        )
    return "\n".join(lines)


def iterative_prose(iterative: pd.DataFrame) -> str:
    final = iterative.sort_values("round").groupby(["strategy", "rounds"], sort=False).tail(1)
    final = final.sort_values(["strategy", "rounds"], key=lambda c: c.map(STRATEGIES.index) if c.name == "strategy" else c)
    lines = [f"- **{r.strategy}**, {r.rounds} round(s): {r.acc_after_round:.1f}% at "
             f"{r.conv_params_kept_pct:.1f}% conv weights kept" for r in final.itertuples()]
    return "Final accuracy at the same budget and the same total fine-tuning epochs:\n\n" + "\n".join(lines)
