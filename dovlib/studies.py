"""The SSCL-BW studies of notebooks 04-06: ablation of eps and rate (Fig. 4), removal attacks (Fig. 5) and
transferability across architectures (Fig. 6). Each study point is one cached call of :func:`dovlib.sscl.run_sscl`
plus the same measurements (BA, WSR, verification p-value), so the notebooks only choose parameters and plot.
:func:`paired_effects` compares training sets over shared training seeds (notebook 10)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable

from .params import Profile, check_bool, parse_eps
from .report import find_record, run_times, timer, write_record
from .sscl import query_count, query_source
from .train import evaluate
from .verify import attack_success, check_claim_queries, verification_set, verify_model

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PAPER_EPS", "PAPER_RATES", "PAPER_ARCHS", "grid", "ownership_metrics", "check_study_queries",
           "benign_model", "cached", "eps_label", "study_label", "transfer_cells", "paired_effects"]

PAPER_EPS = [f"{i}/255" for i in range(1, 11)]  # Fig. 4 (left): eps 1/255 .. 10/255
PAPER_RATES = [round(0.01 * i, 2) for i in range(1, 11)]  # Fig. 4 (right): gamma 1% .. 10%
PAPER_ARCHS = ["resnet18", "resnet34", "vgg16", "vgg19"]  # Fig. 6: surrogate x suspect

_SMOKE_GRID = {"eps": ["4/255", "8/255"], "rate": [0.05, 0.1], "archs": ["resnet18", "vgg16"]}


def grid(name: str, profile: Profile) -> list:
    """The sweep values of ``name`` ("eps", "rate" or "archs") for a profile: the paper's grid, shrunk for smoke."""
    full = {"eps": PAPER_EPS, "rate": PAPER_RATES, "archs": PAPER_ARCHS}
    if name not in full:
        raise ValueError(f"grid name must be one of {sorted(full)}; got {name!r}")
    return list(_SMOKE_GRID[name] if profile.name == "smoke" else full[name])


def eps_label(eps) -> str:
    """``0.0313...`` -> ``"8/255"`` (eps in grey levels, as the paper writes it). Notebooks 04-06 key their cached
    records and tables by this label, so distinct budgets need distinct labels: the level keeps six significant
    digits (``"8.5/255"``, ``0.03`` -> ``"7.65/255"``). Budgets that agree to six digits share a label and so a
    record (``8.000003/255``, ``0.03137254`` and ``8/255`` all read ``"8/255"``): they differ by far less than one
    grey level, and a sweep given both spellings runs one job (:mod:`dovlib.sweep`)."""
    levels = parse_eps(eps) * 255
    if abs(levels - round(levels)) < 1e-6:
        return f"{round(levels)}/255"
    return f"{levels:.6g}/255"


def study_label(ds, profile: str, *, target: int, arch: str | None = None, eps=None, rate=None,
                perceptual: str | None = None, devices: str | None = None, profile_line: bool = False) -> str:
    """What a study's figure or table was measured with, in words (notebooks 04-06): the data (subset or full), the
    architecture, eps, gamma, the target class, the profile string and the devices, each left out where it is not
    one setting of the output (``None``: a column, or the grid's axis). Their captions named eps and gamma but never
    the target class, so a run at ``-p target 3`` was captioned as one at the default class 1; their records held it.
    ``profile_line``: the profile (and devices) on a line of their own, for a figure title (a profile string can be
    long). Class names may come in any sequence (a numpy array too); a dataset without them bounds ``target`` by its
    ``num_classes`` where it has one. ``eps`` and ``rate`` are read as the notebooks read them ("8/255", "1/10").
    ``perceptual``: the generator's similarity loss ("perceptual ssim"), which the captions did not name (only the
    records and the reports index did), so a fallback's results read like LPIPS ones (the papers')."""
    from .params import check_int, parse_rate
    from .perceptual import check_perceptual

    classes = getattr(ds, "classes", None)
    classes = None if classes is None or len(classes) == 0 else [str(c) for c in classes]
    n = len(classes) if classes else getattr(ds, "num_classes", None)
    target = check_int("target", target, 0, None if n is None else n - 1)
    parts = [f"{ds.name} ({'subset' if ds.is_subset else 'full'})"] + ([arch] if arch else [])
    parts += [f"eps {eps_label(eps)}"] if eps is not None else []
    parts += [f"gamma {parse_rate(rate, 'rate (gamma)'):g}"] if rate is not None else []
    parts += [f"target {target}" + (f" ({classes[target]})" if classes else "")]
    parts += [f"perceptual {check_perceptual(perceptual)}"] if perceptual is not None else []
    last = ", ".join([f"{profile} profile"] + ([str(devices)] if devices else []))
    return ", ".join(parts) + ("\n" if profile_line else ", ") + last


def span_text(values, fmt: str = "{}") -> str:
    """The range of ``values`` in words, each end formatted with ``fmt`` (e.g. ``"{:.1%}"``): "5.6% to 7.0%", or one
    value where both ends read the same (notebook 06's one-draw or one-architecture runs said "seeds 0 to 0",
    "WSR 5.6% to 5.6%"). NaN values are left out; none left gives "n/a"."""
    values = [v for v in values if v == v]  # NaN is not equal to itself
    if not values:
        return "n/a"
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low} to {high}"


def paired_effects(frame: pd.DataFrame, value: str, reference: str, *, by: str = "set",
                   pair: str = "train_seed") -> pd.DataFrame:
    """Each group of ``by`` (a training set) against ``reference``, paired on ``pair`` (the training seed: the same
    initial weights and data order for every set): one row per group with ``n`` (pairs), ``<value>`` and
    ``<value>_std`` (mean and sample standard deviation over its rows), ``<value>_minus_<reference>`` and its
    ``_std`` (the mean and spread of the per-pair differences), and ``p_vs_<reference>``: the two-sided paired t-test
    p-value of no difference (scipy ``ttest_rel``). With one pair the spreads and p are NaN (one model cannot separate
    an effect from a seed's); differences that do not vary give p = 1 when all are 0 and NaN otherwise (the t-test is
    undefined). The reference's own row has difference 0 and p NaN. Every group must hold exactly the reference's
    pairs, each once, each with its value (a NaN value is refused, naming its rows)."""
    import numpy as np
    import pandas as pd
    from scipy.stats import ttest_rel

    missing = [c for c in (by, pair, value) if c not in frame.columns]
    if missing:
        raise ValueError(f"paired_effects: frame has no column(s) {missing}; it has {list(frame.columns)}")
    groups = list(dict.fromkeys(frame[by]))
    if reference not in groups:
        raise ValueError(f"paired_effects: reference must be one of the {by} values {groups}; got {reference!r}")
    if frame.duplicated([by, pair]).any():
        dup = frame.loc[frame.duplicated([by, pair], keep=False), [by, pair]].drop_duplicates().values.tolist()
        raise ValueError(f"paired_effects: each ({by}, {pair}) must appear once; repeated: {dup}")
    if frame[value].isna().any():  # a row without its value: not a seed the set lacks
        nan = frame.loc[frame[value].isna(), [by, pair]].values.tolist()
        raise ValueError(f"paired_effects: {value} is missing (NaN) for ({by}, {pair}) {nan}: drop that {pair} from "
                         f"every {by}, or give its value")
    table = frame.pivot(index=pair, columns=by, values=value)
    if table.isna().any().any():
        lacking = {g: table.index[table[g].isna()].tolist() for g in groups if table[g].isna().any()}
        raise ValueError(f"paired_effects: every {by} needs the same {pair} values ({table.index.tolist()}); "
                         f"lacking: {lacking}")
    ref = table[reference].to_numpy(float)
    rows = []
    for g in groups:
        v = table[g].to_numpy(float)
        d = v - ref
        n = len(v)
        if g == reference or n < 2:
            p = np.nan
        elif np.ptp(d) == 0:
            p = 1.0 if d[0] == 0 else np.nan
        else:
            p = float(ttest_rel(v, ref).pvalue)
        rows.append({by: g, "n": n, value: float(v.mean()), f"{value}_std": float(v.std(ddof=1)) if n > 1 else np.nan,
                     f"{value}_minus_{reference}": float(d.mean()),
                     f"{value}_minus_{reference}_std": float(d.std(ddof=1)) if n > 1 else np.nan,
                     f"p_vs_{reference}": p})
    return pd.DataFrame(rows)


def ownership_metrics(model, x_test, y_test, trigger: Callable, target: int, m: int | None = None, tau=0.25,
                      alpha=0.01, seed: int = 0, default_m: int = 100, benign=None) -> dict:
    """BA, WSR and the black-box verification (delta_p, p-value, verdict) of one suspect model, queried with
    ``trigger`` on ``m`` non-target test images (the same images for every model of a study, given ``seed``).
    ``m`` given is used as is (more than the test set's non-target images is refused, naming the range); ``m`` None
    takes ``default_m`` (a profile's ``verify_m``) capped at those images (:func:`dovlib.sscl.query_count`).

    ``benign``: a model of the same architecture trained on the clean set (:func:`benign_model`), measured the same
    way on the same images: ``BA_benign``, ``WSR_benign``, ``delta_p_benign``, ``p_value_benign``,
    ``verified_benign``, and ``learnt`` (the suspect verified and the clean model not). Marks made against a
    surrogate can move a model that never saw them (adversarial transfer: docs/measured-h100.md), so a WSR or a
    verdict says the watermark was learnt only beside this floor."""
    idx = verification_set(x_test, y_test, target, query_count(y_test, target, m, default_m), seed)

    def measure(net, suffix=""):
        v = verify_model(net, x_test[idx], trigger, target, tau, alpha)
        return {f"BA{suffix}": evaluate(net, x_test, y_test),
                f"WSR{suffix}": attack_success(net, x_test, y_test, trigger, target),
                f"delta_p{suffix}": v.delta_p, f"p_value{suffix}": v.p_value, f"verified{suffix}": bool(v.verified)}

    out = measure(model)
    if benign is not None:
        out.update(measure(benign, "_benign"))
        out["learnt"] = out["verified"] and not out["verified_benign"]
    return out


def check_study_queries(ds, target: int, profile: Profile, tau=0.25, alpha=0.01) -> int:
    """The number of queries :func:`ownership_metrics` makes for ``target`` with ``m`` None and ``default_m`` the
    profile's ``verify_m``: that verify_m capped at the test images outside the class
    (:func:`dovlib.sscl.query_count`; ``ds`` has ``y_test``), returned when that many can claim ownership at ``tau``
    and ``alpha``, else refused naming the profile's verify_m, the cap, tau, alpha and the fewest queries that can
    (:func:`dovlib.verify.check_claim_queries`). Notebooks 04-06 call it before any training."""
    return check_claim_queries(query_count(ds.y_test, target, None, profile.verify_m), tau, alpha,
                               what=query_source(ds, target, None, profile.verify_m))


def transfer_cells(draws: pd.DataFrame) -> pd.DataFrame:
    """Notebook 06's grid per (surrogate, suspect) cell from ``draws`` (a DataFrame, one row per draw of a cell, with
    the columns of :func:`ownership_metrics` given a ``benign`` model): the mean ``BA``, ``WSR``, ``BA_benign`` and
    ``WSR_benign`` over the cell's draws, ``n_draws``, and how many draws were ``learnt``, ``verified`` and
    ``verified_benign`` (integers). Cells keep the order in which they first appear. A column missing, an empty
    frame, or a draw without a verdict (NaN) is refused by name: a count must not quietly read a missing verdict as
    False."""
    keys, means, counts = ["surrogate", "suspect"], ["BA", "WSR", "BA_benign", "WSR_benign"], ["learnt", "verified",
                                                                                                "verified_benign"]
    missing = [c for c in keys + means + counts if c not in draws.columns]
    if missing:
        raise ValueError(f"draws lacks column(s) {missing}: each row must be ownership_metrics(..., benign=...) of "
                         "one draw with its surrogate and suspect")
    if draws.empty:
        raise ValueError("draws is empty: no cell to summarise")
    if draws[counts].isna().any().any():
        raise ValueError(f"draws has a missing verdict in {counts}: every draw needs a verdict")
    grouped = draws.groupby(keys, sort=False)
    out = grouped[means].mean()
    out["n_draws"] = grouped.size()
    for c in counts:
        out[c] = grouped[c].agg(lambda v: int(sum(bool(x) for x in v)))
    return out.reset_index()


# where a record's numbers were measured, and on what the models they come from were trained
PROVENANCE = ("device", "device_name", "trained_on", "training_precision", "trained_by")


def measured_context(context: dict, records) -> dict:
    """The context a figure or table drawn from ``records`` is labelled with: ``context`` (this run's) with each
    :data:`PROVENANCE` key as the records say (reused records may come from another machine: a CPU run that redraws
    GPU numbers must not call them CPU numbers); several values are joined ("cpu, cuda"); a key no record holds is
    dropped (``trained_on``: nothing trained), and this run's value is kept only when no record is given."""
    records = [r for r in records if r is not None]
    if not records:
        return dict(context)
    out = dict(context)
    for k in PROVENANCE:
        values = sorted({str(r[k]) for r in records if r.get(k) is not None})
        if values:
            out[k] = ", ".join(values)
        else:
            out.pop(k, None)
    return out


def benign_model(ds, profile: Profile, arch: str, seed: int, progress: bool = True):
    """The model a user of ``arch`` would train on the CLEAN set with ``seed`` (cached: notebook 03's Ind-M model of
    the same seed): the floor :func:`ownership_metrics` reads a watermark's WSR and verdict against."""
    from .sscl import train_classifier

    return train_classifier(ds.x_train, ds.y_train, ds.x_test, ds.y_test, arch=arch, profile=profile, seed=seed,
                            num_classes=ds.num_classes, progress=progress).model


@functools.lru_cache(maxsize=1)
def _code() -> str:
    """The ``dovlib`` source hash (12 digits) of this process: taken once, at the first record, so a file edited during
    a long run does not stamp records with code that did not compute them."""
    from .reproduce import source_hash

    return source_hash()[:12]


def cached(notebook: str, params: dict, compute: Callable[[], dict], recompute: bool = False, needs=(),
           **context) -> dict:
    """The record of ``params`` from ``reports/<notebook>/metrics.json`` if it is there (and not ``recompute``),
    else ``compute()``'s metrics written as a new record with its ``wall_time`` and ``compute_time``
    (:func:`dovlib.report.run_times`: the models this point's ``compute()`` read back from ``runs/`` count what
    training them took, those other points used too included; ``context``: profile, dataset, is_subset, device,
    ...). Returns the record; ``record["reused"]`` says which. ``recompute`` must be a bool (the string ``"False"``
    is refused, not read as True). ``needs``: metric names a reusable record must hold; a record
    written before one of them was measured is measured again (the models it needs are read back from ``runs/``).
    Each record keeps ``code``, the ``dovlib`` source hash it was computed with; a record reused under other code
    is said so (printed), since a fix since then does not show in it until ``recompute`` (``reproduce --force``)."""
    code = _code()
    if not check_bool("recompute", recompute):
        rec = find_record(notebook, params)
        if rec is not None and all(k in rec.get("metrics", {}) for k in needs):
            if rec.get("code") != code:
                print(f"note: reused record written {rec.get('written', '?')} by dovlib code "
                      f"{rec.get('code', 'not recorded')} (now {code}); recompute=True measures it again")
            return {**rec, "reused": True}
    with timer() as t:  # this point's own: the models its compute() trained or read back, each once
        metrics = compute()
    rec = write_record(notebook, params, metrics, **run_times(t), code=code, **context)
    return {**rec, "reused": False}

