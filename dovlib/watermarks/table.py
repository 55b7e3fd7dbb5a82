"""SSCL-BW's Table I: BA, WSR (untargeted success for UBW-P/UBW-C) and image quality of every dataset watermark,
one row per method, measured the same way for all of them (:func:`dovlib.verify.evaluate_watermark`).

``table_row(method, ds, arch, profile)`` runs one method end to end: surrogate (shared, cached) -> marked set ->
the user's model trained on it (cached, :func:`dovlib.sscl.train_classifier`) -> metrics. ``table_i`` runs them
all; ``paper_comparison`` puts the paper's numbers beside ours. See notebook 02.
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import pandas as pd

from ..params import Profile, check_choice, parse_eps, parse_rate
from ..report import crafted_by_text
from ..verify import attack_success, evaluate_watermark
from .base import get_watermark
from .common import CRAFTING_VERSION

__all__ = ["METHODS", "DISPLAY", "PAPER_TABLE_I", "crafting_budget", "crafting_label", "crafted_by", "crafted_by_text",
           "table_row", "table_i", "paper_comparison", "ranking_vs_paper", "agreement_text", "floor_test", "reading",
           "paper_key"]

METHODS = ["none", "badnets", "blended", "wanet", "ubw-p", "label-consistent", "sleeper-agent", "ubw-c", "sscl-bw"]
DISPLAY = {"none": "No Watermark", "badnets": "BadNets", "blended": "Blended", "wanet": "WaNet", "ubw-p": "UBW-P",
           "label-consistent": "Label-Consistent", "sleeper-agent": "Sleeper Agent", "ubw-c": "UBW-C",
           "sscl-bw": "SSCL-BW"}
SURROGATE_METHODS = {"label-consistent", "sleeper-agent", "ubw-c", "sscl-bw"}
CRAFTED = ("label-consistent", "sleeper-agent", "ubw-c")  # crafted on the surrogate: crafting_budget

# SSCL-BW (Wang et al., 2025) Table I, ResNet-18, gamma = 0.1, target 1, in %. Only the CIFAR-10 BA/WSR values
# (and the benign BA) were available to us; the Sub-ImageNet, MNIST and LPIPS cells are left empty (NaN), never
# guessed. UBW-P/UBW-C's WSR is their untargeted success rate.
PAPER_TABLE_I = {
    "cifar10": {
        "No Watermark": {"BA": 92.53},
        "BadNets": {"BA": 91.52, "WSR": 100.0},
        "Blended": {"BA": 91.61, "WSR": 100.0},
        "WaNet": {"BA": 90.48, "WSR": 95.5},
        "UBW-P": {"BA": 90.59, "WSR": 92.3},
        "Label-Consistent": {"BA": 82.94, "WSR": 96.0},
        "Sleeper Agent": {"BA": 86.06, "WSR": 70.6},
        "UBW-C": {"BA": 86.99, "WSR": 89.8},
        "SSCL-BW": {"BA": 86.78, "WSR": 97.86},
    },
}


def paper_key(dataset: str) -> str:
    """The Table I block a dataset name belongs to: cifar10-subset -> cifar10, mnist-offline -> mnist, ..."""
    for k in ("cifar10", "mnist", "sub-imagenet"):
        if dataset.startswith(k):
            return k
    return dataset


def crafting_budget(method: str, profile: Profile) -> dict:
    """Surrogate-optimisation budget per profile: the papers' steps (PGD 100, gradient matching 250) for quick and
    paper; a few steps on a few sources for smoke (CI), where the numbers mean nothing. The profile's ``craft_steps``
    (``"paper:craft_steps=3"``) sets the steps of every profile, e.g. to rehearse the paper profile's whole splits on a
    CPU: the papers' 250 gradient-matching steps over the 5,000 target-class images of full CIFAR-10 took about 12 s
    each on one CPU core at width 4 (about 50 minutes per method; 2026-12-06)."""
    budget = {}
    if profile.name == "smoke":
        budget = {"label-consistent": {"steps": 3}, "sleeper-agent": {"steps": 2, "n_source": 64},
                  "ubw-c": {"steps": 2, "n_source": 64}}.get(method, {})
    if profile.craft_steps is not None and method in CRAFTED:
        budget = {**budget, "steps": profile.craft_steps}
    return budget


def crafting_label(profile: Profile) -> str:
    """The crafted baselines' budget in words where it is not the papers' (smoke's few steps, or the profile's
    ``craft_steps``), each setting beside the paper's: "crafting budget not the papers': Label-Consistent steps 2
    (paper 100); ..."; empty where every crafted baseline ran with its paper's budget. Notebook 02 adds it to its
    Table I captions, whose profile string alone hid it."""
    parts = []
    for method in CRAFTED:
        budget = crafting_budget(method, profile)
        paper = get_watermark(method)  # its constructor's defaults are the paper's budget
        changed = {k: v for k, v in budget.items() if getattr(paper, k) != v}
        if changed:
            parts.append(f"{DISPLAY[method]} " + ", ".join(f"{k} {v} (paper {getattr(paper, k)})"
                                                           for k, v in changed.items()))
    return "crafting budget not the papers': " + "; ".join(parts) if parts else ""


def crafted_by(table: pd.DataFrame) -> dict:
    """``{method key: device(s) that crafted its marks}`` for the rows of a Table I (:func:`table_i`) that name one
    (the crafted baselines, :data:`CRAFTED`); empty when none does."""
    if "crafted_by" not in table:
        return {}
    return {r.key: r.crafted_by for r in table.itertuples() if isinstance(r.crafted_by, str)}


def table_row(method: str, ds, arch: str, profile: Profile, *, rate=0.1, target: int = 1, seed: int = 0,
              perceptual: str = "ssim", surrogate=None, eps=8 / 255, key: int = 0, progress: bool = False,
              baseline_eps=None, **method_kwargs) -> dict:
    """One Table I row for ``method`` (one of :data:`METHODS`) on ``ds`` with the user's model ``arch``.

    ``surrogate``: a trained :class:`dovlib.train.TrainResult` to reuse (else :func:`dovlib.sscl.train_surrogate`,
    cached); ``eps``/``key``: SSCL-BW's budget and secret key only; ``baseline_eps``: the L-inf budget of the
    surrogate-crafted baselines (Label-Consistent, Sleeper Agent, UBW-C; None: each one's own default, 16/255 as in
    their papers; the other baselines have none), since ``eps`` here never reaches them; other crafting settings go
    in ``method_kwargs`` (e.g. ``steps=...``); ``method_kwargs`` go to the baseline's constructor, over
    :func:`crafting_budget`'s values and the profile's device (refused for "none" and "sscl-bw", which take none;
    UBW-P gets ``num_classes`` from ``ds``). Returns method, kind, BA, WSR (untargeted success for UBW-*, named in
    ``success_measure``), WSR_benign (the same trigger on a model trained on the clean set: the floor to beat, high
    for the untargeted measure when BA is low), the ``perceptual`` distance, PSNR, SSIM, L_inf, n_marked and wall
    time (s); the crafted baselines (:data:`CRAFTED`) also ``crafted_by``, the device(s) that crafted their marks
    (the cache's, for marks read back: another device crafts other marks, as it trains other weights)."""
    from .. import sscl  # lazy: sscl imports this package

    check_choice("method", method, METHODS)
    rate = parse_rate(rate, "rate (gamma)")
    if method_kwargs and method in ("none", "sscl-bw"):
        raise ValueError(f"method {method!r} takes no constructor arguments (method_kwargs); got "
                         f"{sorted(method_kwargs)}" + ("; SSCL-BW's settings are eps, key, perceptual and the "
                                                       "profile" if method == "sscl-bw" else ""))
    t0 = time.perf_counter()
    common = dict(arch=arch, profile=profile, seed=seed, num_classes=ds.num_classes, progress=progress)
    if method in SURROGATE_METHODS and surrogate is None:
        surrogate = sscl.train_surrogate(ds, profile, arch, seed, progress=progress)
    row = {"method": DISPLAY[method], "key": method}
    if method == "none":
        model = sscl.train_classifier(ds.x_train, ds.y_train, ds.x_test, ds.y_test, **common).model
        from ..train import evaluate
        row.update(kind="-", targeted=True, BA=evaluate(model, ds.x_test, ds.y_test), WSR=math.nan,
                   WSR_benign=math.nan, n_marked=0,
                   success_measure="-")
        row["wall_time"] = time.perf_counter() - t0
        return row
    if method == "sscl-bw":
        run = sscl.run_sscl(ds, profile, arch=arch, eps=eps, rate=rate, target=target, key=key, seed=seed,
                            perceptual=perceptual, surrogate=surrogate, progress=progress)
        model, trigger, targeted, kind = run.suspect.model, run.trigger, True, "clean-label"
        idx, xw = run.marked.marked, run.marked.x
    else:
        defaults = {**crafting_budget(method, profile)}
        if method in SURROGATE_METHODS:
            defaults["device"] = profile.device
            if baseline_eps is not None:
                defaults["eps"] = parse_eps(baseline_eps)
        if method == "ubw-p":
            defaults["num_classes"] = ds.num_classes
        wm = get_watermark(method, **{**defaults, **method_kwargs})
        wm.fit(ds.x_train, ds.y_train, surrogate.model if surrogate is not None else None)
        if method in SURROGATE_METHODS:  # crafting is the slow part: cached, and resumable when interrupted
            xw, yw, idx = _cached_apply(wm, ds, surrogate.model, rate, target, seed)
        else:
            xw, yw, idx = wm.apply(ds.x_train, ds.y_train, rate, target, seed)
        model = sscl.train_classifier(xw, yw, ds.x_test, ds.y_test, **common).model
        trigger, targeted, kind = wm.trigger, wm.targeted, wm.kind
    metrics = evaluate_watermark(model, SimpleNamespace(trigger=trigger, targeted=targeted),
                                 ds.x_test, ds.y_test, target, x_clean=ds.x_train[idx], x_marked=xw[idx],
                                 perceptual=perceptual)
    benign = sscl.train_classifier(ds.x_train, ds.y_train, ds.x_test, ds.y_test, **common).model  # cached
    metrics["WSR_benign"] = attack_success(benign, ds.x_test, ds.y_test, trigger, target, targeted)
    row.update(kind=kind, targeted=targeted, n_marked=len(idx),
               success_measure="WSR" if targeted else "untargeted success (triggered test images misclassified)",
               **metrics)
    if method in CRAFTED:
        row["crafted_by"] = wm.crafted_by
    row["wall_time"] = time.perf_counter() - t0
    return row


def _cached_apply(wm, ds, surrogate, rate, target: int, seed: int):
    """``wm.apply`` with its crafted images kept in ``runs/sscl/<hash>/`` (keyed by the method's settings, the data,
    the surrogate's weights, rate, target and seed), so a re-run of Table I does not craft again."""
    from .. import sscl
    from ..report import file_lock, run_dir

    key = {"what": "crafted", "version": sscl.CACHE_VERSION, "crafting": CRAFTING_VERSION, "method": wm.describe(),
           "data": sscl.data_hash(ds.x_train, ds.y_train), "surrogate": sscl.model_hash(surrogate), "rate": rate,
           "target": target, "seed": seed}
    d = run_dir(sscl.CACHE, key)
    with file_lock(d / "marked.pt", timeout=sscl.CACHE_LOCK_TIMEOUT):
        return wm.apply(ds.x_train, ds.y_train, rate, target, seed, cache=d)


def table_i(ds, arch: str, profile: Profile, methods=None, *, progress: bool = False, **kw) -> pd.DataFrame:
    """Every row of Table I (``methods`` default: :data:`METHODS`), sharing one surrogate; ``kw`` as in
    :func:`table_row`."""
    from .. import sscl

    methods = list(methods or METHODS)
    for m in methods:
        check_choice("method", m, METHODS)
    if "surrogate" not in kw and any(m in SURROGATE_METHODS for m in methods):
        kw["surrogate"] = sscl.train_surrogate(ds, profile, arch, kw.get("seed", 0), progress=progress)
    elif kw.get("surrogate") is not None and any(m in SURROGATE_METHODS for m in methods):
        from ..train import charge_result

        charge_result(kw["surrogate"])  # a surrogate handed over: what it cost counts in these rows' compute time
    return pd.DataFrame([table_row(m, ds, arch, profile, progress=progress, **kw) for m in methods])


def paper_comparison(table: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Long table (method, quantity, paper, ours, diff) in % for BA and WSR; paper cells we do not have are NaN."""
    paper = PAPER_TABLE_I.get(paper_key(dataset), {})
    rows = []
    for _, r in table.iterrows():
        for q in ("BA", "WSR"):
            ours = 100 * r[q] if not pd.isna(r[q]) else math.nan
            label = q if q == "BA" or r["targeted"] else "untargeted success"
            ref = paper.get(r["method"], {}).get(q, math.nan)
            rows.append({"method": r["method"], "quantity": f"{label} (%)", "paper": ref, "ours": ours,
                         "diff": ours - ref})
    return pd.DataFrame(rows)


def ranking_vs_paper(comparison: pd.DataFrame, quantity: str = "WSR") -> tuple[pd.DataFrame, dict]:
    """How our ranking of the methods by ``quantity`` ("BA" or "WSR") agrees with the paper's.

    ``comparison`` is :func:`paper_comparison`'s table. Only methods with both a paper and an our value count
    (untargeted success of UBW-* is ranked with the WSRs, as in the paper's table). Returns the per-method ranks
    (1 = highest) and ``{"n", "kendall_tau", "p_value"}`` from :func:`scipy.stats.kendalltau` (NaN below 3 methods;
    two-sided; exact without ties, asymptotic with them, which at most nine methods is somewhat optimistic: 0.022
    against a permutation's 0.028 for six methods with one tie).
    """
    from scipy.stats import kendalltau

    check_choice("quantity", quantity, ("BA", "WSR"))
    prefix = ("BA",) if quantity == "BA" else ("WSR", "untargeted success")
    rows = comparison[comparison["quantity"].str.startswith(prefix)].dropna(subset=["paper", "ours"])
    ranks = rows[["method", "paper", "ours"]].copy()
    ranks["paper_rank"] = ranks["paper"].rank(ascending=False, method="min").astype(int)
    ranks["our_rank"] = ranks["ours"].rank(ascending=False, method="min").astype(int)
    ranks = ranks.sort_values("paper_rank").reset_index(drop=True)
    n = len(ranks)
    tau, p = kendalltau(ranks["paper"], ranks["ours"]) if n >= 3 else (math.nan, math.nan)
    return ranks, {"n": n, "kendall_tau": float(tau), "p_value": float(p)}


def floor_test(table: pd.DataFrame, n_eval: int, alpha: float = 0.01, strong: float = 0.5,
               n_eval_untargeted: int | None = None) -> pd.DataFrame:
    """Is each method's trigger learnt, i.e. does it beat its own floor? One-sided Fisher exact test of
    ``WSR > WSR_benign`` (success counts out of ``n_eval`` triggered non-target test images on the watermarked
    model and on the benign model; for UBW-* the untargeted success against the benign model's error on the same
    triggered images, counted over ``n_eval_untargeted``: the whole test set, which untargeted success is measured
    on; default ``n_eval``; rows are told apart by the ``targeted`` column of :func:`table_i`). Adds ``lift``
    (WSR - WSR_benign), ``p_vs_benign``, ``learnt`` (p < ``alpha``) and ``strength``: "strong" (learnt and lift
    >= ``strong``: most triggered images move), "weak" (learnt, smaller lift) or "none"; rows without a WSR (No
    Watermark) get NaN / False / "-". The two models see the same images, and the unpaired test is conservative
    only while their hits on those images go together, the usual case (a simulation at 200 images and equal rates of
    0.5 gave 0.0095 false claims at alpha 0.01 independent, 0 positively and 0.04 negatively correlated); an exact
    McNemar test would not depend on it, but needs each image's hits, which the table does not keep."""
    from scipy.stats import fisher_exact

    from ..params import check_int, parse_fraction

    n_eval = check_int("n_eval", n_eval, 1)
    n_untargeted = n_eval if n_eval_untargeted is None else check_int("n_eval_untargeted", n_eval_untargeted, 1)
    alpha = parse_fraction("alpha", alpha, high_inclusive=False)
    strong = parse_fraction("strong", strong)
    missing = {"WSR", "WSR_benign"} - set(table.columns)
    if missing:
        raise ValueError(f"table needs the columns {sorted(missing)} (from table_i)")
    out = table.copy()
    lifts, ps = [], []
    targeted = out["targeted"] if "targeted" in out.columns else pd.Series(True, index=out.index)
    for w, b, t in zip(out["WSR"], out["WSR_benign"], targeted):
        if pd.isna(w) or pd.isna(b):
            lifts.append(math.nan)
            ps.append(math.nan)
            continue
        if not (0 <= w <= 1 and 0 <= b <= 1):
            raise ValueError(f"WSR and WSR_benign must be shares in [0, 1]; got {w}, {b}")
        n = n_untargeted if t is False or t == 0 else n_eval  # NaN / missing: a targeted row
        hw, hb = round(w * n), round(b * n)
        ps.append(float(fisher_exact([[hw, n - hw], [hb, n - hb]], alternative="greater")[1]))
        lifts.append(w - b)
    out["lift"], out["p_vs_benign"] = lifts, ps
    out["learnt"] = out["p_vs_benign"].lt(alpha)
    out["strength"] = ["-" if pd.isna(p) else "none" if not ok else "strong" if lift >= strong else "weak"
                       for p, ok, lift in zip(out["p_vs_benign"], out["learnt"], out["lift"])]
    return out


def reading(tested: pd.DataFrame, agreement: dict | None = None, label: str = "") -> str:
    """A short, computed reading of Table I (markdown): which methods' triggers are learnt (from
    :func:`floor_test`), their order by WSR beside the paper's, and the rank agreement (``agreement``: quantity ->
    :func:`ranking_vs_paper` statistics). Nothing in it is written by hand, so it stays true for any profile."""
    need = {"method", "WSR", "WSR_benign", "strength", "p_vs_benign", "BA"}
    if need - set(tested.columns):
        raise ValueError(f"tested needs the columns {sorted(need - set(tested.columns))} (from floor_test)")
    rows = tested.dropna(subset=["WSR"]).sort_values("WSR", ascending=False)
    def fmt(r):
        p = f"p {r.p_vs_benign:.1g}" if r.p_vs_benign > 0 else "p < 1e-300"  # Fisher's p underflows to 0
        return f"{r.method} {r.WSR:.3f} (benign {r.WSR_benign:.3f}, {p})"

    group = {k: "; ".join(fmt(r) for r in rows.itertuples() if r.strength == k) or "none"
             for k in ("strong", "weak", "none")}
    lines = [f"Table I reading ({label})" if label else "Table I reading",
             f"- learnt, strongly (above the same trigger on the benign model, one-sided Fisher test, by at least the "
             f"strong lift), by WSR: {group['strong']}",
             f"- above the benign floor but weakly: {group['weak']}",
             f"- not above the benign floor: {group['none']}"]
    base = tested[tested["method"] == "No Watermark"]
    if len(base):
        ba0 = float(base["BA"].iloc[0])
        cost = ", ".join(f"{r.method} {100 * (r.BA - ba0):+.1f}" for r in rows.itertuples())
        lines.append(f"- BA against No Watermark ({100 * ba0:.1f}%), in points: {cost}")
    for q, a in (agreement or {}).items():
        lines.append(f"- {q} order vs the paper: {agreement_text(a)}")
    return "\n".join(lines)


def agreement_text(agreement: dict) -> str:
    """One :func:`ranking_vs_paper` statistics dict in words: Kendall's rank correlation with its p-value and count,
    or why there is none (no paper values for the dataset, as for MNIST and Sub-ImageNet; fewer than 3 methods; ties
    only), never ``+nan (p = nan)``."""
    n, tau = agreement.get("n", 0), agreement.get("kendall_tau", math.nan)
    if n >= 3 and not math.isnan(tau):
        return f"Kendall's rank correlation {tau:+.2f} (p = {agreement['p_value']:.2g}, {n} methods)"
    if n == 0:
        return "no paper values for this dataset (0 methods), not compared"
    if n < 3:
        return f"only {n} method{'s' if n != 1 else ''} with a paper value (3 needed), not compared"
    return f"undefined over {n} methods (one side's values are all tied), not compared"
