"""dovlib.reproduce over small dummy notebooks (made with nbformat in a tmp dir): order, failures that do not stop
the others, reuse of up-to-date runs, --force, re-runs when the notebook or the parameters change."""

import json
import os
import re
import signal

import nbformat
import pytest

from dovlib import reproduce as rp

DUMMY_CODE = """import os, pathlib
root = pathlib.Path(os.environ["DOVLIB_REPORTS"]) / "{stem}"
root.mkdir(parents=True, exist_ok=True)
with open(root / "executions.log", "a") as f:
    f.write(f"{{profile}} {{eps}} {{rate!r}}\\n")
if fail:
    raise RuntimeError("boom: this notebook was asked to fail")
"""


def make_notebook(folder, stem, fail=False, extra_code=""):
    """A tiny parameterised notebook that logs each execution to reports/<stem>/executions.log."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(
        f'profile = "smoke"  # profile\neps = "8/255"  # watermark budget\nrate = 0.1  # rate\nfail = {fail}  # fail?')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {stem}: a dummy"), params,
                nbformat.v4.new_code_cell(DUMMY_CODE.format(stem=stem) + extra_code)]
    path = folder / f"{stem}.ipynb"
    nbformat.write(nb, path)
    return path


def executions(reports, stem):
    log = reports / stem / "executions.log"
    return log.read_text().splitlines() if log.is_file() else []


@pytest.fixture
def env(tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    monkeypatch.setenv("DOVLIB_REPORTS", str(reports))
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    previous = signal.getsignal(signal.SIGTERM)  # the CLI's main() takes over SIGTERM: give it back afterwards
    yield nbs, reports
    signal.signal(signal.SIGTERM, previous)


def test_find_notebooks_orders_and_selects(env):
    nbs, _ = env
    for stem in ("02_b", "00_a", "10_c"):
        make_notebook(nbs, stem)
    (nbs / "scratch.ipynb").write_text("{}")  # not numbered: ignored
    assert [p.stem for p in rp.find_notebooks(nbs)] == ["00_a", "02_b", "10_c"]
    assert [p.stem for p in rp.find_notebooks(nbs, select=["02", "10_c"])] == ["02_b", "10_c"]
    with pytest.raises(ValueError, match="select"):
        rp.find_notebooks(nbs, select=["99"])
    # every prefix must match: '00,99' must not quietly run 00 alone; spaces after commas are dropped
    with pytest.raises(ValueError, match=r"select \['99'\] matches no notebook .* there are 00, 02, 10"):
        rp.find_notebooks(nbs, select=["00", "99"])
    assert [p.stem for p in rp.find_notebooks(nbs, select=["00", " 02"])] == ["00_a", "02_b"]
    with pytest.raises(ValueError, match="notebooks folder"):
        rp.find_notebooks(nbs / "missing")


def test_output_name_is_safe_and_distinct():
    a = rp.output_name("04_ablation", {"eps": "8/255", "rate": 0.1})
    b = rp.output_name("04_ablation", {"eps": "8_255", "rate": 0.1})
    c = rp.output_name("04_ablation", {"eps": "{x}", "rate": 0.1})
    assert a != b and a.endswith(".ipynb") and a.startswith("04_ablation__")
    for name in (a, b, c):
        assert "/" not in name and "{" not in name and "}" not in name
    assert rp.output_name("x", {"rate": 0.1, "eps": "8/255"}) == rp.output_name("x", {"eps": "8/255", "rate": 0.1})


def test_stamp_key_changes_with_notebook_parameters_and_source(tmp_path, monkeypatch):
    nb = make_notebook(tmp_path, "01_x")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    k = rp.stamp_key(nb, {"profile": "smoke"}, pkg)
    assert k == rp.stamp_key(nb, {"profile": "smoke"}, pkg)
    assert k != rp.stamp_key(nb, {"profile": "quick"}, pkg)
    (pkg / "a.py").write_text("x = 2\n")
    k2 = rp.stamp_key(nb, {"profile": "smoke"}, pkg)
    assert k2 != k
    make_notebook(tmp_path, "01_x", extra_code="y = 1")
    k3 = rp.stamp_key(nb, {"profile": "smoke"}, pkg)
    assert k3 != k2
    # one dataset name, other images: sub-imagenet from another root, the offline subsets or downloads elsewhere
    for var in ("DOVLIB_IMAGENET", "DOVLIB_DATA", "DOVLIB_CACHE"):
        with monkeypatch.context() as m:
            m.setenv(var, str(tmp_path / var))
            assert rp.stamp_key(nb, {"profile": "smoke"}, pkg) != k3
    assert rp.stamp_key(nb, {"profile": "smoke"}, pkg) == k3
    # what else decides a result: the device the profile resolves to here, and the libraries' versions
    import torch

    from dovlib import report

    quick = rp.stamp_key(nb, {"profile": "quick"}, pkg)
    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "is_available", lambda: True)  # a GPU node: quick's "auto" is CUDA there
        assert rp.run_environment({"profile": "quick"})["device"] == "cuda"
        assert rp.stamp_key(nb, {"profile": "quick"}, pkg) != quick
        assert rp.stamp_key(nb, {"profile": "smoke"}, pkg) == k3  # smoke names the CPU
    with monkeypatch.context() as m:
        m.setattr(report, "_library_versions", lambda names=None: {"torch": "9.9"})
        assert rp.stamp_key(nb, {"profile": "smoke"}, pkg) != k3
    assert rp.run_environment({"profile": "no-such"})["device"] == "unavailable"  # the notebook will say why


def test_stamp_key_names_the_default_data_folder_as_the_makefile_does(tmp_path, monkeypatch):
    """`make reproduce` exports DOVLIB_DATA=<repo>/../shared/data, which dovlib resolves; run without make, the same
    folder is dovlib's default. Where ../shared is a symlink the two spellings must still give one stamp, or every
    switch between `make reproduce` and `python -m dovlib.reproduce` runs up-to-date notebooks again."""
    from dovlib import data

    nb = make_notebook(tmp_path, "01_x")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    (tmp_path / "elsewhere" / "data").mkdir(parents=True)
    (tmp_path / "shared").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "repo").mkdir()
    monkeypatch.setattr(data, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.delenv("DOVLIB_DATA", raising=False)
    without_make = rp.stamp_key(nb, {"profile": "smoke"}, pkg)
    monkeypatch.setenv("DOVLIB_DATA", str(tmp_path / "shared" / "data"))  # as $(abspath ../shared/data)
    assert rp.stamp_key(nb, {"profile": "smoke"}, pkg) == without_make
    assert rp.data_sources()["data"] == str((tmp_path / "elsewhere" / "data").resolve())
    # a file, not a folder, at ../shared/data: the download cache instead
    monkeypatch.delenv("DOVLIB_DATA")
    (tmp_path / "elsewhere" / "data").rmdir()
    (tmp_path / "elsewhere" / "data").write_text("not a folder")
    monkeypatch.setenv("DOVLIB_CACHE", str(tmp_path / "cache"))
    assert data.offline_data_dir() == (tmp_path / "cache").resolve()


def test_a_run_whose_tables_another_run_overwrote_runs_again(env):
    """Outside a sweep, two parameter sets of one notebook write the same table name: a paper run's table replaced
    by a smoke run's must not make the paper run 'reused' over the smoke run's file."""
    nbs, reports = env
    code = ("import pandas as pd\nfrom dovlib.report import save_table\n"
            "save_table(pd.DataFrame({'profile': [profile]}), 't', '05_tab', profile=profile)")
    make_notebook(nbs, "05_tab", extra_code=code)
    make_notebook(nbs, "06_plain")
    paths = [nbs / "05_tab.ipynb", nbs / "06_plain.ipynb"]
    assert [r.status for r in rp.reproduce("quick", paths, progress=False, index=False)] == ["ok", "ok"]
    stamp = next(iter(rp.load_stamps(reports / "05_tab").values()))
    assert list(stamp["artifacts"]) == ["tables/t"]  # what the run wrote, with its time
    assert [r.status for r in rp.reproduce("quick", paths, progress=False, index=False)] == ["reused", "reused"]
    assert [r.status for r in rp.reproduce("smoke", paths, progress=False, index=False)] == ["ok", "ok"]
    again = rp.reproduce("quick", paths, progress=False, index=False)  # t.csv now holds smoke's table
    assert [r.status for r in again] == ["ok", "reused"]  # 06 wrote nothing another run could replace
    assert (reports / "05_tab" / "t.csv").read_text().split() == ["profile", "quick"]


def test_reproduce_runs_in_order_reports_failure_keeps_going_and_reuses(env):
    nbs, reports = env
    make_notebook(nbs, "00_first")
    make_notebook(nbs, "01_broken", fail=True)
    make_notebook(nbs, "02_last")
    results = rp.reproduce("smoke", rp.find_notebooks(nbs), progress=False)
    assert [(r.notebook, r.status) for r in results] == [("00_first", "ok"), ("01_broken", "failed"),
                                                          ("02_last", "ok")]
    assert "boom" in results[1].error and "RuntimeError" in results[1].error
    assert (reports / results[1].output).name.endswith(".failed.ipynb")
    for r in (results[0], results[2]):  # executed notebook beside the notebook's outputs, with its outputs
        executed = json.loads((reports / r.output).read_text())
        assert executed["metadata"]["papermill"]["parameters"] == {"profile": "smoke"}
    assert executions(reports, "02_last") == ["smoke 8/255 0.1"]
    assert (reports / "index.html").is_file() and "01_broken" in (reports / "index.html").read_text()
    assert not list(reports.rglob("*.running-*"))

    # second run: the good ones are up to date (not executed again), the failed one runs again
    again = rp.reproduce("smoke", rp.find_notebooks(nbs), progress=False, index=False)
    assert [r.status for r in again] == ["reused", "failed", "reused"]
    assert len(executions(reports, "00_first")) == 1 and len(executions(reports, "01_broken")) == 2

    # --force re-runs; a changed notebook re-runs; other parameters are a new run beside the old one
    assert [r.status for r in rp.reproduce("smoke", [nbs / "00_first.ipynb"], force=True, progress=False,
                                           index=False)] == ["ok"]
    make_notebook(nbs, "02_last", extra_code="z = 3")
    assert rp.reproduce("smoke", [nbs / "02_last.ipynb"], progress=False, index=False)[0].status == "ok"
    with pytest.raises(ValueError, match=r"\['unknown'\] are declared by none of the selected notebooks \(02_last\)"):
        rp.reproduce("quick", [nbs / "02_last.ipynb"], extra={"rate": 0.5, "unknown": 1}, progress=False, index=False)
    quick = rp.reproduce("quick", [nbs / "02_last.ipynb"], extra={"rate": 0.5}, progress=False, index=False)[0]
    assert quick.status == "ok" and quick.parameters == {"profile": "quick", "rate": 0.5}
    assert executions(reports, "02_last")[-1] == "quick 8/255 0.5"
    stamps = rp.load_stamps(reports / "02_last")
    assert sorted(s["parameters"]["profile"] for s in stamps.values()) == ["quick", "smoke"]  # one per param set
    assert len(list((reports / "02_last").glob("02_last__*.ipynb"))) == 2


def test_the_index_is_built_by_the_code_the_run_started_with(env, monkeypatch):
    """A quick run of notebook 07 (74 min) ended in an ImportError, its notebook done: the driver imported
    dovlib.index only after the last notebook, and the dovlib on disk had changed in between (index.py needing a
    function that the report module loaded at the start did not have). The index's code is now loaded before the
    first notebook runs: here the on-disk dovlib.index turns unimportable while the notebook runs."""
    import sys

    nbs, reports = env
    make_notebook(nbs, "00_long")

    def run_then_break_the_index(path, params, **kw):
        monkeypatch.setitem(sys.modules, "dovlib.index", None)  # "import dovlib.index" now raises ImportError
        return rp.RunResult(path.stem, params, "ok")

    monkeypatch.delitem(sys.modules, "dovlib.index", raising=False)
    monkeypatch.setattr(rp, "run_notebook", run_then_break_the_index)
    results = rp.reproduce("smoke", rp.find_notebooks(nbs), progress=False)
    assert [r.status for r in results] == ["ok"] and (reports / "index.html").is_file()


def test_failure_keeps_earlier_good_executed_notebook(env):
    nbs, reports = env
    path = make_notebook(nbs, "03_flaky")
    good = rp.run_notebook(path, {"profile": "smoke"})
    assert good.status == "ok"
    before = (reports / good.output).read_bytes()
    make_notebook(nbs, "03_flaky", extra_code="raise ValueError('broken by an edit')")  # same parameters
    bad = rp.run_notebook(path, {"profile": "smoke"})
    assert bad.status == "failed" and "broken by an edit" in bad.error
    assert (reports / good.output).read_bytes() == before  # the earlier good executed notebook is kept
    assert (reports / bad.output).is_file() and bad.output != good.output
    assert [s["status"] for s in rp.load_stamps(reports / "03_flaky").values()] == ["failed"]


def test_bad_eps_or_rate_is_refused_before_a_kernel_writes_a_failed_run(env, capsys):
    # README's example `-p eps 8/0` used to run the notebook until its check failed, leaving a failed run in
    # stamps.json that kept the notebook "failed" in the index after good runs
    nbs, reports = env
    nb = make_notebook(nbs, "04_dummy")
    for name, value, allowed in (("eps", "8/0", "eps"), ("eps", None, "eps"), ("rate", 2, r"rate.*\(0, 1\]")):
        with pytest.raises(ValueError, match=allowed):
            rp.reproduce("smoke", [nb], extra={name: value}, progress=False, index=False)
    with pytest.raises(SystemExit) as exited:
        rp.main([str(nb), "-p", "eps", "8/0", "--reports", str(reports), "--no-index"])
    assert exited.value.code == 2 and "eps" in capsys.readouterr().err
    assert executions(reports, "04_dummy") == [] and not (reports / "04_dummy" / "stamps.json").exists()
    assert rp.reproduce("smoke", [nb], extra={"eps": "4/255", "rate": "1/10"}, progress=False,
                        index=False)[0].status == "ok"


def test_reproduce_rejects_bad_profile_and_cli_exit_code(env, capsys):
    nbs, reports = env
    with pytest.raises(ValueError, match="profile"):
        rp.reproduce("huge", [], progress=False)
    make_notebook(nbs, "05_bad", fail=True)
    code = rp.main([str(nbs / "05_bad.ipynb"), "--profile", "smoke", "--reports", str(reports), "--no-index"])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED 05_bad" in out and "boom" in out
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)  # main() installed exit_on_sigterm
    with pytest.raises(SystemExit) as exited:  # refused as argparse refuses a bad option: exit 2, the reason said
        rp.main(["--profile", "huge", str(nbs / "05_bad.ipynb")])
    assert exited.value.code == 2
    assert re.search(r"error: profile must be one of .*; got 'huge'", capsys.readouterr().err)
    # -p profile overrides --profile: checked before anything runs; named notebooks and --only do not mix
    with pytest.raises(ValueError, match=r"profile must be one of .*; got 'quik'"):
        rp.reproduce("smoke", [nbs / "05_bad.ipynb"], extra={"profile": "quik"}, progress=False)
    with pytest.raises(SystemExit):
        rp.main([str(nbs / "05_bad.ipynb"), "--only", "04", "--reports", str(reports), "--no-index"])
    assert "name notebooks or select them with --only, not both" in capsys.readouterr().err
    assert os.environ["DOVLIB_REPORTS"] == str(reports)  # the caller's setting, untouched


def test_reports_folder_holds_for_one_call_only(env, tmp_path):
    """run_notebook / reproduce with reports= write there, and leave the caller's $DOVLIB_REPORTS as it was."""
    nbs, reports = env
    other = tmp_path / "other"
    path = make_notebook(nbs, "07_where")
    assert rp.run_notebook(path, {"profile": "smoke"}, reports=other).ok
    assert executions(other, "07_where") == ["smoke 8/255 0.1"] and executions(reports, "07_where") == []
    assert os.environ["DOVLIB_REPORTS"] == str(reports)
    rp.reproduce("smoke", [path], reports=tmp_path / "third", index=False, progress=False)
    assert executions(tmp_path / "third", "07_where") == ["smoke 8/255 0.1"]
    assert os.environ["DOVLIB_REPORTS"] == str(reports)


def test_kernels_import_the_dovlib_of_the_driver_not_another_installed_copy(env, tmp_path, monkeypatch):
    """The kernel runs in notebooks/, where ``import dovlib`` would find whichever copy is installed (another
    checkout's, with its data and runs/ folders); the driver puts its own package's folder first on PYTHONPATH.
    Here a stand-in checkout whose dovlib says where it is."""
    nbs, reports = env
    checkout = tmp_path / "checkout"
    (checkout / "dovlib").mkdir(parents=True)
    (checkout / "dovlib" / "__init__.py").write_text("WHERE = 'the driver checkout'\n")
    monkeypatch.setattr(rp, "REPO_ROOT", checkout)
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    code = ("\nimport dovlib\n(root / 'which.txt').write_text(getattr(dovlib, 'WHERE', dovlib.__file__))\n"
            "(root / 'path.txt').write_text(os.environ['PYTHONPATH'])\n")
    assert rp.run_notebook(make_notebook(nbs, "08_which", extra_code=code), {"profile": "smoke"}).ok
    assert (reports / "08_which" / "which.txt").read_text() == "the driver checkout"
    assert (reports / "08_which" / "path.txt").read_text() == os.pathsep.join([str(checkout), "/somewhere/else"])
    assert os.environ["PYTHONPATH"] == "/somewhere/else"  # the caller's, put back


def test_kernel_that_does_not_start_is_a_failure_not_a_crash(env):
    nbs, reports = env
    res = rp.run_notebook(make_notebook(nbs, "06_k"), {"profile": "smoke"}, kernel_name="no-such-kernel")
    assert res.status == "failed" and "no-such-kernel" in res.error.lower()
    assert res.output == "" or (reports / res.output).name.endswith(".failed.ipynb")
    assert rp.cached_result(nbs / "06_k.ipynb", {"profile": "smoke"}) is None


def test_kernel_start_race_is_retried_but_cell_errors_are_not(env, monkeypatch):
    """Jobs started together can be handed the same port (ZMQError, 'Kernel died before replying to kernel_info'):
    run_notebook starts the kernel again. Errors from the notebook's cells are never retried."""
    import papermill

    nbs, reports = env
    path = make_notebook(nbs, "07_r")
    real = papermill.execute_notebook
    calls, die_next = [], [True]

    def flaky(*args, **kwargs):
        calls.append(1)
        if die_next.pop() if die_next else False:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    monkeypatch.setattr(rp.time, "sleep", lambda s: None)
    res = rp.run_notebook(path, {"profile": "smoke"})
    assert res.status == "ok" and len(calls) == 2 and executions(reports, "07_r") == ["smoke 8/255 0.1"]

    calls.clear()
    res = rp.run_notebook(make_notebook(nbs, "08_f", fail=True), {"profile": "smoke"})
    assert res.status == "failed" and "boom" in res.error and len(calls) == 1

    def always_dies(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("Kernel died before replying to kernel_info")

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", always_dies)
    res = rp.run_notebook(make_notebook(nbs, "09_d"), {"profile": "smoke"})
    assert res.status == "failed" and "kernel_info" in res.error and len(calls) == rp.KERNEL_START_ATTEMPTS
    assert rp.kernel_start_failed(RuntimeError("Kernel died before replying to kernel_info"))
    assert not rp.kernel_start_failed(RuntimeError("boom"))


@pytest.mark.skipif(os.name == "nt", reason="no IPC transport on Windows")
def test_kernels_talk_over_ipc_files_that_are_removed_afterwards(env, capfd):
    """No TCP port to collide on, no ipykernel warning about unencrypted TCP; the socket files go away."""
    nbs, reports = env
    code = ("\nimport json as _j, ipykernel as _k\n"
            "(root / 'connection.json').write_text(_k.get_connection_info())\n")
    res = rp.run_notebook(make_notebook(nbs, "10_ipc", extra_code=code), {"profile": "smoke"})
    assert res.status == "ok", res.error
    info = json.loads((reports / "10_ipc" / "connection.json").read_text())
    assert info["transport"] == "ipc" and os.path.basename(info["ip"]).startswith("dovlib-kernel-")
    assert not [f for f in os.listdir(os.path.dirname(info["ip"])) if f.startswith(os.path.basename(info["ip"]))]
    assert "without encryption" not in capfd.readouterr().err


def test_reproduce_with_jobs_runs_notebooks_at_once_and_keeps_their_order(env):
    nbs, reports = env
    table = ("\nimport pandas as pd\nfrom dovlib.report import save_table\n"
             "save_table(pd.DataFrame({'x': [1]}), 'result', '00_a')\n")
    for stem, fail in (("00_a", False), ("01_b", True), ("02_c", False)):
        make_notebook(nbs, stem, fail=fail, extra_code=table if stem == "00_a" else "")
    results = rp.reproduce("smoke", rp.find_notebooks(nbs), progress=False, index=False, jobs=2)
    assert [(r.notebook, r.status) for r in results] == [("00_a", "ok"), ("01_b", "failed"), ("02_c", "ok")]
    assert (reports / "00_a" / "result.csv").is_file()  # one run per notebook: plain names, unlike a sweep's jobs
    assert "boom" in results[1].error
    assert executions(reports, "00_a") == executions(reports, "02_c") == ["smoke 8/255 0.1"]
    again = rp.reproduce("smoke", rp.find_notebooks(nbs), progress=False, index=False, jobs=3)
    assert [r.status for r in again] == ["reused", "failed", "reused"]
    with pytest.raises(ValueError, match="jobs"):
        rp.reproduce("smoke", rp.find_notebooks(nbs), progress=False, index=False, jobs=0)


def test_sigterm_leaves_no_half_written_notebook_or_stamp(env, monkeypatch):
    """`kill` (or a scheduler's time limit) during a run: with the CLI's handler installed, SIGTERM exits like
    Ctrl-C and the temporary *.running-<pid>.ipynb is removed; without it Python would die leaving it behind."""
    import papermill

    nbs, reports = env
    path = make_notebook(nbs, "10_t")

    def killed_midway(source, output, **kwargs):
        with open(output, "w") as f:
            f.write("{}")  # papermill writes the output notebook as cells run
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM should have stopped the run")

    monkeypatch.setattr(papermill, "execute_notebook", killed_midway)
    rp.exit_on_sigterm()  # the env fixture restores the previous handler
    with pytest.raises(SystemExit) as stop:
        rp.run_notebook(path, {"profile": "smoke"})
    assert stop.value.code == 128 + signal.SIGTERM
    assert not list((reports / "10_t").glob("*.running-*")) and not list((reports / "10_t").glob("*.ipynb"))
    assert rp.cached_result(path, {"profile": "smoke"}) is None


def test_source_hash_and_notebook_parameters(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub" / "__pycache__").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 1\n")
    h = rp.source_hash(pkg)
    (pkg / "sub" / "__pycache__" / "b.cpython-311.py").write_text("cache")  # caches do not count
    (pkg / "notes.txt").write_text("not source")
    assert rp.source_hash(pkg) == h
    # prose only (a comment, a docstring, layout): the same code, the same hash; any code change: another
    b = pkg / "sub" / "b.py"
    b.write_text('"""Module notes."""\n\n\ndef f(a):\n    """Doc."""\n    return a  # note\n')
    h2 = rp.source_hash(pkg)
    b.write_text("def f(a):\n    'Other words.'\n    # a comment\n    return (a)\n")
    assert rp.source_hash(pkg) == h2 != h
    b.write_text("def f(a):\n    return a + 1\n")
    assert rp.source_hash(pkg) != h2
    b.write_text('def f(a):\n    """Doc."""\n')  # a body of only a docstring is code too
    assert rp.source_hash(pkg) not in (h, h2)
    b.write_text("def broken(:\n")  # unparsable: its bytes count
    broken = rp.source_hash(pkg)
    b.write_text("def broken(: \n")
    assert rp.source_hash(pkg) != broken
    b.write_text("y = 1\n")
    assert rp.source_hash(pkg) == h
    b.rename(pkg / "b.py")  # same contents, another place: another hash
    assert rp.source_hash(pkg) != h
    assert len(rp.source_hash()) == 64  # the installed dovlib
    params = rp.notebook_parameters(make_notebook(tmp_path, "01_x"))
    assert params == {"profile": '"smoke"', "eps": '"8/255"', "rate": "0.1", "fail": "False"}


def test_force_measures_the_records_of_notebooks_that_keep_them(tmp_path):
    """--force reran 04-06 but their cached() records were reused, so figures were redrawn from older code's numbers;
    now a notebook declaring ``recompute`` gets it under --force, unless -p recompute says otherwise."""
    keeps = make_notebook(tmp_path, "04_x")
    nb = json.loads(keeps.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    cell["source"] = "".join(cell["source"]) + "\nrecompute = False  # recompute?"
    keeps.write_text(json.dumps(nb))
    plain = make_notebook(tmp_path, "01_x")
    cache = tmp_path / "07_x.ipynb"  # 07, 08, 10 declare recompute for caches keyed by the code: left alone
    cache.write_text(keeps.read_text())
    assert rp._for_notebook(cache, "smoke", {}, force=True) == {"profile": "smoke"}
    assert rp._for_notebook(keeps, "smoke", {}, force=True) == {"profile": "smoke", "recompute": True}
    assert rp._for_notebook(keeps, "smoke", {}) == {"profile": "smoke"}
    assert rp._for_notebook(keeps, "smoke", {"recompute": False}, force=True) == {"profile": "smoke",
                                                                                  "recompute": False}
    assert rp._for_notebook(plain, "smoke", {"eps": "4/255"}, force=True) == {"profile": "smoke", "eps": "4/255"}
    # RECORD_NOTEBOOKS names exactly the notebooks whose records studies.cached keeps
    from pathlib import Path

    sources = sorted(Path(rp.__file__).resolve().parents[1].joinpath("notebooks").glob("[0-9][0-9]_*.py"))
    assert tuple(p.name[:3] for p in sources if "cached(NOTEBOOK" in p.read_text()) == rp.RECORD_NOTEBOOKS


def test_a_forced_run_of_a_record_notebook_is_the_plain_runs_result(env):
    """--force gives 04-06 recompute=True; that run's stamp and executed notebook are the plain parameter set's, so
    the next plain reproduce reuses it (it used to run 04-06 again, its stamp being another parameter set's). A run
    asked for with recompute True is never reused."""
    nbs, reports = env
    keeps = make_notebook(nbs, "04_x")
    nb = json.loads(keeps.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    cell["source"] = "".join(cell["source"]) + "\nrecompute = False  # recompute?"
    keeps.write_text(json.dumps(nb))
    forced = rp.reproduce("smoke", [keeps], force=True, progress=False, index=False)[0]
    assert forced.status == "ok" and forced.parameters == {"profile": "smoke"}
    assert "recompute" not in forced.output and len(list((reports / "04_x").glob("*.ipynb"))) == 1
    assert rp.reproduce("smoke", [keeps], progress=False, index=False)[0].status == "reused"
    again = rp.reproduce("smoke", [keeps], extra={"recompute": True}, progress=False, index=False)[0]
    assert again.status == "ok" and len(executions(reports, "04_x")) == 2
    assert rp.reproduce("smoke", [keeps], progress=False, index=False)[0].status == "reused"


def test_deleted_records_or_tables_make_the_run_go_again(env):
    """docs/reproduce.md: delete reports/<notebook>/metrics.json to start a notebook afresh. The stamp used to reuse the
    run anyway (and the index then showed no records); a deleted table file did the same."""
    nbs, reports = env
    code = ("import pandas as pd\nfrom dovlib.report import save_table, write_record\n"
            "write_record('07_rec', {'profile': profile}, {'x': 1.0}, profile=profile)\n"
            "save_table(pd.DataFrame({'profile': [profile]}), 't', '07_rec', profile=profile)")
    path = make_notebook(nbs, "07_rec", extra_code=code)
    assert rp.run_notebook(path, {"profile": "smoke"}).status == "ok"
    assert rp.run_notebook(path, {"profile": "smoke"}).status == "reused"
    (reports / "07_rec" / "metrics.json").unlink()
    assert rp.run_notebook(path, {"profile": "smoke"}).status == "ok"
    assert (reports / "07_rec" / "metrics.json").is_file()
    (reports / "07_rec" / "t.csv").unlink()
    assert rp.run_notebook(path, {"profile": "smoke"}).status == "ok"
    assert rp.run_notebook(path, {"profile": "smoke"}).status == "reused"
    assert len(executions(reports, "07_rec")) == 3


def test_relative_data_and_runs_folders_mean_the_drivers_folders_in_the_kernel(env, tmp_path, monkeypatch):
    """The kernel runs in notebooks/: DOVLIB_DATA=../shared/data (what the error messages suggest) named another
    folder there than the one the stamp recorded."""
    nbs, reports = env
    code = ("import os\n(root / 'seen.txt').write_text(os.environ['DOVLIB_DATA'] + '\\n' + os.environ['DOVLIB_RUNS'])")
    path = make_notebook(nbs, "08_env", extra_code=code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOVLIB_DATA", "somedata")
    monkeypatch.setenv("DOVLIB_RUNS", "./someruns")
    assert rp.run_notebook(path, {"profile": "smoke"}).status == "ok"
    seen = (reports / "08_env" / "seen.txt").read_text().splitlines()
    assert seen == [str(tmp_path / "somedata"), str(tmp_path / "someruns")]
    assert os.environ["DOVLIB_DATA"] == "somedata"  # the caller's values come back


def test_braces_in_a_reports_path_are_kept(env, tmp_path):
    """papermill formats its paths with the parameters: a reports folder named rep{x} became rep7."""
    nbs, _ = env
    path = make_notebook(nbs, "09_brace")
    res = rp.run_notebook(path, {"profile": "smoke"}, reports=tmp_path / "rep{profile}")
    assert res.status == "ok", res.error
    assert (tmp_path / "rep{profile}" / "09_brace" / res.output.split("/", 1)[1]).is_file()


def test_cli_names_a_missing_notebook_and_a_non_string_profile_without_a_traceback(env, capsys):
    nbs, _ = env
    with pytest.raises(SystemExit) as err:
        rp.main([str(nbs / "nosuch.ipynb"), "--no-index"])
    assert err.value.code == 2 and "nosuch.ipynb' does not exist" in capsys.readouterr().err
    make_notebook(nbs, "10_ok")
    with pytest.raises(SystemExit) as err:
        rp.main([str(nbs / "10_ok.ipynb"), "--no-index", "-p", "profile", "1"])
    assert err.value.code == 2 and "profile" in capsys.readouterr().err


def test_folder_variables_passed_to_kernels_read_a_tilde_as_the_home_folder(tmp_path, monkeypatch):
    """The kernel runs in notebooks/, so relative folder variables are made absolute before it starts; "~/data" was
    made "<working folder>/~/data" (not absolute to os.path), another folder than the one dovlib reads."""
    from dovlib import reproduce

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOVLIB_DATA", "~/data")
    monkeypatch.setenv("DOVLIB_RUNS", "runs")
    with reproduce._absolute_paths(["DOVLIB_DATA", "DOVLIB_RUNS"]):
        assert os.environ["DOVLIB_DATA"] == str(tmp_path / "home" / "data")
        assert os.environ["DOVLIB_RUNS"] == str(tmp_path / "runs")
    assert os.environ["DOVLIB_DATA"] == "~/data" and os.environ["DOVLIB_RUNS"] == "runs"
