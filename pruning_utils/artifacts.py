"""One rule for every stored result: keyed by its inputs, reused only when the key matches.

A *step* computes one or more *artifacts* (files in the run directory). Its key is a hash of
everything the result depends on (:func:`step_key`): the step's name and version
(:data:`STEP_VERSIONS`), the keys of the upstream artifacts it reads, the profile settings it
reads, the data's content key and split, and the parameters it was called with. Beside each
artifact, ``provenance/<artifact>.json`` records that key, the inputs it was computed from, the
artifact's sha256 and where it came from (code version, data, profile, seed, precision, device,
CPU, torch version, time, seconds).

A record also names the content the step read (``read``: the sha256 of every artifact recorded
under an upstream key its inputs name, timing logs aside; :meth:`Store.read`). An artifact is
reused only when its record names the key asked for, its content still has the recorded sha256
(:meth:`Store.is_fresh`) and what it read is still the content recorded upstream. A missing file or
record, another key, or upstream content that changed under the same key (a dense model retrained
on another machine) means recompute; a file whose content no longer matches its record is
*damaged* (:class:`ArtifactError`, naming the file and the way out: ``force`` or delete it). Records
are written only after every artifact of the step is on disk and removed before a step rewrites
its files, so a step killed halfway leaves nothing that counts as done.

The code itself enters a key through :data:`STEP_VERSIONS`: bump a step's number when what it
computes changes (the code version is recorded in every artifact's provenance, not keyed, so an
unrelated commit does not invalidate a run). :data:`REGISTRY` names every artifact with the
step that makes it and the notebook that runs that step.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .data.cache import write_atomic
from .data.keys import sha256_file

MIGRATE = "python -m pruning_utils.artifacts --migrate RUN_DIR"  # brings an older run directory to this format

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
    # holds wall-clock times, so its bytes differ on every computation; what a step read is judged
    # by the other artifacts of its upstream steps (Store.read)
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


def digest(obj: object) -> str:
    """16 hex digits of the sha256 of ``obj`` as JSON (its dicts' keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def step_key(step: str, inputs: dict) -> str:
    """Key of a step's result: sha256 of its name, version and canonical inputs (16 hex digits)."""
    if step not in STEP_VERSIONS:
        raise KeyError(f"unknown step {step!r}; steps: {', '.join(STEP_VERSIONS)}")
    return digest({"step": step, "version": STEP_VERSIONS[step], "inputs": canonical(inputs)})


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
        """``fresh``, or why the step must run: ``missing``, ``inputs changed: a, b``, ``computed from
        another dense.pt``.

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
            if "read" not in record:
                return f"the record of {name} names no content read (older format: {MIGRATE})"
            for source, sha in record["read"].items():
                if (self.record(source) or {}).get("sha256") != sha:
                    return f"computed from another {source}"
        return "fresh"

    def is_fresh(self, names: list[str], key: str, inputs: dict) -> bool:
        return self.status(names, key, inputs) == "fresh"

    def invalidate(self, names: list[str]) -> None:
        """Remove the records of ``names`` (before their files are rewritten)."""
        for name in names:
            self.record_path(name).unlink(missing_ok=True)

    def commit(self, names: list[str], key: str, step: str, inputs: dict, extra: dict | None = None,
               reads: tuple[str, ...] = ()) -> None:
        """Write the records of ``names``, whose files are complete on disk, with what they read (:meth:`read`)."""
        read = self.read(inputs, reads)
        for name in names:
            path = self.root / name
            if not path.exists():
                raise ArtifactError(f"step {step!r} did not write {path}")
            record = {"artifact": name, "step": step, "step_version": STEP_VERSIONS[step], "key": key,
                      "sha256": sha256_file(path), "inputs": canonical(inputs), "read": read, **self.context,
                      **(extra or {})}
            write_text_atomic(self.record_path(name), json.dumps(record, indent=1, sort_keys=True) + "\n")

    def read(self, inputs: dict, reads: tuple[str, ...] = ()) -> dict[str, str]:
        """The content a step with ``inputs`` reads, as now recorded: the sha256 of each artifact whose
        record carries a key that ``inputs`` name (alone or as ``<key>:<suffix>``) or ``reads`` adds
        (a key hidden inside a hash, as the dense model's in the experiments' point keys), timing logs
        (:attr:`ArtifactSpec.timed`) aside, whose bytes differ on every computation."""
        keys = set(reads) | _keys_in(canonical(inputs))
        return {name: r["sha256"] for name, r in self.records().items()
                if r["key"] in keys and not spec_for(name).timed}

    def records(self) -> dict[str, dict]:
        """Every readable record of the run, keyed by artifact name."""
        folder = self.root / "provenance"
        out = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            record = self.record(path.name.removesuffix(".json"))
            if record is not None:
                out[record["artifact"]] = record
        return out


def _keys_in(value: object) -> set[str]:
    """Every string of a (canonical) input value, each cut at its first ``:``: the keys it may name."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return set().union(*map(_keys_in, value))
    return {value.split(":", 1)[0]} if isinstance(value, str) else set()


def content_digest(read: dict[str, str]) -> str:
    """:func:`digest` of the content ``read`` (:meth:`Store.read`); empty where nothing was read."""
    return digest(read) if read else ""


# A point cache (pruning_utils.experiments.PointCache) is a CSV whose rows each carry ``_read``, the
# content_digest of what its point was computed from, and ``_sha256``, a digest of its own cells.


def read_cells(text: str) -> pd.DataFrame:
    """A point cache's CSV text as its cells' strings (empty where blank), with ``_read`` and ``_sha256``."""
    cells = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    return cells.assign(**{c: cells.get(c, "") for c in ("_read", "_sha256")})


def signed(cells: pd.DataFrame) -> pd.DataFrame:
    """``cells`` with each row's ``_sha256``: the :func:`digest` of its non-empty cells but that one (so
    that a column added by later rows, empty in this one, leaves it be)."""
    rows = cells.to_dict("records")
    return cells.assign(_sha256=[digest({k: v for k, v in r.items() if k != "_sha256" and v != ""}) for r in rows])


def migrate(run_dir: Path) -> list[Path]:
    """Bring a run directory written before records named what they read (2026-12) to this format,
    without changing a key or an artifact: each record without ``read`` gets the content its inputs
    name as now recorded (:meth:`Store.read`; an experiment table also reads the dense model, its
    key hidden in its points' keys), except a record naming a key that no record carries (it is
    then stale: left as it is, so it is recomputed when asked); each row of a point cache that
    belongs to its table's current points gets that table's ``_read`` and its ``_sha256`` (other
    rows stay unsigned: never reused, recomputed if asked). Deterministic and idempotent (a run
    already migrated is left alone). Returns the files changed."""
    store, changed = Store(Path(run_dir), {}), []
    records = store.records()
    recorded = {r["key"] for r in records.values()}
    dense = records.get("dense.pt", {}).get("key")
    for name, record in records.items():
        pointwise = "points" in record["inputs"]
        named = _keys_in({k: v for k, v in record["inputs"].items() if k != "points"})
        if "read" in record or {k for k in named if re.fullmatch("[0-9a-f]{16}", k)} - recorded:
            continue
        record["read"] = store.read(record["inputs"], (dense,) if pointwise and dense else ())
        write_text_atomic(store.record_path(name), json.dumps(record, indent=1, sort_keys=True) + "\n")
        changed.append(store.record_path(name))
    for path in sorted((Path(run_dir) / "points").glob("*.csv")):
        table = store.record(path.name)
        cells = read_cells(path.read_text())
        if table is None or "read" not in table or (cells["_sha256"] != "").any():
            continue
        mine = cells["point"].isin(table["inputs"]["points"])
        cells.loc[mine, "_read"] = content_digest(table["read"])
        cells.loc[mine, "_sha256"] = signed(cells[mine])["_sha256"]
        write_text_atomic(path, cells.to_csv(index=False))
        changed.append(path)
    return changed


def machine_label(record: dict) -> str:
    """Where a step computed, from its record (or a run's context): the CPU model, or the GPU's name
    (the device, where no name was recorded) and its host CPU."""
    cpu, device = record.get("cpu", ""), record.get("device", "")
    return cpu if device in ("cpu", "") else f"{record.get('gpu') or device} (host {cpu})"


UNRECORDED = "not recorded"  # the machine of points cached before points recorded it


def _point_machines(record: dict) -> tuple[str, ...]:
    """Where a step's points ran; :data:`UNRECORDED` too where some points carry no machine."""
    return tuple(record["point_machines"]) + ((UNRECORDED,) if record["points_untimed"] else ())


def recorded_steps(run_dir: Path) -> pd.DataFrame:
    """One row per computed step of a run (step, key, artifact, notebook, seconds, lower_bound,
    machines, cpu, device, gpu, code_version, created), from its provenance records: a step's
    artifacts share its key, so each counts once. ``device`` is where the step computed (``cpu``, or
    ``cuda`` with ``cpu`` its host and ``gpu`` its name, recorded since 2026-11-28 afternoon).
    A step made of cached points (:func:`pruning_utils.experiments.experiment_table`, inputs
    ``points``) counts what its points took wherever they ran (``machines``), not the call that
    assembled them; where some points carry no time (cached before points recorded it,
    2026-11-28 evening), its seconds are a ``lower_bound``: those of the points that do, or, in a
    record older than point times, of the call that wrote the table, and its machines include
    :data:`UNRECORDED`."""
    rows = []
    for name, r in Store(Path(run_dir), {}).records().items():
        pointwise = "point_seconds" in r
        rows.append({"step": r["step"], "key": r["key"], "artifact": name, "notebook": spec_for(name).notebook,
                     "seconds": r["point_seconds"] if pointwise else r.get("seconds", float("nan")),
                     "lower_bound": r["points_untimed"] > 0 if pointwise else "points" in r.get("inputs", {}),
                     "machines": _point_machines(r) if pointwise and r["point_machines"] else (machine_label(r),),
                     "cpu": r.get("cpu", ""), "device": r.get("device", ""), "gpu": r.get("gpu", ""),
                     "code_version": r.get("code_version", ""), "created": r.get("created", "")})
    columns = ["step", "key", "artifact", "notebook", "seconds", "lower_bound", "machines", "cpu", "device", "gpu",
               "code_version", "created"]
    return pd.DataFrame(rows, columns=columns).drop_duplicates(["step", "key"]).reset_index(drop=True)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--migrate"] or len(sys.argv) < 3:
        sys.exit(f"usage: {MIGRATE} ... (see pruning_utils.artifacts.migrate)")
    for run_dir in [d for a in sys.argv[2:] for d in (Path(a), *sorted(Path(a).glob("seed-*")))]:  # a study's seeds too
        print(*migrate(run_dir) or [f"{run_dir}: nothing to migrate"], sep="\n")
