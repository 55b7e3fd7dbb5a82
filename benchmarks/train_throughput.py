"""Training throughput of ``dovlib.train.fit`` against the common research loop, measured in one run.

The common loop: torchvision dataset-style access to PIL images, ``RandomCrop(32, padding=4)`` +
``RandomHorizontalFlip`` + ``ToTensor`` in a ``DataLoader`` with worker processes, fp32, with the same optimiser and
learning-rate schedule as ``fit`` (``dovlib.train.make_optimizer``), so only the data path and precision differ.
dovlib: uint8 data resident on the device, batched crop/flip on the device, bf16 autocast + channels_last on CUDA.
Same model, batch size, optimiser, data and number of epochs; the first epoch of each is a warm-up and is not timed.
The loops take turns within each seed (the order reversed on every other seed), so a machine that speeds up or slows
down during the run moves both; speeds are timed images over timed seconds summed over the seeds, and with several
seeds each seed's ratio is printed too. On CUDA the ratio mixes the data path with precision (dovlib's ``auto`` is
bf16 autocast, the common loop fp32) and memory format (dovlib uses channels_last): ``--precision fp32,auto`` prints
both dovlib rows, the first against the common loop, the second against the first.

    python benchmarks/train_throughput.py                       # CPU-sized defaults (width 16)
    python benchmarks/train_throughput.py --width 64 --batch-size 512 --epochs 6 --workers 8   # GPU

Prints images/s of both and their ratio, plus the test accuracy each reached (a speed-up must not cost accuracy).
``--precision auto,bf16`` times dovlib's loop once per precision (a profile's ``precision``; ``bf16`` is bf16
autocast on the CPU too) and prints each one's ratio to the first, the way to measure CPU bf16 on a given machine:

    python benchmarks/train_throughput.py --width 64 --batch-size 128 --precision auto,bf16 --seeds 2
``--checkpoint-cost`` also times whole ``fit`` calls as the notebooks make them (test accuracy after every epoch, a
checkpoint file) with the state saved after every epoch against the default (at the end and at most once a minute,
the other epochs' state copied on the device for an interruption) and against no checkpoint at all.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from dovlib.data import load_dataset
from dovlib.models import build_model
from dovlib.params import parse_precisions
from dovlib.report import env_info
from dovlib.train import TrainConfig, evaluate, fit, make_optimizer, precision_options, resolve_device, uses_bf16


class PILDataset(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        # PIL reads grey images (MNIST, digits) as (H, W), not (H, W, 1)
        self.images = [Image.fromarray(img.permute(1, 2, 0).squeeze(2).numpy()) for img in x]
        self.y = y.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.y[i]


def common_loop(model, ds, args, device) -> tuple[int, float, float]:
    flip = [transforms.RandomHorizontalFlip()] if args.flip else []
    tf = transforms.Compose([transforms.RandomCrop(ds.image_shape[1], padding=4), *flip, transforms.ToTensor()])
    loader = DataLoader(PILDataset(ds.x_train, ds.y_train, tf), batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers, pin_memory=device.type == "cuda",
                        persistent_workers=args.workers > 0)
    model = model.to(device)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=str(device))
    opt, sched = make_optimizer(model, cfg, args.epochs * len(loader), device)  # the same optimiser and schedule as fit
    seen, timed = 0, 0.0
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if epoch > 0:  # epoch 0 is warm-up (worker start-up, cudnn autotune: main sets it for both loops)
            timed += time.perf_counter() - t0
            seen += len(ds.x_train)
    return seen, timed, evaluate(model, ds.x_test, ds.y_test)


def dovlib_loop(model, ds, args, device, precision: str = "auto") -> tuple[int, float, float]:
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=str(device),
                      compile=args.compile, progress=False, seed=getattr(args, "seed", 0), flip=args.flip,
                      **precision_options(precision))
    res = fit(model, ds.x_train, ds.y_train, config=cfg)
    timed = sum(r["epoch_time"] for r in res.history[1:])
    return (args.epochs - 1) * len(ds.x_train), timed, evaluate(res.model, ds.x_test, ds.y_test)


def checkpoint_cost(ds, args, device, folder) -> dict:
    """Wall time of whole ``fit`` calls (evaluation every epoch) saving every epoch vs the default vs no file."""
    out = {}
    for name, every in (("fit, checkpoint every epoch", 0.0), ("fit, checkpoint at the end / once a minute", 60.0),
                        ("fit, no checkpoint", None)):
        torch.manual_seed(0)
        model = build_model(args.arch, ds.num_classes, ds.image_shape[0], args.width, ds.image_shape[1])
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=str(device),
                          progress=False, seed=0, flip=args.flip, compile=args.compile,
                          **precision_options(args.precision[0]))  # as the first dovlib row
        t0 = time.perf_counter()
        fit(model, ds.x_train, ds.y_train, ds.x_test, ds.y_test, cfg,
            checkpoint=Path(folder) / f"{every}.pt" if every is not None else None, checkpoint_every=every or 0.0)
        out[name] = args.epochs * len(ds.x_train) / (time.perf_counter() - t0)
        print(f"{name:44s} {out[name]:10,.0f} images/s (whole call, {args.epochs} epochs)")
    every_epoch, default, none = out.values()
    print(f"speed-up (default / every epoch): {default / every_epoch:.2f}x; "
          f"default / no checkpoint: {default / none:.2f}x")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10-subset")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--width", type=int, default=16, help="64 = standard ResNet-18")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3, help="the first is warm-up and not timed")
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the common loop")
    ap.add_argument("--n-train", type=int, default=None, help="subsample the training set")
    ap.add_argument("--compile", action="store_true", help="torch.compile in dovlib (CUDA only)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seeds", type=int, default=1,
                    help="repeat both loops with this many seeds; accuracies are then mean +- sd (one seed is noisy)")
    ap.add_argument("--precision", default="auto", type=parse_precisions,
                    help="comma-separated precisions for dovlib's loop (auto | fp32 | bf16), e.g. auto,bf16")
    ap.add_argument("--checkpoint-cost", action="store_true",
                    help="also time whole fit calls saving a checkpoint every epoch vs the default")
    args = ap.parse_args(argv)
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch is warm-up)")
    if args.seeds < 1:
        ap.error("--seeds must be >= 1")
    for name, low in (("batch_size", 1), ("width", 1), ("workers", 0), ("n_train", 1)):
        value = getattr(args, name)
        if value is not None and value < low:
            ap.error(f"--{name.replace('_', '-')} must be >= {low}; got {value}")
    if not args.lr > 0:
        ap.error(f"--lr must be > 0; got {args.lr}")
    precisions = args.precision
    try:
        device = resolve_device(args.device)
    except (RuntimeError, ValueError) as e:  # --device cuda without CUDA: a usage error, not a traceback
        ap.error(f"--device: {e}")
    if args.compile and device.type != "cuda":
        ap.error(f"--compile needs a CUDA device (fit compiles on CUDA only); got {device}")
    if device.type == "cuda":  # fit turns cuDNN autotuning on for the process; the common loop gets it from the start
        torch.backends.cudnn.benchmark = True
    ds = load_dataset(args.dataset).subsample(args.n_train, None)
    args.flip = ds.image_shape[0] == 3  # no horizontal flips for grey digits (as the notebooks' profiles)
    print(ds.describe())
    info = env_info(device)
    resolved = {p: "bf16 autocast" if uses_bf16(p, device) else "fp32" for p in precisions}
    print(f"device: {info['device_name']} | torch {info['torch']} | {torch.get_num_threads()} torch threads | "
          f"{args.arch} width {args.width} | batch {args.batch_size} | lr {args.lr} | {args.epochs} epochs (first "
          f"untimed) | {args.seeds} seed(s), loops in turn | common loop: {args.workers} workers | dovlib: "
          + ", ".join(f"{p} = {r}" for p, r in resolved.items())
          + (" + channels_last" if device.type == "cuda" else "") + (", torch.compile" if args.compile else "")
          + (" | cuDNN autotuning on for both" if device.type == "cuda" else ""))
    same = [p for p in precisions[1:] if resolved[p] == resolved[precisions[0]]]
    if same:
        print(f"note: on {device.type} {', '.join(same)} trains as {precisions[0]} does ({resolved[precisions[0]]}): "
              "their ratio measures only noise")

    loops = [("common (DataLoader+PIL, fp32)", common_loop)] + [
        (f"dovlib.train.fit ({p}: {resolved[p]})", partial(dovlib_loop, precision=p)) for p in precisions]
    runs = {name: [] for name, _ in loops}
    for seed in range(args.seeds):
        for name, loop in (loops if seed % 2 == 0 else loops[::-1]):  # in turn, the order reversed every other seed
            torch.manual_seed(seed)
            args.seed = seed
            model = build_model(args.arch, ds.num_classes, ds.image_shape[0], args.width, ds.image_shape[1])
            runs[name].append(loop(model, ds, args, device))
    rows = {}
    for name, rs in runs.items():
        images, seconds, acc = sum(r[0] for r in rs), sum(r[1] for r in rs), np.array([r[2] for r in rs])
        rows[name] = (images / seconds, float(acc.mean()))
        spread = f" +- {acc.std(ddof=1):.3f} ({args.seeds} seeds)" if args.seeds > 1 else ""
        print(f"{name:40s} {rows[name][0]:10,.0f} images/s   test acc {acc.mean():.3f}{spread}")
        if seconds < 1.0:
            print(f"note: {name} timed {seconds:.2f} s in all: too little for a speed; raise --n-train or --epochs")
    names = list(rows)
    pairs = [(f"dovlib {precisions[0]} / common", names[1], names[0])] + [
        (f"dovlib {p} / dovlib {precisions[0]}", name, names[1]) for p, name in zip(precisions[1:], names[2:])]
    for label, a, b in pairs:
        per_seed = [(ra[0] / ra[1]) / (rb[0] / rb[1]) for ra, rb in zip(runs[a], runs[b])]
        detail = (f" (per seed {', '.join(f'{r:.2f}' for r in per_seed)}; median {np.median(per_seed):.2f}x)"
                  if args.seeds > 1 else "")
        print(f"speed-up ({label}): {rows[a][0] / rows[b][0]:.2f}x{detail}")
    if args.checkpoint_cost:
        with tempfile.TemporaryDirectory() as folder:
            rows.update(checkpoint_cost(ds, args, device, folder))
    return rows


if __name__ == "__main__":
    main()
