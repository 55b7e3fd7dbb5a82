"""HiDDeN training throughput per precision (``dovlib.imwm.train_hidden(precision=...)``), measured in one run.

Each precision trains the same network from the same seed on the same images for ``--steps`` steps; the first
``--warmup`` steps are not timed (the step times come from the training history). The precisions take turns,
``--rounds`` times, so a busy host slows them alike. Prints training images/s, the ratio of each precision to the
first, and the last logged training bit accuracy and PSNR of each (a speed-up must not cost the message):

    python benchmarks/hidden_throughput.py                                   # CPU-sized defaults (64x64, 32 channels)
    python benchmarks/hidden_throughput.py --size 128 --channels 64 --batch-size 32 --steps 200 --device cuda \
        --precision fp32,auto                  # on CUDA auto is bf16 already: the default auto,bf16 would time it twice

The precisions take turns in the same order every round (the first listed first).
"""

from __future__ import annotations

import argparse

import numpy as np

from dovlib.data import load_dataset
from dovlib.imwm import HiddenConfig, sample_images, train_hidden
from dovlib.params import parse_precisions
from dovlib.report import env_info
from dovlib.train import resolve_device, uses_bf16


def run_once(images, cfg: HiddenConfig, args, device, precision: str) -> dict:
    model = train_hidden(images, cfg, steps=args.steps, device=device, seed=args.seed, log_every=1, progress=False,
                         precision=precision)
    h = model.history
    timed = h[-1]["seconds"] - h[args.warmup - 1]["seconds"]
    last = h[-max(1, args.steps // 10):]  # the last tenth of the steps: one mini-batch is noisy
    return {"images_per_s": (args.steps - args.warmup) * cfg.batch_size / timed,
            "bit_acc": float(np.mean([e["bit_acc"] for e in last])), "psnr": float(np.mean([e["psnr"] for e in last]))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="skimage-photos", help="any dovlib dataset; crops of --size are sampled")
    ap.add_argument("--size", type=int, default=64, help="training crop side")
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--bits", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5, help="first steps not timed")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the precisions in turn; speeds are averaged")
    ap.add_argument("--precision", default="auto,bf16", type=parse_precisions, help="comma-separated: auto|fp32|bf16")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.size < 8:
        ap.error(f"--size must be >= 8; got {args.size}")
    if not 1 <= args.warmup < args.steps:
        ap.error(f"--warmup must be in [1, --steps); got {args.warmup} with --steps {args.steps}")
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    precisions = args.precision
    try:
        device = resolve_device(args.device)
    except (RuntimeError, ValueError) as e:  # --device cuda without CUDA: a usage error, not a traceback
        ap.error(f"--device: {e}")
    ds = load_dataset(args.dataset)
    images = sample_images(ds.x_train, max(4 * args.batch_size, 64), side=args.size, seed=args.seed)
    cfg = HiddenConfig(message_bits=args.bits, channels=args.channels, image_size=args.size,
                       batch_size=args.batch_size)
    info = env_info(device)
    print(f"{ds.name}: {len(images)} crops {args.size}x{args.size}; HiDDeN {args.channels} channels, {args.bits} bits, "
          f"batch {args.batch_size}, {args.steps} steps ({args.warmup} warm-up), {args.rounds} round(s); "
          f"{info['device_name']}, torch {info['torch']}")
    resolved = {p: uses_bf16(p, device) for p in precisions}
    same = [p for p in precisions[1:] if resolved[p] == resolved[precisions[0]]]
    if same:
        print(f"note: on {device.type} {', '.join(same)} trains as {precisions[0]} does: their ratio measures only "
              "noise (--precision fp32,auto compares fp32 with bf16 autocast on any device)")
    runs = {p: [] for p in precisions}
    for _ in range(args.rounds):
        for p in precisions:
            runs[p].append(run_once(images, cfg, args, device, p))
    rows = {}
    for p, rs in runs.items():
        name = f"{p} ({'bf16 autocast' if uses_bf16(p, device) else 'fp32'})"
        rows[name] = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
        r = rows[name]
        print(f"{name:22s} {r['images_per_s']:10,.1f} images/s   training bit acc {r['bit_acc']:.3f}   "
              f"PSNR {r['psnr']:.1f} dB")
    first = next(iter(rows))
    for name in list(rows)[1:]:
        print(f"speed-up ({name} / {first}): {rows[name]['images_per_s'] / rows[first]['images_per_s']:.2f}x")
    return rows


if __name__ == "__main__":
    main()
