"""Benchmark: what pruning buys at deployment, in five CPU runtimes.

Claim under test: a filter-pruned VGG that is *compacted* (dead channels physically removed,
``pruning_utils.compact``) runs faster than the dense one in every runtime, by less than its
multiply-add ratio; a pruned model whose zeros stay inside dense tensors (filter, fine-grained
or kernel masks folded in with ``make_permanent``) runs no faster than dense in any runtime
available here, because every runtime below runs dense kernels.

Models (no trained weights are needed for timing): ``VGG16(width=w, head_init="kaiming")`` built
under a fixed seed (the seed's N(0, 0.01) head would give logits of ~1e-4 and make the logit
checks below vacuous; the head's init does not change the cost), its BatchNorm running statistics set to the cumulative average of a few random batches in
train mode (under ``no_grad``), then, from copies of it, pruned with ``prune_model`` at the
original report's Table 1 sparsities (``pruning_utils.original.TABLE1``): ``filter-compacted``
(filter column, ``compact``), ``filter-masked`` (filter column, masks folded in),
``fine-grained-masked`` and ``kernel-masked`` (their columns, masks folded in), and ``dense``.
Multiply-adds of one 32x32 image: ``count_multiply_adds`` (dense shapes), so the MAC ratio is
dense / compacted; the JSON record also holds ``count_multiply_adds_masked`` (what a kernel
skipping the masked weights would do).

Runtimes, all in eval mode on random N(0, 1) inputs: ``eager-fp32`` (NCHW, ``inference_mode``),
``eager-cl-bf16`` (model and input channels_last, ``torch.autocast("cpu", bfloat16)``),
``compile-fp32`` (``torch.compile(model, dynamic=False)``, default backend: inductor on CPU; a
failure is recorded, not raised), ``compile-cl-bf16`` (the channels_last model compiled with
inductor's ``freezing``, which folds BatchNorm into the convolutions and prepacks their weights
for oneDNN, run under bf16 autocast: PyTorch's own CPU inference path) and ``ort-fp32`` (``torch.onnx.export`` with its default,
torch.export-based exporter and a dynamic batch dimension, run by ONNX Runtime's
``CPUExecutionProvider``, all graph optimisations; needs the ``deploy`` extra). Each runtime's
logits are compared with eager fp32 (``max_abs_diff`` in the record).

Timing: ``torch.set_num_threads(threads)`` and ORT ``intra_op_num_threads=threads`` (default 2,
``inter_op_num_threads=1``). Every configuration (width, batch, model, runtime) gets ``warmup``
untimed calls, then one call that sets how many back-to-back calls make one measurement (at
least ``--min-time`` seconds). Then ``rounds`` rounds, each measuring every configuration once,
in a freshly shuffled order (seeded), so drifts of the machine fall on all configurations alike.
Per configuration: the median over rounds of ms per call, and the spread = min-max over rounds.
A speedup of A over B "exceeds the spread" when A's slowest round is faster than B's fastest.
Masked models are reported as "no gain" unless that holds.

Prints one line per configuration, then which runtime gains most from compaction at the
largest width and batch measured, and, last, ``compacted speedup / MAC ratio (width <w>,
batch <b>): <r>`` (width 1.0, batch 256 by default). Writes a JSON record (CPU model, torch and
onnxruntime versions, threads, date, every round) to ``data/benchmarks/deployment.json``.
On a CPU without AVX512-BF16 (bf16 emulated), the default leaves the two bf16 runtimes out and
says so. The default run (widths 0.25 and 1.0, batches 1 and 256) is sized to stay within 10 minutes on
2 cores; ``--quick`` (width 0.25, batches 1 and 8, 2 rounds) is the smoke test.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import math
import platform
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import torch
from torch import nn

from pruning_utils.compact import compact
from pruning_utils.counting import count_multiply_adds_masked
from pruning_utils.masks import copy_model
from pruning_utils.latency import cpu_model, machine_slug, native_bf16, speed_verdict
from pruning_utils.masks import make_permanent, prune_model
from pruning_utils.model import VGG16, count_multiply_adds, count_parameters
from pruning_utils.original import TABLE1
from pruning_utils.runs import code_version, resolve_path

MODELS: tuple[str, ...] = ("dense", "filter-compacted", "filter-masked", "fine-grained-masked", "kernel-masked")
RUNTIMES: tuple[str, ...] = ("eager-fp32", "eager-cl-bf16", "compile-fp32", "compile-cl-bf16", "ort-fp32")
MASKED_STRATEGIES: dict[str, str] = {
    "filter-masked": "filter", "fine-grained-masked": "fine-grained", "kernel-masked": "kernel",
}


# ---------------------------------------------------------------------------------------------- models


def default_runtimes(bf16_is_native: bool) -> list[str]:
    """Every runtime where the CPU computes bf16 natively, else the fp32 ones: emulated bf16 runs
    20-60x slower than fp32 and would time the emulation, not the model."""
    return [r for r in RUNTIMES if bf16_is_native or "bf16" not in r]


def table1_sparsities(strategy: str) -> dict[str, float]:
    """Per-layer sparsities of the original report's Table 1 for ``strategy`` (a column of ``TABLE1``)."""
    columns = [c for c in TABLE1.columns if c != "layer"]
    if strategy not in columns:
        raise ValueError(f"unknown strategy {strategy!r}; Table 1 has: {', '.join(columns)}")
    return {layer: float(s) for layer, s in zip(TABLE1["layer"], TABLE1[strategy])}


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: int = 4, batch_size: int = 32, seed: int = 0) -> nn.Module:
    """Set every BatchNorm's running statistics to the average batch statistics of ``batches`` random
    N(0, 1) batches (train mode, ``no_grad``, cumulative average), so that they are not the trivial
    (0, 1); momentum and the model's mode are restored. Returns ``model``."""
    if batches < 1 or batch_size < 2:
        raise ValueError(f"need batches >= 1 and batch_size >= 2, got batches={batches!r}, batch_size={batch_size!r}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    was_training = model.training
    generator = torch.Generator().manual_seed(seed)
    try:
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        for _ in range(batches):
            model(torch.randn(batch_size, 3, 32, 32, generator=generator))
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.train(was_training)
    return model


def dense_model(width: float, seed: int = 0) -> VGG16:
    """``VGG16(width, head_init="kaiming")`` initialised under ``torch.manual_seed(seed)``, BatchNorm
    calibrated (:func:`calibrate_batchnorm`), eval mode."""
    torch.manual_seed(seed)
    return calibrate_batchnorm(VGG16(width=width, head_init="kaiming"), seed=seed).eval()


def prune_table1(dense: VGG16, strategy: str) -> VGG16:
    """A copy of ``dense`` pruned at Table 1's ``strategy`` sparsities (masks attached, eval mode)."""
    return prune_model(copy_model(dense), table1_sparsities(strategy), strategy).eval()


def build_models(width: float, seed: int = 0) -> tuple[dict[str, nn.Module], dict[str, dict]]:
    """The five timed models of one width (see the module docstring) and their sizes.

    Sizes per model: ``multiply_adds`` (``count_multiply_adds``: what dense kernels do for one
    32x32 image), ``nonzero_multiply_adds`` (``count_multiply_adds_masked`` before folding: what a
    kernel skipping the masked weights would do) and ``parameters`` (elements of all tensors).
    """
    dense = dense_model(width, seed)
    models: dict[str, nn.Module] = {"dense": dense}
    nonzero = {"dense": count_multiply_adds(dense)}
    for name, strategy in MASKED_STRATEGIES.items():
        masked = prune_table1(dense, strategy)
        nonzero[name] = count_multiply_adds_masked(masked)["total"]
        if strategy == "filter":
            models["filter-compacted"] = compact(masked).eval()
            nonzero["filter-compacted"] = count_multiply_adds(models["filter-compacted"])
        models[name] = make_permanent(masked).eval()
    models = {name: models[name] for name in MODELS}
    sizes = {
        name: {"multiply_adds": count_multiply_adds(model), "nonzero_multiply_adds": nonzero[name],
               "parameters": count_parameters(model)}
        for name, model in models.items()
    }
    return models, sizes


# ---------------------------------------------------------------------------------------------- runtimes


def export_onnx(model: nn.Module) -> bytes:
    """The serialized ONNX model of ``model`` (eval mode, fp32) with a dynamic batch dimension.

    Uses ``torch.onnx.export``'s default (torch.export-based) exporter, which needs ``onnxscript``;
    its progress messages are swallowed.
    """
    model = model.eval()
    example = (torch.randn(2, 3, 32, 32),)  # batch 2: torch.export would specialise a batch of 1
    batch = torch.export.Dim("batch", min=1, max=65536)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, example, input_names=["x"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), dynamo=True)
    return program.model_proto.SerializeToString()


def ort_session(onnx_model: bytes, threads: int):
    """An ONNX Runtime ``InferenceSession`` on ``CPUExecutionProvider`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])


def _allow_many_compiled_shapes(limit: int = 256) -> None:
    """Every (model, batch) is one compiled graph of ``VGG16.forward``: raise dynamo's recompile limit
    above the default 8, and fail (recorded) rather than fall back to eager silently if it is hit."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), limit))
    if hasattr(config, "fail_on_recompile_limit_hit"):
        config.fail_on_recompile_limit_hit = True


def _channels_last(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """A channels_last copy of ``model`` (eval mode) and ``x`` in channels_last; ``model`` is left alone."""
    return copy_model(model).to(memory_format=torch.channels_last).eval(), x.contiguous(memory_format=torch.channels_last)


def make_runner(runtime: str, model: nn.Module, x: torch.Tensor, onnx_session=None) -> Callable[[], torch.Tensor]:
    """A zero-argument callable that runs ``model`` once on ``x`` in ``runtime`` and returns fp32 logits.

    The model is not modified: ``eager-cl-bf16`` converts a copy to channels_last. Compilation
    happens lazily, on the first call. ``ort-fp32`` needs ``onnx_session`` (from :func:`ort_session`).
    """
    if runtime == "eager-fp32":
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return model(x)
    elif runtime == "eager-cl-bf16":
        cl_model, cl_x = _channels_last(model, x)

        def run() -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return cl_model(cl_x)
    elif runtime == "compile-fp32":
        compiled = torch.compile(model, dynamic=False)

        def run() -> torch.Tensor:
            with torch.inference_mode():
                return compiled(x)
    elif runtime == "compile-cl-bf16":
        # inductor with freezing: weights become constants, BatchNorm folds into the convolution and
        # oneDNN runs it with its weights prepacked (the deployment path PyTorch documents for CPUs)
        cl_model, cl_x = _channels_last(model, x)
        compiled = torch.compile(cl_model, dynamic=False, options={"freezing": True})

        def run() -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return compiled(cl_x)
    elif runtime == "ort-fp32":
        if onnx_session is None:
            raise ValueError("runtime 'ort-fp32' needs onnx_session")
        feed = {onnx_session.get_inputs()[0].name: x.numpy()}

        def run() -> torch.Tensor:
            return torch.from_numpy(onnx_session.run(None, feed)[0])
    else:
        raise ValueError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    return run


def _failure_text(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


# ---------------------------------------------------------------------------------------------- timing


@dataclass
class Config:
    """One timed configuration and its per-round ms per call."""

    width: float
    batch: int
    model: str
    runtime: str
    run: Callable[[], torch.Tensor] | None = None
    failure: str | None = None
    calls: int = 1
    first_call_s: float | None = None
    max_abs_diff: float | None = None
    ms: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"width {self.width:<4} batch {self.batch:>3}  {self.model:<19} {self.runtime:<13}"

    def stats(self) -> dict[str, float]:
        """Median, min, max and quartiles of the per-round ms per call."""
        values = np.asarray(self.ms)
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        return {"median_ms": float(median), "min_ms": float(values.min()), "max_ms": float(values.max()),
                "q1_ms": float(q1), "q3_ms": float(q3), "img_per_s": 1000.0 * self.batch / float(median)}


def _seconds_per_call(run: Callable[[], torch.Tensor], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - started) / calls


def prepare(config: Config, reference: torch.Tensor | None, warmup: int, min_time: float) -> torch.Tensor | None:
    """Warm ``config`` up (compiling where needed): record its first call's time, its largest
    logit difference to ``reference`` and how many calls make one measurement. Returns the first
    call's logits (fp32), or None after recording a failure instead of raising."""
    try:
        started = time.perf_counter()
        out = config.run().float()
        config.first_call_s = time.perf_counter() - started
        if reference is not None:
            config.max_abs_diff = float((out - reference).abs().max())
        for _ in range(max(0, warmup - 1)):
            config.run()
        once = _seconds_per_call(config.run, 1)
        config.calls = max(1, min(10_000, math.ceil(min_time / max(once, 1e-9))))
        return out
    except Exception as error:  # noqa: BLE001 - any runtime failure is a result to record
        config.failure, config.run = _failure_text(error), None
        return None


def measure(configs: Sequence[Config], rounds: int, seed: int = 0) -> None:
    """``rounds`` rounds; each measures every working configuration once (``calls`` back-to-back
    calls, ms per call appended to ``ms``) in an order shuffled afresh per round."""
    working = [c for c in configs if c.run is not None]
    for r in range(rounds):
        order = list(working)
        random.Random(seed + r).shuffle(order)
        for config in order:
            config.ms.append(1000.0 * _seconds_per_call(config.run, config.calls))


def verdict_text(model: str, speedup: float, verdict: str) -> str:
    """The printed comparison with dense: compaction's speedup, or a masked model's gain."""
    if model == "filter-compacted":
        exceeds = {"faster": "exceeds spread", "slower": "slower beyond spread"}.get(verdict, verdict)
        return f"speedup {speedup:.2f}x over dense, {exceeds}"
    if verdict == "faster":
        return f"gain {speedup:.2f}x over dense, beyond spread"
    return f"no gain ({speedup:.2f}x of dense, {'slower beyond spread' if verdict == 'slower' else 'within spread'})"


# ---------------------------------------------------------------------------------------------- main


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--runtimes", nargs="+", default=None, choices=RUNTIMES,
                        help="default: every runtime, less the bf16 ones on a CPU that emulates bf16")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (the spread is over these)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per configuration before timing")
    parser.add_argument("--min-time", type=float, default=0.05,
                        help="seconds one measurement lasts at least (calls repeated back to back)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: width 0.25, batches 1 and 8, 2 rounds")
    parser.add_argument("--record", default="", help="where the JSON record goes "
                        "(default: data/benchmarks/deployment/<this machine>.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.widths, args.batches, args.rounds, args.warmup, args.min_time = [0.25], [1, 8], 2, 1, 0.01
    for name in ("rounds", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)!r}")
    for name, values in (("widths", args.widths), ("batches", args.batches)):
        if any(not v > 0 for v in values):
            parser.error(f"--{name} must all be > 0, got {values!r}")
    if args.warmup < 1 or args.min_time < 0:
        parser.error(f"--warmup must be >= 1 and --min-time >= 0, got {args.warmup!r} and {args.min_time!r}")

    left_out = ""
    if args.runtimes is None:
        args.runtimes = default_runtimes(native_bf16())
        left_out = "" if len(args.runtimes) == len(RUNTIMES) else (
            "; bf16 runtimes left out: this CPU emulates bf16 (name them with --runtimes to time them anyway)")

    wall_started = time.perf_counter()
    torch.set_num_threads(args.threads)
    _allow_many_compiled_shapes()
    print(f"cpu: {cpu_model()}; torch {torch.__version__}, onnxruntime {_version('onnxruntime')}, "
          f"{args.threads} threads; widths {args.widths}, batches {args.batches}, {args.rounds} rounds; runtimes "
          f"{', '.join(args.runtimes)}{left_out}", flush=True)

    configs: list[Config] = []
    sizes: dict[float, dict[str, dict]] = {}
    preparation: dict[str, dict] = {}
    for width in args.widths:
        started = time.perf_counter()
        models, sizes[width] = build_models(width, args.seed)
        sessions, export_s, export_failures = {}, {}, {}
        if "ort-fp32" in args.runtimes:
            for name, model in models.items():
                t0 = time.perf_counter()
                try:
                    sessions[name] = ort_session(export_onnx(model), args.threads)
                except Exception as error:  # noqa: BLE001 - recorded, the other runtimes still run
                    export_failures[name] = _failure_text(error)
                export_s[name] = time.perf_counter() - t0
        for batch in args.batches:
            x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(args.seed + batch))
            for name, model in models.items():
                reference = None
                for runtime in args.runtimes:
                    config = Config(width, batch, name, runtime)
                    if runtime == "ort-fp32" and name not in sessions:
                        config.failure = f"ONNX export or session failed: {export_failures.get(name)}"
                    else:
                        config.run = make_runner(runtime, model, x, sessions.get(name))
                        out = prepare(config, reference, args.warmup, args.min_time)
                        if runtime == "eager-fp32":
                            reference = out
                    configs.append(config)
        macs = sizes[width]
        ratio = macs["dense"]["multiply_adds"] / macs["filter-compacted"]["multiply_adds"]
        preparation[str(width)] = {"seconds": time.perf_counter() - started, "onnx_export_and_session_s": export_s,
                                   "onnx_failures": export_failures}
        print(f"width {width}: dense {macs['dense']['multiply_adds'] / 1e6:.1f} M multiply-adds per image, "
              f"compacted {macs['filter-compacted']['multiply_adds'] / 1e6:.1f} M (MAC ratio {ratio:.2f}); "
              f"built, exported and warmed up in {time.perf_counter() - started:.0f} s", flush=True)

    measure(configs, args.rounds, args.seed)

    results = []
    by_key = {(c.width, c.batch, c.model, c.runtime): c for c in configs}
    for config in configs:
        row = {"width": config.width, "batch": config.batch, "model": config.model, "runtime": config.runtime,
               "failure": config.failure, "calls_per_round": config.calls, "first_call_s": config.first_call_s,
               "max_abs_diff_vs_eager_fp32": config.max_abs_diff, "rounds_ms": config.ms}
        if config.failure is not None:
            results.append(row)
            print(f"{config.label} failed: {config.failure}")
            continue
        stats = config.stats()
        row.update(stats)
        text = "reference"
        dense = by_key[(config.width, config.batch, "dense", config.runtime)]
        if config.model != "dense" and dense.failure is None:
            speedup, verdict = speed_verdict(dense.stats(), stats)
            row.update({"speedup_over_dense": speedup, "verdict": verdict})
            text = verdict_text(config.model, speedup, verdict)
        elif config.model != "dense":
            text = "dense failed in this runtime"
        results.append(row)
        print(f"{config.label} median {stats['median_ms']:9.3f} ms  spread {stats['min_ms']:.3f}-{stats['max_ms']:.3f} ms"
              f"  {stats['img_per_s']:8.0f} img/s  {text}")

    gains = {}
    for model in MASKED_STRATEGIES:
        found = [f"{r['runtime']} (width {r['width']}, batch {r['batch']}, {r['speedup_over_dense']:.2f}x)"
                 for r in results if r["model"] == model and r.get("verdict") == "faster"]
        gains[model] = found
        print(f"{model}: " + ("gain beyond spread in " + "; ".join(found) if found else
                              f"no gain in any runtime ({', '.join(args.runtimes)})"))

    width, batch = max(args.widths), max(args.batches)
    candidates = [r for r in results if r["width"] == width and r["batch"] == batch
                  and r["model"] == "filter-compacted" and "speedup_over_dense" in r]
    mac_ratio = sizes[width]["dense"]["multiply_adds"] / sizes[width]["filter-compacted"]["multiply_adds"]
    best = max(candidates, key=lambda r: r["speedup_over_dense"]) if candidates else None
    ratio_spread = None
    if best is not None:  # the ratio at the rounds' extremes: dense's fastest over compacted's slowest, and back
        dense = by_key[(width, batch, "dense", best["runtime"])].stats()
        ratio_spread = [dense["min_ms"] / best["max_ms"] / mac_ratio, dense["max_ms"] / best["min_ms"] / mac_ratio]
    summary = {"width": width, "batch": batch, "mac_ratio": mac_ratio,
               "best_runtime": best["runtime"] if best else None,
               "compacted_speedup": best["speedup_over_dense"] if best else None,
               "compacted_speedup_exceeds_spread": best["verdict"] == "faster" if best else None,
               "speedup_over_mac_ratio": best["speedup_over_dense"] / mac_ratio if best else None,
               "speedup_over_mac_ratio_spread": ratio_spread,
               "masked_gains": gains}
    record = {
        "benchmark": "deployment", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(), "machine": platform.machine(), "threads": args.threads, "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"), "onnx": _version("onnx"), "onnxscript": _version("onnxscript"),
        "settings": {"widths": args.widths, "batches": args.batches, "runtimes": args.runtimes, "rounds": args.rounds,
                     "warmup": args.warmup, "min_time_s": args.min_time, "seed": args.seed, "quick": args.quick,
                     "spread": "min-max over rounds"},
        "sparsities": {strategy: table1_sparsities(strategy) for strategy in MASKED_STRATEGIES.values()},
        "models": {str(w): s for w, s in sizes.items()}, "preparation": preparation,
        "results": results, "summary": summary, "wall_seconds": time.perf_counter() - wall_started,
        "code_version": code_version(),
    }
    out = resolve_path(args.record or f"data/benchmarks/deployment/{machine_slug()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"record: {out} ({record['wall_seconds']:.0f} s in all)")
    if best is None:
        print(f"best runtime (width {width}, batch {batch}): none measured both dense and compacted")
        print(f"compacted speedup / MAC ratio (width {width}, batch {batch}): nan")
    else:
        exceeds = "exceeds spread" if best["verdict"] == "faster" else "does not exceed spread"
        print(f"best runtime (width {width}, batch {batch}): {best['runtime']}, compacted speedup "
              f"{best['speedup_over_dense']:.2f}x ({exceeds}), MAC ratio {mac_ratio:.2f}x; speedup / MAC ratio "
              f"between {ratio_spread[0]:.2f} and {ratio_spread[1]:.2f} at the extremes of the rounds")
        print(f"compacted speedup / MAC ratio (width {width}, batch {batch}): {summary['speedup_over_mac_ratio']:.2f}")


if __name__ == "__main__":
    main()
