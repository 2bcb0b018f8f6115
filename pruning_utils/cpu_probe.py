"""Which precision trains faster on this CPU: a short measured probe, cached per machine.

``precision="auto"`` used to mean bf16 wherever the CPU has AVX512-BF16, without knowing whether
bf16 is faster there. :func:`training_precision` times a few training steps of the run's model
in fp32 and in bf16 (interleaved, median of each), picks the faster, and caches the answer in
``data/cache/cpu_probe.json`` keyed by the CPU model, torch version, thread count, width and
batch size, so every run on this machine gets the same answer without measuring again. bf16
stays the choice unless fp32 is faster by more than :data:`MARGIN` (a probe of a few steps is
noisy; a flip between runs would change the keys of every step). A CPU without AVX512-BF16 gets
fp32 without a probe; ``PRUNING_CPU_PROBES=0`` turns this probe and the one below off (bf16 where
supported, the profile's evaluation batch).

:func:`pruning_utils.runs.open_run` asks the probe when it makes a run and records the answer in
the run's ``run.json``: a run keeps its precision (which enters every step's key), so its stored
results stay reusable on a machine where the probe would answer otherwise. The probe's
measurements are kept in the cache file, with the CPU named.

:func:`evaluation_batch_size` does the same for the batch that evaluation and the sensitivity
scans run in (for profiles that name candidates, ``eval_batch_candidates``): large batches of a
narrow model can leave the CPU's caches and run slower per image. The profile's batch stays
unless a candidate is faster per image by more than :data:`MARGIN`; the run records its batch.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .artifacts import write_text_atomic
from .evaluation import predict
from .latency import cpu_model, machine_inputs, matmul_peak, native_bf16
from .model import VGG16

PROBE_VERSION = 1
PROBE_FILE = "cpu_probe.json"  # in data/cache
PROBE_ENV_VAR = "PRUNING_CPU_PROBES"  # "0": no probe runs (precision and evaluation batch)
MARGIN = 0.10  # fp32 must be this much faster (fraction of bf16's step time) to be chosen
PROBE_STEPS = 3  # timed steps per precision, after one warm-up step
SLOW_PRECISION_ENV_VAR = "PRUNING_SLOW_PRECISION"  # "1": compute a bf16 run's steps even where bf16 is emulated


class SlowPrecisionError(RuntimeError):
    """A step must be computed in a precision this CPU only emulates (bf16 without AVX512-BF16)."""


def precision_is_fast(precision: str, device: torch.device) -> bool:
    """False only for bf16 on a CPU that emulates it (:func:`pruning_utils.latency.native_bf16`)."""
    return precision != "bf16" or device.type != "cpu" or native_bf16()


def check_precision_is_fast(precision: str, device: torch.device, what: str, run_dir: Path) -> None:
    """Refuse to compute ``what`` of the run in ``run_dir`` in bf16 on a CPU that emulates bf16, with
    the cost measured here and the choices; ``PRUNING_SLOW_PRECISION=1`` computes it anyway. A run
    keeps the precision it was made in (``run.json``), so its stored results stay reusable on every
    machine; only computing in it can crawl."""
    if precision_is_fast(precision, device) or os.environ.get(SLOW_PRECISION_ENV_VAR) == "1":
        return
    fp32, bf16 = (matmul_peak(dtype, n=512, repeats=1, seconds=0.2) for dtype in (torch.float32, torch.bfloat16))
    raise SlowPrecisionError(
        f"{what} must be computed, and the run {run_dir} computes in bf16 (its run.json), which this CPU "
        f"({cpu_model()}) only emulates: a matrix product runs at {bf16 / 1e9:.1f} GMAC/s in bf16 against "
        f"{fp32 / 1e9:.1f} in fp32 here ({fp32 / bf16:.0f}x slower). Choose: "
        f"compute it on a CPU with AVX512-BF16 (or a GPU); or make a run of your own, which this CPU makes in "
        f"fp32 and computes from scratch (PRUNING_RUN_DIR=data/runs/<name> make report ...); or compute it here "
        f"in bf16 anyway, slowly ({SLOW_PRECISION_ENV_VAR}=1).")


def probe_key(width: float, batch_size: int) -> dict:
    """What the probe's answer depends on."""
    return {"version": PROBE_VERSION, **machine_inputs(), "torch": torch.__version__, "width": width,
            "batch_size": batch_size}


def step_seconds(precision: str, width: float, batch_size: int, steps: int = PROBE_STEPS) -> list[float]:
    """Seconds of each of ``steps`` training steps (forward, backward, SGD update; channels_last,
    as :func:`pruning_utils.training.train` runs them) of a fresh ``width`` model on random images,
    after one warm-up step."""
    generator = torch.Generator().manual_seed(0)
    model = VGG16(width=width).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.rand(batch_size, 3, 32, 32, generator=generator).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,), generator=generator)
    times = []
    for i in range(steps + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - started)
    return times


Measure = Callable[[str, float, int], list[float]]


def choose(seconds: dict[str, float]) -> str:
    """bf16 unless fp32's median step is faster by more than :data:`MARGIN`."""
    return "fp32" if seconds["fp32"] < (1 - MARGIN) * seconds["bf16"] else "bf16"


def _cached_entry(cache: Path, key: dict, valid: Callable[[dict], bool]) -> tuple[dict | None, list]:
    """The valid entry of ``cache`` for ``key`` (None if there is none) and every readable entry
    (a damaged or foreign file reads as none)."""
    try:
        entries = json.loads(cache.read_text())["entries"]
        if not isinstance(entries, list):
            raise ValueError("entries is not a list")
    except (OSError, ValueError, KeyError, TypeError):
        entries = []
    entries = [e for e in entries if isinstance(e, dict)]
    found = next((e for e in entries if e.get("key") == key and valid(e)), None)
    return found, entries


def _store_entry(cache: Path, entries: list, entry: dict) -> None:
    entries = [e for e in entries if e.get("key") != entry["key"]] + [entry]
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cache, json.dumps({"entries": entries}, indent=2) + "\n")


def training_precision(width: float, batch_size: int, cache: Path, measure: Measure = step_seconds,
                       log: Callable[[str], None] = print) -> str:
    """``bf16`` or ``fp32`` for training (and evaluating) a ``width`` model at ``batch_size`` on
    this CPU: from ``cache`` when it holds this machine's answer, else probed (about a second or
    two) and stored there. A damaged or foreign cache file is probed over."""
    if not native_bf16():
        return "fp32"
    if os.environ.get(PROBE_ENV_VAR, "1") == "0":
        return "bf16"
    key = probe_key(width, batch_size)
    found, entries = _cached_entry(cache, key, lambda e: e.get("precision") in ("bf16", "fp32"))
    if found is not None:
        return found["precision"]
    runs: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(2):  # interleaved, so a slow moment does not fall on one precision only
        for precision in runs:
            runs[precision] += measure(precision, width, batch_size)
    seconds = {p: statistics.median(t) for p, t in runs.items()}
    chosen = choose(seconds)
    log(f"[probe] training step, width {width}, batch {batch_size} on {key['cpu']} ({key['threads']} threads): "
        f"fp32 {seconds['fp32'] * 1e3:.0f} ms, bf16 {seconds['bf16'] * 1e3:.0f} ms -> {chosen} (cached in {cache})")
    _store_entry(cache, entries, {"key": key, "precision": chosen, "median_step_seconds": seconds})
    return chosen


# --- the evaluation batch ---------------------------------------------------------------------------

EVAL_PROBE_IMAGES = 2000  # images per timed evaluation (each candidate batch should divide it)

EvalMeasure = Callable[[int, float, str], list[float]]


def eval_probe_key(width: float, precision: str, candidates: list[int]) -> dict:
    """What the evaluation-batch probe's answer depends on."""
    return {"version": PROBE_VERSION, "probe": "eval_batch", **machine_inputs(), "torch": torch.__version__,
            "width": width, "precision": precision, "candidates": candidates}


def eval_seconds(batch_size: int, width: float, precision: str, rounds: int = PROBE_STEPS) -> list[float]:
    """Seconds per image of evaluating :data:`EVAL_PROBE_IMAGES` random images in batches of
    ``batch_size`` (:func:`pruning_utils.evaluation.predict`, as the study evaluates) with a fresh
    ``width`` model, ``rounds`` times after one warm-up."""
    model = VGG16(width=width).to(memory_format=torch.channels_last).eval()
    x = torch.randint(0, 256, (EVAL_PROBE_IMAGES, 3, 32, 32), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    times = []
    for i in range(rounds + 1):
        started = time.perf_counter()
        predict(model, x, batch_size=batch_size, precision=precision)
        if i:
            times.append((time.perf_counter() - started) / len(x))
    return times


def choose_batch(seconds: dict[int, float], default: int) -> int:
    """``default`` unless another batch is faster per image by more than :data:`MARGIN`; then the fastest."""
    fastest = min(seconds, key=seconds.get)
    return fastest if seconds[fastest] < (1 - MARGIN) * seconds[default] else default


def evaluation_batch_size(width: float, precision: str, default: int, candidates: tuple[int, ...], cache: Path,
                          measure: EvalMeasure = eval_seconds, log: Callable[[str], None] = print) -> int:
    """The batch to evaluate a ``width`` model at ``precision`` in on this CPU, among ``candidates``
    and ``default``: from ``cache`` when it holds this machine's answer, else probed (a few seconds at
    width 0.25) and stored there. ``PRUNING_CPU_PROBES=0`` (every probe off) gives ``default``."""
    if os.environ.get(PROBE_ENV_VAR, "1") == "0" or not candidates:
        return default
    batches = sorted({*candidates, default})
    key = eval_probe_key(width, precision, batches)
    found, entries = _cached_entry(cache, key, lambda e: e.get("eval_batch_size") in batches)
    if found is not None:
        return found["eval_batch_size"]
    runs: dict[int, list[float]] = {b: [] for b in batches}
    for _ in range(2):  # interleaved, as the precision probe
        for batch in batches:
            runs[batch] += measure(batch, width, precision)
    seconds = {b: statistics.median(t) for b, t in runs.items()}
    chosen = choose_batch(seconds, default)
    log(f"[probe] evaluation, width {width}, {precision} on {key['cpu']} ({key['threads']} threads), us per image: "
        + ", ".join(f"batch {b} {s * 1e6:.0f}" for b, s in seconds.items()) + f" -> batch {chosen} (cached in {cache})")
    _store_entry(cache, entries, {"key": key, "eval_batch_size": chosen,
                                  "median_seconds_per_image": {str(b): s for b, s in seconds.items()}})
    return chosen
