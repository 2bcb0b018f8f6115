"""A study run: its directory, its data, its lock, and how its steps are run and reused.

Every notebook opens the run with :func:`open_run` (checks the parameters before any work, loads
the data). ``run.json`` names the run once, when the directory is created: profile and seed; a
directory is never reopened with another profile or seed. Everything else a result depends on
(settings, data, upstream results, parameters) is part of that result's key
(:mod:`pruning_utils.artifacts`), so a setting changed on an existing run recomputes exactly the
steps that read it (:meth:`Run.step`).

One process computes in a run directory at a time: :func:`run_lock` holds an exclusive lock on
``<run_dir>/.lock`` while a step computes (and ``pruning_utils.report`` holds it for a whole
report, passing it on to its notebooks through ``$PRUNING_RUN_LOCK``); another process gets
:class:`RunBusyError` at once, and a directory that cannot be written :class:`RunDirectoryError`.
Relative paths are relative to the project root: the checkout of the imported package, which
:func:`open_run` checks is the checkout it runs in (:func:`check_checkout`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from .artifacts import (ArtifactError, Store, canonical, content_digest, machine_label, spec_for, step_key,
                        write_text_atomic)
from .config import Profile, get_profile, head_of
from .cpu_probe import PROBE_FILE, check_precision_is_fast, evaluation_batch_size, training_precision
from .data import SOURCE_ENV_VAR, CifarSplits, load_splits
from .evaluation import pick_device, resolve_precision
from .latency import cpu_model
from .model import VGG16

PROFILE_ENV_VAR = "PRUNING_PROFILE"
RUN_DIR_ENV_VAR = "PRUNING_RUN_DIR"
LOCK_ENV_VAR = "PRUNING_RUN_LOCK"  # run directories whose lock a parent process holds (os.pathsep-separated)


class RunBusyError(RuntimeError):
    """Another process is computing in this run directory."""


class RunDirectoryError(RuntimeError):
    """The run directory cannot be written (read-only, or not a directory)."""


class CheckoutMismatchError(RuntimeError):
    """Python imports ``pruning_utils`` from another checkout than the one being worked in."""


class NotComputed(RuntimeError):
    """A step's stored results are missing or stale, and the run may only read (``compute=False``)."""

    def __init__(self, step: str, status: str) -> None:
        super().__init__(f"{step}: {status}; this run only reads stored results (compute=False)")
        self.step, self.status = step, status


def _checkout_at_or_above(path: Path) -> Path | None:
    """The nearest directory at or above ``path`` holding ``pyproject.toml`` and ``pruning_utils/``."""
    path = path.resolve()
    found = (d for d in (path, *path.parents) if (d / "pyproject.toml").exists() and (d / "pruning_utils").is_dir())
    return next(found, None)


def project_root() -> Path:
    """The directory holding ``pyproject.toml`` above this package (the repository root)."""
    return _checkout_at_or_above(Path(__file__).parent) or Path.cwd()


def check_checkout(cwd: str | os.PathLike | None = None) -> None:
    """Refuse to work for a checkout whose ``pruning_utils`` is not the one Python imported.

    Two checkouts can share one virtualenv, whose editable install points at one of them; a kernel
    started in the other's ``notebooks/`` (papermill, JupyterLab) imports the first one's package,
    and would write its results into the first one's ``data/runs``. The checkout worked in is the one
    at or above ``cwd`` (default: the working directory); outside any checkout nothing is checked."""
    checkout = _checkout_at_or_above(Path(cwd or Path.cwd()))
    package = Path(__file__).resolve().parent
    if checkout is None or package == (checkout / "pruning_utils").resolve():
        return
    raise CheckoutMismatchError(
        f"this is the checkout {checkout}, but Python imports pruning_utils from {package}, so its results would "
        f"go to {project_root() / 'data' / 'runs'}. Make Python import this checkout's package: run with "
        f"PYTHONPATH={checkout} (make and pruning_utils.report set it), or give this checkout its own virtualenv")


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` itself if absolute, else relative to :func:`project_root`."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


CODE_VERSION_ENV_VAR = "PRUNING_CODE_VERSION"  # the commit a copied tree (no .git) was taken from
CODE_PATHS = ("pruning_utils", "notebooks", "benchmarks", "pyproject.toml", "Makefile")  # what "code" means


def code_version() -> str:
    """The commit (``git rev-parse --short HEAD``), with ``-dirty`` when the code (:data:`CODE_PATHS`)
    differs from it; changed results and docs do not count. A copy of the tree run elsewhere (a GPU
    machine, whose copied ``.git`` may name another commit) states its commit in
    ``$PRUNING_CODE_VERSION``, recorded with ``-copy`` appended. ``unknown`` outside git."""
    if os.environ.get(CODE_VERSION_ENV_VAR):
        return f"{os.environ[CODE_VERSION_ENV_VAR]}-copy"
    outside = "unknown"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project_root(), capture_output=True,
                              text=True, timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", *CODE_PATHS], cwd=project_root(),
                                 capture_output=True, text=True, timeout=10).stdout.strip()
        return (head + ("-dirty" if changed else "")) if head else outside
    except (OSError, subprocess.SubprocessError):
        return outside


_held: dict[str, int] = {}  # run directories locked by this process -> nesting depth


def _open_lock_file(run_dir: Path) -> int:
    """``<run_dir>/.lock`` opened for writing, once the directory is known to take new files (a run
    writes its results beside its lock); a directory that cannot be written is refused with the way out."""
    probe = run_dir / f".write-probe-{os.getpid()}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        os.unlink(probe)
        return os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise RunDirectoryError(
            f"run directory {run_dir} cannot be written ({error.strerror or error}): a run keeps its lock and its "
            f"results there. Make it writable (chmod -R u+w {run_dir}), or choose another run directory (--run-dir "
            "or $PRUNING_RUN_DIR for make report, run_dir=... for open_run)") from error


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's exclusive lock (re-entrant in one process; inherited via ``$PRUNING_RUN_LOCK``).

    :class:`RunBusyError` if another process holds it, :class:`RunDirectoryError` if the directory
    cannot be written."""
    where = str(Path(run_dir).resolve())
    if where in os.environ.get(LOCK_ENV_VAR, "").split(os.pathsep) or _held.get(where):
        _held[where] = _held.get(where, 0) + 1
        try:
            yield
        finally:
            _held[where] -= 1
        return
    fd = _open_lock_file(Path(run_dir))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RunBusyError(f"run directory {run_dir} is in use by another process ({holder}); wait for it to "
                               "finish, or use another run_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {platform.node()}".encode(), 0)
        _held[where] = 1
        try:
            yield
        finally:
            _held[where] = 0
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _plain(value: object) -> object:
    return asdict(value) if is_dataclass(value) else value


@dataclass
class Run:
    """An open study run: settings, data, where artifacts and figures go, and its step log."""

    profile: Profile
    seed: int
    run_dir: Path
    figures_dir: Path
    data: CifarSplits
    device: torch.device
    precision: str
    force: bool = False  # recompute the steps a notebook calls directly (never their upstream steps)
    compute: bool = True  # False: only read current stored results; a missing or stale one raises NotComputed
    progress: bool = True
    events: list[dict] = field(default_factory=list)
    memo: dict = field(default_factory=dict)  # objects loaded in this session, keyed by what they are
    opened_with: dict = field(default_factory=dict)  # open_run's profile, data_source and overrides (for other seeds)
    # key of a step being computed -> content_digest of what it reads, which names its checkpoints
    reading: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._current: set[tuple[str, str]] = set()
        self.store = Store(self.run_dir, {
            "profile": self.profile.name, "seed": self.seed, "data": self.data.describe(),
            "precision": self.precision, "device": str(self.device), "cpu": cpu_model(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "code_version": code_version(),
            **({"gpu": torch.cuda.get_device_name(self.device)} if self.device.type == "cuda" else {})})

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def figure_path(self, name: str) -> Path:
        return self.figures_dir / f"{name}.png"

    def new_model(self, width: float | None = None, head: dict | None = None) -> VGG16:
        """A freshly initialised model of this run's width and head, or of ``width`` and ``head``
        (``dropout``, ``head_init``), seeded by the run's seed."""
        torch.manual_seed(self.seed)
        p = self.profile
        head = head_of(p) if head is None else head
        return VGG16(width=p.width if width is None else width, **head).to(self.device)

    def data_inputs(self) -> dict:
        """What identifies the images a step sees: the source's content key and the split."""
        d = self.data.describe()
        return {"source_key": d["source_key"], "val_size": self.profile.val_size, "split_seed": self.seed,
                "sizes": [d["train"], d["val"], d["test"]]}

    def settings(self, *names: str) -> dict:
        """The named profile settings, as plain values (for step keys)."""
        return {name: _plain(getattr(self.profile, name)) for name in names}

    def log(self, message: str) -> None:
        if self.progress:
            print(message, flush=True)

    def machine(self) -> str:
        """Where this run computes: the CPU model, or the GPU's name and its host CPU."""
        return machine_label(self.store.context)

    def step(self, step: str, names: list[str], inputs: dict, compute: Callable[[str], dict | None],
             force: bool | None = None, label: str = "", reads: tuple[str, ...] = (),
             needed: list[str] | None = None) -> str:
        """Reuse the artifacts ``names`` of ``step`` if their records carry the key of ``inputs`` and
        what they read upstream is still the content recorded there, else run ``compute(key)`` (which
        writes them) under the run lock and record them, with the dict ``compute`` may return (e.g. the
        seconds of points computed earlier) in their records. ``reads``: keys of upstream results the
        step reads that ``inputs`` hide in a hash (:meth:`pruning_utils.artifacts.Store.read`).
        ``force`` None means the run's ``force``. Returns the key; every call is logged in ``events``.

        ``needed`` names the artifacts the caller reads (default: all): the others may be absent from
        disk as long as their records carry the key (:meth:`pruning_utils.artifacts.Store.status`),
        so a step is not recomputed for files nobody asked for. Whoever reads them asks for them.

        A step recomputed under the key it already had (its file or record was missing, or it was
        forced) may come out different, on another CPU say: then every result that read the old
        content is recomputed when next asked (``computed from another dense.pt``), as is every
        point of the experiments computed from it, and no training resumes from a checkpoint of it
        (:attr:`reading`)."""
        for name in names:
            spec_for(name)  # every artifact is registered
        key = step_key(step, inputs)
        force = self.force if force is None else force
        what = f"{step}{f' ({label})' if label else ''}"
        if not force and (step, key) in self._current:  # already checked or made in this session
            return key
        status = "forced" if force else self.store.status(names, key, inputs, needed)
        if status == "fresh":
            if needed is None:  # only a step whose every file is here is known current for every reader
                self._current.add((step, key))
            self.events.append({"step": what, "status": "reused", "key": key, "seconds": 0.0, "why": ""})
            self.log(f"[step] {what}: reused ({key})")
            return key
        if not self.compute:
            self.events.append({"step": what, "status": "not computed", "key": key, "seconds": 0.0, "why": status})
            raise NotComputed(what, status)
        check_precision_is_fast(self.precision, self.device, f"{what} ({status})", self.run_dir)
        self.log(f"[step] {what}: computing ({status}) ...")
        started = time.perf_counter()
        with run_lock(self.run_dir):
            old = {n: r["sha256"] for n in names if (r := self.store.record(n)) and r["key"] == key}
            self.store.invalidate(names)
            self.reading[key] = content_digest(self.store.read(inputs, reads))
            extra = compute(key) or {}
            seconds = time.perf_counter() - started
            self.store.commit(names, key, step, inputs, {**extra, "seconds": round(seconds, 2),
                                                       "created": datetime.now(timezone.utc).isoformat()}, reads)
        if any(self.store.record(n)["sha256"] != sha for n, sha in old.items() if not spec_for(n).timed):
            self._current.clear()  # came out different: what this session checked may have read the old content
        self._current.add((step, key))
        self.events.append({"step": what, "status": "computed", "key": key, "seconds": seconds, "why": status})
        self.log(f"[step] {what}: done in {seconds:.0f} s")
        return key

    def step_log(self) -> pd.DataFrame:
        """The steps this session ran or reused, for the end of each notebook."""
        frame = pd.DataFrame(self.events, columns=["step", "status", "key", "seconds", "why"])
        return frame.assign(seconds=frame["seconds"].round(1))

    def summary(self) -> str:
        """A few stable lines naming the run: profile, data, splits, where artifacts go."""
        data = self.data.describe()
        try:
            where = self.run_dir.relative_to(project_root())
        except ValueError:
            where = self.run_dir
        return (f"profile: {self.profile.name} (width {self.profile.width}, seed {self.seed})\n"
                f"data: {data['source']}\n"
                f"splits: train {data['train']:,} / validation {data['val']:,} / test {data['test']:,} images\n"
                f"run directory: {where}")

    def save_json(self, name: str, obj: dict) -> Path:
        write_text_atomic(self.path(name), json.dumps(canonical(obj), indent=2) + "\n")
        return self.path(name)

    def load_json(self, name: str) -> dict:
        try:
            return json.loads(self.path(name).read_text())
        except (OSError, ValueError) as error:
            raise ArtifactError(f"{self.path(name)} cannot be read ({error}); delete it, or rerun with force=True "
                                "(FORCE=1), to recompute it") from error

    def save_csv(self, name: str, frame: pd.DataFrame) -> Path:
        write_text_atomic(self.path(name), frame.to_csv(index=False))
        return self.path(name)

    def load_csv(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.path(name))


def resolve_profile_name(profile: str | None) -> str:
    """The profile asked for, else ``$PRUNING_PROFILE``, else cpu/paper by hardware."""
    return profile or os.environ.get(PROFILE_ENV_VAR) or get_profile().name


def _check_identity(run_dir: Path, identity: dict) -> dict | None:
    """Refuse a run directory whose ``run.json`` records another profile or seed, or cannot be
    read; return what it records (None for a new run)."""
    path = run_dir / "run.json"
    if not path.exists():
        return None
    try:
        previous = json.loads(path.read_text())
        recorded = {k: previous[k] for k in identity}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ArtifactError(f"{path} cannot be read ({error}); delete it (the run's artifacts stay keyed by their "
                            "inputs) or choose another run_dir") from error
    if recorded != identity:
        raise ValueError(f"run directory {run_dir} holds the run {recorded}, not {identity}; choose another run_dir "
                         "or delete it")
    return previous


def open_run(
    profile: str | None = None,
    run_dir: str | os.PathLike | None = None,
    seed: int = 0,
    data_source: str | None = None,
    figures_dir: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
    compute: bool = True,
    **overrides,
) -> Run:
    """Check the parameters, make the run directory, load the data.

    ``profile`` None/"" -> ``$PRUNING_PROFILE`` or the hardware default; ``run_dir`` None/"" ->
    ``$PRUNING_RUN_DIR`` or ``data/runs/<profile>``; ``figures_dir`` -> ``figures/<run name>`` for a run
    in ``data/runs/``, else ``<run_dir>/figures``;
    ``data_source`` None/"" -> ``$PRUNING_DATA_SOURCE`` or the default lookup (the smoke profile
    always uses generated images). ``overrides`` change single profile settings (they enter the
    keys of the steps that read them). ``force`` recomputes the steps called directly.
    ``compute=False`` makes a read-only run: every step must find its stored results current, else
    it raises :class:`NotComputed` (a report from committed artifacts, with no training).
    Precision ``auto`` on a CPU is decided when the run is made (:mod:`pruning_utils.cpu_probe`)
    and kept in ``run.json``; so is the evaluation batch, for a profile with ``eval_batch_candidates``.
    A kernel that imports another checkout's package than the one it runs in is refused
    (:func:`check_checkout`), before any work.
    """
    check_checkout()
    name = resolve_profile_name(profile)
    settings = get_profile(name, **overrides)  # unknown names and impossible values raise here
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for flag, value in (("force", force), ("compute", compute)):
        if not isinstance(value, bool):
            raise ValueError(f"{flag} must be True or False, got {value!r}")
    if force and not compute:
        raise ValueError("force=True recomputes steps and compute=False forbids it: choose one")
    run_dir = resolve_path(run_dir or os.environ.get(RUN_DIR_ENV_VAR) or f"data/runs/{name}")
    inside = run_dir.resolve().parent == resolve_path("data/runs").resolve()
    figures = resolve_path(figures_dir) if figures_dir else (
        resolve_path("figures") / run_dir.name if inside else run_dir / "figures")
    stored = _check_identity(run_dir, {"profile": name, "seed": seed})
    device = pick_device()
    source = "synthetic" if settings.data == "synthetic" else resolve_data_source(data_source)
    data = load_splits(source, cache_dir=resolve_path("data/cache"), val_size=settings.val_size, seed=seed,
                       synthetic_sizes=settings.synthetic_sizes)
    run_dir.mkdir(parents=True, exist_ok=True)
    identity = dict(stored or {"profile": name, "seed": seed})
    precision = resolve_precision(settings.precision, device)
    probe_cache = resolve_path("data/cache") / PROBE_FILE
    if settings.precision == "auto" and device.type == "cpu":
        # chosen once, when the run is made: the probe's answer for this CPU (cpu_probe), then
        # recorded, so the run's stored results stay reusable on a machine where the probe differs
        if identity.get("precision") not in ("bf16", "fp32") and compute:  # a read-only run measures nothing
            identity["precision"] = training_precision(settings.width, settings.batch_size, probe_cache)
        precision = identity["precision"] if identity.get("precision") in ("bf16", "fp32") else precision
    if settings.eval_batch_candidates and device.type == "cpu" and "eval_batch_size" not in overrides:
        # likewise the evaluation batch (it enters the keys too); a run made before runs recorded it
        # keeps the profile's
        if not isinstance(identity.get("eval_batch_size"), int):
            identity["eval_batch_size"] = settings.eval_batch_size if stored or not compute else evaluation_batch_size(
                settings.width, precision, settings.eval_batch_size, settings.eval_batch_candidates, probe_cache)
        settings = replace(settings, eval_batch_size=identity["eval_batch_size"])
    if identity != stored and compute:  # a read-only run writes nothing
        write_text_atomic(run_dir / "run.json", json.dumps(identity, indent=2) + "\n")
    figures.mkdir(parents=True, exist_ok=True)
    return Run(settings, seed, run_dir, figures, data, device, precision,
               force=force, progress=progress, compute=compute,
               opened_with={"profile": name, "data_source": source, "overrides": dict(overrides)})


SHARED_ARCHIVE = "../shared/datasets/cifar10-jpeg.tar.gz"  # the local JPEG copy beside a checkout, as make uses


def resolve_data_source(source: str | None) -> str | None:
    """The data source: the argument, else ``$PRUNING_DATA_SOURCE``, else the local archive
    :data:`SHARED_ARCHIVE` when it exists (as ``make`` does), else None (``data/cifar-10-batches-py``
    or an error that says how to provide the data). A relative path is taken relative to the
    project root, so notebooks find it whatever their working directory."""
    source = source or os.environ.get(SOURCE_ENV_VAR) or None
    if source is None and resolve_path(SHARED_ARCHIVE).is_file():
        source = SHARED_ARCHIVE
    if source is None or source in ("torchvision", "synthetic") or Path(source).is_absolute():
        return source
    return str(resolve_path(source))
