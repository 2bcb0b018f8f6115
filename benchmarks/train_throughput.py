"""Benchmark: training images per second, our training step against the original's style.

Original style (the seed's code): torchvision ``DataLoader`` over a dataset of PIL images with
``RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor`` applied image by image, fp32,
NCHW, batch 512, Adam. Ours (``pruning_utils.training``): the split kept as one uint8 tensor,
batches sliced from a seeded permutation and augmented as whole batches in torch,
channels_last, and the precision the study trains in on this CPU (bf16 autocast unless the
cached probe of ``pruning_utils.cpu_probe`` found fp32 faster here), same batch size and optimizer.

Both run the same model for the same number of timed steps after warm-up steps, on the
CIFAR-10 training images (the JPEG copy when that is the source found). Models: the full-width
VGG (8.39M parameters) and the cpu profile's width-0.25 model.

Between the two, one line per configuration changes one thing at a time (ablation): the tensor
data pipeline (fp32, NCHW), then channels_last, then bf16 autocast (= ours) where the study trains
in bf16 on this CPU (on a CPU that emulates bf16 ours is fp32 channels_last, and no bf16 line is
timed), each with its images/s, the ratio to the line before and to the original; one more line
times our step under ``torch.compile`` (inductor, which fuses BatchNorm and ReLU; the study does
not use it), and one says where our step's time goes (``torch.profiler``: convolutions,
BatchNorm, ReLU, max-pool, other), at what fraction of this machine's peak (in our precision) the
convolutions alone run, and at what fraction of that convolutions-alone rate the whole step runs.
The run measures this machine's matmul peak (fp32, and bf16 where the CPU computes it natively;
best of repeated timings) and prints ``efficiency <model>: <p>% of this machine's <precision>
peak``: multiply-adds per second achieved by our training step (3x the forward pass's
multiply-adds per image, a standard count for forward + backward) over the peak of the precision
it trains in. Ends with ``speedup <model>: <ratio>x`` per model and writes a JSON record to
``data/benchmarks/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
from pruning_utils.model import VGG16, count_multiply_adds
from pruning_utils.runs import code_version, resolve_data_source, resolve_path
from pruning_utils.latency import cpu_model, machine_slug, matmul_peak, native_bf16
from pruning_utils.cpu_probe import PROBE_FILE, training_precision
from pruning_utils.evaluation import autocast, prepare_batch


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


class TensorStep:
    """Our training step (:mod:`pruning_utils.training`) on ``model``: uint8 batches sliced from a
    seeded permutation and augmented in torch, at ``precision``, in channels_last or NCHW, Adam.
    ``forward`` replaces the model's call (``torch.compile`` of it); calling the object with a
    step number runs that step."""

    def __init__(self, model, x, y, batch_size: int, precision: str, channels_last: bool = True, forward=None):
        layout = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(memory_format=layout).train()
        self.forward = forward(self.model) if forward is not None else self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.generator = torch.Generator().manual_seed(0)
        self.order = torch.randperm(len(x), generator=self.generator)
        self.x, self.y, self.batch_size, self.precision, self.channels_last = x, y, batch_size, precision, channels_last

    def __call__(self, step: int) -> None:
        device = torch.device("cpu")
        idx = self.order[torch.arange(step * self.batch_size, (step + 1) * self.batch_size) % len(self.order)]
        inputs = prepare_batch(augment_batch(self.x[idx], self.generator), device, channels_last=self.channels_last)
        with autocast(device, self.precision):
            loss = F.cross_entropy(self.forward(inputs), self.y[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def images_per_second(step: TensorStep, steps: int, warmup: int) -> tuple[float, float]:
    """Images/s of ``steps`` steps after ``warmup`` untimed ones, and the seconds the warm-up took."""
    started = time.perf_counter()
    for i in range(warmup):
        step(i)
    warmup_seconds, started = time.perf_counter() - started, time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    return steps * step.batch_size / (time.perf_counter() - started), warmup_seconds


def time_tensor_pipeline(model, x, y, batch_size, steps, warmup, precision: str, channels_last: bool) -> float:
    """Images/s of our training step at ``precision`` and in the given memory layout."""
    return images_per_second(TensorStep(model, x, y, batch_size, precision, channels_last), steps, warmup)[0]


def time_compiled(model, x, y, batch_size, steps, warmup, precision: str) -> tuple[float, float]:
    """Our step with ``torch.compile(model, dynamic=False)`` (inductor, default mode; not what the
    study runs): images/s after at least two warm-up steps, and the seconds those took (compilation)."""
    torch._dynamo.reset()  # a fresh graph per model: no shapes carried over (no automatic dynamic shapes)
    step = TensorStep(model, x, y, batch_size, precision, forward=lambda m: torch.compile(m, dynamic=False))
    return images_per_second(step, steps, max(2, warmup))


OP_GROUPS: dict[str, tuple[str, ...]] = {  # profiler op names (substrings) -> where the step's time goes
    "convolutions": ("convolution",),
    "BatchNorm": ("batch_norm",),
    "ReLU": ("threshold_backward", "clamp_min", "relu"),
    "max-pool": ("max_pool",),
}


@contextlib.contextmanager
def quiet_stderr():
    """File descriptor 2 to /dev/null for the block: the profiler's C++ side logs its start, stop
    and a failed GPU probe there on a machine without a GPU (Python exceptions still propagate)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def time_breakdown(model, x, y, batch_size: int, steps: int, precision: str) -> dict[str, float]:
    """Seconds per training step of ours (channels_last, ``precision``) spent in each of
    :data:`OP_GROUPS` and in ``other`` (everything else: optimizer, augmentation, loss, autograd
    bookkeeping), from ``torch.profiler``'s self CPU time of the aten ops, over ``steps`` profiled
    steps after one unprofiled one; ``total`` is their sum."""
    from torch.profiler import ProfilerActivity, profile

    step = TensorStep(model, x, y, batch_size, precision)
    step(0)
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(1, 1 + steps):
            step(i)
    seconds = dict.fromkeys([*OP_GROUPS, "other"], 0.0)
    for event in prof.key_averages():
        group = next((g for g, names in OP_GROUPS.items() if any(n in event.key for n in names)), "other")
        seconds[group] += event.self_cpu_time_total / 1e6 / steps
    seconds["total"] = sum(seconds.values())
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=0, help="timed steps per measurement (0: per model default)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--data-source", default=None)
    args = parser.parse_args()

    data = load_splits(resolve_data_source(args.data_source), cache_dir=resolve_path("data/cache"), val_size=0)
    cpu = get_profile("cpu")
    # few steps, so that the whole benchmark stays within 10 minutes on a 2-core CPU without native bf16 (one
    # full-width step of 512 images takes about 15 s there)
    models = {"full-width": (1.0, args.steps or 2), f"width-{cpu.width}": (cpu.width, args.steps or 12)}
    needed = max(steps for _, steps in models.values()) + args.warmup
    x, y = data.train_x[: needed * args.batch_size], data.train_y[: needed * args.batch_size]
    print(f"data: {data.source}; batch {args.batch_size}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    # the precision the study trains in on this CPU (measured and cached by the probe of cpu_probe): fp32 where
    # bf16 is emulated; peaks only of the precisions this CPU computes natively (an emulated peak means nothing)
    ours_precision = training_precision(cpu.width, cpu.batch_size, resolve_path("data/cache") / PROBE_FILE)
    peaks = {"fp32": matmul_peak(torch.float32), **({"bf16": matmul_peak(torch.bfloat16)} if native_bf16() else {})}
    print("matmul peak: " + ", ".join(f"{p} {v / 1e9:.0f} GMAC/s" for p, v in peaks.items())
          + ("" if native_bf16() else " (this CPU emulates bf16: not measured)") + f"; ours trains in {ours_precision}",
          flush=True)
    configurations = [("tensor pipeline, fp32, NCHW", "fp32", False), ("+ channels_last", "fp32", True)]
    if ours_precision == "fp32":
        configurations[-1] = ("+ channels_last (ours, fp32)", "fp32", True)
    else:
        configurations.append((f"+ {ours_precision} autocast (ours)", ours_precision, True))
    peak = peaks[ours_precision]
    results = {}
    for name, (width, steps) in models.items():
        macs = count_multiply_adds(VGG16(width=width))
        torch.manual_seed(0)
        original = time_original(VGG16(width=width), x, y, args.batch_size, steps, args.warmup)
        print(f"{name}: original style (PIL DataLoader, fp32, NCHW): {original:.0f} img/s", flush=True)
        lines, previous = [], original
        for label, precision, channels_last in configurations:
            torch.manual_seed(0)
            rate = time_tensor_pipeline(VGG16(width=width), x, y, args.batch_size, steps, args.warmup, precision,
                                        channels_last)
            lines.append({"configuration": label, "img_per_s": rate, "step_ratio": rate / previous,
                          "cumulative_ratio": rate / original})
            print(f"  {label}: {rate:.0f} img/s, x{rate / previous:.2f} (step), x{rate / original:.2f} (cumulative)",
                  flush=True)
            previous = rate
        ours = lines[-1]["img_per_s"]
        efficiency = ours * 3 * macs / peak
        torch.manual_seed(0)
        compiled, compile_seconds = time_compiled(VGG16(width=width), x, y, args.batch_size, steps, args.warmup,
                                                  ours_precision)
        print(f"  + torch.compile (inductor; not used by the study): {compiled:.0f} img/s, x{compiled / ours:.2f} "
              f"(step), x{compiled / original:.2f} (cumulative); compiling took {compile_seconds:.0f} s", flush=True)
        torch.manual_seed(0)
        breakdown = time_breakdown(VGG16(width=width), x, y, args.batch_size, min(steps, 5), ours_precision)
        conv_efficiency = args.batch_size * 3 * macs / breakdown["convolutions"] / peak
        conv_share = breakdown["convolutions"] / breakdown["total"]  # the step's rate over the convolutions-alone rate
        print("  where our step's time goes (profiler): " + ", ".join(
            f"{g} {100 * breakdown[g] / breakdown['total']:.0f}%" for g in [*OP_GROUPS, "other"])
            + f"; the convolutions alone run at {100 * conv_efficiency:.0f}% of this machine's {ours_precision} "
            f"peak, and the whole step at {100 * conv_share:.0f}% of the convolutions-alone rate", flush=True)
        results[name] = {"width": width, "steps": steps, "forward_multiply_adds": macs,
                         "original_img_per_s": original, "ablation": lines, "ours_img_per_s": ours,
                         "ours_precision": ours_precision, "speedup": ours / original,
                         "efficiency_of_peak": efficiency, "peak_precision": ours_precision,
                         "compiled_img_per_s": compiled, "compile_seconds": compile_seconds,
                         "step_seconds_by_op_group": breakdown, "convolutions_efficiency_of_peak": conv_efficiency,
                         "step_over_convolutions_alone": conv_share,
                         "epoch_seconds_ours_45k": 45000 / ours,
                         "peak_process_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    record = {"benchmark": "train_throughput", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "data": data.source, "batch_size": args.batch_size, "results": results,
              "matmul_peak_mac_per_s": peaks, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "cpu": cpu_model(),
              "machine": platform.machine(),
              "code_version": code_version()}
    out = resolve_path("data/benchmarks/train_throughput") / f"{machine_slug()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"record: {out}")
    for name, r in results.items():
        print(f"efficiency {name}: {100 * r['efficiency_of_peak']:.0f}% of this machine's {ours_precision} peak")
    for name, r in results.items():
        print(f"speedup {name}: {r['speedup']:.2f}x")


if __name__ == "__main__":
    main()
