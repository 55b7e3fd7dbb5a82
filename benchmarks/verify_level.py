"""False-claim and claim rates of ``dovlib.verify.bounded_verify`` (betting test) and ``ttest_verify`` (the paper's
t-test) on synthetic differences D = P_w - P_b, the same seeded draws for both, at tau 0.25 and alpha 0.01: nulls
with mean exactly tau (skewed, two-point, normal), watermarked models (D ~ clip(N(mu, 0.2)), mu 0.7, 0.45, 0.35),
and m differences drawn without replacement from finite pools (of more than m) with mean exactly tau (bounded test
only): a null about the pool's own mean, which bounded_verify's guarantee does not cover (a random subset of an
iid test set is itself iid, so a null about the mean over the data distribution is covered). Prints one line per
case: claims, draws, the rate and its exact 95% upper bound (Clopper-Pearson). The numbers quoted in
dovlib/verify.py, notebook 03 and the README (about 2 minutes on one CPU core):

    python benchmarks/verify_level.py                       # 4,000 draws per null, 1,000 per model, 2,000 per pool
"""

import argparse

import numpy as np
from scipy.stats import beta

from dovlib.verify import bounded_verify, ttest_verify

TAU, ALPHA = 0.25, 0.01

NULLS = {  # mean exactly tau
    "skewed: 5% at -0.7, 95% at 0.3 + N(0, 0.02)": lambda r, m: np.clip(
        np.where(r.random(m) < 0.05, -0.7, 0.3) + r.normal(0, 0.02, m), -1, 1),
    "two-point: 37.5% at -1, 62.5% at +1": lambda r, m: np.where(r.random(m) < 0.375, -1.0, 1.0),
    "N(0.25, 0.1)": lambda r, m: r.normal(0.25, 0.1, m),
}
MODELS = {"clip N(0.7, 0.2)": lambda r, m: np.clip(r.normal(0.7, 0.2, m), -1, 1),
          "clip N(0.45, 0.2)": lambda r, m: np.clip(r.normal(0.45, 0.2, m), -1, 1),
          "clip N(0.35, 0.2)": lambda r, m: np.clip(r.normal(0.35, 0.2, m), -1, 1)}


def pair(d: np.ndarray):
    """(P_b, P_w) in [0, 1] with P_w - P_b = d: P_b = max(0, -d)."""
    pb = np.maximum(0.0, -d)
    return pb, pb + d


def upper95(k: int, n: int) -> float:
    return 1.0 if k == n else float(beta.ppf(0.95, k + 1, n - k))


def line(name: str, m: int, counts: dict, draws: int) -> str:
    cells = [f"{test} {k}/{draws} = {k / draws:.4f} (95% upper {upper95(k, draws):.4f})" for test, k in counts.items()]
    return f"{name:46s} m {m:3d}: " + "; ".join(cells)


def rates(gen, m: int, draws: int, rng, ttest: bool = True) -> dict:
    counts = {"bounded": 0, "t-test": 0} if ttest else {"bounded": 0}
    for _ in range(draws):
        pb, pw = pair(gen(rng, m))
        counts["bounded"] += bounded_verify(pb, pw, TAU, ALPHA).verified
        if ttest:
            counts["t-test"] += ttest_verify(pb, pw, TAU, ALPHA).verified
    return counts


def pool(kind: str, size: int) -> np.ndarray:
    """A finite pool of differences with mean exactly tau: a share of ``low`` values (rounded up, and raised to
    keep the mean at tau), the rest at ``high``."""
    low, high, share = (-0.7, 0.3, 0.05) if kind == "skewed" else (-1.0, 1.0, 0.375)
    k = int(np.ceil(share * size))
    low = (size * TAU - (size - k) * high) / k  # at least the nominal low: k is rounded up
    return np.r_[np.full(k, low), np.full(size - k, high)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=4000, help="draws per null and m")
    ap.add_argument("--model-draws", type=int, default=1000, help="draws per watermarked model and m")
    ap.add_argument("--pool-draws", type=int, default=2000, help="draws per finite pool")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if min(args.draws, args.model_draws, args.pool_draws) < 1 or args.seed < 0:
        ap.error(f"--draws, --model-draws and --pool-draws must be >= 1 and --seed >= 0; got {args.draws}, "
                 f"{args.model_draws}, {args.pool_draws} and {args.seed}")
    rng = np.random.default_rng(args.seed)
    print(f"claims at tau {TAU}, alpha {ALPHA}")
    for name, gen in NULLS.items():
        for m in (20, 100):
            print(line(f"null {name}", m, rates(gen, m, args.draws, rng), args.draws))
    for name, gen in MODELS.items():
        for m in (20, 40, 100):
            print(line(f"model {name}", m, rates(gen, m, args.model_draws, rng), args.model_draws))
    for kind in ("skewed", "two-point"):
        for size, m in ((270, 40), (200, 100)):  # 270 and 40: the smoke profile's pool and m (no census: m < size)
            d = pool(kind, size)
            counts = rates(lambda r, m_: r.permutation(d)[:m_], m, args.pool_draws, rng, ttest=False)
            print(line(f"null without replacement, {kind} pool of {size}", m, counts, args.pool_draws))


if __name__ == "__main__":
    main()
