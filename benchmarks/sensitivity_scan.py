"""Benchmark: our per-layer sensitivity scan against the naive one, same model, same images,
one setting changed at a time.

Naive (the seed's way): for every (layer, sparsity) point, deep-copy the model, prune that layer
(``prune_model``), and run the whole network over the split. Ours (``scan_sensitivity``): the
activations entering the layer computed once per batch, only the rest of the network run per
sparsity, masks swapped into the live model, the dense point evaluated once.

Configurations, each changing one thing (the ablation):

1. naive, fp32, NCHW, batch 512 (the original's style; every point timed)
2. + channels_last (timed on a sample of points, scaled to all points)
3. + the batch a new run scans with on this machine (the cpu probe's choice among the profile's
   ``eval_batch_candidates`` and ``eval_batch_size``, cached per machine; likewise)
4. + our method at the same settings (every point): ``method-only`` = 3 / 4 in fp32
5. + bf16 autocast (every point), where the run computes in bf16 (the cpu profile on a CPU with
   AVX512-BF16). Where this CPU emulates bf16, ours is 4, in fp32, and the benchmark says so.

``identical`` compares every accuracy of naive and ours at the same precision: in fp32 (1 vs 4),
and in bf16 where it runs (naive bf16, every point, vs 5). The scan's floor is the multiply-adds
our method must do (prefix once per layer and batch, the rest of the network once per masked
point, the dense model once; masked layers are not compacted) at this machine's matmul peak in
our precision, measured in the same run; ``limit: <p>%`` is that floor over our time.

Default: the cpu profile's model (width 0.25), the first 2,000 images of its validation split
(of the CIFAR-10 JPEG copy, where that is the source; ``--images 0`` takes all 5,000, which on an
AVX2-only CPU takes longer than 10 minutes), the filter criterion, and the run's trained dense model, obtained through
the run (``data/runs/<profile>``): reused when its stored key matches, trained first (with a
message) when it is missing or stale, or refused with ``--no-train``. Never random weights.
Writes a JSON record to ``data/benchmarks/``. Last line: ``speedup: <ratio>x, identical: <bool>``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone

import torch

from pruning_utils.artifacts import step_key
from pruning_utils.cpu_probe import PROBE_FILE, evaluation_batch_size
from pruning_utils.criteria import unit_scores
from pruning_utils.latency import cpu_model, machine_slug, matmul_peak, native_bf16
from pruning_utils.model import CONV_NAMES, conv_layers, multiply_adds_of
from pruning_utils.runs import code_version, open_run, resolve_path
from pruning_utils.sensitivity import scan_sensitivity, scan_sensitivity_naive
from pruning_utils.steps import DENSE_FILES, dense_inputs, dense_model


def scan_multiply_adds(model, strategy: str, sparsities, images: int) -> int:
    """Multiply-adds our scan performs over ``images`` images (see the module docstring)."""
    model = model.eval()
    x = torch.zeros(1, 3, 32, 32)
    total = multiply_adds_of(lambda: model(x))  # the dense point, once
    for layer in CONV_NAMES:
        units = unit_scores(conv_layers(model)[layer].weight, strategy).numel()
        masked = sum(1 for s in sparsities if round(s * units) > 0)
        entering = model.features_before(x, layer)
        total += multiply_adds_of(lambda: model.features_before(x, layer))
        total += masked * multiply_adds_of(lambda: model.forward_from(entering, layer))
    return total * images


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--strategy", default="filter", choices=("fine-grained", "kernel", "filter"))
    parser.add_argument("--images", type=int, default=2000, help="use the first N validation images (0 = all)")
    parser.add_argument("--run-dir", default="", help="the run whose dense model is scanned (default data/runs/<profile>)")
    parser.add_argument("--no-train", action="store_true", help="refuse, instead of training, when the run has no "
                        "current dense model")
    parser.add_argument("--naive-batch", type=int, default=512)
    parser.add_argument("--fast-batch", type=int, default=0,
                        help="our scan's batch (0: the batch a new run evaluates in on this machine: the cpu probe's "
                        "choice among the profile's eval_batch_candidates and eval_batch_size)")
    parser.add_argument("--sample-every", type=int, default=5,
                        help="configurations 2-3 are timed on every N-th point and scaled to all points")
    parser.add_argument("--data-source", default=None)
    parser.add_argument("--record", default="", help="where the JSON record goes "
                        "(default: data/benchmarks/sensitivity_scan/<this machine>.json)")
    args = parser.parse_args()

    run = open_run(args.profile, args.run_dir or None, data_source=args.data_source, progress=True)
    profile, data = run.profile, run.data
    x, y = data.val_x, data.val_y
    if args.images:
        x, y = x[: args.images], y[: args.images]
    inputs = dense_inputs(run)
    status = run.store.status(DENSE_FILES, step_key("dense", inputs), inputs)
    if status != "fresh":
        if args.no_train:
            raise SystemExit(f"the run {run.run_dir} has no current dense model ({status}); run notebooks/01_train "
                             "or drop --no-train to train it now")
        print(f"the run {run.run_dir} has no current dense model ({status}): training it first, as notebook 01 would")
    model, key = dense_model(run)
    weights = f"trained (run {run.run_dir.name}, dense key {key})"
    grid = profile.scan_sparsities
    points = len(CONV_NAMES) * len(grid)
    sample_layers = CONV_NAMES[:: args.sample_every] if args.sample_every > 1 else CONV_NAMES
    print(f"model: width {profile.width}, {weights}; images: {len(x)} ({data.source}); strategy: {args.strategy}; "
          f"{points} points; torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_model()}", flush=True)

    # the precision the study scans this run in, unless this CPU emulates it (then timing it would time the emulation)
    precision = "fp32" if run.precision != "bf16" or not native_bf16() else "bf16"
    if not args.fast_batch:  # large batches of a narrow model can leave the caches: the probe times a few here
        args.fast_batch = evaluation_batch_size(
            profile.width, precision, profile.eval_batch_size, profile.eval_batch_candidates,
            resolve_path("data/cache") / PROBE_FILE) if run.device.type == "cpu" else profile.eval_batch_size
    peak = matmul_peak({"fp32": torch.float32, "bf16": torch.bfloat16}[precision])
    print(f"matmul peak: {precision} {peak / 1e9:.0f} GMAC/s; ours runs in {precision}"
          + ("" if precision == "bf16" else " (this CPU emulates bf16: no bf16 configuration)"), flush=True)

    def naive(precision, channels_last, batch, layers=CONV_NAMES):
        layout = torch.channels_last if channels_last else torch.contiguous_format
        return timed(lambda: scan_sensitivity_naive(model.to(memory_format=layout), x, y, args.strategy,
                                                     sparsities=grid, layers=layers, batch_size=batch,
                                                     precision=precision, channels_last=channels_last, progress=False))

    def ours(precision):
        return timed(lambda: scan_sensitivity(model.to(memory_format=torch.channels_last), x, y, args.strategy,
                                              sparsities=grid, batch_size=args.fast_batch, precision=precision,
                                              progress=False))

    lines = []

    def line(label: str, seconds: float, how: str) -> None:
        previous = lines[-1]["seconds"] if lines else seconds
        baseline = lines[0]["seconds"] if lines else seconds
        lines.append({"configuration": label, "seconds": seconds, "how": how, "step_ratio": previous / seconds,
                      "cumulative_ratio": baseline / seconds})
        print(f"  {label}: {seconds:.1f} s ({how}), x{previous / seconds:.2f} (step), x{baseline / seconds:.2f} "
              "(cumulative)", flush=True)

    scale = len(CONV_NAMES) / len(sample_layers)
    sample_note = f"timed on {len(sample_layers)} of {len(CONV_NAMES)} layers, scaled"
    naive_fp32, t_naive = naive("fp32", False, args.naive_batch)
    line(f"naive, fp32, NCHW, batch {args.naive_batch}", t_naive, "every point")
    _, t = naive("fp32", True, args.naive_batch, sample_layers)
    line("+ channels_last", t * scale, sample_note)
    _, t = naive("fp32", True, args.fast_batch, sample_layers)
    t_naive_same = t * scale
    line(f"+ batch {args.fast_batch}", t_naive_same, sample_note)
    ours_fp32, t_ours_fp32 = ours("fp32")
    line("+ our method (prefix reuse, mask swap)" + (" = ours" if precision == "fp32" else ""), t_ours_fp32, "every point")
    identical = {"fp32": naive_fp32["accuracy"].tolist() == ours_fp32["accuracy"].tolist()}
    method_only = {"fp32": t_naive_same / t_ours_fp32}
    t_ours, t_naive_bf16 = t_ours_fp32, None
    if precision == "bf16":
        ours_bf16, t_ours = ours("bf16")
        line("+ bf16 autocast (the study's precision) = ours", t_ours, "every point")
        naive_bf16, t_naive_bf16 = naive("bf16", True, args.fast_batch)
        print(f"  (naive at bf16, channels_last, batch {args.fast_batch}, for the bf16 identity check: {t_naive_bf16:.1f} s)")
        identical["bf16"] = naive_bf16["accuracy"].tolist() == ours_bf16["accuracy"].tolist()
        method_only["bf16"] = t_naive_bf16 / t_ours

    macs = scan_multiply_adds(model, args.strategy, grid, len(x))
    floor = macs / peak
    ratio = t_naive / t_ours
    record = {
        "benchmark": "sensitivity_scan",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "profile": profile.name, "width": profile.width, "strategy": args.strategy, "images": len(x),
        "data": data.source, "weights": weights, "points": points,
        "naive_batch": args.naive_batch, "ours_batch": args.fast_batch, "ours_precision": precision,
        "native_bf16": native_bf16(),
        "ablation": lines, "naive_seconds": t_naive, "ours_seconds": t_ours, "speedup": ratio,
        "method_only": method_only, "naive_bf16_seconds": t_naive_bf16,
        "identical": all(identical.values()), "identical_by_precision": identical,
        "scan_multiply_adds": macs, "matmul_peak_mac_per_s": {precision: peak}, "floor_seconds": floor,
        "limit": floor / t_ours, "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
        "machine": platform.machine(), "code_version": code_version(),
    }
    out = resolve_path(args.record or f"data/benchmarks/sensitivity_scan/{machine_slug()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print("identical " + ", ".join(f"in {p}: {same}" for p, same in identical.items()) + f"; record: {out}")
    print(f"floor: {floor:.1f} s ({macs / 1e12:.2f} T multiply-adds at this machine's {precision} peak); "
          f"limit: {100 * floor / t_ours:.0f}%")
    print(f"method-only: {method_only[precision]:.2f}x ({precision}"
          + (f"; fp32: {method_only['fp32']:.2f}x" if precision == "bf16" else "") + ", naive timed on a sample)")
    print(f"speedup: {ratio:.2f}x, identical: {record['identical']}")


if __name__ == "__main__":
    main()
