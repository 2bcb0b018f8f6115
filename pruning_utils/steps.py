"""The study's steps for notebooks 01-05, one function each, every result keyed by its inputs.

Each step declares what it depends on (upstream keys, settings, data, parameters) and goes
through :meth:`pruning_utils.runs.Run.step`: reused when its artifacts carry that key, else
computed. A step computes what it needs upstream on demand (never forced), so any notebook can
run on its own. Artifacts (see :data:`pruning_utils.artifacts.REGISTRY`):

- dense: ``dense.pt``, ``dense_history.csv``, ``dense_metrics.json``, ``layers.csv``;
  head_check: ``head_check.csv``
- sensitivity: ``sensitivity_<strategy>.csv`` (validation split)
- table1: ``sparsities.csv``; prune_finetune: ``pruned_<s>.pt``, ``finetuned_<s>.pt``,
  ``finetune_history_<s>.csv``, ``table2_<s>.json``; table2: ``results.csv``;
  filter_outputs: ``filter_outputs.csv``
- weight_stats: ``weight_stats.csv``; weight_histograms: ``weight_histograms.json``
- activation_stats: ``activation_stats_<image>.csv``; activation_histograms:
  ``activation_histograms_<image>.json``
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from functools import cache

import pandas as pd
import torch
from torch import nn

from .config import ORIGINAL_HEAD, head_of
from .counting import count_remaining_parameters, layer_table
from .criteria import STRATEGIES
from .distributions import by_model, conv_activations, distribution_stats, histograms
from .evaluation import evaluate, train_mode_accuracy
from .masks import conv_weights, copy_model, mask_inputs, prune_model
from .model import CONV_NAMES, VGG16, count_multiply_adds
from .model_files import load_model, save_model
from .recovery import RecoverySettings, prune_and_recover, recover
from .runs import Run
from .sensitivity import choose_sparsities, scan_sensitivity
from .training import train

DENSE_FILES = ["dense.pt", "dense_history.csv", "dense_metrics.json", "layers.csv"]
SEVEN_MODELS = ("dense",) + tuple(f"{s} {stage}" for s in STRATEGIES for stage in ("pruned", "fine-tuned"))


def check_strategy_parameter(strategy: str, allow_all: bool = True) -> tuple[str, ...]:
    """The strategies a notebook's ``strategy`` parameter names (``all`` -> all three); ValueError otherwise."""
    valid = STRATEGIES + (("all",) if allow_all else ())
    if strategy not in valid:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {' | '.join(valid)}")
    return STRATEGIES if strategy == "all" else (strategy,)


def epoch_logger(run: Run, what: str, epochs: int):
    def log(epoch: int, record: dict) -> None:
        val = "" if record["val_acc"] != record["val_acc"] else f", val {100 * record['val_acc']:.1f}%"
        run.log(f"  {what} epoch {epoch}/{epochs}: loss {record['loss']:.3f}{val}, {record['seconds']:.0f} s")
    return log


def checkpoint_path(run: Run, name: str, key: str, force: bool):
    """Where the step computing under ``key`` keeps its training checkpoint ``name``: named by the key
    and by the content the step reads (:attr:`Run.reading`), so that a training of another upstream
    content (a dense model retrained under the same key) is never resumed; any other checkpoint of
    that name and key is removed, and with ``force`` this one too."""
    digest = run.reading.get(key, "")
    path = run.path(f"checkpoints/{name}-{key}{'-' + digest if digest else ''}.ckpt")
    for old in run.path("checkpoints").glob(f"{name}-{key}*.ckpt"):
        if force or old != path:
            old.unlink()
    return path


# --- 01: the dense model ------------------------------------------------------------------------


def dense_inputs(run: Run) -> dict:
    """Everything the dense model depends on: data, seed, architecture, training recipe, precision."""
    return {"data": run.data_inputs(), "seed": run.seed,
            **run.settings("width", "dropout", "head_init", "batch_size", "train", "precision", "eval_batch_size")}


def dense_key(run: Run, force: bool | None = False) -> str:
    """Make (or reuse) the run's dense model; its key. Reads no model file: the steps downstream key
    on it and load the model only when they compute (:func:`dense_model`)."""
    inputs = dense_inputs(run)
    forced = run.force if force is None else force

    def compute(key: str) -> None:
        model = run.new_model()
        checkpoint = checkpoint_path(run, "dense", key, forced)
        identity = {"step": "dense", "key": key, "seed": run.seed, "width": run.profile.width,
                    "recipe": asdict(run.profile.train)}
        history = train(model, run.data.train_x, run.data.train_y, run.profile.train,
                        batch_size=run.profile.batch_size, val=(run.data.val_x, run.data.val_y), seed=run.seed,
                        device=run.device, precision=run.precision, checkpoint=checkpoint, identity=identity,
                        eval_batch_size=run.profile.eval_batch_size, progress=False,
                        on_epoch_end=epoch_logger(run, "dense", run.profile.train.epochs))
        model.eval()
        metrics = {**_dense_metrics(run, model), "train_seconds_total": float(history["seconds"].sum()),
                   "epochs": int(len(history)), "data": run.data.source, "precision": run.precision}
        save_model(model, run.path("dense.pt"), key=key)
        run.save_csv("dense_history.csv", history)
        run.save_csv("layers.csv", layer_table(model))
        run.save_json("dense_metrics.json", metrics)
        checkpoint.unlink(missing_ok=True)

    return run.step("dense", DENSE_FILES, inputs, compute, force)


def dense_model(run: Run, force: bool | None = False) -> tuple[VGG16, str]:
    """The run's trained dense model (trained now if it is missing or stale) and its key."""
    key = dense_key(run, force)
    content = run.store.record("dense.pt")["sha256"]  # retrained under the same key in this session: load it again
    if run.memo.get("dense") is None or run.memo["dense"][1:] != (key, content):
        run.memo["dense"] = (load_model(run.path("dense.pt"), run.device, expect_width=run.profile.width)[0], key,
                             content)
    return run.memo["dense"][:2]


def _dense_metrics(run: Run, model: nn.Module) -> dict:
    p, d = run.profile, run.data
    return {
        "test_accuracy": evaluate(model, d.test_x, d.test_y, batch_size=p.eval_batch_size, precision=run.precision),
        "val_accuracy": evaluate(model, d.val_x, d.val_y, batch_size=p.eval_batch_size, precision=run.precision),
        "test_accuracy_train_mode": train_mode_accuracy(model, d.test_x, d.test_y, batch_size=p.batch_size,
                                                        seed=run.seed, precision=run.precision),
        "parameters": count_remaining_parameters(model)["total"],
        "multiply_adds": count_multiply_adds(model),
    }


def train_dense(run: Run, force: bool | None = None) -> tuple[VGG16, pd.DataFrame, dict]:
    """Notebook 01's step: the dense model, its training history and its metrics."""
    model, _ = dense_model(run, force)
    return model, run.load_csv("dense_history.csv"), run.load_json("dense_metrics.json")


def head_differs(run: Run) -> bool:
    """Whether this run's profile trains another head than the original's (:data:`ORIGINAL_HEAD`)."""
    return head_of(run.profile) != ORIGINAL_HEAD


def head_check(run: Run, epochs: int = 2, force: bool | None = None) -> pd.DataFrame:
    """Why a profile's head differs from the original's: this run's model and training recipe, cut to
    ``epochs`` epochs (a short schedule), trained from the same seed once with the original's head
    and once with the profile's; validation accuracy after each epoch (``head_check.csv``: head,
    dropout, head_init, epoch, val_acc in %). ValueError if the profile keeps the original's head."""
    if not head_differs(run):
        raise ValueError(f"the {run.profile.name} profile keeps the original's head; there is nothing to check")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    heads = {"original": ORIGINAL_HEAD, "this profile": head_of(run.profile)}
    recipe = replace(run.profile.train, epochs=epochs)
    inputs = {"data": run.data_inputs(), "seed": run.seed, "heads": heads, "recipe": asdict(recipe),
              **run.settings("width", "batch_size", "precision", "eval_batch_size")}

    def compute(key: str) -> None:
        rows = []
        for head, settings in heads.items():
            model = run.new_model(head=settings)
            history = train(model, run.data.train_x, run.data.train_y, recipe, batch_size=run.profile.batch_size,
                            val=(run.data.val_x, run.data.val_y), seed=run.seed, device=run.device,
                            precision=run.precision, eval_batch_size=run.profile.eval_batch_size, progress=False,
                            on_epoch_end=epoch_logger(run, f"head check ({head} head)", epochs))
            rows += [{"head": head, **settings, "epoch": int(e), "val_acc": round(100 * float(a), 2)}
                     for e, a in zip(history["epoch"], history["val_acc"])]
        run.save_csv("head_check.csv", pd.DataFrame(rows))

    run.step("head_check", ["head_check.csv"], inputs, compute, force)
    return run.load_csv("head_check.csv")


# --- 02-03: scans, Table 1, Table 2 --------------------------------------------------------------


def sensitivity_key(run: Run, strategy: str, force: bool | None = False) -> str:
    """Make (or reuse) ``sensitivity_<strategy>.csv``, the per-layer scan on the validation split."""
    check_strategy_parameter(strategy, allow_all=False)
    inputs = {"dense": dense_key(run), "data": run.data_inputs(), "strategy": strategy, **mask_inputs(strategy),
              **run.settings("scan_sparsities", "eval_batch_size", "precision")}

    def compute(key: str) -> None:
        scan = scan_sensitivity(dense_model(run)[0], run.data.val_x, run.data.val_y, strategy,
                                sparsities=run.profile.scan_sparsities, batch_size=run.profile.eval_batch_size,
                                precision=run.precision, progress=run.progress)
        run.save_csv(f"sensitivity_{strategy}.csv", scan)

    return run.step("sensitivity", [f"sensitivity_{strategy}.csv"], inputs, compute, force, strategy)


def sensitivity(run: Run, strategy: str, force: bool | None = None) -> pd.DataFrame:
    """Notebook 02's step: one strategy's scan (``strategy`` in fine-grained | kernel | filter)."""
    sensitivity_key(run, strategy, force)
    return run.load_csv(f"sensitivity_{strategy}.csv")


def strategy_sparsities(run: Run, strategy: str) -> dict[str, float]:
    """One strategy's column of Table 1 (``{layer: sparsity}``), chosen from that strategy's scan
    alone, so that what is pruned by one strategy does not wait on the scans of the others."""
    sensitivity_key(run, strategy)
    return choose_sparsities(run.load_csv(f"sensitivity_{strategy}.csv"), run.profile.threshold)


def table1_key(run: Run, force: bool | None = False) -> str:
    """Make (or reuse) ``sparsities.csv``: per layer and strategy, the original's rule on the scans."""
    inputs = {"scans": {s: sensitivity_key(run, s) for s in STRATEGIES}, "threshold": run.profile.threshold}

    def compute(key: str) -> None:
        table = {s: strategy_sparsities(run, s) for s in STRATEGIES}
        frame = pd.DataFrame(table).reindex(list(CONV_NAMES))
        frame.index.name = "layer"
        run.save_csv("sparsities.csv", frame.reset_index())

    return run.step("table1", ["sparsities.csv"], inputs, compute, force)


def chosen_sparsities(run: Run, force: bool | None = None) -> pd.DataFrame:
    """Table 1 (layer, fine-grained, kernel, filter)."""
    table1_key(run, force)
    return run.load_csv("sparsities.csv")


def sparsity_dict(table: pd.DataFrame, strategy: str) -> dict[str, float]:
    """One strategy's column of Table 1 as ``{layer: sparsity}``."""
    return {layer: float(s) for layer, s in zip(table["layer"], table[strategy])}


def pruned_model(run: Run, strategy: str) -> VGG16:
    """The dense model pruned at Table 1's sparsities for ``strategy``: the masks of its Table 2 row,
    made again in seconds (the stored ``pruned_<strategy>.pt`` is not needed)."""
    return prune_model(copy_model(dense_model(run)[0]), strategy_sparsities(run, strategy), strategy)


def recovery_settings(run: Run, epochs: int | None = None, train_mode: bool = False) -> RecoverySettings:
    return RecoverySettings.from_profile(run.profile, run.seed, run.precision, epochs=epochs, train_mode=train_mode)


def prune_finetune_key(run: Run, strategy: str, force: bool | None = False, needed: list[str] | None = None) -> str:
    """Prune the dense model at Table 1's sparsities, measure, recalibrate, fine-tune (one Table 2 row).

    ``needed``: the step's files the caller reads (default all, the models included; see
    :meth:`pruning_utils.runs.Run.step`). Readers of the row alone pass :func:`row_file`."""
    sparsities = strategy_sparsities(run, strategy)
    settings = recovery_settings(run, train_mode=True)
    inputs = {"dense": dense_key(run), "data": run.data_inputs(), "strategy": strategy, **mask_inputs(strategy),
              "sparsities": sparsities, "recovery": settings.as_inputs()}
    forced = run.force if force is None else force
    names = [f"pruned_{strategy}.pt", f"finetuned_{strategy}.pt", f"finetune_history_{strategy}.csv",
             row_file(strategy)]

    def compute(key: str) -> None:
        identity = {"step": "prune_finetune", "key": key, "seed": run.seed, "strategy": strategy,
                    "recipe": asdict(settings.recipe)}
        checkpoint = checkpoint_path(run, f"finetune_{strategy}", key, forced)
        model = copy_model(dense_model(run)[0])
        row, history = recover(
            model, run.data, sparsities, strategy, settings, track_validation=True, checkpoint=checkpoint,
            identity=identity, on_pruned=lambda m: save_model(m, run.path(names[0]), key=key, stage="pruned"),
            on_epoch_end=epoch_logger(run, f"fine-tune {strategy}", settings.recipe.epochs))
        save_model(model, run.path(names[1]), key=key, stage="fine-tuned")
        run.save_csv(names[2], history)
        run.save_json(names[3], {"strategy": strategy, **row})
        checkpoint.unlink(missing_ok=True)

    return run.step("prune_finetune", names, inputs, compute, force, strategy, needed=needed)


def row_file(strategy: str) -> str:
    """The file of ``strategy``'s Table 2 row (``table2_<strategy>.json``)."""
    return f"table2_{strategy}.json"


def prune_finetune(run: Run, strategy: str, force: bool | None = None) -> dict:
    """Notebook 03's step for one strategy: its Table 2 row (computed with its models where not current;
    reused from the row alone where only the models are absent)."""
    prune_finetune_key(run, strategy, force, needed=[row_file(strategy)])
    return run.load_json(row_file(strategy))


def table2(run: Run, force: bool | None = None) -> pd.DataFrame:
    """Table 2 (``results.csv``): one row per strategy, from the prune_finetune rows (their model
    files are not read, so a clone without them reuses current rows)."""
    keys = {s: prune_finetune_key(run, s, force, needed=[row_file(s)]) for s in STRATEGIES}

    def compute(key: str) -> None:
        run.save_csv("results.csv", pd.DataFrame([run.load_json(row_file(s)) for s in STRATEGIES]))

    run.step("table2", ["results.csv"], {"rows": keys}, compute, force)
    return run.load_csv("results.csv")


def filter_outputs(run: Run, force: bool | None = None) -> pd.DataFrame:
    """Filter pruning at Table 1's sparsities with the original's behaviour (a pruned filter's conv
    bias and BatchNorm kept, so it still emits a constant) against outputs removed: test accuracy
    right after pruning and after BN recalibration, eval mode (``filter_outputs.csv``)."""
    sparsities = strategy_sparsities(run, "filter")
    settings = recovery_settings(run, epochs=0)
    inputs = {"dense": dense_key(run), "data": run.data_inputs(), "sparsities": sparsities,
              "recovery": settings.as_inputs()}

    def compute(key: str) -> None:
        dense, rows = dense_model(run)[0], []
        for remove in (False, True):
            row = prune_and_recover(dense, run.data, sparsities, "filter", settings, remove_filter_outputs=remove)
            rows.append({"filter_outputs": "removed (ours)" if remove else "kept (original)",
                         "acc_pruned": row["acc_pruned"], "acc_recalibrated": row["acc_recalibrated"]})
        run.save_csv("filter_outputs.csv", pd.DataFrame(rows))

    run.step("filter_outputs", ["filter_outputs.csv"], inputs, compute, force)
    return run.load_csv("filter_outputs.csv")


# --- 04-05: the seven models, their weights and activations ------------------------------------


def seven_model_keys(run: Run) -> dict[str, str]:
    """The keys of the seven models (named as :data:`SEVEN_MODELS`), made or reused; no model file
    read, and none made where only the files are absent (a clone: their records suffice)."""
    keys = {"dense": dense_key(run)}
    for strategy in STRATEGIES:
        key = prune_finetune_key(run, strategy, needed=[row_file(strategy)])
        keys |= {f"{strategy} {stage}": f"{key}:{stage}" for stage in ("pruned", "fine-tuned")}
    return keys


def seven_models(run: Run) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Dense, and each strategy pruned and fine-tuned (keyed as :data:`SEVEN_MODELS`), with their keys;
    a model file that is absent is made again (the models are trained where they are not on disk)."""
    keys = seven_model_keys(run)
    models = {"dense": dense_model(run)[0]}
    for strategy in STRATEGIES:
        prune_finetune_key(run, strategy)  # every file of the step on disk
        for stage, file in (("pruned", "pruned"), ("fine-tuned", "finetuned")):
            models[f"{strategy} {stage}"] = load_model(run.path(f"{file}_{strategy}.pt"), run.device,
                                                       expect_width=run.profile.width)[0]
    return models, keys


HISTOGRAM_BINS = 60  # bins of every histogram of notebooks 04 and 05


def _stats_and_histograms(run: Run, kind: str, values: Callable[[], dict[str, dict[str, torch.Tensor]]],
                          inputs: dict, suffix: str = "", label: str | None = None,
                          force: bool | None = None) -> tuple[pd.DataFrame, dict[str, dict[str, dict]]]:
    """The two steps of notebook 04 (``kind`` weight) or 05 (activation): ``<kind>_stats<suffix>.csv``
    (:func:`pruning_utils.distributions.distribution_stats`) and ``<kind>_histograms<suffix>.json``
    (:func:`pruning_utils.distributions.histograms`, read back as model -> layer -> histogram).
    ``values`` (model -> layer -> tensor) is called at most once, and only if a step computes."""
    values = cache(values)
    stats_file, hists_file = f"{kind}_stats{suffix}.csv", f"{kind}_histograms{suffix}.json"

    def stats(key: str) -> None:
        run.save_csv(stats_file, distribution_stats(values()))

    def hists(key: str) -> None:
        run.save_json(hists_file, {"histograms": histograms(values(), HISTOGRAM_BINS)})

    run.step(f"{kind}_stats", [stats_file], inputs, stats, force, label)
    run.step(f"{kind}_histograms", [hists_file], inputs | {"bins": HISTOGRAM_BINS}, hists, force, label)
    return run.load_csv(stats_file), by_model(run.load_json(hists_file)["histograms"])


def weight_distributions(run: Run, force: bool | None = None) -> tuple[pd.DataFrame, dict[str, dict[str, dict]]]:
    """Notebook 04's steps on the seven models' conv weights: per model, the non-zero weights, their
    mean |w| and spread (``weight_stats.csv``), and per model and layer the histogram of the non-zero
    weights (``weight_histograms.json``, drawn as model -> layer -> histogram by
    :func:`pruning_utils.distributions.by_model`). The models are read only when a step computes,
    so a clone with Table 2's records and without its model files reuses both."""
    return _stats_and_histograms(
        run, "weight", lambda: {name: conv_weights(m) for name, m in seven_models(run)[0].items()},
        {"models": seven_model_keys(run)}, force=force)


def activation_distributions(run: Run, image_index: int,
                             force: bool | None = None) -> tuple[pd.DataFrame, dict[str, dict[str, dict]]]:
    """Notebook 05's steps on the seven models' post-ReLU activations for test image ``image_index``:
    per model, the non-zero activations, their mean and spread (``activation_stats_<i>.csv``), and per
    model and layer their histogram (``activation_histograms_<i>.json``); models read only when a
    step computes (:func:`weight_distributions`)."""
    image = test_image(run, image_index)[0]  # checks the index
    inputs = {"models": seven_model_keys(run), "data": run.data_inputs(), "image_index": image_index}
    return _stats_and_histograms(
        run, "activation", lambda: {name: conv_activations(m, image) for name, m in seven_models(run)[0].items()},
        inputs, f"_{image_index}", f"image {image_index}", force)


def test_image(run: Run, index: int) -> tuple[torch.Tensor, str]:
    """Test image ``index`` (uint8 [3, 32, 32]) and its class name; IndexError names the range."""
    n = len(run.data.test_x)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise IndexError(f"image_index must be an integer in [0, {n - 1}], got {index!r}")
    return run.data.test_x[index], run.data.classes[int(run.data.test_y[index])]
