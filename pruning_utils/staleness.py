"""Which stored results of a run this code would not reuse, and why.

:func:`stale_results` opens a run read-only (``compute=False``: nothing is computed or written)
and asks each step of the study for its key, in the pipeline's order; a step whose stored
result carries another key raises :class:`pruning_utils.runs.NotComputed`, which names the first
link that changed (``sensitivity (kernel): inputs changed: emptied_filters``). The keys are those
of the real steps, so what this module calls current is exactly what ``make report`` would reuse.

Runs committed without their model files (the GPU runs) are judged by their records alone
(:attr:`pruning_utils.artifacts.Store.records_suffice`): the keys of the dense model and of
Table 2 need no model file. The other steps load the dense model to make their keys; they are
asked only of runs whose dense model is there (:func:`study_currency`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

from . import experiments, frontier, narrow, recovery_study, steps
from .across_seeds import seed_run_dir
from .config import get_profile
from .criteria import STRATEGIES
from .runs import NotComputed, Run, open_run

CURRENT = "current"


def _table1_column(run: Run, strategy: str) -> None:
    """Raise NotComputed unless the stored Table 1 column of ``strategy`` is what its scan gives now."""
    chosen = steps.strategy_sparsities(run, strategy)
    if not run.path("sparsities.csv").exists():
        raise NotComputed("table1", "missing sparsities.csv")
    if steps.sparsity_dict(run.load_csv("sparsities.csv"), strategy) != chosen:
        raise NotComputed("table1", f"the stored {strategy} column is not what its scan gives")


TABLE1_COLUMNS = {f"Table 1 {s}": partial(_table1_column, strategy=s) for s in STRATEGIES}
TABLE2_ROWS = {f"Table 2 {s}": partial(steps.prune_finetune_key, strategy=s) for s in STRATEGIES}
SEED_RESULTS: dict[str, Callable[[Run], object]] = {  # also asked of every seed's run with its dense model (notebook 07)
    **{f"recovery curve {s}": partial(recovery_study.recovery_curve, strategy=s) for s in STRATEGIES},
    "recovery methods": recovery_study.recovery_methods,
    "original budgets": recovery_study.original_budgets,
    "narrow dense": narrow.narrow_dense,
}
BATCHNORM_CHECK = {"BatchNorm check kernel": partial(recovery_study.curve_batchnorm_check, strategy="kernel")}
def _head_check(run: Run) -> None:
    if steps.head_differs(run):
        steps.head_check(run)


MAIN_RESULTS: dict[str, Callable[[Run], object]] = {  # asked of the study's own run (notebooks 01-07)
    "head check": _head_check,
    "filter outputs": steps.filter_outputs,
    "latency": experiments.latency,
    "frontier": frontier.frontier,
    "criteria": experiments.criteria,
    "iterative": experiments.iterative,
    "recovered frontier": frontier.recovered_frontier,
}
MACHINE_INPUTS = ("cpu", "threads")  # a latency measured on another CPU is that CPU's, not stale


def open_read_only(run_dir: Path, data_source: str | None = None) -> Run:
    """The run in ``run_dir`` opened read-only with the profile and seed of its ``run.json``, the
    width its dense model was trained at (the one override a committed run was made with) and the
    precision it computed in (a run made on a GPU does not record it in ``run.json``); records
    stand for absent files."""
    identity = json.loads((run_dir / "run.json").read_text())
    dense = json.loads((run_dir / "provenance" / "dense.pt.json").read_text())
    width = dense["inputs"]["width"]
    overrides = {} if get_profile(identity["profile"]).width == width else {"width": width}
    run = open_run(identity["profile"], run_dir, identity["seed"], data_source, progress=False, compute=False,
                   **overrides)
    run.store.records_suffice = True
    run.precision = dense.get("precision", run.precision)
    return run


def stale_results(run: Run, results: dict[str, Callable[[Run], object]]) -> dict[str, str]:
    """For a read-only ``run``: each of ``results`` (name -> a call of its step) mapped to
    :data:`CURRENT` or to why this code would not reuse it (the first stale step and its status)."""
    if run.compute:
        raise ValueError("stale_results asks a read-only run (compute=False); this one would compute")
    found = {}
    for name, ask in results.items():
        try:
            ask(run)
            found[name] = CURRENT
        except NotComputed as error:
            found[name] = _without_machine_inputs(error.step, error.status)
    return found


def _without_machine_inputs(step: str, status: str) -> str:
    """:data:`CURRENT` where only :data:`MACHINE_INPUTS` changed, else ``"<step>: <status>"`` with them
    left out of the changed inputs, so that the reason reads the same on every machine."""
    if not status.startswith("inputs changed: "):
        return f"{step}: {status}"
    changed = [c for c in status.removeprefix("inputs changed: ").split(", ") if c not in MACHINE_INPUTS]
    return f"{step}: inputs changed: {', '.join(changed)}" if changed else CURRENT


def is_missing(why: str) -> bool:
    """Whether a :func:`stale_results` reason says the result was never made (rather than made stale)."""
    return "missing " in why and "inputs changed" not in why


def study_run_dirs(run_dir: Path) -> dict[int, Path]:
    """The study's runs by seed: the seeds of ``study.json`` (else the run's own), each in
    ``run_dir`` (the run's own seed) or ``run_dir/seed-<n>``."""
    base = json.loads((run_dir / "run.json").read_text())["seed"]
    study = run_dir / "study.json"
    seeds = json.loads(study.read_text())["seeds"] if study.exists() else [base]
    return {s: seed_run_dir(run_dir, base, s) for s in seeds}


def study_currency(run_dir: Path, data_source: str | None = None) -> dict[Path, dict[str, str]]:
    """Per run directory of the study in ``run_dir`` (its own run and every ``seed-<n>``):
    :func:`stale_results` of its results. A run committed without model files is asked only for
    its Table 1 and Table 2 rows."""
    found = {}
    for seed, path in study_run_dirs(run_dir).items():
        run = open_read_only(path, data_source)
        results = TABLE1_COLUMNS | TABLE2_ROWS
        if (path / "dense.pt").exists():
            results |= SEED_RESULTS
            if (path / "recovery_curve_batchnorm_kernel.csv").exists():
                results |= BATCHNORM_CHECK
            if path == run_dir:
                results |= MAIN_RESULTS
        found[path] = stale_results(run, results)
    return found


def stale_table2(run_dir: Path, data_source: str | None = None) -> dict[str, str]:
    """:func:`stale_results` of the Table 2 rows of the run in ``run_dir`` (model files may be absent)."""
    return stale_results(open_read_only(run_dir, data_source), TABLE2_ROWS)
