"""How often is SSCL-BW's mark learnt, and how often does the paper's test claim the wrong model? One run, N owners.

Owner i (i = 0 .. N-1) runs the whole pipeline of :func:`dovlib.sscl.run_sscl` with seed ``--seed + i`` (its own
surrogate, generator, marking draw and suspect model) and its own key (``independent_key(--key, i)``; ``--same-key``:
all use ``--key``, so the owners differ by seed alone, as the cached runs of docs/measured-sscl-cpu.md), all with the
same target class, eps and gamma. Every owner's trigger then queries every model (the paper's t-test, tau, m, alpha):

* owner i's trigger on owner i's suspect: **Malicious** (should be claimed: the mark was learnt);
* owner i's trigger on owner j's suspect (j != i): **Ind-W** with independent surrogates (must not be claimed);
* owner i's trigger on owner j's surrogate (a clean model of another seed): **Ind-M** (must not be claimed);

so N owners give N Malicious, N(N-1) Ind-W and N(N-1) Ind-M tests from 2N trained classifiers. WSR (share of
marked non-target test images classified as the target) is reported beside each p-value. Owners train in
``--jobs`` worker processes at once (a GPU has room for several small models); the models land in the usual
``runs/sscl`` cache, so a cut-off run resumes and the cross tests reload them.

    python benchmarks/sscl_draws.py --profile quick --owners 4 --jobs 4 --out draws     # one GPU, minutes
    python benchmarks/sscl_draws.py --profile smoke --dataset synthetic --owners 2      # seconds, CPU

Writes ``<out>/draws.csv`` (one row per trigger x model) and ``<out>/summary.json`` (rates, settings, wall time
of each owner, device).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path


def owner_run(args, i: int, ds=None, progress: bool = False):
    """Owner i's cached pipeline (trains what is missing); ``ds``: the dataset already loaded (default: load it)."""
    from dovlib import sscl

    ds = _dataset(args) if ds is None else ds
    return sscl.run_sscl(ds, _profile(args), arch=args.arch, eps=args.eps, rate=args.rate, target=args.target,
                         key=owner_key(args, i), seed=args.seed + i, perceptual=args.perceptual, progress=progress)


def owner_key(args, i: int) -> int:
    """Owner i's secret key: ``independent_key(--key, i)``, or ``--key`` itself with ``--same-key``."""
    from dovlib import sscl

    return args.key if args.same_key else sscl.independent_key(args.key, i)


def _profile(args):
    from dovlib.params import get_profile

    return get_profile(args.profile)


def _dataset(args):
    from dovlib.data import load_dataset

    prof = _profile(args)
    return load_dataset(args.dataset).subsample(prof.n_train, prof.n_test, seed=args.seed)


def cross_tests(args, runs: list) -> list[dict]:
    """Every owner's trigger against every owner's suspect and surrogate. Each owner's trigger marks the query and
    WSR images once (N generator passes, not one per model queried); each model's clean probabilities are computed
    once too. The tests are those of ``verify_model`` and ``attack_success``."""
    import torch

    from dovlib.train import predict_logits, predict_proba
    from dovlib.verify import ttest_verify, verification_set

    ds = runs[0].ds
    m = args.m or runs[0].profile.verify_m
    idx = verification_set(ds.x_test, ds.y_test, args.target, m, seed=0)
    xq, x_nt = ds.x_test[idx], ds.x_test[torch.as_tensor(ds.y_test) != args.target]
    models = []  # (model owner, scenario for another owner's trigger, model, clean P(target) on the queries)
    for j, rj in enumerate(runs):
        for kind, model in (("suspect", rj.suspect.model), ("surrogate", rj.surrogate.model)):
            models.append((j, kind, model, predict_proba(model, xq)[:, args.target]))
    rows = []
    for i, ri in enumerate(runs):
        xq_w, x_nt_w = ri.trigger(xq), ri.trigger(x_nt)
        for j, kind, model, pb in models:
            if kind == "surrogate" and i == j:
                continue  # an owner's own surrogate helped make the mark: not a test of anything
            scenario = "Ind-M" if kind == "surrogate" else ("Malicious" if i == j else "Ind-W")
            v = ttest_verify(pb, predict_proba(model, xq_w)[:, args.target], args.tau, args.alpha)
            wsr = (predict_logits(model, x_nt_w).argmax(1) == args.target).float().mean().item()
            rows.append({"trigger_owner": i, "model_owner": j, "scenario": scenario, "delta_p": v.delta_p,
                         "p_value": v.p_value, "verified": bool(v.verified), "WSR": wsr})
    return rows


def summarize(rows: list[dict]) -> dict:
    """Claims / tests per scenario."""
    out = {}
    for scenario in ("Malicious", "Ind-W", "Ind-M"):
        sub = [r for r in rows if r["scenario"] == scenario]
        out[scenario] = {"claimed": sum(r["verified"] for r in sub), "tests": len(sub)}
    return out


def _worker_cmd(argv: list[str], i: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", str(i)]


def _train_owners(args, argv, ds, pending: list, running: dict, seconds: dict) -> None:
    """Train the pending owners, at most ``--jobs`` at once (with 1, in this process); ``seconds`` gets each one's
    wall time, ``running`` holds the worker processes in flight."""
    while pending or running:
        if args.jobs == 1:
            i = pending.pop(0)
            start = time.time()
            owner_run(args, i, ds)
            seconds[i] = round(time.time() - start, 1)
            continue
        while pending and len(running) < args.jobs:
            i = pending.pop(0)
            running[i] = (subprocess.Popen(_worker_cmd(argv, i)), time.time())
        time.sleep(1)
        for i, (proc, start) in list(running.items()):
            if proc.poll() is not None:
                del running[i]
                if proc.returncode != 0:
                    raise SystemExit(f"owner {i} failed (exit {proc.returncode}); its log is above")
                seconds[i] = round(time.time() - start, 1)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke", help="a dovlib profile, with overrides (quick:epochs=10,...)")
    ap.add_argument("--dataset", default="cifar10-subset")
    ap.add_argument("--owners", type=int, default=4, help="independent owners N (2 or more)")
    ap.add_argument("--jobs", type=int, default=1, help="owners trained at once, each in its own process")
    ap.add_argument("--seed", type=int, default=0, help="owner i uses seed + i")
    ap.add_argument("--key", type=int, default=20240607, help="owner i's key is independent_key(key, i)")
    ap.add_argument("--same-key", action="store_true",
                    help="every owner uses --key itself (owners then differ by seed alone, as in the docs' runs)")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--eps", default="8/255")
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--target", type=int, default=1)
    ap.add_argument("--perceptual", default="ssim", help="lpips needs the AlexNet weights (README); ssim: 1 - SSIM")
    ap.add_argument("--tau", type=float, default=0.25)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--m", type=int, default=None, help="verification queries (default: the profile's verify_m)")
    ap.add_argument("--out", default="reports/benchmarks/sscl_draws")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.owners < 2:
        ap.error(f"--owners must be 2 or more (the controls pair owners); got {args.owners}")
    if args.jobs < 1:
        ap.error(f"--jobs must be 1 or more; got {args.jobs}")
    from dovlib.params import parse_eps

    parse_eps(args.eps)  # a bad eps fails here, naming the parameter, before any process starts

    if args.worker is not None:  # one owner, in its own process
        t0 = time.time()
        owner_run(args, args.worker)
        print(json.dumps({"owner": args.worker, "seconds": round(time.time() - t0, 1)}), flush=True)
        return None

    from dovlib.report import env_info
    from dovlib.train import resolve_device

    t0, seconds, ds = time.time(), {}, _dataset(args)  # loaded once here; each worker process loads its own
    pending, running = list(range(args.owners)), {}
    # a time limit's SIGTERM must not leave workers training on: end them too (their cache entries resume later)
    old = signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"stopped after {time.time() - t0:.0f} s; owners done: "
                                                             f"{sorted(seconds)}"))
    try:
        _train_owners(args, argv, ds, pending, running, seconds)
    finally:
        signal.signal(signal.SIGTERM, old)
        for proc, _ in running.values():
            proc.terminate()
    train_s = time.time() - t0
    runs = [owner_run(args, i, ds) for i in range(args.owners)]  # all cached now
    rows = cross_tests(args, runs)
    summary = {"settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out")},
               "claims": summarize(rows), "owner_seconds": seconds, "train_seconds": round(train_s, 1),
               "seconds": round(time.time() - t0, 1), "perceptual": runs[0].params["perceptual"],
               "env": env_info(resolve_device(runs[0].profile.device))}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    df = pd.DataFrame(rows)
    df.to_csv(out / "draws.csv", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for scenario, c in summary["claims"].items():
        print(f"{scenario}: claimed {c['claimed']} of {c['tests']}")
    print(f"{args.owners} owners, {args.jobs} at once: training {train_s:.0f} s, all {summary['seconds']:.0f} s "
          f"({summary['env'].get('device_name', summary['env']['device'])}); perceptual: "
          f"{summary['perceptual']}")
    return summary


if __name__ == "__main__":
    main()
