"""Benchmark: our per-layer sensitivity scan against the naive one, same model, same images.

Naive (the seed's way): for every (layer, sparsity) point, deep-copy the model, prune that layer
(``prune_model``), and run the whole network over the split, fp32, NCHW, batch 512.
Ours (``scan_sensitivity``, batch 250): activations entering the layer computed once per batch, only the
rest of the network run per sparsity, masks swapped into the live model, the dense point
evaluated once; fp32 in channels_last. Both score every image of the split.

Default: the cpu profile's model (width 0.25) and validation split (5,000 images of the
CIFAR-10 JPEG copy), the filter criterion (the cost per point is the same for all three), a
trained dense model from ``data/runs/cpu/dense.pt`` when there is one, else seeded random
weights. Prints both times, the ratio and whether every accuracy is identical, and writes a JSON
record to ``data/benchmarks/``. Last line: ``speedup: <ratio>x, identical: <bool>``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from pruning_utils.config import get_profile
from pruning_utils.data import load_splits
from pruning_utils.model import VGG16
from pruning_utils.runs import code_version, load_model, resolve_path
from pruning_utils.sensitivity import scan_sensitivity, scan_sensitivity_naive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--strategy", default="filter", choices=("fine-grained", "kernel", "filter"))
    parser.add_argument("--images", type=int, default=0, help="use the first N validation images (0 = all)")
    parser.add_argument("--model", default="data/runs/cpu/dense.pt", help="trained model (random if missing)")
    parser.add_argument("--naive-batch", type=int, default=512)
    parser.add_argument("--fast-batch", type=int, default=250, help="our scan's batch (250 was fastest here)")
    parser.add_argument("--data-source", default=None)
    args = parser.parse_args()

    profile = get_profile(args.profile)
    data = load_splits("synthetic" if profile.data == "synthetic" else args.data_source,
                       cache_dir=resolve_path("data/cache"), val_size=profile.val_size,
                       synthetic_sizes=profile.synthetic_sizes)
    x, y = data.val_x, data.val_y
    if args.images:
        x, y = x[: args.images], y[: args.images]
    model_path = resolve_path(args.model)
    if model_path.exists():
        model, _ = load_model(model_path)
        weights = f"trained ({args.model})"
    else:
        torch.manual_seed(0)
        model = VGG16(width=profile.width, dropout=profile.dropout, head_init=profile.head_init)
        weights = "random (seed 0)"
    model.eval()
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
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "code_version": code_version(),
    }
    out = resolve_path("data/benchmarks") / "sensitivity_scan.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"points: {len(fast)}, differing: {differing}; record: {out}")
    print(f"speedup: {ratio:.2f}x, identical: {identical}")


if __name__ == "__main__":
    main()
