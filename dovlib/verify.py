"""Ownership verification by hypothesis tests, and the watermark metrics of Table I (any DatasetWatermark).

* :func:`ttest_verify`: SSCL-BW's probability-available test. With P_b = P(t | x) and P_w = P(t | G(x)) on m
  non-target images, a one-sided paired t-test of H0: mean(P_w - P_b) <= tau (scipy ``ttest_rel(P_w, P_b + tau,
  alternative="greater")``); ownership is claimed when p < alpha. alpha bounds the chance, over random draws of the
  queries, of claiming one model for which H0 holds only as far as the t-test's normal approximation holds: the
  differences are bounded and can be skewed, and a null at its boundary with rare large negative differences is
  claimed more often (measured over 4,000 draws at alpha 0.01, with 5% of the differences at -0.7 and the rest at
  +0.3 plus N(0, 0.02) noise: 0.37 at m = 20 and 0.043 at m = 100). No claim is made from fewer queries than any
  valid test of a bounded mean needs (:func:`claim_floor`). alpha does not bound the share of independent owners'
  models claimed (a model that truly answers the trigger by more than tau is a correct rejection, yet a false
  claim). It stays the default (the paper's test).
* :func:`bounded_verify` (ours): the same H0 tested by betting (Waudby-Smith and Ramdas, JRSSB 2024), valid
  (false-claim chance never above alpha) for every distribution of the differences on [-1, 1] with mean at most
  tau, for independently drawn queries, m and seed fixed in advance; valid, not exact: it claims such nulls far
  less often than alpha. ``benchmarks/verify_level.py`` measured, at tau 0.25 and alpha 0.01 over 4,000 seeded
  draws per null and m (m = 20, 100; the same draws for both tests): 0 claims at the skewed null above (the t-test
  on those draws: 0.37 and 0.043), 2 and 1 at the two-point null at -1 and +1 (t-test: 0.025 and 0.009), 0 at
  N(0.25, 0.1) (t-test: 0.011 and 0.010); drawn without replacement from pools of 200 and 270 differences with mean
  tau (m 100 and 40, 2,000 draws each; a null about the pool's own mean, which the guarantee does not cover), 0.
  It pays in power with few queries: over 1,000 draws a watermarked model with D ~ clip(N(0.7, 0.2)) is claimed
  96% of the time at m = 20 (t-test 100%) and always from m = 40; D ~ clip(N(0.45, 0.2)) never at m = 20 (t-test
  95%, which no valid test attains: every one claims it at most about 31% of the time, a Neyman-Pearson bound in
  :func:`bounded_verify`'s docstring), 69% at m = 40 (t-test 100%), always at m = 100; D ~ clip(N(0.35, 0.2))
  84% at m = 100 (t-test 99.6%), 0.5% at m = 40 (t-test 77%). A saturated model claims from 11 queries (the
  floor: 10). ``verify_model(test="bounded")`` runs it,
  :func:`add_bounded` puts it beside the t-test in Table II, and :func:`dovlib.sscl.run_code_controls` beside the
  target code's t-tests (the intersection-union of per-class betting tests, ``sscl.verify_code(test="bounded")``).
* :func:`label_verify`: the label-only variant (an API that returns labels): a binomial test that the share of
  watermarked queries labelled t exceeds the benign share + tau, with the benign share's own sampling error
  accounted for (an exact Clopper-Pearson bound, alpha split in two).
* :func:`evaluate_watermark`: BA, WSR, perceptual distance, PSNR and SSIM for a trained model and a watermark.

Notebook 03 runs the scenarios of Table II (Malicious; Ind-M, independent model: trained on the clean set; Ind-W,
independent watermark: trained on another owner's marked set) and the share of models claimed in each.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .metrics import mean_psnr, ssim
from .params import check_int, parse_fraction
from .perceptual import perceptual_distance
from .train import evaluate, predict_logits, predict_proba, to_float

__all__ = ["VerifyResult", "ttest_verify", "bounded_verify", "label_verify", "intersection_union",
           "verification_set", "query_probs", "verify_model", "claim_floor", "min_claim_queries",
           "min_bounded_claim_queries", "check_claim_queries", "attack_success", "evaluate_watermark", "add_bounded",
           "summarize_controls", "tau_sweep", "m_sweep", "per_class_accuracy", "PAPER_TABLE_II", "paper_table_ii"]

# SSCL-BW (Wang et al., 2025) Table II, ResNet-18: (scenario, quantity) -> value. Only the CIFAR-10 block was
# available to us (Malicious delta_p 0.964; Ind-W and Ind-M delta_p about 0 with p = 1); other datasets are left
# empty, never filled with CIFAR-10's values.
PAPER_TABLE_II = {
    "cifar10": {("Ind-W", "delta_p"): 0.0, ("Ind-W", "p-value (max)"): 1.0, ("Ind-M", "delta_p"): 0.0,
                ("Ind-M", "p-value (max)"): 1.0, ("Malicious", "delta_p"): 0.964},
}


@dataclass(frozen=True)
class VerifyResult:
    delta_p: float  # mean(P_w - P_b) (label test: share labelled t, watermarked - benign)
    p_value: float
    verified: bool  # p_value < alpha: ownership claimed
    n: int
    tau: float
    alpha: float
    test: str
    note: str = ""

    @property
    def verdict(self) -> str:
        return "ownership verified" if self.verified else "not verified"

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def _check_tau_alpha(tau, alpha):
    tau = parse_fraction("tau", tau, 0.0, 1.0, low_inclusive=True, high_inclusive=False)
    alpha = parse_fraction("alpha", alpha, 0.0, 1.0, high_inclusive=False)
    return tau, alpha


ZERO_SPREAD = 8 * float(np.finfo(np.float32).eps)  # spreads of the differences this small count as zero variance


def _as_float_array(name: str, x) -> np.ndarray:
    """Probabilities or labels as a float64 array: tensors (detached, from any device), arrays, lists, pandas Series."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numbers (a tensor, array, list or pandas Series); got {type(x).__name__}: "
                         f"{e}") from None


def _paired_probs(p_benign, p_watermarked) -> tuple[np.ndarray, np.ndarray]:
    """The input checks of :func:`ttest_verify` and :func:`bounded_verify`: (P_b, P_w) as flat float64 arrays, one
    probability of the target class per query, paired, finite, in [0, 1]; else a ValueError saying what is wrong."""
    pb = _as_float_array("p_benign", p_benign)
    pw = _as_float_array("p_watermarked", p_watermarked)
    if pb.shape != pw.shape:  # checked before flattening: (3, 4) and (4, 3) would pair the wrong entries
        raise ValueError(f"p_benign and p_watermarked must be paired (same shape); got {pb.shape} and {pw.shape}")
    if pb.ndim > 1 and pb.shape[1:] != (1,) * (pb.ndim - 1):
        # a (queries, classes) softmax matrix: its rows sum to 1, so delta_p would be 0 and nothing ever claimed
        raise ValueError(f"p_benign and p_watermarked must be one probability per query (the target class's column, "
                         f"e.g. probs[:, target]); got shape {pb.shape}")
    pb, pw = pb.ravel(), pw.ravel()
    if not (np.isfinite(pb).all() and np.isfinite(pw).all()):
        raise ValueError("p_benign and p_watermarked must be finite probabilities")
    if pb.size and (min(pb.min(), pw.min()) < 0 or max(pb.max(), pw.max()) > 1):
        raise ValueError(f"p_benign and p_watermarked must be probabilities in [0, 1] (softmax outputs, not logits); "
                         f"got values in [{min(pb.min(), pw.min()):.4g}, {max(pb.max(), pw.max()):.4g}]")
    return pb, pw


def claim_floor(n: int, tau=0.25, low=1.0) -> float:
    """``((1 + tau) / (1 + low)) ** n``: the largest chance, under H0: mean(P_w - P_b) <= tau, that all ``n``
    differences are at least ``low`` (a difference of probabilities lies in [-1, 1]; ``low`` in (tau, 1]).

    It is exact: the null that puts (1 + tau) / (1 + low) of its mass at ``low`` and the rest at -1 has mean tau,
    and Markov's inequality on D + 1 shows that no null puts more there. With ``low = 1`` (every query saturated) it
    is the smallest p-value any valid test can give from n pairs: below ``log(alpha) / log((1 + tau) / 2)`` pairs
    (10 at tau = 0.25 and alpha = 0.01; 7 at tau = 0) no test can claim, and :func:`ttest_verify` reports at least
    this. A sign test's 0.5**n bounds a median null, not a mean: with 95% of the differences at 0.3 and 5% at -0.7
    the mean is tau = 0.25, yet all 20 are at 0.3 with chance 0.36."""
    n = check_int("n", n, 0)
    tau = parse_fraction("tau", tau, 0.0, 1.0, low_inclusive=True, high_inclusive=False)
    low = parse_fraction("low", low, tau, 1.0, low_inclusive=False)
    return ((1 + tau) / (1 + low)) ** n


def min_claim_queries(tau=0.25, alpha=0.01) -> int:
    """The fewest queries (pairs) from which :func:`ttest_verify` can claim at ``tau`` and ``alpha``: the smallest n,
    at least 2, with ``claim_floor(n, tau) < alpha`` (10 at tau = 0.25 and alpha = 0.01; 7 at tau = 0)."""
    tau, alpha = _check_tau_alpha(tau, alpha)
    n = max(2, math.floor(math.log(alpha) / math.log((1 + tau) / 2)))
    while claim_floor(n, tau) >= alpha:  # the log ratio only estimates n: step to the exact bound
        n += 1
    while n > 2 and claim_floor(n - 1, tau) < alpha:
        n -= 1
    return n


def min_bounded_claim_queries(tau=0.25, alpha=0.01) -> int:
    """The fewest queries from which :func:`bounded_verify` can claim at ``tau`` and ``alpha``: the n at which a
    saturated model (every difference 1) first claims (11 at tau 0.25 and alpha 0.01; at least
    :func:`min_claim_queries`, which bounds every valid test)."""
    tau, alpha = _check_tau_alpha(tau, alpha)
    n = min_claim_queries(tau, alpha)
    while not bounded_verify(np.zeros(n), np.ones(n), tau, alpha, permutations=1).verified:  # one order: all alike
        n += 1
    return n


def check_claim_queries(m: int, tau=0.25, alpha=0.01, what: str = "m", test: str = "ttest") -> int:
    """``m`` when that many queries can claim at ``tau`` and ``alpha`` with ``test``, else a ValueError naming
    ``what`` (how m was set), m, tau, alpha and the fewest queries that can claim: a run that can never claim
    ownership says nothing (notebooks 02 and 03 refuse it before any training). ``test`` "ttest" (the default)
    needs :func:`min_claim_queries`, the bound of every valid test (10 at tau 0.25 and alpha 0.01); "bounded" needs
    :func:`min_bounded_claim_queries` (11 there): the betting test of :func:`bounded_verify`, which an owner's check
    with ``check_test="bounded"`` decides by."""
    m = check_int(what, m, 0)
    tau, alpha = _check_tau_alpha(tau, alpha)
    if not isinstance(test, str) or test not in PROB_TESTS:
        raise ValueError(f"test must be one of {', '.join(map(repr, PROB_TESTS))}; got {test!r}")
    need = min_claim_queries(tau, alpha)
    if m < need:
        raise ValueError(f"{what}: {m} queries can never claim ownership at tau {tau:g} and alpha {alpha:g} (the "
                         f"smallest p-value any valid test gives from {m} pairs is ((1 + tau) / 2)**{m} = "
                         f"{claim_floor(m, tau):.3g}, not below alpha); at least {need} queries are needed "
                         f"(dovlib.verify.min_claim_queries)")
    if test == "bounded" and m < (need := min_bounded_claim_queries(tau, alpha)):
        raise ValueError(f"{what}: the betting test (bounded_verify) can never claim from {m} queries at tau {tau:g} "
                         f"and alpha {alpha:g}, even when every query is saturated; at least {need} queries are "
                         f"needed (dovlib.verify.min_bounded_claim_queries)")
    return m


def ttest_verify(p_benign, p_watermarked, tau=0.25, alpha=0.01) -> VerifyResult:
    """Paired one-sided t-test of H0: mean(P_w - P_b) <= tau (SSCL-BW, Sec. verification). Fewer than 2 pairs, or
    pairs whose differences have zero variance, never yield a t-test claim: below 2 pairs p = 1; with zero variance,
    every difference equal to one D that exceeds tau by more than float32 rounding, the exact bound of a bounded
    mean p = :func:`claim_floor` (n, tau, D) = ((1 + tau) / (1 + D))**n is used (else p = 1: P_w = P_b + tau
    computed in float32 lies on H0, not above it). That bound holds for every null with mean at most tau, unlike the
    t-statistic's own limit (t -> inf, p -> 0) as the spread of positive differences shrinks; it is reached in
    practice only by a saturated model (P_w = 1 and P_b ~ 0 on every query: D = 1, p = 0.625**n at tau = 0.25),
    which claims from n = 10 pairs at alpha = 0.01 (the default m = 100 gives p = 4e-21). Before 2026-12-06 this
    branch used the sign test's 0.5**n, which bounds a median null, not H0.

    With fewer pairs than any valid test needs (``claim_floor(n, tau) >= alpha``: 9 or fewer at tau = 0.25 and
    alpha = 0.01) the t-test's p-value is raised to at least ``claim_floor(n, tau)``, so no claim is made: two
    saturated queries a few float32 steps apart, whose spread is real but tiny, would otherwise give the t-test a
    claim at n = 2 (measured: p = 1e-6). From there on the t-test's own p-value is reported unchanged.

    Zero variance means equal up to float32 rounding (a spread of at most ``ZERO_SPREAD`` times the largest
    difference, or times 1 when that is smaller; probabilities and their differences lie within [-1, 1]): models
    answer in float32, and two differences one float32 step apart would otherwise give the t-test a near-zero
    standard deviation and a claim at n = 2 (measured: p = 1.7e-8 for 0.9 and its float32 neighbour)."""
    from scipy.stats import ttest_rel

    tau, alpha = _check_tau_alpha(tau, alpha)
    pb, pw = _paired_probs(p_benign, p_watermarked)
    n = pb.size
    delta = float((pw - pb).mean()) if n else float("nan")
    if n < 2:
        return VerifyResult(delta, 1.0, False, n, tau, alpha, "paired t-test", "fewer than 2 samples: no claim")
    d = pw - pb - tau
    tol = ZERO_SPREAD * max(1.0, float(np.abs(d).max()))
    if np.ptp(d) <= tol:  # every difference the same up to rounding; one that is only rounding above tau is on H0
        p = claim_floor(n, tau, min(1.0, tau + float(d.min()))) if d.min() > tol else 1.0
        return VerifyResult(delta, p, p < alpha, n, tau, alpha, "paired t-test",
                            "zero variance: exact bound of a bounded mean used")
    p = float(ttest_rel(pw, pb + tau, alternative="greater").pvalue)
    if not math.isfinite(p):
        p = 1.0
    floor = claim_floor(n, tau)
    if floor >= alpha and p < floor:  # too few pairs for any valid claim at alpha
        return VerifyResult(delta, floor, False, n, tau, alpha, "paired t-test",
                            f"{n} pairs: p raised to the floor of a bounded mean ((1 + tau) / 2)**{n} (no valid test "
                            f"claims from so few queries)")
    return VerifyResult(delta, p, p < alpha, n, tau, alpha, "paired t-test")


PERMUTED_VALUES = 1 << 20  # bounded_verify bets on at most this many differences at once (orders x pairs)
BET_CAP = 0.9  # bets stay below BET_CAP / (1 + tau): a difference of -1 keeps at least 1 - BET_CAP of the wealth


def _log_wealth(d: np.ndarray, tau: float) -> np.ndarray:
    """Final log wealth of the betting test for each row of ``d`` (orders of the differences, shape (orders, n)).

    Bet t stakes lambda_t on D_t - tau: wealth K_t = prod (1 + lambda_i (D_i - tau)). lambda_t is chosen from
    D_1, ..., D_{t-1} only (predictable), as the approximate GRAPA bet of Waudby-Smith and Ramdas (2024):
    (mu - tau) / (var + (mu - tau)**2), mu and var the running mean and variance of the past differences, each
    started by one pseudo-observation fixed before the data (mean (1 + tau) / 2, variance 1/4); clipped to
    [0, BET_CAP / (1 + tau)], so every factor is at least 1 - BET_CAP > 0 for D in [-1, 1]."""
    orders, n = d.shape
    t = np.arange(1, n + 1)
    start = np.zeros((orders, 1))
    s1 = np.concatenate([start, np.cumsum(d, 1)[:, :-1]], 1)  # sums over D_1..D_{t-1}
    s2 = np.concatenate([start, np.cumsum(d * d, 1)[:, :-1]], 1)
    mu = ((1 + tau) / 2 + s1) / t
    var = (0.25 + np.maximum(s2 - 2 * mu * s1 + (t - 1) * mu * mu, 0.0)) / t  # past squared deviations from mu
    edge = mu - tau
    lam = np.clip(edge / (var + edge * edge), 0.0, BET_CAP / (1 + tau))
    return np.log1p(lam * (d - tau)).sum(1)


def bounded_verify(p_benign, p_watermarked, tau=0.25, alpha=0.01, permutations: int = 1000,
                   seed: int = 0) -> VerifyResult:
    """Test by betting of H0: mean(P_w - P_b) <= tau, valid (false-claim chance never above alpha) for every
    distribution of the differences on [-1, 1] with mean at most tau, for independently drawn queries, n and
    ``seed`` fixed in advance (Waudby-Smith and Ramdas, "Estimating means of bounded random variables by betting",
    JRSSB 2024; Shafer and Vovk's testing by betting), unlike :func:`ttest_verify`'s normal approximation. Valid,
    not exact: at such nulls it claimed far less often than alpha (0 to 0.0005 at alpha 0.01, the module
    docstring). The same input checks as :func:`ttest_verify`.

    A gambler starts with wealth 1 and bets a share lambda_t in [0, BET_CAP / (1 + tau)), chosen from the earlier
    pairs only, on D_t - tau (:func:`_log_wealth`): under H0 the wealth is a nonnegative supermartingale, so its
    final value K_n has expectation at most 1 (an e-value) for independently drawn queries. The order of the pairs:
    the differences are sorted, then the wealth is averaged over ``permutations`` uniformly random orders of them
    (seeded, drawn apart from the data). A uniformly random order of independent, identically distributed draws is
    itself such draws (whatever order they were sorted into first), so each order's K_n is an e-value, and so is
    their average; p = min(1, 1 / average) then holds by Markov's inequality. Sorting first makes p a function of
    the set of differences alone for a given seed: the order the pairs come in (verification_set returns them by
    test-set index) does not move it at all. The seed does, by the Monte-Carlo error of the average, reported in
    ``note`` as the relative standard error of the average wealth (about that of p where p < 1). Measured at the
    default 1,000 orders over 100 seeds: a relative sd of 5% to 9% on 100 differences of which 10 to 20 are at -1
    and the rest at +1 (21% at 100 orders, 18 at -1), at most 2% on 13 other samples of 20 to 100 differences,
    close to the ``note``'s standard error each time. The final wealth is used, not its running maximum (Ville's
    inequality), since n is fixed before the queries; an average of running maxima is not covered. Fix ``seed``
    (and n) before looking at the data: trying seeds until one claims voids the level. A p below 1e-300 is reported
    as 1e-300, ``note`` saying so (as :func:`label_verify`), never as 0.

    Queries drawn without replacement (verification_set draws m test images without replacement): where H0 is
    about the model's mean over the data distribution and the test set is an iid sample of it, a subset of the test
    set drawn at random, independently of the answers, without replacement is itself an iid sample, so the
    guarantee holds. The caveat matters only for an H0 about the finite pool's own mean (the mean over these test
    images alone): draws without replacement from it are dependent, which is covered for fixed bets (negative
    association), not proved for these adaptive ones; measured conservative there (the module docstring).

    Each factor is below 1 + BET_CAP (1 - tau) / (1 + tau) < 2 / (1 + tau), so p > :func:`claim_floor` (n, tau):
    never a claim below :func:`min_claim_queries`. A saturated model (every D = 1) claims from 11 pairs at tau 0.25
    and alpha 0.01 (the floor allows 10; 8 at tau 0, floor 7).

    The price of validity at every bounded null is power with few queries. Against D ~ clip(N(0.45, 0.2)) at n 20,
    tau 0.25 and alpha 0.01, every valid test claims at most about 31% of the time: the Neyman-Pearson bound against
    one null with mean tau (D's own law reweighted by 1 / (1 + (D - tau) / (1 + tau)), the rest of the mass at -1;
    200,000 simulated samples), so the t-test's 95% there is not attainable validly; this test claims 0% (69% at n
    40, all at n 100: the module docstring). BET_CAP trades power between alternatives: 0.99 instead of 0.9 claims
    clean alternatives more often (clip(N(0.6, 0.2)) at n 20: 55-61% instead of 32-33%; clip(N(0.35, 0.2)) at n 50:
    11-13% instead of 5-6%) and less often where a few differences are at -1, each keeping only 1 - BET_CAP of the
    wealth at a capped bet (5% of them at -1, the rest clip(N(0.7, 0.1)), n 50: 50-55% instead of 73-80%; two runs
    of 400 draws each by reviewers, by scripts not in the repository: indicative only)."""
    tau, alpha = _check_tau_alpha(tau, alpha)
    permutations = check_int("permutations", permutations, 1)
    seed = check_int("seed", seed, 0)
    pb, pw = _paired_probs(p_benign, p_watermarked)
    n, test = pb.size, "betting test (bounded mean)"
    if n == 0:
        return VerifyResult(float("nan"), 1.0, False, 0, tau, alpha, test, "no pairs: no claim")
    d = np.sort(pw - pb)  # p a function of the set of differences, not of the order given
    rng = np.random.default_rng(seed)
    chunk = max(1, PERMUTED_VALUES // n)  # orders drawn and bet on a chunk at a time: memory stays bounded
    log_k = np.concatenate([_log_wealth(rng.permuted(np.tile(d, (min(chunk, permutations - i), 1)), axis=1), tau)
                            for i in range(0, permutations, chunk)])
    top = float(log_k.max())
    w = np.exp(log_k - top)  # the wealths over the largest: their average without overflow
    log_e = top + math.log(float(w.mean()))  # log of the average wealth
    if permutations == 1:
        note = "wealth of one random order: no Monte-Carlo error estimated"
    else:
        rse = float(w.std(ddof=1) / (w.mean() * math.sqrt(permutations)))
        note = (f"average wealth over {permutations} orders, Monte-Carlo relative standard error "
                f"{'below 0.01' if rse < 1e-4 else f'{100 * rse:.2g}'}%")
    if log_e > 300 * math.log(10):  # p below 1e-300 (underflowing to 0 from about 1e-308): as label_verify
        claimed = -log_e < math.log(alpha)  # exact, even for an alpha below 1e-300
        return VerifyResult(float(d.mean()), 1e-300, claimed, n, tau, alpha, test, f"p below 1e-300; {note}")
    p = 1.0 if log_e <= 0 else math.exp(-log_e)
    return VerifyResult(float(d.mean()), p, p < alpha, n, tau, alpha, test, note)


def _as_labels(name: str, labels) -> torch.Tensor:
    """Hard labels, one per query: a 1-D tensor of integers (integral floats pass). A (queries, classes) probability
    matrix, booleans or fractions are refused by name: counting their entries equal to ``target`` means nothing."""
    t = torch.as_tensor(labels)
    if t.ndim != 1 or t.dtype == torch.bool or (t.dtype.is_floating_point and not bool((t == t.round()).all())):
        raise ValueError(f"{name} must be hard labels, one integer per query (shape (n,)); got dtype {t.dtype} and "
                         f"shape {tuple(t.shape)} (probabilities: take argmax(1), or use ttest_verify)")
    return t


def label_verify(labels_watermarked, target: int, labels_benign=None, tau=0.25, alpha=0.01) -> VerifyResult:
    """Label-only test: k of n watermarked queries labelled ``target``; H0: rate_w <= rate_b + tau, one-sided.

    ``labels_benign`` (the same queries without the mark): rate_b is not known but estimated from those n labels,
    and plugging the estimate into a binomial test as if it were exact claims ownership too often (measured by
    simulation at the null boundary, n = 100, tau = 0.25, alpha = 0.01: 1.5% of claims at rate_b 0.05, 3.9% at 0.3,
    5% at 0.5). So the test is exact instead: at level a, rate_b is replaced by its one-sided Clopper-Pearson upper
    bound at 1 - a/2 and the binomial test (scipy's ``binom.sf``) must give p < a/2 (Bonferroni: valid whatever the
    pairing). The p-value reported is the smallest such a (bisection; the rejection regions are nested). Without
    ``labels_benign`` the benign rate is taken as 0 (known), a plain binomial test against tau, which needs tau > 0
    (at tau 0 a single query labelled ``target`` would prove ownership: any model mislabels some images as the
    target); fewer than 2 queries then never claim (as :func:`ttest_verify`)."""
    from scipy.stats import beta, binom, binomtest

    tau, alpha = _check_tau_alpha(tau, alpha)
    target = check_int("target", target, 0)
    lw = _as_labels("labels_watermarked", labels_watermarked)
    n = len(lw)
    k = int((lw == target).sum())
    if labels_benign is None:
        if tau == 0:
            raise ValueError("label_verify without labels_benign needs tau in (0, 1): the benign rate is taken as 0, "
                             "so at tau 0 one query labelled target would claim ownership; pass labels_benign or "
                             "a margin tau > 0 (default 0.25)")
        delta = k / n if n else float("nan")
        if n < 2:  # as the t-test: one query never claims
            return VerifyResult(delta, 1.0, False, n, tau, alpha, "binomial test", "fewer than 2 samples: no claim")
        p = float(binomtest(k, n, tau, alternative="greater").pvalue)
        return VerifyResult(delta, p, p < alpha, n, tau, alpha, "binomial test", "benign rate taken as 0")
    lb = _as_labels("labels_benign", labels_benign)
    if len(lb) != n:
        raise ValueError(f"labels_benign and labels_watermarked must answer the same queries (same length); got "
                         f"{len(lb)} and {n}")
    kb = int((lb == target).sum())
    rate_b = kb / n if n else float("nan")
    delta = k / n - rate_b if n else float("nan")
    if n < 1:
        return VerifyResult(delta, 1.0, False, n, tau, alpha, "binomial test", "no samples")

    def rejects(log_a: float) -> bool:  # at level a = 10**log_a: the binomial test against upper(rate_b) + tau
        a = 10.0 ** log_a
        # one-sided Clopper-Pearson upper bound at 1 - a/2 (beta.isf stays exact for tiny a, where 1 - a rounds to 1)
        upper = 1.0 if kb >= n else float(beta.isf(a / 2, kb + 1, n - kb))
        return upper + tau < 1 and float(binom.sf(k - 1, n, upper + tau)) < a / 2

    test = "binomial test (benign rate bounded)"
    lo, hi = -300.0, 0.0  # log10 of the level: the p-value is found to a relative precision of about 1e-15
    if not rejects(hi - 1e-12):
        return VerifyResult(delta, 1.0, False, n, tau, alpha, test, "not rejected at any level")
    if rejects(lo):
        return VerifyResult(delta, 1e-300, True, n, tau, alpha, test, "p below 1e-300")
    for _ in range(64):  # rejection regions are nested in a: bisect for the smallest a that rejects
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if rejects(mid) else (mid, hi)
    p = 10.0 ** hi
    return VerifyResult(delta, p, p < alpha, n, tau, alpha, test)


def intersection_union(results) -> VerifyResult:
    """Claim only if EVERY test claims: the intersection-union test of several :class:`VerifyResult` (one per
    target class of a target code, :func:`dovlib.sscl.run_code`). Its p-value is the largest one, so its level is
    alpha whenever any one null hypothesis holds; ``delta_p`` is the smallest of the tests' delta_p and ``tau`` the
    largest of their margins. A NaN p-value or delta_p in any test makes the combined one NaN and unclaimed, and a
    test that did not claim vetoes the claim whatever its p-value says."""
    results = list(results)
    if not results:
        raise ValueError("intersection_union needs at least one VerifyResult")
    alphas = {r.alpha for r in results}
    if len(alphas) != 1:
        raise ValueError(f"the tests must share one alpha; got {sorted(alphas)}")
    alpha = alphas.pop()
    ps = [float(r.p_value) for r in results]
    deltas = [float(r.delta_p) for r in results]
    # fails closed: a NaN p-value (or delta_p) anywhere makes the combined one NaN, never claimed; Python's max and
    # min would keep or drop a NaN depending on its place in the list (a claim with [1e-5, nan], none with [nan, 1e-5])
    p = math.nan if any(math.isnan(v) for v in ps) else max(ps)
    delta = math.nan if any(math.isnan(v) for v in deltas) else min(deltas)
    # a test that did not claim (e.g. too few pairs) vetoes; so does a NaN delta_p
    claimed = p < alpha and not math.isnan(delta) and all(r.verified for r in results)
    note = "" if claimed or not p < alpha else (
        "a delta_p is NaN: no claim" if math.isnan(delta) else "a component test did not claim: its verdict vetoes")
    return VerifyResult(delta, p, claimed, sum(r.n for r in results), max(r.tau for r in results), alpha,
                        f"intersection-union of {len(results)} {results[0].test}s", note)


def verification_set(x_test, y_test, target: int, m: int, seed: int = 0, exclude=None) -> torch.Tensor:
    """Indices of ``m`` test images from the non-target classes (seeded draw, sorted); m = 100 in the paper.
    ``exclude``: indices never drawn (e.g. another draw's, to keep two sets of queries disjoint)."""
    y = torch.as_tensor(y_test)
    keep = y != target
    if exclude is not None:
        if torch.as_tensor(exclude).dtype == torch.bool:  # a mask would be read as the indices 0 and 1
            raise ValueError("exclude must hold test-set indices, not a boolean mask (use mask.nonzero())")
        exclude = torch.as_tensor(exclude, dtype=torch.long).flatten()
        if len(exclude) and (int(exclude.min()) < 0 or int(exclude.max()) >= len(y)):
            raise ValueError(f"exclude must hold test-set indices in [0, {len(y) - 1}]; got values in "
                             f"[{int(exclude.min())}, {int(exclude.max())}] (negative indices are not wrapped)")
        keep[exclude] = False
    pool = torch.nonzero(keep).flatten()
    if not len(pool):
        raise ValueError(f"the test set has no image outside the target class {target} ({len(y)} images"
                         f"{', excluded ones left out' if exclude is not None else ''}): the verification queries "
                         f"come from the non-target classes")
    m = check_int("m" if exclude is None else f"m (non-target test images left after excluding {len(exclude)})",
                  m, 1, len(pool))
    g = torch.Generator().manual_seed(seed)
    return pool[torch.randperm(len(pool), generator=g)[:m]].sort().values


def query_probs(model, x: torch.Tensor, trigger, target: int):
    """(P_b, P_w): the suspect model's probability of ``target`` on clean and on ``trigger``-ed queries."""
    return predict_proba(model, x)[:, target], predict_proba(model, trigger(x))[:, target]


PROB_TESTS = {"ttest": ttest_verify, "bounded": bounded_verify}  # verify_model's tests of the probabilities


def verify_model(model, x: torch.Tensor, trigger, target: int, tau=0.25, alpha=0.01, labels_only: bool = False,
                 test: str = "ttest"):
    """Query a suspect ``model`` with ``x`` and ``trigger(x)`` and test the target-class probabilities with ``test``:
    "ttest" (:func:`ttest_verify`, the paper's) or "bounded" (:func:`bounded_verify`: valid, its false-claim chance
    never above alpha, for every distribution of the differences on [-1, 1] with mean at most tau, for independently
    drawn queries, m and seed fixed in advance); or, with ``labels_only`` (an API that returns labels),
    :func:`label_verify`, exact already, so ``test`` must then stay "ttest" (the default)."""
    if test not in PROB_TESTS:
        raise ValueError(f"test must be one of {', '.join(map(repr, PROB_TESTS))}; got {test!r}")
    if labels_only:
        if test != "ttest":
            raise ValueError(f"test {test!r} tests probabilities; labels_only uses label_verify (already exact): "
                             f"leave test at 'ttest' or set labels_only False")
        lb = predict_logits(model, x).argmax(1)
        lw = predict_logits(model, trigger(x)).argmax(1)
        return label_verify(lw, target, lb, tau, alpha)
    pb, pw = query_probs(model, x, trigger, target)
    return PROB_TESTS[test](pb, pw, tau, alpha)


def attack_success(model, x: torch.Tensor, y: torch.Tensor, trigger, target: int, targeted: bool = True) -> float:
    """WSR: share of watermarked NON-target images classified as ``target``. Untargeted (UBW): share of ALL
    watermarked test images misclassified (``target`` plays no part, so no class is left out)."""
    y = torch.as_tensor(y)
    keep = y != target if targeted else torch.ones_like(y, dtype=torch.bool)
    if not keep.any():
        raise ValueError("attack_success needs at least one non-target image")
    pred = predict_logits(model, trigger(x[keep])).argmax(1)
    hit = pred == target if targeted else pred != y[keep]
    return hit.float().mean().item()


def per_class_accuracy(model, x, y, num_classes: int | None = None) -> list[float]:
    """Clean accuracy of each class (NaN for a class without test images): the target class pays for clean-label
    marking (notebook 02)."""
    y = torch.as_tensor(y)
    num_classes = num_classes or int(y.max()) + 1
    pred = predict_logits(model, x).argmax(1)
    return [(pred[y == c] == c).float().mean().item() if (y == c).any() else float("nan") for c in range(num_classes)]


def evaluate_watermark(model, watermark, x_test, y_test, target: int, *, x_clean=None, x_marked=None,
                       perceptual: str = "ssim", max_pairs: int = 500) -> dict:
    """Table I metrics for any :class:`~dovlib.watermarks.DatasetWatermark` (or anything with ``trigger`` and
    ``targeted``): BA (clean test accuracy), WSR, and image quality between clean and marked images: the named
    perceptual distance (``"lpips"`` real only, else ``"ssim"`` = 1 - SSIM of pytorch-msssim, 11x11 Gaussian window,
    or ``"mse"``), PSNR and SSIM (:func:`dovlib.metrics.ssim`: scikit-image, 7x7 uniform window; another SSIM, so
    ``perceptual_ssim`` is not 1 - ``SSIM``). Quality uses the marked training images (``x_clean`` vs ``x_marked``)
    when given, else triggered test images."""
    max_pairs = check_int("max_pairs", max_pairs, 1)
    if (x_clean is None) != (x_marked is None):  # one alone was dropped and triggered test images measured instead
        raise ValueError("x_clean and x_marked go together (the marked training images and their clean originals); "
                         f"got only {'x_clean' if x_marked is None else 'x_marked'}")
    trigger = watermark.trigger if hasattr(watermark, "trigger") else watermark
    targeted = getattr(watermark, "targeted", True)
    out = {"BA": evaluate(model, x_test, y_test),
           "WSR": attack_success(model, x_test, y_test, trigger, target, targeted)}
    if x_clean is None or x_marked is None or len(x_clean) == 0:
        x_clean = x_test[:max_pairs]
        x_marked = trigger(x_clean)
    a, b = x_clean[:max_pairs], x_marked[:max_pairs]
    out[f"perceptual_{perceptual}"] = perceptual_distance(a, b, perceptual).mean().item()
    out["PSNR"] = mean_psnr(a, b)
    out["SSIM"] = float(np.mean(ssim(a, b)))
    out["linf"] = (to_float(a) - to_float(b)).abs().amax().item()  # in [0, 1] units, uint8 or float images
    out["perceptual"] = perceptual
    return out


def paper_table_ii(table2, dataset: str):
    """Our Table II (:func:`summarize_controls`) beside the paper's block for ``dataset`` (cifar10-subset ->
    cifar10, ...): columns scenario, quantity (delta_p, p-value (max)), paper (NaN where the paper's value is not
    available to us), ours, diff = ours - paper."""
    import pandas as pd

    from .watermarks.table import paper_key  # lazy: the watermarks package imports this module

    ref = PAPER_TABLE_II.get(paper_key(dataset), {})
    ours = table2.set_index("scenario")
    rows = [{"scenario": sc, "quantity": q, "paper": ref.get((sc, q), math.nan),
             "ours": float(ours.at[sc, "delta_p" if q == "delta_p" else "p_value_max"])}
            for sc in ("Ind-W", "Ind-M", "Malicious") if sc in ours.index for q in ("delta_p", "p-value (max)")]
    out = pd.DataFrame(rows, columns=["scenario", "quantity", "paper", "ours"])
    out["diff"] = out["ours"] - out["paper"]
    return out


def add_bounded(df, tau=0.25, alpha=0.01):
    """A copy of :func:`dovlib.sscl.run_controls` rows with :func:`bounded_verify` of each row's ``p_b``/``p_w``
    beside the paper's t-test: columns ``bounded_p_value`` and ``bounded_verified`` (at ``tau`` and ``alpha``, which
    the rows do not record: pass the run's); where the rows have ``p_decoy`` (run_controls' decoy-controlled test)
    also ``bounded_decoy_p_value`` and ``bounded_decoy_verified``, with the decoy's answers as the baseline.
    :func:`summarize_controls` then reports them per scenario."""
    tau, alpha = _check_tau_alpha(tau, alpha)
    if "p_w" not in getattr(df, "columns", ()) or "p_b" not in df.columns:
        raise ValueError(f"add_bounded needs the p_b and p_w columns (one array of probabilities per model, as "
                         f"run_controls returns); got columns {list(getattr(df, 'columns', []))}")
    out = df.copy()
    tests = [bounded_verify(pb, pw, tau, alpha) for pb, pw in zip(out["p_b"], out["p_w"])]
    out["bounded_p_value"] = [v.p_value for v in tests]
    out["bounded_verified"] = [v.verified for v in tests]
    if "p_decoy" in out.columns:  # run_controls' decoy-controlled test: the decoy's answers as the baseline
        decoy = [bounded_verify(pd_, pw, tau, alpha) for pd_, pw in zip(out["p_decoy"], out["p_w"])]
        out["bounded_decoy_p_value"] = [v.p_value for v in decoy]
        out["bounded_decoy_verified"] = [v.verified for v in decoy]
    return out


def summarize_controls(df):
    """Table II from :func:`dovlib.sscl.run_controls` rows: per scenario the number of models, mean delta_p, median,
    max and min p-value, and the share of models claimed (``verified_rate``: paired t-test; ``label_verified_rate``:
    label-only test), from the rows' own verdicts at the alpha they were tested with (:func:`tau_sweep` re-tests at
    other settings); with :func:`add_bounded`'s columns also ``bounded_p_value_max`` and ``bounded_verified_rate``
    (betting test; ``bounded_decoy_*`` likewise for the decoy baseline). These shares estimate the true-positive
    rate (Malicious) and the false-claim rate (Ind-M, Ind-W) from a few models only: 0 claims of n bounds the rate,
    at 95% confidence, only to 1 - 0.05**(1/n)."""
    g = df.groupby("scenario", sort=False)
    out = g.agg(models=("delta_p", "size"), delta_p=("delta_p", "mean"), p_value_median=("p_value", "median"),
                p_value_max=("p_value", "max"), p_value_min=("p_value", "min"), verified_rate=("verified", "mean"),
                WSR=("WSR", "mean"), BA=("BA", "mean"), label_verified_rate=("label_verified", "mean"))
    if "decoy_verified" in df:
        extra = g.agg(decoy_delta_p=("decoy_delta_p", "mean"), decoy_p_value_max=("decoy_p_value", "max"),
                      decoy_verified_rate=("decoy_verified", "mean"))
        out = out.join(extra)
    if "bounded_verified" in df:
        out = out.join(g.agg(bounded_p_value_max=("bounded_p_value", "max"),
                             bounded_verified_rate=("bounded_verified", "mean")))
    if "bounded_decoy_verified" in df:
        out = out.join(g.agg(bounded_decoy_p_value_max=("bounded_decoy_p_value", "max"),
                             bounded_decoy_verified_rate=("bounded_decoy_verified", "mean")))
    return out.reset_index()


def _probs(row, col: str):
    """``row[col]`` as a float array when it holds one probability per query (an array, list or tensor, as after a
    JSON round trip), else None (a missing column, or NaN where a row has no such test)."""
    value = row[col] if col in row else None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, list, tuple)):
        return np.asarray(value, dtype=float)
    return None


def _no_rows(fn: str, df) -> ValueError:
    return ValueError(f"{fn} needs a p_w column and p_b (or p_decoy) holding one array of probabilities per model; "
                      f"got columns {list(getattr(df, 'columns', []))}")


SWEEP_TESTS = ("ttest", "bounded", "both")  # tau_sweep / m_sweep: which tests of the probabilities they report


def _sweep_tests(test: str) -> tuple[bool, bool]:
    """(t-test, bounded test) to run for a sweep's ``test``; a ValueError naming ``test`` and its choices."""
    if test not in SWEEP_TESTS:
        raise ValueError(f"test must be one of {', '.join(map(repr, SWEEP_TESTS))}; got {test!r}")
    return test != "bounded", test != "ttest"


def tau_sweep(df, taus=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5), alpha=0.01, test: str = "ttest",
              permutations: int = 1000):
    """Share of models verified per scenario and tau (same queries, re-tested): how the share of models claimed
    changes with tau, for Malicious and for the Ind-M / Ind-W controls. It cannot show a false-claim rate under
    alpha: with n models per scenario (2-5 in the profiles) 0 claims bounds the rate, at 95% confidence, only to
    1 - 0.05**(1/n) (0.78, 0.63, 0.45 for n = 2, 3, 5), never under 0.01; and alpha bounds the per-model error over
    random query draws for a model where H0 holds, not the share of independent owners' models that get claimed (an
    Ind-W model whose mean shift truly exceeds tau is a correct rejection of H0, yet a false ownership claim). Needs
    the ``p_b``/``p_w`` columns (and ``p_decoy`` for the decoy-controlled test, reported as
    ``baseline="decoy"``).

    ``test``: "ttest" (the default, the paper's :func:`ttest_verify`: columns ``verified_rate`` and
    ``p_value_max``, as before 2026-12-06), "bounded" (:func:`bounded_verify`, valid at every bounded null:
    ``bounded_verified_rate`` and ``bounded_p_value_max`` instead) or "both" (all four, as :func:`add_bounded` names
    them in Table II). The bounded test uses ``permutations`` orders and bounded_verify's seed 0, as add_bounded
    does, so at the run's tau and alpha its verdicts are Table II's ``bounded_*`` ones."""
    import pandas as pd

    run_t, run_b = _sweep_tests(test)
    permutations = check_int("permutations", permutations, 1)
    rows = []
    baselines = {"clean": "p_b", "decoy": "p_decoy"}
    for tau in taus:
        for _, r in df.iterrows():
            p_w = _probs(r, "p_w")
            for base, col in baselines.items():
                if (p := _probs(r, col)) is not None and p_w is not None:
                    row = {"tau": tau, "baseline": base, "scenario": r["scenario"], "model_seed": r["model_seed"]}
                    if run_t:
                        v = ttest_verify(p, p_w, tau, alpha)
                        row.update(p_value=v.p_value, verified=v.verified)
                    if run_b:
                        b = bounded_verify(p, p_w, tau, alpha, permutations)
                        row.update(bounded_p_value=b.p_value, bounded_verified=b.verified)
                    rows.append(row)
    if not rows:
        raise _no_rows("tau_sweep", df)
    long = pd.DataFrame(rows)
    agg = {}
    if run_t:
        agg.update(verified_rate=("verified", "mean"), p_value_max=("p_value", "max"))
    if run_b:
        agg.update(bounded_verified_rate=("bounded_verified", "mean"), bounded_p_value_max=("bounded_p_value", "max"))
    return long.groupby(["baseline", "tau", "scenario"], sort=False).agg(**agg).reset_index()


def m_sweep(df, ms=(10, 20, 30, 50, 75, 100), tau: float = 0.25, alpha: float = 0.01, draws: int = 50, seed: int = 0,
            test: str = "ttest", permutations: int = 200):
    """Share of (model, subset) tests verified per scenario when each model is queried with only ``m`` of its
    verification images (``draws`` seeded random subsets of its ``p_b``/``p_w`` pairs per model and m, without
    replacement: subsets of the same queries, which overlap, not fresh queries; the test's ``tau`` and ``alpha``
    fixed): how many queries the Malicious models need, and whether the false claims on Ind-M / Ind-W models depend
    on m. An m above a model's number of queries is skipped; at m equal to it the full set is tested once per model.
    Returns baseline ("clean", and "decoy" when ``p_decoy`` is there), m, scenario, verified_rate (pooled over
    models and draws, not a share of models), draws_x_models.

    ``test``: "ttest" (the default, :func:`ttest_verify`: ``verified_rate``, as before 2026-12-06), "bounded"
    (:func:`bounded_verify`: ``bounded_verified_rate`` instead) or "both" (both columns, on the same subsets: the
    subsets are drawn from ``seed`` as before, so the t-test's column does not move). The bounded test averages its
    wealth over ``permutations`` orders (default 200, not bounded_verify's 1,000, to keep the sweep's thousands of
    tests fast), drawn from bounded_verify's seed 0 apart from the data: any number of data-independent orders gives
    a valid p-value; fewer only add Monte-Carlo noise to it (at the full set a verdict within that noise of alpha
    may then differ from Table II's)."""
    import pandas as pd

    run_t, run_b = _sweep_tests(test)
    permutations = check_int("permutations", permutations, 1)
    draws = check_int("draws", draws, 1)
    ms = sorted({check_int("m", m, 2) for m in ms})
    rng = np.random.default_rng(seed)
    rows = []
    baselines = {"clean": "p_b", "decoy": "p_decoy"}
    tested = False
    for _, r in df.iterrows():
        p_w = _probs(r, "p_w")
        tests = {test: p for test, col in baselines.items() if (p := _probs(r, col)) is not None}
        if p_w is None or not tests:
            continue
        tested, n = True, len(p_w)
        for test, p in tests.items():  # subsets index both arrays: unequal lengths would pair the wrong queries
            if len(p) != n:
                raise ValueError(f"m_sweep: scenario {r['scenario']!r}, model_seed {r['model_seed']}: "
                                 f"{baselines[test]} has {len(p)} queries and p_w {n}; they must be paired")
        for m in ms:
            if m > n:
                continue
            subsets = [np.arange(n)] if m == n else [rng.choice(n, m, replace=False) for _ in range(draws)]
            for base, p in tests.items():
                for idx in subsets:
                    row = {"m": m, "baseline": base, "scenario": r["scenario"]}
                    if run_t:
                        row["verified"] = ttest_verify(p[idx], p_w[idx], tau, alpha).verified
                    if run_b:
                        row["bounded_verified"] = bounded_verify(p[idx], p_w[idx], tau, alpha, permutations).verified
                    rows.append(row)
    if not tested:
        raise _no_rows("m_sweep", df)
    if not rows:
        raise ValueError(f"m_sweep: every m in {ms} exceeds the models' number of queries")
    long = pd.DataFrame(rows)
    agg = {"verified_rate": ("verified", "mean")} if run_t else {}
    if run_b:
        agg["bounded_verified_rate"] = ("bounded_verified", "mean")
    agg["draws_x_models"] = ("verified" if run_t else "bounded_verified", "size")
    return long.groupby(["baseline", "m", "scenario"], sort=False).agg(**agg).reset_index()
