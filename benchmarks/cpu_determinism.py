"""Is CPU training reproducible, and what changes its numbers: one seeded ``dovlib.train.fit`` run (notebook 10's
``dovlib.sscl.train_classifier``, its cache emptied for each run) repeated in fresh processes under CPU settings that
change which kernels run or how they split the work. Prints each run's kernels, threads, test accuracy, last training
loss and weight hash (``dovlib.train.model_hash``), and whether it matches the first run's weights, measured in one
run. Variants (``--variants``, in the order given; the first run, ``as set``, takes the environment as it is):

    again     the same settings again: are they repeatable?
    load      the same settings in two processes at once on the same cores (each is shown)
    avx2      torch's own kernels limited to AVX2 (ATEN_CPU_CAPABILITY=avx2)
    avx2-all  torch's and oneDNN's (convolution) kernels limited to AVX2 (also ONEDNN_MAX_CPU_ISA=AVX2)
    threads1  one thread (OMP_NUM_THREADS=1)

On a CPU without AVX-512 the avx2 variants are the ``as set`` kernels. The default is notebook 10's classifier on the
CPU (ResNet-18 of width 16, 15 epochs, the CIFAR-10 subset, seed 0: about 4 minutes a run on 2 cores, 30 in all):

    python benchmarks/cpu_determinism.py
    python benchmarks/cpu_determinism.py --profile "quick:device=cpu,epochs=3,width=16" --variants again,threads1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

VARIANTS = {"again": {}, "load": {}, "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
            "avx2-all": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
            "threads1": {"OMP_NUM_THREADS": "1"}}


def train_once(dataset: str, profile: str, arch: str, seed: int) -> dict:
    """The run itself (in a child process): ``dovlib.sscl.train_classifier`` as notebook 10 calls it, its cache in a
    temporary folder (so every run trains); what it trained on and what it reached."""
    import tempfile

    import torch

    with tempfile.TemporaryDirectory() as runs:
        os.environ["DOVLIB_RUNS"] = runs  # read when the cache is used
        from dovlib.data import load_dataset
        from dovlib.params import get_profile
        from dovlib.sscl import train_classifier
        from dovlib.train import model_hash

        cfg = get_profile(profile)
        ds = load_dataset(dataset).subsample(cfg.n_train, cfg.n_test, seed=seed)  # as notebook 10 draws it
        res = train_classifier(ds.x_train, ds.y_train, ds.x_test, ds.y_test, arch=arch, profile=cfg, seed=seed,
                               num_classes=ds.num_classes, key_test=True, progress=False)
    return {"kernels": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "test_acc": res.final["test_acc"], "train_loss": res.final["train_loss"], "weights": model_hash(res.model),
            "seconds": res.compute_time, "data": ds.describe(), "epochs": len(res.history), "width": cfg.width}


def _child_command(args) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--child", "--dataset", args.dataset, "--profile", args.profile,
            "--arch", args.arch, "--seed", str(args.seed)]


def _start(args, variables: dict) -> subprocess.Popen:
    env = {**os.environ, **variables}  # the environment as it is, with the variant's variables set over it
    return subprocess.Popen(_child_command(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, name: str) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the {name!r} run failed (exit {proc.returncode}):\n{err.strip()}")
    result = json.loads(out.strip().splitlines()[-1])
    print(f"{name}: test accuracy {result['test_acc']:.4f}, {result['seconds']:.0f} s", file=sys.stderr, flush=True)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10-subset")
    ap.add_argument("--profile", default="quick:device=cpu,epochs=15,width=16",
                    help="a dovlib profile string on the CPU (its n_train, n_test, epochs, width, ...)")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(train_once(args.dataset, args.profile, args.arch, args.seed)))
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        ap.error(f"--variants must name one or more of {', '.join(VARIANTS)}; got {args.variants!r}")
    from dovlib.params import get_profile
    from dovlib.report import env_info

    try:
        device = get_profile(args.profile).device
    except ValueError as exc:
        ap.error(f"--profile: {exc}")
    if device != "cpu":
        ap.error(f"--profile must train on the CPU (add device=cpu, e.g. quick:device=cpu); got device {device!r}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0; got {args.seed}")

    runs = [("as set", _finish(_start(args, {}), "as set"))]
    for name in variants:
        if name == "load":  # two at once, each shown
            procs = [_start(args, {}) for _ in range(2)]
            try:
                runs += [(f"load {i + 1}/2", _finish(p, name)) for i, p in enumerate(procs)]
            finally:  # one failed: the other is not left running
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
        else:
            runs.append((name, _finish(_start(args, VARIANTS[name]), name)))

    first = runs[0][1]
    epochs = f"{first['epochs']} epoch" + "s" * (first["epochs"] != 1)
    print(f"{env_info('cpu')['device_name']}; {args.arch} width {first['width']}, {epochs}, seed {args.seed}, "
          f"{first['data']}")
    print(f"{'variant':10s} {'kernels':8s} {'threads':>7s} {'test_acc':>8s} {'train_loss':>10s} {'weights':16s} "
          f"{'same weights as first':21s} {'seconds':>7s}")
    for name, r in runs:
        same = "-" if r is first else ("yes" if r["weights"] == first["weights"] else "no")
        print(f"{name:10s} {r['kernels']:8s} {r['threads']:7d} {r['test_acc']:8.4f} {r['train_loss']:10.6f} "
              f"{r['weights']:16s} {same:21s} {r['seconds']:7.0f}")
    accs = [r["test_acc"] for _, r in runs]
    differ = [name for name, r in runs[1:] if r["weights"] != first["weights"]]
    print(f"weights as the first run's: {len(runs) - 1 - len(differ)} of {len(runs) - 1}"
          + (f"; other weights: {', '.join(differ)}" if differ else ""))
    print(f"test accuracy over the runs: {min(accs):.4f}-{max(accs):.4f} "
          f"({(max(accs) - min(accs)) * 100:.1f} points)")


if __name__ == "__main__":
    main()
