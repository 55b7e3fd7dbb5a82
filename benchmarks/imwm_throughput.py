"""Throughput of the ``invisible-watermark`` methods in one process against ``dovlib.imwm``'s worker processes.

The package embeds and reads one image at a time in Python (per-block DCT and SVD), so the AMUSE notebooks 07-10
spend most of their time there: notebook 08's Table 2 reads every one of its images 9 settings x 2 schemes x (1 +
attacks) times. ``ImWatermarker(workers=N)`` spreads large calls over N worker processes (joblib). Both runs embed
and read the same images with the same bits; the benchmark checks that the outputs are identical and prints images/s
of each and their ratio, measured in one run. The worker processes are started before timing (a notebook pays that
once, a few seconds); the start-up time is printed separately. ``--repeats R`` times both modes R times, taking turns
(the order reversed every other repeat); speeds are images over seconds summed over the repeats, and each repeat's
ratio and their median are printed. The single process may use every core in the package's numpy / OpenCV calls,
while joblib's worker processes run one thread each.

    python benchmarks/imwm_throughput.py                            # 128 images, dovlib's default workers (at least 2)
    python benchmarks/imwm_throughput.py --images 512 --workers 16 --method dwtDctSvd
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dovlib.data import load_dataset
from dovlib.imwm import ImWatermarker, default_workers, sample_images
from dovlib.report import env_info


def timed(wm: ImWatermarker, images: torch.Tensor, bits: np.ndarray) -> tuple[float, torch.Tensor, np.ndarray]:
    t0 = time.perf_counter()
    marked = wm.embed(images, bits)
    read = wm.extract(marked)
    return time.perf_counter() - t0, marked, read


def _versions() -> str:
    """The versions a quoted number depends on: the watermarking package, its image and ONNX back ends."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("invisible-watermark", "opencv-python-headless", "opencv-python", "onnxruntime"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="dwtDct", choices=("dwtDct", "dwtDctSvd", "rivaGan"))
    ap.add_argument("--images", type=int, default=128, help="256x256 crops of scikit-image's photos")
    ap.add_argument("--bits", type=int, default=None,
                    help="bits per image (default 63, AMUSE's sub-message for L = 300; rivaGan holds exactly 32)")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: dovlib's default, >= 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each mode, in turn (default 3)")
    args = ap.parse_args(argv)
    workers = max(2, default_workers()) if args.workers is None else args.workers
    if workers < 2:
        ap.error(f"--workers must be >= 2 to compare against one process; got {workers}")
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1; got {args.repeats}")
    if args.images < ImWatermarker.min_parallel:
        ap.error(f"--images must be >= {ImWatermarker.min_parallel} (smaller calls stay in one process)")
    if args.method == "rivaGan" and args.bits not in (None, 32):
        ap.error(f"--bits must be 32 with rivaGan (its models embed exactly 32 bits); got {args.bits}")
    bits_per_image = (32 if args.method == "rivaGan" else 63) if args.bits is None else args.bits
    images = sample_images(load_dataset("skimage-photos").x_train, args.images, side=256, seed=0)
    bits = np.random.default_rng(0).integers(0, 2, (args.images, bits_per_image)).astype(np.uint8)
    info = env_info(torch.device("cpu"))
    print(f"{info['device_name']} | {args.method}, {args.images} images 256x256, {bits_per_image} bits | "
          f"embed + extract | {args.repeats} repeat(s), in turn | {_versions()}")

    serial, pooled = ImWatermarker(args.method, bits_per_image, workers=1), ImWatermarker(args.method, bits_per_image,
                                                                                           workers=workers)
    # warm-up of both directions (RivaGAN loads an encoder and a decoder model per process, on first use): the first
    # call's imports and model loads are not timed in either mode; the workers' are reported as start-up
    serial.extract(serial.embed(images[:1], bits[:1]))
    t0 = time.perf_counter()
    first = ImWatermarker.min_parallel
    pooled.extract(pooled.embed(images[:first], bits[:first]))  # starts the worker processes
    startup = time.perf_counter() - t0
    times, outputs = {"serial": [], "pooled": []}, {}
    for r in range(args.repeats):  # in turn, the order reversed every other repeat
        for mode in (("serial", "pooled") if r % 2 == 0 else ("pooled", "serial")):
            t, marked, read = timed(serial if mode == "serial" else pooled, images, bits)
            outputs[mode] = marked, read
            times[mode].append(t)
    (marked_s, read_s), (marked_p, read_p) = outputs["serial"], outputs["pooled"]
    if not (torch.equal(marked_s, marked_p) and np.array_equal(read_s, read_p)):
        raise AssertionError("worker processes changed the result")
    t_serial, t_pooled = sum(times["serial"]), sum(times["pooled"])
    n = args.images * args.repeats
    rows = {"1 process": n / t_serial, f"{workers} worker processes": n / t_pooled}
    for name, speed in rows.items():
        print(f"{name:22s} {speed:8.1f} images/s")
    print(f"worker start-up (once per session, a first embed and extract of {ImWatermarker.min_parallel} images): "
          f"{startup:.1f} s; outputs identical; bit accuracy "
          f"{(read_s == bits).mean():.3f}")
    per = [a / b for a, b in zip(times["serial"], times["pooled"])]
    detail = (f" (per repeat {', '.join(f'{r:.2f}' for r in per)}; median {np.median(per):.2f}x)"
              if args.repeats > 1 else "")
    print(f"speed-up ({workers} workers / 1 process): {t_serial / t_pooled:.2f}x{detail}")
    return rows


if __name__ == "__main__":
    main()
