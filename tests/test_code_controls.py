"""run_code_controls with scripted models whose answers are known in advance.

The real run_code, run_sscl, select_code_run, select_code_draws, self_check and verify_code run; only the two
training functions are replaced. A "generator" (owner key, class, generator seed) marks one pixel of its own
white (channel 2); a "model" learns every mark present in its training set and then answers the mark's class when
that pixel is white. Marks of other owners towards a class the model learnt are answered too (transfer: the
reason the Ind-W controls exist), so a model trained on another owner's code answers OUR trigger of each class that
code shares with ours. ``modes`` makes a learnt mark answered only on some test images (each image shows its index
in channel 1): ``"eval"`` only on the evaluation's draw (seed 0) of the mark's class, ``"owner"`` only on the owner's
own check draw (seed 1 among the non-target images the evaluation's draw leaves out: ``owner_queries``). The test set
is large enough (150 non-target images per class) that any other draw of m = 20 shares only a few images with
either, so a check or an evaluation on the wrong draw fails. ``"part"`` answers only the first PART images of the
evaluation's draw. A model answering a trigger on all m queries gets p = (1.25 / (1 + D))**m (the zero-variance
bound of a bounded mean, D = P_w - P_b) from the t-test and ``ALL_BOUNDED`` from the betting test, one answering none
p = 1 from both.
"""

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dovlib import sscl
from dovlib.params import get_profile
from dovlib.sscl import independent_key, key_hash, key_targets
from dovlib.verify import bounded_verify, intersection_union, query_probs, ttest_verify, verification_set

K, SIZE, N_TRAIN, N_TEST, M = 4, 16, 80, 200, 20  # 150 non-target test images per class, 20 of them evaluated
KEY, SEED, TARGETS = 7, 3, (1, 3)
SMALL = 6  # training images of class 0: 6 / 80 = 0.075, so a code holding class 0 marks it whole (code_rate)
_P = torch.softmax(torch.tensor([10.0, 0, 0, 0]), 0)  # a scripted model's answer: P(its class), P(another class)
ALL = ttest_verify(torch.full((M,), _P[1]), torch.full((M,), _P[0])).p_value  # a trigger answered on every query
ALL_BOUNDED = bounded_verify(torch.full((M,), _P[1]), torch.full((M,), _P[0])).p_value  # the same, betting test
PART = 12  # mode "part": answered on 12 of the 20 queries, which the t-test claims (p 0.003) and the betting test not
OTHER = [independent_key(int(key_hash(KEY), 16), i) for i in range(2)]  # the Ind-W owners of models 0 and 1
SCENARIOS = ["Malicious", "Ind-M", "Ind-W plain", "Ind-W code", "Ind-W same code"]


@pytest.fixture(autouse=True)
def _runs(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DOVLIB_REPORTS", str(tmp_path / "reports"))


def _images(n, small=None):
    """n images of the K classes in turn; ``small``: that many of class 0 (a class smaller than gamma = 0.1)."""
    y = torch.arange(n) % K
    if small is not None:
        y[(y == 0).nonzero().flatten()[small:]] = 2
    x = torch.zeros(n, 3, SIZE, SIZE, dtype=torch.uint8)
    x[:, 0, 2, 0] = y.to(torch.uint8)  # the class the image shows
    x[:, 1, 0, 0] = torch.arange(n).to(torch.uint8)  # the image's index
    return x, y


class _PixelGen(nn.Module):
    """A scripted generator: sets its pixel of channel 2 to white."""

    def __init__(self, mark, pixel):
        super().__init__()
        self.key, self.target, self.seed = mark
        self.pixel, self.eps = pixel, 8 / 255
        self.register_buffer("where", torch.tensor(pixel))  # a generator_hash of its own

    def settings(self):
        return {"pixel": list(self.pixel)}

    def mark(self, x):
        x = x.clone()
        x[:, 2, self.pixel[0], self.pixel[1]] = 255
        return x


class _Learnt(nn.Module):
    """A scripted model: the class each image shows, or a mark's class where that mark's pixel is white and the model
    answers it (a mark it learnt, on the images its mode allows; another owner's mark towards a class it learnt)."""

    def __init__(self, world, learnt, seed):
        super().__init__()
        self.world, self.learnt, self.seed = world, learnt, seed
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        cls = (x[:, 0, 2, 0] * 255).round().long().clamp(0, K - 1)
        ids = (x[:, 1, 0, 0] * 255).round().long()
        for mark, (r, c) in self.world.marks.items():
            on = x[:, 2, r, c] > 0.99
            if not on.any():
                continue
            self.world.queries.append((self.seed, self.learnt, mark, frozenset(ids[on].tolist())))
            if mark in self.learnt:
                hit = self.world.answers(mark, ids)
            elif any(t == mark[1] for _, t, _ in self.learnt):
                hit = torch.ones_like(on)  # transfer: another owner's mark towards a class this model learnt
            else:
                continue
            cls = torch.where(on & hit, torch.full_like(cls, mark[1]), cls)
        return F.one_hot(cls, K).float() * 10 + self.dummy


class _World:
    def __init__(self, modes=None):
        (x_train, y_train), (x_test, y_test) = _images(N_TRAIN, small=SMALL), _images(N_TEST)
        self.ds = SimpleNamespace(name="scripted", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                                  num_classes=K)
        self.modes = modes or (lambda key, t, seed: None)
        self.evaluation = {t: frozenset(verification_set(x_test, y_test, t, M, seed=0).tolist()) for t in range(K)}
        self.owner = {t: frozenset(verification_set(x_test, y_test, t, M, seed=1, exclude=sorted(e)).tolist())
                      for t, e in self.evaluation.items()}
        self.marks, self.trained, self.queries = {}, [], []

    def generator(self, surrogate, x, y, config, **_):
        mark = (config.key, config.target, config.seed)
        if mark not in self.marks:
            n = len(self.marks)
            self.marks[mark] = (4 + n // SIZE, n % SIZE)
        return _PixelGen(mark, self.marks[mark])

    def train(self, x_train, y_train, x_test=None, y_test=None, *, seed, **_):
        learnt = set()
        for mark, (r, c) in self.marks.items():
            on = x_train[:, 2, r, c] == 255
            if on.any():
                assert (torch.as_tensor(y_train)[on] == mark[1]).all()  # clean-label: only its class carries it
                learnt.add(mark)
        learnt = frozenset(learnt)
        self.trained.append((learnt, seed))
        return SimpleNamespace(model=_Learnt(self, learnt, seed).eval())

    def answers(self, mark, ids):
        mode = self.modes(*mark)
        if mode is None:
            return torch.ones_like(ids, dtype=torch.bool)
        draw = (self.evaluation if mode in ("eval", "part") else self.owner)[mark[1]]
        if mode == "part":
            draw = frozenset(sorted(draw)[:PART])
        return torch.tensor([int(i) in draw for i in ids], dtype=torch.bool)


def _setup(monkeypatch, modes=None, n_models=2):
    world = _World(modes)
    monkeypatch.setattr(sscl, "get_or_train_generator", world.generator)
    monkeypatch.setattr(sscl, "train_classifier", world.train)

    def no_surrogate(*a, **k):  # every owner here shares our surrogate
        raise AssertionError("train_surrogate called")

    monkeypatch.setattr(sscl, "train_surrogate", no_surrogate)
    prof = get_profile("smoke", verify_m=M, n_models=n_models)
    surrogate = SimpleNamespace(model=_Learnt(world, frozenset(), None).eval())
    run = sscl.run_code(world.ds, prof, targets=TARGETS, rate=0.1, key=KEY, seed=SEED, perceptual="mse",
                        surrogate=surrogate, progress=False)
    assert run.targets == TARGETS and world.trained == [(frozenset((KEY, t, SEED) for t in TARGETS), SEED)]
    return world, run


def _marks(key, code, seed):
    return frozenset((key, t, seed) for t in code)


def _answered(row, answered, wsr=None):
    """The row's per-class columns and verdicts (t-test and betting test) are those of a model answering our trigger
    of class t on every query (answered[t] True) or on none; its WSR ``wsr`` (default: 1 or 0 likewise)."""
    p = {t: ALL if answered[t] else 1.0 for t in TARGETS}
    wsr = wsr if wsr is not None else {t: float(answered[t]) for t in TARGETS}
    assert {t: row[f"p_{t}"] for t in TARGETS} == p, row["scenario"]
    bounded = {t: ALL_BOUNDED if answered[t] else 1.0 for t in TARGETS}
    assert {t: row[f"bounded_p_{t}"] for t in TARGETS} == bounded, row["scenario"]
    assert row["bounded_p_value"] == max(bounded.values()), row["scenario"]
    assert row["bounded_verified"] == all(answered.values()), row["scenario"]
    assert {t: row[f"WSR_{t}"] for t in TARGETS} == pytest.approx(wsr), row["scenario"]
    assert row["p_value"] == max(p.values()) and row["verified"] == all(answered.values()), row["scenario"]
    assert row["delta_p_min"] == pytest.approx(float(all(answered.values())), abs=1e-3), row["scenario"]
    assert row["BA"] == 1.0


def test_each_scenario_is_our_code_test_on_its_own_model(monkeypatch):
    """Malicious: trained on our marked set, answers both our triggers: claimed. Ind-M: clean, answers none. Ind-W
    plain and Ind-W code (first class shared, the other not ours): answer only our first class's trigger (transfer)
    and so are not claimed, p_1 small and p_3 = 1 (the columns of the right class). Ind-W same code: another owner
    marking exactly our classes answers both our triggers and IS claimed (a full collision: the false claim the
    intersection-union test cannot avoid). The code rows' own test is the other owner's code on their model.
    Our marks are learnt only on the evaluation's draw, so the Malicious rows verify only when queried on that draw,
    and their WSR (on every non-target test image) is 20 / 150."""
    world, run = _setup(monkeypatch, modes=lambda key, t, seed: "eval" if key == KEY else None)
    codes = [key_targets(k, K, 2, first=TARGETS[0]) for k in OTHER]
    assert KEY not in OTHER and OTHER[0] != OTHER[1]
    assert codes == [(1, 0), (1, 2)] and all(not set(TARGETS) <= set(c) for c in codes)  # no collision here
    df = sscl.run_code_controls(run, m=M, same_code=True, progress=False)
    assert list(df.scenario) == SCENARIOS * 2 and list(df.model_seed) == [SEED] * 5 + [SEED + 1] * 5
    a, b = TARGETS
    answered = {"Malicious": {a: True, b: True}, "Ind-M": {a: False, b: False}, "Ind-W plain": {a: True, b: False},
                "Ind-W code": {a: True, b: False}, "Ind-W same code": {a: True, b: True}}
    for row in df.to_dict("records"):
        mal = row["scenario"] == "Malicious"
        _answered(row, answered[row["scenario"]], {t: M / (N_TEST - N_TEST // K) for t in TARGETS} if mal else None)
    # which set each model was trained on, with which seed: the i-th Ind-W owner's key is independent_key(i) of
    # ours, its plain mark towards our first class, its code shares our first class, all marked with seed s + 1000
    ours = _marks(KEY, TARGETS, SEED)
    expected = [(ours, SEED)]  # our suspect (run_code), the Malicious model of seed s
    for i, (other, code) in enumerate(zip(OTHER, codes)):
        s = SEED + i
        expected += [(ours, s)] if i else []
        expected += [(frozenset(), s), (_marks(other, code[:1], s + 1000), s), (_marks(other, code, s + 1000), s),
                     (_marks(other, TARGETS, s + 1000), s)]
    assert world.trained == expected
    code_rows, same = df[df.scenario == "Ind-W code"], df[df.scenario == "Ind-W same code"]
    assert [tuple(c) for c in code_rows.other_targets] == codes and not code_rows.collision.any()
    assert [tuple(c) for c in same.other_targets] == [TARGETS] * 2 and same.collision.all()
    # gamma of their own code: capped at class 0's share for the code (1, 0), ours (0.1) otherwise
    assert list(code_rows.other_rate) == [SMALL / N_TRAIN, 0.1] and (same.other_rate == 0.1).all()
    assert world.ds.y_train.bincount().tolist() == [SMALL, 20, 40 - SMALL, 20]
    # own test: their code's triggers on their model (answered everywhere), not ours (p_3 = 1 on the code rows)
    assert list(code_rows.own_p_value) == [ALL] * 2 and code_rows.own_verified.all()
    assert list(same.own_p_value) == [ALL] * 2 and same.own_verified.all()
    for rows in (code_rows, same):  # their own code's betting tests, as its t-tests
        assert list(rows.bounded_own_p_value) == [ALL_BOUNDED] * 2 and rows.bounded_own_verified.all()
    mine = df[df.scenario.isin(["Malicious", "Ind-M", "Ind-W plain"])]
    assert mine.own_p_value.isna().all() and mine.collision.isna().all() and mine.bounded_own_p_value.isna().all()
    # every evaluation of a row queried OUR triggers on the evaluation's draw (seed 0), m images per class
    ours_pixels = {(KEY, t, SEED) for t in TARGETS}
    evaluated = {q for q in world.queries if q[2] in ours_pixels and len(q[3]) == M}
    assert {q[3] for q in evaluated} == {world.evaluation[t] for t in TARGETS}
    assert all(q[3] == world.evaluation[q[2][1]] for q in evaluated)
    # and each other owner's own tests (t-test and betting test, read from one set of answers: each trigger queried
    # once per model, not once per test): their own triggers on the evaluation's draw
    theirs = [q for q in world.queries if q[2][0] in OTHER]
    assert len(theirs) == 2 * 2 * 2 and all(q[3] == world.evaluation[q[2][1]] for q in theirs)
    assert all(q[2] in q[1] and q[0] == SEED + OTHER.index(q[2][0]) for q in theirs)  # on their own model



def test_owners_check_reads_both_tests_from_one_query_per_class(monkeypatch):
    """self_check on scripted proxies that answer our triggers on the owner's check draw: every row holds the t-test's
    and the betting test's p-values (code and per class), ``test`` picks which decides, and each proxy is queried
    once per class for both."""
    world, run = _setup(monkeypatch, modes=lambda key, t, seed: "owner" if key == KEY else None)
    for test, chosen in (("ttest", ALL), ("bounded", ALL_BOUNDED)):
        del world.queries[:]
        chk = sscl.self_check(run, n_proxies=2, m=M, test=test, progress=False)
        assert list(chk.test) == [test] * 2 and list(chk.p_value) == [chosen] * 2 and chk.verified.all()
        assert list(chk.ttest_p_value) == [ALL] * 2 and list(chk.bounded_p_value) == [ALL_BOUNDED] * 2
        for t in TARGETS:
            assert list(chk[f"p_{t}"]) == [chosen] * 2
            assert list(chk[f"ttest_p_{t}"]) == [ALL] * 2 and list(chk[f"bounded_p_{t}"]) == [ALL_BOUNDED] * 2
        # one triggered query of each class per proxy (seeds 5000, 5001), on the owner's draw
        assert sorted((q[0], q[2][1]) for q in world.queries) == [(s, t) for s in (5000, 5001) for t in TARGETS]
        assert all(q[3] == world.owner[q[2][1]] for q in world.queries)
    assert ALL < 0.01 and ALL_BOUNDED < 0.01 and ALL != ALL_BOUNDED

def test_bounded_code_verdict_is_the_intersection_union_of_per_class_bounded_tests(monkeypatch):
    """The bounded_* columns of a code row are the intersection-union of one betting test per class on the same
    queries (bounded_verify of the P_b / P_w verification_set and the class's trigger give): p the largest per-class
    p. Our Malicious model answers our trigger of class 3 on only 12 of its 20 queries: each class's t-test claims
    (the code's t-test too), the betting test of class 3 does not (p 0.03), so the bounded code verdict does not
    claim although class 1's betting test does."""
    a, b = TARGETS
    world, run = _setup(monkeypatch, modes=lambda key, t, seed: "part" if (key, t) == (KEY, b) else None, n_models=1)
    df = sscl.run_code_controls(run, m=M, progress=False)
    mal = df[df.scenario == "Malicious"].iloc[0]
    model = world.train(run.marked.x, run.marked.y, seed=SEED).model  # the Malicious model (seed s, our set)
    per = []
    for t in TARGETS:  # each class's betting test on the evaluation's draw, from its P_b and P_w
        x = world.ds.x_test[verification_set(world.ds.x_test, world.ds.y_test, t, M, seed=sscl.EVAL_VERIFY_SEED)]
        per.append(bounded_verify(*query_probs(model, x, run.generators[t].mark, t)))
    code = intersection_union(per)
    assert per[0].verified and not per[1].verified and 0.01 < per[1].p_value < 0.05 and not code.verified
    assert mal.bounded_p_value == code.p_value == per[1].p_value and mal.bounded_verified == code.verified
    assert [mal[f"bounded_p_{t}"] for t in TARGETS] == [r.p_value for r in per]
    # the paper's verdict is unchanged: both t-tests claim, so the code's t-test claims
    assert mal.verified and mal.p_value == mal[f"p_{b}"] < 0.01 and mal[f"p_{a}"] == ALL
    # verify_code runs either test on the same queries; the bounded one is that intersection-union
    v, got = sscl.verify_code(model, run, m=M, test="bounded")
    assert v == code and got == per and sscl.verify_code(model, run, m=M)[0].verified
    with pytest.raises(ValueError, match=r"test must be one of 'ttest', 'bounded'; got 'both'"):
        sscl.verify_code(model, run, m=M, test="both")
    # verify_code_tests: both tests from one set of answers, each what verify_code gives alone
    both = sscl.verify_code_tests(model, run, m=M)
    assert both["bounded"] == (code, per) and both["ttest"] == sscl.verify_code(model, run, m=M)
    with pytest.raises(ValueError, match=r"test must be one of 'ttest', 'bounded'; got \(\)"):
        sscl.verify_code_tests(model, run, m=M, tests=())
    with pytest.raises(ValueError, match=r"test must be one of 'ttest', 'bounded'; got 'both'"):
        sscl.verify_code_tests(model, run, m=M, tests=("ttest", "both"))
    # no row claims by the betting test where a class's betting test does not
    for row in df.to_dict("records"):
        assert row["bounded_verified"] == all(row[f"bounded_p_{t}"] < 0.01 for t in TARGETS), row["scenario"]
        assert row["bounded_p_value"] == max(row[f"bounded_p_{t}"] for t in TARGETS), row["scenario"]


def test_other_owners_bounded_own_verdict_is_their_own_codes_betting_test(monkeypatch):
    """The other code owners' marks of their code's second class are learnt on only PART of the evaluation's 20
    queries: their own t-test claims, their own betting test does not, so ``bounded_own_verified`` is False beside a
    True ``own_verified`` (the columns of each test, not one verdict copied into both)."""
    first = TARGETS[0]
    _, run = _setup(monkeypatch, modes=lambda key, t, seed: "part" if key in OTHER and t != first else None,
                    n_models=1)
    df = sscl.run_code_controls(run, m=M, same_code=True, progress=False)
    others = df[df.scenario.isin(["Ind-W code", "Ind-W same code"])]
    assert len(others) == 2 and others.own_verified.all() and (others.own_p_value < 0.01).all()
    assert not others.bounded_own_verified.any() and (others.bounded_own_p_value > 0.01).all()


@pytest.mark.parametrize("first, second, attempt, passed, own", [
    ("eval", "owner", 1, True, False),  # attempt 0 learnt only on the evaluation's images: the check rejects it
    ("owner", "eval", 0, True, False),  # accepted on the owner's images, fails on the evaluation's
    ("eval", "eval", 0, False, True),  # the check rejects both; the kept attempt 0 verifies on the evaluation's draw
    (None, None, 0, True, True),
])
def test_other_owners_check_their_selection_apart_from_the_evaluation(monkeypatch, first, second, attempt, passed,
                                                                      own):
    """select_attempts > 1: each other code owner's selection queries its proxies (seed 5000) on the owner's check
    images (owner_check=True: disjoint from the evaluation's draw), while the control evaluates every model, their
    own test included, on the evaluation's draw. Their marks of attempt 0 (generator seed s + 1000) and attempt 1
    (s + 1000 + 100000) are answered only where ``first`` / ``second`` say."""
    seeds = {SEED + 1000: first, sscl.attempt_seed(SEED + 1000, 1): second}
    world, run = _setup(monkeypatch, modes=lambda key, t, seed: seeds[seed] if key != KEY else None, n_models=1)
    df = sscl.run_code_controls(run, m=M, same_code=True, select_attempts=2, progress=False)
    assert list(df.scenario) == SCENARIOS
    a, b = TARGETS
    answered = {"Malicious": {a: True, b: True}, "Ind-M": {a: False, b: False}, "Ind-W plain": {a: True, b: False},
                "Ind-W code": {a: True, b: False}, "Ind-W same code": {a: True, b: True}}
    for row in df.to_dict("records"):  # our test does not depend on where their own marks are answered
        _answered(row, answered[row["scenario"]])
    others = df[df.scenario.isin(["Ind-W code", "Ind-W same code"])]
    assert list(others.other_attempt) == [attempt] * 2 and list(others.other_self_check) == [passed] * 2
    assert list(others.own_verified) == [own] * 2 and list(others.own_p_value) == [ALL if own else 1.0] * 2
    assert list(others.bounded_own_verified) == [own] * 2
    assert list(others.bounded_own_p_value) == [ALL_BOUNDED if own else 1.0] * 2
    assert df[df.scenario.isin(["Malicious", "Ind-M", "Ind-W plain"])].other_attempt.isna().all()
    # proxies (seed 5000) of each attempt tried, then the published attempt's model (seed s)
    code = key_targets(OTHER[0], K, 2, first=TARGETS[0])
    tried = 1 if first == "owner" or first is None else 2
    gseeds = [sscl.attempt_seed(SEED + 1000, j) for j in range(tried)]
    for c in (code, TARGETS):
        got = [(learnt, s) for learnt, s in world.trained if learnt and all(k == OTHER[0] for k, _, _ in learnt)
               and {t for _, t, _ in learnt} == set(c)]
        assert got == [(_marks(OTHER[0], c, g), 5000) for g in gseeds] + [(_marks(OTHER[0], c, gseeds[attempt]),
                                                                            SEED)]
    # what each of their models was asked: the proxies only images apart from the evaluation's, the published
    # model exactly the evaluation's draw
    theirs = [q for q in world.queries if q[2][0] == OTHER[0]]
    proxies, evaluated = [q for q in theirs if q[0] == 5000], [q for q in theirs if q[0] == SEED]
    # proxies: (code, same code) x attempts x classes; published model: (code, same code) x classes, queried once
    # for both tests
    assert len(proxies) == 2 * tried * 2 and len(evaluated) == 2 * 2
    y = world.ds.y_test
    for q in proxies:  # the owner's check draw: seed 1 among the non-target images the evaluation's draw leaves
        t = q[2][1]
        assert len(q[3]) == M and not q[3] & world.evaluation[t] and all(int(y[i]) != t for i in q[3])
        assert q[3] == world.owner[t]
    assert all(q[3] == world.evaluation[q[2][1]] for q in evaluated)


def test_other_code_owner_redraws_onto_our_code(monkeypatch):
    """code_draws > 1: the first Ind-W code owner's code (1, 0) fails its check on class 0 (learnt only on the
    evaluation's images) at both attempts, so class 0 is dropped and their next code, keeping our first class, is
    drawn from their key among the rest: (1, 3), ours. The row then reports that final code, a collision, and is
    claimed by our test (their model answers both our triggers). The second owner's code (1, 2) passes at once:
    kept, with our first class although their key alone would start with class 2."""
    world, run = _setup(monkeypatch, modes=lambda key, t, seed: "eval" if key != KEY and t == 0 else None)
    assert key_targets(OTHER[0], K, 2, first=TARGETS[0]) == (1, 0)
    assert key_targets(OTHER[0], K, 2, first=TARGETS[0], pool=[1, 2, 3]) == TARGETS
    assert key_targets(OTHER[1], K, 2, first=TARGETS[0]) == (1, 2) and key_targets(OTHER[1], K, 2)[0] != 1
    df = sscl.run_code_controls(run, m=M, select_attempts=2, code_draws=2, progress=False)
    assert list(df.scenario) == SCENARIOS[:4] * 2
    first, second = df[df.scenario == "Ind-W code"].to_dict("records")
    assert tuple(first["other_targets"]) == TARGETS and first["collision"] and first["other_draw"] == 1
    assert first["other_attempt"] == 0 and first["other_self_check"] and first["own_verified"]
    assert first["own_p_value"] == ALL and first["other_rate"] == 0.1
    _answered(first, {t: True for t in TARGETS})
    assert tuple(second["other_targets"]) == (1, 2) and not second["collision"] and second["other_draw"] == 0
    assert second["other_attempt"] == 0 and second["other_self_check"] and second["own_p_value"] == ALL
    _answered(second, {TARGETS[0]: True, TARGETS[1]: False})
    assert df[df.scenario != "Ind-W code"].other_draw.isna().all()
    # proxies of code (1, 0) at attempts 0 and 1, of (1, 3) at attempt 0, then their model of the final code
    g0, g1 = SEED + 1000, sscl.attempt_seed(SEED + 1000, 1)
    got = [(learnt, s) for learnt, s in world.trained if len(learnt) == 2 and all(k == OTHER[0] for k, _, _ in learnt)]
    assert got == [(_marks(OTHER[0], (1, 0), g0), 5000), (_marks(OTHER[0], (1, 0), g1), 5000),
                   (_marks(OTHER[0], TARGETS, g0), 5000), (_marks(OTHER[0], TARGETS, g0), SEED)]


@pytest.mark.parametrize("controls", ["run_controls", "run_code_controls"])
def test_controls_refuse_selection_options_without_a_selection(controls):
    """n_proxies, check_alpha and check_test tune a selection that select_attempts=1 never runs: refused before any
    training, as notebooks 02 and 03 refuse them, so a record never names a check that did not run."""
    run = SimpleNamespace(ds=None, profile=get_profile("smoke"), params={}, targets=(1,))
    fn = getattr(sscl, controls)
    with pytest.raises(ValueError, match=r"n_proxies=2 tunes the owner's generator selection.*select_attempts=1"):
        fn(run, select_attempts=1, n_proxies=2)
    with pytest.raises(ValueError, match=r"check_alpha=0.001 tunes the owner"):
        fn(run, select_attempts=1, check_alpha=0.001)
    with pytest.raises(ValueError, match=r"check_test='bounded' tunes the owner"):
        fn(run, select_attempts=1, check_test="bounded")
    with pytest.raises(ValueError, match=r"check_test must be one of"):
        fn(run, select_attempts=1, check_test="both")
    # check_alpha = alpha (what notebook 03 passes for None) is no stricter check: accepted, so the call goes past
    # the options to the run's parameters, where the fake run has no seed
    with pytest.raises(KeyError, match=r"^'seed'$"):
        fn(run, select_attempts=1, check_alpha=0.01, alpha=0.01)
    with pytest.raises(KeyError, match=r"^'seed'$"):  # alpha as papermill passes it, a string: the same level
        fn(run, select_attempts=1, check_alpha=0.01, alpha="0.01")


def test_plain_owner_trains_its_own_surrogate_when_surrogates_are_redrawn(monkeypatch):
    """With ``redraw_surrogate`` every independent owner trains its own surrogate; the Ind-W plain owner of the code
    controls kept ours (the notebook's text said no owner shares it)."""
    world, run = _setup(monkeypatch)
    seen = []

    def first_plain_owner(*a, **k):  # stop at the first Ind-W plain owner, after the Malicious and Ind-M models
        seen.append(k["surrogate"])
        raise KeyboardInterrupt

    monkeypatch.setattr(sscl, "run_sscl", first_plain_owner)
    for redraw in (False, True):
        with pytest.raises(KeyboardInterrupt):
            sscl.run_code_controls(run, m=M, select_attempts=2, redraw_surrogate=redraw, progress=False)
    assert seen[0] is run.surrogate and seen[1] is None
