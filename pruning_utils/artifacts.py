"""One rule for every stored result: keyed by its inputs, reused only when the key matches.

A *step* computes one or more *artifacts* (files in the run directory). Its key is a hash of
everything the result depends on (:func:`step_key`): the step's name and version
(:data:`STEP_VERSIONS`), the keys of the upstream artifacts it reads, the profile settings it
reads, the data's content key and split, and the parameters it was called with. Beside each
artifact, ``provenance/<artifact>.json`` records that key, the inputs it was computed from, the
artifact's sha256 and where it came from (code version, data, profile, seed, precision, device,
CPU, torch version, time, seconds).

An artifact is reused only when its record names the key asked for and its content still has
the recorded sha256 (:meth:`Store.is_fresh`). A missing file or record, or another key, means
recompute; a file whose content no longer matches its record is *damaged*
(:class:`ArtifactError`, naming the file and the way out: ``force`` or delete it). Records are
written only after every artifact of the step is on disk and removed before a step rewrites its
files, so a step killed halfway leaves nothing that counts as done.

The code itself enters a key through :data:`STEP_VERSIONS`: bump a step's number when what it
computes changes (the code version is recorded in every artifact's provenance, not keyed, so an
unrelated commit does not invalidate a run). :data:`REGISTRY` names every artifact with the
step that makes it and the notebook that runs that step.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .data.keys import sha256_file

# Bump a step's version when the computation behind its artifacts changes.
STEP_VERSIONS: dict[str, int] = {
    "dense": 3,
    "head_check": 1,
    "sensitivity": 2,
    "table1": 1,
    "prune_finetune": 2,
    "table2": 2,
    "filter_outputs": 2,
    "weight_stats": 1,
    "activation_stats": 1,
    "weight_histograms": 1,
    "activation_histograms": 1,
    "compaction_check": 1,
    "latency": 3,
    "frontier": 2,
    "criteria": 2,
    "iterative": 2,
    "recovery_curve": 1,
    "curve_batchnorm_check": 1,
    "original_budgets": 1,
    "narrow_dense": 1,
    "recovery_methods": 1,
    "deep_scan": 1,
    "recovered_frontier": 1,
}


@dataclass(frozen=True)
class ArtifactSpec:
    """A file of the run directory, the step that writes it and the notebook that runs that step."""

    pattern: str  # file name inside the run directory; {strategy} / {image} are filled in
    step: str
    notebook: str
    # holds wall-clock times, so its bytes differ on every computation; whether a recomputed step
    # came out different is judged by its other artifacts (see pruning_utils.runs.Run.step)
    timed: bool = False


REGISTRY: tuple[ArtifactSpec, ...] = (
    ArtifactSpec("dense.pt", "dense", "01_train"),
    ArtifactSpec("dense_history.csv", "dense", "01_train", timed=True),
    ArtifactSpec("dense_metrics.json", "dense", "01_train", timed=True),
    ArtifactSpec("layers.csv", "dense", "01_train"),
    ArtifactSpec("head_check.csv", "head_check", "01_train"),
    ArtifactSpec("sensitivity_{strategy}.csv", "sensitivity", "02_sensitivity"),
    ArtifactSpec("sparsities.csv", "table1", "03_prune_finetune"),
    ArtifactSpec("pruned_{strategy}.pt", "prune_finetune", "03_prune_finetune"),
    ArtifactSpec("finetuned_{strategy}.pt", "prune_finetune", "03_prune_finetune"),
    ArtifactSpec("finetune_history_{strategy}.csv", "prune_finetune", "03_prune_finetune", timed=True),
    ArtifactSpec("table2_{strategy}.json", "prune_finetune", "03_prune_finetune"),
    ArtifactSpec("results.csv", "table2", "03_prune_finetune"),
    ArtifactSpec("filter_outputs.csv", "filter_outputs", "03_prune_finetune"),
    ArtifactSpec("weight_stats.csv", "weight_stats", "04_weight_dists"),
    ArtifactSpec("weight_histograms.json", "weight_histograms", "04_weight_dists"),
    ArtifactSpec("activation_stats_{image}.csv", "activation_stats", "05_activations"),
    ArtifactSpec("activation_histograms_{image}.json", "activation_histograms", "05_activations"),
    ArtifactSpec("compaction_check.json", "compaction_check", "06_beyond"),
    ArtifactSpec("latency.csv", "latency", "06_beyond", timed=True),
    ArtifactSpec("frontier.csv", "frontier", "06_beyond"),
    ArtifactSpec("criteria.csv", "criteria", "06_beyond"),
    ArtifactSpec("iterative.csv", "iterative", "06_beyond"),
    ArtifactSpec("recovery_curve_{strategy}.csv", "recovery_curve", "07_across_seeds", timed=True),
    ArtifactSpec("recovery_curve_batchnorm_{strategy}.csv", "curve_batchnorm_check", "07_across_seeds", timed=True),
    ArtifactSpec("original_budgets.csv", "original_budgets", "07_across_seeds"),
    ArtifactSpec("narrow_dense.csv", "narrow_dense", "07_across_seeds"),
    ArtifactSpec("recovery_methods.csv", "recovery_methods", "07_across_seeds"),
    ArtifactSpec("deep_scan_{strategy}.csv", "deep_scan", "07_across_seeds"),
    ArtifactSpec("recovered_frontier.csv", "recovered_frontier", "07_across_seeds"),
)


class ArtifactError(RuntimeError):
    """A stored artifact or record that cannot be trusted (damaged, unreadable, foreign)."""


def spec_for(name: str) -> ArtifactSpec:
    """The registry entry whose pattern matches file ``name``; KeyError if none does."""
    for spec in REGISTRY:
        head, _, rest = spec.pattern.partition("{")
        tail = rest.partition("}")[2] if rest else ""
        if name == spec.pattern or (rest and name.startswith(head) and name.endswith(tail)):
            return spec
    raise KeyError(f"{name!r} is not a registered artifact; registered: {', '.join(s.pattern for s in REGISTRY)}")


def canonical(obj: object) -> object:
    """``obj`` as plain JSON values (tuples become lists, other objects their ``str``)."""
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


def step_key(step: str, inputs: dict) -> str:
    """Key of a step's result: sha256 of its name, version and canonical inputs (16 hex digits)."""
    if step not in STEP_VERSIONS:
        raise KeyError(f"unknown step {step!r}; steps: {', '.join(STEP_VERSIONS)}")
    text = json.dumps({"step": step, "version": STEP_VERSIONS[step], "inputs": canonical(inputs)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`write_atomic`)."""
    write_atomic(path, lambda tmp: tmp.write_text(text))


def changed_inputs(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the inputs that differ between two (canonical) input dicts."""
    changed = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_inputs(a, b, f"{prefix}{k}.")
        elif a != b:
            changed.append(f"{prefix}{k}")
    return changed


class Store:
    """The artifacts of one run directory and their records (``provenance/<name>.json``)."""

    def __init__(self, root: Path, context: dict, records_suffice: bool = False) -> None:
        self.root = Path(root)
        self.context = context  # provenance fields shared by every artifact written in this session
        # judge an artifact whose file is absent by its record alone (a run committed without its
        # model files); only for asking what is current, never for reading the artifacts
        self.records_suffice = records_suffice

    def record_path(self, name: str) -> Path:
        return self.root / "provenance" / f"{name}.json"

    def record(self, name: str) -> dict | None:
        """The record of artifact ``name``, None if there is none; ArtifactError if unreadable."""
        path = self.record_path(name)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
            record["key"], record["sha256"]  # noqa: B018 - both must be there
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ArtifactError(
                f"{path} (the record of {self.root / name}) cannot be read ({error}); delete it, or rerun with "
                "force=True (FORCE=1), to recompute that artifact"
            ) from error
        return record

    def status(self, names: list[str], key: str, inputs: dict, needed: list[str] | None = None) -> str:
        """``fresh``, or why the step must run: ``missing``, ``inputs changed: a, b``.

        ``needed`` (default: all of ``names``) are the artifacts the caller will read: each of
        ``names`` must have a record with ``key``, but only the needed ones must also be on disk. A
        reader of a Table 2 row thus reuses it in a clone that lacks the row's model files."""
        for name in names:
            record = self.record(name)
            path = self.root / name
            on_disk_or_not_needed = path.exists() or self.records_suffice or (needed is not None and name not in needed)
            if record is None or not on_disk_or_not_needed:
                return f"missing {name}"
            if record["key"] != key:
                changed = changed_inputs(record.get("inputs", {}), canonical(inputs))
                return "inputs changed: " + (", ".join(changed) if changed else "step version")
            if path.exists() and sha256_file(path) != record["sha256"]:
                raise ArtifactError(
                    f"{path} is damaged or was changed after it was written (its sha256 differs from "
                    f"{self.record_path(name)}); delete it, or rerun with force=True (FORCE=1), to recompute it"
                )
        return "fresh"

    def is_fresh(self, names: list[str], key: str, inputs: dict) -> bool:
        return self.status(names, key, inputs) == "fresh"

    def invalidate(self, names: list[str], keep_old: bool = False) -> None:
        """Remove the records of ``names`` (before their files are rewritten). ``keep_old`` moves each
        to ``<record>.old`` instead, so that what the old content was survives a kill of the
        recomputation (:meth:`recorded_sha256`); :meth:`commit` removes it."""
        for name in names:
            path = self.record_path(name)
            if keep_old and path.exists():
                os.replace(path, path.with_name(path.name + ".old"))
            else:
                path.unlink(missing_ok=True)

    def commit(self, names: list[str], key: str, step: str, inputs: dict, extra: dict | None = None) -> None:
        """Write the records of ``names``, whose files are complete on disk."""
        for name in names:
            path = self.root / name
            if not path.exists():
                raise ArtifactError(f"step {step!r} did not write {path}")
            record = {"artifact": name, "step": step, "step_version": STEP_VERSIONS[step], "key": key,
                      "sha256": sha256_file(path), "inputs": canonical(inputs), **self.context, **(extra or {})}
            write_text_atomic(self.record_path(name), json.dumps(record, indent=1, sort_keys=True) + "\n")
            self.record_path(name).with_name(f"{name}.json.old").unlink(missing_ok=True)

    def recorded_sha256(self, names: list[str], key: str) -> dict[str, str]:
        """The recorded sha256 of each of ``names`` whose record, or the record an unfinished
        recomputation set aside (``<record>.old``), carries ``key``: the content that results
        downstream were computed from, whether or not the file is still there."""
        found = {}
        for name in names:
            for path in (self.record_path(name), self.record_path(name).with_name(f"{name}.json.old")):
                try:
                    record = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(record, dict) and record.get("key") == key and "sha256" in record:
                    found[name] = record["sha256"]
                    break
        return found

    def dependents(self, keys: set[str]) -> dict[str, dict]:
        """The records that read any of ``keys``, directly or through each other (an input naming a
        key, or a key with a suffix such as ``<key>:fine-tuned``), keyed by artifact name."""
        records, found, frontier = self.records(), {}, set(keys)
        while frontier:
            readers = {name: r for name, r in records.items()
                       if name not in found and _names_a_key(r.get("inputs", {}), frontier)}
            found |= readers
            frontier = {r["key"] for r in readers.values()}
        return found

    def records(self) -> dict[str, dict]:
        """Every readable record of the run, keyed by artifact name."""
        folder = self.root / "provenance"
        out = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            record = self.record(path.name.removesuffix(".json"))
            if record is not None:
                out[record["artifact"]] = record
        return out


def _names_a_key(value: object, keys: set[str]) -> bool:
    """Whether a (canonical) input value holds one of ``keys``, alone or followed by ``:suffix``."""
    if isinstance(value, dict):
        return any(_names_a_key(v, keys) for v in value.values())
    if isinstance(value, list):
        return any(_names_a_key(v, keys) for v in value)
    return isinstance(value, str) and value.split(":", 1)[0] in keys


def machine_label(record: dict) -> str:
    """Where a step computed, from its record (or a run's context): the CPU model, or the GPU's name
    (the device, where no name was recorded) and its host CPU."""
    cpu, device = record.get("cpu", ""), record.get("device", "")
    return cpu if device in ("cpu", "") else f"{record.get('gpu') or device} (host {cpu})"


def recorded_steps(run_dir: Path) -> pd.DataFrame:
    """One row per computed step of a run (step, key, artifact, notebook, seconds, lower_bound,
    machines, cpu, device, gpu, code_version, created), from its provenance records: a step's
    artifacts share its key, so each counts once. ``device`` is where the step computed (``cpu``, or
    ``cuda`` with ``cpu`` its host and ``gpu`` its name, recorded since 2026-11-28 afternoon).
    A step made of cached points (:func:`pruning_utils.experiments.experiment_table`, inputs
    ``points``) counts what its points took wherever they ran (``machines``), not the call that
    assembled them; where some points carry no time (cached before points recorded it,
    2026-11-28 evening), its seconds are a ``lower_bound``: those of the points that do, or, in a
    record older than point times, of the call that wrote the table."""
    rows = []
    for name, r in Store(Path(run_dir), {}).records().items():
        pointwise = "point_seconds" in r
        rows.append({"step": r["step"], "key": r["key"], "artifact": name, "notebook": spec_for(name).notebook,
                     "seconds": r["point_seconds"] if pointwise else r.get("seconds", float("nan")),
                     "lower_bound": r["points_untimed"] > 0 if pointwise else "points" in r.get("inputs", {}),
                     "machines": tuple(r["point_machines"]) if pointwise and r["point_machines"] else (machine_label(r),),
                     "cpu": r.get("cpu", ""), "device": r.get("device", ""), "gpu": r.get("gpu", ""),
                     "code_version": r.get("code_version", ""), "created": r.get("created", "")})
    columns = ["step", "key", "artifact", "notebook", "seconds", "lower_bound", "machines", "cpu", "device", "gpu",
               "code_version", "created"]
    return pd.DataFrame(rows, columns=columns).drop_duplicates(["step", "key"]).reset_index(drop=True)
