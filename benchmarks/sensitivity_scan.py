"""Benchmark: our per-layer sensitivity scan against the naive one, same model, same images.

Naive (the seed's way): for every (layer, sparsity) point, deep-copy the model, prune that layer
(``prune_model``), and run the whole network over the split, fp32, NCHW, batch 512.
Ours (``scan_sensitivity``, batch 250): activations entering the layer computed once per batch, only the
rest of the network run per sparsity, masks swapped into the live model, the dense point
evaluated once; fp32 in channels_last. Both score every image of the split.

Default: the cpu profile's model (width 0.25) and validation split (5,000 images of the
CIFAR-10 JPEG copy), the filter criterion (the cost per point is the same for all three), and
the run's trained dense model, obtained through the run (``data/runs/<profile>``): reused when
its stored key matches, trained first (with a message) when it is missing or stale, or refused
with ``--no-train``. Never random weights. Prints both times, the ratio and whether every accuracy is identical, and writes a JSON
record to ``data/benchmarks/``. Last line: ``speedup: <ratio>x, identical: <bool>``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone

import torch

from pruning_utils.artifacts import step_key
from pruning_utils.latency import cpu_model
from pruning_utils.runs import code_version, open_run, resolve_path
from pruning_utils.sensitivity import scan_sensitivity, scan_sensitivity_naive
from pruning_utils.steps import DENSE_FILES, dense_inputs, dense_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--strategy", default="filter", choices=("fine-grained", "kernel", "filter"))
    parser.add_argument("--images", type=int, default=0, help="use the first N validation images (0 = all)")
    parser.add_argument("--run-dir", default="", help="the run whose dense model is scanned (default data/runs/<profile>)")
    parser.add_argument("--no-train", action="store_true", help="refuse, instead of training, when the run has no "
                        "current dense model")
    parser.add_argument("--naive-batch", type=int, default=512)
    parser.add_argument("--fast-batch", type=int, default=250, help="our scan's batch (250 was fastest here)")
    parser.add_argument("--data-source", default=None)
    parser.add_argument("--record", default="data/benchmarks/sensitivity_scan.json", help="where the JSON record goes")
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
    print(f"model: width {profile.width}, {weights}; images: {len(x)} ({data.source}); "
          f"strategy: {args.strategy}; torch {torch.__version__}, {torch.get_num_threads()} threads")

    started = time.perf_counter()
    naive = scan_sensitivity_naive(model.to(memory_format=torch.contiguous_format), x, y, args.strategy,
                                   sparsities=profile.scan_sparsities, batch_size=args.naive_batch,
                                   precision="fp32", channels_last=False)
    naive_s = time.perf_counter() - started
    print(f"naive: {naive_s:.1f} s")

    started = time.perf_counter()
    fast = scan_sensitivity(model.to(memory_format=torch.channels_last), x, y, args.strategy,
                            sparsities=profile.scan_sparsities, batch_size=args.fast_batch, precision="fp32")
    fast_s = time.perf_counter() - started
    print(f"ours:  {fast_s:.1f} s")

    identical = naive["accuracy"].tolist() == fast["accuracy"].tolist()
    differing = int((naive["accuracy"] != fast["accuracy"]).sum())
    ratio = naive_s / fast_s
    record = {
        "benchmark": "sensitivity_scan",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "profile": profile.name, "width": profile.width, "strategy": args.strategy, "images": len(x),
        "data": data.source, "weights": weights, "points": len(fast),
        "naive_batch": args.naive_batch, "ours_batch": args.fast_batch,
        "naive_seconds": naive_s, "ours_seconds": fast_s, "speedup": ratio,
        "identical": identical, "points_differing": differing,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
        "machine": platform.machine(),
        "code_version": code_version(),
    }
    out = resolve_path(args.record)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"points: {len(fast)}, differing: {differing}; record: {out}")
    print(f"speedup: {ratio:.2f}x, identical: {identical}")


if __name__ == "__main__":
    main()
