"""dovlib.index: reports/index.html and summary.md show every table (paper/ours/diff with profile, dataset,
device, wall time), record, figure and failed run, and open offline (checked in headless Chromium when present)."""

import base64
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from dovlib import index, report  # noqa: E402


class Page(HTMLParser):
    """The tags the tests look at: tables (with the id of the enclosing block), images, links, scripts."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.imgs, self.hrefs, self.external, self.ids, self.body = [], [], [], [], [], {}
        self._block = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
            self._block = a["id"]
        if tag == "table":
            self.tables.append((self._block, a.get("class", "")))
        elif tag == "img":
            self.imgs.append(a["src"])
        elif tag == "a":
            self.hrefs.append(a.get("href", ""))
        elif tag == "body":
            self.body = a
        for key in ("src", "href"):
            if str(a.get(key, "")).startswith(("http:", "https:", "//")):
                self.external.append(a[key])
        if tag == "link" or (tag == "script" and "src" in a):
            self.external.append(a.get("href") or a.get("src"))


@pytest.fixture
def reports(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    root = tmp_path / "reports"
    ctx = dict(profile="smoke", dataset="cifar10-subset", is_subset=True, device="cpu", device_name="CPU (2 cores)")
    report.write_record("02_sscl_bw", {"profile": "smoke", "eps": "8/255"}, {"wsr": 0.25, "ba": 0.5, "curve": [1, 2]},
                        wall_time=12.5, **ctx)
    report.save_table(pd.DataFrame({"method": ["SSCL-BW", "BadNets"], "paper": [0.95, 0.9], "ours": [0.25, 0.5]}),
                      "table2_wsr", "02_sscl_bw", caption="Table 2 <WSR> on CIFAR-10")
    report.save_table(pd.DataFrame({"eps": ["4/255"], "wsr": [0.1]}), "eps_grid", "02_sscl_bw",
                      caption="sweep", profile="quick", dataset="cifar10", is_subset=False, device="cuda",
                      wall_time=99.0)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    report.save_fig(fig, "wsr_curve", "02_sscl_bw")
    plt.close(fig)
    report.write_record("08_amuse", {"profile": "smoke"}, {"bit_acc": 0.7531}, wall_time=3.0, **ctx)
    report.save_table(pd.DataFrame({"L": [32], "paper": [1.0], "ours": [0.75], "diff": [-0.25]}), "table5",
                      "08_amuse")
    (root / "09_broken").mkdir()
    (root / "09_broken" / "stamps.json").write_text(json.dumps({"k": {
        "notebook": "09_broken", "parameters": {"profile": "smoke"}, "status": "failed", "wall_time": 1.0,
        "output": "09_broken/x.failed.ipynb", "error": "cell 3: RuntimeError: out of memory", "key": "k",
        "finished": "2026-01-01T00:00:00+00:00"}}))
    return root


def test_marks_crafted_on_another_device_are_named_beside_the_table(reports):
    """Table I's crafted marks (Label-Consistent, Sleeper Agent, UBW-C) are data a run may read back from runs/:
    the index names the device that crafted them where it is not the one the table was measured on, as it does for
    models trained elsewhere, and a table that names its own device never borrows another run's crafting."""
    here, gpu = "CPU (AMD EPYC, 2 cores, AVX512 kernels)", "NVIDIA H100 80GB HBM3"
    ctx = {"profile": "quick", "device": "cpu", "device_name": here}
    crafted = {"label-consistent": gpu, "sleeper-agent": here, "ubw-c": gpu}
    assert "crafted_by" in index.CONTEXT_KEYS
    assert index.context_label({**ctx, "crafted_by": crafted}) == (
        f"profile quick · cpu ({here}) · marks crafted by {gpu} (label-consistent, ubw-c); {here} (sleeper-agent)")
    assert "crafted" not in index.context_label({**ctx, "crafted_by": dict.fromkeys(crafted, here)})  # crafted here
    assert "crafted" not in index.context_label({**ctx, "crafted_by": {}})  # nothing crafted (old records: no key)
    old = {k: v for k, v in ctx.items() if k != "device_name"}  # a context that does not name its device
    assert index.context_label({**old, "crafted_by": {"ubw-c": "unknown"}}) == (
        "profile quick · cpu · marks crafted by unknown (ubw-c)")
    report.write_record("02_watermark_dataset", {"profile": "quick", "table": "I-all-methods"}, {"x_BA": 0.9},
                        crafted_by=crafted, **ctx)
    report.save_table(pd.DataFrame({"method": ["UBW-C"], "paper": [0.9], "ours": [0.8]}),
                      "table1_all_methods_vs_paper", "02_watermark_dataset", crafted_by=crafted, **ctx)
    report.save_table(pd.DataFrame({"a": [1]}), "own_device", "02_watermark_dataset", profile="quick", device="cuda")
    report.save_table(pd.DataFrame({"a": [1]}), "borrowing", "02_watermark_dataset")
    tables = {t.name: t for t in next(nb for nb in index.collect() if nb.stem == "02_watermark_dataset").tables}
    assert tables["table1_all_methods_vs_paper"].context["crafted_by"] == crafted
    assert "crafted_by" not in tables["own_device"].context  # its own device: not the record's crafting
    assert tables["borrowing"].context["crafted_by"] == crafted  # no context of its own: the newest record's
    html_path, md_path = index.build_index()
    line = f"marks crafted by {gpu} (label-consistent, ubw-c); {here} (sleeper-agent)"
    assert line in html_path.read_text() and line in md_path.read_text()
    # the records' table gives the crafting no column (a dict cut at 60 characters): the line above says it
    nb02 = next(nb for nb in index.collect() if nb.stem == "02_watermark_dataset")
    assert "crafted_by" in nb02.latest and "crafted_by" not in index.records_frame(nb02.records).columns


def test_index_has_every_table_with_context_and_diff(reports):
    html_path, md_path = index.build_index()
    assert html_path == reports / "index.html" and md_path == reports / "summary.md"
    text = html_path.read_text()
    page = Page(text)
    blocks = [b for b, _ in page.tables]
    for tid in ("02_sscl_bw-table2_wsr", "02_sscl_bw-eps_grid", "08_amuse-table5"):
        assert tid in blocks, f"table {tid} missing"
    assert sum("comparison" in c for _, c in page.tables) == 2
    nbs = {nb.stem: nb for nb in index.collect()}
    t2 = next(t for t in nbs["02_sscl_bw"].tables if t.name == "table2_wsr")
    assert list(t2.df.columns) == ["method", "paper", "ours", "diff"]  # diff added = ours - paper
    assert t2.df["diff"].round(6).tolist() == [-0.7, -0.4]
    # a table saved without its context takes the newest record's profile, dataset and device, but never its wall
    # time: that is the record's own run (it used to show a later run's time beside an earlier run's table)
    assert index.context_label(t2.context) == "profile smoke · dataset cifar10-subset (subset) · cpu (CPU (2 cores))"
    grid = next(t for t in nbs["02_sscl_bw"].tables if t.name == "eps_grid")
    assert "profile quick · dataset cifar10 (full) · cuda · wall time 99.0 s" == index.context_label(grid.context)
    assert "profile smoke · dataset cifar10-subset (subset)" in text and "dataset cifar10 (full)" in text
    read_back = {"device": "cpu", "trained_on": "cuda", "training_precision": "bf16"}
    assert index.context_label(read_back) == "cpu · models trained on cuda in bf16"  # read back from another machine
    assert index.context_label({**read_back, "device": "cuda:1"}) == "cuda:1"  # trained where it ran: nothing to add
    # a CPU model read back from a CPU with other kernels (the same seed trains to other weights there) is named
    cpus = {"device": "cpu", "device_name": "CPU (AMD EPYC, 2 cores, AVX512 kernels)", "trained_on": "cpu",
            "trained_by": "CPU (Intel Xeon, 8 cores, AVX2 kernels)", "training_precision": "fp32"}
    assert index.context_label(cpus) == ("cpu (CPU (AMD EPYC, 2 cores, AVX512 kernels)) · models trained on cpu "
                                         "(CPU (Intel Xeon, 8 cores, AVX2 kernels)) in fp32")
    assert "models trained" not in index.context_label({**cpus, "trained_by": cpus["device_name"]})
    assert index.context_label({**read_back, "trained_by": "NVIDIA H100 80GB HBM3"}) == (
        "cpu · models trained on cuda (NVIDIA H100 80GB HBM3) in bf16")
    # the perceptual measure is named (a Table II measured with the 1 - SSIM fallback beside the paper's LPIPS)
    assert index.context_label({"profile": "quick", "perceptual": "ssim", "device": "cuda"}) == (
        "profile quick · perceptual ssim · cuda")
    assert "perceptual" in index.CONTEXT_KEYS
    # a table naming its own device never borrows the newest record's trained_on (another run's models)
    report.write_record("02_sscl_bw", {"profile": "quick", "x": 1}, {}, profile="quick", device="cpu",
                        trained_on="cpu", training_precision="fp32",
                        trained_by="CPU (AMD EPYC, 2 cores, AVX512 kernels)")
    report.save_table(pd.DataFrame({"a": [1]}), "gpu_table", "02_sscl_bw", profile="quick", device="cuda")
    gpu = next(t for t in index.collect() if t.stem == "02_sscl_bw").tables
    ctx = next(t for t in gpu if t.name == "gpu_table").context
    assert ctx["device"] == "cuda" and "trained_on" not in ctx and "training_precision" not in ctx
    assert "trained_by" not in ctx
    assert "Table 2 &lt;WSR&gt; on CIFAR-10" in text  # captions escaped
    assert "cell 3: RuntimeError: out of memory" in text and nbs["09_broken"].status == "failed"
    assert "0.7531" in text and "8/255" in text  # records rendered (no table holds 0.7531)


def test_index_is_self_contained(reports):
    html_path, _ = index.build_index()
    page = Page(html_path.read_text())
    assert page.external == []  # no CDN, no network
    assert len(page.imgs) == 1 and page.imgs[0].startswith("data:image/png;base64,")
    assert base64.b64decode(page.imgs[0].split(",", 1)[1])[:4] == b"\x89PNG"
    local = [h for h in page.hrefs if h and not h.startswith("#")]
    assert "02_sscl_bw/wsr_curve.svg" in local
    assert "09_broken/x.failed.ipynb" in local  # the executed notebook of each run is a link
    for href in local:  # relative links resolve next to index.html
        assert (html_path.parent / href).is_file() or href.endswith(".failed.ipynb"), href


def test_summary_markdown(reports):
    _, md = index.build_index()
    text = md.read_text()
    assert "### table2_wsr (paper / ours / diff)" in text and "| method" in text and "-0.7" in text
    assert "*profile smoke · dataset cifar10-subset (subset)" in text
    assert "![wsr_curve](02_sscl_bw/wsr_curve.png)" in text and "out of memory" in text


def test_latest_record_of_one_second_is_the_one_stored_last(tmp_path):
    """Records are stamped to the second and appended: of two written in the same second, the later-stored one is the
    newest (it gives the context of tables saved without their own)."""
    folder = tmp_path / "02_x"
    folder.mkdir()
    stamp = "2026-01-01T00:00:00+00:00"
    records = [{"params": {"dataset": d}, "profile": "smoke", "dataset": d, "written": stamp}
               for d in ("mnist", "cifar10")]
    (folder / "metrics.json").write_text(json.dumps({"notebook": "02_x", "records": records}))
    assert index.collect(tmp_path)[0].latest["dataset"] == "cifar10"
    records[0]["written"] = "2026-01-01T00:00:01+00:00"  # a later second still wins, wherever it is stored
    (folder / "metrics.json").write_text(json.dumps({"notebook": "02_x", "records": records}))
    assert index.collect(tmp_path)[0].latest["dataset"] == "mnist"
    assert index.NotebookReport("02_x").latest == {}


def test_empty_reports_folder(tmp_path):
    html, md = index.build_index(tmp_path / "nothing")
    assert "make reproduce" in html.read_text() and md.read_text().startswith("# dovlib reports")
    assert index.collect(tmp_path / "missing") == []


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install -y chromium); "
                    "the headless-browser check of reports/index.html is skipped")
def test_index_opens_in_headless_chromium(reports, tmp_path):
    html_path, _ = index.build_index()
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}",
           "--dump-dom", Path(html_path).resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    page = Page(dom)
    blocks = [b for b, _ in page.tables]
    assert {"02_sscl_bw-table2_wsr", "02_sscl_bw-eps_grid", "08_amuse-table5"} <= set(blocks)
    assert page.body.get("data-images-total") == "1" and page.body.get("data-images-loaded") == "1"


def test_table_context_fills_gaps_from_same_profile_record_only(reports):
    report.save_table(pd.DataFrame({"paper": [3], "ours": [3]}), "bits", "08_amuse", profile="smoke", dataset="none",
                      device="cpu")
    report.save_table(pd.DataFrame({"paper": [3], "ours": [2]}), "bits_paper", "08_amuse", profile="paper")
    tables = {t.name: t for t in next(nb for nb in index.collect() if nb.stem == "08_amuse").tables}
    assert index.context_label(tables["bits"].context) == "profile smoke · dataset none · cpu"
    assert index.context_label(tables["bits_paper"].context) == "profile paper"  # the smoke record says nothing
    assert tables["bits"].df["diff"].tolist() == [0] and tables["bits_paper"].df["diff"].tolist() == [-1]


def _save_table2_and_fig4():
    report.save_table(pd.DataFrame({"scenario": ["Malicious"], "paper": [0.964], "ours": [0.9]}),
                      "table2_verification", "03_verification")
    fig, ax = plt.subplots(figsize=(2, 2))
    report.save_fig(fig, "fig4_ablation", "04_ablation")
    plt.close(fig)


def test_paper_coverage_marks_present_and_missing(reports):
    report.write_record("03_verification", {"profile": "smoke"}, {"dp": 0.9}, profile="smoke", dataset="mnist-offline",
                        is_subset=True, device="cpu", wall_time=1.0)
    _save_table2_and_fig4()
    cov = index.coverage(index.collect()).set_index("output")
    assert cov.loc["table table2_verification", "status"] == "present"
    assert "dataset mnist-offline (subset)" in cov.loc["table table2_verification", "measured with"]
    assert cov.loc["figure fig4_ablation", "status"] == "present"
    assert cov.loc["table table1_hidden", "status"] == "MISSING"
    assert len(cov) == len(index.PAPER_ITEMS) and set(cov["paper"]) == {"SSCL-BW", "AMUSE"}
    html, md = index.build_index()
    text = html.read_text()
    assert "Paper coverage" in text and 'href="#03_verification-table2_verification"' in text
    assert text.count(">MISSING<") == len(index.PAPER_ITEMS) - 2
    assert "## Paper coverage" in md.read_text()


def test_paper_coverage_finds_a_sweep_jobs_outputs(reports, monkeypatch):
    monkeypatch.setenv(report.RUN_TAG_ENV, "eps-8_255__0123abcd")
    _save_table2_and_fig4()
    cov = index.coverage(index.collect()).set_index("output")
    assert cov.loc["table table2_verification", "status"] == "present"
    assert cov.loc["table table2_verification", "anchor"] == "03_verification-table2_verification__eps-8_255__0123abcd"
    assert cov.loc["figure fig4_ablation", "status"] == "present"
    assert cov.loc["figure fig5_removal", "status"] == "MISSING"
    assert not index._is_output("table1_all_methods_vs_paper", "table1_all_methods")  # another output, not a job's


def _stamp(root, stem, key, status, finished):
    path = root / stem / "stamps.json"
    stamps = json.loads(path.read_text()) if path.is_file() else {}
    stamps[key] = {"notebook": stem, "parameters": {"profile": "smoke", "eps": key}, "status": status,
                   "wall_time": 1.0, "output": f"{stem}/{key}.ipynb", "error": "boom" if status == "failed" else "",
                   "key": key, "finished": finished}
    path.write_text(json.dumps(stamps))


def test_coverage_marks_outputs_stale_when_every_run_failed_and_status_shows_a_failed_job(reports, monkeypatch):
    _save_table2_and_fig4()
    root = Path(os.environ["DOVLIB_REPORTS"])
    # 04's only run failed after its figure was drawn: the figure is an earlier run's, so "stale", not "present"
    _stamp(root, "04_ablation", "8_255", "failed", "2026-01-02T00:00:00+00:00")
    # 03: one sweep job failed, a newer one passed: the notebook is "failed", its table still "present"
    _stamp(root, "03_verification", "1_255", "failed", "2026-01-01T00:00:00+00:00")
    _stamp(root, "03_verification", "2_255", "ok", "2026-01-03T00:00:00+00:00")
    nbs = {nb.stem: nb for nb in index.collect()}
    assert nbs["03_verification"].status == "failed" and not nbs["03_verification"].all_failed
    assert nbs["04_ablation"].status == "failed" and nbs["04_ablation"].all_failed
    cov = index.coverage(list(nbs.values())).set_index("output")
    assert cov.loc["figure fig4_ablation", "status"] == "stale"
    assert cov.loc["table table2_verification", "status"] == "present"


def test_coverage_shows_the_newest_of_a_sweeps_tagged_tables(reports, monkeypatch):
    for tag, value in (("profile-smoke__aaaa", 0.1), ("profile-quick__bbbb", 0.9)):
        monkeypatch.setenv(report.RUN_TAG_ENV, tag)
        report.save_table(pd.DataFrame({"scenario": ["Malicious"], "paper": [0.964], "ours": [value]}),
                          "table2_verification", "03_verification")
    monkeypatch.setenv(report.RUN_TAG_ENV, "profile-smoke__aaaa")  # the older job saves again: now the newest
    report.save_table(pd.DataFrame({"scenario": ["Malicious"], "paper": [0.964], "ours": [0.2]}),
                      "table2_verification", "03_verification")
    cov = index.coverage(index.collect()).set_index("output")
    assert cov.loc["table table2_verification", "anchor"] == "03_verification-table2_verification__profile-smoke__aaaa"
    monkeypatch.setenv(report.RUN_TAG_ENV, "profile-quick__bbbb")
    report.save_table(pd.DataFrame({"scenario": ["Malicious"], "paper": [0.964], "ours": [0.95]}),
                      "table2_verification", "03_verification")
    cov = index.coverage(index.collect()).set_index("output")
    assert cov.loc["table table2_verification", "anchor"] == "03_verification-table2_verification__profile-quick__bbbb"


def test_coverage_names_the_run_that_drew_a_figure(reports, monkeypatch):
    # the quick run drew Fig. 4; a later smoke record of another parameter set must not be named as its source
    fig, ax = plt.subplots(figsize=(2, 2))
    report.save_fig(fig, "fig4_ablation", "04_ablation", profile="quick", dataset="cifar10-subset", is_subset=True,
                    device="cuda")
    report.write_record("04_ablation", {"profile": "smoke"}, {}, profile="smoke", dataset="synthetic", device="cpu")
    entry = json.loads((Path(os.environ["DOVLIB_REPORTS"]) / "04_ablation" / "figures.json").read_text())
    assert entry["fig4_ablation"]["profile"] == "quick" and entry["fig4_ablation"]["written"]
    label = index.coverage(index.collect()).set_index("output").loc["figure fig4_ablation", "measured with"]
    assert "quick" in label and "cifar10-subset (subset)" in label and "smoke" not in label
    # a sweep's newest tagged figure is the one named
    monkeypatch.setenv(report.RUN_TAG_ENV, "profile-paper__cccc")
    report.save_fig(fig, "fig4_ablation", "04_ablation", profile="paper", dataset="cifar10", is_subset=False,
                    device="cuda")
    label = index.coverage(index.collect()).set_index("output").loc["figure fig4_ablation", "measured with"]
    assert "paper" in label and "quick" not in label
    # a figure saved without context falls back to the notebook's newest record, as before
    report.save_fig(fig, "fig5_removal", "05_removal_attacks")
    report.write_record("05_removal_attacks", {"profile": "smoke"}, {}, profile="smoke", dataset="synthetic",
                        device="cpu")
    assert "smoke" in index.coverage(index.collect()).set_index("output").loc["figure fig5_removal", "measured with"]
    plt.close(fig)


def test_every_paper_item_is_written_by_its_notebook():
    """The coverage map names outputs the notebooks really write (save_table / save_fig with that name)."""
    root = Path(__file__).resolve().parents[1] / "notebooks"
    for it in index.PAPER_ITEMS:
        src = (root / f"{it.notebook}.py").read_text()
        call = "save_table(" if it.kind == "table" else "save_fig("
        assert call in src and f'"{it.name}"' in src, (it.notebook, it.name)


def test_cli_builds_the_index_of_the_folder_given(reports, capsys):
    assert index.main(["--reports", str(reports)]) == 0
    assert (reports / "index.html").is_file() and (reports / "summary.md").is_file()
    assert f"wrote {reports / 'index.html'}" in capsys.readouterr().out


def test_every_figure_a_notebook_saves_names_its_run():
    """Each save_fig call in the notebooks passes the run's context (profile, dataset, device), so the index never
    labels a figure with another run's record."""
    root = Path(__file__).resolve().parents[1] / "notebooks"
    for src in sorted(root.glob("[0-9][0-9]_*.py")):
        text = src.read_text()
        calls = re.findall(r"save_fig\(([^\n]*)\)", text)
        assert calls, src.name
        for args in calls:
            assert "context" in args or "profile=" in args, (src.name, args)


def _call_args(text: str, name: str) -> list[str]:
    """The argument text of every ``name(...)`` call in ``text`` (parentheses balanced, lines joined)."""
    out = []
    for start in (i for i in range(len(text)) if text.startswith(name + "(", i)):
        depth, i = 0, start + len(name)
        while True:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        out.append(text[start + len(name) + 1:i])
    return out


def test_every_record_a_notebook_writes_names_its_run():
    """Each write_record / cached call passes the run's context, the one from ``run_context`` where the notebook
    builds one (07-09 name the device by hand), so every record says which profile, dataset and device it was
    measured with, in the same fields as its figures."""
    root = Path(__file__).resolve().parents[1] / "notebooks"
    seen = 0
    for src in sorted(root.glob("[0-9][0-9]_*.py")):
        text = src.read_text()
        for args in _call_args(text, "write_record") + _call_args(text, "cached"):
            if args.lstrip().startswith("NOTEBOOK") or args.lstrip().startswith("\n"):
                seen += 1
                by_hand = "run_context(" not in text and "device_name=" in args
                assert re.search(r"\*\*(fig_|record_)?context\b", args) or by_hand, (src.name, args)
    assert seen >= 10  # 01-07 and 08-10 write records


def test_every_table_a_notebook_saves_names_its_run():
    """Each save_table call passes a context dict (``**context`` from ``run_context``, or 07-09's own with the
    device's name), so the index labels every table with its own profile, dataset and device instead of falling
    back to the notebook's newest record, which may come from another run."""
    root = Path(__file__).resolve().parents[1] / "notebooks"
    seen = 0
    for src in sorted(root.glob("[0-9][0-9]_*.py")):
        text = src.read_text()
        for args in _call_args(text, "save_table"):
            seen += 1
            # record_: 04-06's reused rows; cpu_: 08's Table 2 (invisible-watermark on the CPU, not HiDDeN's device)
            assert re.search(r"\*\*(fig_|record_|cpu_)?context\b", args), (src.name, args)
            assert "device=" not in args and "profile=" not in args, (src.name, args)  # spelled once, in the dict
    assert seen >= 20  # 02-10 save tables


def test_call_args_balances_parentheses():
    assert _call_args("f(a, g(b), c)\nf(x)", "f") == ["a, g(b), c", "x"]


def test_summary_leaves_missing_values_blank_as_the_page_does(tmp_path):
    """A notebook run by hand with papermill has no stamp: its run time is blank in summary.md, not ``nan``."""
    folder = tmp_path / "02_x"
    folder.mkdir()
    records = [{"params": {"a": 1}, "profile": "smoke"}, {"params": {"a": 2, "b": 0.5}, "profile": "smoke"}]
    (folder / "metrics.json").write_text(json.dumps({"records": records}))
    md = index.render_markdown(index.collect(tmp_path))
    assert "nan" not in md
    row = next(line for line in md.splitlines() if line.startswith("| 02_x"))
    assert [c.strip() for c in row.strip("|").split("|")][5] == ""  # run time (s)


def test_records_keep_integers_whole_and_enough_digits(tmp_path):
    """50000 beside a record without it stays 50000 (pandas made it the float 5e+04), 12345.6 is not 1.235e+04 and a
    p-value of 0.0099996 is not rounded to 0.01 beside alpha 0.01; small p-values keep their exponent."""
    folder = tmp_path / "03_x"
    folder.mkdir()
    records = [{"params": {"n_train": 50000, "alpha": 0.01}, "wall_time": 12345.6, "metrics": {"p_value": 0.0099996}},
               {"params": {"alpha": 0.01}, "wall_time": 2.0, "metrics": {"p_value": 1.2e-05}}]
    (folder / "metrics.json").write_text(json.dumps({"records": records}))
    nbs = index.collect(tmp_path)
    assert str(index.records_frame(nbs[0].records)["n_train"].dtype) == "Int64"
    for text in (index.render_html(nbs), index.render_markdown(nbs)):
        assert "50000" in text and "12345.6" in text and "0.0099996" in text and "1.2e-05" in text
        assert "e+04" not in text and "50000.0" not in text
    # whole numbers that arrive as floats (a CSV column with gaps) print whole too, not 1.1174e+07
    assert [index._text(v) for v in (11173962.0, 2.0, 0.5, float("nan"), 3)] == ["11173962", "2", "0.5", "", "3"]


def test_records_show_eps_in_grey_levels_as_the_notebooks_write_it(tmp_path):
    """Notebooks 01-03 record eps as the float 8/255, shown in the records table as 0.0313725 where the notebooks,
    the README and 04-06's own records say 8/255: the table writes each eps in grey levels (eps_label), keeps a
    label that is already one, and leaves a value eps_label cannot read as it is."""
    folder = tmp_path / "01_x"
    folder.mkdir()
    records = [{"params": {"eps": 8 / 255, "seed": 0}, "metrics": {"acc": 0.5}},
               {"params": {"eps": 0.03, "seed": 1}, "metrics": {"acc": 0.5}},
               {"params": {"eps": "16/255", "seed": 2}, "metrics": {"acc": 0.5}},
               {"params": {"eps": 1e-9, "seed": 3}, "metrics": {"acc": 0.5}},
               {"params": {"seed": 4}, "metrics": {"acc": 0.5}}]
    (folder / "metrics.json").write_text(json.dumps({"records": records}))
    [nb] = index.collect(tmp_path)
    frame = index.records_frame(nb.records)
    assert frame["eps"].tolist()[:4] == ["8/255", "7.65/255", "16/255", 1e-9] and pd.isna(frame["eps"].iloc[4])
    for text in (index.render_html([nb]), index.render_markdown([nb])):
        assert "8/255" in text and "0.0313725" not in text


def test_an_ml_task_record_of_n_train_none_still_loads_and_indexes_beside_a_count(tmp_path, monkeypatch):
    """Notebook 10 recorded n_train None for the whole split (quick, paper) before it recorded the count: such a record
    still loads, is found by its own parameters, and shows (blank) beside a record of the count in the index."""
    from dovlib.report import find_record

    folder = tmp_path / "10_amuse_ml_task"
    folder.mkdir()
    base = {"profile": "quick", "dataset": "cifar10-subset", "method": "dwtDct", "seed": 0}
    records = [{"params": {**base, "n_train": None}, "wall_time": 3.0, "metrics": {"clean_test_acc": 0.61}},
               {"params": {**base, "n_train": 5085}, "wall_time": 4.0, "metrics": {"clean_test_acc": 0.62}}]
    (folder / "metrics.json").write_text(json.dumps({"records": records}))
    [nb] = index.collect(tmp_path)
    frame = index.records_frame(nb.records)
    assert len(frame) == 2 and frame["n_train"].isna().tolist() == [True, False] and frame["n_train"].iloc[1] == 5085
    for text in (index.render_html([nb]), index.render_markdown([nb])):
        assert "0.61" in text and "0.62" in text and "5085" in text
    monkeypatch.setenv("DOVLIB_REPORTS", str(tmp_path))  # where find_record reads records
    assert find_record("10_amuse_ml_task", {**base, "n_train": None})["wall_time"] == 3.0
    assert find_record("10_amuse_ml_task", {**base, "n_train": 5085})["wall_time"] == 4.0


def test_a_record_of_two_tables_on_different_data_tags_each_dataset_with_its_own_subset(tmp_path, monkeypatch):
    """Notebook 08's record names both tables' data ("cifar10-subset (Table 1), skimage-photos (Table 2)") with one
    is_subset for both: the index put one "(subset)" after them all, so scikit-image's photos, read whole, read as a
    subset too. The record now gives each table's dataset and tag (``datasets``), and the label names each with its
    own; a table saved with its own dataset keeps its own label, one saved without any borrows the per-table one."""
    monkeypatch.setenv("DOVLIB_REPORTS", str(tmp_path))
    ctx = dict(profile="smoke", device="cpu", device_name="CPU (2 cores)")
    report.write_record("08_amuse_plug_and_play", {"profile": "smoke", "tables": "both"}, {"t1_bit_acc": 0.5},
                        dataset="cifar10-subset (Table 1), skimage-photos (Table 2)", is_subset=True,
                        datasets={"Table 1": {"dataset": "cifar10-subset", "is_subset": True},
                                  "Table 2": {"dataset": "skimage-photos", "is_subset": False}}, wall_time=3.0, **ctx)
    report.save_table(pd.DataFrame({"L": [30], "bit_acc": [0.5]}), "table1_hidden", "08_amuse_plug_and_play",
                      dataset="cifar10-subset", is_subset=True, **ctx)
    report.save_table(pd.DataFrame({"L": [30], "bit_acc": [0.9]}), "table2_dct_dwt", "08_amuse_plug_and_play",
                      dataset="skimage-photos", is_subset=False, **ctx)
    report.save_table(pd.DataFrame({"L": [30]}), "no_context", "08_amuse_plug_and_play")
    [nb] = index.collect(tmp_path)
    both = "cifar10-subset (subset) for Table 1, skimage-photos (full) for Table 2"
    assert index.dataset_label(nb.latest) == both
    assert index._overview([nb])["dataset"].tolist() == [both]
    labels = {t.name: index.context_label(t.context) for t in nb.tables}
    assert "dataset cifar10-subset (subset) ·" in labels["table1_hidden"] and "Table" not in labels["table1_hidden"]
    assert "dataset skimage-photos (full) ·" in labels["table2_dct_dwt"] and "Table" not in labels["table2_dct_dwt"]
    assert f"dataset {both} ·" in labels["no_context"]
    for text in (index.render_html([nb]), index.render_markdown([nb])):
        assert both in text and "(Table 2) (subset)" not in text
    assert "datasets" not in index.records_frame(nb.records)  # the records table keeps its dataset column as stored
    # a record without datasets (every other notebook, and 08's before) is labelled as before
    assert index.dataset_label({"dataset": "cifar10-subset", "is_subset": True}) == "cifar10-subset (subset)"


def test_summary_escapes_pipes_and_fences_multiline_errors(tmp_path):
    """A ``|`` in a parameter opened another column of summary.md's table; a multi-line error or one with a backtick
    broke its inline code."""
    folder = tmp_path / "05_x"
    folder.mkdir()
    records = [{"params": {"attacks": "jpeg|blur", "note": "two\nlines"}, "metrics": {"acc": 0.5}}]
    (folder / "metrics.json").write_text(json.dumps({"records": records}))
    error = "Traceback:\n  x = `y` + ```z```\nValueError: bad"
    (folder / "stamps.json").write_text(json.dumps({"k": {"parameters": {"profile": "smoke"}, "status": "failed",
                                                          "wall_time": 1.0, "error": error, "finished": "x"}}))
    md = index.render_markdown(index.collect(tmp_path))
    table = md.split("### Records", 1)[1].strip().splitlines()[:3]
    assert [len(re.findall(r"(?<!\\)\|", line)) for line in table] == [4, 4, 4]  # three columns
    assert "jpeg\\|blur" in table[2] and "two lines" in table[2]
    assert "\n````\n" + error + "\n````\n" in md  # verbatim, fenced longer than its longest backtick run


def test_smoke_badge_for_any_spelling_of_the_smoke_profile(tmp_path):
    """A profile of ``" smoke"`` (get_profile strips it) lost the badge: ``startswith("smoke")`` missed it."""
    folder = tmp_path / "02_x"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"records": [{"params": {"a": 1}, "profile": " smoke"}]}))
    (folder / "t.csv").write_text("a\n1\n")
    (folder / "tables.json").write_text(json.dumps({"t": {"file": "t.csv", "profile": " smoke:epochs=1"}}))
    badge = '<span class="badge smoke">smoke</span>'
    assert index.render_html(index.collect(tmp_path)).count(badge) == 3  # the legend, the notebook, its table
    assert not index._is_smoke("quick") and not index._is_smoke(None) and index._is_smoke("smoke:bogus=1")


def test_every_link_within_the_page_has_its_target(reports):
    """Coverage rows of notebooks that wrote nothing linked to sections (#05_..., #06_...) the page does not have."""
    text = index.build_index()[0].read_text()
    page = Page(text)
    inner = [h[1:] for h in page.hrefs if h.startswith("#")]
    assert "02_sscl_bw" in inner and set(inner) <= set(page.ids)
    assert "<td>05_removal_attacks · figure fig5_removal</td>" in text  # named, as plain text


def test_outputs_computed_from_no_images_say_dataset_none_everywhere(reports):
    """09's simulated run reads no images: its record's params say dataset None, its context "simulated" with
    is_subset False, which the Overview showed as "simulated (full)" beside the coverage row's "dataset none"."""
    nb, ctx = "09_amuse_subset_attack", dict(profile="smoke", device="cpu")
    report.save_table(pd.DataFrame({"paper": [3], "ours": [3]}), "sub_message_bits_vs_paper", nb, dataset="none",
                      **ctx)
    fig, ax = plt.subplots(figsize=(2, 2))
    report.save_fig(fig, "accuracy_vs_leaked_share", nb, dataset="simulated", is_subset=False, **ctx)
    plt.close(fig)
    report.write_record(nb, {"profile": "smoke", "method": "simulated", "dataset": None}, {}, dataset="simulated",
                        is_subset=False, **ctx)
    nbs = index.collect()
    overview = index._overview(nbs).set_index("notebook").loc[nb, "dataset"]
    cov = index.coverage(nbs).set_index("output")["measured with"]
    assert overview == "none (simulated)"
    assert "dataset none ·" in cov["table sub_message_bits_vs_paper"]
    assert "dataset none (simulated)" in cov["figure accuracy_vs_leaked_share"]
    assert index.dataset_label({"dataset": "cifar10", "is_subset": False}) == "cifar10 (full)"


def test_reports_readme_names_the_lock_files():
    """report.file_lock leaves ``<file>.lock`` beside metrics.json, tables.json, figures.json and stamps.json."""
    text = (Path(__file__).resolve().parents[1] / "reports" / "README.md").read_text()
    assert "*.lock" in text and "safe to delete when no run is active" in text


def test_cells_keep_booleans_big_floats_and_windows_newlines_as_they_are():
    assert index._text(True) == "True" and index._text(False) == "False"  # not 1 and 0
    frame = index._frame_text(pd.DataFrame({"verified": [True, False], "n": [1.0, 2.0]}))
    assert frame["verified"].tolist() == ["True", "False"] and frame["n"].tolist() == ["1", "2"]
    assert index._text(1e20) == "1e+20" and index._text(123456789012345.0) == "123456789012345"
    assert index._md_cell("a\r\nb|c") == "a b\\|c"
    assert not index._is_smoke("smokescreen") and not index._is_smoke("smoked:epochs=1")


def test_each_figure_on_the_page_says_which_run_drew_it(reports):
    """Tables carry their profile, dataset (subset or full), device and a smoke badge; figures in the notebook
    sections carried only their name, so 01's watermark examples or 09's trade-off plot (titles without profile or
    dataset) read as results. Each figure now has its own figures.json context, as the coverage table shows it."""
    fig, ax = plt.subplots(figsize=(2, 2))
    report.save_fig(fig, "examples", "07_amuse", profile="quick:epochs=10", dataset="cifar10-subset", is_subset=True,
                    perceptual="psnr", device="cuda")
    plt.close(fig)
    html = index.render_html(index.collect())
    caption = re.search(r'alt="examples">\s*<figcaption>(.*?)</figcaption>', html, re.S).group(1)
    assert "profile quick:epochs=10" in caption and "cifar10-subset (subset)" in caption
    assert "perceptual psnr" in caption and "cuda" in caption and "smoke" not in caption
    # a figure saved without context: the notebook's newest record, with its smoke badge
    smoke = re.search(r'alt="wsr_curve">\s*<figcaption>(.*?)</figcaption>', html, re.S).group(1)
    assert "profile smoke" in smoke and "cifar10-subset (subset)" in smoke and 'class="badge smoke"' in smoke
    md = index.render_markdown(index.collect())
    line = md.split("![examples]", 1)[1].splitlines()
    assert any("profile quick:epochs=10" in s and "(subset)" in s for s in line[:3])


def _context_keys(node, known: dict) -> set | None:
    """The keys of the context dict ``node`` builds in a notebook (``dict(...)``, ``{...}``, ``run_context(...)``,
    ``measured_context(ctx, ...)``, ``run_times(...)``, ``a if c else b``), with ``known`` the keys of names bound
    before; None where they cannot be read off the code."""
    import ast

    if isinstance(node, ast.Name):
        return known.get(node.id)
    if isinstance(node, ast.IfExp):
        a, b = _context_keys(node.body, known), _context_keys(node.orelse, known)
        return None if a is None or b is None else a & b  # only what both branches give
    if isinstance(node, ast.Dict):
        keys = set()
        for k, v in zip(node.keys, node.values):
            inner = {k.value} if isinstance(k, ast.Constant) else _context_keys(v, known)  # k None: **v
            keys |= inner or set()
        return keys
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        keys = {kw.arg for kw in node.keywords if kw.arg} | set().union(
            *(_context_keys(kw.value, known) or set() for kw in node.keywords if kw.arg is None))
        if node.func.id == "dict":
            return keys
        if node.func.id == "run_context":
            return keys | {"profile", "device", "device_name"} | (
                {"dataset", "is_subset", "dataset_note", "data_hash"} if len(node.args) > 2 else set())
        if node.func.id == "measured_context":  # this run's context, with the records' devices
            return _context_keys(node.args[0], known)
        if node.func.id == "run_times":  # a record's times (dovlib.report.run_times)
            return {"wall_time", "compute_time", "cached_compute_time", "cached_artifacts"}
    return None


def _output_contexts(stem: str) -> list[tuple[int, str, set]]:
    """Each save_fig, save_table and write_record call in notebook ``stem``: its line, the function, and the keys of
    the context it passes (keywords, and the keys of the dicts it unpacks)."""
    import ast

    import jupytext

    nb = jupytext.read(Path(__file__).resolve().parents[1] / "notebooks" / f"{stem}.py")
    tree = ast.parse("\n".join(c.source for c in nb.cells if c.cell_type == "code"))
    nodes = sorted((n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.Call))),
                   key=lambda n: (n.lineno, isinstance(n, ast.Assign)))  # a call before what its result is bound to
    known, calls = {}, []
    for n in nodes:
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            keys = _context_keys(n.value, known)
            if keys is not None:
                known[n.targets[0].id] = keys
        elif isinstance(n, ast.Call) and getattr(n.func, "id", "") in ("save_fig", "save_table", "write_record"):
            unpacked = [_context_keys(kw.value, known) for kw in n.keywords if kw.arg is None]
            assert None not in unpacked, f"{stem} line {n.lineno}: a context this test cannot read"
            calls.append((n.lineno, n.func.id, {kw.arg for kw in n.keywords if kw.arg}.union(*unpacked)))
    return calls


@pytest.mark.parametrize("stem", sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "notebooks").glob(
    "[0-9][0-9]_*.py") if p.stem[:2] != "00"))  # 00 trains a classifier only: no watermark, no perceptual measure
def test_every_output_of_a_watermark_notebook_names_its_perceptual_measure(stem):
    """Notebooks 01-06 give their figures, tables and records the perceptual measure (run_context(...,
    perceptual=...)), and the index's captions show it; 07-10 named it in their records only ("psnr"; 09 "none" for
    its simulated extraction), so their figures' captions left it out. Read off each notebook's code: every
    save_fig, save_table and write_record call passes a ``perceptual``."""
    calls = _output_contexts(stem)
    assert any(f == "save_fig" for _, f, _ in calls)
    missing = [(line, f) for line, f, keys in calls if "perceptual" not in keys]
    assert not missing, f"{stem}: no perceptual measure at (line in its code cells, call) {missing}"


@pytest.mark.parametrize("stem", sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "notebooks").glob(
    "[0-9][0-9]_*.py")))
def test_every_notebook_record_says_what_its_results_cost(stem):
    """The index's compute_time column was blank for notebooks 00, 07, 09 and 10 (07 and 10 wrote their cost as
    wall_time). Read off each notebook's code: every write_record call passes a wall_time and a compute_time (04-06
    write theirs through dovlib.studies.cached, which passes run_times)."""
    calls = [keys for _, f, keys in _output_contexts(stem) if f == "write_record"]
    assert all({"wall_time", "compute_time"} <= keys for keys in calls), (stem, calls)


def test_records_show_their_compute_time_and_older_records_without_it_still_index(tmp_path):
    folder = tmp_path / "01_x"
    folder.mkdir()
    records = [{"params": {"seed": 0}, "profile": "smoke", "wall_time": 0.1, "compute_time": 9.5,
                "metrics": {"BA": 0.5}},
               {"params": {"seed": 1}, "profile": "smoke", "wall_time": 9.4, "metrics": {"BA": 0.6}}]  # older
    (folder / "metrics.json").write_text(json.dumps({"records": records}))
    nbs = index.collect(tmp_path)
    df = index.records_frame(nbs[0].records)
    assert df["wall_time"].tolist() == [0.1, 9.4] and df["compute_time"].iloc[0] == 9.5
    assert pd.isna(df["compute_time"].iloc[1])  # blank, not an error
    for text in (index.render_html(nbs), index.render_markdown(nbs)):
        assert "compute_time" in text and "9.5" in text and "what its results cost" in text
    assert index.context_label({"wall_time": 0.1, "compute_time": 9.5}) == "wall time 0.1 s · compute time 9.5 s"
    assert index.context_label({"wall_time": 0.1}) == "wall time 0.1 s"
    assert "compute_time" not in index.BORROWED_KEYS  # a table never shows another run's time
