"""A study run: its directory, its record, and the artifacts the notebooks pass along.

Every notebook opens the run with :func:`open_run` (checks the parameters before any work,
loads the data, writes ``run.json`` with the profile, seed, data source and code version), reads
what earlier notebooks wrote with :func:`require` (a missing artifact names the notebook to run
first) and saves models with :func:`save_model` / :func:`load_model` (pruning masks included).
Paths given relative are relative to the project root, wherever the notebook runs from.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune

from .config import Profile, get_profile
from .data import SOURCE_ENV_VAR, CifarSplits, load_splits
from .model import VGG16
from .train import pick_device, resolve_precision, save_atomic

PROFILE_ENV_VAR = "PRUNING_PROFILE"
RUN_DIR_ENV_VAR = "PRUNING_RUN_DIR"

# which notebook writes which artifact (file name patterns inside the run directory)
PRODUCERS: dict[str, str] = {
    "dense.pt": "01_train",
    "dense_history.csv": "01_train",
    "dense_metrics.json": "01_train",
    "sensitivity_{strategy}.csv": "02_sensitivity",
    "sparsities.csv": "03_prune_finetune",
    "results.csv": "03_prune_finetune",
    "pruned_{strategy}.pt": "03_prune_finetune",
    "finetuned_{strategy}.pt": "03_prune_finetune",
    "frontier.csv": "06_beyond",
    "criteria.csv": "06_beyond",
    "iterative.csv": "06_beyond",
    "latency.csv": "06_beyond",
}


def project_root() -> Path:
    """The directory holding ``pyproject.toml`` above this package (the repository root)."""
    here = Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").exists() and (candidate / "pruning_utils").is_dir():
            return candidate
    return Path.cwd()


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` itself if absolute, else relative to :func:`project_root`."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def code_version() -> str:
    """``git describe`` of the project (with ``-dirty`` for uncommitted changes), or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=project_root(), capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class Run:
    """An open study run: settings, data and where its artifacts and figures go."""

    profile: Profile
    seed: int
    run_dir: Path
    figures_dir: Path
    data: CifarSplits
    device: torch.device
    precision: str

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def new_model(self) -> VGG16:
        """A freshly initialised model of this run's width (seeded by the run's seed)."""
        torch.manual_seed(self.seed)
        return VGG16(width=self.profile.width, dropout=self.profile.dropout, head_init=self.profile.head_init).to(
            self.device
        )

    def summary(self) -> str:
        """A few stable lines naming the run: profile, data, splits, where artifacts go."""
        data = self.data.describe()
        try:
            where = self.run_dir.relative_to(project_root())
        except ValueError:
            where = self.run_dir
        return (
            f"profile: {self.profile.name} (width {self.profile.width}, seed {self.seed})\n"
            f"data: {data['source']}\n"
            f"splits: train {data['train']:,} / validation {data['val']:,} / test {data['test']:,} images\n"
            f"run directory: {where}"
        )

    def figure_path(self, name: str) -> Path:
        return self.figures_dir / f"{name}.png"

    def save_json(self, name: str, obj: dict) -> Path:
        path = self.path(name)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
        os.replace(tmp, path)
        return path

    def load_json(self, name: str) -> dict:
        return json.loads(require(self, name).read_text())

    def save_csv(self, name: str, frame: pd.DataFrame) -> Path:
        path = self.path(name)
        tmp = path.with_name(f".{path.name}.tmp")
        frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
        return path

    def load_csv(self, name: str) -> pd.DataFrame:
        return pd.read_csv(require(self, name))


def resolve_profile_name(profile: str | None) -> str:
    """The profile asked for, else ``$PRUNING_PROFILE``, else cpu/paper by hardware."""
    return profile or os.environ.get(PROFILE_ENV_VAR) or get_profile().name


def open_run(
    profile: str | None = None,
    run_dir: str | os.PathLike | None = None,
    seed: int = 0,
    data_source: str | None = None,
    figures_dir: str | os.PathLike | None = None,
    **overrides,
) -> Run:
    """Check the parameters, make the run directory, load the data, record the run.

    ``profile`` None/"" -> ``$PRUNING_PROFILE`` or the hardware default; ``run_dir`` None/"" ->
    ``$PRUNING_RUN_DIR`` or ``data/runs/<profile>``; ``figures_dir`` -> ``figures/<run name>``;
    ``data_source`` None/"" -> ``$PRUNING_DATA_SOURCE`` or the default lookup (the smoke profile
    always uses generated images). ``overrides`` change single profile settings.
    A run directory already recorded with other settings is refused.
    """
    name = resolve_profile_name(profile)
    settings = get_profile(name, **overrides)  # unknown names raise here, before any work
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    run_dir = resolve_path(run_dir or os.environ.get(RUN_DIR_ENV_VAR) or f"data/runs/{name}")
    figures = resolve_path(figures_dir or Path("figures") / run_dir.name)
    device = pick_device()
    record = {"profile": settings.to_dict(), "seed": seed}
    existing = run_dir / "run.json"
    if existing.exists():
        previous = json.loads(existing.read_text())
        if {k: previous.get(k) for k in record} != json.loads(json.dumps(record)):
            raise ValueError(
                f"run directory {run_dir} holds a run with other settings (profile/seed); "
                "choose another run_dir or delete it"
            )
    source = "synthetic" if settings.data == "synthetic" else _resolve_source_path(data_source)
    data = load_splits(
        source,
        cache_dir=resolve_path("data/cache"),
        val_size=settings.val_size,
        seed=seed,
        synthetic_sizes=settings.synthetic_sizes,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    run = Run(settings, seed, run_dir, figures, data, device, resolve_precision(settings.precision, device))
    record |= {
        "data": data.describe(),
        "device": str(device),
        "precision": run.precision,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "code_version": code_version(),
    }
    if not existing.exists() or json.loads(existing.read_text()) != json.loads(json.dumps(record, default=str)):
        run.save_json("run.json", record)
    return run


def _resolve_source_path(source: str | None) -> str | None:
    """The data source (argument, else ``$PRUNING_DATA_SOURCE``) with a relative path taken
    relative to the project root, so notebooks find it whatever their working directory."""
    source = source or os.environ.get(SOURCE_ENV_VAR) or None
    if source is None or source in ("torchvision", "synthetic") or Path(source).is_absolute():
        return source
    return str(resolve_path(source))


def require(run: Run, name: str) -> Path:
    """Path of artifact ``name`` in the run; FileNotFoundError naming the notebook that makes it."""
    path = run.path(name)
    if not path.exists():
        producer = next(
            (nb for pattern, nb in PRODUCERS.items() if _matches(pattern, name)), "the earlier notebooks"
        )
        raise FileNotFoundError(f"{path} is missing: run notebooks/{producer}.ipynb first (same profile and run_dir)")
    return path


def _matches(pattern: str, name: str) -> bool:
    if "{" not in pattern:
        return pattern == name
    head, tail = pattern.split("{")[0], pattern.split("}")[1]
    return name.startswith(head) and name.endswith(tail)


def _masked_parameters(model: nn.Module) -> list[tuple[str, str]]:
    """(module name, parameter name) of every parameter carrying a prune mask."""
    found = []
    for module_name, module in model.named_modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                found.append((module_name, hook._tensor_name))
    return found


def save_model(model: nn.Module, path: str | os.PathLike, **meta) -> Path:
    """Save weights, pruning masks and ``meta`` (atomically); :func:`load_model` restores them."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    dropout = next((m.p for m in model.modules() if isinstance(m, nn.Dropout)), 0.0)
    save_atomic(
        {"state": state, "width": model.width, "dropout": dropout, "masked": _masked_parameters(model), "meta": meta},
        path,
    )
    return path


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[VGG16, dict]:
    """A model saved by :func:`save_model`, with its masks re-attached, and its ``meta``."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model = VGG16(width=saved["width"], dropout=saved["dropout"])
    modules = dict(model.named_modules())
    for module_name, param in saved["masked"]:
        prune.identity(modules[module_name], param)
    model.load_state_dict(saved["state"])
    for module_name, param in saved["masked"]:  # refresh `weight` = weight_orig * weight_mask
        module = modules[module_name]
        setattr(module, param, getattr(module, f"{param}_orig") * getattr(module, f"{param}_mask"))
    return model.to(device).eval(), saved["meta"]
