"""Notebook options that nbval's run (default parameters, smoke profile) does not reach, executed with papermill on
the smoke profile: their cells must run and write what the README says they write."""

import json
from pathlib import Path
import re

import pandas as pd
import pytest

from dovlib import reproduce as rp
from dovlib import sscl
from dovlib.data import REPO_ROOT, load_dataset
from dovlib.params import get_profile
from dovlib.report import device_name
from dovlib.train import evaluate


def _notebook_data(profile: str):
    """The data notebooks 01-03 run on with ``profile`` (their defaults: cifar10-subset, seed 0)."""
    cfg = get_profile(profile)
    return load_dataset("cifar10-subset").subsample(cfg.n_train, cfg.n_test, seed=0)


def _capped_rate(y, rate: float, targets) -> float:
    """gamma per class: ``rate``, or the smallest target class's share of the training labels ``y`` when smaller."""
    return min([rate] + [int((y == int(t)).sum()) / len(y) for t in targets])


def _code_rows_consistent(rows, targets, alpha: float = 0.01, test: str = "") -> None:
    """Each code row's p-value is the intersection-union one (its classes' largest) and claims exactly below alpha;
    ``test`` "bounded_": the betting test's columns (bounded_p_value, bounded_p_<class>, bounded_verified)."""
    per_class = rows[[f"{test}p_{t}" for t in targets]].astype(float).max(axis=1)
    assert list(rows[f"{test}p_value"]) == pytest.approx(list(per_class), rel=1e-12)
    assert (rows[f"{test}verified"].astype(bool) == (rows[f"{test}p_value"] < alpha)).all()


def _kept_attempt(log, keys=("attempt",)):
    """The selection's choice, from its log alone: the first attempt whose proxies all verify (the selection stops
    there), else the first with the smallest largest proxy p-value, ties broken by the other test's largest p-value
    on the same answers; with its largest p-value."""
    by = list(keys) if len(keys) > 1 else keys[0]
    other = "bounded_p_value" if set(log.test) == {"ttest"} else "ttest_p_value"
    worst, other_worst = log.groupby(by).p_value.max(), log.groupby(by)[other].max()
    passed = [k for k, g in log.groupby(by) if g.verified.all()]
    kept = passed[0] if passed else min(worst.index, key=lambda k: (worst[k], other_worst[k]))
    return kept, worst[kept], bool(passed)


def test_verification_notebook_runs_the_target_code(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "03_verification.ipynb",
                          {"profile": "smoke:width=4,gen_iters=15,n_test=40", "n_targets": 2, "n_models": 1,
                           "same_code": True, "select_attempts": 2, "surrogate_width": 4, "hard_pool": 3,
                           "target": "key"},
                          reports=reports)
    assert res.status == "ok", res.error
    out = reports / "03_verification"
    # the tables it shows give each value its own digits: one tiny p-value turned a whole column into scientific
    # notation (delta_p 0.76 shown as 7.625539e-01, p = 1 as 1.000000e+00); the CSVs keep every digit
    shown = _outputs_text(reports / res.output)
    for v in pd.read_csv(out / "table2_verification.csv").ours:
        assert f"{v:.3g}" in shown, (v, shown)
    assert not re.findall(r"\d\.\d+e[-+]0[01]\b", shown), re.findall(r".*\d\.\d+e[-+]0[01]\b.*", shown)
    record = json.loads((out / "metrics.json").read_text())["records"][-1]
    code = record["metrics"]["target_code"]
    assert len(code["targets"]) == 2 and code["targets"][0] == record["params"]["target"]
    # the code cell's times, as run_times gives them; the record's cover it and the single target's cell
    assert {"wall_time", "compute_time", "cached_compute_time", "cached_artifacts"} <= set(code)
    assert record["wall_time"] > code["wall_time"] > 0 and record["compute_time"] > code["compute_time"] > 0
    rows = pd.DataFrame(code["models"])
    assert set(rows.scenario) == {"Malicious", "Ind-M", "Ind-W plain", "Ind-W code", "Ind-W same code"}
    assert record["params"]["same_code"] is True and record["params"]["surrogate_width"] == 4
    # m not given: the profile's verify_m (40) capped at the 36 test images outside the target class, not refused
    assert record["params"]["m"] == 36 and (rows.scenario == "Malicious").any()
    # hard_pool with target "key": our whole code (the single-target rows' class too) and the Ind-W code owner's
    # other class come from the 3 hardest classes on our surrogate, in the key's order
    params = record["params"]
    assert params["hard_pool"] == 3 and len(code["pool"]) == 3 and set(code["targets"]) <= set(code["pool"])
    assert params["target_from_key"] is True and params["target"] == code["targets"][0] and code["targets"] == list(
        sscl.key_targets(20240607, 10, 2, pool=code["pool"]))
    assert 0 < params["target_rate"] <= params["rate"] and code["rate_per_class"] <= params["target_rate"]
    t, names = params["target"], _notebook_data("smoke:width=4,gen_iters=15,n_test=40").classes
    caption = json.loads((out / "tables.json").read_text())["table2_rates"]["caption"]
    assert f"target {t} ({names[t]}, from the key)" in caption, caption  # named as in notebooks 02 and 04-06
    # gamma capped at the drawn classes' share of the training set: the single target's, and the code's smallest
    ds = _notebook_data("smoke:width=4,gen_iters=15,n_test=40")
    assert params["target_rate"] == _capped_rate(ds.y_train, params["rate"], [params["target"]])
    assert code["rate_per_class"] == _capped_rate(ds.y_train, params["rate"], code["targets"])
    assert all(t[1] in code["pool"] for t in rows[rows.scenario == "Ind-W code"].other_targets)
    others = rows[rows.scenario.isin(["Ind-W code", "Ind-W same code"])]
    # the other owners' own test on their own model: verified exactly when its p-value is below alpha
    assert (others.own_verified.astype(float) == (others.own_p_value < 0.01).astype(float)).all()
    assert (others.bounded_own_verified.astype(float) == (others.bounded_own_p_value < 0.01).astype(float)).all()
    mine = rows[~rows.scenario.isin(["Ind-W code", "Ind-W same code"])]
    assert mine.own_p_value.isna().all() and mine.bounded_own_p_value.isna().all()
    assert {f"WSR_{t}" for t in code["targets"]} <= set(rows.columns)
    _code_rows_consistent(rows, code["targets"])
    _code_rows_consistent(rows, code["targets"], test="bounded_")  # the betting test beside it, every row
    table = pd.read_csv(out / "target_code_rates.csv")
    assert list(table.scenario) == ["Malicious", "Ind-M", "Ind-W plain", "Ind-W code", "Ind-W same code"]
    assert table.own_verified_rate.iloc[:3].isna().all() and table.own_verified_rate.iloc[3:].between(0, 1).all()
    # the table is the per-scenario summary of the rows (one model each here)
    by = rows.assign(own_verified=rows.own_verified.astype(float), verified=rows.verified.astype(float),
                     other_self_check=rows.other_self_check.astype(float),
                     bounded_own_verified=rows.bounded_own_verified.astype(float),
                     bounded_verified=rows.bounded_verified.astype(float)).groupby("scenario")
    want = pd.DataFrame({"models": by.size(), "verified_rate": by.verified.mean(), "p_value_max": by.p_value.max(),
                         "BA": by.BA.mean(), "own_verified_rate": by.own_verified.mean(),
                         "other_self_check_rate": by.other_self_check.mean(),
                         "bounded_verified_rate": by.bounded_verified.mean(),
                         "bounded_p_value_max": by.bounded_p_value.max(),
                         "bounded_own_verified_rate": by.bounded_own_verified.mean()}).loc[list(table.scenario)]
    for col in want.columns:
        assert list(table[col]) == pytest.approx(list(want[col]), rel=1e-9, nan_ok=True), col
    assert (out / "target_code_wsr.png").is_file() and (out / "delta_per_image.png").is_file()
    # each class's own count (verify_m 40 capped at its non-target test images), not the first class's "per class"
    caption = json.loads((out / "tables.json").read_text())["target_code_rates"]["caption"]
    assert sscl.code_queries(ds, code["targets"], None, 40) in caption, caption
    assert code["m_per_class"] == [sscl.query_count(ds, t, None, 40) for t in code["targets"]]  # and the record
    # owner-side selection: ours and every other code owner's, each attempt's self-check logged
    sel = code["selection"]
    assert record["params"]["select_attempts"] == 2 and sel["attempt"] in (0, 1) and 1 <= sel["attempts_tried"] <= 2
    log = pd.read_csv(out / "code_selection.csv")
    assert list(log.attempt) == list(range(sel["attempts_tried"])) and log.p_value.between(0, 1).all()
    caption = json.loads((out / "tables.json").read_text())["code_selection"]["caption"]
    assert "decided by the paper's t-test;" in caption, caption
    assert sel["passed"] == bool(log[log.attempt == sel["attempt"]].verified.all())
    # every proxy's test: the code's intersection-union p-value, verified below the check level (alpha here)
    assert (log.check_alpha == 0.01).all()
    _code_rows_consistent(log, code["targets"])
    # the attempt published (or kept) is the one the log says, and the selection tried no attempt past a pass
    kept, worst, passed = _kept_attempt(log)
    assert (sel["attempt"], sel["passed"]) == (kept, passed) and sel["proxy_p_max"] == pytest.approx(worst)
    assert sel["attempts_tried"] == (kept + 1 if passed else 2)
    assert others.other_attempt.isin([0, 1]).all() and table.other_self_check_rate.iloc[3:].between(0, 1).all()


def test_verification_notebook_redraws_a_code_that_fails_the_owners_check(tmp_path, monkeypatch):
    """code_draws: a check no proxy passes (p < 1e-8 at this tiny scale; 40 queries cannot go below 6.8e-9, so
    1e-300 is now refused up front) makes every owner try a second code without the class its proxies learnt least;
    the record lists both codes and the class dropped, the log both draws."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "03_verification.ipynb",
                          {"profile": "smoke:width=4,gen_iters=5,epochs=1,n_train=300,n_test=200", "n_targets": 2,
                           "n_models": 1, "select_attempts": 2, "surrogate_width": 4, "target": "key", "code_draws": 2,
                           "check_alpha": "1e-8"}, reports=reports)
    assert res.status == "ok", res.error
    out = reports / "03_verification"
    record = json.loads((out / "metrics.json").read_text())["records"][-1]
    params, code = record["params"], record["metrics"]["target_code"]
    sel = code["selection"]
    first = list(sscl.key_targets(20240607, 10, 2))
    assert params["code_draws"] == 2 and sel["draws_tried"] == 2 and not sel["passed"]
    dropped, = sel["excluded"]
    second = list(sscl.key_targets(20240607, 10, 2, pool=[c for c in range(10) if c != dropped]))
    assert dropped in first and sel["codes_tried"] == [first, second] and dropped not in second
    assert code["targets"] == sel["codes_tried"][sel["draw"]]
    log = pd.read_csv(out / "code_selection.csv")
    assert list(log.draw) == [0, 0, 1, 1] and list(log.attempt) == [0, 1, 0, 1] and not log.verified.any()
    # no draw passed: kept is the (draw, attempt) of the smallest largest proxy p-value (ties: the other test's)
    kept, worst, passed = _kept_attempt(log, ("draw", "attempt"))
    assert not passed and (sel["draw"], sel["attempt"]) == kept and sel["proxy_p_max"] == pytest.approx(worst)
    # the class dropped is the first code's least learnt on its proxies: the most proxies missing the check, then
    # the largest median p-value, then the later place in the code
    draw0 = log[log.draw == 0]
    score = {t: (int((draw0[f"p_{t}"] >= 1e-8).sum()), float(draw0[f"p_{t}"].median()), first.index(t))
             for t in first}
    assert dropped == max(first, key=score.get)
    other = pd.DataFrame(code["models"]).query("scenario == 'Ind-W code'").iloc[0]
    assert other.other_draw in (0, 1) and other.other_targets[0] == code["targets"][0]
    assert not other.other_self_check  # the other code owner's check cannot pass either
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "03_verification.ipynb",
                          {"profile": "smoke", "n_targets": 2, "code_draws": 2}, reports=reports)
    assert res.status == "failed" and "code_draws > 1" in res.error and "select_attempts >= 2" in res.error


def test_verification_notebook_keeps_a_fixed_target_first_in_a_hard_pool_code(tmp_path, monkeypatch):
    """hard_pool with a fixed target (not 'key'): the target stays first and unchanged, only the code's other class
    is drawn from the key among the pool; the single-target runs keep gamma as given (no `target_rate` or
    `target_from_key` recorded, unlike target 'key') and the code's per-class gamma is at most gamma."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "03_verification.ipynb",
                          {"profile": "smoke:width=4,gen_iters=15", "n_targets": 2, "n_models": 1,
                           "surrogate_width": 4, "hard_pool": 3, "target": 7, "tau": 0.2}, reports=reports)
    assert res.status == "ok", res.error
    record = json.loads((reports / "03_verification" / "metrics.json").read_text())["records"][-1]
    # the code's table and figure say the tau and alpha its tests used (they named neither)
    caption = json.loads((reports / "03_verification" / "tables.json").read_text())["target_code_rates"]["caption"]
    assert record["params"]["tau"] == 0.2 and "m 40 per class, tau 0.2, alpha 0.01," in caption, caption
    # and the hard pool the key drew the code's other class among (it named none)
    pool = record["metrics"]["target_code"]["pool"]
    assert caption.endswith(f"surrogate width 4, {sscl.pool_label(pool)}") and len(pool) == 3, caption
    params, code = record["params"], record["metrics"]["target_code"]
    assert params["target"] == 7 and params["hard_pool"] == 3 and len(code["pool"]) == 3
    assert "target_from_key" not in params and "target_rate" not in params
    assert 0 < code["rate_per_class"] <= params["rate"]
    ds = _notebook_data("smoke:width=4,gen_iters=15")
    assert code["rate_per_class"] == _capped_rate(ds.y_train, params["rate"], code["targets"])
    assert code["targets"] == list(sscl.key_targets(20240607, 10, 2, first=7, pool=code["pool"]))
    assert code["targets"][0] == 7 and code["targets"][1] in code["pool"]
    rows = pd.DataFrame(code["models"])
    others = rows[rows.scenario == "Ind-W code"].other_targets
    assert len(others) == 1 and all(t[0] == 7 and t[1] in code["pool"] for t in others)
    assert {f"WSR_{t}" for t in code["targets"]} <= set(rows.columns) and rows.p_value.between(0, 1).all()
    _code_rows_consistent(rows, code["targets"])


def test_verification_notebook_refuses_code_options_without_a_code(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "03_verification.ipynb", {"profile": "smoke", "same_code": True},
                          reports=tmp_path / "reports")
    assert res.status == "failed" and "same_code" in res.error and "n_targets must be 2 or more" in res.error
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "03_verification.ipynb",
                          {"profile": "smoke", "n_targets": 2, "hard_pool": 1}, reports=tmp_path / "reports")
    assert res.status == "failed" and "hard_pool must be 0 (off) or at least n_targets = 2" in res.error
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "03_verification.ipynb", {"profile": "smoke", "hard_pool": 3},
                          reports=tmp_path / "reports")  # one fixed target: nothing is drawn from the key
    assert res.status == "failed" and "needs classes drawn from the key" in res.error
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "03_verification.ipynb", {"profile": "smoke", "target": "first"},
                          reports=tmp_path / "reports")
    assert res.status == "failed" and "target must be a class index >= 0 or 'key'" in res.error
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "03_verification.ipynb",
                          {"profile": "smoke", "n_targets": 2, "hard_pool": 11}, reports=tmp_path / "reports")
    assert res.status == "failed" and "hard_pool must be an integer in [0, 10]; got 11" in res.error  # before training
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "02_watermark_dataset.ipynb",
                          {"profile": "smoke", "redraw_surrogate": True}, reports=tmp_path / "reports")
    assert res.status == "failed" and "redraw_surrogate=True needs select_attempts >= 2" in res.error
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "03_verification.ipynb",
                          {"profile": "smoke", "select_attempts": 2, "check_alpha": 0.05}, reports=tmp_path / "reports")
    assert res.status == "failed" and "check_alpha" in res.error and "at most alpha = 0.01" in res.error



@pytest.mark.parametrize("notebook", ["02_watermark_dataset", "03_verification"])
def test_notebooks_refuse_a_bad_check_test_and_one_without_selection(tmp_path, monkeypatch, notebook):
    """check_test names the owner's check test: an unknown one, or the bounded test with no selection to check
    (select_attempts 1), is refused by name in the first cells, before any data, surrogate or model."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    path = REPO_ROOT / "notebooks" / f"{notebook}.ipynb"
    res = rp.run_notebook(path, {"profile": "smoke", "select_attempts": 2, "check_test": "both"},
                          reports=tmp_path / "reports")
    assert res.status == "failed" and "check_test must be one of 'ttest', 'bounded'" in res.error, res.error
    res = rp.run_notebook(path, {"profile": "smoke", "check_test": "bounded"}, reports=tmp_path / "reports")
    assert res.status == "failed", res.error
    assert "check_test='bounded' tunes the owner's generator selection" in res.error
    assert "select_attempts >= 2; got select_attempts=1" in res.error
    assert not (tmp_path / "runs").exists()  # nothing trained or cached

def _outputs_text(path) -> str:
    """The text an executed notebook shows (printed and displayed), each output separated by a blank line."""
    nb = json.loads(Path(path).read_text())
    return "\n\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                         for c in nb["cells"] for o in c.get("outputs", []))


def test_single_target_selection_in_notebooks_02_and_03(tmp_path, monkeypatch):
    """select_attempts with the paper's single target: the owner selects (02 and 03), Ind-W owners too (03), each
    attempt with its own surrogate (redraw_surrogate; select_attempts alone is covered by the code test above)."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    # a narrower smoke budget (the options' wiring is under test, not the numbers); 02 and 03 share it and the cache
    sel = {"profile": "smoke:width=4,gen_iters=15", "select_attempts": 2, "n_proxies": 1, "redraw_surrogate": True,
           "check_alpha": "1e-3"}
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "02_watermark_dataset.ipynb", sel, reports=reports)
    assert res.status == "ok", res.error
    # what the executed notebook shows: plain numbers (it printed "np.float64(0.0)" for the target class's accuracy)
    # and the paper comparison in 2 decimals (it showed "14.666666", "15.000001": float32 percentages)
    shown = _outputs_text(reports / res.output)
    assert "np.float64" not in shown and "target_class_acc" in shown, shown
    paper_table, = [t for t in shown.split("\n\n") if "WSR of the trigger on the benign model (%)" in t]
    assert not re.search(r"\d\.\d{3}", paper_table), paper_table
    records2 = json.loads((reports / "02_watermark_dataset" / "metrics.json").read_text())["records"]
    rec2, = [r for r in records2 if "table" not in r["params"]]  # the SSCL-BW record (the other: Table I's)
    # Table I's crafted baselines name the device that crafted their marks (crafted here: this CPU), in its record,
    # its CSV and the printed line
    table1, = [r for r in records2 if r["params"].get("table") == "I-all-methods"]
    here = device_name("cpu")
    assert table1["crafted_by"] == {m: here for m in ("label-consistent", "sleeper-agent", "ubw-c")}
    assert rec2["manifest"]["marked_by"] == here  # and SSCL-BW's own marks, the device that ran the generator
    csv = pd.read_csv(reports / "02_watermark_dataset" / "table1_all_methods.csv").set_index("method")
    assert csv.loc[["Label-Consistent", "Sleeper Agent", "UBW-C"], "crafted_by"].tolist() == [here] * 3
    assert csv.loc[["BadNets", "SSCL-BW"], "crafted_by"].isna().all()  # nothing crafted on a surrogate there
    assert f"marks crafted by {here} (label-consistent, sleeper-agent, ubw-c)" in shown
    # and Table I's tables and figure carry it for the index (which names it where it is not the run's device)
    saved = json.loads((reports / "02_watermark_dataset" / "tables.json").read_text())
    drawn = json.loads((reports / "02_watermark_dataset" / "figures.json").read_text())
    assert all(saved[t]["crafted_by"] == table1["crafted_by"] for t in
               ("table1_all_methods_vs_paper", "table1_all_methods", "table1_floor_test"))
    assert drawn["table1_all_methods"]["crafted_by"] == table1["crafted_by"]
    log = pd.read_csv(reports / "02_watermark_dataset" / "generator_selection.csv")
    s2 = rec2["selection"]
    assert rec2["params"]["select_attempts"] == 2 and list(log.attempt) == list(range(s2["attempts_tried"]))
    assert s2["passed"] == bool(log[log.attempt == s2["attempt"]].verified.all())
    assert rec2["generator_seed"] == s2["generator_seed"] == log.generator_seed[s2["attempt"]]
    assert rec2["params"]["redraw_surrogate"] is True and s2["redraw_surrogate"]
    assert list(log.surrogate_seed) == list(log.generator_seed) == [0, 100_000][:len(log)]
    assert log.surrogate_BA.between(0, 1).all()
    # each attempt's surrogate accuracy is that surrogate's (its seed's, read back from the cache, not retrained)
    ds, cfg = _notebook_data(sel["profile"]), get_profile(sel["profile"])
    cached = sorted((tmp_path / "runs").rglob("model.pt"))
    surrogate_ba = [evaluate(sscl.train_surrogate(ds, cfg, "resnet18", int(s), progress=False).model, ds.x_test,
                             ds.y_test) for s in log.surrogate_seed]
    assert list(log.surrogate_BA) == pytest.approx(surrogate_ba, rel=1e-6)
    assert sorted((tmp_path / "runs").rglob("model.pt")) == cached
    # a stricter check: recorded with the run and in every self-check row; verified means p below it
    assert rec2["params"]["check_alpha"] == s2["check_alpha"] == 1e-3 and (log.check_alpha == 1e-3).all()
    assert (log.verified == (log.p_value < 1e-3)).all()
    kept, worst, passed = _kept_attempt(log)
    assert (s2["attempt"], s2["passed"]) == (kept, passed) and s2["proxy_p_max"] == pytest.approx(worst)
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "03_verification.ipynb", {**sel, "n_models": 1}, reports=reports)
    assert res.status == "ok", res.error
    rec3 = json.loads((reports / "03_verification" / "metrics.json").read_text())["records"][-1]
    assert rec3["metrics"]["selection"] == s2  # the same cached attempts, the same published generator
    rows = pd.DataFrame(rec3["metrics"]["models"])
    indw = rows[rows.scenario == "Ind-W"]
    assert indw.other_attempt.isin([0, 1]).all() and rows[rows.scenario == "Malicious"].other_attempt.isna().all()
    # their own surrogates: the other owner's seed (model seed + 1000) of the attempt they published
    assert (indw.other_surrogate_seed == indw.model_seed + 1000 + 100_000 * indw.other_attempt).all()
    assert (reports / "03_verification" / "generator_selection.csv").is_file()
    for nb in ("02_watermark_dataset", "03_verification"):  # the caption names the test that decided (not "paper's")
        caption = json.loads((reports / nb / "tables.json").read_text())["generator_selection"]["caption"]
        assert "(1 proxy model(s), decided by the paper's t-test;" in caption, caption
    # Table I's captions say how the published generator was selected, the stricter check's level included
    caption = json.loads((reports / "02_watermark_dataset" / "tables.json").read_text())["table1_sscl_bw"]["caption"]
    assert sscl.selection_label(s2) in caption and "check at p < 0.001)" in caption, caption
    assert "gamma 0.1, target 1 (automobile), surrogate width" in caption, caption  # the target class too


def test_plug_and_play_notebook_trains_the_msgmap_hidden_and_refuses_unknown_networks(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    nb = REPO_ROOT / "notebooks" / "08_amuse_plug_and_play.ipynb"
    res = rp.run_notebook(nb, {"profile": "smoke", "tables": "1", "hidden_arch": "msgmap"}, reports=reports)
    assert res.status == "ok", res.error
    out = reports / "08_amuse_plug_and_play"
    record = json.loads((out / "metrics.json").read_text())["records"][-1]
    assert record["params"]["hidden_arch"] == "msgmap"
    captions = json.loads((out / "tables.json").read_text())
    assert "network msgmap" in json.dumps(captions)
    # the training curves' title names the network too (it said only "HiDDeN training"; the SVG keeps the text)
    assert "network msgmap" in (out / "hidden_training.svg").read_text()
    saved = sorted((tmp_path / "runs").rglob("hidden.pt"))
    assert len(saved) == 3  # 30, 16 and 9 bits, each with the msgmap settings kept beside its weights
    for path in saved:
        cfg = torch.load(path, weights_only=False)["config"]
        assert cfg["message_map"] == 8 and cfg["decoder_grid"] == 4
    bad = rp.run_notebook(nb, {"profile": "smoke", "tables": "1", "hidden_arch": "resnet"}, reports=reports)
    assert bad.status == "failed" and "hidden_arch must be one of" in bad.error and "msgmap" in bad.error


def test_generator_notebook_trains_against_a_narrower_surrogate(tmp_path, monkeypatch):
    import torch

    from dovlib.train import joined_names

    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "01_train_generator.ipynb",
                          {"profile": "smoke", "surrogate_width": 4, "l1": "1/2", "l2": 1}, reports=reports)
    assert res.status == "ok", res.error
    record = json.loads((reports / "01_train_generator" / "metrics.json").read_text())["records"][-1]
    assert record["params"]["surrogate_width"] == 4 and record["profile"] == "smoke"
    # loss weights recorded as parsed, not as typed: "1/2" and 0.5 (or 1 and 1.0) are one generator, one record
    assert record["params"]["l1"] == 0.5 and isinstance(record["params"]["l2"], float)
    # the surrogate trained (the only classifier) is a width-4 one, not the profile's 8, and the generator was
    # trained against it; the accuracy recorded is that model's on the test set
    keys = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs" / "sscl").glob("*/params.json"))]
    assert [k["width"] for k in keys if k.get("what") == "classifier"] == [4]
    ds = _notebook_data("smoke")
    surrogate = sscl.train_surrogate(ds, get_profile("smoke"), "resnet18", 0, progress=False, width=4).model
    assert [k["surrogate"] for k in keys if k.get("what") == "generator"] == [sscl.model_hash(surrogate)]
    assert len(list((tmp_path / "runs" / "sscl").glob("*/params.json"))) == len(keys)  # read back, not trained
    assert record["metrics"]["surrogate_clean_acc"] == pytest.approx(evaluate(surrogate, ds.x_test, ds.y_test))
    # what it printed: the generator's settings and the record in words, not dicts with eps 0.03137254901960784
    shown = _outputs_text(reports / res.output)
    assert "generator: trained" in shown and "settings: eps 8/255, width 8, depth 3, key channels 2, input channels 3" \
        in shown, shown
    assert (f"recorded in {reports / '01_train_generator' / 'metrics.json'} (profile smoke, dataset cifar10-subset "
            "(subset), cpu, perceptual ssim)") in shown, shown
    assert "{'" not in shown and "0.0313725" not in shown, shown
    # a generator read back from runs/ that another machine trained (here: its file says so) is named as such, in
    # what the notebook prints and in the record, beside the surrogate this machine trained
    [final] = (tmp_path / "runs" / "sscl").rglob("generator.pt")
    blob = torch.load(final, weights_only=False)
    torch.save({**blob, "meta": {**blob["meta"], "trained_by": "CPU (Intel Xeon, 8 cores, AVX2 kernels)"}}, final)
    again = rp.run_notebook(REPO_ROOT / "notebooks" / "01_train_generator.ipynb",
                            {"profile": "smoke", "surrogate_width": 4, "l1": "1/2", "l2": 1}, reports=reports,
                            force=True)
    assert again.status == "ok", again.error
    shown = _outputs_text(reports / again.output)
    assert "generator: loaded from cache, trained by CPU (Intel Xeon, 8 cores, AVX2 kernels) in fp32" in shown, shown
    record = json.loads((reports / "01_train_generator" / "metrics.json").read_text())["records"][-1]
    assert record["trained_by"] == joined_names(device_name("cpu"), "CPU (Intel Xeon, 8 cores, AVX2 kernels)")
    bad = rp.run_notebook(REPO_ROOT / "notebooks" / "01_train_generator.ipynb",
                          {"profile": "smoke", "surrogate_width": 0}, reports=reports)
    assert bad.status == "failed" and "surrogate_width" in bad.error


def test_amuse_notebooks_refuse_a_recompute_string_before_any_work(tmp_path, monkeypatch):
    """papermill passes -p recompute False as the string "False"; 07, 08 and 10 refuse it in their set-up cell (08
    before Table 1's HiDDeN training, 10 before watermarking the training set), not after hours of settings."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    for stem in ("07_amuse_message_length", "08_amuse_plug_and_play", "10_amuse_ml_task"):
        nb = REPO_ROOT / "notebooks" / f"{stem}.ipynb"
        bad = rp.run_notebook(nb, {"profile": "smoke", "recompute": "False"}, reports=tmp_path / "reports")
        assert bad.status == "failed" and "recompute must be True or False" in bad.error, (stem, bad.error)
    assert not list((tmp_path / "runs").rglob("*.pt")) and not list((tmp_path / "runs").rglob("frame.csv"))


def test_ml_task_notebook_refuses_a_greyscale_dataset_naming_the_rgb_ones(tmp_path, monkeypatch):
    """-p dataset mnist (a paper-profile rehearsal) was refused only after loading the whole set (downloading it on a
    machine with internet), with 'mnist is greyscale' and no word of what to give instead: now the set-up cell refuses
    it by name and lists the RGB datasets."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    nb = REPO_ROOT / "notebooks" / "10_amuse_ml_task.ipynb"
    bad = rp.run_notebook(nb, {"profile": "smoke", "dataset": "digits"}, reports=tmp_path / "reports")
    assert bad.status == "failed" and "dataset" in bad.error and "greyscale" in bad.error, bad.error
    assert "cifar10-subset" in bad.error and "folder:PATH" in bad.error, bad.error
    cells = json.loads(next((tmp_path / "reports" / "10_amuse_ml_task").glob("*.ipynb")).read_text())["cells"]
    failed = [c for c in cells if c["cell_type"] == "code" and any(o.get("output_type") == "error"
                                                                   for o in c.get("outputs", []))]
    assert "check_choice(\"method\"" in "".join(failed[0]["source"]), "refused in the set-up cell, before loading"


def test_ml_task_notebook_reads_back_its_watermarked_sets_and_models(tmp_path, monkeypatch):
    """Notebook 10 saves each watermarked training set under runs/ and trains its classifiers through the checkpointed
    classifier cache: a second run embeds nothing and trains nothing, yet records the same numbers and counts the sets
    and models at what computing them cost (compute_time; wall_time is this run's); recompute embeds again; another
    seed is another key."""
    import torch

    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports, runs = tmp_path / "reports", tmp_path / "runs"
    nb = REPO_ROOT / "notebooks" / "10_amuse_ml_task.ipynb"
    params = {"profile": "smoke:n_train=60,n_test=30,amuse_images=8", "message_bits": 40, "n_models": 1}

    def record():
        return json.loads((reports / "10_amuse_ml_task" / "metrics.json").read_text())["records"]

    def printed(res):  # what the executed notebook's cells printed
        cells = json.loads((reports / res.output).read_text())["cells"]
        return "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))

    def mtimes(pattern):
        return {p: p.stat().st_mtime_ns for p in runs.rglob(pattern)}

    first = rp.run_notebook(nb, params, reports=reports)
    assert first.status == "ok", first.error
    # its printed tables leave what does not apply empty ("-"): clean sets carry no sub-message (they printed NaN);
    # the quality table has a column per set (baseline, amuse, clean_resampled), its bits whole
    assert "NaN" not in printed(first) and re.search(r"^sub_message_bits +40 +\d+ +-$", printed(first), re.M), \
        printed(first)
    sets, models = list(runs.rglob("tensors.json")), list((runs / "sscl").rglob("model.pt"))
    assert len(sets) == 2 and len(models) == 4  # baseline and AMUSE sets (clean_resampled is not kept); four models
    [rec1] = record()
    cost = sum(json.loads(p.read_text())["seconds"] for p in sets) + sum(
        torch.load(p, weights_only=False)["compute_time"] for p in models)
    assert rec1["cached_artifacts"] == 0 and rec1["compute_time"] >= cost  # embedding plus training, and the rest
    stamps = mtimes("*.pt")
    second = rp.run_notebook(nb, params, reports=reports, force=True)
    assert second.status == "ok", second.error
    assert mtimes("*.pt") == stamps  # nothing embedded or trained again
    [rec2] = record()  # one parameter set: its record replaced
    assert rec2["metrics"] == rec1["metrics"]
    # the two sets and four models read back count what computing them took (kept under runs/), not their reading
    assert (rec2["cached_artifacts"], rec2["cached_compute_time"]) == (6, pytest.approx(cost, rel=1e-9))
    assert rec2["compute_time"] >= cost and rec2["wall_time"] > 0
    out = printed(second)
    assert "read back from runs/: baseline, amuse" in out
    here = device_name("cpu")  # the machine that trained them, by name (its kernels and threads change the weights)
    assert out.count(f"(model read back from runs/, trained on cpu ({here}) in fp32)") == 4
    assert (rec2["trained_on"], rec2["training_precision"], rec2["trained_by"]) == ("cpu", "fp32", here)
    assert set(pd.read_csv(reports / "10_amuse_ml_task" / "ml_task.csv")["trained_by"]) == {here}
    # recompute: both sets embedded again (the same images, so the same models are read back)
    again = rp.run_notebook(nb, {**params, "recompute": True}, reports=reports, force=True)
    assert again.status == "ok", again.error
    tensors = mtimes("tensors.pt")
    assert all(tensors[p] != t for p, t in stamps.items() if p.name == "tensors.pt") and len(tensors) == 2
    assert mtimes("model.pt") == {p: t for p, t in stamps.items() if p.name == "model.pt"}
    assert "read back from runs/: baseline" not in printed(again) and record()[0]["metrics"] == rec1["metrics"]
    # another seed: another message, so two new watermarked sets (and models); the old ones stay
    other = rp.run_notebook(nb, {**params, "seed": 1}, reports=reports)
    assert other.status == "ok", other.error
    assert len(list(runs.rglob("tensors.pt"))) == 4
    assert "read back" not in printed(other) and len(record()) == 2


def test_message_length_notebook_counts_settings_read_back_at_their_cost(tmp_path, monkeypatch):
    """Notebook 07 recorded as wall_time what its results cost (settings read back from runs/ at what computing them
    took) and no compute_time. Run twice on the same runs/: the second reads every setting back, and its record's
    compute_time counts them at their kept cost, its wall_time at their reading."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports, runs = tmp_path / "reports", tmp_path / "runs"
    nb = REPO_ROOT / "notebooks" / "07_amuse_message_length.ipynb"
    params = {"profile": "smoke:amuse_images=4", "message_bits": [32], "attacks": "none"}

    def records():
        return json.loads((reports / "07_amuse_message_length" / "metrics.json").read_text())["records"]

    first = rp.run_notebook(nb, params, reports=reports)
    assert first.status == "ok", first.error
    [rec1] = records()
    frames = list(runs.rglob("frame.json"))
    cost = sum(json.loads(p.read_text())["seconds"] for p in frames)
    assert len(frames) == 2 and rec1["cached_artifacts"] == 0 and rec1["compute_time"] >= cost
    shown = _outputs_text(reports / first.output)  # where the records went, and what they were measured on
    assert (f"1 record (message_bits 32), recorded in {reports / '07_amuse_message_length' / 'metrics.json'} (profile "
            "smoke:amuse_images=4, dataset skimage-photos (full), cpu, perceptual psnr): wall time ") in shown, shown
    second = rp.run_notebook(nb, params, reports=reports, force=True)
    assert second.status == "ok", second.error
    [rec2] = records()
    assert rec2["metrics"] == rec1["metrics"]
    assert (rec2["cached_artifacts"], rec2["cached_compute_time"]) == (2, pytest.approx(cost, rel=1e-9))
    assert rec2["compute_time"] >= cost and rec2["wall_time"] > 0


def test_message_length_notebook_records_no_scale_for_rivagan(tmp_path, monkeypatch):
    """RivaGAN has no quantisation step (the scale parameter is ignored, its captions name none), yet notebook 07's
    record said scale 36: a rivaGan run read like a DCT one at that step, and -p scale 30 gave a second record of the
    same run. The record's scale is None for rivaGan (the DCT methods keep theirs: their records keep their keys)."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    nb = REPO_ROOT / "notebooks" / "07_amuse_message_length.ipynb"
    res = rp.run_notebook(nb, {"profile": "smoke:amuse_images=2", "method": "rivaGan", "message_bits": [16],
                               "attacks": "none"}, reports=reports)
    assert res.status == "ok", res.error
    [record] = json.loads((reports / "07_amuse_message_length" / "metrics.json").read_text())["records"]
    assert record["params"]["method"] == "rivaGan" and record["params"]["scale"] is None, record["params"]
    captions = json.loads((reports / "07_amuse_message_length" / "tables.json").read_text())
    assert not any("scale" in t["caption"] for t in captions.values())
    caption = captions["accuracy_vs_length"]["caption"]  # attacks none: no "mean over the 'none' attack set"
    assert "no attacks (attacks 'none')" in caption and "attack set" not in caption, caption
    frames = sorted((tmp_path / "runs").rglob("frame.csv"))
    res = rp.run_notebook(nb, {"profile": "smoke:amuse_images=2", "method": "rivaGan", "message_bits": [16],
                               "attacks": "none", "scale": 30}, reports=reports)  # another scale: the same run
    assert res.status == "ok", res.error
    assert frames and sorted((tmp_path / "runs").rglob("frame.csv")) == frames  # read back, not computed again
    [again] = json.loads((reports / "07_amuse_message_length" / "metrics.json").read_text())["records"]
    assert again["params"] == record["params"]


def test_ml_task_notebook_records_no_scale_for_rivagan(tmp_path, monkeypatch):
    """Notebook 10's record said scale 36 for a rivaGan run, which has no quantisation step (see notebook 07's)."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    nb = REPO_ROOT / "notebooks" / "10_amuse_ml_task.ipynb"
    res = rp.run_notebook(nb, {"profile": "smoke:amuse_images=2", "method": "rivaGan", "message_bits": 16,
                               "n_train": 10, "n_models": 1}, reports=reports)
    assert res.status == "ok", res.error
    [record] = json.loads((reports / "10_amuse_ml_task" / "metrics.json").read_text())["records"]
    assert record["params"]["method"] == "rivaGan" and record["params"]["scale"] is None, record["params"]


def _image_folder(root, counts, size: int = 32) -> str:
    """A ``folder:<root>`` dataset of random RGB images: ``counts`` maps (split, class) to a number of images."""
    import numpy as np
    from PIL import Image

    g = np.random.default_rng(0)
    for (split, cls), n in counts.items():
        (root / split / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(g.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return f"folder:{root}"


def test_ml_task_notebook_records_the_number_of_training_images_it_used(tmp_path, monkeypatch):
    """Notebook 10 recorded n_train None at the quick and paper profiles (whose None means the whole split) but the
    count under smoke or -p n_train N: the same images, trained on twice over, under two record keys. The record
    now names the number of training images used in every case: the profile's None and -p n_train <the split's
    size> give one record, replaced, not two."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    dataset = _image_folder(tmp_path / "data", {("train", "a"): 12, ("train", "b"): 10, ("val", "a"): 3,
                                                ("val", "b"): 3})
    nb = REPO_ROOT / "notebooks" / "10_amuse_ml_task.ipynb"
    params = {"profile": "quick:device=cpu,epochs=1,width=4,batch_size=32,amuse_images=4", "dataset": dataset,
              "message_bits": 16, "n_models": 1}  # quick: n_train None, the whole split of 22 images

    def records():
        return json.loads((reports / "10_amuse_ml_task" / "metrics.json").read_text())["records"]

    res = rp.run_notebook(nb, params, reports=reports)
    assert res.status == "ok", res.error
    [record] = records()
    assert record["params"]["n_train"] == 22  # the count, not None
    res = rp.run_notebook(nb, {**params, "n_train": 22}, reports=reports)  # the same images, asked for by count
    assert res.status == "ok", res.error
    [again] = records()  # one parameter set, one record
    assert again["params"] == record["params"] and again["metrics"] == record["metrics"]
    res = rp.run_notebook(nb, {**params, "n_train": 10}, reports=reports)
    assert res.status == "ok", res.error
    assert sorted(r["params"]["n_train"] for r in records()) == [10, 22]


def test_ml_task_notebook_pairs_its_sets_over_several_training_seeds(tmp_path, monkeypatch):
    """Notebook 10 trained one classifier per set, so a difference of a few points could not be told from a seed's
    (docs/measured-amuse-cpu.md: 0.9 to 5.7 points between seeds). n_models classifiers per set, on training seeds
    shared by the sets: the table gives each set's mean, spread and seed-paired difference with its paired t-test p,
    every model is in ml_task_models, and the record and caption say so."""
    from dovlib.studies import paired_effects

    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    nb = REPO_ROOT / "notebooks" / "10_amuse_ml_task.ipynb"
    bad = rp.run_notebook(nb, {"profile": "smoke", "n_models": 0}, reports=reports)
    assert bad.status == "failed" and "n_models must be an integer >= 1; got 0" in bad.error, bad.error
    assert not (tmp_path / "runs").exists()  # refused before any embedding
    res = rp.run_notebook(nb, {"profile": "smoke:n_train=40,n_test=30,amuse_images=4", "message_bits": 24,
                               "n_models": 2, "seed": 3}, reports=reports)
    assert res.status == "ok", res.error
    folder = reports / "10_amuse_ml_task"
    models = pd.read_csv(folder / "ml_task_models.csv")
    assert sorted(zip(models.set, models.train_seed)) == sorted(
        (s, t) for s in ("clean", "clean_resampled", "baseline", "amuse") for t in (3, 4))
    table = pd.read_csv(folder / "ml_task.csv").set_index("set")
    want = paired_effects(models, "test_acc", "clean_resampled").set_index("set")
    assert (table["n"] == 2).all()
    assert table["test_acc"].tolist() == pytest.approx(want["test_acc"].tolist())
    assert table["test_acc_minus_resampled"].tolist() == pytest.approx(
        want["test_acc_minus_clean_resampled"].tolist())
    assert table["p_vs_clean_resampled"].tolist() == pytest.approx(want["p_vs_clean_resampled"].tolist(),
                                                                   nan_ok=True)
    [record] = json.loads((folder / "metrics.json").read_text())["records"]
    assert record["params"]["n_models"] == 2 and record["params"]["seed"] == 3
    assert record["metrics"]["amuse_test_acc"] == pytest.approx(want.loc["amuse", "test_acc"])
    # both paired tests of the table are in the record (it kept the p against clean_resampled only)
    vs_clean = paired_effects(models, "test_acc", "clean").set_index("set")
    for name in ("baseline", "amuse", "clean_resampled"):
        assert record["metrics"][f"{name}_p_vs_clean"] == pytest.approx(vs_clean.loc[name, "p_vs_clean"]), name
    caption = json.loads((folder / "tables.json").read_text())["ml_task"]["caption"]
    assert "mean of n = 2 classifier(s) per set (training seeds 3 to 4" in caption, caption
    assert "Against clean_resampled, over 2 training seeds (3 to 4, paired): baseline" in caption, caption
    # what it prints: the quality table one row per quantity (bits as whole numbers, '-' for the clean set) and
    # then the classifiers' columns only, both readable in a notebook (the table had 23 columns); the CSV keeps all
    shown = _outputs_text(reports / res.output)
    lines = shown.splitlines()
    [quality_head] = [i for i, line in enumerate(lines) if line.split() == ["baseline", "amuse", "clean_resampled"]]
    quality_lines = lines[quality_head:quality_head + 11]  # its header and ten quantities
    assert quality_lines[1].split() == ["sub_message_bits", "24", str(int(table.loc["amuse", "sub_message_bits"])),
                                        "-"], quality_lines[1]
    assert quality_lines[-1].split()[0] == "sub_bit_acc_round_trip", quality_lines
    assert max(len(line) for line in quality_lines) <= 120, max(quality_lines, key=len)
    [acc_head] = [i for i, line in enumerate(lines) if line.split()[:3] == ["set", "n", "test_acc"]]
    assert "psnr_train_size" not in lines[acc_head] and "p_resampled" in lines[acc_head], lines[acc_head]
    table_lines = lines[acc_head:acc_head + 5]  # its header and the four sets
    assert [line.split()[0] for line in table_lines[1:]] == ["clean", "clean_resampled", "baseline", "amuse"]
    assert max(len(line) for line in table_lines) <= 120, max(table_lines, key=len)
    # each value with its own digits (a p-value of 3e-05 printed as 0.0000 read as p = 0)
    printed_p = {line.split()[0]: line.split()[-1] for line in table_lines[1:]}
    assert printed_p == {s: "-" if pd.isna(p) else f"{p:.4g}" for s, p in table["p_vs_clean_resampled"].items()}
    assert "every column: ml_task.csv" in shown, shown
    assert f"recorded in {folder / 'metrics.json'} (profile smoke:n_train=40,n_test=30,amuse_images=4, " in shown


def test_ml_task_notebook_says_a_training_split_is_too_small_for_n_train(tmp_path, monkeypatch):
    """n_train is refused above the training split, naming its size; with a split of fewer than 10 images that range
    was empty ("n_train must be an integer in [10, 7]"): the error now says the split is too small."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    dataset = _image_folder(tmp_path / "data", {("train", "a"): 4, ("train", "b"): 3, ("val", "a"): 1,
                                                ("val", "b"): 1})
    nb = REPO_ROOT / "notebooks" / "10_amuse_ml_task.ipynb"
    res = rp.run_notebook(nb, {"profile": "smoke", "dataset": dataset, "n_train": 10}, reports=tmp_path / "reports")
    assert res.status == "failed", res.error
    assert "training split is too small for n_train: it holds 7 images, n_train needs at least 10" in res.error
    assert "[10, 7]" not in res.error


def test_every_notebook_checks_its_seed_before_using_it():
    """``seed`` from papermill may be "1", 1.0, -1 or 1.5: each notebook turns it into an int or refuses it by name
    before its first use (start_notebook seeds the RNGs with it)."""
    import re

    for src in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        text = src.read_text()
        after = text.split('tags=["parameters"]', 1)[1].split("# %%", 1)[1]  # the cells after the parameters cell
        code = [line for line in after.splitlines() if not line.lstrip().startswith("#")]
        first = next(line for line in code if re.search(r"\bseed\b", line))
        assert re.search(r'check_int\("seed", seed, 0[,)]', first), f"{src.name} uses seed before checking it: " \
                                                                    f"{first.strip()}"


def test_a_bad_seed_fails_by_name_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    nb = REPO_ROOT / "notebooks" / "00_quickstart.ipynb"
    bad = rp.run_notebook(nb, {"profile": "smoke", "seed": -1}, reports=tmp_path / "reports")
    assert bad.status == "failed" and "seed must be an integer >= 0; got -1" in bad.error, bad.error
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.pt"))


@pytest.mark.parametrize("stem, params, says", [
    ("07_amuse_message_length", {"dataset": "mnist-offline"}, "dataset must hold RGB images for dwtDct: one of ["),
    ("08_amuse_plug_and_play", {"hidden_dataset": "digits"}, "hidden_dataset must hold RGB images for HiDDeN: one of"),
    ("09_amuse_subset_attack", {"method": "dwtDct", "dataset": "mnist"}, "dataset must hold RGB images for dwtDct"),
    ("09_amuse_subset_attack", {"method": "dwtDct", "dataset": "cifar100"}, "dataset must be one of ["),
])
def test_amuse_notebooks_refuse_a_dataset_without_rgb_images_before_loading_it(tmp_path, monkeypatch, stem, params,
                                                                                 says):
    """07 and 08 accepted only two offline pools (not cifar10 or flowers102, online), 09 checked nothing before
    loading: a greyscale set failed deep in invisible-watermark or HiDDeN. Each now takes any RGB dataset and refuses
    the others by name in its first cells, listing the RGB ones, before any output."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    bad = rp.run_notebook(REPO_ROOT / "notebooks" / f"{stem}.ipynb", {"profile": "smoke", **params},
                          reports=tmp_path / "reports")
    assert bad.status == "failed" and says in bad.error and "'folder:PATH']" in bad.error, bad.error
    assert "cifar10" in bad.error and "flowers102" in bad.error, bad.error
    assert not (tmp_path / "reports" / stem / "tables.json").exists() and not (tmp_path / "runs").exists()


def test_subset_attack_notebook_refuses_a_message_past_the_watermark_before_any_output(tmp_path, monkeypatch):
    """09 with real extraction: the baseline's L bits must fit the method; refused in the set-up, before tables."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    nb = REPO_ROOT / "notebooks" / "09_amuse_subset_attack.ipynb"
    bad = rp.run_notebook(nb, {"profile": "smoke", "method": "dwtDct", "message_bits": 2000},
                          reports=tmp_path / "reports")
    assert bad.status == "failed" and "message_bits must be an integer in [1, 1024]; got 2000" in bad.error, bad.error
    assert not (tmp_path / "reports" / "09_amuse_subset_attack" / "tables.json").exists()
    erasure = rp.run_notebook(nb, {"profile": "smoke", "message_bits": 4}, reports=tmp_path / "reports")
    assert erasure.status == "failed" and "message_bits = 4 with rho = 0.8" in erasure.error, erasure.error


def test_subset_attack_caption_names_the_bit_error_rate_that_ran(tmp_path, monkeypatch):
    """09's codec table (its min_share_recovered_bitflip column) and figure depend on bit_error_rate, but the caption
    said only "extraction bitflip": a run at rate 0.1 read like one at the default 0.02. It names the rate now."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    nb = REPO_ROOT / "notebooks" / "09_amuse_subset_attack.ipynb"
    res = rp.run_notebook(nb, {"profile": "smoke", "method": "bitflip", "bit_error_rate": 0.1, "shares": [0.5, 1.0]},
                          reports=tmp_path / "reports")
    assert res.status == "ok", res.error
    tables = json.loads((tmp_path / "reports" / "09_amuse_subset_attack" / "tables.json").read_text())
    caption = tables["codecs_bits_vs_leak_ratio"]["caption"]
    assert "extraction bitflip (bit error rate 0.1)" in caption and "0.02" not in caption, caption
    shown = _outputs_text(tmp_path / "reports" / res.output)  # the record's line names its file (was only times)
    assert f"recorded in {tmp_path / 'reports' / '09_amuse_subset_attack' / 'metrics.json'} (profile smoke" in shown
    # the figure's title too (the SVG keeps each line of text as a comment)
    svg = (tmp_path / "reports" / "09_amuse_subset_attack" / "accuracy_vs_leaked_share.svg").read_text()
    assert "bit error rate 0.1" in svg


def test_subset_attack_notebook_leaves_the_scale_alone_under_simulated_extraction(tmp_path, monkeypatch):
    """``scale`` is for real extraction only (the record says None without it), yet the caption's note formatted it
    with ``:g`` for every extraction: a simulated run given ``scale`` None failed with a TypeError."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    nb = REPO_ROOT / "notebooks" / "09_amuse_subset_attack.ipynb"
    res = rp.run_notebook(nb, {"profile": "smoke", "method": "ideal", "scale": None, "shares": [0.5, 1.0]},
                          reports=tmp_path / "reports")
    assert res.status == "ok", res.error
    tables = json.loads((tmp_path / "reports" / "09_amuse_subset_attack" / "tables.json").read_text())
    caption = tables["codecs_bits_vs_leak_ratio"]["caption"]
    assert "extraction ideal (error-free);" in caption and "scale" not in caption, caption
    [record] = json.loads((tmp_path / "reports" / "09_amuse_subset_attack" / "metrics.json").read_text())["records"]
    assert record["params"]["scale"] is None


def test_amuse_notebooks_that_train_nothing_say_so_in_their_records(tmp_path, monkeypatch):
    """Notebooks 07 and 09 run invisible-watermark and codecs only, yet their records said training_precision 'fp32'
    (what the profile would train in), as 08's Table 2 alone no longer does: they say 'none (nothing trained)'.
    09's caption names the shares leaked: 0.01 of 20 images is 1 image, shown as 0.05 in its figure and table; 07's
    captions each name the images."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "07_amuse_message_length.ipynb",
                          {"profile": "smoke:amuse_images=2", "message_bits": [32], "attacks": "representative",
                           "dataset": "cifar10-subset"}, reports=reports)
    assert res.status == "ok", res.error
    # every table's caption names its images (the per-family one said '2 images, CPU', not which)
    for name, table in json.loads((reports / "07_amuse_message_length" / "tables.json").read_text()).items():
        assert "CIFAR-10 subset images upsampled" in table["caption"], (name, table["caption"])
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "09_amuse_subset_attack.ipynb",
                          {"profile": "smoke:amuse_images=20", "method": "ideal", "shares": [0.01, 0.5, 1.0]},
                          reports=reports)
    assert res.status == "ok", res.error
    for stem in ("07_amuse_message_length", "09_amuse_subset_attack"):
        for record in json.loads((reports / stem / "metrics.json").read_text())["records"]:
            assert record["training_precision"] == "none (nothing trained)", (stem, record["training_precision"])
    caption = json.loads((reports / "09_amuse_subset_attack" / "tables.json").read_text())[
        "codecs_bits_vs_leak_ratio"]["caption"]
    assert "leaked shares 0.05 (1 image; asked as 0.01), 0.5, 1 of the 20 images" in caption, caption


def test_plug_and_play_table_2_alone_is_labelled_with_the_cpu_and_no_training(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    nb = REPO_ROOT / "notebooks" / "08_amuse_plug_and_play.ipynb"
    res = rp.run_notebook(nb, {"profile": "smoke:device=auto", "tables": "2"}, reports=tmp_path / "reports")
    assert res.status == "ok", res.error
    folder = tmp_path / "reports" / "08_amuse_plug_and_play"
    (record,) = json.loads((folder / "metrics.json").read_text())["records"]
    assert record["device"] == "cpu" and record["training_precision"] == "none (nothing trained)"
    assert "hidden_training" not in record and not any(k.startswith("t1_") for k in record["metrics"])
    assert record["datasets"] == {"Table 2": {"dataset": "skimage-photos", "is_subset": False}}  # its own tag
    tables = json.loads((folder / "tables.json").read_text())
    assert {v["device"] for k, v in tables.items() if k.startswith("table2")} == {"cpu"}
    # its rows and panels say "attacked", as its title ("attacked = mean over the 'representative' set") and the
    # record's keys (t2_..._attacked) do: they said "attacks"
    assert set(pd.read_csv(folder / "table2_dct_dwt.csv")["attacked"]) == {"no attack", "attacked"}
    assert "attacked, scale 36" in (folder / "table2_dct_dwt.svg").read_text()
    # smoke's budget is not the paper's, and the caption says so beside its numbers
    assert "budget not the paper's: " in tables["table2_dct_dwt"]["caption"], tables["table2_dct_dwt"]["caption"]
    assert "messages 1 (paper 10)" in tables["table2_dct_dwt"]["caption"]
    # run again: every setting is read back, counted at what computing it took in compute_time (kept beside it) and
    # at its reading in wall_time (which was the cost too: equal to compute_time)
    frames = list((tmp_path / "runs").rglob("frame.json"))
    cost = sum(json.loads(p.read_text())["seconds"] for p in frames)
    again = rp.run_notebook(nb, {"profile": "smoke:device=auto", "tables": "2"}, reports=tmp_path / "reports",
                            force=True)
    assert again.status == "ok", again.error
    (warm,) = json.loads((folder / "metrics.json").read_text())["records"]
    assert warm["metrics"] == record["metrics"] and warm["compute_time"] >= cost > 0
    assert (record["cached_artifacts"], warm["cached_artifacts"]) == (0, len(frames))  # every setting read back
    assert warm["cached_compute_time"] == pytest.approx(cost, rel=1e-9)  # at what computing it took


def test_transferability_notebook_repeats_each_cell_over_n_draws(tmp_path, monkeypatch):
    """06 with ``n_draws`` 2: one record per draw (seeds 0 and 1), a per-draw table and a per-cell table whose counts
    and means are those of the draws; a larger ``n_draws`` later reuses the draws it has. 0 draws is refused."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    nb = REPO_ROOT / "notebooks" / "06_transferability.ipynb"
    reports = tmp_path / "reports"
    params = {"profile": "smoke:width=4,gen_iters=10,n_test=40", "archs": "resnet18", "n_draws": 2}
    res = rp.run_notebook(nb, params, reports=reports)
    assert res.status == "ok", res.error
    out = reports / "06_transferability"
    records = json.loads((out / "metrics.json").read_text())["records"]
    assert sorted(r["params"]["seed"] for r in records) == [0, 1]
    draws, cells = pd.read_csv(out / "transferability.csv"), pd.read_csv(out / "transferability_cells.csv")
    assert sorted(draws.seed) == [0, 1] and len(cells) == 1 and cells.n_draws[0] == 2
    assert cells.WSR[0] == pytest.approx(draws.WSR.mean()) and cells.learnt[0] == int(draws.learnt.sum())
    assert cells.verified_benign[0] == int(draws.verified_benign.sum())
    again = rp.run_notebook(nb, {**params, "n_draws": 3}, reports=reports)
    assert again.status == "ok", again.error
    records = json.loads((out / "metrics.json").read_text())["records"]
    assert sorted(r["params"]["seed"] for r in records) == [0, 1, 2]  # draws 0 and 1 reused, not recomputed
    captions = json.loads((out / "tables.json").read_text())
    assert "per cell over 3 draw(s) (seeds 0 to 2)" in captions["transferability_cells"]["caption"]
    assert all("target 1 (automobile), perceptual ssim, smoke:" in c["caption"] for c in captions.values())
    one = rp.run_notebook(nb, {**params, "n_draws": 1}, reports=reports)  # draw 0, reused
    assert one.status == "ok", one.error
    captions = json.loads((out / "tables.json").read_text())
    assert "per cell over 1 draw(s) (seed 0):" in captions["transferability_cells"]["caption"]  # was "seeds 0 to 0"
    reading = (reports / one.output).read_text()
    assert "clean models reach WSR " in reading and not re.search(r"WSR (\S+%) to \1", reading)  # one value once
    bad = rp.run_notebook(nb, {**params, "n_draws": 0}, reports=reports)
    assert bad.status == "failed" and "n_draws must be an integer >= 1; got 0" in bad.error, bad.error


def test_removal_notebook_fine_tunes_in_its_own_batch_and_says_how_many_steps(tmp_path, monkeypatch):
    """05 fine-tuned in the classifier's batch, capped at the thief's images: on quick 508 images in one batch of 512,
    one SGD step an epoch, and nothing said so. ``finetune_batch_size`` (capped as before) sets it; the steps taken
    are recorded, printed beside the verdict and named in the captions; another batch is another record (not the
    old one reused). 0 is refused by name before any training."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    nb = REPO_ROOT / "notebooks" / "05_removal_attacks.ipynb"
    reports = tmp_path / "reports"
    bad = rp.run_notebook(nb, {"profile": "smoke", "finetune_batch_size": 0}, reports=reports)
    assert bad.status == "failed" and "finetune_batch_size must be an integer >= 1; got 0" in bad.error, bad.error
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.pt"))
    params = {"profile": "smoke:epochs=1,gen_iters=4,finetune_epochs=2", "finetune_batch_size": 16,
              "finetune_lr": 0.02}
    res = rp.run_notebook(nb, params, reports=reports)  # 60 thief images (10% of smoke's 600): 4 batches of 16
    assert res.status == "ok", res.error
    folder = reports / "05_removal_attacks"
    (record,) = json.loads((folder / "metrics.json").read_text())["records"]
    assert record["params"]["finetune_batch_size"] == 16
    assert record["metrics"]["n_finetune_images"] == 60 and record["metrics"]["finetune_steps"] == 8
    assert "8 optimizer steps" in (reports / res.output).read_text()  # beside the verdict
    tables = json.loads((folder / "tables.json").read_text())
    assert all("batch 16, 8 optimizer steps in 2 epochs, lr 0.02 (cosine schedule)" in tables[t]["caption"]
               for t in ("finetuning", "pruning"))  # the learning rate too (the captions named all but it)
    # the generator's similarity loss too: an ssim fallback's results read like the papers' LPIPS ones
    assert all("gamma 0.1, target 1 (automobile), perceptual ssim, smoke:" in tables[t]["caption"]
               for t in ("finetuning", "pruning"))
    whole = rp.run_notebook(nb, {**params, "finetune_batch_size": 128}, reports=reports)  # capped at the 60 images
    assert whole.status == "ok", whole.error
    records = json.loads((folder / "metrics.json").read_text())["records"]
    assert sorted(r["metrics"]["finetune_steps"] for r in records) == [2, 8]


def test_ablation_sweep_skips_grid_points_only_and_refuses_its_own_point_or_target_by_name(tmp_path, monkeypatch):
    """A sweep measures the notebook's own (eps, rate) point too: `-p sweep rate -p rate 0.2` (above target 1's
    share) used to drop it with a printed line, exit 0 and save a figure with an empty panel, and a sweep with the
    default rate 0.1 past class 5's share (56 of smoke's 600 images) walked the grid without it. Both are refused by
    name now, before any training; a bad target in a sweep used to be skipped point by point and then blamed on
    rate. Grid points past the class's share are still skipped (said, not trained)."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    nb = REPO_ROOT / "notebooks" / "04_ablation.ipynb"
    reports = tmp_path / "reports"
    own = rp.run_notebook(nb, {"profile": "smoke", "sweep": "rate", "rate": 0.2}, reports=reports)
    assert own.status == "failed" and "rate (gamma) must be <= the target class 1's share" in own.error, own.error
    default = rp.run_notebook(nb, {"profile": "smoke", "sweep": "eps", "target": 5}, reports=reports)
    assert default.status == "failed" and "rate (gamma) must be <= the target class 5's share" in default.error
    target = rp.run_notebook(nb, {"profile": "smoke", "sweep": "rate", "target": 10}, reports=reports)
    assert target.status == "failed" and "target must be an integer in [0, 9]; got 10" in target.error, target.error
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.pt"))
    assert not (reports / "04_ablation" / "fig4_ablation.png").exists()
    res = rp.run_notebook(nb, {"profile": "smoke:epochs=1,gen_iters=4", "sweep": "rate", "target": 5, "rate": 0.05},
                          reports=reports)
    assert res.status == "ok", res.error
    text = (reports / res.output).read_text()
    assert "grid point eps 8/255, rate 0.1 skipped: rate (gamma) must be <= the target class 5's share" in text
    folder = reports / "04_ablation"
    rates = {r["params"]["rate"] for r in json.loads((folder / "metrics.json").read_text())["records"]}
    assert rates == {0.05}
    caption = json.loads((folder / "tables.json").read_text())["ablation"]["caption"]
    assert "target 5 (dog), perceptual ssim, smoke:" in caption, caption  # the generator's similarity loss
    assert "perceptual ssim" in (folder / "fig4_ablation.svg").read_text()


def test_verification_notebooks_refuse_query_counts_that_can_never_claim(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    nb03 = REPO_ROOT / "notebooks" / "03_verification.ipynb"
    for params, how in [({"m": 9}, "m: 9 queries"), ({"profile": "smoke:verify_m=5"}, "verify_m 5): 5 queries"),
                        ({"profile": "smoke:n_test=10"}, "capped at the 9 test images outside class 1")]:
        res = rp.run_notebook(nb03, {"profile": "smoke", **params}, reports=tmp_path / "reports")
        assert res.status == "failed" and how in res.error, res.error
        assert "can never claim ownership at tau 0.25 and alpha 0.01" in res.error and "at least 10" in res.error
    res = rp.run_notebook(nb03, {"profile": "smoke", "m": 9, "tau": 0.0, "decoy_rate": 2},  # checked after m
                          reports=tmp_path / "reports")
    assert res.status == "failed" and "decoy_rate" in res.error  # m 9 passed: 7 suffice at tau 0
    # a code's classes are checked before any training, the tightest named (was: a failure after all training)
    res = rp.run_notebook(nb03, {"profile": "smoke", "n_targets": 2, "key": 0, "m": 273}, reports=tmp_path / "reports")
    assert res.status == "failed" and "m must be at most 265, the test images outside class 6" in res.error
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "02_watermark_dataset.ipynb",
                          {"profile": "smoke:n_test=2", "select_attempts": 2}, reports=tmp_path / "reports")
    assert res.status == "failed" and "the owner's check" in res.error and "can never claim" in res.error


@pytest.mark.parametrize("notebook", ["02_watermark_dataset", "03_verification"])
def test_a_bounded_owner_check_with_too_few_queries_is_refused_before_training(notebook, tmp_path, monkeypatch):
    """10 queries suffice for the t-test at tau 0.25 and alpha 0.01 but never for the betting test (11): with
    check_test bounded the owner's check on the profile's verify_m 10 could never pass, so it is refused up front."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    res = rp.run_notebook(REPO_ROOT / "notebooks" / f"{notebook}.ipynb", {
        "profile": "smoke:verify_m=10", "select_attempts": 2, "check_test": "bounded"}, reports=tmp_path / "reports")
    assert res.status == "failed" and "the owner's check" in res.error, res.error
    assert "the betting test (bounded_verify) can never claim from 10 queries" in res.error, res.error
    assert "at least 11 queries" in res.error
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))  # nothing trained


@pytest.mark.parametrize("notebook", ["04_ablation", "05_removal_attacks", "06_transferability"])
def test_study_notebooks_refuse_a_verify_m_that_can_never_claim(notebook, tmp_path, monkeypatch):
    """04-06 take the profile's verify_m: 5 queries can never claim at tau 0.25 (they used to train, then report
    'not verified' as if it were a result)."""
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    res = rp.run_notebook(REPO_ROOT / "notebooks" / f"{notebook}.ipynb", {"profile": "smoke:verify_m=5"},
                          reports=tmp_path / "reports")
    assert res.status == "failed" and "verify_m" in res.error and "5 queries can never claim" in res.error, res.error
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))  # refused before training


def test_plug_and_play_notebook_checks_every_table_s_settings_and_its_seed_up_front(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    nb = REPO_ROOT / "notebooks" / "08_amuse_plug_and_play.ipynb"
    for params, says in [({"tables": 1, "attacks": "foo"}, "foo"), ({"tables": 1, "scales": 99}, "scale"),
                         ({"tables": 1, "message_bits": 5000}, "5000"),
                         ({"tables": 2, "hidden_dataset": f"folder:{tmp_path / 'missing'}"}, "no such folder"),
                         ({"seed": 2147483647}, "seed must be an integer in [0, 2147483646]; got 2147483647")]:
        res = rp.run_notebook(nb, {"profile": "smoke", **params}, reports=tmp_path / "reports")
        assert res.status == "failed" and says in res.error, (params, res.error)
        assert not (tmp_path / "reports" / "08_amuse_plug_and_play" / "metrics.json").exists()
