"""The benchmarks run end to end on tiny CPU settings: train_throughput.py reports both loops (speed, accuracy),
imwm_throughput.py one process against worker processes (same output), hidden_throughput.py HiDDeN per
precision."""

import argparse
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path, monkeypatch):
    # sscl_draws caches its owners' models under $DOVLIB_RUNS (worker processes inherit it): keep them out of the
    # repository's runs/ folder
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))


def _load(name: str = "train_throughput"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_throughput_benchmark_reports_both_loops_over_seeds(capsys):
    bench = _load()
    rows = bench.main(["--dataset", "synthetic", "--n-train", "64", "--width", "4", "--batch-size", "32",
                       "--epochs", "2", "--workers", "0", "--device", "cpu", "--seeds", "2"])
    assert list(rows) == ["common (DataLoader+PIL, fp32)", "dovlib.train.fit"]
    for speed, acc in rows.values():
        assert speed > 0 and 0.0 <= acc <= 1.0
    out = capsys.readouterr().out
    assert "speed-up (dovlib / common)" in out and "(2 seeds)" in out


def test_throughput_benchmark_runs_on_grey_digits(capsys):
    # PIL takes grey images as (H, W); an (H, W, 1) array used to crash the common loop
    rows = _load().main(["--dataset", "digits", "--arch", "badnets_cnn", "--n-train", "64", "--width", "4",
                         "--batch-size", "32", "--epochs", "2", "--workers", "0", "--device", "cpu"])
    assert all(speed > 0 and 0.0 <= acc <= 1.0 for speed, acc in rows.values())


def test_throughput_benchmark_times_checkpoint_cost(capsys):
    rows = _load().main(["--dataset", "synthetic", "--n-train", "64", "--width", "4", "--batch-size", "32",
                         "--epochs", "2", "--workers", "0", "--device", "cpu", "--checkpoint-cost"])
    assert len(rows) == 5 and all(v[0] > 0 if isinstance(v, tuple) else v > 0 for v in rows.values())
    assert "fit, no checkpoint" in rows
    out = capsys.readouterr().out
    assert "speed-up (default / every epoch)" in out and "default / no checkpoint" in out


def test_throughput_benchmark_compares_precisions(capsys):
    rows = _load().main(["--dataset", "synthetic", "--n-train", "64", "--width", "4", "--batch-size", "32",
                         "--epochs", "2", "--workers", "0", "--device", "cpu", "--precision", "auto,bf16"])
    assert list(rows) == ["common (DataLoader+PIL, fp32)", "dovlib.train.fit", "dovlib.train.fit (bf16)"]
    assert all(speed > 0 and 0.0 <= acc <= 1.0 for speed, acc in rows.values())
    assert "speed-up (dovlib bf16 / dovlib auto)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [(["--epochs", "1"], "--epochs"), (["--seeds", "0"], "--seeds"),
                                           (["--precision", "fp16"], "--precision"),
                                           (["--batch-size", "0"], "--batch-size must be >= 1"),
                                           (["--width", "0"], "--width must be >= 1"),
                                           (["--workers", "-1"], "--workers must be >= 0"),
                                           (["--n-train", "0"], "--n-train must be >= 1"), (["--lr", "0"], "--lr")])
def test_throughput_benchmark_rejects_bad_settings(argv, message, capsys):
    with pytest.raises(SystemExit):
        _load().main(argv)
    assert message in capsys.readouterr().err


def test_imwm_benchmark_compares_one_process_with_workers(capsys):
    rows = _load("imwm_throughput").main(["--images", "64", "--workers", "2", "--bits", "16"])
    assert list(rows) == ["1 process", "2 worker processes"] and all(v > 0 for v in rows.values())
    out = capsys.readouterr().out
    assert "outputs identical" in out and "speed-up (2 workers / 1 process)" in out


@pytest.mark.parametrize("argv, message", [(["--workers", "1"], "--workers"), (["--images", "10"], "--images")])
def test_imwm_benchmark_rejects_bad_settings(argv, message, capsys):
    with pytest.raises(SystemExit):
        _load("imwm_throughput").main(argv)
    assert message in capsys.readouterr().err


def test_hidden_benchmark_compares_precisions(capsys):
    rows = _load("hidden_throughput").main(["--size", "16", "--channels", "8", "--bits", "4", "--batch-size", "4",
                                            "--steps", "6", "--warmup", "2", "--device", "cpu"])
    assert list(rows) == ["auto (fp32)", "bf16 (bf16 autocast)"]
    assert all(r["images_per_s"] > 0 and 0 <= r["bit_acc"] <= 1 for r in rows.values())
    assert "speed-up (bf16 (bf16 autocast) / auto (fp32))" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [(["--warmup", "0"], "--warmup"), (["--size", "4"], "--size"),
                                           (["--precision", "half"], "--precision"), (["--rounds", "0"], "--rounds")])
def test_hidden_benchmark_rejects_bad_settings(argv, message, capsys):
    with pytest.raises(SystemExit):
        _load("hidden_throughput").main(argv)
    assert message in capsys.readouterr().err


def test_sscl_draws_crosses_every_owner_with_every_model(tmp_path, capsys):
    bench = _load("sscl_draws")
    out = tmp_path / "draws"
    summary = bench.main(["--profile", "smoke:epochs=1,gen_iters=4,n_train=120,n_test=80,verify_m=20,width=4",
                          "--dataset", "synthetic", "--owners", "2", "--jobs", "2", "--out", str(out)])
    # the owners trained in two worker processes (the GPU check's path); then 2 Malicious tests (own trigger, own
    # suspect), 2 Ind-W and 2 Ind-M (the other owner's suspect / surrogate)
    assert {k: v["tests"] for k, v in summary["claims"].items()} == {"Malicious": 2, "Ind-W": 2, "Ind-M": 2}
    df = pd.read_csv(out / "draws.csv")
    assert len(df) == 6 and df.p_value.between(0, 1).all() and df.WSR.between(0, 1).all()
    mal = df[df.scenario == "Malicious"]
    assert (mal.trigger_owner == mal.model_owner).all() and (df[df.scenario != "Malicious"].trigger_owner
                                                              != df[df.scenario != "Malicious"].model_owner).all()
    assert summary["claims"]["Ind-W"]["claimed"] == int(df[df.scenario == "Ind-W"].verified.sum())
    saved = json.loads((out / "summary.json").read_text())
    assert saved["perceptual"] == "ssim" and set(saved["owner_seconds"]) == {"0", "1"}
    assert saved["settings"]["target"] == 1 and saved["owner_targets"] == {"0": [1], "1": [1]}
    assert saved["owner_pools"] is None  # no --hard-pool: every class could be drawn
    # per owner: Table I numbers of its suspect against its benign (surrogate) model, and the marks' quality
    assert set(saved["owners"]) == {"0", "1"} and saved["owners_cut"] == []
    for o in saved["owners"].values():
        assert o["targets"] == [1] and o["n_marked"] == 12  # gamma 0.1 of 120 images, all from class 1
        assert 0 <= o["BA_suspect"] <= 1 and 0 <= o["target_recall_benign"] <= 1
        assert 20 < o["psnr"] < 100 and 0.9 < o["ssim"] < 1  # eps 8/255 marks: close to, but not, the clean image
        assert o["suspect_s"] > 0 and o["benign_s"] > 0 and o["generator_s"] > 0
    assert list((tmp_path / "runs" / "sscl").iterdir())  # the models went to $DOVLIB_RUNS
    assert "Ind-M: claimed" in capsys.readouterr().out
    # the owners' models are cached: the cross tests reload them rather than train again
    from dovlib import sscl

    args = argparse.Namespace(profile="smoke:epochs=1,gen_iters=4,n_train=120,n_test=80,verify_m=20,width=4",
                              dataset="synthetic", arch="resnet18", eps="8/255", rate=0.1, target=1, key=20240607,
                              seed=0, perceptual="ssim", same_key=False, n_targets=1)
    run = bench.owner_run(args, 1)
    assert run.params["seed"] == 1 and run.params["key_hash"] == sscl.key_hash(sscl.independent_key(20240607, 1))
    # the cross tests mark each owner's images once (two trigger calls per owner: query and WSR images, not one pair
    # per model) and give what verify_model / attack_success give on each (trigger, model) pair
    from dovlib.verify import attack_success, verification_set, verify_model

    runs = [bench.owner_run(args, 0), run]
    calls = []
    for i, r in enumerate(runs):
        def counted(x, trig=r.trigger, i=i):
            calls.append(i)
            return trig(x)
        r.trigger = counted
    args.m, args.tau, args.alpha = 20, 0.25, 0.01
    rows = bench.cross_tests(args, runs)
    assert sorted(calls) == [0, 0, 1, 1] and len(rows) == 6
    ds = runs[0].ds
    idx = verification_set(ds.x_test, ds.y_test, 1, 20, seed=0)
    for row in rows:
        model = getattr(runs[row["model_owner"]], "surrogate" if row["scenario"] == "Ind-M" else "suspect").model
        trig = runs[row["trigger_owner"]].trigger
        v = verify_model(model, ds.x_test[idx], trig, 1, 0.25, 0.01)
        assert row["p_value"] == pytest.approx(v.p_value, rel=1e-6, abs=1e-12)
        assert row["delta_p"] == pytest.approx(v.delta_p, abs=1e-6) and row["verified"] == v.verified
        assert row["WSR"] == pytest.approx(attack_success(model, ds.x_test, ds.y_test, trig, 1))
    keys = [bench.owner_key(args, i) for i in range(3)]
    assert len(set(keys)) == 3 and 20240607 not in keys
    args.same_key = True  # --same-key: owners differ by seed alone
    assert [bench.owner_key(args, i) for i in range(3)] == [20240607] * 3


def test_sscl_draws_crosses_target_code_owners(tmp_path):
    # --n-targets 2: each owner marks a target code ({1, c} with c from its key); every row is the intersection-union
    # test, as dovlib.sscl.verify_code computes it for the owner's own code
    bench = _load("sscl_draws")
    prof = "smoke:epochs=1,gen_iters=4,n_train=120,n_test=80,verify_m=20,width=4"
    out = tmp_path / "code"
    summary = bench.main(["--profile", prof, "--dataset", "synthetic", "--owners", "2", "--n-targets", "2",
                          "--same-key", "--out", str(out)])
    assert {k: v["tests"] for k, v in summary["claims"].items()} == {"Malicious": 2, "Ind-W": 2, "Ind-M": 2}
    df = pd.read_csv(out / "draws.csv", dtype={"targets": str})
    codes = set(df.targets)
    assert len(codes) == 1 and codes.pop().split()[0] == "1"  # --same-key: one shared code, --target first
    assert summary["owner_targets"][0] == summary["owner_targets"][1] and summary["owner_targets"][0][0] == 1
    from dovlib import sscl

    args = argparse.Namespace(profile=prof, dataset="synthetic", arch="resnet18", eps="8/255", rate=0.1, target=1,
                              key=20240607, seed=0, perceptual="ssim", same_key=True, n_targets=2, m=20, tau=0.25,
                              alpha=0.01)
    runs = [bench.owner_run(args, i) for i in range(2)]  # cached by the run above
    assert all(isinstance(r, sscl.SSCLCodeRun) and len(bench.triggers(r)) == 2 for r in runs)
    for row in df.itertuples():
        model = getattr(runs[row.model_owner], "surrogate" if row.scenario == "Ind-M" else "suspect").model
        v, per = sscl.verify_code(model, runs[row.trigger_owner], m=20, tau=0.25, alpha=0.01)
        assert row.p_value == pytest.approx(v.p_value, rel=1e-6, abs=1e-12) and row.verified == v.verified
        assert row.delta_p == pytest.approx(v.delta_p, abs=1e-6) and v.test.startswith("intersection-union of 2")


def test_sscl_draws_target_key_draws_each_owners_classes_from_its_key():
    # --target key: every class of an owner's target (or code) comes from its own key, so owners mostly differ
    bench = _load("sscl_draws")
    from dovlib import sscl

    args = argparse.Namespace(target=bench.target_arg("key"), n_targets=2, key=20240607, same_key=False)
    codes = [bench.owner_targets(args, i, 10) for i in range(6)]
    assert codes == [sscl.key_targets(sscl.independent_key(20240607, i), 10, 2) for i in range(6)]
    assert len(set(codes)) > 1 and {c[0] for c in codes} != {1} and all(len(set(c)) == 2 for c in codes)
    args.n_targets = 1
    singles = [bench.owner_targets(args, i, 10) for i in range(6)]
    assert singles == [c[:1] for c in codes]  # one class: the code's first
    args.target = bench.target_arg("3")
    with pytest.raises(argparse.ArgumentTypeError, match=r"target must be a class index >= 0 or 'key'"):
        bench.target_arg("first")
    assert [bench.owner_targets(args, i, 10) for i in range(3)] == [(3,)] * 3  # a fixed class stays fixed
    args.n_targets = 2
    assert all(c[0] == 3 and c[1] != 3 for c in (bench.owner_targets(args, i, 10) for i in range(6)))
    # a drawn class holding less than --rate of the set is marked whole (gamma capped at its share), not refused
    prof = "smoke:epochs=1,gen_iters=4,n_train=120,n_test=80,verify_m=20,width=4"
    ns = argparse.Namespace(profile=prof, dataset="synthetic", arch="resnet18", eps="8/255", rate=0.5, target=None,
                            key=20240607, seed=0, perceptual="ssim", same_key=False, n_targets=1)
    run = bench.owner_run(ns, 0)
    t = bench.owner_targets(ns, 0, run.ds.num_classes)[0]
    share = float((run.ds.y_train == t).float().mean())
    assert run.params["target"] == t and run.params["rate"] == pytest.approx(share) and share < 0.5
    # --hard-pool H: the key draws among the H classes of lowest clean recall on the owner's (cached) surrogate
    ns.hard_pool, ns.n_targets = 2, 2
    ds = bench._dataset(ns)
    pool = bench.hard_pool(ns, 0, ds)
    surrogate = sscl.train_surrogate(ds, bench._profile(ns), "resnet18", 0, progress=False)
    assert pool == sscl.hard_classes(surrogate.model, ds.x_test, ds.y_test, 2, ds.num_classes)
    assert sorted(bench.owner_targets(ns, 0, ds.num_classes, pool=pool)) == sorted(pool)
    assert bench.hard_pool(ns, 0, ds, surrogate) == pool  # an already loaded surrogate gives the same pool
    code_run = bench.owner_run(ns, 0, ds)  # the code is drawn from the pool and the run reuses that surrogate
    assert sorted(code_run.targets) == sorted(pool)
    assert sscl.model_hash(code_run.surrogate.model) == sscl.model_hash(surrogate.model)
    ns.hard_pool = 0
    assert bench.hard_pool(ns, 0, ds) is None


def test_sscl_draws_deadline_stops_owners_and_keeps_those_done(monkeypatch):
    # a fake clock: each owner takes 10 s; with --deadline 15 owners 0 and 1 finish, owner 2 never starts
    bench = _load("sscl_draws")
    clock = {"t": 100.0}
    monkeypatch.setattr(bench.time, "time", lambda: clock["t"])
    trained = []

    def fake_owner_run(args, i, ds=None, progress=False):
        trained.append(i)
        clock["t"] += 10

    monkeypatch.setattr(bench, "owner_run", fake_owner_run)
    args = argparse.Namespace(jobs=1, deadline=15.0)
    seconds, pending = {}, [0, 1, 2]
    cut = bench._train_owners(args, [], None, pending, {}, seconds, t0=100.0)
    assert trained == [0, 1] and cut == [2] and pending == [] and seconds == {0: 10.0, 1: 10.0}
    args.deadline = 0  # none: every owner trains
    trained.clear()
    assert bench._train_owners(args, [], None, [0, 1, 2], {}, {}, t0=clock["t"]) == [] and trained == [0, 1, 2]


def test_sscl_draws_deadline_with_fewer_than_two_owners_done_says_so():
    with pytest.raises(SystemExit, match=r"only owners \[\] finished training; the cross tests need 2"):
        _load("sscl_draws").main(["--profile", "smoke:n_train=120,n_test=80", "--dataset", "synthetic",
                                  "--deadline", "1e-9"])


def test_sscl_draws_summary_counts_tests_and_owners_with_exact_intervals():
    bench = _load("sscl_draws")
    rows = [{"trigger_owner": i, "model_owner": j, "scenario": "Malicious" if i == j else "Ind-W",
             "verified": i == j or (i == 0 and j in (1, 2))} for i in range(3) for j in range(3)]
    s = bench.summarize(rows)
    assert set(s) == {"Malicious", "Ind-W"}  # no Ind-M rows: no entry rather than 0 of 0
    assert (s["Malicious"]["claimed"], s["Malicious"]["tests"], s["Malicious"]["ci95"][1]) == (3, 3, 1.0)
    assert s["Malicious"]["ci95"][0] == pytest.approx(0.025 ** (1 / 3), abs=1e-4)  # exact: (alpha/2)^(1/n) at k = n
    w = s["Ind-W"]
    assert (w["claimed"], w["tests"], w["rate"]) == (2, 6, pytest.approx(0.3333, abs=1e-4))
    # both claims come from owner 0: one owner of three, and that interval is wider than the per-test one
    assert (w["owners_claiming"], w["owners"]) == (1, 3)
    assert w["owners_ci95"][1] - w["owners_ci95"][0] > w["ci95"][1] - w["ci95"][0]


@pytest.mark.parametrize("argv, message", [(["--owners", "1"], "--owners"), (["--jobs", "0"], "--jobs"),
                                           (["--n-targets", "0"], "--n-targets"), (["--target", "one"], "--target"),
                                           (["--eps", "8/0"], "eps"), (["--hard-pool", "-1"], "--hard-pool"),
                                           (["--n-targets", "3", "--hard-pool", "2"], "--hard-pool"),
                                           (["--hard-pool", "4"], "--hard-pool"), (["--m", "0"], "--m must be 2"),
                                           (["--tau", "1.5"], "--tau must be"), (["--alpha", "0"], "--alpha must be"),
                                           (["--deadline", "-5"], "--deadline must be")])
def test_sscl_draws_rejects_bad_settings(argv, message, capsys):
    with pytest.raises((SystemExit, ValueError), match=None) as err:
        _load("sscl_draws").main(argv)
    text = capsys.readouterr().err + str(err.value)
    assert message in text
