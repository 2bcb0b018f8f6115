"""Figures of the study. Each function draws from saved artifacts (DataFrames, histograms) and
returns the matplotlib Figure; :func:`save` writes it under ``figures/`` and :func:`save_and_show`
also shows it in a notebook.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() == "agg" else None
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from .distributions import histogram_edges  # noqa: E402
from .model import CONV_NAMES  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")
STRATEGY_COLORS = {"fine-grained": "tab:blue", "kernel": "tab:orange", "filter": "tab:green"}


@contextlib.contextmanager
def _fixed_jitter(seed: int = 0) -> Iterator[None]:
    """Seaborn's strip plots jitter points with numpy's global random state: fix it while they draw
    (and restore it after), so a figure redrawn from the same artifacts is the same file."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def strip_points(*args, **kwargs) -> plt.Axes:
    """``sns.stripplot`` with a fixed jitter (:func:`_fixed_jitter`)."""
    with _fixed_jitter():
        return sns.stripplot(*args, **kwargs)


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Save ``fig`` as PNG (parent folders created) and return the path. Every figure here is laid
    out by ``tight_layout`` when drawn, so it is saved as laid out: ``bbox_inches="tight"`` would
    draw it once more only to measure it (a third of the cost of a 12-panel figure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def save_and_show(fig: plt.Figure, path: str | Path) -> Path:
    """:func:`save` ``fig``, close it and, in a notebook, show the saved PNG: the figure is drawn
    once, instead of a second time by the inline backend at the end of the cell."""
    path = save(fig, path)
    plt.close(fig)
    from IPython import get_ipython  # a notebook dependency; outside a kernel there is nothing to show

    if get_ipython() is not None:
        from IPython.display import Image, display

        display(Image(filename=str(path)))
    return path


def _grid(n: int, cols: int = 4, size: tuple[float, float] = (3.2, 2.4)) -> tuple[plt.Figure, list[plt.Axes]]:
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def learning_curves(history: pd.DataFrame, title: str = "Dense training") -> plt.Figure:
    """Loss and train/validation accuracy per epoch."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot(history["epoch"], history["loss"], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title=title)
    ax_acc.plot(history["epoch"], 100 * history["train_acc"], marker="o", label="train (augmented, train mode)")
    ax_acc.plot(history["epoch"], 100 * history["val_acc"], marker="o", label="validation (eval mode)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    ax_acc.legend()
    fig.tight_layout()
    return fig


def sensitivity_grid(scan: pd.DataFrame, threshold: float | None = None, title: str = "") -> plt.Figure:
    """One panel per conv layer: validation accuracy against the layer's sparsity (Figs. 6, 14-16)."""
    layers = [l for l in CONV_NAMES if l in set(scan["layer"])]
    fig, axes = _grid(len(layers))
    for ax, layer in zip(axes, layers):
        part = scan[scan["layer"] == layer]
        for strategy, group in part.groupby("strategy", sort=False):
            ax.plot(group["sparsity"], 100 * group["accuracy"], marker=".", label=strategy,
                    color=STRATEGY_COLORS.get(strategy))
        if threshold is not None:
            ax.axhline(100 * threshold, color="grey", ls="--", lw=1)
        ax.set(title=layer, xlabel="sparsity", ylabel="val. accuracy (%)", ylim=(0, 100))
    axes[0].legend(fontsize=8)
    fig.suptitle(title or f"Sensitivity scan: {', '.join(scan['strategy'].unique())}")
    fig.tight_layout()
    return fig


def layer_parameters(counts: Mapping[str, int], title: str = "Parameters per conv layer") -> plt.Figure:
    """Bar chart of parameters per conv layer (Figs. 7-8's point: early layers are small)."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.bar(list(counts), list(counts.values()), color="tab:gray")
    ax.set(ylabel="parameters", title=title)
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def layer_histograms(hists: Mapping[str, dict], title: str, xlabel: str = "weight") -> plt.Figure:
    """One histogram per layer of the non-zero values (zeros excluded), from one model's
    :func:`pruning_utils.distributions.histograms` (layer -> histogram)."""
    fig, axes = _grid(len(hists))
    for ax, (name, hist) in zip(axes, hists.items()):
        if hist["non_zero"]:  # one filled step patch, not one per bin
            ax.stairs(hist["counts"], histogram_edges(hist), fill=True, color="tab:blue", alpha=0.8)
        ax.set(title=f"{name} ({hist['non_zero']:,} non-zero)", xlabel=xlabel)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 3))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def overlay_histograms(per_model: Mapping[str, Mapping[str, dict]], title: str, xlabel: str = "weight") -> plt.Figure:
    """Per layer, the density of non-zero values of every model on one axis (models compared), from
    :func:`pruning_utils.distributions.histograms` (model -> layer -> histogram)."""
    layers = list(next(iter(per_model.values())))
    fig, axes = _grid(len(layers), size=(3.6, 2.6))
    for ax, layer in zip(axes, layers):
        for model_name, hists in per_model.items():
            hist = hists[layer]
            if hist["non_zero"] > 1:
                edges = histogram_edges(hist)
                density = np.asarray(hist["counts"]) / (hist["non_zero"] * np.diff(edges))
                ax.stairs(density, edges, label=model_name)
        ax.set(title=layer, xlabel=xlabel)
    axes[0].legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_image(image: torch.Tensor, label: str) -> plt.Figure:
    """A uint8 [3, H, W] image, upscaled without smoothing."""
    fig, ax = plt.subplots(figsize=(2.5, 2.5))
    ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set(title=label)
    ax.axis("off")
    fig.tight_layout()
    return fig


def accuracy_bars(results: pd.DataFrame, columns: Mapping[str, str], title: str) -> plt.Figure:
    """Grouped bars: one group per strategy, one bar per accuracy column (label -> column)."""
    long = results.melt(id_vars="strategy", value_vars=list(columns), var_name="stage", value_name="accuracy")
    long["stage"] = long["stage"].map(columns)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    sns.barplot(long, x="strategy", y="accuracy", hue="stage", ax=ax)
    ax.set(ylabel="test accuracy (%)", title=title, ylim=(0, 100))
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


STAGES = {"acc_pruned": "after pruning", "acc_recalibrated": "after BN recalibration",
          "acc_finetuned": "after fine-tuning"}


ALLOCATION_STYLES = {"guided": "-", "uniform": "--", "global": ":", "LAMP": "-."}


FRONTIER_SIZES = {"conv_weights_kept_pct": "% conv weights kept, masked (log)",
                  "conv_weights_effective_pct": "% conv weights kept, effective (log)"}


def frontier(results: pd.DataFrame, title: str = "Accuracy against conv weights kept",
             size: str = "conv_weights_kept_pct") -> plt.Figure:
    """One panel per stage: test accuracy vs the % of conv weights kept (``size``: masked, or
    effective from :func:`pruning_utils.frontier.frontier_sizes`), a line per strategy and
    allocation (solid: sensitivity-guided, dashed: uniform, dotted: global magnitude, dash-dot: LAMP)."""
    if size not in FRONTIER_SIZES:
        raise ValueError(f"size must be one of {sorted(FRONTIER_SIZES)}, got {size!r}")
    stages = [s for s in STAGES if s in results]
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.8), sharey=True, squeeze=False)
    for ax, stage in zip(axes[0], stages):
        for (strategy, allocation), group in results.groupby(["strategy", "allocation"], sort=False):
            group = group.sort_values(size)
            ax.plot(group[size], group[stage], marker="o", color=STRATEGY_COLORS.get(strategy),
                    ls=ALLOCATION_STYLES.get(allocation, "-"), label=f"{strategy}, {allocation}")
        ax.set(xscale="log", xlabel=FRONTIER_SIZES[size], title=STAGES[stage], ylim=(0, 100))
        below = [t for t in (0.25, 0.5, 1, 2) if t >= results[size].min()]  # effective sizes reach below the budgets
        ticks = sorted({*(results["budget"].unique() * 100), *below})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def kept_fractions(kept: pd.DataFrame, title: str = "Where each allocation keeps the weights") -> plt.Figure:
    """One panel per strategy: per conv layer, the fraction of its units kept, a line per allocation
    (:func:`pruning_utils.allocation.kept_fractions`); a hollow marker where the guard kept a layer's
    last unit."""
    strategies = list(dict.fromkeys(kept["strategy"]))
    fig, axes = plt.subplots(1, len(strategies), figsize=(4.6 * len(strategies), 3.4), sharey=True, squeeze=False)
    for ax, strategy in zip(axes[0], strategies):
        for allocation, group in kept[kept["strategy"] == strategy].groupby("allocation", sort=False):
            line, = ax.plot(group["layer"], group["kept"], marker="o", ls=ALLOCATION_STYLES.get(allocation, "-"),
                            label=allocation)
            guarded = group[group["guarded"]]
            ax.plot(guarded["layer"], guarded["kept"], ls="", marker="o", mfc="white", color=line.get_color())
        ax.set(title=f"{strategy}, budget {kept['budget'].iloc[0]:g}", yscale="log", xlabel="layer")
        ax.tick_params(axis="x", rotation=90)
    axes[0][0].set_ylabel("fraction of units kept (log)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def criteria(results: pd.DataFrame, title: str = "Which weights matter: selection criterion") -> plt.Figure:
    """Per stage, accuracy by criterion and strategy; random seeds shown as points with the mean bar."""
    stages = [s for s in STAGES if s in results]
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.8), sharey=True, squeeze=False)
    for ax, stage in zip(axes[0], stages):
        sns.barplot(results, x="strategy", y=stage, hue="criterion", errorbar=("pi", 100), ax=ax, alpha=0.8)
        strip_points(results, x="strategy", y=stage, hue="criterion", dodge=True, ax=ax, size=3, legend=False,
                      palette={c: "black" for c in results["criterion"].unique()})
        ax.set(title=STAGES[stage], ylabel="test accuracy (%)", ylim=(0, 100))
        if ax is not axes[0][-1]:
            ax.get_legend().remove()
    fig.suptitle(title + " (bars: mean, whiskers: min-max over seeds)")
    fig.tight_layout()
    return fig


def iterative(results: pd.DataFrame, title: str = "One shot vs iterative pruning") -> plt.Figure:
    """Accuracy after each round against % conv parameters kept, one line per (strategy, rounds)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (strategy, rounds), group in results.groupby(["strategy", "rounds"], sort=False):
        group = group.sort_values("round")
        ax.plot(group["conv_weights_kept_pct"], group["acc_after_round"], marker="o",
                color=STRATEGY_COLORS.get(strategy), ls="-" if rounds > 1 else ":",
                label=f"{strategy}, {rounds} round{'s' if rounds > 1 else ''}")
    ax.invert_xaxis()
    ax.set(xlabel="% conv parameters kept", ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def latency(table: pd.DataFrame, title: str = "CPU latency (median over interleaved rounds)") -> plt.Figure:
    """Median latency per model, one panel per batch size; the whiskers span the fastest to the slowest round."""
    sizes = sorted(table["batch_size"].unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 3.5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        part = table[table["batch_size"] == size]
        spread = [part["median_ms"] - part["min_ms"], part["max_ms"] - part["median_ms"]]
        ax.barh(part["model"], part["median_ms"], xerr=spread, color="tab:gray", ecolor="black", capsize=3)
        ax.set(xlabel="ms per batch", title=f"batch {size}")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def recovery_curves_seeds(frame: pd.DataFrame, readout: pd.DataFrame,
                          title: str = "Recovery at a constant fine-tuning rate") -> plt.Figure:
    """Test accuracy per fine-tuning epoch: each seed faint, the seeds' mean bold, one colour per
    strategy (``frame``: :func:`pruning_utils.recovery_study.recovery_curves` rows with a ``seed``
    column); the mean curve's plateau epoch (``readout``: :func:`~pruning_utils.recovery_study.curve_readout`)
    dashed, except on an unstable curve, whose plateau is not a reading."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for strategy, group in frame.groupby("strategy", sort=False):
        color = STRATEGY_COLORS.get(strategy)
        test = group.pivot(index="epoch", columns="seed", values="test_acc")
        for seed in test.columns:
            ax.plot(test.index, test[seed], color=color, lw=0.8, alpha=0.35)
        ax.plot(test.index, test.mean(axis=1), color=color, lw=2,
                label=f"{strategy} (mean of {test.shape[1]} seed{'s' if test.shape[1] != 1 else ''})")
        plateau = readout.at[strategy, "plateau_mean_curve"]
        if plateau is not None and not readout.at[strategy, "unstable"]:
            ax.axvline(plateau, color=color, ls="--", lw=1)
    ax.set(xlabel="fine-tuning epoch (0: after BN recalibration)", ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def batchnorm_check(frame: pd.DataFrame, title: str = "Where the recovery curves fall") -> plt.Figure:
    """Validation accuracy per fine-tuning epoch measured three ways, one panel per strategy and seed
    (``frame``: :func:`pruning_utils.recovery_study.curve_batchnorm_check` rows with ``strategy`` and
    ``seed`` columns)."""
    panels = list(frame.groupby(["strategy", "seed"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), sharey=True, squeeze=False)
    ways = {"val_acc": ("eval mode, running statistics (the curve)", "-"),
            "val_acc_recalibrated": ("eval mode, statistics re-estimated", "--"),
            "val_acc_batch_stats": ("batch statistics (train mode)", ":")}
    for ax, ((strategy, seed), part) in zip(axes[0], panels):
        part = part.sort_values("epoch")
        for column, (label, style) in ways.items():
            ax.plot(part["epoch"], part[column], ls=style, lw=1.5, color=STRATEGY_COLORS.get(strategy), label=label,
                    alpha=1.0 if column == "val_acc" else 0.7)
        ax.set(xlabel="fine-tuning epoch", title=f"{strategy}, seed {seed}")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0][0].set_ylabel("validation accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def seed_bars(frame: pd.DataFrame, columns: Mapping[str, str], title: str, reference: float | None = None,
              reference_label: str = "dense") -> plt.Figure:
    """Mean per strategy and stage as bars, each seed as a point, whiskers min-max; an optional reference line."""
    long = frame.melt(id_vars=["strategy", "seed"], value_vars=list(columns), var_name="stage", value_name="acc")
    long["stage"] = long["stage"].map(columns)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    sns.barplot(long, x="strategy", y="acc", hue="stage", errorbar=("pi", 100), ax=ax, alpha=0.8)
    strip_points(long, x="strategy", y="acc", hue="stage", dodge=True, ax=ax, size=3, legend=False,
                  palette={c: "black" for c in long["stage"].unique()})
    if reference is not None:
        ax.axhline(reference, color="black", ls="--", lw=1, label=f"{reference_label} (mean)")
    ax.set(ylabel="test accuracy (%)", ylim=(0, 100), title=f"{title} (bars: mean, whiskers: min-max over seeds)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def narrow_vs_pruned(pruned: pd.DataFrame, narrow: pd.DataFrame,
                     title: str = "Pruned models against narrow dense networks") -> plt.Figure:
    """Test accuracy against conv weights and against multiply-adds (log x): pruned models (filled,
    by strategy) and narrow dense networks trained from scratch (open), each seed a small point;
    with two seeds or more, the mean of each group with error bars of one sd (both axes).

    ``pruned``: strategy, conv_weights, multiply_adds, acc_finetuned; ``narrow``: strategy, matched,
    conv_weights, multiply_adds, test_acc."""

    def draw(ax, xs: pd.Series, ys: pd.Series, color, filled: bool, label: str) -> None:
        face = color if filled else "none"
        if len(xs) < 2:
            ax.scatter(xs, ys, facecolors=face, edgecolors=color, label=label)
            return
        ax.scatter(xs, ys, facecolors=face, edgecolors=color, s=12, alpha=0.4)
        ax.errorbar(xs.mean(), ys.mean(), xerr=xs.std(), yerr=ys.std(), color=color, capsize=3,
                    marker="o", markerfacecolor=face, markeredgecolor=color, linestyle="none",
                    label=f"{label} (mean ± sd, {len(xs)} seeds)")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, measure, matched in zip(axes, ("conv_weights", "multiply_adds"), ("conv weights", "multiply-adds")):
        for strategy, group in pruned.groupby("strategy", sort=False):
            color = STRATEGY_COLORS.get(strategy)
            draw(ax, group[measure], group["acc_finetuned"], color, True, f"{strategy}, pruned")
            mine = narrow[(narrow["strategy"] == strategy) & (narrow["matched"] == matched)]
            draw(ax, mine[measure], mine["test_acc"], color, False, f"narrow dense, {matched} of {strategy}")
        ax.set(xscale="log", xlabel=f"{matched} (log)", title=f"at equal {matched}")
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
