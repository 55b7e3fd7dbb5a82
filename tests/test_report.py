import datetime as _dt
import json
import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import dovlib  # noqa: E402
from dovlib import report  # noqa: E402
from dovlib.train import data_hash  # noqa: E402


@pytest.fixture(autouse=True)
def _tmp_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))


def test_write_record_replaces_same_params_and_keeps_others():
    report.write_record("04_ablation", {"eps": "8/255", "rate": 0.1}, {"wsr": 0.5}, profile="smoke", device="cpu")
    report.write_record("04_ablation", {"rate": 0.1, "eps": "8/255"}, {"wsr": 0.9}, profile="smoke", device="cpu")
    report.write_record("04_ablation", {"eps": "4/255", "rate": 0.1}, {"wsr": torch.tensor(0.25)}, profile="smoke")
    recs = report.load_records("04_ablation")
    assert len(recs) == 2
    assert report.find_record("04_ablation", {"eps": "8/255", "rate": 0.1})["metrics"]["wsr"] == 0.9
    assert report.find_record("04_ablation", {"eps": "4/255", "rate": 0.1})["metrics"]["wsr"] == 0.25
    assert report.find_record("04_ablation", {"eps": "1/255"}) is None
    rec = recs[0]
    assert rec["profile"] == "smoke" and "torch" in rec["env"] and rec["written"]
    data = json.loads((report.reports_dir() / "04_ablation" / "metrics.json").read_text())
    assert data["notebook"] == "04_ablation"


def test_report_files_are_strict_json():
    """NaN (a loss before the first epoch, a WSR not measured) is written as null: Python's ``NaN`` token breaks
    JSON parsers elsewhere (JavaScript's JSON.parse, jq)."""
    nan = float("nan")
    report.write_record("05_x", {"eps": "8/255"}, {"loss": nan, "rows": [1.0, nan, float("inf")],
                                                   "t": torch.tensor([0.5, nan]), "ok": 0.25}, profile="smoke")
    text = (report.reports_dir() / "05_x" / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text

    def strict(token):
        raise ValueError(f"not strict JSON: {token}")

    metrics = json.loads(text, parse_constant=strict)["records"][0]["metrics"]
    assert metrics == {"loss": None, "rows": [1.0, None, None], "t": [0.5, None], "ok": 0.25}
    fig, ax = plt.subplots()
    report.save_fig(fig, "f", "05_x", score=nan)
    plt.close(fig)
    report.save_table(pd.DataFrame({"a": [1]}), "t", "05_x", caption="c", score=nan)
    for name in ("figures.json", "tables.json"):
        json.loads((report.reports_dir() / "05_x" / name).read_text(), parse_constant=strict)


def test_records_name_the_precision_the_profile_trained_in():
    def precision(profile, device):
        return report.write_record("04_ablation", {"p": profile, "d": device}, {}, profile=profile,
                                   device=device).get("training_precision")

    assert precision("quick", "cpu") == "fp32" and precision("quick", "cuda") == "bf16"  # "auto": bf16 on CUDA only
    assert precision("quick:precision=bf16", "cpu") == "bf16" and precision("paper:precision=fp32", "cuda") == "fp32"
    assert precision("no-such-profile", "cpu") is None and "training_precision" not in report.write_record(
        "04_ablation", {"p": 0}, {}, profile="smoke")  # no device: nothing claimed


def test_records_name_how_the_models_read_back_were_trained(capsys):
    import matplotlib

    from dovlib import train

    def record(**context):
        return report.write_record("04_ablation", {"p": 1}, {}, profile="quick", device="cpu", **context)

    assert (record().get("trained_on"), record()["training_precision"]) == (None, "fp32")  # no model: the profile
    train.note_training("cuda", "bf16", "NVIDIA H100 80GB HBM3")  # a model fit() read back from runs/, from a GPU
    rec = record()
    assert (rec["device"], rec["trained_on"], rec["training_precision"]) == ("cpu", "cuda", "bf16")
    assert (rec["trained_by"], rec["env"]["device_name"]) == ("NVIDIA H100 80GB HBM3", report.device_name("cpu"))
    train.note_training("cpu", "fp32", report.device_name("cpu"))  # and one trained here
    rec = record()
    assert (rec["trained_on"], rec["training_precision"]) == ("cpu+cuda", "bf16+fp32")
    assert rec["trained_by"] == f"{report.device_name('cpu')} + NVIDIA H100 80GB HBM3"
    assert record(training_precision="fp32")["training_precision"] == "fp32"  # what the caller says wins
    with matplotlib.rc_context():  # start_notebook's style is undone afterwards
        report.start_notebook("quick", device="cpu")  # a notebook starts with none
    assert train.training_provenance() == {} and "trained_on" not in record()
    capsys.readouterr()


def test_figures_and_tables_name_how_the_models_were_trained_and_figures_are_written_whole():
    import matplotlib.pyplot as plt
    import pandas as pd

    from dovlib import train

    train.note_training("cuda", "bf16", "NVIDIA H100 80GB HBM3")  # a model read back from runs/
    fig, ax = plt.subplots(figsize=(1, 1))
    report.save_fig(fig, "f", "04_ablation", profile="quick", device="cpu")
    report.save_fig(fig, "g", "04_ablation")  # no device named: nothing claimed
    plt.close(fig)
    report.save_table(pd.DataFrame({"a": [1]}), "t", "04_ablation", profile="quick", device="cpu")
    d = report.reports_dir() / "04_ablation"
    figures, tables = (json.loads((d / f"{k}.json").read_text()) for k in ("figures", "tables"))
    assert (figures["f"]["trained_on"], figures["f"]["training_precision"]) == ("cuda", "bf16")
    assert figures["f"]["trained_by"] == tables["t"]["trained_by"] == "NVIDIA H100 80GB HBM3"
    # a table of numbers no network made (notebook 08's Table 2 beside its HiDDeN) names none of the training
    report.save_table(pd.DataFrame({"a": [1]}), "codecs", "04_ablation", device="cpu",
                      training_precision=report.NOTHING_TRAINED)
    rec = report.write_record("04_ablation", {"p": 2}, {}, device="cpu", training_precision=report.NOTHING_TRAINED)
    codecs = json.loads((d / "tables.json").read_text())["codecs"]
    for ctx in (codecs, rec):
        assert ctx["training_precision"] == "none (nothing trained)"
        assert "trained_on" not in ctx and "trained_by" not in ctx
    assert "trained_on" not in figures["g"] and tables["t"]["trained_on"] == "cuda"
    assert (d / "f.png").read_bytes()[:4] == b"\x89PNG" and not list(d.glob("*.tmp-*"))  # renamed into place


def test_numpy_parameters_find_their_record_again():
    """metrics.json stores numpy scalars as plain numbers; the record key must too, or a cached parameter set is
    never found again (and written twice)."""
    import numpy as np

    report.write_record("04_ablation", {"seed": np.int64(1), "rate": np.float64(0.1)}, {"wsr": 0.4})
    report.write_record("04_ablation", {"seed": 1, "rate": 0.1}, {"wsr": 0.6})
    assert len(report.load_records("04_ablation")) == 1
    assert report.find_record("04_ablation", {"seed": np.int64(1), "rate": 0.1})["metrics"]["wsr"] == 0.6


def test_two_spellings_of_one_profile_find_one_record():
    report.write_record("04_ablation", {"profile": "quick: epochs=10,device=cpu", "seed": 1}, {"wsr": 0.4})
    report.write_record("04_ablation", {"profile": "quick:device=cpu,epochs=10", "seed": 1}, {"wsr": 0.6})
    assert len(report.load_records("04_ablation")) == 1
    assert report.find_record("04_ablation", {"profile": "quick:epochs=10, device=cpu", "seed": 1})[
        "metrics"]["wsr"] == 0.6
    # other budgets stay apart; a string that is not a profile is keyed as written
    assert report.find_record("04_ablation", {"profile": "quick:device=cpu,epochs=11", "seed": 1}) is None
    assert report.record_key({"profile": "fast"}) == '{"profile": "fast"}'


def test_cached_frame_keeps_a_settings_frame_until_params_or_code_change(tmp_path, monkeypatch):
    """A finished setting of a long loop is read back (the same values and dtypes, and what computing it took)
    instead of computed again; other params, other dovlib source, other library versions or recompute=True compute it
    afresh."""
    import math

    from dovlib import reproduce

    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    df = pd.DataFrame({"message": [0, 1], "attack": ["none", "NA"], "param": [math.nan, math.nan],
                       "bit_acc": [1 / 3, 0.5], "failed": [False, True]})
    calls, clock = [], iter(range(0, 1000, 5))
    monkeypatch.setattr(report.time, "perf_counter", lambda: next(clock))  # each compute "takes" 5 s

    def compute():
        calls.append(1)
        return df

    first, reused, seconds = report.cached_frame("07_x", {"L": 100}, compute)
    assert not reused and first is df and len(calls) == 1 and seconds == 5
    again, reused, seconds = report.cached_frame("07_x", {"L": 100}, compute)
    assert reused and len(calls) == 1 and seconds == 5  # the cost of the frame, not of reading it
    pd.testing.assert_frame_equal(again, df, check_dtype=False)
    assert [str(again[c].dtype) for c in ("message", "param", "failed")] == ["int64", "float64", "bool"]
    assert list(again["attack"]) == ["none", "NA"]  # strings pandas would read as missing stay strings
    assert not report.cached_frame("07_x", {"L": 200}, compute)[1] and len(calls) == 2
    assert not report.cached_frame("07_x", {"L": 100}, compute, recompute=True)[1] and len(calls) == 3
    with monkeypatch.context() as m:
        m.setattr(reproduce, "source_hash", lambda: "0" * 64)  # other code: its own frame
        assert not report.cached_frame("07_x", {"L": 100}, compute)[1] and len(calls) == 4
    with monkeypatch.context() as m:
        m.setattr(report, "_library_versions", lambda: {"invisible-watermark": "9.9"})  # another library version
        assert not report.cached_frame("07_x", {"L": 100}, compute)[1] and len(calls) == 5
    assert report.cached_frame("07_x", {"L": 100}, compute)[1] and len(calls) == 5
    # a frame written without its cost (cut short between the two files) is computed again
    for meta in (tmp_path / "runs" / "07_x").rglob("frame.json"):
        meta.unlink()
    assert [report.cached_frame("07_x", {"L": n}, compute)[1] for n in (100, 200)] == [False, False]
    with pytest.raises(TypeError, match="must return a pandas DataFrame"):
        report.cached_frame("07_x", {"L": 300}, lambda: [1, 2])
    with pytest.raises((TypeError, ValueError), match="recompute"):
        report.cached_frame("07_x", {"L": 100}, compute, recompute="False")
    versions = report._library_versions()
    assert versions["torch"] and versions["invisible-watermark"] and set(versions) == set(report.CACHED_FRAME_LIBRARIES)


def test_atomic_write_leaves_no_temporary_file_when_it_fails(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    report._atomic_write(target, "old")

    def fail(src, dst):
        raise OSError("no space left")

    monkeypatch.setattr(report.os, "replace", fail)
    with pytest.raises(OSError, match="no space"):
        report._atomic_write(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_cached_tensors_keeps_a_steps_tensors_until_params_or_code_change(tmp_path, monkeypatch):
    """A finished step whose output is data (a watermarked training set) is read back bit for bit, with what computing
    it took; other params, other dovlib source, recompute=True or a file cut short compute it afresh."""
    from dovlib import reproduce

    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    gen = torch.Generator().manual_seed(0)
    data = {"marked": torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8, generator=gen),
            "bits": torch.randint(0, 2, (5, 7), generator=gen).bool()}
    calls, clock = [], iter(range(0, 1000, 5))
    monkeypatch.setattr(report.time, "perf_counter", lambda: next(clock))

    def compute():
        calls.append(1)
        return data

    first, reused, seconds = report.cached_tensors("10_x", {"set": "amuse"}, compute)
    assert not reused and first is data and seconds == 5
    again, reused, seconds = report.cached_tensors("10_x", {"set": "amuse"}, compute)
    assert reused and len(calls) == 1 and seconds == 5 and set(again) == {"marked", "bits"}
    assert all(again[k].dtype == v.dtype and torch.equal(again[k], v) for k, v in data.items())
    assert not report.cached_tensors("10_x", {"set": "baseline"}, compute)[1] and len(calls) == 2
    assert not report.cached_tensors("10_x", {"set": "amuse"}, compute, recompute=True)[1] and len(calls) == 3
    with monkeypatch.context() as m:
        m.setattr(reproduce, "source_hash", lambda: "0" * 64)
        assert not report.cached_tensors("10_x", {"set": "amuse"}, compute)[1] and len(calls) == 4
    with monkeypatch.context() as m:
        m.setattr(report, "_library_versions", lambda: {"torch": "9.9"})  # another library version
        assert not report.cached_tensors("10_x", {"set": "amuse"}, compute)[1] and len(calls) == 5
    calls.clear()
    for meta in (tmp_path / "runs" / "10_x").rglob("tensors.json"):  # cut short between the two files
        meta.unlink()
    assert not report.cached_tensors("10_x", {"set": "amuse"}, compute)[1] and len(calls) == 1
    assert not list((tmp_path / "runs").rglob("*.tmp"))
    for bad in (lambda: [data["marked"]], lambda: {}, lambda: {"x": [1, 2]}):
        with pytest.raises(TypeError, match="dict of str -> torch.Tensor"):
            report.cached_tensors("10_x", {"set": "bad"}, bad)
    with pytest.raises((TypeError, ValueError), match="recompute"):
        report.cached_tensors("10_x", {"set": "amuse"}, compute, recompute="False")


def test_cached_results_are_computed_once_when_two_jobs_want_the_same_setting(tmp_path, monkeypatch):
    """Two sweep jobs (here threads) asking for the same setting at once: one computes, the other waits on the lock
    and reads the result back."""
    import threading
    import time

    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    calls, results = [], {}

    def compute():
        calls.append(1)
        time.sleep(0.5)
        return {"marked": torch.arange(6, dtype=torch.uint8)}

    def job(name):
        results[name] = report.cached_tensors("10_x", {"set": "amuse"}, compute)

    first = threading.Thread(target=job, args=("first",))
    first.start()
    time.sleep(0.1)
    job("second")
    first.join()
    # whichever job took the lock first computed; the other read its result back
    assert len(calls) == 1 and sorted(r[1] for r in results.values()) == [False, True]
    assert all(torch.equal(r[0]["marked"], torch.arange(6, dtype=torch.uint8)) for r in results.values())


def _cache_and_file(tmp_path, monkeypatch, kind):
    """A cached_tensors or cached_frame result written once: (call, calls, path of the result file)."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    calls = []
    if kind == "tensors":
        result = {"marked": torch.arange(600, dtype=torch.int16).reshape(6, 100)}
        name, cache = "tensors.pt", report.cached_tensors
    else:
        result = pd.DataFrame({"setting": range(300), "bit_acc": [0.5] * 300})
        name, cache = "frame.csv", report.cached_frame

    def compute():
        calls.append(1)
        return result

    def call():
        return cache("10_x", {"set": "amuse"}, compute)

    assert not call()[1] and len(calls) == 1
    (path,) = (tmp_path / "runs").rglob(name)
    return call, calls, path


def _recomputed_once_with_a_warning(call, calls, named, match):
    """The call computes the result again (not reused), with one warning naming the file ``named`` that matches
    ``match``; the next call reads the fresh file back."""
    import re

    with pytest.warns(UserWarning) as caught:
        out, reused, _ = call()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and str(named) in messages[0], messages
    assert caught[0].filename == __file__, caught[0].filename  # the line that asked for the result, not dovlib's
    assert re.search(match, messages[0]) and messages[0].isprintable(), messages[0]
    assert "computed again" in messages[0] and not reused and len(calls) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert call()[1] and len(calls) == 2  # the fresh file replaced the damaged one
    return out


@pytest.mark.parametrize("kind", ["tensors", "frame"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_cached_result_is_computed_again_with_a_warning_naming_it(tmp_path, monkeypatch, kind, damage):
    """A cached result cut short, overwritten with other bytes or emptied (a copy of runs/ interrupted, a full disk):
    torch.load raised its bare RuntimeError, EOFError or an UnpicklingError advising weights_only=False, and
    pandas a bare EmptyDataError or UnicodeDecodeError, none naming the file; and a frame.csv cut short was read
    back as a shorter frame without a word. The cache holds data computed from params and code (the folder's key), as
    crafted marks are (watermarks.base crafts those again, saying so): it is computed again and replaced, with a
    warning naming the file."""
    import random

    call, calls, path = _cache_and_file(tmp_path, monkeypatch, kind)
    good = path.read_bytes()
    path.write_bytes({"truncated": good[: len(good) // 2], "empty": b"",
                      "garbage": random.Random(0).randbytes(len(good))}[damage])
    out = _recomputed_once_with_a_warning(call, calls, path, r"sha256")
    assert path.read_bytes() == good if kind == "tensors" else len(out) == 300


@pytest.mark.parametrize("remove_marker", [False, True])
def test_a_cached_tensors_file_that_would_run_code_is_computed_again_and_runs_nothing(tmp_path, monkeypatch,
                                                                                   plant_code, remove_marker):
    """A foreign tensors.pt whose unpickling would run code (an allowed module's open, or os.remove of a module torch
    blocks) is never run: replaced by a fresh result with a warning naming it, also where its tensors.json was
    replaced to match it (what a copied folder could hold)."""
    import hashlib

    call, calls, path = _cache_and_file(tmp_path, monkeypatch, "tensors")
    marker = plant_code(path, remove_marker=remove_marker, marked=torch.zeros(6, 100))
    _recomputed_once_with_a_warning(call, calls, path, r"sha256")
    assert marker.exists() == remove_marker  # no code ran
    calls.clear()
    assert call()[1] and not calls
    marker = plant_code(path, remove_marker=remove_marker, marked=torch.zeros(6, 100))
    meta = path.with_name("tensors.json")
    meta.write_text(json.dumps({**json.loads(meta.read_text()),
                                "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))
    calls.append(1)
    _recomputed_once_with_a_warning(call, calls, path, r"does not load safely .*GLOBAL")
    assert marker.exists() == remove_marker


@pytest.mark.parametrize("kind", ["tensors", "frame"])
def test_a_foreign_result_whose_cost_file_matches_it_is_refused_by_its_reader_and_computed_again(tmp_path, monkeypatch,
                                                                                             kind):
    """Both files replaced together (a copied folder), so the sha256 matches: a tensors.pt holding no dict of tensors,
    or a frame.csv that is no CSV text, is still computed again with a warning naming it (not returned, nor a bare
    pandas error)."""
    import hashlib

    call, calls, path = _cache_and_file(tmp_path, monkeypatch, kind)
    if kind == "tensors":
        torch.save([torch.zeros(3)], path)
    else:
        path.write_bytes(b"\xff\xfe\x1b[2J")
    meta = path.with_name(f"{path.stem}.json")
    meta.write_text(json.dumps({"seconds": 5, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))
    _recomputed_once_with_a_warning(call, calls, path, r"holds a list" if kind == "tensors" else r"no CSV|not read as")


@pytest.mark.parametrize("kind", ["tensors", "frame"])
@pytest.mark.parametrize("meta_text", ["\x00{]", "[5]", "{}", '{"seconds": "five"}'],
                         ids=["garbled", "a list", "no keys", "seconds not a number"])
def test_an_unreadable_cost_file_beside_a_cached_result_is_computed_again_with_a_warning(tmp_path, monkeypatch,
                                                                                        kind, meta_text):
    """``<stem>.json`` (what computing the result took, and its sha256) garbled, or holding something else: json's
    bare JSONDecodeError, a TypeError or a KeyError ended the run. The result cannot be checked against it: computed
    again, with a warning naming the json file."""
    call, calls, path = _cache_and_file(tmp_path, monkeypatch, kind)
    meta = path.with_name(f"{path.stem}.json")
    meta.write_text(meta_text)
    _recomputed_once_with_a_warning(call, calls, meta, r"what computing")


@pytest.mark.parametrize("kind", ["tensors", "frame"])
@pytest.mark.parametrize("record", [{"seconds": -1.0}, {"seconds": float("nan")}, {"seconds": float("inf")},
                                    {"seconds": True}, {"seconds": "5"}, {"seconds": 5, "sha256": 5}],
                         ids=["negative", "nan", "inf", "bool", "a string", "sha256 not a string"])
def test_a_cost_file_whose_sha256_matches_but_seconds_do_not_read_as_a_cost_is_computed_again(tmp_path, monkeypatch,
                                                                                            kind, record):
    """The result is the file the cache wrote (its sha256 matches), but what computing it took is no number of
    seconds (negative, NaN, infinite, a bool, a string) or the sha256 is no string: never reported as a cost, the
    result is computed again with a warning naming the json file."""
    call, calls, path = _cache_and_file(tmp_path, monkeypatch, kind)
    meta = path.with_name(f"{path.stem}.json")
    meta.write_text(json.dumps({"sha256": json.loads(meta.read_text())["sha256"], **record}))
    _recomputed_once_with_a_warning(call, calls, meta, r"what computing .* holds .*not \{'seconds'")


@pytest.mark.parametrize("kind", ["tensors", "frame"])
def test_a_cost_file_of_bytes_that_are_no_utf8_is_computed_again_with_a_warning(tmp_path, monkeypatch, kind):
    """read_text's bare UnicodeDecodeError (a ValueError, as json's own error is) named no file."""
    call, calls, path = _cache_and_file(tmp_path, monkeypatch, kind)
    path.with_name(f"{path.stem}.json").write_bytes(b'\xff\xfe{"seconds": 1}')
    _recomputed_once_with_a_warning(call, calls, path.with_name(f"{path.stem}.json"), r"UnicodeDecodeError")


@pytest.mark.parametrize("kind", ["tensors", "frame"])
def test_a_cached_result_that_took_no_time_or_whole_seconds_is_reused_with_its_cost(tmp_path, monkeypatch, kind):
    """0 seconds (a timer's resolution) and an int are costs: the result is reused, its cost returned as a float."""
    call, calls, path = _cache_and_file(tmp_path, monkeypatch, kind)
    meta = path.with_name(f"{path.stem}.json")
    sha = json.loads(meta.read_text())["sha256"]
    for seconds in (0, 0.0, 7):
        meta.write_text(json.dumps({"seconds": seconds, "sha256": sha}))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _, reused, got = call()
        assert reused and len(calls) == 1 and got == seconds and type(got) is float


def test_save_atomic_leaves_the_old_file_and_no_temporary_file_when_it_fails(tmp_path, monkeypatch):
    from dovlib import train

    target = tmp_path / "model.pt"
    train._save_atomic({"epoch": 1}, target)

    def fail(obj, f):  # a file object since _save_atomic fsyncs what it wrote
        f.write(b"partial") if hasattr(f, "write") else open(f, "wb").write(b"partial")
        raise OSError("no space left")

    monkeypatch.setattr(train.torch, "save", fail)
    with pytest.raises(OSError, match="no space"):
        train._save_atomic({"epoch": 2}, target)
    monkeypatch.undo()
    assert torch.load(target)["epoch"] == 1 and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_run_context_names_profile_device_and_dataset():
    from dovlib.data import load_dataset

    ds = load_dataset("synthetic", num_classes=3, n_train=30, n_test=9, image_size=8)
    ctx = report.run_context("quick:device=cpu", "cpu", ds, perceptual="ssim")
    assert ctx == {"profile": "quick:device=cpu", "device": "cpu", "device_name": report.env_info("cpu")["device_name"],
                   "dataset": ds.name, "is_subset": ds.is_subset, "dataset_note": ds.describe(), "perceptual": "ssim",
                   "data_hash": data_hash(ds.x_train, ds.y_train, ds.x_test, ds.y_test)}
    # the same name with other images (another seed of the synthetic set) is other data
    other = load_dataset("synthetic", num_classes=3, n_train=30, n_test=9, image_size=8, seed=1)
    assert other.name == ds.name and report.run_context("quick", "cpu", other)["data_hash"] != ctx["data_hash"]
    assert set(report.run_context("smoke", "cpu")) == {"profile", "device", "device_name"}


def test_save_fig_png_and_svg():
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    paths = report.save_fig(fig, "curve", "00_quickstart")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 0 for p in paths)
    assert paths[0].read_bytes()[:4] == b"\x89PNG"


def test_save_table_manifest():
    df = pd.DataFrame({"metric": ["BA"], "paper": [86.78], "ours": [80.0], "diff": [-6.78]})
    p = report.save_table(df, "table1", "02_watermark_dataset", caption="smoke, subset")
    assert pd.read_csv(p).equals(df)
    manifest = json.loads((p.parent / "tables.json").read_text())
    written = manifest["table1"].pop("written")  # when it was saved: the index shows a sweep's newest table
    assert manifest["table1"] == {"file": "table1.csv", "caption": "smoke, subset"}
    assert _dt.datetime.fromisoformat(written).tzinfo is not None


def test_a_sweep_job_names_its_tables_and_figures_after_its_parameters(monkeypatch):
    from dovlib.reproduce import run_tag

    assert report.artifact_name("table1") == "table1"  # a plain run keeps the plain name
    tag = run_tag({"eps": "8/255", "rate": 0.1})
    monkeypatch.setenv(report.RUN_TAG_ENV, tag)
    assert report.artifact_name("table1") == f"table1__{tag}" and "/" not in tag
    p = report.save_table(pd.DataFrame({"x": [1]}), "table1", "04_ablation", caption="job 1")
    assert p.name == f"table1__{tag}.csv"
    saved = json.loads((p.parent / "tables.json").read_text())
    saved[f"table1__{tag}"].pop("written")
    assert saved == {f"table1__{tag}": {"file": p.name, "caption": "job 1"}}
    fig, ax = plt.subplots()
    assert [q.name for q in report.save_fig(fig, "fig4", "04_ablation")] == [f"fig4__{tag}.png", f"fig4__{tag}.svg"]
    plt.close(fig)
    monkeypatch.setenv(report.RUN_TAG_ENV, "a/b")
    with pytest.raises(ValueError, match="DOVLIB_RUN_TAG"):
        report.artifact_name("table1")
    monkeypatch.delenv(report.RUN_TAG_ENV)
    with pytest.raises(ValueError, match="table or figure name"):
        report.save_table(pd.DataFrame({"x": [1]}), "../table1", "04_ablation")


def test_run_dir_is_stable_per_params():
    a = report.run_dir("01_train_generator", {"eps": "8/255", "seed": 0})
    b = report.run_dir("01_train_generator", {"seed": 0, "eps": "8/255"})
    c = report.run_dir("01_train_generator", {"eps": "4/255", "seed": 0})
    assert a == b != c and a.is_dir() and json.loads((a / "params.json").read_text())["seed"] == 0


def test_bad_notebook_name_and_unserialisable():
    with pytest.raises(ValueError, match="notebook"):
        report.notebook_dir("../escape")
    with pytest.raises(TypeError, match="cannot write"):
        report.write_record("00_quickstart", {"a": 1}, {"x": object()})


def test_timer_and_env(monkeypatch):
    clock = iter([10.0, 12.5, 20.0, 21.0])
    monkeypatch.setattr(report.time, "perf_counter", lambda: next(clock))
    with report.timer() as t:
        assert t["seconds"] == 0.0  # set when the block ends
    assert t["seconds"] == 2.5
    with pytest.raises(KeyError):  # an interrupted block is timed too
        with report.timer() as t2:
            raise KeyError("stop")
    assert t2["seconds"] == 1.0
    monkeypatch.undo()
    env = report.env_info("cpu")
    assert env["device"] == "cpu" and "CPU" in env["device_name"]


def test_env_info_names_the_cpu_and_its_kernels(monkeypatch, tmp_path):
    # the same seed trains to other numbers on a CPU whose kernels differ (notebook 10's clean model: 0.510 with
    # AVX512 kernels, other values on other build machines), so every record names the CPU and torch's kernel set
    import torch

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
                    "model name\t: AMD EPYC\nflags\t\t: fpu fma avx2\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n")
    monkeypatch.setattr(report, "CPUINFO", info)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(report.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    for var in report.CPU_KERNEL_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    env = report.env_info("cpu")
    assert env["cpu"] == "AMD EPYC (family 25, model 17)" and env["cpu_kernels"] == "AVX2"
    assert env["cpu_flags"] == "fma avx2" and env["torch_threads"] == 2 and "cpu_kernel_variables" not in env
    assert env["device_name"] == "CPU (AMD EPYC, 2 cores, AVX2 kernels)"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN's convolutions pick their own (measured: it matters)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    env = report.env_info("cpu")
    assert env["cpu_kernel_variables"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}
    assert env["device_name"] == report.device_name("cpu") == "CPU (AMD EPYC, 2 cores, AVX2 kernels, oneDNN AVX2)"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # a sweep job's OMP_NUM_THREADS: other weights again
    assert report.device_name("cpu") == "CPU (AMD EPYC, 2 cores, AVX2 kernels, oneDNN AVX2, 1 thread)"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert report.env_info("cuda")["cpu"] == "AMD EPYC (family 25, model 17)"  # a GPU run's CPU work too
    info.write_text("model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\ncpu family\t: 6\nmodel\t\t: 106\n"
                    "flags\t\t: avx512_bf16 fma avx2 avx512f amx_tile\n")
    env = report.env_info("cpu")
    assert env["device_name"] == "CPU (Intel Xeon Platinum 8375C CPU @ 2.90GHz, 2 cores, AVX2 kernels)"
    assert env["cpu_flags"] == "fma avx2 avx512f avx512_bf16 amx_tile"  # in a fixed order, whatever cpuinfo's
    monkeypatch.setattr(report, "CPUINFO", tmp_path / "missing")  # macOS, Windows: what platform knows
    monkeypatch.setattr(report.platform, "processor", lambda: "arm")
    assert report.env_info("cpu")["cpu"] == "arm" and report.env_info("cpu")["cpu_flags"] == ""
    monkeypatch.setattr(report.platform, "processor", lambda: "")
    monkeypatch.setattr(report.platform, "machine", lambda: "x86_64")
    assert report.env_info("cpu")["device_name"] == "CPU (x86_64, 2 cores, AVX2 kernels)"


def test_env_info_names_the_gpu_that_runs(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: f"GPU#{torch.device(d).index}")
    assert report.env_info("cuda:1")["device_name"] == "GPU#1"  # not always GPU 0
    assert report.env_info("mps")["device_name"] == "Apple GPU (MPS)"


def test_start_notebook_seeds_styles_and_names_the_run(capsys):
    import matplotlib

    with matplotlib.rc_context({"savefig.dpi": 72}):  # the style is undone afterwards: no leak into other tests
        _start_notebook_checks(capsys)


def test_start_notebook_warns_when_a_gpu_profile_finds_no_gpu(monkeypatch, capsys):
    # README's first papermill example (-p profile quick) started an hour of CPU training without a word
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with matplotlib.rc_context():
        for profile, duration in (("quick", "an hour or more"), ("paper", "days"), ("quick:epochs=10", None)):
            with pytest.warns(UserWarning, match=r"sized for a GPU but none was found.*-p profile smoke") as got:
                assert report.start_notebook(profile, device="auto").type == "cpu"
            text = str(got[0].message)
            # a budget with overrides was not measured: no duration is claimed for it
            assert (f"runs on the CPU, for {duration}" in text) if duration else ("runs on the CPU. On a CPU" in text)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a CPU the user asked for, and smoke, are not warned about
            report.start_notebook("quick:device=cpu", device="cpu")
            report.start_notebook("smoke", device="auto")
    capsys.readouterr()


def test_start_notebook_without_a_gpu_suggests_the_users_own_budget_on_the_cpu(monkeypatch, capsys):
    """A quick string with overrides and no GPU (papermill -p profile "quick:epochs=2,width=8" on a laptop) was told
    to use "a smaller budget such as quick:device=cpu,epochs=10,width=16": five times its epochs and twice its width.
    It is now shown its own budget with device=cpu, the spelling that runs it on the CPU without the warning; the
    string is the canonical one, so a device=auto given is replaced, never given twice (which get_profile refuses)."""
    from dovlib.params import get_profile

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with matplotlib.rc_context():
        for given, suggested in (("quick:epochs=2,width=8", "quick:epochs=2,width=8,device=cpu"),
                                 ("paper: device=auto, lr=5e-2", "paper:lr=0.05,device=cpu")):
            with pytest.warns(UserWarning, match="sized for a GPU but none was found") as got:
                report.start_notebook(given, device="auto")
            text = str(got[0].message)
            assert f"-p profile '{suggested}'" in text and "epochs=10,width=16" not in text, text
            assert get_profile(suggested) == get_profile(given).with_overrides(device="cpu")
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # as suggested: no warning
                report.start_notebook(suggested, device=get_profile(suggested).device)
    capsys.readouterr()


def test_start_notebook_refuses_a_seed_numpy_cannot_use_by_name():
    for bad in (-1, 1.5, "x"):
        with pytest.raises((ValueError, TypeError), match=r"seed must be an integer in \[0, 2147483647\]"):
            report.start_notebook("smoke", seed=bad, device="cpu")


def _start_notebook_checks(capsys):
    import random

    import matplotlib
    import numpy as np

    dev = report.start_notebook("quick:device=cpu,epochs=2", seed=7, device="cpu", note="subset")
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    assert dev == torch.device("cpu")
    assert matplotlib.rcParams["savefig.dpi"] == 150  # the project's style was set
    line = capsys.readouterr().out.strip()
    assert line.split(" | ") == [f"dovlib {dovlib.__version__}", f"torch {torch.__version__}",
                                 report.env_info("cpu")["device_name"], "profile quick:device=cpu,epochs=2", "seed 7",
                                 "subset"]
    report.start_notebook("smoke", seed=7, device="cpu")
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first  # same seed, same draws
    report.start_notebook("smoke", device="cpu")
    assert "seed" not in capsys.readouterr().out.splitlines()[-1]
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            report.start_notebook("smoke", device="cuda")


def test_reports_env_sets_and_restores(tmp_path, monkeypatch):
    monkeypatch.delenv("DOVLIB_REPORTS", raising=False)
    with report.reports_env(tmp_path / "a") as path:
        assert os.environ["DOVLIB_REPORTS"] == str(path) == str((tmp_path / "a").resolve())
        assert report.reports_dir() == path
    assert "DOVLIB_REPORTS" not in os.environ
    monkeypatch.setenv("DOVLIB_REPORTS", "keep")
    with pytest.raises(RuntimeError), report.reports_env(tmp_path / "b"):
        raise RuntimeError("restored even on error")
    assert os.environ["DOVLIB_REPORTS"] == "keep"


def test_record_key_runs_dir_and_file_lock(tmp_path, monkeypatch):
    from filelock import Timeout

    assert report.record_key({"b": 1, "a": 2}) == report.record_key({"a": 2, "b": 1})  # order does not matter
    assert report.record_key({"p": tmp_path}) == json.dumps({"p": str(tmp_path)})  # paths as text
    assert report.runs_dir() == tmp_path / "runs"  # the autouse fixture's $DOVLIB_RUNS
    monkeypatch.delenv("DOVLIB_RUNS")
    assert report.runs_dir() == report.REPO_ROOT / "runs"
    target = tmp_path / "metrics.json"
    with report.file_lock(target):
        assert (tmp_path / "metrics.json.lock").exists()
        with pytest.raises(Timeout):  # a second holder (another process in practice) has to wait
            report.file_lock(target, timeout=0.1).acquire()
    with report.file_lock(target, timeout=0.1):  # released on exit
        pass


def test_start_notebook_warns_only_without_a_gpu_and_reads_the_profiles_base_name(monkeypatch, capsys):
    """A quick or paper profile that finds a GPU runs where it was sized to: no warning. Without one, the base name
    is read as get_profile reads it (spaces around it allowed)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("error")
        for profile in ("quick", "paper"):
            assert report.start_notebook(profile, device="auto").type == "cuda"
    assert "cuda (Test GPU)" in capsys.readouterr().out
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    from dovlib.params import get_profile

    assert get_profile("quick :epochs=10").epochs == 10
    with matplotlib.rc_context(), pytest.warns(UserWarning, match="sized for a GPU but none was found"):
        report.start_notebook("quick :epochs=10", device="auto")
    capsys.readouterr()


@pytest.mark.parametrize("var, what", [("DOVLIB_REPORTS", "tables, figures and records go to"),
                                       ("DOVLIB_RUNS", "checkpoints and cached results go to"),
                                       ("DOVLIB_CACHE", "dataset downloads and decoded arrays are read from"),
                                       ("DOVLIB_IMAGENET", "Sub-ImageNet images are read from")])
def test_start_notebook_names_where_a_relative_folder_variable_points(tmp_path, monkeypatch, var, what):
    """A folder variable exported relative (from the repository's folder, before `jupyter lab`) is read from the
    kernel's working folder, notebooks/: each one warns with the folder it resolves to; an absolute one does not."""
    from dovlib.report import start_notebook

    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    for other in ("DOVLIB_REPORTS", "DOVLIB_RUNS", "DOVLIB_CACHE", "DOVLIB_IMAGENET"):
        monkeypatch.setenv(other, str(tmp_path / other.lower()))
    monkeypatch.setenv(var, "../shared/x")
    with pytest.warns(UserWarning) as caught:
        start_notebook("smoke", 0, "cpu")
    relative = [str(w.message) for w in caught if "is relative" in str(w.message)]
    assert relative == [f"{var}='../shared/x' is relative: read from the working folder {tmp_path / 'notebooks'} (a "
                        f"Jupyter kernel's is the notebook's folder), so this run's {what} "
                        f"{(tmp_path / 'notebooks' / '../shared/x').resolve()}. For another folder, export its "
                        f"absolute path before starting Jupyter (e.g. export {var}=$(realpath ../shared/x) in the "
                        f"folder it is relative to)"]
    monkeypatch.setenv(var, str(tmp_path / "abs"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        start_notebook("smoke", 0, "cpu")


@pytest.mark.parametrize("var", ["DOVLIB_REPORTS", "DOVLIB_RUNS", "DOVLIB_CACHE", "DOVLIB_IMAGENET"])
def test_a_folder_variable_with_a_tilde_is_the_home_folder(tmp_path, monkeypatch, var):
    """``export DOVLIB_REPORTS="~/dov"`` (quoted, so the shell leaves the tilde) made a folder named "~" in the
    working folder, and start_notebook called it relative; DOVLIB_DATA already read the tilde as the home folder.
    Every folder variable now does."""
    from dovlib.data import data_dir, offline_data_dir
    from dovlib.report import reports_dir, runs_dir, start_notebook

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for other in ("DOVLIB_REPORTS", "DOVLIB_RUNS", "DOVLIB_CACHE", "DOVLIB_IMAGENET"):
        monkeypatch.setenv(other, str(tmp_path / other.lower()))
    monkeypatch.setenv(var, "~/dov")
    monkeypatch.setenv("DOVLIB_DATA", "~/data")
    folder = {"DOVLIB_REPORTS": reports_dir, "DOVLIB_RUNS": runs_dir, "DOVLIB_CACHE": data_dir}.get(var)
    if folder is not None:
        assert folder() == tmp_path / "home" / "dov"
    assert offline_data_dir() == (tmp_path / "home" / "data").resolve()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # absolute once the tilde is read: no "is relative" warning
        start_notebook("smoke", 0, "cpu")
    assert not (tmp_path / "~").exists()


def test_run_times_count_each_artefact_at_its_stored_cost_once():
    def used(artifact, cost, spent, reused):
        return {"artifact": artifact, "cost": cost, "spent": spent, "reused": reused}

    t1 = {"seconds": 10.0, "used": [used("/r/a.pt", 100.0, 1.0, True), used("/r/b.pt", 30.0, 2.0, False)]}
    t2 = {"seconds": 5.0, "used": [used("/r/a.pt", 100.0, 0.5, True), used("/r/c.pt", None, 1.5, True)]}
    # cells 15 s, 5 s of it obtaining artefacts; a (read back twice) counts 100 once, b trained here 30, c (no stored
    # cost: older code) its 1.5 s of reading
    assert report.run_times(t1, t2) == {"wall_time": 15.0, "compute_time": 15.0 - 5.0 + 100.0 + 30.0 + 1.5,
                                        "cached_compute_time": 101.5, "cached_artifacts": 2}
    assert report.run_times({"seconds": 2.0, "used": []})["compute_time"] == 2.0  # nothing cached: the cells' time
    with pytest.raises(TypeError, match="run_times takes the dicts timer"):
        report.run_times(2.0)


def test_a_cached_result_read_back_counts_what_computing_it_took(tmp_path, monkeypatch):
    """cached_frame and cached_tensors enter the compute ledger: a timer around a call that reads a result back counts
    it in compute_time at the seconds computing it took (kept beside it), in wall_time at its reading."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"bit_acc": [1.0, 0.5]})

    def cell():
        with report.timer() as t:
            _, reused, seconds = report.cached_frame("07_x", {"L": 100}, compute)
            tensors = report.cached_tensors("10_x", {"set": "amuse"}, lambda: {"x": torch.zeros(3)})
        return t, reused, seconds, tensors[2]

    t_cold, reused, frame_s, tensor_s = cell()
    assert not reused and [e["reused"] for e in t_cold["used"]] == [False, False]
    assert [e["cost"] for e in t_cold["used"]] == [frame_s, tensor_s]  # what computing them took
    cold = report.run_times(t_cold)
    assert cold["cached_artifacts"] == 0 and cold["compute_time"] >= frame_s + tensor_s
    t_warm, reused, again_s, tensor_again = cell()
    assert reused and len(calls) == 1 and (again_s, tensor_again) == (frame_s, tensor_s)
    warm = report.run_times(t_warm)
    assert (warm["cached_artifacts"], warm["cached_compute_time"]) == (2, frame_s + tensor_s)  # not their reading
    assert warm["compute_time"] >= frame_s + tensor_s
    assert [e["artifact"].rsplit("/", 1)[-1] for e in t_warm["used"]] == ["frame.csv", "tensors.pt"]


def test_a_record_reusing_a_cached_model_counts_its_training_time(tmp_path, capsys):
    from dovlib.data import load_dataset
    from dovlib.models import build_model
    from dovlib.train import fit

    ds = load_dataset("synthetic", num_classes=4, n_train=128, n_test=32, image_size=16)
    ckpt, kw = tmp_path / "m.pt", dict(epochs=1, batch_size=64, progress=False)

    def cell():
        torch.manual_seed(0)
        with report.timer() as t:
            res = fit(build_model("resnet18", num_classes=4, width=4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
            fit(build_model("resnet18", num_classes=4, width=4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
        return res, report.write_record("01_train_generator", {"p": 1}, {}, **report.run_times(t))

    with matplotlib.rc_context():
        report.start_notebook("smoke", device="cpu")
    cold, _ = cell()
    stored = torch.load(ckpt, weights_only=False)["compute_time"]
    _, warm = cell()  # both fits read it back
    assert warm["compute_time"] >= stored > cold.wall_time  # not the seconds reading it back took
    assert (warm["cached_compute_time"], warm["cached_artifacts"]) == (stored, 1)  # used twice, counted once
    assert report.load_records("01_train_generator")[0]["compute_time"] == warm["compute_time"]
    from dovlib.train import compute_ledger

    assert compute_ledger()
    with matplotlib.rc_context():
        report.start_notebook("smoke", device="cpu")  # a notebook starts with an empty ledger
    assert compute_ledger() == []
    capsys.readouterr()


def test_record_summary_says_what_a_record_holds_in_one_line():
    """Notebooks 00-03 ended by printing the record as a raw dict ({'profile': 'smoke', ..., 'is_subset': True}
    {'test_acc': 0.11666666666666667, ...}): record_summary writes where it went, what it was measured on, its times
    and (metrics=True) its numbers with 4 significant digits; nested metrics are left to metrics.json."""
    record = report.write_record("00_quickstart", {"profile": "smoke", "seed": 0},
                                 {"test_acc": 0.11666666666666667, "images_per_second": 2345.678, "n_marked": 12,
                                  "verified": True, "models": [{"p": 1.0}], "BA_benign": float("nan")},
                                 profile="smoke", dataset="cifar10-subset", is_subset=True, device="cpu",
                                 perceptual="ssim", wall_time=12.345, compute_time=60.0)
    line = report.record_summary(record)
    assert line == ("recorded in metrics.json (profile smoke, dataset cifar10-subset (subset), cpu, perceptual ssim): "
                    "wall time 12.3 s, compute time 60.0 s"), line
    full = report.record_summary(record, metrics=True)
    assert full.startswith(line + "; test_acc 0.1167, images_per_second 2346, n_marked 12, verified True, "
                                  "BA_benign nan"), full
    assert "models" not in full and "{" not in full
    import numpy as np

    numpy_record = dict(record, metrics={"n": np.int64(5), "acc": np.float32(0.25), "ok": np.bool_(True),
                                         "t": torch.tensor(0.5)})
    assert report.record_summary(numpy_record, metrics=True).endswith("; n 5, acc 0.25, ok True, t 0.5")
    whole = dict(record, is_subset=False, perceptual=None)
    del whole["compute_time"]  # records before stop 64 have none
    assert report.record_summary(whole) == ("recorded in metrics.json (profile smoke, dataset cifar10-subset (full), "
                                            "cpu): wall time 12.3 s"), report.record_summary(whole)
    # the dataset as the index names it: notebook 09's simulated extraction read no images (it said "simulated: the
    # full set"), and 08's two tables each read their own
    simulated = dict(whole, dataset="simulated")
    assert "(profile smoke, dataset none (simulated), cpu)" in report.record_summary(simulated)
    two = dict(whole, dataset="cifar10-subset (Table 1), skimage-photos (Table 2)", is_subset=True,
               datasets={"Table 1": {"dataset": "cifar10-subset", "is_subset": True},
                         "Table 2": {"dataset": "skimage-photos", "is_subset": False}})
    assert ("dataset cifar10-subset (subset) for Table 1, skimage-photos (full) for Table 2, cpu)"
            in report.record_summary(two)), report.record_summary(two)
    with pytest.raises(TypeError, match="record_summary needs a record .* write_record"):
        report.record_summary({"profile": "smoke"})


def test_record_summary_names_the_metrics_file_of_its_notebook(tmp_path, monkeypatch):
    """"recorded in metrics.json" did not say which: given the notebook, the line names its file, relative to the
    repository when the reports live there, and refuses a notebook whose metrics.json does not hold the record
    (without making that notebook's folder)."""
    record = report.write_record("09_amuse_subset_attack", {"profile": "smoke", "seed": 1}, {"acc": 0.5},
                                 profile="smoke", device="cpu", wall_time=2.0)
    line = report.record_summary(record, notebook="09_amuse_subset_attack")
    path = tmp_path / "reports" / "09_amuse_subset_attack" / "metrics.json"
    assert line == f"recorded in {path} (profile smoke, cpu): wall time 2.0 s", line
    with pytest.raises(ValueError, match=r"10_amuse_ml_task/metrics\.json holds no record .* notebook must be"):
        report.record_summary(record, notebook="10_amuse_ml_task")
    assert not (tmp_path / "reports" / "10_amuse_ml_task").exists()
    report.write_record("10_amuse_ml_task", {"profile": "smoke", "seed": 2}, {"acc": 0.5})  # another record there
    with pytest.raises(ValueError, match="holds no record with this record's params"):
        report.record_summary(record, notebook="10_amuse_ml_task")
    monkeypatch.setattr(report, "REPO_ROOT", tmp_path)  # the reports inside the repository: a relative path
    assert report.record_summary(record, metrics=True, notebook="09_amuse_subset_attack") == (
        "recorded in reports/09_amuse_subset_attack/metrics.json (profile smoke, cpu): wall time 2.0 s; acc 0.5")
