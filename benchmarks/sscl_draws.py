"""How often is SSCL-BW's mark learnt, and how often does the paper's test claim the wrong model? One run, N owners.

Owner i (i = 0 .. N-1) runs the whole pipeline of :func:`dovlib.sscl.run_sscl` with seed ``--seed + i`` (its own
surrogate, generator, marking draw and suspect model) and its own key (``independent_key(--key, i)``; ``--same-key``:
all use ``--key``, so the owners differ by seed alone, as the cached runs of docs/measured-sscl-cpu.md), all with the
same target class, eps and gamma. Every owner's trigger then queries every model (the paper's t-test, tau, m, alpha):

* owner i's trigger on owner i's suspect: **Malicious** (should be claimed: the mark was learnt);
* owner i's trigger on owner j's suspect (j != i): **Ind-W** with independent surrogates (must not be claimed);
* owner i's trigger on owner j's surrogate (a clean model of another seed): **Ind-M** (must not be claimed);

so N owners give N Malicious, N(N-1) Ind-W and N(N-1) Ind-M tests from 2N trained classifiers. WSR (share of
marked non-target test images classified as the target) is reported beside each p-value. ``--n-targets K``: each
owner marks a target code instead (``--target`` and K - 1 classes from its key; design 5 of docs/owner-specificity.md)
and every test is the intersection-union of the K classes' t-tests; with ``--same-key`` all owners share one code
(the full-collision case), with independent keys codes mostly differ. ``--target key``: every target class is drawn
from the owner's key (a code's first class too), so owners rarely share a class; gamma is capped at a drawn class's
share of the set where that is smaller (the class is then marked whole). ``--hard-pool H``: the key draws only
among the H classes of lowest clean recall on the owner's surrogate (``sscl.hard_classes``). Owners train in
``--jobs`` worker processes at once (a GPU has room for several small models); the models land in the usual
``runs/sscl`` cache, so a cut-off run resumes and the cross tests reload them.

    python benchmarks/sscl_draws.py --profile quick --owners 4 --jobs 4 --out draws     # one GPU, minutes
    python benchmarks/sscl_draws.py --profile smoke --dataset synthetic --owners 2      # seconds, CPU

``--deadline S`` (a lease of fixed length): after S seconds no owner starts and, with ``--jobs`` > 1, those
training in worker processes are stopped (with ``--jobs 1`` the owner in progress finishes first: it trains in this
process); the cross tests use the owners done (2 or more) and the summary names the owners cut off. Each owner's
``seconds`` is its wall time: in a worker process it includes Python's start-up and loading the data, and an owner
read back from the cache takes about none. Worker processes share the CPUs: each gets ``OMP_NUM_THREADS`` = #CPUs //
``--jobs`` (as ``dovlib.sweep`` gives its jobs) unless set.

Writes ``<out>/draws.csv`` (one row per trigger x model) and ``<out>/summary.json`` (rates, settings, each owner's
target class(es), wall time of each owner, device, and per owner BA of its suspect and benign model, target-class
recall, images marked, PSNR / SSIM of the marks and the seconds each stage trained).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def owner_run(args, i: int, ds=None, progress: bool = False):
    """Owner i's cached pipeline (trains what is missing); ``ds``: the dataset already loaded (default: load it).
    The owner's target class(es) are :func:`owner_targets`'s. With ``--n-targets`` K > 1 the owner marks a target code
    (:func:`dovlib.sscl.run_code`), gamma per class. Where a class drawn from the key holds less than ``--rate`` of
    the set, gamma is capped at its share (the class is marked whole; ``sscl.code_rate``), for one class as for K."""
    from dovlib import sscl

    ds = _dataset(args) if ds is None else ds
    kw = dict(arch=args.arch, eps=args.eps, key=owner_key(args, i), seed=args.seed + i, perceptual=args.perceptual,
              progress=progress)
    surrogate = None
    if getattr(args, "hard_pool", 0):  # the pool needs the owner's surrogate first; the run then reuses it
        surrogate = sscl.train_surrogate(ds, _profile(args), args.arch, args.seed + i, progress=False)
        kw["surrogate"] = surrogate
    targets = owner_targets(args, i, ds.num_classes, pool=hard_pool(args, i, ds, surrogate))
    fixed_single = args.target is not None and args.n_targets == 1  # the paper's setting: gamma as given
    rate = args.rate if fixed_single else sscl.code_rate(ds.y_train, args.rate, targets)
    if args.n_targets == 1:
        return sscl.run_sscl(ds, _profile(args), rate=rate, target=targets[0], **kw)
    return sscl.run_code(ds, _profile(args), targets=targets, rate=rate, **kw)


def owner_targets(args, i: int, num_classes: int, pool=None) -> tuple[int, ...]:
    """Owner i's target class(es): ``--target`` and, for a code, ``--n-targets`` - 1 classes drawn from owner i's
    key; with ``--target key`` every class is drawn from the key (owners then mostly pick different classes).
    ``pool``: the classes drawn from (:func:`hard_pool`; default all)."""
    from dovlib import sscl

    if args.target is not None and args.n_targets == 1:
        return (int(args.target),)
    return sscl.key_targets(owner_key(args, i), num_classes, args.n_targets, first=args.target, pool=pool)


def hard_pool(args, i: int, ds, surrogate=None) -> tuple[int, ...] | None:
    """With ``--hard-pool H``: the H classes of lowest clean recall on owner i's surrogate (its test images;
    :func:`dovlib.sscl.hard_classes`), the classes its key draws from; None (all classes) without it.
    ``surrogate``: owner i's, already loaded (default: load it from the cache, or train it)."""
    if not getattr(args, "hard_pool", 0):
        return None
    from dovlib import sscl

    if surrogate is None:
        surrogate = sscl.train_surrogate(ds, _profile(args), args.arch, args.seed + i, progress=False)
    return sscl.hard_classes(surrogate.model, ds.x_test, ds.y_test, args.hard_pool, ds.num_classes)


def target_arg(value: str) -> int | None:
    """``--target``: a class index, or ``key`` (None: drawn from each owner's key)."""
    from dovlib.params import parse_target

    try:
        return parse_target(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def triggers(run) -> dict:
    """Target class -> marking function of an owner's run (one class for plain SSCL-BW, K for a target code)."""
    if hasattr(run, "generators"):
        return {t: G.mark for t, G in run.generators.items()}
    return {run.params["target"]: run.trigger}


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
    """Every owner's trigger(s) against every owner's suspect and surrogate: the paper's t-test per target class
    (m non-target-class queries, as :func:`dovlib.verify.verify_model`) and, for a target code, their
    intersection-union (:func:`dovlib.sscl.verify_code`). Each trigger marks the query and WSR images once (not once
    per model queried) and each model sees the clean test set once. ``WSR``: the weakest target class's."""
    import torch

    from dovlib.train import predict_logits, predict_proba
    from dovlib.verify import intersection_union, ttest_verify, verification_set

    ds = runs[0].ds
    m = runs[0].profile.verify_m if args.m is None else args.m
    y = torch.as_tensor(ds.y_test)
    models = []  # (model owner, kind, model, its probabilities on the clean test set)
    for j, rj in enumerate(runs):
        for kind, model in (("suspect", rj.suspect.model), ("surrogate", rj.surrogate.model)):
            models.append((j, kind, model, predict_proba(model, ds.x_test)))
    rows = []
    for i, ri in enumerate(runs):
        marked = {}  # target -> (query indices, marked queries, marked non-target test images)
        for t, mark in triggers(ri).items():
            idx = verification_set(ds.x_test, y, t, min(m, int((y != t).sum())), seed=0)
            marked[t] = (idx, mark(ds.x_test[idx]), mark(ds.x_test[y != t]))
        for j, kind, model, p_clean in models:
            if kind == "surrogate" and i == j:
                continue  # an owner's own surrogate helped make the mark: not a test of anything
            scenario = "Ind-M" if kind == "surrogate" else ("Malicious" if i == j else "Ind-W")
            per, wsr = [], []
            for t, (idx, xq_w, x_nt_w) in marked.items():
                per.append(ttest_verify(p_clean[idx, t], predict_proba(model, xq_w)[:, t], args.tau, args.alpha))
                wsr.append((predict_logits(model, x_nt_w).argmax(1) == t).float().mean().item())
            v = per[0] if len(per) == 1 else intersection_union(per)
            rows.append({"trigger_owner": i, "model_owner": j, "scenario": scenario,
                         "targets": " ".join(str(t) for t in marked), "delta_p": v.delta_p, "p_value": v.p_value,
                         "verified": bool(v.verified), "WSR": min(wsr)})
    return rows


def owner_stats(run, seconds=None) -> dict:
    """Owner ``run``'s Table I numbers and stage wall times: BA of its suspect (trained on the marked set) and of its
    surrogate (the same arch, width and seed on the clean set: the benign model), their recall on the target class(es),
    how many images were marked, PSNR / SSIM of the marked training images against their clean originals, and the
    seconds each stage trained (restored from the cache, so a reloaded model keeps its own)."""
    import torch

    from dovlib.metrics import psnr, ssim
    from dovlib.train import predict_logits

    ds, ws = run.ds, run.marked
    targets = list(triggers(run))
    y = torch.as_tensor(ds.y_test)
    out = {"targets": targets, "n_marked": int(len(ws.marked)), "seconds": seconds}
    for name, res in (("suspect", run.suspect), ("benign", run.surrogate)):
        pred = predict_logits(res.model, ds.x_test).argmax(1).cpu()
        out[f"BA_{name}"] = round(float((pred == y).float().mean()), 4)
        out[f"target_recall_{name}"] = round(float(min((pred[y == t] == t).float().mean() for t in targets)), 4)
        out[f"{name}_s"] = round(float(res.wall_time), 1)
    gens = run.generators.values() if hasattr(run, "generators") else [run.generator]
    out["generator_s"] = round(float(sum(G.meta.get("wall_time", float("nan")) for G in gens)), 1)
    if len(ws.marked):
        clean, marked = ds.x_train[ws.marked], ws.x[ws.marked]
        out["psnr"] = round(float(np.mean(np.minimum(psnr(clean, marked), 100.0))), 2)
        out["ssim"] = round(float(np.mean(ssim(clean, marked))), 4)
    return out


def summarize(rows: list[dict]) -> dict:
    """Claims / tests per scenario with the exact (Clopper-Pearson) 95% interval of the claim rate, and the number of
    trigger owners with at least one claim (``owners_claiming``, of ``owners``) with its interval. Owners are
    independent draws; the N(N-1) Ind-W / Ind-M tests are not (each owner's trigger and model enter 2(N-1) of
    them), so their per-test interval is too narrow and the per-owner count is the one to quote."""
    from scipy.stats import binomtest

    def ci(k: int, n: int) -> list[float]:
        c = binomtest(k, n).proportion_ci(0.95, method="exact")
        return [round(c.low, 4), round(c.high, 4)]

    out = {}
    for scenario in ("Malicious", "Ind-W", "Ind-M"):
        sub = [r for r in rows if r["scenario"] == scenario]
        if not sub:
            continue
        k, owners = sum(r["verified"] for r in sub), sorted({r["trigger_owner"] for r in sub})
        claiming = sorted({r["trigger_owner"] for r in sub if r["verified"]})
        out[scenario] = {"claimed": k, "tests": len(sub), "rate": round(k / len(sub), 4), "ci95": ci(k, len(sub)),
                         "owners_claiming": len(claiming), "owners": len(owners),
                         "owners_ci95": ci(len(claiming), len(owners))}
    return out


def _worker_cmd(argv: list[str], i: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", str(i)]


def _worker_env(jobs: int) -> dict:
    """The environment of a worker process: its share of the CPUs for torch's threads, unless the caller set them."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return {**{var: threads for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}, **os.environ}


def _train_owners(args, argv, ds, pending: list, running: dict, seconds: dict, t0: float) -> list[int]:
    """Train the pending owners, at most ``--jobs`` at once (with 1, in this process); ``seconds`` gets each one's
    wall time, ``running`` holds the worker processes in flight. With ``--deadline`` S: once S seconds have passed
    since ``t0``, no owner starts and the worker processes in flight are stopped (their cache entries resume on a
    later run; an owner training in this process, ``--jobs 1``, is not interrupted).
    Returns the owners cut off that way."""
    cut = []
    while pending or running:
        if args.deadline and time.time() - t0 > args.deadline:
            for i, (proc, start) in list(running.items()):
                if proc.poll() == 0:  # finished since the last poll: kept, not counted as cut
                    del running[i]
                    seconds[i] = round(time.time() - start, 1)
                    continue
                proc.terminate()
                proc.wait()
                del running[i]
                cut.append(i)
            cut += pending
            pending.clear()
            break
        if args.jobs == 1:
            i = pending.pop(0)
            start = time.time()
            owner_run(args, i, ds)
            seconds[i] = round(time.time() - start, 1)
            continue
        while pending and len(running) < args.jobs:
            i = pending.pop(0)
            running[i] = (subprocess.Popen(_worker_cmd(argv, i), env=_worker_env(args.jobs)), time.time())
        time.sleep(1)
        for i, (proc, start) in list(running.items()):
            if proc.poll() is not None:
                del running[i]
                if proc.returncode != 0:
                    raise SystemExit(f"owner {i} failed (exit {proc.returncode}); its log is above")
                seconds[i] = round(time.time() - start, 1)
    return sorted(cut)


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
    ap.add_argument("--target", type=target_arg, default=1,
                    help="the target class, or 'key': each owner draws its class(es) from its key")
    ap.add_argument("--n-targets", type=int, default=1,
                    help="K > 1: each owner marks a target code of K classes (--target and K - 1 from its key)")
    ap.add_argument("--hard-pool", type=int, default=0,
                    help="H > 0: draw key classes only among the H of lowest clean recall on the owner's surrogate")
    ap.add_argument("--perceptual", default="ssim", help="lpips needs the AlexNet weights (README); ssim: 1 - SSIM")
    ap.add_argument("--tau", type=float, default=0.25)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--m", type=int, default=None, help="verification queries (default: the profile's verify_m)")
    ap.add_argument("--deadline", type=float, default=0,
                    help="seconds after which no owner starts and those training are stopped; the cross tests then "
                         "use the owners done (2 or more). 0: none")
    ap.add_argument("--out", default="reports/benchmarks/sscl_draws")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.owners < 2:
        ap.error(f"--owners must be 2 or more (the controls pair owners); got {args.owners}")
    if args.jobs < 1:
        ap.error(f"--jobs must be 1 or more; got {args.jobs}")
    if args.n_targets < 1:
        ap.error(f"--n-targets must be 1 or more (at most the number of classes); got {args.n_targets}")
    keyed = args.target is None or args.n_targets > 1  # some class is drawn from the key
    if args.hard_pool < 0 or (args.hard_pool and (args.hard_pool < args.n_targets or not keyed)):
        ap.error(f"--hard-pool must be 0 (off) or a class count >= --n-targets, and needs key-drawn classes "
                 f"(--n-targets > 1 or --target key); got {args.hard_pool}")
    if args.deadline < 0:
        ap.error(f"--deadline must be 0 (none) or a number of seconds > 0; got {args.deadline:g}")
    if args.m is not None and args.m < 2:
        ap.error(f"--m must be 2 or more (a paired t-test needs two queries); got {args.m}")
    from dovlib.params import parse_eps, parse_fraction

    try:  # bad values fail here, naming the parameter, before any process starts
        parse_eps(args.eps)
        parse_fraction("--tau", args.tau, 0, 1, low_inclusive=True, high_inclusive=False)
        parse_fraction("--alpha", args.alpha, 0, 1, high_inclusive=False)
    except ValueError as e:
        ap.error(str(e))

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
        cut = _train_owners(args, argv, ds, pending, running, seconds, t0)
    finally:
        signal.signal(signal.SIGTERM, old)
        for proc, _ in running.values():
            proc.terminate()
    train_s = time.time() - t0
    done = sorted(seconds)
    if len(done) < 2:
        raise SystemExit(f"--deadline {args.deadline:g} s: only owners {done} finished training; the cross tests need "
                         f"2 or more (their models are cached, so a rerun resumes)")
    if cut:
        print(f"--deadline {args.deadline:g} s: owners {cut} cut off; the cross tests use owners {done}", flush=True)
    runs = [owner_run(args, i, ds) for i in done]  # all cached now
    rows = cross_tests(args, runs)
    for r in rows:  # cross_tests numbers the runs it was given: back to owner numbers
        r["trigger_owner"], r["model_owner"] = done[r["trigger_owner"]], done[r["model_owner"]]
    settings = {k: v for k, v in vars(args).items() if k not in ("worker", "out")}
    settings["target"] = "key" if args.target is None else args.target
    summary = {"settings": settings,
               "owner_targets": {i: r.params.get("targets", [r.params.get("target")]) for i, r in zip(done, runs)},
               "owner_pools": ({i: hard_pool(args, i, ds, r.surrogate) for i, r in zip(done, runs)}
                               if args.hard_pool else None),  # None: every class could be drawn
               "owners": {i: owner_stats(r, seconds.get(i)) for i, r in zip(done, runs)}, "owners_cut": cut,
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
    print(pd.DataFrame(summary["owners"]).T.drop(columns="targets").to_string())
    for scenario, c in summary["claims"].items():
        print(f"{scenario}: claimed {c['claimed']} of {c['tests']} (95% CI {c['ci95'][0]:.2f}-{c['ci95'][1]:.2f}); "
              f"owners with a claim {c['owners_claiming']} of {c['owners']} "
              f"(95% CI {c['owners_ci95'][0]:.2f}-{c['owners_ci95'][1]:.2f})")
    print(f"{args.owners} owners, {args.jobs} at once: training {train_s:.0f} s, all {summary['seconds']:.0f} s "
          f"({summary['env'].get('device_name', summary['env']['device'])}); perceptual: "
          f"{summary['perceptual']}")
    return summary


if __name__ == "__main__":
    main()
