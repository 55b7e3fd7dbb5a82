import pytest
import torch

from dovlib.data import load_dataset
from dovlib.models import build_model
from dovlib.params import get_profile
from dovlib import studies
from dovlib.studies import PAPER_EPS, PAPER_RATES, cached, eps_label, grid, ownership_metrics
from dovlib.train import evaluate, fit


def test_grids_follow_the_paper_and_shrink_for_smoke():
    quick = get_profile("quick")
    assert grid("eps", quick) == PAPER_EPS and PAPER_EPS[0] == "1/255" and PAPER_EPS[-1] == "10/255"
    assert grid("rate", quick) == PAPER_RATES and PAPER_RATES[0] == 0.01 and PAPER_RATES[-1] == 0.1
    assert grid("archs", quick) == ["resnet18", "resnet34", "vgg16", "vgg19"]
    assert len(grid("eps", get_profile("smoke"))) < len(PAPER_EPS)
    with pytest.raises(ValueError, match="grid name"):
        grid("lr", quick)


def test_eps_label():
    assert eps_label(8 / 255) == "8/255" and eps_label("16/255") == "16/255"
    assert eps_label(0.03) == "7.65/255" and eps_label("8.0000001/255") == "8/255"
    # six significant digits: budgets closer than that are one (far below a grey level), others stay apart
    assert eps_label("8.000003/255") == eps_label(0.03137254) == "8/255" and eps_label("8.00003/255") == "8.00003/255"
    # non-integer grey levels keep their own label (both were "0.03333", one cache record for two budgets)
    assert eps_label("8.5/255") == "8.5/255" and eps_label(0.033333) == "8.49991/255"
    with pytest.raises(ValueError, match="eps"):
        eps_label("8/0")


def test_cached_reuses_unless_recompute(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_REPORTS", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"WSR": 0.5 * len(calls)}

    a = cached("04_ablation", {"eps": "8/255"}, compute, profile="smoke")
    b = cached("04_ablation", {"eps": "8/255"}, compute, profile="smoke")
    c = cached("04_ablation", {"eps": "8/255"}, compute, recompute=True, profile="smoke")
    assert (a["reused"], b["reused"], c["reused"]) == (False, True, False)
    assert len(calls) == 2 and b["metrics"]["WSR"] == 0.5 and c["metrics"]["WSR"] == 1.0
    assert a["wall_time"] >= 0 and a["profile"] == "smoke"
    with pytest.raises(TypeError, match="recompute must be True or False"):
        cached("04_ablation", {"eps": "8/255"}, compute, recompute="False", profile="smoke")
    assert len(calls) == 2


def test_ownership_metrics_detects_a_real_backdoor_and_not_a_clean_model():
    ds = load_dataset("synthetic", num_classes=4, n_train=400, n_test=200, image_size=16, seed=1)
    target = 1

    def trigger(x):  # a bright 4x4 corner patch
        x = x.clone()
        x[:, :, -4:, -4:] = 255
        return x

    torch.manual_seed(0)
    clean = fit(build_model("resnet18", 4, width=4), ds.x_train, ds.y_train, epochs=4, batch_size=32, lr=0.05,
                progress=False, crop_padding=0, flip=False).model
    xp, yp = ds.x_train.clone(), ds.y_train.clone()
    idx = torch.arange(0, 400, 5)  # 20% poisoned (BadNets-style), labels flipped
    xp[idx] = trigger(xp[idx])
    yp[idx] = target
    torch.manual_seed(0)
    marked = fit(build_model("resnet18", 4, width=4), xp, yp, epochs=4, batch_size=32, lr=0.05, progress=False,
                 crop_padding=0, flip=False).model
    m_clean = ownership_metrics(clean, ds.x_test, ds.y_test, trigger, target, m=100)
    m_marked = ownership_metrics(marked, ds.x_test, ds.y_test, trigger, target, m=100)
    assert m_marked["WSR"] > 0.8 and m_marked["verified"] and m_marked["p_value"] < 0.01
    assert not m_clean["verified"] and m_clean["WSR"] < m_marked["WSR"]
    assert 0 <= m_clean["BA"] <= 1 and set(m_clean) == {"BA", "WSR", "delta_p", "p_value", "verified"}


def test_ownership_metrics_never_cuts_an_explicit_m(monkeypatch):
    ds = load_dataset("synthetic", num_classes=4, n_train=40, n_test=40, image_size=8, seed=2)
    target = 1
    n_other = int((ds.y_test != target).sum())
    model = build_model("resnet18", 4, width=4).eval()

    def trigger(x):
        return x

    # an explicit m above the non-target test images is refused, naming the range (it was quietly cut down)
    with pytest.raises(ValueError, match=r"m must be .*" + str(n_other)):
        ownership_metrics(model, ds.x_test, ds.y_test, trigger, target, m=n_other + 1)
    # m None: the profile's default, capped at those images, so a small test set runs on its defaults
    drawn = []
    real = studies.verification_set
    monkeypatch.setattr(studies, "verification_set", lambda *a: drawn.append(a[3]) or real(*a))
    got = ownership_metrics(model, ds.x_test, ds.y_test, trigger, target, default_m=10_000)
    assert got["delta_p"] == pytest.approx(0.0, abs=1e-6) and not got["verified"]
    ownership_metrics(model, ds.x_test, ds.y_test, trigger, target, default_m=5)
    ownership_metrics(model, ds.x_test, ds.y_test, trigger, target, m=7, default_m=5)
    assert drawn == [n_other, 5, 7]


class _GreyModel(torch.nn.Module):
    """Class 0's logit grows with the top-left pixel and the pixel below it: a white corner (the trigger) raises it by
    2, by how much each image's own grey level says, so P_w - P_b varies from image to image."""

    def __init__(self):
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        z = torch.zeros(len(x), 3) + self.shift
        z[:, 0] = 2 * x[:, 0, 0, 0] + 2 * x[:, 0, 1, 0] - 2
        return z


def _grey_set():
    g = torch.Generator().manual_seed(3)
    x = torch.zeros(60, 3, 4, 4, dtype=torch.uint8)
    x[:, 0, 1, 0] = torch.randint(0, 256, (60,), generator=g, dtype=torch.uint8)
    return x, torch.arange(60) % 3


def _white_corner(x):
    x = x.clone()
    x[:, :, 0, 0] = 255
    return x


def _expected_p(model, x, y, m, seed, tau):
    from scipy.stats import ttest_rel

    from dovlib.verify import query_probs, verification_set

    pb, pw = query_probs(model, x[verification_set(x, y, 0, m, seed)], _white_corner, 0)
    return ttest_rel(pw.double().numpy(), pb.double().numpy() + tau, alternative="greater").pvalue


def test_ownership_metrics_draws_its_queries_with_the_given_seed():
    x, y = _grey_set()
    model = _GreyModel().eval()
    got = {s: ownership_metrics(model, x, y, _white_corner, 0, m=10, seed=s)["p_value"] for s in (0, 1, 2)}
    for s, p in got.items():
        assert p == pytest.approx(_expected_p(model, x, y, 10, s, 0.25), rel=1e-6)
    assert got[0] != pytest.approx(got[1], rel=1e-3) and got[1] != pytest.approx(got[2], rel=1e-3)  # three draws


def test_ownership_metrics_tests_against_the_given_tau():
    x, y = _grey_set()
    model = _GreyModel().eval()
    got = {t: ownership_metrics(model, x, y, _white_corner, 0, m=12, tau=t, seed=4) for t in (0.1, 0.25, 0.4)}
    for t, r in got.items():
        assert r["p_value"] == pytest.approx(_expected_p(model, x, y, 12, 4, t), rel=1e-6)
    assert got[0.1]["p_value"] < got[0.25]["p_value"] < got[0.4]["p_value"]
    assert got[0.1]["delta_p"] == got[0.4]["delta_p"]  # tau moves the test, not the measured lift
    assert got[0.25]["verified"] and not got[0.4]["verified"]  # a lift of ~0.41 is not 0.4 above P_b here


def test_ownership_metrics_verifies_at_the_given_alpha():
    x, y = _grey_set()
    model = _GreyModel().eval()
    p = _expected_p(model, x, y, 12, 4, 0.35)  # 0.0017, above no floor: 12 pairs' floor is (1.35 / 2)**12 = 0.0089
    kw = dict(m=12, seed=4, tau=0.35)
    assert ownership_metrics(model, x, y, _white_corner, 0, **kw)["verified"]  # the default alpha 0.01 claims
    assert ownership_metrics(model, x, y, _white_corner, 0, alpha=0.02, **kw)["p_value"] == pytest.approx(p, rel=1e-6)
    assert not ownership_metrics(model, x, y, _white_corner, 0, alpha=p * 0.9, **kw)["verified"]


class _Blind(torch.nn.Module):
    """Ignores the image: class 1 always, so a trigger moves nothing (a model that never saw the marks)."""

    def __init__(self):
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        z = torch.zeros(len(x), 3) + self.shift
        z[:, 1] = 5.0
        return z


def test_ownership_metrics_measures_the_clean_floor_on_the_same_queries():
    x, y = _grey_set()
    marked, clean = _GreyModel().eval(), _Blind()
    both = ownership_metrics(marked, x, y, _white_corner, 0, m=12, seed=4, benign=marked)
    assert {k: both[f"{k}_benign"] for k in ("BA", "WSR", "delta_p", "p_value", "verified")} == \
        {k: both[k] for k in ("BA", "WSR", "delta_p", "p_value", "verified")}  # same images, same measurements
    assert both["verified"] and not both["learnt"]  # a clean model that responds as well: not shown to be learnt
    got = ownership_metrics(marked, x, y, _white_corner, 0, m=12, seed=4, benign=clean)
    alone = ownership_metrics(marked, x, y, _white_corner, 0, m=12, seed=4)
    assert {k: got[k] for k in alone} == alone and "learnt" not in alone and "WSR_benign" not in alone
    assert got["WSR_benign"] == 0.0 and got["delta_p_benign"] == pytest.approx(0.0, abs=1e-6)
    assert got["BA_benign"] == pytest.approx(float((y == 1).float().mean()))  # always class 1
    assert not got["verified_benign"] and got["learnt"]


def test_benign_model_is_the_clean_set_model_of_that_architecture(monkeypatch):
    from dovlib import sscl

    ds = load_dataset("synthetic", num_classes=3, n_train=30, n_test=12, image_size=8, seed=5)
    seen = []

    def fake(x_train, y_train, x_test=None, y_test=None, **kw):
        seen.append((x_train, y_train, x_test, y_test, kw))
        return type("R", (), {"model": "the model"})()

    monkeypatch.setattr(sscl, "train_classifier", fake)
    assert studies.benign_model(ds, get_profile("smoke"), "vgg16", 7, progress=False) == "the model"
    (xt, yt, xs, ys, kw), = seen
    assert xt is ds.x_train and yt is ds.y_train and xs is ds.x_test and ys is ds.y_test  # the CLEAN set
    assert kw["arch"] == "vgg16" and kw["seed"] == 7 and kw["num_classes"] == 3 and kw["profile"].name == "smoke"


def test_cached_records_the_code_and_says_when_a_reused_record_is_older(tmp_path, monkeypatch, capsys):
    from dovlib import reproduce, studies

    monkeypatch.setenv("DOVLIB_REPORTS", str(tmp_path))
    studies._code.cache_clear()
    first = cached("04_ablation", {"eps": "8/255"}, lambda: {"WSR": 0.5}, profile="smoke")
    assert first["code"] == reproduce.source_hash()[:12]
    cached("04_ablation", {"eps": "8/255"}, lambda: pytest.fail("measured again"), profile="smoke")
    assert "note: reused record" not in capsys.readouterr().out  # the same code: nothing to say
    monkeypatch.setattr(reproduce, "source_hash", lambda: "f" * 64)  # the code changed since
    assert studies._code() == first["code"]  # taken once per process: an edit during a run does not count
    studies._code.cache_clear()  # a new process
    again = cached("04_ablation", {"eps": "8/255"}, lambda: pytest.fail("measured again"), profile="smoke")
    assert again["reused"] and again["metrics"] == {"WSR": 0.5}  # still reused: models and hours are not thrown away
    out = capsys.readouterr().out
    assert f"by dovlib code {first['code']} (now ffffffffffff); recompute=True measures it again" in out
    studies._code.cache_clear()


def test_measured_context_labels_reused_records_with_their_own_devices():
    from dovlib.studies import measured_context

    here = {"profile": "quick", "device": "cpu", "device_name": "CPU (2 cores)", "perceptual": "ssim"}
    gpu = {"device": "cuda", "device_name": "NVIDIA H100", "trained_on": "cuda", "training_precision": "bf16"}
    assert measured_context(here, [gpu, gpu]) == {"profile": "quick", "perceptual": "ssim", **gpu}
    mixed = measured_context(here, [gpu, {"device": "cpu", "device_name": "CPU (2 cores)",
                                          "training_precision": "fp32"}])
    assert (mixed["device"], mixed["device_name"], mixed["training_precision"]) == (
        "cpu, cuda", "CPU (2 cores), NVIDIA H100", "bf16, fp32")
    assert mixed["trained_on"] == "cuda"
    # the device names of the machines that trained the models, each record's own (a CPU's kernels change its weights)
    by = measured_context(here, [{**gpu, "trained_by": "NVIDIA H100 80GB HBM3"},
                                 {**gpu, "trained_by": "CPU (Intel Xeon, 8 cores, AVX2 kernels)"}])
    assert by["trained_by"] == "CPU (Intel Xeon, 8 cores, AVX2 kernels), NVIDIA H100 80GB HBM3"
    assert "trained_by" not in measured_context({**here, "trained_by": "CPU (x)"}, [gpu])  # older records: none
    reused = measured_context({**here, "trained_on": "cpu"}, [{"device": "cuda"}])  # nothing trained in this run
    assert reused["device"] == "cuda" and "trained_on" not in reused and "device_name" not in reused
    assert measured_context(here, []) == here and measured_context(here, [None]) == here


def test_cached_measures_again_a_record_missing_a_needed_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_REPORTS", str(tmp_path))
    cached("04_ablation", {"eps": "8/255"}, lambda: {"WSR": 0.5}, profile="smoke")  # written before WSR_benign
    again = cached("04_ablation", {"eps": "8/255"}, lambda: {"WSR": 0.6, "WSR_benign": 0.1}, needs=("WSR_benign",),
                   profile="smoke")
    assert not again["reused"] and again["metrics"] == {"WSR": 0.6, "WSR_benign": 0.1}
    kept = cached("04_ablation", {"eps": "8/255"}, lambda: pytest.fail("measured again"), needs=("WSR_benign",),
                  profile="smoke")
    assert kept["reused"] and kept["metrics"]["WSR_benign"] == 0.1
    from dovlib.report import load_records

    assert len(load_records("04_ablation")) == 1  # the old record replaced, not a second one added


def _draw(sur, sus, seed, wsr, verified, verified_benign, ba=0.5):
    return {"surrogate": sur, "suspect": sus, "seed": seed, "BA": ba, "WSR": wsr, "BA_benign": 0.6,
            "WSR_benign": 0.05 * (seed + 1), "verified": verified, "verified_benign": verified_benign,
            "learnt": verified and not verified_benign}


def test_transfer_cells_average_each_cell_and_count_its_learnt_draws():
    import pandas as pd

    draws = pd.DataFrame([
        _draw("vgg16", "resnet18", 0, 0.9, True, False), _draw("vgg16", "resnet18", 1, 0.3, False, False, ba=0.7),
        _draw("resnet18", "resnet18", 0, 0.8, True, True), _draw("resnet18", "resnet18", 1, 0.6, True, False),
        _draw("vgg16", "resnet18", 2, 0.6, True, False),
    ])
    cells = studies.transfer_cells(draws)
    assert list(zip(cells.surrogate, cells.suspect)) == [("vgg16", "resnet18"), ("resnet18", "resnet18")]  # order kept
    first, second = cells.iloc[0], cells.iloc[1]
    assert first.WSR == pytest.approx(0.6) and first.BA == pytest.approx((0.5 + 0.7 + 0.5) / 3)
    assert first.WSR_benign == pytest.approx((0.05 + 0.10 + 0.15) / 3)
    assert (first.n_draws, first.learnt, first.verified, first.verified_benign) == (3, 2, 2, 0)
    # a draw verified on both the suspect and the clean model is not learnt
    assert (second.n_draws, second.learnt, second.verified, second.verified_benign) == (2, 1, 2, 1)
    assert cells.learnt.dtype.kind == "i" and second.WSR == pytest.approx(0.7)
    assert first.BA_benign == pytest.approx(0.6)
    # verdicts read back from a CSV (floats) or objects still count as integers
    read_back = studies.transfer_cells(draws.astype({"verified": float, "learnt": object}))
    assert read_back.verified.dtype.kind == "i" and read_back.learnt.dtype.kind == "i"
    assert list(read_back.verified) == [2, 2] and list(read_back.learnt) == [2, 1]


def test_transfer_cells_refuse_missing_columns_empty_draws_and_missing_verdicts():
    import pandas as pd

    good = pd.DataFrame([_draw("vgg16", "vgg16", 0, 0.9, True, False)])
    with pytest.raises(ValueError, match=r"lacks column.*WSR_benign"):
        studies.transfer_cells(good.drop(columns=["WSR_benign"]))
    with pytest.raises(ValueError, match="empty"):
        studies.transfer_cells(good.iloc[:0])
    for column in ("learnt", "verified", "verified_benign"):  # any verdict missing, not only the first
        bad = good.astype({column: object})
        bad.loc[0, column] = None
        with pytest.raises(ValueError, match="missing verdict"):
            studies.transfer_cells(bad)


def test_grid_returns_a_copy_the_caller_may_change():
    quick, smoke = get_profile("quick"), get_profile("smoke")
    grid("eps", quick).append("11/255")
    grid("rate", smoke).clear()
    assert PAPER_EPS[-1] == "10/255" and len(PAPER_EPS) == 10
    assert grid("eps", quick) == PAPER_EPS and grid("rate", smoke) == [0.05, 0.1]


def test_eps_label_rounds_a_level_just_below_an_integer_up():
    assert eps_label("7.9999999/255") == "8/255" and eps_label("0.9999999/255") == "1/255"


def test_ownership_metrics_defaults_seed_0_tau_025_and_alpha_001():
    x, y = _grey_set()
    model = _GreyModel().eval()
    assert ownership_metrics(model, x, y, _white_corner, 0, m=10)["p_value"] == pytest.approx(
        _expected_p(model, x, y, 10, 0, 0.25), rel=1e-6)
    kw = dict(m=12, seed=4, tau=0.37)
    p = _expected_p(model, x, y, 12, 4, 0.37)
    assert 0.01 < p < 0.05  # claimed at alpha 0.05, not at the default 0.01
    got = ownership_metrics(model, x, y, _white_corner, 0, **kw)
    assert got["p_value"] == pytest.approx(p, rel=1e-6) and not got["verified"]
    assert ownership_metrics(model, x, y, _white_corner, 0, alpha=0.05, **kw)["verified"]


def test_ownership_metrics_defaults_to_100_queries(monkeypatch):
    x = torch.zeros(180, 3, 4, 4, dtype=torch.uint8)
    y = torch.arange(180) % 3  # 120 images outside target class 0
    drawn = []
    real = studies.verification_set
    monkeypatch.setattr(studies, "verification_set", lambda *a: drawn.append(a[3]) or real(*a))
    ownership_metrics(_GreyModel().eval(), x, y, _white_corner, 0)
    assert drawn == [100]


def test_measured_context_drops_a_provenance_key_no_record_gives_a_value():
    from dovlib.studies import measured_context

    got = measured_context({"device": "cpu", "trained_on": "cpu"}, [{"device": None, "trained_on": "cuda"}])
    assert got == {"trained_on": "cuda"}  # not "None"


def test_benign_model_passes_the_progress_flag_on(monkeypatch):
    from dovlib import sscl

    ds = load_dataset("synthetic", num_classes=3, n_train=30, n_test=12, image_size=8, seed=5)
    seen = []
    monkeypatch.setattr(sscl, "train_classifier", lambda *a, **kw: seen.append(kw["progress"]) or
                        type("R", (), {"model": None})())
    studies.benign_model(ds, get_profile("smoke"), "vgg16", 0, progress=False)
    studies.benign_model(ds, get_profile("smoke"), "vgg16", 0)
    assert seen == [False, True]


def test_check_study_queries_checks_the_queries_ownership_metrics_makes(monkeypatch):
    """Notebooks 04-06 each wrote check_claim_queries(query_count(ds.y_test, target, None, cfg.verify_m), what=...)
    before training; check_study_queries is that line: the profile's verify_m capped at the test images outside the
    target class (what ownership_metrics draws with m None), refused by name when it can never claim."""
    from types import SimpleNamespace

    from dovlib.studies import check_study_queries

    y_test = torch.arange(60) % 4  # 45 test images outside class 1
    ds = SimpleNamespace(y_test=y_test)
    assert check_study_queries(ds, 1, get_profile("smoke")) == 40  # verify_m 40: all of it
    assert check_study_queries(ds, 1, get_profile("quick")) == 45  # verify_m 100, capped at the 45
    with pytest.raises(ValueError, match=r"the profile's verify_m 5: 5 queries can never claim ownership at tau "
                                         r"0.25 and alpha 0.01"):  # 5 of the 45: not capped, so not said to be
        check_study_queries(ds, 1, get_profile("smoke:verify_m=5"))
    few = SimpleNamespace(y_test=torch.tensor([0, 1, 1, 2, 3, 0, 2, 3, 1]))  # 6 outside class 1
    with pytest.raises(ValueError, match=r"verify_m 40 capped at the 6 test images outside class 1: 6 queries"):
        check_study_queries(few, 1, get_profile("smoke"))
    assert check_study_queries(ds, 1, get_profile("smoke:verify_m=7"), tau=0.0) == 7  # 7 suffice at tau 0
    with pytest.raises(ValueError, match="alpha 0.001"):
        check_study_queries(ds, 1, get_profile("smoke:verify_m=12"), alpha=0.001)
    # the count checked is the count ownership_metrics draws
    drawn = []
    real = studies.verification_set
    monkeypatch.setattr(studies, "verification_set", lambda *a: drawn.append(a[3]) or real(*a))
    x = torch.zeros(60, 3, 8, 8, dtype=torch.uint8)
    ownership_metrics(build_model("resnet18", 4, width=4).eval(), x, y_test, lambda v: v, 1,
                      default_m=get_profile("quick").verify_m)
    assert drawn == [check_study_queries(ds, 1, get_profile("quick"))]


def test_each_cached_point_counts_only_the_models_its_own_compute_used(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_REPORTS", str(tmp_path))
    ds = load_dataset("synthetic", num_classes=4, n_train=128, n_test=32, image_size=16)

    def model_at(name, epochs):
        torch.manual_seed(0)
        return fit(build_model("resnet18", num_classes=4, width=4), ds.x_train, ds.y_train, epochs=epochs,
                   batch_size=64, progress=False, checkpoint=tmp_path / name)

    model_at("a.pt", 1), model_at("b.pt", 2)  # trained before the study: its points read them back
    stored = {k: torch.load(tmp_path / f"{k}.pt", weights_only=False)["compute_time"] for k in "ab"}

    def point(name, epochs):
        return cached("04_ablation", {"point": name}, lambda: {"BA": evaluate(model_at(f"{name}.pt", epochs).model,
                                                                            ds.x_test, ds.y_test)}, profile="smoke")

    a, b = point("a", 1), point("b", 2)
    assert (a["cached_compute_time"], b["cached_compute_time"]) == (stored["a"], stored["b"])  # its own model only
    assert a["cached_artifacts"] == b["cached_artifacts"] == 1
    assert a["compute_time"] >= stored["a"] and b["compute_time"] >= stored["b"] and a["wall_time"] >= 0


def test_study_label_names_the_target_class_beside_eps_and_gamma():
    """Notebooks 04-06 captioned their figures and tables with the data, eps, gamma and profile but never the target
    class: a run at ``-p target 3`` read as one at the default class 1 (only the records held it)."""
    from types import SimpleNamespace

    from dovlib.studies import study_label

    ds = SimpleNamespace(name="cifar10-subset", is_subset=True, classes=["airplane", "automobile", "bird", "cat"])
    assert study_label(ds, "smoke", target=3, arch="resnet18", eps="8/255", rate=0.05, devices="CPU (2 cores)") == (
        "cifar10-subset (subset), resnet18, eps 8/255, gamma 0.05, target 3 (cat), smoke profile, CPU (2 cores)")
    # a grid's axis (04's eps and gamma, 06's architectures) is left out; a figure title puts the profile below
    assert study_label(ds, "quick:epochs=10", target="1", eps=4 / 255, rate=0.1, profile_line=True) == (
        "cifar10-subset (subset), eps 4/255, gamma 0.1, target 1 (automobile)\nquick:epochs=10 profile")
    full = SimpleNamespace(name="cifar10", is_subset=False)  # no class names: the index alone
    assert study_label(full, "paper", target=0) == "cifar10 (full), target 0, paper profile"
    with pytest.raises(ValueError, match=r"target must be an integer in \[0, 3\]; got 4"):
        study_label(ds, "smoke", target=4)


def test_study_label_takes_class_names_in_an_array_and_bounds_a_nameless_target_by_num_classes():
    """Class names in a numpy array raised "the truth value of an array ... is ambiguous"; a dataset without names
    but with ``num_classes`` 3 was captioned "target 7"; gamma "1/10" (as parse_rate reads it) raised in float()."""
    from types import SimpleNamespace

    import numpy as np

    from dovlib.studies import study_label

    ds = SimpleNamespace(name="cifar10", is_subset=False, classes=np.array(["airplane", "automobile"]))
    assert study_label(ds, "smoke", target=np.int64(1), rate="1/10") == (
        "cifar10 (full), gamma 0.1, target 1 (automobile), smoke profile")
    nameless = SimpleNamespace(name="x", is_subset=True, classes=None, num_classes=3)
    assert study_label(nameless, "smoke", target=2) == "x (subset), target 2, smoke profile"
    with pytest.raises(ValueError, match=r"target must be an integer in \[0, 2\]; got 7"):
        study_label(nameless, "smoke", target=7)
    with pytest.raises(ValueError, match="rate"):
        study_label(nameless, "smoke", target=2, rate=0)


def test_study_label_names_the_generators_perceptual_measure_and_refuses_an_unknown_one():
    """Notebooks 04-06's captions and titles never said which similarity loss trained the generator: an ssim or mse
    fallback's results read like the papers' LPIPS ones (only the records and the reports index named it)."""
    from types import SimpleNamespace

    from dovlib.studies import study_label

    ds = SimpleNamespace(name="cifar10", is_subset=False, classes=["airplane", "automobile"])
    assert study_label(ds, "paper", target=1, eps="8/255", perceptual="ssim") == (
        "cifar10 (full), eps 8/255, target 1 (automobile), perceptual ssim, paper profile")
    with pytest.raises(ValueError, match="perceptual must be one of"):
        study_label(ds, "paper", target=1, perceptual="l2")


def test_span_text_says_one_value_once_and_skips_nan():
    """Notebook 06 with one draw or one architecture read "seeds 0 to 0" and "WSR 5.6% to 5.6%"."""
    from dovlib.studies import span_text

    assert span_text([0.056, 0.07, float("nan")], "{:.1%}") == "5.6% to 7.0%"
    assert span_text([0.056, 0.0561], "{:.1%}") == "5.6%"  # both ends read the same
    assert span_text(torch.tensor([0, 0]).numpy(), "{:d}") == "0" and span_text([3, 1, 2]) == "1 to 3"
    assert span_text([float("nan")]) == "n/a" and span_text([]) == "n/a"


def test_paired_effects_pairs_each_set_with_the_reference_by_training_seed():
    """Notebook 10 compared one classifier per training set: a difference of a few points could be the seed's (its
    measured runs moved 0.9-5.7 points between seeds). paired_effects gives the per-seed differences' mean and
    spread and the paired t-test's p, computed here by hand."""
    import numpy as np
    import pandas as pd
    from scipy.stats import ttest_rel

    from dovlib.studies import paired_effects

    ref, marked = [0.50, 0.55, 0.53], [0.52, 0.58, 0.54]
    frame = pd.DataFrame({"set": ["clean"] * 3 + ["marked"] * 3, "train_seed": [0, 1, 2] * 2,
                          "test_acc": ref + marked}).sample(frac=1, random_state=0)  # row order does not matter
    out = paired_effects(frame, "test_acc", "clean").set_index("set")
    d = np.subtract(marked, ref)
    row = out.loc["marked"]
    assert row["n"] == 3 and row["test_acc"] == pytest.approx(np.mean(marked))
    assert row["test_acc_std"] == pytest.approx(np.std(marked, ddof=1))
    assert row["test_acc_minus_clean"] == pytest.approx(d.mean())
    assert row["test_acc_minus_clean_std"] == pytest.approx(d.std(ddof=1))
    assert row["p_vs_clean"] == pytest.approx(ttest_rel(marked, ref).pvalue)
    assert out.loc["clean", "test_acc_minus_clean"] == 0 and np.isnan(out.loc["clean", "p_vs_clean"])
    # one seed: no spread and no p (one model cannot tell an effect from a seed's); equal sets: p 1
    one = paired_effects(frame[frame.train_seed == 0], "test_acc", "clean").set_index("set")
    assert one.loc["marked", "n"] == 1 and np.isnan(one.loc["marked", "test_acc_std"])
    assert np.isnan(one.loc["marked", "p_vs_clean"])
    same = pd.DataFrame({"set": ["a", "a", "b", "b"], "train_seed": [0, 1, 0, 1], "v": [0.1, 0.2, 0.1, 0.2]})
    assert paired_effects(same, "v", "a").set_index("set").loc["b", "p_vs_a"] == 1.0
    shifted = same.assign(v=[0.1, 0.2, 0.15, 0.25])  # the same shift for every seed: the t-test is undefined
    assert np.isnan(paired_effects(shifted, "v", "a").set_index("set").loc["b", "p_vs_a"])


def test_paired_effects_refuses_an_unknown_reference_and_unpaired_rows():
    import pandas as pd

    from dovlib.studies import paired_effects

    frame = pd.DataFrame({"set": ["a", "a", "b"], "train_seed": [0, 1, 0], "v": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match=r"reference must be one of the set values \['a', 'b'\]; got 'c'"):
        paired_effects(frame, "v", "c")
    with pytest.raises(ValueError, match=r"every set needs the same train_seed values \(\[0, 1\]\); lacking: "
                                         r"\{'b': \[1\]\}"):
        paired_effects(frame, "v", "a")
    with pytest.raises(ValueError, match=r"each \(set, train_seed\) must appear once; repeated: \[\['a', 0\]\]"):
        paired_effects(pd.concat([frame, frame.iloc[:1]]), "v", "a")
    with pytest.raises(ValueError, match=r"no column\(s\) \['acc'\]"):
        paired_effects(frame, "acc", "a")


def test_paired_effects_names_a_missing_value_as_missing_not_as_an_unpaired_seed():
    """A NaN value (a model with no result) was reported as a seed the set lacks ("lacking: {'b': [1]}"), though the
    row is there: the error now names the rows whose value is missing."""
    import pandas as pd

    from dovlib.studies import paired_effects

    frame = pd.DataFrame({"set": ["a", "a", "b", "b"], "train_seed": [0, 1, 0, 1], "v": [0.1, 0.2, 0.3, float("nan")]})
    with pytest.raises(ValueError, match=r"paired_effects: v is missing \(NaN\) for \(set, train_seed\) "
                                         r"\[\['b', 1\]\]: drop that train_seed from every set, or give its value"):
        paired_effects(frame, "v", "a")
