"""Notebook options that nbval's run (default parameters, smoke profile) does not reach, executed with papermill on
the smoke profile: their cells must run and write what the README says they write."""

import json

import pandas as pd

from dovlib import reproduce as rp
from dovlib.data import REPO_ROOT


def test_verification_notebook_runs_the_target_code(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    res = rp.run_notebook(REPO_ROOT / "notebooks" / "03_verification.ipynb",
                          {"profile": "smoke", "n_targets": 2, "n_models": 1, "same_code": True}, reports=reports)
    assert res.status == "ok", res.error
    out = reports / "03_verification"
    record = json.loads((out / "metrics.json").read_text())["records"][-1]
    code = record["metrics"]["target_code"]
    assert len(code["targets"]) == 2 and code["targets"][0] == record["params"]["target"]
    rows = pd.DataFrame(code["models"])
    assert set(rows.scenario) == {"Malicious", "Ind-M", "Ind-W plain", "Ind-W code", "Ind-W same code"}
    assert record["params"]["same_code"] is True
    assert rows[rows.scenario.isin(["Ind-W code", "Ind-W same code"])].own_p_value.between(0, 1).all()
    assert rows.p_value.between(0, 1).all() and {f"WSR_{t}" for t in code["targets"]} <= set(rows.columns)
    table = pd.read_csv(out / "target_code_rates.csv")
    assert list(table.scenario) == ["Malicious", "Ind-M", "Ind-W plain", "Ind-W code", "Ind-W same code"]
    assert table.own_verified_rate.iloc[:3].isna().all() and table.own_verified_rate.iloc[3:].between(0, 1).all()
    assert (out / "target_code_wsr.png").is_file() and (out / "delta_per_image.png").is_file()
