"""The benchmarks run end to end on tiny CPU settings: train_throughput.py reports both loops (speed, accuracy),
imwm_throughput.py one process against worker processes (same output), hidden_throughput.py HiDDeN per
precision."""

import argparse
import importlib.util
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from dovlib.data import load_dataset

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


def _spy(monkeypatch, module, name: str) -> list:
    """Wrap ``module.name`` so that the benchmark still runs the real function and each call's arguments and result
    are kept, in order, as (args, kwargs, result)."""
    real, calls = getattr(module, name), []

    def wrapper(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((args, kwargs, out))
        return out

    monkeypatch.setattr(module, name, wrapper)
    return calls


def _accuracy(model, ds) -> float:
    """Test accuracy of ``model`` on ``ds``, computed here rather than taken from the benchmark."""
    from dovlib.train import predict_logits

    return (predict_logits(model, ds.x_test).argmax(1) == ds.y_test).float().mean().item()


def _fit_speed(res, n_train: int) -> float:
    """Images/s of one ``fit`` call over its timed epochs (all but the first, the warm-up), from its history."""
    return _fit_speeds([res], n_train)


def _fit_speeds(results, n_train: int) -> float:
    """Images/s of several ``fit`` calls together: their timed images over their timed seconds."""
    timed = [h for res in results for h in res.history if h["epoch"] > 1]
    return len(timed) * n_train / sum(h["epoch_time"] for h in timed)


def _fake_clock(monkeypatch, bench, step: float = 0.25) -> None:
    """The common loop times its epochs with ``bench.time.perf_counter``: a clock that moves ``step`` s per reading
    makes each timed epoch (one reading at its start, one at its end) last ``step`` s, so the loop's images/s must be
    the training set's size / ``step`` (the untimed warm-up epoch's images not counted). dovlib's loop is timed by
    ``fit``, whose history says how long each epoch took."""
    clock = iter(step * i for i in range(1000))
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: next(clock)))


def _line(out: str, name: str) -> str:
    line, = [s for s in out.splitlines() if s.startswith(name + " ")]
    return line


def _spied_run(monkeypatch, *extra, dataset=("--dataset", "synthetic")):
    """train_throughput on 64 images, 2 epochs, on the fake clock (64 images per timed epoch of 0.25 s: the common
    loop's 256 images/s), spying on build_model and fit. Returns the rows and both spies' calls."""
    bench = _load()
    _fake_clock(monkeypatch, bench)
    built, fits = _spy(monkeypatch, bench, "build_model"), _spy(monkeypatch, bench, "fit")
    rows = bench.main([*dataset, "--n-train", "64", "--width", "4", "--batch-size", "32", "--epochs", "2",
                       "--workers", "0", "--device", "cpu", *extra])
    return rows, built, fits


def test_throughput_benchmark_reports_both_loops_over_seeds(capsys, monkeypatch):
    rows, built, fits = _spied_run(monkeypatch, "--seeds", "2")
    common, ours = "common (DataLoader+PIL, fp32)", "dovlib.train.fit (auto: fp32)"  # auto is fp32 on the CPU
    assert list(rows) == [common, ours]
    assert rows[common][0] == 256.0
    assert [c[1]["config"].seed for c in fits] == [0, 1]
    # speed: the timed images of both seeds over their timed seconds (not a mean of per-seed rates)
    assert rows[ours][0] == pytest.approx(_fit_speeds([c[2] for c in fits], 64), rel=1e-12)
    # the loops take turns, the order reversed on the second seed: common s0, dovlib s0, dovlib s1, common s1
    ds = load_dataset("synthetic")
    assert len(built) == 4 and [built[1][2], built[2][2]] == [c[2].model for c in fits]
    accs = {common: [_accuracy(built[i][2], ds) for i in (0, 3)], ours: [_accuracy(built[i][2], ds) for i in (1, 2)]}
    out = capsys.readouterr().out
    for name, a in accs.items():
        assert rows[name][1] == pytest.approx(np.mean(a), abs=1e-9)
        line = _line(out, name)
        assert f"{rows[name][0]:,.0f} images/s" in line and f"test acc {np.mean(a):.3f}" in line
        assert f"+- {np.std(a, ddof=1):.3f} (2 seeds)" in line
    per_seed = [256.0 / _fit_speed(c[2], 64) for c in fits]  # common over dovlib time per image, inverted below
    assert (f"speed-up (dovlib auto / common): {rows[ours][0] / rows[common][0]:.2f}x (per seed "
            f"{1 / per_seed[0]:.2f}, {1 / per_seed[1]:.2f}; median {np.median([1 / r for r in per_seed]):.2f}x)") in out
    assert "note: common (DataLoader+PIL, fp32) timed 0.50 s in all: too little for a speed" in out  # 2 x 0.25 s
    assert "2 seed(s), loops in turn | common loop: 0 workers | dovlib: auto = fp32" in out


def test_throughput_benchmark_runs_on_grey_digits(capsys, monkeypatch):
    # PIL takes grey images as (H, W); an (H, W, 1) array used to crash the common loop
    rows, built, fits = _spied_run(monkeypatch, dataset=("--dataset", "digits", "--arch", "badnets_cnn"))
    common, ours = "common (DataLoader+PIL, fp32)", "dovlib.train.fit (auto: fp32)"
    ds = load_dataset("digits")
    (_, _, res), = fits
    assert rows[common][0] == 256.0
    assert res.model is built[1][2] and fits[0][1]["config"].flip is False  # grey digits: no horizontal flips
    assert rows[ours][0] == pytest.approx(_fit_speed(res, 64), rel=1e-12)
    assert [acc for _, acc in rows.values()] == pytest.approx([_accuracy(c[2], ds) for c in built], abs=1e-9)
    assert f"speed-up (dovlib auto / common): {rows[ours][0] / rows[common][0]:.2f}x" in capsys.readouterr().out


def test_throughput_benchmark_times_checkpoint_cost(capsys, monkeypatch):
    bench = _load()
    fits = []
    real_fit = bench.fit

    def fit(*args, **kwargs):  # the checkpoint is written in a folder removed after the benchmark: look now
        res = real_fit(*args, **kwargs)
        ckpt = kwargs.get("checkpoint")
        fits.append((args, kwargs, res, ckpt is not None and Path(ckpt).is_file()))
        return res

    monkeypatch.setattr(bench, "fit", fit)
    rows = bench.main(["--dataset", "synthetic", "--n-train", "64", "--width", "4", "--batch-size", "32",
                       "--epochs", "2", "--workers", "0", "--device", "cpu", "--checkpoint-cost"])
    every, default, none = ("fit, checkpoint every epoch", "fit, checkpoint at the end / once a minute",
                            "fit, no checkpoint")
    assert list(rows) == ["common (DataLoader+PIL, fp32)", "dovlib.train.fit (auto: fp32)", every, default, none]
    assert all(v[0] > 0 if isinstance(v, tuple) else v > 0 for v in rows.values())
    # after dovlib's loop, three whole fit calls as the notebooks make them: test accuracy after every epoch, the
    # state saved every epoch (checkpoint_every 0), at the end / once a minute (60), and no checkpoint file at all
    assert len(fits) == 4
    assert [(c[1]["checkpoint_every"], c[3]) for c in fits[1:]] == [(0.0, True), (60.0, True), (0.0, False)]
    assert fits[3][1]["checkpoint"] is None
    for (args, _, res, _), name in zip(fits[1:], (every, default, none)):
        assert len(args) >= 5 and args[3] is not None and [("test_acc" in h) for h in res.history] == [True, True]
        # a whole call's wall time holds both epochs and more (evaluation, saving): never faster than its epochs
        assert rows[name] <= 2 * 64 / sum(h["epoch_time"] for h in res.history)
    out = capsys.readouterr().out
    for name in (every, default, none):
        assert f"{rows[name]:,.0f} images/s (whole call, 2 epochs)" in _line(out, name)
    assert (f"speed-up (default / every epoch): {rows[default] / rows[every]:.2f}x; "
            f"default / no checkpoint: {rows[default] / rows[none]:.2f}x") in out


def test_throughput_benchmark_compares_precisions(capsys, monkeypatch):
    rows, built, fits = _spied_run(monkeypatch, "--precision", "auto,bf16")
    common, auto, bf16 = ("common (DataLoader+PIL, fp32)", "dovlib.train.fit (auto: fp32)",
                          "dovlib.train.fit (bf16: bf16 autocast)")
    assert list(rows) == [common, auto, bf16] and rows[common][0] == 256.0
    # "auto" trains in fp32 on the CPU, "bf16" under bf16 autocast: what fit says each call trained in
    assert [res.precision for _, _, res in fits] == ["fp32", "bf16"]
    assert [rows[auto][0], rows[bf16][0]] == pytest.approx([_fit_speed(res, 64) for _, _, res in fits], rel=1e-12)
    ds = load_dataset("synthetic")
    assert [acc for _, acc in rows.values()] == pytest.approx([_accuracy(c[2], ds) for c in built], abs=1e-9)
    out = capsys.readouterr().out
    assert f"speed-up (dovlib bf16 / dovlib auto): {rows[bf16][0] / rows[auto][0]:.2f}x" in out
    assert f"speed-up (dovlib auto / common): {rows[auto][0] / rows[common][0]:.2f}x" in out
    assert "their ratio measures only noise" not in out  # auto and bf16 differ on the CPU: no same-precision note


def test_throughput_benchmark_says_when_two_precisions_train_alike(capsys, monkeypatch):
    _spied_run(monkeypatch, "--precision", "auto,fp32")
    out = capsys.readouterr().out
    assert "note: on cpu fp32 trains as auto does (fp32): their ratio measures only noise" in out


@pytest.mark.parametrize("argv, message", [(["--epochs", "1"], "--epochs"), (["--seeds", "0"], "--seeds"),
                                           (["--precision", "fp16"], "--precision"),
                                           (["--batch-size", "0"], "--batch-size must be >= 1"),
                                           (["--width", "0"], "--width must be >= 1"),
                                           (["--workers", "-1"], "--workers must be >= 0"),
                                           (["--n-train", "0"], "--n-train must be >= 1"), (["--lr", "0"], "--lr"),
                                           (["--precision", "auto,auto"], "auto more than once"),
                                           (["--compile", "--device", "cpu"], "--compile needs a CUDA device")])
def test_throughput_benchmark_rejects_bad_settings(argv, message, capsys):
    with pytest.raises(SystemExit):
        _load().main(argv)
    assert message in capsys.readouterr().err


def test_imwm_benchmark_compares_one_process_with_workers(capsys, monkeypatch):
    bench = _load("imwm_throughput")
    runs = _spy(monkeypatch, bench, "timed")
    rows = bench.main(["--images", "64", "--workers", "2", "--bits", "16", "--repeats", "1"])
    assert list(rows) == ["1 process", "2 worker processes"]
    # one timed run per mode, on the same 64 images and bits (16 per image), with 1 and then --workers processes
    (args_s, _, (t_s, marked_s, read_s)), (args_p, _, (t_p, marked_p, read_p)) = runs
    (wm_s, images, bits), (wm_p, images_p, bits_p) = args_s, args_p
    assert (wm_s.workers, wm_p.workers) == (1, 2) and images_p is images and bits_p is bits
    assert tuple(images.shape) == (64, 3, 256, 256) and bits.shape == (64, 16)
    assert torch.equal(marked_s, marked_p) and np.array_equal(read_s, read_p)  # "outputs identical" is true
    assert t_s > 0 and t_p > 0 and rows == {"1 process": 64 / t_s, "2 worker processes": 64 / t_p}
    out = capsys.readouterr().out
    assert f"outputs identical; bit accuracy {(read_s == bits).mean():.3f}" in out
    assert "worker start-up (once per session, a first embed and extract of 64 images)" in out
    assert f"speed-up (2 workers / 1 process): {t_s / t_p:.2f}x" in out
    for name, speed in rows.items():
        assert f"{speed:.1f} images/s" in _line(out, name)


def test_imwm_benchmark_repeats_the_modes_in_turn(capsys, monkeypatch):
    bench = _load("imwm_throughput")
    runs = _spy(monkeypatch, bench, "timed")
    rows = bench.main(["--images", "64", "--workers", "2", "--bits", "8", "--repeats", "2"])
    # serial, pooled, then pooled, serial; speeds are all images over all seconds of each mode
    assert [c[0][0].workers for c in runs] == [1, 2, 2, 1]
    t_s, t_p = runs[0][2][0] + runs[3][2][0], runs[1][2][0] + runs[2][2][0]
    assert rows == {"1 process": 128 / t_s, "2 worker processes": 128 / t_p}
    per = [runs[0][2][0] / runs[1][2][0], runs[3][2][0] / runs[2][2][0]]
    assert (f"speed-up (2 workers / 1 process): {t_s / t_p:.2f}x (per repeat {per[0]:.2f}, {per[1]:.2f}; "
            f"median {np.median(per):.2f}x)") in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [(["--workers", "1"], "--workers"), (["--images", "10"], "--images"),
                                           (["--repeats", "0"], "--repeats must be >= 1"),
                                           (["--method", "rivaGan", "--bits", "16"], "--bits must be 32 with rivaGan")])
def test_imwm_benchmark_rejects_bad_settings(argv, message, capsys):
    with pytest.raises(SystemExit):
        _load("imwm_throughput").main(argv)
    assert message in capsys.readouterr().err


def test_hidden_benchmark_compares_precisions(capsys, monkeypatch):
    bench = _load("hidden_throughput")
    runs = _spy(monkeypatch, bench, "train_hidden")
    rows = bench.main(["--size", "16", "--channels", "8", "--bits", "4", "--batch-size", "4", "--steps", "6",
                       "--warmup", "2", "--device", "cpu"])
    assert list(rows) == ["auto (fp32)", "bf16 (bf16 autocast)"]
    # one training per precision, the same seed and steps; each row is read off its training's history: images/s
    # over the steps after the warm-up (batch 4), bit accuracy and PSNR of the last tenth of the steps (one step)
    assert [(kw["precision"], kw["seed"], kw["steps"]) for _, kw, _ in runs] == [("auto", 0, 6), ("bf16", 0, 6)]
    for (_, _, model), row in zip(runs, rows.values()):
        h = {e["step"]: e for e in model.history}
        assert sorted(h) == [1, 2, 3, 4, 5, 6] and h[6]["seconds"] > h[2]["seconds"]
        assert row["images_per_s"] == pytest.approx(4 * 4 / (h[6]["seconds"] - h[2]["seconds"]), rel=1e-12)
        assert (row["bit_acc"], row["psnr"]) == pytest.approx((h[6]["bit_acc"], h[6]["psnr"]), rel=1e-12)
    out = capsys.readouterr().out
    auto, bf16 = rows.values()
    assert f"speed-up (bf16 (bf16 autocast) / auto (fp32)): {bf16['images_per_s'] / auto['images_per_s']:.2f}x" in out
    for name, r in rows.items():
        assert f"training bit acc {r['bit_acc']:.3f}   PSNR {r['psnr']:.1f} dB" in _line(out, name)


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
    assert len(df) == 6 and (df.verified == (df.p_value < 0.01)).all()  # the paper's alpha, the default
    mal = df[df.scenario == "Malicious"]
    assert (mal.trigger_owner == mal.model_owner).all() and (df[df.scenario != "Malicious"].trigger_owner
                                                              != df[df.scenario != "Malicious"].model_owner).all()
    assert summary["claims"]["Ind-W"]["claimed"] == int(df[df.scenario == "Ind-W"].verified.sum())
    saved = json.loads((out / "summary.json").read_text())
    assert saved["perceptual"] == "ssim" and set(saved["owner_seconds"]) == {"0", "1"}
    # each owner trained within the training phase, which lies within the whole run
    assert max(saved["owner_seconds"].values()) <= saved["train_seconds"] <= saved["seconds"]
    assert saved["settings"]["target"] == 1 and saved["owner_targets"] == {"0": [1], "1": [1]}
    assert saved["owner_pools"] is None  # no --hard-pool: every class could be drawn
    # per owner: Table I numbers of its suspect against its benign (surrogate) model, and the marks' quality
    assert set(saved["owners"]) == {"0", "1"} and saved["owners_cut"] == []
    for i, o in saved["owners"].items():
        assert o["targets"] == [1] and o["n_marked"] == 12  # gamma 0.1 of 120 images, all from class 1
        assert o["seconds"] == saved["owner_seconds"][i]
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
    # draws.csv holds these rows (main's cross tests on the same cached models), checked against verify_model below
    order = ["trigger_owner", "model_owner", "scenario"]
    want = pd.DataFrame(rows).sort_values(order, ignore_index=True)
    got = df.sort_values(order, ignore_index=True)
    assert got[order + ["targets", "verified"]].astype(str).equals(want[order + ["targets", "verified"]].astype(str))
    for col in ("p_value", "delta_p", "WSR"):
        assert list(got[col]) == pytest.approx(list(want[col]), rel=1e-6, abs=1e-9)
    # each owner's Table I numbers, computed here from its (reloaded) models and marked set
    from dovlib.train import predict_logits

    y = torch.as_tensor(ds.y_test)
    for i, r in enumerate(runs):
        o = saved["owners"][str(i)]
        pred_s = predict_logits(r.suspect.model, ds.x_test).argmax(1)
        pred_b = predict_logits(r.surrogate.model, ds.x_test).argmax(1)
        assert o["BA_suspect"] == round(float((pred_s == y).float().mean()), 4)
        assert o["BA_benign"] == round(float((pred_b == y).float().mean()), 4)
        assert o["target_recall_suspect"] == round(float((pred_s[y == 1] == 1).float().mean()), 4)
        assert o["target_recall_benign"] == round(float((pred_b[y == 1] == 1).float().mean()), 4)
        assert (o["suspect_s"], o["benign_s"]) == (round(r.suspect.wall_time, 1), round(r.surrogate.wall_time, 1))
        assert o["generator_s"] == round(r.generator.meta["wall_time"], 1)
        idx = r.marked.marked
        clean, marked = ds.x_train[idx].double() / 255, r.marked.x[idx].double() / 255
        assert (clean - marked).abs().amax() <= 8 / 255 + 1e-9  # eps 8/255: PSNR at least 20 log10(255 / 8)
        mse = ((clean - marked) ** 2).flatten(1).mean(1)
        assert o["psnr"] == pytest.approx(float(torch.clamp(10 * torch.log10(1 / mse), max=100).mean()), abs=0.006)
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
    from dovlib import sscl

    # --same-key: one shared code, --target first and the other class from the key
    code = list(sscl.key_targets(20240607, 10, 2, first=1))
    assert set(df.targets) == {" ".join(map(str, code))}
    assert summary["owner_targets"] == {0: code, 1: code}
    assert (df.verified == (df.p_value < 0.01)).all()

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

    # with worker processes: one that exited since the last poll is kept at the deadline, one still running is cut
    class Proc:
        def __init__(self, code):
            self.code, self.terminated = code, False

        def poll(self):
            return self.code

        def terminate(self):
            self.terminated = True

        def wait(self):
            return self.code

    done, busy = Proc(0), Proc(None)
    running, seconds = {0: (done, 95.0), 1: (busy, 96.0)}, {}
    args = argparse.Namespace(jobs=2, deadline=1.0)
    cut = bench._train_owners(args, [], None, [2], running, seconds, t0=clock["t"] - 5)
    assert cut == [1, 2] and seconds == {0: round(clock["t"] - 95.0, 1)} and not done.terminated and busy.terminated


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
    # exact (Clopper-Pearson) bounds: the alpha/2 and 1 - alpha/2 quantiles of Beta(k, n - k + 1), Beta(k + 1, n - k)
    from scipy.stats import beta

    assert w["ci95"] == pytest.approx([beta.ppf(0.025, 2, 5), beta.ppf(0.975, 3, 4)], abs=1e-4)
    # both claims come from owner 0: one owner of three, and that interval is wider than the per-test one
    assert (w["owners_claiming"], w["owners"]) == (1, 3)
    assert w["owners_ci95"] == pytest.approx([beta.ppf(0.025, 1, 3), beta.ppf(0.975, 2, 2)], abs=1e-4)
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


def test_sscl_draws_workers_share_the_cpus_unless_told(monkeypatch):
    bench = _load("sscl_draws")
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 16)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    env = bench._worker_env(4)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "4" and env["PATH"] == bench.os.environ["PATH"]
    assert bench._worker_env(32)["OMP_NUM_THREADS"] == "1"  # never 0 threads
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the caller's setting wins (the device check sets it)
    assert bench._worker_env(4)["OMP_NUM_THREADS"] == "3"


def test_hidden_benchmark_says_when_two_precisions_train_alike(capsys):
    _load("hidden_throughput").main(["--size", "16", "--channels", "8", "--bits", "4", "--batch-size", "4",
                                     "--steps", "3", "--warmup", "1", "--device", "cpu", "--precision", "auto,fp32"])
    assert "note: on cpu fp32 trains as auto does: their ratio measures only noise" in capsys.readouterr().out


def test_checkpoint_write_benchmark_times_the_write_against_the_copy(capsys, tmp_path):
    bench = _load("checkpoint_write")
    bench.main(["--width", "2", "--repeats", "2", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "ResNet-18 width 2 with momentum: checkpoint file" in out and "2 repeats each" in out
    assert "write (_save_atomic: save, fsync, rename)" in out and "copy (_snapshot, in memory)" in out
    assert "write / copy:" in out and not list(tmp_path.iterdir())  # its temporary folder is gone
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
    assert "--width and --repeats must be >= 1" in capsys.readouterr().err


def test_verify_level_benchmark_counts_claims_of_both_tests_on_the_same_draws(capsys):
    bench = _load("verify_level")
    bench.main(["--draws", "30", "--model-draws", "5", "--pool-draws", "5"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "claims at tau 0.25, alpha 0.01" and len(lines) == 1 + 6 + 9 + 4
    skewed = lines[1]
    assert skewed.startswith("null skewed") and "bounded 0/30" in skewed and "t-test " in skewed
    assert all("bounded 5/5" in line for line in lines[8:10])  # clip N(0.7, 0.2) at m 40 and 100
    assert [line.split(":")[0].split()[-1] for line in lines[13:16]] == ["20", "40", "100"]  # clip N(0.35, 0.2)
    assert all("N(0.35, 0.2)" in line for line in lines[13:16])
    pools = lines[16:]
    assert all("without replacement" in line and "t-test" not in line for line in pools)
    for line in pools:  # drawn from a pool larger than m: never a census, whose draws are all one multiset
        size, m = map(int, re.search(r"pool of (\d+)\s+m\s+(\d+):", line).groups())
        assert m < size, line
    for kind in ("skewed", "two-point"):  # the pools are nulls at their boundary
        for size in (200, 270):
            d = bench.pool(kind, size)
            assert len(d) == size and d.mean() == pytest.approx(0.25) and -1 <= d.min() and d.max() <= 1
    pb, pw = bench.pair(np.array([-1.0, 0.3, 1.0]))
    assert pw - pb == pytest.approx([-1.0, 0.3, 1.0]) and pb.min() >= 0 and pw.max() <= 1
    assert bench.upper95(0, 4000) == pytest.approx(1 - 0.05 ** (1 / 4000))
    with pytest.raises(SystemExit):
        bench.main(["--draws", "0"])
    assert "--draws, --model-draws and --pool-draws must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["train_throughput", "hidden_throughput"])
def test_benchmarks_name_a_missing_cuda_device_as_a_usage_error(name, capsys, monkeypatch):
    # --device cuda without CUDA ended in a traceback; now argparse's exit 2 with the reason
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exited:
        _load(name).main(["--device", "cuda"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--device: " in err and "CUDA" in err and "Traceback" not in err


def test_cpu_determinism_benchmark_repeats_a_run_and_names_what_differs(capsys):
    # fresh processes: the same settings again give the same weights (fit is deterministic on the CPU); one thread
    # is run too and compared by its weights, whatever it gives on this machine
    bench = _load("cpu_determinism")
    bench.main(["--dataset", "digits", "--profile", "smoke:epochs=1,width=4", "--variants", "again,threads1"])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("CPU (") and "resnet18 width 4, 1 epoch, seed 0, digits: 600 train" in lines[0]
    progress = captured.err.splitlines()  # each run as it ends: a long benchmark shows it is moving
    assert [line.split(":")[0] for line in progress] == ["as set", "again", "threads1"]
    columns = ("kernels", "threads", "test_acc", "train_loss", "weights", "same", "seconds")
    rows = {line[:10].strip(): dict(zip(columns, line[10:].split())) for line in lines[2:5]}
    assert list(rows) == ["as set", "again", "threads1"]
    first, again, one = rows["as set"], rows["again"], rows["threads1"]
    assert first["same"] == "-" and again["same"] == "yes"
    assert [again[c] for c in columns[:5]] == [first[c] for c in columns[:5]]  # the loss and weights repeat
    assert int(first["threads"]) >= 1 and one["threads"] == "1"
    assert one["same"] == ("yes" if one["weights"] == first["weights"] else "no")
    assert lines[5].startswith(f"weights as the first run's: {1 + (one['same'] == 'yes')} of 2")
    accs = [float(r["test_acc"]) for r in rows.values()]
    assert [line.split("accuracy ")[1].split(",")[0] for line in progress] == [r["test_acc"] for r in rows.values()]
    assert lines[6] == (f"test accuracy over the runs: {min(accs):.4f}-{max(accs):.4f} "
                        f"({(max(accs) - min(accs)) * 100:.1f} points)")


@pytest.mark.parametrize("argv, message", [
    (["--variants", "again,avx9"], "--variants must name one or more of again, load, avx2, avx2-all, threads1"),
    (["--variants", ","], "--variants must name one or more of"),
    (["--profile", "quick"], "--profile must train on the CPU (add device=cpu"),
    (["--profile", "fast"], "--profile: "),
    (["--profile", "smoke", "--seed", "-1"], "--seed must be >= 0"),
])
def test_cpu_determinism_benchmark_rejects_bad_settings(argv, message, capsys):
    with pytest.raises(SystemExit):
        _load("cpu_determinism").main(argv)
    assert message in capsys.readouterr().err


def test_cpu_determinism_benchmark_names_a_failed_run_and_its_error():
    # a child that fails (here: a dataset that does not exist) is named with its own message, not a JSON error
    with pytest.raises(RuntimeError, match=r"(?s)the 'as set' run failed \(exit 1\):.*no-such-set"):
        _load("cpu_determinism").main(["--dataset", "no-such-set", "--profile", "smoke", "--variants", "again"])
