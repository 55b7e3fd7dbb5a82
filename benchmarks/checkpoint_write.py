"""What a checkpoint costs ``dovlib.train.fit``: the file write (``_save_atomic``: ``torch.save``, fsync, rename)
against the in-memory copy ``fit`` keeps of each epoch's state between writes (``_snapshot``), for a ResNet-18 of
``--width`` with its SGD momentum state, taking turns, ``--repeats`` times each after one warm-up; prints medians,
ranges and their ratio, measured in one run.

    python benchmarks/checkpoint_write.py               # width 64: the quick profile's model, about 85 MB
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dovlib.models import build_model
from dovlib.train import TrainConfig, _save_atomic, _snapshot, make_optimizer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", default=None, help="folder to write in (default: a temporary one)")
    args = ap.parse_args(argv)
    if args.width < 1 or args.repeats < 1:
        ap.error(f"--width and --repeats must be >= 1; got {args.width} and {args.repeats}")
    model = build_model("resnet18", 10, 3, width=args.width)
    opt, sched = make_optimizer(model, TrainConfig(), 100)
    loss = torch.nn.functional.cross_entropy(model(torch.rand(8, 3, 32, 32)), torch.zeros(8, dtype=torch.long))
    loss.backward()
    opt.step()  # the optimiser now holds its momentum buffers, as in a checkpoint after the first epoch
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "c.pt"
        write, copy = [], []
        for _ in range(args.repeats + 1):
            t = time.perf_counter()
            _save_atomic(state, path)
            write.append(time.perf_counter() - t)
            t = time.perf_counter()
            _snapshot(state)
            copy.append(time.perf_counter() - t)
        size = path.stat().st_size / 2 ** 20
    write, copy = write[1:], copy[1:]  # the first of each is a warm-up
    print(f"ResNet-18 width {args.width} with momentum: checkpoint file {size:.0f} MiB, {args.repeats} repeats each")
    for name, t in (("write (_save_atomic: save, fsync, rename)", write), ("copy (_snapshot, in memory)", copy)):
        print(f"{name:42s} median {statistics.median(t) * 1e3:7.1f} ms, range {min(t) * 1e3:.1f}-{max(t) * 1e3:.1f}")
    print(f"write / copy: {statistics.median(write) / statistics.median(copy):.1f}x")


if __name__ == "__main__":
    main()
