"""Benchmark: training images per second, our training step against the original's style.

Original style (the seed's code): torchvision ``DataLoader`` over a dataset of PIL images with
``RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor`` applied image by image, fp32,
NCHW, batch 512, Adam. Ours (``pruning_utils.training``): the split kept as one uint8 tensor,
batches sliced from a seeded permutation and augmented as whole batches in torch,
channels_last, bf16 autocast where the CPU supports it, same batch size and optimizer.

Both run the same model for the same number of timed steps after warm-up steps, on the
CIFAR-10 training images (the JPEG copy when that is the source found). Models: the full-width
VGG (8.39M parameters) and the cpu profile's width-0.25 model. Prints one line per model
``speedup <model>: <ratio>x`` and writes a JSON record to ``data/benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from datetime import datetime, timezone

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from pruning_utils.config import get_profile
from pruning_utils.data import augment_batch, load_splits
from pruning_utils.model import VGG16
from pruning_utils.runs import code_version, resolve_path
from pruning_utils.latency import cpu_model
from pruning_utils.evaluation import autocast, prepare_batch, resolve_precision


class PILImages(Dataset):
    """The original's input path: one PIL image at a time through torchvision transforms."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in x]
        self.labels = y.tolist()
        self.transform = transforms.Compose(
            [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def time_original(model, x, y, batch_size, steps, warmup) -> float:
    loader = DataLoader(PILImages(x, y), batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    batches = iter(loader)
    started = None
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        inputs, targets = next(batches)
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - started)


def time_ours(model, x, y, batch_size, steps, warmup) -> tuple[float, str]:
    device = torch.device("cpu")
    precision = resolve_precision("auto", device)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(x), generator=generator)
    started = None
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        idx = order[step * batch_size : (step + 1) * batch_size]
        inputs = prepare_batch(augment_batch(x[idx], generator), device)
        with autocast(device, precision):
            loss = F.cross_entropy(model(inputs), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - started), precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=0, help="timed steps per measurement (0: per model default)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--data-source", default=None)
    args = parser.parse_args()

    data = load_splits(args.data_source, cache_dir=resolve_path("data/cache"), val_size=0)
    cpu = get_profile("cpu")
    models = {"full-width": (1.0, args.steps or 4), f"cpu-profile (width {cpu.width})": (cpu.width, args.steps or 20)}
    needed = max(steps for _, steps in models.values()) + args.warmup
    x, y = data.train_x[: needed * args.batch_size], data.train_y[: needed * args.batch_size]
    print(f"data: {data.source}; batch {args.batch_size}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    results = {}
    for name, (width, steps) in models.items():
        torch.manual_seed(0)
        original = time_original(VGG16(width=width), x, y, args.batch_size, steps, args.warmup)
        torch.manual_seed(0)
        ours, precision = time_ours(VGG16(width=width), x, y, args.batch_size, steps, args.warmup)
        results[name] = {"width": width, "steps": steps, "original_img_per_s": original, "ours_img_per_s": ours,
                         "ours_precision": precision, "speedup": ours / original,
                         "epoch_seconds_ours_45k": 45000 / ours,
                         "peak_process_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        print(f"{name}: original {original:.0f} img/s, ours {ours:.0f} img/s ({precision}, channels_last)", flush=True)
    record = {"benchmark": "train_throughput", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "data": data.source, "batch_size": args.batch_size, "results": results, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "cpu": cpu_model(),
              "machine": platform.machine(),
              "code_version": code_version()}
    out = resolve_path("data/benchmarks") / "train_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"record: {out}")
    for name, r in results.items():
        print(f"speedup {name}: {r['speedup']:.2f}x")


if __name__ == "__main__":
    main()
