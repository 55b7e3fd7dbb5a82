import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.stats import beta, binom, binomtest, ttest_rel

from dovlib.verify import (attack_success, evaluate_watermark, label_verify, ttest_verify, verification_set,
                           verify_model)


def _probs(seed, n=100):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 0.2, n), rng.normal(0, 0.05, n)


def test_large_shift_is_verified_and_matches_scipy():
    pb, noise = _probs(0)
    pw = np.clip(pb + 0.6 + noise, 0, 1)
    r = ttest_verify(pb, pw, tau=0.25, alpha=0.01)
    assert r.verified and r.p_value < 1e-10 and r.verdict == "ownership verified"
    assert r.delta_p == pytest.approx(np.mean(pw - pb))
    assert r.p_value == pytest.approx(ttest_rel(pw, pb + 0.25, alternative="greater").pvalue)


def test_shift_below_tau_is_not_verified():
    pb, noise = _probs(1)
    r = ttest_verify(pb, np.clip(pb + 0.1 + noise, 0, 1))
    assert not r.verified and r.p_value > 0.5 and 0.05 < r.delta_p < 0.15


def test_degenerate_inputs_never_claim_ownership_by_accident():
    one = ttest_verify([0.1], [0.9])  # one pair: no test at all, not even the bounded mean's floor 0.625
    assert not one.verified and one.p_value == 1.0 and not ttest_verify([0.1], [0.9], alpha=0.9).verified
    assert ttest_verify([], []).p_value == 1.0
    same = ttest_verify(np.full(50, 0.3), np.full(50, 0.3))  # zero variance, no effect
    assert same.p_value == 1.0 and not same.verified and "zero variance" in same.note
    assert not ttest_verify([0.0, 0.0], [1.0, 1.0]).verified  # constant effect, too few pairs (p = 0.625**2)
    f32 = np.array([0.9, np.nextafter(np.float32(0.9), np.float32(1))], dtype=np.float32)  # one float32 step
    tie = ttest_verify([0.1, 0.1], f32)  # the t-test alone gave p = 1.7e-8 here: a claim from rounding
    assert not tie.verified and tie.p_value == pytest.approx((1.25 / 1.8) ** 2) and "zero variance" in tie.note
    pw = [0.9, 0.91, 0.92, 0.9, 0.91, 0.92, 0.93, 0.9, 0.91, 0.92]
    real = ttest_verify([0.1] * 10, pw)  # a real spread still gets the t-test
    assert real.note == "" and real.p_value == pytest.approx(ttest_rel(pw, [0.35] * 10, alternative="greater").pvalue)
    sat = ttest_verify(np.zeros(100), np.ones(100))  # a saturated model: the exact bound of a bounded mean
    assert sat.verified and sat.p_value == pytest.approx(0.625 ** 100)
    # exactly on the H0 boundary, P_w = P_b + tau in float32: rounding leaves the differences a hair above tau, which
    # gave a zero-variance bound and a claim; it is H0, so no claim
    edge = ttest_verify(np.full(10, np.float32(0.05)), np.full(10, np.float32(0.3)))
    assert edge.p_value == 1.0 and not edge.verified and "zero variance" in edge.note
    pb = np.linspace(0.0, 0.7, 40, dtype=np.float32)
    assert not ttest_verify(pb, pb + np.float32(0.25)).verified  # varied P_b, the same boundary
    # differences that straddle the rounding band (some within it, some just past): the smallest decides, so no claim
    from dovlib.verify import ZERO_SPREAD

    straddle = ttest_verify(np.zeros(20), 0.25 + ZERO_SPREAD * np.tile([0.5, 1.5], 10))
    assert straddle.p_value == 1.0 and not straddle.verified and "zero variance" in straddle.note


def test_fewer_pairs_than_any_valid_test_needs_never_claim():
    """Two saturated queries a few float32 steps apart have a real but tiny spread: the t-test alone claimed at n = 2
    (p = 1e-6). Below log(alpha) / log((1 + tau) / 2) pairs the p-value is raised to ((1 + tau) / 2)**n; from there
    on it is the t-test's own."""
    from dovlib.verify import claim_floor

    lw, lb = torch.tensor([[12.0, 0, 0], [12.5, 0, 0]]), torch.tensor([[0, 14.0, 0], [0, 14.2, 0]])
    pb, pw = lb.softmax(1)[:, 0], lw.softmax(1)[:, 0]
    assert ttest_rel(pw.double(), pb.double() + 0.25, alternative="greater").pvalue < 1e-5  # what the t-test says
    two = ttest_verify(pb, pw)
    assert (two.verified, two.p_value, two.n) == (False, 0.625 ** 2, 2) and "floor of a bounded mean" in two.note
    for n in range(2, 10):  # 0.625**9 = 0.0146 >= 0.01: never a claim; at alpha 0.05 from 7 pairs (0.625**7 = 0.037)
        d = np.linspace(0.6, 0.61, n)
        r = ttest_verify(np.zeros(n), d)
        assert not r.verified and r.p_value == claim_floor(n)
        assert ttest_verify(np.zeros(n), d, alpha=0.05).verified == (n >= 7)
    ten = ttest_verify(np.zeros(10), np.linspace(0.6, 0.61, 10))
    assert ten.verified and ten.note == "" and ten.p_value < claim_floor(10)  # the t-test's own p, not floored
    # tau = 0: the floor is the sign test's 0.5**n, so 7 pairs claim at alpha 0.01
    assert ttest_verify(np.zeros(7), np.linspace(0.6, 0.61, 7), tau=0.0).verified
    assert not ttest_verify(np.zeros(6), np.linspace(0.6, 0.61, 6), tau=0.0).verified
    with pytest.raises(ValueError, match="n must be"):
        claim_floor(-1)
    with pytest.raises(ValueError, match="low"):
        claim_floor(5, 0.25, 0.25)  # no bound at or below tau


def test_claim_floor_is_the_largest_chance_under_the_null():
    """The two-point null with mass (1 + tau) / (1 + low) at ``low`` and the rest at -1 has mean tau and reaches the
    bound; the sign test's 0.5**n was far below it (a median null's bound, not a mean's)."""
    from dovlib.verify import claim_floor

    tau, low, n = 0.25, 0.3, 20
    q = (1 + tau) / (1 + low)
    assert q * low + (1 - q) * -1 == pytest.approx(tau)  # on H0's boundary
    assert claim_floor(n, tau, low) == pytest.approx(q ** n) and claim_floor(n, tau, low) > 0.3 > 0.5 ** n
    assert claim_floor(n, 0.0) == 0.5 ** n and claim_floor(3) == pytest.approx(0.625 ** 3)
    # all 20 differences at 0.3 (none of the null's -1s drawn): no claim, though the sign test gave 1e-6
    r = ttest_verify(np.full(n, 0.35), np.full(n, 0.65))
    assert not r.verified and r.p_value == pytest.approx(claim_floor(n, tau, 0.3)) and "bounded mean" in r.note


def test_the_t_test_is_approximate_for_skewed_nulls_as_the_module_says():
    """The module docstring's measured excess: 5% of the differences at -0.7, the rest at +0.3 with N(0, 0.02) noise
    (mean tau): at m = 20 the t-test claims far more often than alpha. A smaller draw than the docstring's 4,000."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(300):
        neg = rng.random(20) < 0.05
        pb = np.where(neg, 0.85, 0.35)
        hits += ttest_verify(pb, pb + np.where(neg, -0.7, 0.3) + rng.normal(0, 0.02, 20)).verified
    assert 0.25 < hits / 300 < 0.5  # about 0.37: alpha = 0.01 does not hold here


def test_inputs_may_be_series_or_tensors_that_require_grad():
    import pandas as pd

    pb, noise = _probs(0)
    pw = np.clip(pb + 0.6 + noise, 0, 1)
    want = ttest_verify(pb, pw)
    assert ttest_verify(pd.Series(pb), pd.Series(pw)).p_value == pytest.approx(want.p_value)
    grad = torch.tensor(pw, requires_grad=True)
    assert ttest_verify(torch.tensor(pb), grad).p_value == pytest.approx(want.p_value)
    with pytest.raises(ValueError, match="p_benign must be numbers"):
        ttest_verify(["a", "b"], [0.1, 0.2])


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="paired"):
        ttest_verify([0.1, 0.2], [0.3])
    with pytest.raises(ValueError, match=r"same shape\); got \(3, 4\) and \(4, 3\)"):  # same size, wrong pairing
        ttest_verify(np.zeros((3, 4)), np.ones((4, 3)))
    # a (queries, classes) softmax matrix: rows sum to 1, so delta_p was 0 and nothing was ever claimed, silently
    probs = np.full((100, 10), 0.1)
    with pytest.raises(ValueError, match=r"one probability per query .*probs\[:, target\]\); got shape \(100, 10\)"):
        ttest_verify(probs, probs)
    column = ttest_verify(np.full((20, 1), 0.1), np.linspace(0.8, 0.9, 20)[:, None])  # (n, 1): one per query
    assert column.n == 20 and column.verified
    with pytest.raises(ValueError, match="tau"):
        ttest_verify([0.1, 0.2], [0.3, 0.4], tau=1.5)
    with pytest.raises(ValueError, match="alpha"):
        ttest_verify([0.1, 0.2], [0.3, 0.4], alpha=0)
    with pytest.raises(ValueError, match="finite"):
        ttest_verify([0.1, np.nan], [0.3, 0.4])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\] \(softmax outputs, not logits\); got values in "
                                         r"\[-3, 5\]"):
        ttest_verify([5.0, -3.0, 2.0], [0.3, 0.4, 0.5])


def _labels(k, n, target=1):
    return torch.tensor([target] * k + [0] * (n - k))


def test_label_only_binomial_test():
    lb = _labels(10, 100)
    hit = label_verify(_labels(80, 100), 1, lb)
    assert hit.verified and hit.delta_p == pytest.approx(0.7) and hit.test == "binomial test (benign rate bounded)"
    # the p-value is the smallest level a at which the binomial test against (upper bound of rate_b at 1 - a/2) + tau
    # rejects at a/2
    p = hit.p_value
    upper = lambda a: beta.isf(a / 2, 10 + 1, 100 - 10)  # noqa: E731  (one-sided Clopper-Pearson)
    assert binomtest(80, 100, upper(p * 1.001) + 0.25, alternative="greater").pvalue < p * 1.001 / 2
    assert binomtest(80, 100, upper(p * 0.999) + 0.25, alternative="greater").pvalue >= p * 0.999 / 2
    # more conservative than plugging in the estimated rate as if it were known
    assert p > binomtest(80, 100, 0.35, alternative="greater").pvalue
    assert not label_verify(_labels(30, 100), 1, lb).verified
    assert not label_verify(_labels(10, 10), 1, _labels(10, 10)).verified  # null rate >= 1
    strong = label_verify(_labels(100, 100), 1, _labels(0, 100))
    assert strong.verified and 0 < strong.p_value < 1e-15  # tiny p-values stay exact (log-scale search)
    known = label_verify(_labels(80, 100), 1)  # no benign labels: rate taken as 0, a plain binomial test
    assert known.p_value == pytest.approx(binomtest(80, 100, 0.25, alternative="greater").pvalue)
    for lb1, tau in ((None, 0.25), (_labels(0, 1), 0.0)):  # one query never claims
        one = label_verify(_labels(1, 1), 1, lb1, tau=tau)
        assert (one.verified, one.p_value, one.n) == (False, 1.0, 1)
    assert label_verify(_labels(2, 2), 1, tau=0.01).verified  # two queries may
    # without benign labels the benign rate is taken as 0: at tau 0 one stray target label in 1,000 would claim
    with pytest.raises(ValueError, match=r"needs tau in \(0, 1\).*pass labels_benign"):
        label_verify(_labels(1, 1000), 1, tau=0.0)
    assert not label_verify(_labels(1, 1000), 1, _labels(0, 1000), tau=0.0).verified  # with them, no claim
    with pytest.raises(ValueError, match="same queries"):
        label_verify(_labels(5, 10), 1, _labels(5, 12))
    # hard labels only: a (queries, classes) softmax matrix was counted as 500 labels, booleans as 0 / 1
    with pytest.raises(ValueError, match=r"labels_watermarked must be hard labels.*shape \(50, 10\)"):
        label_verify(torch.softmax(torch.randn(50, 10), 1), 1)
    with pytest.raises(ValueError, match=r"labels_benign must be hard labels.*torch.bool"):
        label_verify(_labels(5, 10), 1, torch.ones(10, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"labels_watermarked must be hard labels"):
        label_verify(torch.full((10,), 0.5), 1)
    with pytest.raises(ValueError, match=r"labels_watermarked must be hard labels"):  # some fractional
        label_verify(torch.tensor([1.0, 0.5] * 5), 1)
    with pytest.raises(ValueError, match=r"labels_watermarked must be hard labels.*shape \(50, 10\)"):  # integer 2-D
        label_verify(torch.ones(50, 10, dtype=torch.long), 1)
    assert label_verify(_labels(80, 100).float(), 1, lb).p_value == hit.p_value  # integral floats are labels


def test_label_only_test_keeps_its_level_when_the_benign_rate_is_estimated():
    """Exact false-claim probability at the null boundary (rate_w = rate_b + tau), every (k_b, k_w) enumerated: the
    plug-in binomial test exceeds alpha, the bounded one does not."""
    n, rate_b, tau, alpha = 12, 0.3, 0.25, 0.05
    claim_new = claim_plugin = 0.0
    for kb in range(n + 1):
        for kw in range(n + 1):
            pr = binom.pmf(kb, n, rate_b) * binom.pmf(kw, n, rate_b + tau)
            if label_verify(_labels(kw, n), 1, _labels(kb, n), tau, alpha).verified:
                claim_new += pr
            if kb / n + tau < 1 and binomtest(kw, n, kb / n + tau, alternative="greater").pvalue < alpha:
                claim_plugin += pr
    assert claim_plugin > alpha  # 0.064: why the benign rate's own error must be accounted for
    assert claim_new <= alpha


def test_verification_set_draws_m_non_target_images():
    y = torch.arange(100) % 5
    idx = verification_set(torch.zeros(100, 1, 4, 4), y, target=2, m=30, seed=3)
    assert len(idx) == 30 and len(set(idx.tolist())) == 30 and (y[idx] != 2).all()
    assert torch.equal(idx, verification_set(None, y, 2, 30, seed=3))
    # the seed draws the set (not the pool's first m): other seeds give other sets, and over 20 seeds every
    # non-target image is drawn at some point
    draws = [set(verification_set(None, y, 2, 30, seed=s).tolist()) for s in range(20)]
    assert len({frozenset(d) for d in draws}) == 20
    assert set().union(*draws) == set(torch.nonzero(y != 2).flatten().tolist())
    with pytest.raises(ValueError, match="m must be an integer"):
        verification_set(None, y, 2, 81)
    kept = verification_set(None, y, 2, 79, exclude=[99])  # index 99 (class 4) left out: 79 of 80 remain
    assert 99 not in kept.tolist() and len(kept) == 79
    for bad in ([-1], [100]):  # -1 would have wrapped to 99 silently
        with pytest.raises(ValueError, match=r"exclude must hold test-set indices in \[0, 99\]"):
            verification_set(None, y, 2, 5, exclude=bad)
    mask = torch.zeros(100, dtype=torch.bool)
    mask[10:20] = True  # read as the indices 0 and 1, it left 10-19 in the draw
    with pytest.raises(ValueError, match="not a boolean mask"):
        verification_set(None, y, 2, 5, exclude=mask)


class _CornerModel(nn.Module):
    """Predicts the target when the top-left pixel is white, else the class coded in the pixel below it."""

    def __init__(self, target=3, num_classes=5):
        super().__init__()
        self.target, self.k = target, num_classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        cls = (x[:, 0, 1, 0] * 255).round().long().clamp(0, self.k - 1)
        cls = torch.where(x[:, 0, 0, 0] > 0.99, torch.full_like(cls, self.target), cls)
        return nn.functional.one_hot(cls, self.k).float() * 10 + self.dummy


def _corner_trigger(x):
    x = x.clone()
    x[:, :, 0, 0] = 255
    return x


def test_evaluate_watermark_and_verify_model_on_a_known_backdoor():
    y = torch.arange(60) % 5
    x = torch.zeros(60, 3, 8, 8, dtype=torch.uint8)
    x[:, 0, 1, 0] = y.to(torch.uint8)
    x[:10, 0, 1, 0] = 4  # 10 images misclassified (those with labels 0..3 among the first 10)
    model = _CornerModel(target=3)
    out = evaluate_watermark(model, _corner_trigger, x, y, target=3, perceptual="mse")
    wrong = int((y[:10] != 4).sum())
    assert out["BA"] == pytest.approx(1 - wrong / 60)
    assert out["WSR"] == 1.0 and out["perceptual"] == "mse" and out["linf"] == 1.0
    # the trigger sets one pixel of 64 to white in all 3 channels (from black): MSE 3/192, PSNR 10 log10(64)
    assert out["perceptual_mse"] == pytest.approx(3 / 192) and out["PSNR"] == pytest.approx(10 * np.log10(64))
    from dovlib.metrics import ssim

    assert out["SSIM"] == pytest.approx(float(np.mean(np.asarray(ssim(x, _corner_trigger(x))))), rel=1e-5)
    assert out["SSIM"] < 0.9
    # the same images as floats in [0, 1]: linf in the same [0, 1] units (it was 255 times too small)
    as_float = evaluate_watermark(model, _corner_trigger, x, y, target=3, perceptual="mse",
                                  x_clean=x.float() / 255, x_marked=_corner_trigger(x).float() / 255)
    assert as_float["linf"] == 1.0 and as_float["PSNR"] == pytest.approx(out["PSNR"])
    r = verify_model(model, x[verification_set(x, y, 3, 20)], _corner_trigger, 3)
    # every query moves P(target) from 1 / (e^10 + 4) to e^10 / (e^10 + 4): one difference, zero variance, so the
    # exact bound of a bounded mean ((1 + tau) / (1 + D))^20 stands in for the t-test
    e = np.exp(10.0)
    d = (e - 1) / (e + 4)
    assert r.to_dict() == {"delta_p": pytest.approx(d), "p_value": pytest.approx((1.25 / (1 + d)) ** 20),
                           "verified": True, "n": 20, "tau": 0.25, "alpha": 0.01, "test": "paired t-test",
                           "note": "zero variance: exact bound of a bounded mean used", "verdict": "ownership verified"}
    idx = verification_set(x, y, 3, 20)
    assert verify_model(model, x[idx], _corner_trigger, 3).verified
    assert verify_model(model, x[idx], lambda z: z, 3).p_value == 1.0  # no trigger, no claim
    assert verify_model(model, x[idx], _corner_trigger, 3, labels_only=True).verified


def test_untargeted_success_counts_every_class():
    """UBW's untargeted success: triggered images misclassified, over the whole test set (the ``target`` argument
    must not drop a class); the targeted WSR counts non-target images only."""
    y = torch.arange(50) % 5
    x = torch.zeros(50, 3, 8, 8, dtype=torch.uint8)
    x[:, 0, 1, 0] = y.to(torch.uint8)
    model = _CornerModel(target=3)  # the trigger sends everything to class 3
    assert attack_success(model, x, y, _corner_trigger, target=3) == 1.0
    # targeted WSR counts non-target images only: without a trigger none of them is called 3 (0.2 if class 3 counted)
    assert attack_success(model, x, y, lambda z: z, target=3) == 0.0
    # untargeted: every image not of class 3 is now wrong, the 10 of class 3 are not: 40 of 50 whatever `target` is
    for t in (0, 3):
        assert attack_success(model, x, y, _corner_trigger, target=t, targeted=False) == pytest.approx(0.8)


def _synthetic_queries(shifts: dict, n: int, sd: float, seed: int, models: int = 2):
    """(scenario, model seed, P_b, P_w) of ``models`` synthetic models per scenario: P_w = P_b + shift + noise."""
    rng = np.random.default_rng(seed)
    for scenario, shift in shifts.items():
        for s in range(models):
            pb = rng.uniform(0, 0.1, n)
            yield scenario, s, pb, np.clip(pb + shift + rng.normal(0, sd, n), 0, 1)


def test_tau_sweep_and_summary_count_models_per_scenario():
    import pandas as pd

    from dovlib.verify import summarize_controls, tau_sweep

    rows = []
    for scenario, s, pb, pw in _synthetic_queries({"Malicious": 0.7, "Ind-M": 0.0}, n=50, sd=0.05, seed=0):
        v = ttest_verify(pb, pw)
        rows.append({"scenario": scenario, "model_seed": s, "delta_p": v.delta_p, "p_value": v.p_value,
                     "verified": v.verified, "WSR": 0.0, "BA": 0.5, "label_verified": False, "p_b": pb, "p_w": pw,
                     "p_decoy": pb, "decoy_delta_p": v.delta_p, "decoy_p_value": v.p_value,
                     "decoy_verified": v.verified})
    df = pd.DataFrame(rows)
    t2 = summarize_controls(df).set_index("scenario")
    assert t2.at["Malicious", "verified_rate"] == 1.0 and t2.at["Ind-M", "verified_rate"] == 0.0
    assert t2.at["Malicious", "models"] == 2 and "decoy_verified_rate" in t2
    for scenario, rows_of in df.groupby("scenario"):  # each column aggregates that scenario's rows
        assert t2.at[scenario, "delta_p"] == pytest.approx(rows_of["delta_p"].mean())
        assert t2.at[scenario, "p_value_max"] == rows_of["p_value"].max()
        assert t2.at[scenario, "p_value_min"] == rows_of["p_value"].min()
        assert t2.at[scenario, "p_value_median"] == pytest.approx(rows_of["p_value"].median())
        assert t2.at[scenario, "decoy_p_value_max"] == rows_of["decoy_p_value"].max()
    assert t2.at["Malicious", "delta_p"] == pytest.approx(0.7, abs=0.05)  # the synthetic shift
    # three models with skewed p-values: the median is the middle one (for two models median and mean coincide)
    three = pd.concat([df[df.scenario == "Ind-M"].iloc[:1]] * 3, ignore_index=True)
    three["model_seed"], three["p_value"] = [0, 1, 2], [0.001, 0.002, 0.9]
    assert summarize_controls(three).set_index("scenario").at["Ind-M", "p_value_median"] == 0.002
    sw = tau_sweep(df, taus=(0.0, 0.9)).set_index(["baseline", "tau", "scenario"])
    assert sw.at[("clean", 0.0, "Malicious"), "verified_rate"] == 1.0
    assert sw.at[("clean", 0.9, "Malicious"), "verified_rate"] == 0.0  # a margin above the effect: no claim
    assert set(sw.index.get_level_values("baseline")) == {"clean", "decoy"}


def test_intersection_union_claims_only_when_every_test_claims():
    from dovlib.verify import VerifyResult, intersection_union

    a = VerifyResult(0.6, 1e-9, True, 100, 0.25, 0.01, "paired t-test")
    b = VerifyResult(0.4, 3e-3, True, 100, 0.25, 0.01, "paired t-test")
    c = VerifyResult(0.05, 0.7, False, 100, 0.25, 0.01, "paired t-test")
    both = intersection_union([a, b])
    assert both.verified and both.p_value == 3e-3 and both.delta_p == 0.4 and both.n == 200
    assert "intersection-union of 2" in both.test
    one_fails = intersection_union([a, c])
    assert not one_fails.verified and one_fails.p_value == 0.7  # a single true null keeps the claim away
    with pytest.raises(ValueError, match="at least one"):
        intersection_union([])
    with pytest.raises(ValueError, match="share one alpha"):
        intersection_union([a, VerifyResult(0.6, 1e-9, True, 100, 0.25, 0.05, "paired t-test")])
    strict = VerifyResult(0.6, 1e-4, True, 100, 0.4, 0.01, "paired t-test")  # a larger margin: reported, not lost
    assert intersection_union([a, strict]).tau == 0.4 and intersection_union([strict, a]).tau == 0.4
    nan = VerifyResult(float("nan"), float("nan"), False, 100, 0.25, 0.01, "paired t-test")  # e.g. a bad record
    for order in ([a, nan], [nan, a]):  # max() kept or dropped the NaN by its place: a claim from [a, nan]
        r = intersection_union(order)
        assert not r.verified and math.isnan(r.p_value) and math.isnan(r.delta_p)
    veto = VerifyResult(0.6, 1e-9, False, 5, 0.25, 0.01, "paired t-test")  # did not claim, whatever its p says
    vetoed = intersection_union([a, veto])
    assert not vetoed.verified and "did not claim" in vetoed.note  # p < alpha, so the note says why not verified
    assert intersection_union([a, b]).note == "" and intersection_union([a, c]).note == ""


def test_paper_table_ii_only_uses_the_datasets_own_block():
    import pandas as pd

    from dovlib.verify import PAPER_TABLE_II, paper_table_ii

    table2 = pd.DataFrame({"scenario": ["Malicious", "Ind-M", "Ind-W"], "delta_p": [0.9, 0.01, 0.5],
                           "p_value_max": [1e-9, 1.0, 0.2]})
    cifar = paper_table_ii(table2, "cifar10-subset").set_index(["scenario", "quantity"])
    assert cifar.loc[("Malicious", "delta_p"), "paper"] == PAPER_TABLE_II["cifar10"][("Malicious", "delta_p")]
    assert abs(cifar.loc[("Malicious", "delta_p"), "diff"] - (0.9 - 0.964)) < 1e-12
    assert cifar.loc[("Ind-W", "p-value (max)"), "ours"] == 0.2 and len(cifar) == 6
    assert np.isnan(cifar.loc[("Malicious", "p-value (max)"), "paper"])  # not given by the paper
    mnist = paper_table_ii(table2, "mnist-offline")
    assert mnist["paper"].isna().all() and mnist["diff"].isna().all()  # never CIFAR-10's values
    assert len(paper_table_ii(table2[table2.scenario != "Ind-W"], "cifar10")) == 4


def test_m_sweep_shows_power_growing_with_queries_and_no_false_claims():
    import pandas as pd

    from dovlib.verify import m_sweep

    rows = [{"scenario": scenario, "model_seed": s, "p_b": pb, "p_w": pw}
            for scenario, s, pb, pw in _synthetic_queries({"Malicious": 0.4, "Ind-M": 0.0}, n=60, sd=0.25, seed=1)]
    sw = m_sweep(pd.DataFrame(rows), ms=(5, 60, 100), draws=40).set_index(["baseline", "m", "scenario"])
    assert 100 not in sw.index.get_level_values("m")  # more than the 60 queries: skipped
    assert sw.at[("clean", 5, "Malicious"), "verified_rate"] < 0.5 < sw.at[("clean", 60, "Malicious"), "verified_rate"]
    assert sw.at[("clean", 5, "Malicious"), "draws_x_models"] == 80  # 40 draws x 2 models
    assert sw.at[("clean", 60, "Ind-M"), "draws_x_models"] == 2  # all 60 queries: one draw per model
    assert (sw.xs("Ind-M", level="scenario")["verified_rate"] == 0).all()
    with pytest.raises(ValueError, match="exceeds"):
        m_sweep(pd.DataFrame(rows), ms=(100,))
    with pytest.raises(ValueError, match="m must be an integer"):
        m_sweep(pd.DataFrame(rows), ms=(1,))
    longer = [{**r, "p_b": np.concatenate([r["p_b"], r["p_b"][:5]])} for r in rows]  # 65 benign answers, 60 marked
    with pytest.raises(ValueError, match=r"model_seed 0: p_b has 65 queries and p_w 60; they must be paired"):
        m_sweep(pd.DataFrame(longer), ms=(10,))


def test_m_sweep_draws_each_subset_of_distinct_queries(monkeypatch):
    """Each draw is m distinct queries of the model (without replacement), as a suspect is queried with m images."""
    import numpy as np
    import pandas as pd

    from dovlib import verify

    real, calls = np.random.default_rng, []

    class Recording:
        def __init__(self, seed):
            self.rng = real(seed)

        def __getattr__(self, name):  # every other draw as numpy's
            return getattr(self.rng, name)

        def choice(self, n, m, replace=True):
            out = self.rng.choice(n, m, replace=replace)
            calls.append((n, m, replace, len(set(out.tolist()))))
            return out

    monkeypatch.setattr(verify.np.random, "default_rng", Recording)
    rows = [{"scenario": sc, "model_seed": s, "p_b": pb, "p_w": pw}
            for sc, s, pb, pw in _synthetic_queries({"Malicious": 0.4}, n=12, sd=0.25, seed=1)]
    verify.m_sweep(pd.DataFrame(rows), ms=(4, 11), draws=5)
    assert len(calls) == 2 * 2 * 5  # 2 models x 2 values of m x 5 draws
    assert all(n == 12 and not replace and distinct == m for n, m, replace, distinct in calls)


def test_query_probs_and_per_class_accuracy_on_a_known_backdoor():
    from dovlib.verify import per_class_accuracy, query_probs

    y = torch.arange(20) % 5
    x = torch.zeros(20, 3, 8, 8, dtype=torch.uint8)
    x[:, 0, 1, 0] = y.to(torch.uint8)
    x[y == 2, 0, 1, 0] = 0  # class 2 is always read as class 0
    model = _CornerModel(target=3)
    pb, pw = query_probs(model, x, _corner_trigger, target=3)
    one = torch.softmax(torch.tensor([10.0, 0, 0, 0, 0]), 0)[0].item()  # the softmax of a logit-10 one-hot
    assert pb.shape == pw.shape == (20,)
    assert torch.allclose(pw, torch.full((20,), one))  # the trigger moves every query to the target
    assert torch.allclose(pb[y == 3], torch.full((4,), one)) and (pb[y != 3] < 0.01).all()
    acc = per_class_accuracy(model, x, y)
    assert acc == [1.0, 1.0, 0.0, 1.0, 1.0]
    acc7 = per_class_accuracy(model, x, y, num_classes=7)  # classes without test images are NaN, not 0
    assert acc7[:5] == acc and all(np.isnan(a) for a in acc7[5:])


def test_sweeps_take_probability_lists_and_name_missing_columns():
    """p_b / p_w as lists or tensors (a JSON round trip) count like arrays; they used to be skipped, giving a
    KeyError in tau_sweep and a false 'every m exceeds the queries' in m_sweep."""
    import pandas as pd

    from dovlib.verify import m_sweep, tau_sweep

    rows = [{"scenario": sc, "model_seed": s, "p_b": pb, "p_w": pw}
            for sc, s, pb, pw in _synthetic_queries({"Malicious": 0.7, "Ind-M": 0.0}, n=40, sd=0.05, seed=0)]
    arrays = pd.DataFrame(rows)
    lists = pd.DataFrame([{**r, "p_b": r["p_b"].tolist(), "p_w": torch.as_tensor(r["p_w"])} for r in rows])
    pd.testing.assert_frame_equal(tau_sweep(lists, taus=(0.25,)), tau_sweep(arrays, taus=(0.25,)))
    pd.testing.assert_frame_equal(m_sweep(lists, ms=(10, 40)), m_sweep(arrays, ms=(10, 40)))
    bare = arrays.drop(columns=["p_b"])
    for fn in (tau_sweep, m_sweep):
        with pytest.raises(ValueError, match=rf"{fn.__name__} needs a p_w column and p_b \(or p_decoy\)"):
            fn(bare)


def test_bad_target_max_pairs_and_an_all_target_test_set_are_named():
    with pytest.raises(TypeError, match="target must be an integer >= 0; got 'x'"):
        label_verify(torch.ones(10), "x")
    with pytest.raises(ValueError, match="no image outside the target class 1"):
        verification_set(torch.zeros(5, 1, 4, 4), torch.ones(5, dtype=torch.long), target=1, m=2)
    x = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"max_pairs must be an integer >= 1; got -1"):
        evaluate_watermark(_CornerModel(target=3), _corner_trigger, x, torch.zeros(4, dtype=torch.long), 3,
                           max_pairs=-1)


class _Flat(nn.Module):
    """The same logits for every image."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.zeros(len(x), 3) + self.w


def _white_pixel(x):
    x = x.clone()
    x[:, :, 0, 0] = 255
    return x


def test_evaluate_watermark_measures_quality_on_the_marked_images_given():
    """Table I's PSNR / L-inf / perceptual columns describe the published poisons (``x_clean`` -> ``x_marked``), not
    ``trigger(x_test)``: Sleeper Agent's poisons do not even hold its trigger."""
    x, y = torch.zeros(6, 3, 8, 8, dtype=torch.uint8), torch.arange(6) % 3
    clean = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    out = evaluate_watermark(_Flat(), _white_pixel, x, y, 1, x_clean=clean, x_marked=clean + 16, perceptual="mse")
    assert out["linf"] == pytest.approx(16 / 255)
    assert out["PSNR"] == pytest.approx(20 * np.log10(255 / 16))  # 24.05 dB; the trigger's one white pixel: 18.06
    assert out["perceptual_mse"] == pytest.approx((16 / 255) ** 2)
    for name, alone in (("x_clean", {"x_clean": clean}), ("x_marked", {"x_marked": clean + 16})):
        with pytest.raises(ValueError, match=rf"x_clean and x_marked go together .*got only {name}$"):
            evaluate_watermark(_Flat(), _white_pixel, x, y, 1, perceptual="mse", **alone)  # was: test images


def _control_row(scenario, seed, pb, pw, p_decoy):
    return {"scenario": scenario, "model_seed": seed, "p_b": pb, "p_w": pw, "p_decoy": p_decoy}


def test_tau_sweep_forwards_alpha_keeps_baselines_apart_and_reports_the_largest_p():
    import pandas as pd

    from dovlib.verify import tau_sweep

    pb, pw = np.zeros(20), 0.25 + np.tile([0.3, -0.1], 10)  # mean lift 0.35: p about 0.02 at tau 0.25
    p = ttest_verify(pb, pw).p_value
    assert 0.01 < p < 0.05
    strong = np.linspace(0.6, 0.7, 20)
    df = pd.DataFrame([_control_row("M", 0, np.zeros(20), strong, strong - 0.05), _control_row("M", 1, pb, pw, pb)])
    sw = tau_sweep(df, taus=(0.25,), alpha=0.05).set_index(["baseline", "tau", "scenario"])
    assert sw.at[("clean", 0.25, "M"), "verified_rate"] == 1.0  # both claimed at alpha 0.05 (not at the default)
    assert sw.at[("decoy", 0.25, "M"), "verified_rate"] == 0.5  # model 0's decoy lift of 0.05 is no claim
    assert sw.at[("clean", 0.25, "M"), "p_value_max"] == pytest.approx(p)
    default = tau_sweep(df, taus=(0.25,)).set_index(["baseline", "tau", "scenario"])
    assert default.at[("clean", 0.25, "M"), "verified_rate"] == 0.5


def test_m_sweep_keeps_queries_paired_and_forwards_tau():
    import pandas as pd

    from dovlib.verify import m_sweep

    pb = np.linspace(0, 0.5, 40)
    df = pd.DataFrame([{"scenario": "M", "model_seed": 0, "p_b": pb, "p_w": pb + 0.5}])  # every pair lifts 0.5
    # paired: a constant lift above tau, p = (1.25 / 1.5)**30 = 0.0042 (unpaired: +-0.5); 20 pairs give 0.026
    sw = m_sweep(df, ms=(20, 30), draws=10).set_index(["baseline", "m", "scenario"])
    assert sw.at[("clean", 30, "M"), "verified_rate"] == 1.0 and sw.at[("clean", 20, "M"), "verified_rate"] == 0.0
    sw = m_sweep(df, ms=(30,), draws=10, tau=0.55).set_index(["baseline", "m", "scenario"])
    assert sw.at[("clean", 30, "M"), "verified_rate"] == 0.0  # 0.5 is under tau 0.55


def test_summarize_controls_averages_each_scenario():
    import pandas as pd

    from dovlib.verify import summarize_controls

    rows = [{"scenario": "M", "model_seed": s, "delta_p": 0.5, "p_value": 1e-3, "verified": True, "WSR": w, "BA": b,
             "label_verified": lv} for s, (w, b, lv) in enumerate([(0.2, 0.5, True), (0.6, 0.7, False)])]
    t = summarize_controls(pd.DataFrame(rows)).set_index("scenario")
    assert (t.at["M", "WSR"], t.at["M", "BA"], t.at["M", "label_verified_rate"]) == pytest.approx((0.4, 0.6, 0.5))


def test_min_claim_queries_is_the_first_count_below_alpha_and_check_claim_queries_names_it():
    from dovlib.verify import check_claim_queries, claim_floor, min_claim_queries

    assert min_claim_queries(0.25, 0.01) == 10 and min_claim_queries(0.0, 0.01) == 7
    for tau, alpha in [(0.25, 0.01), (0.1, 0.05), (0.0, 0.001), (0.5, 0.2), (0.99, 0.01)]:
        n = min_claim_queries(tau, alpha)
        assert claim_floor(n, tau) < alpha and (n == 2 or claim_floor(n - 1, tau) >= alpha)
    assert min_claim_queries(0.0, 0.9) == 2  # a t-test needs 2 pairs even where the floor allows 1
    assert check_claim_queries(10) == 10
    with pytest.raises(ValueError, match=r"m: 9 queries can never claim ownership at tau 0.25 and alpha 0.01.*"
                                         r"at least 10 queries"):
        check_claim_queries(9, 0.25, 0.01)


def test_check_claim_queries_with_the_bounded_test_needs_the_betting_tests_count():
    """An owner's check decided by the betting test can never pass with the t-test's minimum (10 at tau 0.25 and
    alpha 0.01, where bounded_verify needs 11): refused, naming the count it needs; the t-test's check takes 10."""
    from dovlib.verify import bounded_verify, check_claim_queries, min_bounded_claim_queries

    need = min_bounded_claim_queries(0.25, 0.01)
    assert need == 11 and check_claim_queries(10, test="ttest") == 10 and check_claim_queries(11, test="bounded") == 11
    assert not bounded_verify(np.zeros(10), np.ones(10)).verified  # why 10 is refused: saturated, still no claim
    with pytest.raises(ValueError, match=r"owner's check: the betting test \(bounded_verify\) can never claim from 10 "
                                         r"queries at tau 0.25 and alpha 0.01.*at least 11 queries"):
        check_claim_queries(10, 0.25, 0.01, "owner's check", test="bounded")
    with pytest.raises(ValueError, match="at least 10 queries"):  # below every test's floor: the general message
        check_claim_queries(9, test="bounded")
    for tau, alpha in [(0.0, 0.05), (0.5, 0.001)]:
        need = min_bounded_claim_queries(tau, alpha)
        assert check_claim_queries(need, tau, alpha, test="bounded") == need
        with pytest.raises(ValueError, match=f"at least {need} queries"):
            check_claim_queries(need - 1, tau, alpha, test="bounded")
    with pytest.raises(ValueError, match="test must be one of 'ttest', 'bounded'; got 'both'"):
        check_claim_queries(20, test="both")


def test_the_few_pair_floor_only_raises_p_values_below_it():
    """Below the pairs any valid test needs, a p-value under the floor is raised to it; one already above it (no
    effect) is the t-test's own, with no note. At an alpha equal to the floor no claim is made (p < alpha, strict)."""
    from dovlib.verify import claim_floor

    pb, pw = np.zeros(3), np.array([0.1, 0.3, 0.5])  # mean 0.3, spread 0.2: p = 0.36 > 0.625**3 = 0.244
    want = ttest_rel(pw, pb + 0.25, alternative="greater").pvalue
    assert want > claim_floor(3)
    r = ttest_verify(pb, pw)
    assert not r.verified and r.note == "" and r.p_value == pytest.approx(want)
    # tau = 0: the floor of 7 pairs is 0.5**7 exactly; at alpha = 0.5**7 the t-test's tiny p must not claim
    edge = ttest_verify(np.zeros(7), np.linspace(0.6, 0.61, 7), tau=0.0, alpha=0.5 ** 7)
    assert not edge.verified and edge.p_value == 0.5 ** 7 and "floor of a bounded mean" in edge.note
    assert claim_floor(0) == 1.0  # no pairs: certain under the null (n >= 0 is allowed)
    with pytest.raises(ValueError, match="tau"):
        claim_floor(3, 1.0)  # tau in [0, 1): a margin of 1 leaves no difference above it


def test_intersection_union_fails_closed_on_a_nan_p_value_that_claims():
    """A record that says it claimed but holds a NaN p-value (a corrupted or hand-made record) is not claimed by the
    intersection-union test: the NaN decides, not the verified flag."""
    from dovlib.verify import VerifyResult, intersection_union

    a = VerifyResult(0.6, 1e-9, True, 100, 0.25, 0.01, "paired t-test")
    bad = VerifyResult(0.6, float("nan"), True, 100, 0.25, 0.01, "paired t-test")
    for order in ([a, bad], [bad, a], [bad]):
        r = intersection_union(order)
        assert not r.verified and math.isnan(r.p_value)


def test_intersection_union_does_not_claim_with_a_nan_delta_p():
    """The docstring's promise: a NaN delta_p in any test blocks the claim, as a NaN p-value does (a mutation pass
    found a claim with delta_p NaN and every p below alpha)."""
    from dovlib.verify import VerifyResult, intersection_union

    a = VerifyResult(0.6, 1e-9, True, 100, 0.25, 0.01, "paired t-test")
    b = VerifyResult(float("nan"), 1e-9, True, 100, 0.25, 0.01, "paired t-test")
    for order in ([a, b], [b, a]):
        r = intersection_union(order)
        assert not r.verified and math.isnan(r.delta_p) and r.p_value == 1e-9


def _skewed_null(rng, m):
    """The module docstring's skewed null at the boundary: 5% of the differences at -0.7, the rest at +0.3 with
    N(0, 0.02) noise (mean tau = 0.25)."""
    neg = rng.random(m) < 0.05
    pb = np.where(neg, 0.85, 0.35)
    return pb, pb + np.where(neg, -0.7, 0.3) + rng.normal(0, 0.02, m)


def test_bounded_test_holds_alpha_at_the_skewed_null_where_the_t_test_does_not():
    """Seeded draws of the skewed null: the betting test claims at most alpha plus three Monte-Carlo standard errors
    (measured: 0 of 4,000 at m = 20 and at m = 100), the t-test 0.37 at m = 20 and 0.043 at m = 100."""
    from dovlib.verify import bounded_verify

    alpha, draws = 0.01, 1000
    mc = 3 * math.sqrt(alpha * (1 - alpha) / draws)
    for m, t_low in ((20, 0.25), (100, 2 * alpha)):
        rng = np.random.default_rng(m)
        bounded = ttest = 0
        for _ in range(draws):
            pb, pw = _skewed_null(rng, m)
            bounded += bounded_verify(pb, pw, 0.25, alpha).verified
            ttest += ttest_verify(pb, pw, 0.25, alpha).verified
        assert bounded / draws <= alpha + mc, (m, bounded)
        assert ttest / draws > t_low, (m, ttest)  # the contrast: the t-test's level does not hold here


def test_bounded_test_claims_a_watermarked_model_and_never_a_clean_one():
    from dovlib.verify import bounded_verify

    rng = np.random.default_rng(1)
    for _ in range(20):
        pb = rng.uniform(0, 0.2, 100)
        marked = bounded_verify(pb, np.clip(pb + np.clip(rng.normal(0.7, 0.2, 100), -1, 1), 0, 1))
        assert marked.verified and marked.p_value < 1e-8 and marked.test == "betting test (bounded mean)"
        clean = bounded_verify(pb, np.clip(pb + rng.normal(0, 0.05, 100), 0, 1))
        assert not clean.verified and clean.p_value == 1.0  # the wealth only shrinks: p = min(1, 1 / wealth)
        assert clean.delta_p == pytest.approx(0.0, abs=0.03)


def test_bounded_test_never_claims_below_the_floor_and_a_saturated_model_claims_soon_after():
    """Each bet's factor is below 2 / (1 + tau), so p exceeds claim_floor(n, tau) at every n: no claim from fewer
    than min_claim_queries pairs, at any tau and alpha. A saturated model (D = 1) claims from 11 pairs at tau 0.25,
    alpha 0.01 (the floor: 10), and from 8 at tau 0 (7)."""
    from dovlib.verify import bounded_verify, claim_floor, min_claim_queries

    for n in range(1, 40):
        assert bounded_verify(np.zeros(n), np.ones(n)).p_value > claim_floor(n)
    for tau, alpha, first in ((0.25, 0.01, 11), (0.0, 0.01, 8), (0.5, 0.05, None), (0.1, 0.001, None)):
        got = next(n for n in range(1, 200) if bounded_verify(np.zeros(n), np.ones(n), tau, alpha).verified)
        need = min_claim_queries(tau, alpha)
        assert need <= got <= need + 3, (tau, alpha, got)  # a modest m, close to what any valid test needs
        assert first is None or got == first
    assert not bounded_verify([], []).verified and bounded_verify([], []).p_value == 1.0
    assert not bounded_verify([0.0], [1.0], alpha=0.5).verified  # one pair: p = 1 / 1.54


def test_bounded_p_value_is_in_unit_interval_falls_with_stronger_evidence_and_ignores_order():
    from dovlib.verify import _log_wealth, bounded_verify

    rng = np.random.default_rng(3)
    pb, noise = rng.uniform(0, 0.1, 100), rng.normal(0, 0.15, 100)
    ps = [bounded_verify(pb, np.clip(pb + s + noise, 0, 1)).p_value for s in (0.0, 0.25, 0.35, 0.45, 0.6, 0.8)]
    assert all(0 <= p <= 1 for p in ps) and ps[0] == 1.0 and ps[1] > 0.1  # below or about at tau: no claim
    assert all(a > b for a, b in zip(ps[1:], ps[2:])), ps  # a larger shift, a smaller p
    pw = np.clip(pb + 0.45 + noise, 0, 1)
    by_n = [bounded_verify(pb[:n], pw[:n]).p_value for n in (20, 40, 70, 100)]
    assert all(a > b for a, b in zip(by_n, by_n[1:])), by_n  # more queries of the same model, a smaller p
    # the differences are sorted before the random orders are drawn: the order given (sorted, reversed) is ignored
    order = np.argsort(pw - pb)
    p_sorted = bounded_verify(pb[order], pw[order]).p_value
    p_reversed = bounded_verify(pb[order[::-1]], pw[order[::-1]]).p_value
    assert p_sorted == p_reversed == ps[3]
    one = [bounded_verify(pb[o], pw[o], permutations=1).p_value for o in (order, order[::-1])]
    assert one[0] == one[1]  # even with a single random order
    wealth = _log_wealth(np.stack([(pw - pb)[order], (pw - pb)[order[::-1]]]), 0.25)
    assert abs(wealth[0] - wealth[1]) > 0.01  # while the wealth of a fixed order does depend on it
    assert bounded_verify(pb, pw).p_value == bounded_verify(pb, pw).p_value  # seeded: the same p each call
    assert bounded_verify(pb, pw, seed=1).p_value != ps[3]  # the seed moves p by the Monte-Carlo error only
    assert bounded_verify(pb, pw, seed=1).p_value == pytest.approx(ps[3], rel=0.1)


def test_bounded_test_refuses_bad_input_as_the_t_test_does():
    from dovlib.verify import bounded_verify

    bad = [(([0.1, 0.2], [0.3]), {}, "paired"),
           ((np.zeros((3, 4)), np.ones((4, 3))), {}, r"same shape\); got \(3, 4\) and \(4, 3\)"),
           ((np.full((100, 10), 0.1), np.full((100, 10), 0.1)), {}, r"one probability per query"),
           (([0.1, 0.2], [0.3, 0.4]), {"tau": 1.5}, "tau"), (([0.1, 0.2], [0.3, 0.4]), {"alpha": 0}, "alpha"),
           (([0.1, np.nan], [0.3, 0.4]), {}, "finite"), ((["a", "b"], [0.1, 0.2]), {}, "p_benign must be numbers"),
           (([5.0, -3.0, 2.0], [0.3, 0.4, 0.5]), {}, r"probabilities in \[0, 1\] \(softmax outputs, not logits\)")]
    for args, kw, match in bad:
        for fn in (ttest_verify, bounded_verify):  # one set of checks, shared
            with pytest.raises(ValueError, match=match):
                fn(*args, **kw)
    with pytest.raises(ValueError, match="permutations must be"):
        bounded_verify([0.1, 0.2], [0.3, 0.4], permutations=0)
    with pytest.raises(ValueError, match="seed must be"):
        bounded_verify([0.1, 0.2], [0.3, 0.4], seed=-1)
    import pandas as pd

    column = bounded_verify(np.full((20, 1), 0.1), torch.linspace(0.8, 0.9, 20)[:, None])  # (n, 1): one per query
    series = bounded_verify(pd.Series(np.full(20, 0.1)), torch.linspace(0.8, 0.9, 20, requires_grad=True))
    assert column.n == series.n == 20 and column.verified and series.p_value == column.p_value


def test_verify_model_runs_the_named_test():
    y = torch.arange(60) % 5
    x = torch.zeros(60, 3, 8, 8, dtype=torch.uint8)
    x[:, 0, 1, 0] = y.to(torch.uint8)
    model, idx = _CornerModel(target=3), verification_set(x, y, 3, 20)
    r = verify_model(model, x[idx], _corner_trigger, 3, test="bounded")
    assert r.test == "betting test (bounded mean)" and r.verified and r.n == 20
    assert verify_model(model, x[idx], lambda z: z, 3, test="bounded").p_value == 1.0  # no trigger, no claim
    assert verify_model(model, x[idx], _corner_trigger, 3).test == "paired t-test"  # the default: the paper's
    with pytest.raises(ValueError, match=r"test must be one of 'ttest', 'bounded'; got 't-test'"):
        verify_model(model, x[idx], _corner_trigger, 3, test="t-test")
    with pytest.raises(ValueError, match="labels_only uses label_verify"):
        verify_model(model, x[idx], _corner_trigger, 3, labels_only=True, test="bounded")


def test_add_bounded_puts_the_betting_test_beside_the_t_test_in_table_ii():
    import pandas as pd

    from dovlib.verify import add_bounded, bounded_verify, summarize_controls

    rows = []
    for scenario, s, pb, pw in _synthetic_queries({"Malicious": 0.7, "Ind-M": 0.0}, n=50, sd=0.05, seed=0):
        v = ttest_verify(pb, pw)
        rows.append({"scenario": scenario, "model_seed": s, "delta_p": v.delta_p, "p_value": v.p_value,
                     "verified": v.verified, "WSR": 0.0, "BA": 0.5, "label_verified": False, "p_b": list(pb),
                     "p_w": list(pw)})
    df = pd.DataFrame(rows)
    out = add_bounded(df, tau=0.25, alpha=0.01)
    assert "bounded_p_value" not in df  # a copy: the rows given are left as they were
    for r in out.itertuples():
        assert r.bounded_p_value == bounded_verify(r.p_b, r.p_w, 0.25, 0.01).p_value
    t2 = summarize_controls(out).set_index("scenario")
    assert t2.at["Malicious", "bounded_verified_rate"] == 1.0 and t2.at["Ind-M", "bounded_verified_rate"] == 0.0
    assert t2.at["Ind-M", "bounded_p_value_max"] == 1.0 and t2.at["Malicious", "bounded_p_value_max"] < 1e-6
    assert summarize_controls(df).columns.tolist() == [c for c in t2.reset_index().columns
                                                      if not c.startswith("bounded_")]  # the paper's columns kept
    strict = add_bounded(df, tau=0.9).set_index("scenario")  # tau and alpha are the caller's: a margin above 0.7
    assert not strict["bounded_verified"].any()
    with pytest.raises(ValueError, match="add_bounded needs the p_b and p_w columns"):
        add_bounded(df.drop(columns=["p_b"]))
    with pytest.raises(ValueError, match="tau"):
        add_bounded(df, tau=1.0)


def test_bounded_p_depends_on_the_set_of_differences_not_their_order():
    """18 differences at -1 and 82 at +1 (m 100): the random orders were drawn over the pairs as given, so the order
    given moved p (measured: 0.0068 as given, 0.0131 reversed, on either side of alpha 0.01; 0.0066-0.018 over 100
    seeds at 100 orders, 21% relative sd). The differences are sorted before the orders are drawn: any order of the
    same pairs gives the same p for a seed, and 1,000 orders by default keep the spread over seeds near what ``note``
    reports (the Monte-Carlo relative standard error of the average wealth)."""
    import re

    from dovlib.verify import bounded_verify

    d = np.r_[np.full(18, -1.0), np.full(82, 1.0)]
    pb = np.maximum(0.0, -d)
    pw = pb + d
    given = bounded_verify(pb, pw)
    assert bounded_verify(pb[::-1], pw[::-1]).p_value == given.p_value  # exactly, not approximately
    rng = np.random.default_rng(0)
    for _ in range(5):
        o = rng.permutation(100)
        assert bounded_verify(pb[o], pw[o]).p_value == given.p_value
    rse = float(re.search(r"Monte-Carlo relative standard error ([0-9.]+)%", given.note).group(1)) / 100
    ps = np.array([bounded_verify(pb, pw, seed=s).p_value for s in range(40)])
    spread = ps.std() / ps.mean()
    assert spread < 0.12 and rse < 0.12, (spread, rse)  # at 100 orders: 0.21
    assert rse / 2 < spread < 2 * rse, (spread, rse)  # the note's error is the spread over seeds


def test_bounded_p_value_never_underflows_to_zero():
    """A saturated model at n = 10,000: the average wealth is about 1.6**10,000, whose inverse underflowed to
    p = 0.0 (a table would show 0, and p > claim_floor no longer said anything). Reported as 1e-300, as
    label_verify does, with the note saying so."""
    from dovlib.verify import bounded_verify, claim_floor

    for n in (2000, 10000):
        r = bounded_verify(np.zeros(n), np.ones(n))
        assert r.verified and r.p_value == 1e-300 and "p below 1e-300" in r.note, r
        assert r.p_value > claim_floor(n)
    half = bounded_verify(np.zeros(10000), np.r_[np.ones(5000), np.zeros(5000)])
    assert half.p_value == 1e-300 and "p below 1e-300" in half.note and "Monte-Carlo" in half.note
    above = bounded_verify(np.zeros(1000), np.r_[np.ones(500), np.zeros(500)])  # p 3.5e-51: reported as it is
    assert 1e-300 < above.p_value < 1e-40 and "1e-300" not in above.note
    tiny = bounded_verify(np.zeros(10000), np.ones(10000), alpha=1e-310)  # the claim is decided on the exact p
    assert tiny.verified and tiny.p_value == 1e-300


def test_add_bounded_tests_the_decoy_baseline_too_when_the_rows_have_it():
    """run_controls' decoy-controlled test (P_b replaced by the answer to the owner's decoy marks) had only the
    t-test's verdict; add_bounded now puts bounded_verify(p_decoy, p_w) beside it (``bounded_decoy_*``) and
    summarize_controls reports it per scenario."""
    import pandas as pd

    from dovlib.verify import add_bounded, bounded_verify, summarize_controls

    rows, rng = [], np.random.default_rng(4)
    for scenario, s, pb, pw in _synthetic_queries({"Malicious": 0.7, "Ind-W": 0.6}, n=50, sd=0.05, seed=2):
        # Ind-W answers any mark: the decoy's as strongly as ours, so only the decoy baseline refuses to claim it
        pd_ = np.clip(pw - (0.6 if scenario == "Malicious" else 0.0) + rng.normal(0, 0.05, 50), 0, 1)
        v, dv = ttest_verify(pb, pw), ttest_verify(pd_, pw)
        rows.append({"scenario": scenario, "model_seed": s, "delta_p": v.delta_p, "p_value": v.p_value,
                     "verified": v.verified, "WSR": 0.0, "BA": 0.5, "label_verified": False, "p_b": pb, "p_w": pw,
                     "decoy_delta_p": dv.delta_p, "decoy_p_value": dv.p_value, "decoy_verified": dv.verified,
                     "p_decoy": pd_})
    df = pd.DataFrame(rows)
    out = add_bounded(df)
    for r in out.itertuples():
        assert r.bounded_decoy_p_value == bounded_verify(r.p_decoy, r.p_w).p_value
    t2 = summarize_controls(out).set_index("scenario")
    assert t2.at["Malicious", "bounded_decoy_verified_rate"] == 1.0 and t2.at["Ind-W", "bounded_verified_rate"] == 1
    assert t2.at["Ind-W", "bounded_decoy_verified_rate"] == 0.0 and t2.at["Ind-W", "bounded_decoy_p_value_max"] == 1
    assert "bounded_decoy_p_value" not in add_bounded(df.drop(columns=["p_decoy"]))  # no decoy test: no column


def test_min_bounded_claim_queries_is_where_a_saturated_model_first_claims():
    # notebook 03 accepted m = 10, where the bounded columns can never claim (a saturated model needs 11)
    from dovlib.verify import bounded_verify, min_bounded_claim_queries, min_claim_queries

    for tau, alpha, expect in ((0.25, 0.01, 11), (0.0, 0.01, 8), (0.25, 0.05, 7)):
        n = min_bounded_claim_queries(tau, alpha)
        assert n == expect and n >= min_claim_queries(tau, alpha)
        assert bounded_verify(np.zeros(n), np.ones(n), tau, alpha).verified
        assert not bounded_verify(np.zeros(n - 1), np.ones(n - 1), tau, alpha).verified
    with pytest.raises(ValueError, match="alpha"):
        min_bounded_claim_queries(0.25, 0)


def test_sweeps_report_the_bounded_test_beside_the_t_test():
    """tau_sweep and m_sweep used only the t-test, whose level fails at skewed nulls; test="bounded" / "both" adds
    bounded_verify's rates (bounded_* columns) and the default keeps the t-test's table as it was."""
    import pandas as pd

    from dovlib.verify import add_bounded, m_sweep, min_bounded_claim_queries, min_claim_queries, tau_sweep

    rng = np.random.default_rng(3)
    skewed = pd.DataFrame([{"scenario": "Ind-M", "model_seed": s, "p_b": pb, "p_w": pw}
                           for s, (pb, pw) in enumerate(_skewed_null(rng, 60) for _ in range(4))])
    ms = m_sweep(skewed, ms=(20, 40, 60), draws=25, test="both").set_index("m")
    assert (ms["bounded_verified_rate"] <= ms["verified_rate"]).all()
    assert ms.at[20, "verified_rate"] > 0.1 and ms.at[20, "bounded_verified_rate"] == 0  # the t-test's false claims
    ts = tau_sweep(skewed, taus=(0.2, 0.25, 0.3), test="both").set_index("tau")
    assert (ts["bounded_verified_rate"] <= ts["verified_rate"]).all()
    assert (ts.loc[[0.25, 0.3], "bounded_p_value_max"] == 1).all()  # at and above the null's mean: no evidence
    # the t-test's columns do not move with test="both": the same subsets, drawn from the same seed
    plain = m_sweep(skewed, ms=(20, 40, 60), draws=25)
    assert list(plain.columns) == ["baseline", "m", "scenario", "verified_rate", "draws_x_models"]
    pd.testing.assert_frame_equal(plain, ms.reset_index()[list(plain.columns)])
    assert list(tau_sweep(skewed, taus=(0.25,)).columns) == ["baseline", "tau", "scenario", "verified_rate",
                                                             "p_value_max"]
    only = m_sweep(skewed, ms=(20,), draws=5, test="bounded")
    assert list(only.columns) == ["baseline", "m", "scenario", "bounded_verified_rate", "draws_x_models"]
    assert list(tau_sweep(skewed, taus=(0.25,), test="bounded").columns) == [
        "baseline", "tau", "scenario", "bounded_verified_rate", "bounded_p_value_max"]

    need = min_bounded_claim_queries()  # 11 at tau 0.25, alpha 0.01; the t-test's floor 10
    sat = pd.DataFrame([{"scenario": "Malicious", "model_seed": 0, "p_b": np.zeros(40), "p_w": np.ones(40)}])
    ms = m_sweep(sat, ms=(min_claim_queries(), need, need + 5, 40), draws=5, test="both").set_index("m")
    assert ms.at[min_claim_queries(), "bounded_verified_rate"] == 0 and ms.at[min_claim_queries(), "verified_rate"] == 1
    assert (ms.loc[[need, need + 5, 40], "bounded_verified_rate"] == 1).all()

    # at the run's tau and alpha the tau sweep's bounded verdicts are add_bounded's (Table II's bounded_* columns)
    marked = pd.DataFrame([{"scenario": sc, "model_seed": s, "p_b": pb, "p_w": pw} for sc, s, pb, pw in
                           _synthetic_queries({"Malicious": 0.45, "Ind-M": 0.0}, n=30, sd=0.2, seed=2)])
    ts = tau_sweep(marked, taus=(0.25,), test="both").set_index("scenario")
    table = add_bounded(marked).groupby("scenario")
    assert ts["bounded_p_value_max"].to_dict() == table["bounded_p_value"].max().to_dict()
    assert ts["bounded_verified_rate"].to_dict() == table["bounded_verified"].mean().to_dict()

    for fn in (tau_sweep, m_sweep):
        with pytest.raises(ValueError, match=r"test must be one of 'ttest', 'bounded', 'both'; got 't-test'"):
            fn(marked, test="t-test")
        with pytest.raises(ValueError, match="permutations must be an integer"):
            fn(marked, test="bounded", permutations=0)
