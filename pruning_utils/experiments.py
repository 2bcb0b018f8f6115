"""Notebook 06's experiments on a run: real speed, selection criteria, one shot against iterative
pruning (the equal-budget frontier is in :mod:`pruning_utils.frontier`). Every pruned point goes
through :func:`pruning_utils.recovery.recover`.

A sweep is a list of *points*; each point's key is :func:`pruning_utils.artifacts.step_key` of
everything it depends on (dense model key, data, strategy, per-layer sparsities, criterion,
seed, recovery settings). Finished points are kept in ``points/<experiment>.csv`` as soon as
they finish (:class:`PointCache`), so an interrupted sweep resumes at the next unfinished point;
the experiment's table (``frontier.csv`` ...) is an artifact keyed by its points' keys.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from time import perf_counter

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from .artifacts import ArtifactError, content_digest, read_cells, signed, step_key, write_text_atomic
from .compact import compact, compaction_error
from .data import to_float
from .criteria import ALIASES, CRITERIA, STRATEGIES, Criterion, Norm, check_sparsities, check_strategy, get_criterion
from .importance import taylor_importance
from .masks import mask_inputs
from .latency import latency_table, machine_inputs
from .recovery import RecoverySettings, check_choices, prune_and_recover, prune_iteratively, split_epochs
from .cpu_probe import precision_is_fast
from .runs import NotComputed, Run
from .steps import dense_model, recovery_settings, seven_model_keys, seven_models, strategy_sparsities

MEASURED = ["conv_weights_kept_pct", "acc_pruned", "acc_recalibrated", "acc_finetuned", "finetune_epochs"]
CRITERIA_COLUMNS = ["strategy", "criterion", "seed", *MEASURED]
ITERATIVE_COLUMNS = ["strategy", "rounds", "round", "conv_weights_kept_pct", "acc_after_round", "finetune_epochs"]
Point = tuple[str, str, dict, Callable[[], list[dict]]]  # key, label, fixed columns, work


class PointCache:
    """Rows of finished points in a CSV, keyed by a ``point`` column; rewritten atomically per point.
    Each point's rows also carry how long its work took and where (``_seconds``, ``_machine``; read
    by :meth:`timing`), the digest of the upstream content the point was computed from (``_read``)
    and a digest of the row's own cells (``_sha256``; :func:`pruning_utils.artifacts.signed`),
    all left out of :meth:`get`. A row computed from other content than ``read`` (a dense model
    retrained under the same key) or unsigned is a miss, so its point is recomputed; a row whose
    cells no longer match its digest is refused (:class:`ArtifactError`). With ``refresh=True``
    every lookup misses and such rows are dropped, so points are recomputed and their rows replaced."""

    def __init__(self, path: str | os.PathLike, refresh: bool = False, read: str = "") -> None:
        self.path, self.refresh, self.read = Path(path), refresh, read
        try:
            self._load(self.path.read_text() if self.path.exists() else "point\n")
        except (ValueError, KeyError, pd.errors.ParserError) as error:
            raise ArtifactError(f"point cache {self.path} cannot be read ({error}); delete it, or rerun with "
                                "force=True (FORCE=1)") from error
        damaged = (self.cells["_sha256"] != "") & (self.cells["_sha256"] != signed(self.cells)["_sha256"])
        if damaged.any() and not refresh:
            raise ArtifactError(
                f"point cache {self.path}: the rows of point {', '.join(dict.fromkeys(self.cells['point'][damaged]))} "
                "were changed after they were written (their cells no longer match their _sha256); delete those "
                "rows, or the file, to recompute their points, or rerun with force=True (FORCE=1)")
        self.cells, self.frame = self.cells[~damaged], self.frame[~damaged]

    def _load(self, text: str) -> None:
        self.cells = read_cells(text)  # as written, to check and to rewrite
        self.frame = pd.read_csv(io.StringIO(text), dtype={c: str for c in ("point", "_machine", "_read", "_sha256")})
        self.frame["point"]  # noqa: B018 - must be there

    def _rows(self, point: str) -> pd.DataFrame:
        cells = self.cells
        return self.frame[(cells["point"] == point) & (cells["_read"] == self.read) & (cells["_sha256"] != "")]

    def get(self, point: str) -> list[dict] | None:
        rows = self._rows(point)
        if self.refresh or not len(rows):
            return None
        return rows.drop(columns=[c for c in rows.columns if c == "point" or c.startswith("_")]).to_dict("records")

    def timing(self, point: str) -> tuple[float, str] | None:
        """Seconds the point's work took and the machine it ran on; None if not recorded (points
        cached before 2026-11-28 evening carry no time)."""
        rows = self._rows(point)
        if not len(rows) or "_seconds" not in rows or pd.isna(rows["_seconds"].iloc[0]):
            return None
        return float(rows["_seconds"].iloc[0]), str(rows["_machine"].iloc[0])

    def put(self, point: str, rows: list[dict], seconds: float | None = None, machine: str = "") -> None:
        timing = {} if seconds is None else {"_seconds": round(seconds, 2), "_machine": machine}
        fresh = pd.DataFrame([{"point": point, **row, **timing, "_read": self.read} for row in rows])
        kept = self.cells[self.cells["point"] != point]
        if len(fresh):
            fresh = signed(read_cells(fresh.to_csv(index=False)))
            kept = fresh if kept.empty else pd.concat([kept, fresh], ignore_index=True).fillna("")
        text = kept.to_csv(index=False)
        write_text_atomic(self.path, text)
        self._load(text)

    def timings(self, points: Sequence[str]) -> dict:
        """What ``points`` (each key once) cost in all: ``point_seconds`` (sum of the recorded times),
        ``points_untimed`` (how many have none) and ``point_machines`` (where the timed ones ran)."""
        found = [self.timing(p) for p in dict.fromkeys(points)]
        timed = [t for t in found if t is not None]
        return {"point_seconds": round(sum(t[0] for t in timed), 2), "points_untimed": len(found) - len(timed),
                "point_machines": sorted({t[1] for t in timed})}


def run_points(points: list[Point], cache: PointCache | None, progress: bool, desc: str,
               machine: str = "") -> list[dict]:
    """Run each point's work in order, skipping cached points, adding each finished one to ``cache``
    with the seconds its work took on ``machine``."""
    rows = []
    bar = tqdm(points, desc=desc, disable=not progress, mininterval=2.0)
    for key, label, fixed, work in bar:
        done = cache.get(key) if cache is not None else None
        if done is None:
            bar.set_postfix_str(label)
            started = perf_counter()
            done = [{**fixed, **row} for row in work()]
            if cache is not None:
                cache.put(key, done, perf_counter() - started, machine)
        rows.extend({**row, **fixed} for row in done)  # points may share a key (and so their result)
    return rows


def point_row(*args, **kwargs) -> list[dict]:
    """One pruned point's row: :func:`pruning_utils.recovery.prune_and_recover`'s measurements."""
    return [prune_and_recover(*args, **kwargs)]


def chosen_criteria(norms: Sequence[Norm] | None) -> list[tuple[Norm, Criterion]]:
    """``norms`` (default: every registered criterion, :data:`pruning_utils.criteria.CRITERIA`, in its
    order), each with its criterion; ValueError naming what is not registered."""
    norms = list(CRITERIA) if norms is None else norms
    check_choices("norms", norms, [*CRITERIA, *ALIASES])
    return [(norm, get_criterion(norm)) for norm in norms]


def criteria_points(dense: nn.Module, data, base: dict, sparsities_by_strategy: Mapping[str, Mapping[str, float]],
                    settings: RecoverySettings, norms: Sequence[Norm] | None = None,
                    random_seeds: int = 3, importance: Mapping[str, torch.Tensor] | None = None,
                    importance_inputs: dict | None = None) -> list[Point]:
    """The same per-layer sparsities pruned by each criterion of ``norms`` (:func:`chosen_criteria`).
    One that needs a generator (random) runs once per seed ``0 .. random_seeds - 1`` (for the selection;
    recovery always uses ``settings.seed``), the others once (seed 0); one that needs the importance
    (Taylor) gets ``importance``, and ``importance_inputs`` (what it was made from) enter its keys."""
    check_choices("strategies", list(sparsities_by_strategy), STRATEGIES)
    chosen = chosen_criteria(norms)
    if any("generator" in c.needs for _, c in chosen) and (
            isinstance(random_seeds, bool) or not isinstance(random_seeds, int) or random_seeds < 1):
        raise ValueError(f"random_seeds must be an int >= 1, got {random_seeds!r}")
    for sparsities in sparsities_by_strategy.values():
        check_sparsities(sparsities)
    needing = [c.name for _, c in chosen if "importance" in c.needs]
    if needing and (importance is None or importance_inputs is None):
        raise ValueError(f"the {', '.join(needing)} criterion needs the importance and what it was computed from")
    points = []
    for strategy, sparsities in sparsities_by_strategy.items():
        for norm, criterion in chosen:
            needs = criterion.needs
            for seed in range(random_seeds) if "generator" in needs else [0]:
                fixed = {"strategy": strategy, "criterion": criterion.name, "seed": seed}
                extra = {"importance": importance_inputs} if "importance" in needs else {}
                key = step_key("criteria", {**base, **fixed, **mask_inputs(strategy), "sparsities": dict(sparsities),
                                            "recovery": settings.as_inputs(), **extra})
                generator = torch.Generator().manual_seed(seed) if "generator" in needs else None
                work = partial(point_row, dense, data, sparsities, strategy, settings, norm=norm, generator=generator,
                               importance=importance if "importance" in needs else None)
                points.append((key, f"{strategy} {criterion.name} {seed}", fixed, work))
    return points


def iterative_points(dense: nn.Module, data, base: dict, sparsities: Mapping[str, float], strategy: str,
                     settings: RecoverySettings, rounds: Sequence[int] = (1, 3)) -> list[Point]:
    """One-shot against ``k``-round pruning to ``sparsities`` with ``settings.recipe.epochs`` epochs in
    total (:func:`pruning_utils.recovery.prune_iteratively`); one point per schedule."""
    check_strategy(strategy)
    check_sparsities(sparsities)
    points = []
    for k in rounds:
        split_epochs(settings.recipe.epochs, k)  # checks both
        fixed = {"strategy": strategy, "rounds": k}
        key = step_key("iterative", {**base, **fixed, **mask_inputs(strategy), "sparsities": dict(sparsities),
                                     "recovery": settings.as_inputs()})
        work = partial(lambda k: prune_iteratively(dense, data, sparsities, strategy, k, settings)[1], k)
        points.append((key, f"{strategy} {k} rounds", fixed, work))
    return points


def experiment_table(run: Run, name: str, points: list[Point], columns: list[str], force: bool | None) -> pd.DataFrame:
    """Run ``points`` as the artifact ``<name>.csv``, resumable through ``points/<name>.csv``; its
    record carries the points' own seconds (:meth:`PointCache.timings`), not only this call's.
    The table is keyed by its points' keys and their fixed columns: a point may be reused under a
    new label (a narrow network's matched width stays while the target it matches moves), and the
    table must then show the new label."""
    forced = run.force if force is None else force
    dense = run.store.record("dense.pt")  # every point reads the dense model, its key hidden in the point's key
    reads = (dense["key"],) if dense else ()

    def compute(key: str) -> dict:
        cache = PointCache(run.path(f"points/{name}.csv"), refresh=forced, read=run.reading[key])
        rows = run_points(points, cache, run.progress, name, run.machine())
        run.save_csv(f"{name}.csv", pd.DataFrame(rows).reindex(columns=columns))
        return cache.timings([p[0] for p in points])  # what the points cost, whenever they were computed

    inputs = {"points": [p[0] for p in points], "fixed": [p[2] for p in points]}
    try:
        run.step(name, [f"{name}.csv"], inputs, compute, force, reads=reads)
    except NotComputed as error:  # a read-only run: say how much of the table is still to compute
        cache = PointCache(run.path(f"points/{name}.csv"), read=content_digest(run.store.read(inputs, reads)))
        keys = list(dict.fromkeys(p[0] for p in points))
        todo = sum(cache.get(k) is None for k in keys)
        raise NotComputed(error.step, f"{todo} of {len(keys)} points not computed ({error.status})") from None
    return run.load_csv(f"{name}.csv")


class LazyMapping(Mapping):
    """A mapping made by ``make()`` on first use (so a table whose points are all cached, or a
    read-only run, never computes it)."""

    def __init__(self, make: Callable[[], Mapping]) -> None:
        self._make, self._made = make, None

    def _mapping(self) -> Mapping:
        if self._made is None:
            self._made = self._make()
        return self._made

    def __getitem__(self, key):
        return self._mapping()[key]

    def __iter__(self):
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())


def point_base(run: Run, dense_key: str) -> dict:
    return {"dense": dense_key, "data": run.data_inputs()}


def criteria(run: Run, norms: Sequence[Norm] | None = None, random_seeds: int | None = None,
             finetune_epochs: int | None = None, force: bool | None = None) -> pd.DataFrame:
    """Every registered criterion (:data:`pruning_utils.criteria.CRITERIA`; or those in ``norms``) at
    Table 1's sparsities (defaults: the profile's ``random_seeds`` and ``short_finetune_epochs``; the
    importance a criterion may need is the Taylor importance of the dense model on the validation split)."""
    dense, dense_key = dense_model(run)
    epochs = run.profile.short_finetune_epochs if finetune_epochs is None else finetune_epochs
    chosen = chosen_criteria(norms)  # before any work
    importance = importance_inputs = None
    if any("importance" in c.needs for _, c in chosen):
        importance_inputs = {"dense": dense_key, "data": run.data_inputs(), "split": "val",
                             **run.settings("importance_batch_size", "precision")}
        importance = LazyMapping(lambda: taylor_importance(dense, run.data.val_x, run.data.val_y,
                                                           batch_size=run.profile.importance_batch_size,
                                                           precision=run.precision))
    points = criteria_points(dense, run.data, point_base(run, dense_key), {s: strategy_sparsities(run, s) for s in STRATEGIES},
                             recovery_settings(run, epochs), norms,
                             run.profile.random_seeds if random_seeds is None else random_seeds,
                             importance, importance_inputs)
    return experiment_table(run, "criteria", points, CRITERIA_COLUMNS, force)


def iterative(run: Run, rounds: Sequence[int] | None = None, total_finetune_epochs: int | None = None,
              force: bool | None = None) -> pd.DataFrame:
    """Each strategy at Table 1's sparsities in 1 and more rounds (defaults: the profile's
    ``iterative_rounds`` and ``iterative_finetune_epochs``, by default Table 2's fine-tuning epochs)."""
    dense, dense_key = dense_model(run)
    default = run.profile.iterative_finetune_epochs or run.profile.finetune.epochs
    settings = recovery_settings(run, default if total_finetune_epochs is None else total_finetune_epochs)
    points = [p for s in STRATEGIES for p in iterative_points(
        dense, run.data, point_base(run, dense_key), strategy_sparsities(run, s), s, settings,
        run.profile.iterative_rounds if rounds is None else rounds)]
    return experiment_table(run, "iterative", points, ITERATIVE_COLUMNS, force)


# --- real speed ---------------------------------------------------------------------------------


SPEED_MODELS = {"dense": "dense", **{f"{s} (masked)": f"{s} fine-tuned" for s in STRATEGIES},
                "filter (compacted)": "filter fine-tuned"}  # timed model -> the model of the seven it is made from


def speed_model_keys(run: Run) -> dict[str, str]:
    """The keys of :func:`speed_models`' models, made or reused; no model file read."""
    keys = seven_model_keys(run)
    return {name: keys[source] + (":compacted" if "compacted" in name else "") for name, source in SPEED_MODELS.items()}


def speed_models(run: Run) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Dense, the fine-tuned models as masked (dense kernels), and the filter model compacted; with keys."""
    models, _ = seven_models(run)
    chosen = {name: compact(models[source]) if "compacted" in name else models[source]
              for name, source in SPEED_MODELS.items()}
    return chosen, speed_model_keys(run)


def stratified_sample(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` images of every class (fewer where a class has fewer), seeded, sorted."""
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picks).sort().values


LATENCY_ROUNDS = 7  # interleaved rounds of the latency table (its spread is over these)


def latency(run: Run, force: bool | None = None) -> pd.DataFrame:
    """CPU latency table of :func:`speed_models` (``latency.csv``), keyed by the models, settings and
    this machine (:func:`pruning_utils.latency.machine_inputs`); the models are read only when it is
    measured. A run that does not compute here (read-only, or made in bf16 on a CPU that emulates
    bf16, where the models could not be retrained at a usable speed) shows the table stored for
    another machine, if that is what there is, and says which machine it was measured on."""
    batch_sizes = (1, 256)
    inputs = {"models": speed_model_keys(run), "batch_sizes": batch_sizes, "repeats": run.profile.latency_repeats,
              "rounds": LATENCY_ROUNDS, **machine_inputs()}
    record = run.store.record("latency.csv")
    if record is not None and not (run.compute and precision_is_fast(run.precision, run.device)):
        inputs |= {name: record["inputs"].get(name) for name in machine_inputs()}

    def compute(key: str) -> None:
        models = speed_models(run)[0]
        table = latency_table({k: m.cpu() for k, m in models.items()}, batch_sizes=batch_sizes,
                              repeats=run.profile.latency_repeats, rounds=LATENCY_ROUNDS)
        run.save_csv("latency.csv", table)

    run.step("latency", ["latency.csv"], inputs, compute, force)
    run.log(f"latency.csv: measured on {inputs['cpu']}, {inputs['threads']} threads"
            + ("" if inputs["cpu"] == machine_inputs()["cpu"] else " (not this machine)"))
    return run.load_csv("latency.csv")


def compaction_check(run: Run, per_class: int = 100, force: bool | None = None) -> dict:
    """:func:`pruning_utils.compact.compaction_error` of the fine-tuned filter model against its
    compacted copy (:func:`speed_models`) on a stratified sample of the test split (``per_class``
    images of every class, seeded by the run's seed), with the number of classes sampled
    (``compaction_check.json``); the models are read only when it is computed."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    keys = speed_model_keys(run)
    inputs = {"masked": keys["filter (masked)"], "compacted": keys["filter (compacted)"], "data": run.data_inputs(),
              "per_class": per_class, "seed": run.seed}

    def compute(key: str) -> None:
        models = speed_models(run)[0]
        masked, compacted = models["filter (masked)"], models["filter (compacted)"]
        sample = stratified_sample(run.data.test_y, per_class, run.seed)
        x = to_float(run.data.test_x[sample]).to(next(masked.parameters()).device)
        check = compaction_error(masked, compacted, x) | {"classes": int(run.data.test_y[sample].unique().numel())}
        run.save_json("compaction_check.json", check)

    run.step("compaction_check", ["compaction_check.json"], inputs, compute, force)
    return run.load_json("compaction_check.json")
