"""What models cost to run on this machine: latency, throughput and size, one row per model and batch size."""

from __future__ import annotations

import functools
import os
import platform
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .counting import count_multiply_adds_masked, count_remaining_parameters
from .masks import copy_model, make_permanent
from .model import count_multiply_adds

LATENCY_COLUMNS = [
    "model", "batch_size", "median_ms", "min_ms", "max_ms", "images_per_s",
    "parameters", "multiply_adds", "masked_multiply_adds", "file_size_bytes",
]


CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # what decides fp32 and bf16 speed on a CPU


def describe_cpu(cpuinfo: str) -> str:
    """The first processor of ``/proc/cpuinfo`` text as ``<model name> (<vendor> family <f> model <m>;
    <features>)``, the features being those of :data:`CPU_FEATURES` it has. The model name alone
    does not tell CPUs apart (Zen 3, 4 and 5 may all say ``AMD EPYC``); family, model and features do."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block ends
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    features = ", ".join(f for f in CPU_FEATURES if f in flags) or "no " + "/".join(CPU_FEATURES)
    return (f"{fields.get('model name', 'unknown model')} ({fields.get('vendor_id', 'unknown vendor')} family "
            f"{fields.get('cpu family', '?')} model {fields.get('model', '?')}; {features})")


@functools.cache
def cpu_model() -> str:
    """This machine's processor, for timing records and the keys of what depends on it
    (:func:`describe_cpu` of ``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        cpuinfo = ""
    return describe_cpu(cpuinfo) if "model name" in cpuinfo else platform.processor() or platform.machine()


def machine_slug() -> str:
    """:func:`cpu_model` as a file name: ``amd-epyc-authenticamd-family-25-model-1-avx2`` (a benchmark's record per machine)."""
    return re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-")


def machine_inputs() -> dict:
    """What a timing, or a choice made from timings, depends on besides the work: the CPU
    (:func:`cpu_model`) and the number of threads torch uses."""
    return {"cpu": cpu_model(), "threads": torch.get_num_threads()}


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16; every CPU with AMX has it too). Elsewhere
    bf16 is emulated: a bf16 matrix product or convolution runs 20-60x slower than in fp32 (measured
    on an AVX2 EPYC)."""
    return bool(torch.cpu._is_avx512_bf16_supported())


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5, seconds: float = 0.5) -> float:
    """Multiply-adds per second of an m x m x m matrix product in ``dtype``: the best of ``repeats``
    timings of about ``seconds`` each (this machine's practical peak for dense math, for benchmarks).

    ``m`` is ``n``, or smaller where one product of ``n`` would take longer than ``seconds``: from
    256 it doubles while the next size (8 times the work) stays within ``seconds``, so the whole
    measurement takes a few times ``repeats * seconds`` at most, however slow the dtype is here (one
    bf16 product of 2048 takes over a minute on a CPU without native bf16)."""
    m = min(n, 256)
    while m < n:
        a = torch.randn(m, m).to(dtype)
        a @ a  # the first product of a size may pay for setting up
        started = time.perf_counter()
        a @ a
        if 8 * (time.perf_counter() - started) > seconds:
            break
        m *= 2
    a, b = torch.randn(m, m).to(dtype), torch.randn(m, m).to(dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            a @ b
            count += 1
        best = max(best, count * m**3 / elapsed)
    return best


def _validate_positive_ints(name: str, values: Sequence[int], minimum: int) -> None:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be integers >= {minimum}, got {value!r}")


def _file_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(state_dict)`` after folding the masks in (a temporary file)."""
    state = make_permanent(copy_model(model)).state_dict()
    handle, path = tempfile.mkstemp(suffix=".pt")
    os.close(handle)
    try:
        torch.save(state, path)
        return os.path.getsize(path)
    finally:
        os.remove(path)


def speed_verdict(reference: Mapping[str, float], other: Mapping[str, float]) -> tuple[float, str]:
    """Speed-up of ``other`` over ``reference`` (ratio of ``median_ms``) and ``faster`` / ``slower``
    when their spreads (``min_ms`` .. ``max_ms``) do not overlap, else ``within spread``."""
    speedup = reference["median_ms"] / other["median_ms"]
    if other["max_ms"] < reference["min_ms"]:
        return speedup, "faster"
    if other["min_ms"] > reference["max_ms"]:
        return speedup, "slower"
    return speedup, "within spread"


def _timer(model: nn.Module, batch_size: int) -> Callable[[int], float]:
    """A function timing ``calls`` back-to-back forward passes of a random batch; median seconds per call."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, 32, 32, generator=generator).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    @torch.inference_mode()
    def median_seconds(calls: int) -> float:
        times = []
        for _ in range(calls):
            sync()
            started = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    return median_seconds


def latency_table(
    models: Mapping[str, nn.Module],
    batch_sizes: Sequence[int] = (1, 256),
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    rounds: int = 7,
    seed: int = 0,
) -> pd.DataFrame:
    """Inference time and size of each model, one row per (model, batch size).

    Each model is timed as a copy with its masks folded in (``make_permanent``: a masked model
    runs the dense kernels; the prune hook's per-call ``weight_orig * weight_mask`` is not
    timed), in eval mode, fp32, channels_last, under ``torch.inference_mode``, on random
    inputs on the model's device. Each (model, batch size) gets ``warmup`` untimed passes; then
    ``rounds`` rounds, each timing every (model, batch size) once, in an order shuffled afresh per
    round (seeded by ``seed``), as ``repeats`` passes whose median is the round's time. Timed one
    model after another, a drift of the machine (another process, clock changes) would read as a
    difference between models; interleaved, it spreads over all of them. ``median_ms`` is the
    median over rounds, ``min_ms`` and ``max_ms`` the fastest and slowest round (compare two rows
    with :func:`speed_verdict`), ``images_per_s = batch_size / median``. ``threads`` sets
    ``torch.set_num_threads`` during the measurement (restored afterwards).

    Size columns (per model, repeated on each row): ``parameters`` = unmasked parameters
    (``count_remaining_parameters(model)["total"]``); ``multiply_adds`` = dense multiply-adds
    of one 32x32 image with the module's actual shapes (``torch.utils.flop_counter``);
    ``masked_multiply_adds`` = what a kernel skipping masked weights would do
    (``count_multiply_adds_masked(model)["total"]``); ``file_size_bytes`` = size of
    ``torch.save(state_dict)`` with masks folded in (masked zeros still take space).
    """
    if not models:
        raise ValueError("models must name at least one model")
    if not batch_sizes:
        raise ValueError("batch_sizes must hold at least one batch size")
    _validate_positive_ints("batch_sizes", batch_sizes, 1)
    _validate_positive_ints("repeats", [repeats], 1)
    _validate_positive_ints("rounds", [rounds], 1)
    _validate_positive_ints("warmup", [warmup], 0)
    if threads is not None:
        _validate_positive_ints("threads", [threads], 1)
    saved_threads = torch.get_num_threads()
    sizes, timers = {}, {}
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for name, model in models.items():
            sizes[name] = {
                "parameters": count_remaining_parameters(model)["total"],
                "multiply_adds": count_multiply_adds(model),
                "masked_multiply_adds": count_multiply_adds_masked(model)["total"],
                "file_size_bytes": _file_size(model),
            }
            timed = make_permanent(copy_model(model)).float().eval().to(memory_format=torch.channels_last)
            for batch_size in batch_sizes:
                timers[name, batch_size] = _timer(timed, batch_size)
                if warmup:
                    timers[name, batch_size](warmup)
        seconds: dict[tuple[str, int], list[float]] = {config: [] for config in timers}
        for r in range(rounds):
            order = list(timers)
            random.Random(seed + r).shuffle(order)
            for config in order:
                seconds[config].append(timers[config](repeats))
    finally:
        torch.set_num_threads(saved_threads)
    rows = []
    for (name, batch_size), per_round in seconds.items():
        median = statistics.median(per_round)
        rows.append({"model": name, "batch_size": batch_size, "median_ms": 1000 * median,
                     "min_ms": 1000 * min(per_round), "max_ms": 1000 * max(per_round),
                     "images_per_s": batch_size / median, **sizes[name]})
    return pd.DataFrame(rows, columns=LATENCY_COLUMNS)
