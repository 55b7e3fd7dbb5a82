"""dovlib.sweep: papermill-like value parsing, grids, one job per combination in a process pool and through
submitit, records from concurrent jobs merged into one metrics.json, up-to-date combinations reused."""

import json
import math
import multiprocessing
import shutil

import nbformat
import pandas as pd
import pytest

from dovlib import report, sweep

RECORD_CODE = """import pandas as pd
from dovlib.report import save_table, write_record
write_record("{stem}", {{"profile": profile, "eps": eps, "rate": rate}}, {{"wsr": rate * 2}}, profile=profile,
             dataset="synthetic", is_subset=False, device="cpu", wall_time=0.0)
save_table(pd.DataFrame({{"eps": [eps], "rate": [rate]}}), "grid_point", "{stem}")
"""
PLAIN_CODE = """import os, pathlib
d = pathlib.Path(os.environ["DOVLIB_REPORTS"]) / "{stem}"
d.mkdir(parents=True, exist_ok=True)
(d / f"done_{{rate}}.txt").write_text(repr(eps))
"""


def make_notebook(folder, stem, code):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "smoke"  # profile\neps = "8/255"  # budget\nrate = 0.1  # rate')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {stem}"), params, nbformat.v4.new_code_cell(code.format(stem=stem))]
    path = folder / f"{stem}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def reports(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    return tmp_path / "reports"


@pytest.mark.parametrize("text", ["8/255", "0.1", "1e-3", "3", "-2", "True", "False", "None", "abc", "1_000", " 7"])
def test_parse_value_matches_papermill_cli(text):
    from papermill.cli import _resolve_type  # private, but it is the reference behaviour

    ours, theirs = sweep.parse_value(text), _resolve_type(text)
    assert ours == theirs and type(ours) is type(theirs)


def test_parse_grid_and_combinations():
    grid = sweep.parse_grid([("eps", "1/255,2/255"), ("rate", "0.01, 0.1"), ("eps", "2/255,4/255")])
    assert grid == {"eps": ["1/255", "2/255", "4/255"], "rate": [0.01, 0.1]}
    combos = sweep.combinations(grid)
    assert len(combos) == 6 and combos[0] == {"eps": "1/255", "rate": 0.01} and combos[1]["rate"] == 0.1
    assert len({json.dumps(c, sort_keys=True) for c in combos}) == 6
    assert sweep.parse_grid({"seed": 1}) == {"seed": [1]}
    # a value given twice is one job in the dict form too (two would share a run tag and overwrite each other)
    assert sweep.parse_grid({"eps": ["8/255", "8/255", "4/255"]}) == {"eps": ["8/255", "4/255"]}
    with pytest.raises(ValueError, match="parameter eps"):
        sweep.parse_grid([("eps", ",")])
    with pytest.raises(ValueError, match="identifier"):
        sweep.parse_grid([("bad-name", "1")])


def test_quoted_values_keep_their_commas_and_a_split_profile_string_is_refused():
    grid = sweep.parse_grid([("archs", "'resnet18,vgg16'"), ("profile", "\"quick:device=cpu,epochs=10\", smoke")])
    assert grid == {"archs": ["resnet18,vgg16"], "profile": ["quick:device=cpu,epochs=10", "smoke"]}
    assert len(sweep.combinations(grid)) == 2
    with pytest.raises(ValueError, match="quote an override string"):
        sweep.parse_grid([("profile", "quick:device=cpu,epochs=10")])
    with pytest.raises(ValueError, match="-p eps .*No closing quotation"):
        sweep.parse_grid([("eps", "'1/255")])
    # a backslash is kept as given, as papermill's -p keeps it (posix shlex would drop it: folder:/data/ab)
    assert sweep.parse_grid([("dataset", r"folder:/data/a\b,'C:\x,y'")]) == {"dataset": [r"folder:/data/a\b",
                                                                                         r"C:\x,y"]}


def test_sweep_rejects_bad_inputs(tmp_path, reports):
    nb = make_notebook(tmp_path, "04_ablation", PLAIN_CODE)
    with pytest.raises(ValueError, match="parameter gamma .*allowed.*eps"):
        sweep.sweep(nb, [("gamma", "1")], progress=False)
    with pytest.raises(ValueError, match="executor"):
        sweep.sweep(nb, [("eps", "1/255")], executor="cloud", progress=False)
    with pytest.raises(ValueError, match="jobs"):
        sweep.sweep(nb, [("eps", "1/255")], jobs=0, progress=False)
    if shutil.which("srun") is None:
        with pytest.raises(ValueError, match="executor 'slurm'"):
            sweep.sweep(nb, [("eps", "1/255")], executor="slurm", progress=False, index=False)
    with pytest.raises(ValueError, match="notebook"):
        sweep.sweep(tmp_path / "missing.ipynb", [("eps", "1/255")], progress=False)
    # each -p profile value is checked before any job starts, not once per failed kernel
    with pytest.raises(ValueError, match=r"profile must be one of \['smoke', 'quick', 'paper'\]; got 'quik'"):
        sweep.sweep(nb, [("eps", "1/255"), ("profile", "smoke,quik")], progress=False)
    # and so is each -p eps value (8/0 would otherwise fail in every job's kernel)
    with pytest.raises(ValueError, match=r"eps .*8/0"):
        sweep.sweep(nb, [("eps", "1/255,8/0")], progress=False)
    # from the command line a TypeError of a parser (eps None) is the usage message too, not a traceback
    with pytest.raises(SystemExit) as stop:
        sweep.main([str(nb), "-p", "eps", "None"])
    assert stop.value.code == 2


def test_two_spellings_of_one_eps_are_one_job(tmp_path, reports, capsys):
    """Notebooks 04-06 key records by eps_label: 8/255 and 0.03137254 would be two jobs writing one record."""
    nb = make_notebook(tmp_path, "05_plain", PLAIN_CODE)
    results = sweep.sweep(nb, [("rate", "0.3"), ("eps", "8/255,0.03137254,4/255")], progress=False, index=False)
    assert [(r.status, r.parameters["eps"]) for r in results] == [("ok", "8/255"), ("ok", "4/255")]
    assert "-p eps: 0.03137254 is 8/255 already given as '8/255'" in capsys.readouterr().err
    # a budget apart by more than the label's six digits stays a job of its own
    assert sweep._one_per_value("eps", ["8/255", 0.0313725, "8.5/255"]) == ["8/255", 0.0313725, "8.5/255"]


def test_two_spellings_of_one_rate_or_integer_are_one_job(tmp_path, reports, capsys):
    """rate 1/10 and 0.1 are one record of notebooks 04-06 (parse_rate), target 1 and 1.0 one value (check_int): four
    jobs used to compute two points twice, the last writer winning. A bad rate is refused before any job."""
    assert sweep.parse_grid([("target", "1,1.0,2"), ("flag", "True,1")]) == {"target": [1, 2], "flag": [True, 1]}
    nb = make_notebook(tmp_path, "05_plain", PLAIN_CODE)
    results = sweep.sweep(nb, [("rate", "0.1,1/10,0.2")], progress=False, index=False)
    assert [r.parameters["rate"] for r in results] == [0.1, 0.2]
    assert "-p rate: '1/10' is 0.1 already given as 0.1" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"rate must be .*got 3"):
        sweep.sweep(nb, [("rate", "0.1,3")], progress=False, index=False)


def test_two_spellings_of_one_profile_are_one_job(tmp_path, reports):
    nb = make_notebook(tmp_path, "05_plain", PLAIN_CODE)
    spellings = "\"quick:epochs=2, device=cpu\",'quick:device=cpu,epochs=2'"
    results = sweep.sweep(nb, [("rate", "0.3"), ("profile", spellings)], progress=False, index=False)
    assert [(r.status, r.parameters["profile"]) for r in results] == [("ok", "quick:device=cpu,epochs=2")]


@pytest.mark.slow
def test_local_pool_sweep_merges_records_and_reuses(tmp_path, reports):
    nb = make_notebook(tmp_path, "04_ablation", RECORD_CODE)
    grid = [("eps", "1/255,8/255"), ("rate", "0.1,1")]
    results = sweep.sweep(nb, grid, jobs=2, progress=False)
    assert sorted(r.status for r in results) == ["ok"] * 4
    recs = report.load_records("04_ablation")
    got = sorted((r["params"]["eps"], r["params"]["rate"], r["metrics"]["wsr"]) for r in recs)
    assert got == [("1/255", 0.1, 0.2), ("1/255", 1, 2), ("8/255", 0.1, 0.2), ("8/255", 1, 2)]  # "8/255" kept
    outputs = [reports / r.output for r in results]
    assert all(p.is_file() and p.parent == reports / "04_ablation" for p in outputs)  # no folder from the slash
    assert (reports / "index.html").is_file()
    tables = json.loads((reports / "04_ablation" / "tables.json").read_text())  # one table per job, none overwritten
    saved = sorted(pd.read_csv(reports / "04_ablation" / t["file"]).iloc[0].tolist() for t in tables.values())
    assert saved == [["1/255", 0.1], ["1/255", 1.0], ["8/255", 0.1], ["8/255", 1.0]]
    assert all(name.startswith("grid_point__") for name in tables)
    again = sweep.sweep(nb, [("eps", "8/255"), ("rate", "0.1,1")], jobs=1, progress=False, index=False)
    assert [r.status for r in again] == ["reused", "reused"]


@pytest.mark.slow
def test_submitit_executor_runs_the_same_jobs(tmp_path, reports):
    nb = make_notebook(tmp_path, "05_plain", PLAIN_CODE)
    results = sweep.sweep(nb, [("rate", "0.3")], executor="submitit-local", progress=False, index=False)
    assert [r.status for r in results] == ["ok"]
    assert (reports / "05_plain" / "done_0.3.txt").read_text() == "'8/255'"
    assert (tmp_path / "runs" / "sweeps" / "05_plain" / "submitit").is_dir()


def _write_many(args):
    root, worker = args
    import os

    os.environ["DOVLIB_REPORTS"] = root
    for i in range(8):
        report.write_record("07_concurrent", {"worker": worker, "i": i}, {"v": i})
        report.save_table(__import__("pandas").DataFrame({"x": [i]}), f"t{worker}_{i}", "07_concurrent")


def test_concurrent_writers_lose_nothing(reports):
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork (as run_local): by now this pytest process holds torch's and onnxruntime's threads, and a forked
    # Pool hung a full CI run once (its workers exited, 143 and 1, and Pool.map waited for ever); a dead worker now
    # fails the test (BrokenProcessPool), and a stuck one after the timeout
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_write_many, [(str(reports), w) for w in range(4)], timeout=300))
    assert len(report.load_records("07_concurrent")) == 32
    assert len(json.loads((reports / "07_concurrent" / "tables.json").read_text())) == 32


def test_a_local_job_gets_its_share_of_threads_and_watermarking_workers(monkeypatch):
    import os

    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "DOVLIB_WORKERS")
    for var in names + (report.RUN_TAG_ENV,):
        monkeypatch.setenv(var, "")  # recorded, so that what _job sets is undone after the test
        monkeypatch.delenv(var)
    monkeypatch.setenv("MKL_NUM_THREADS", "1")  # a value the user set is kept
    monkeypatch.setattr(sweep, "run_notebook", lambda *a, **k: {v: os.environ.get(v) for v in names})
    env = sweep._job("nb.ipynb", {}, False, "reports", 3, None, None)
    assert env == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "1", "DOVLIB_WORKERS": "3"}
    monkeypatch.setattr(sweep, "run_notebook", lambda *a, **k: os.environ[report.RUN_TAG_ENV])
    params = {"eps": "8/255", "rate": 0.1}
    assert sweep._job("nb.ipynb", params, False, "reports", None, None, None) == sweep.run_tag(params)
    # reproduce --jobs runs distinct notebooks: plain names, no tag left behind
    with pytest.raises(KeyError, match=rf"^'{report.RUN_TAG_ENV}'$"):
        sweep._job("nb.ipynb", params, False, "reports", None, None, None, False)


def test_cli_passes_the_slurm_options_and_exits_with_the_jobs_status(tmp_path, reports, monkeypatch, capsys):
    from dovlib.reproduce import RunResult

    seen = {}

    def fake(notebook, grid, **kw):
        seen.update(notebook=notebook, grid=grid, **kw)
        return [RunResult("04_ablation", {"eps": "1/255"}, "ok"),
                RunResult("04_ablation", {"eps": "8/255"}, "failed", error="cell 3: boom")]

    monkeypatch.setattr(sweep, "sweep", fake)
    code = sweep.main(["nb.ipynb", "-p", "eps", "1/255,8/255", "--profile", "quick", "--executor", "slurm",
                       "--partition", "gpu", "--gpus", "1", "--timeout-min", "240", "-j", "4", "--no-index"])
    assert code == 1  # one job failed
    assert seen["grid"] == [["eps", "1/255,8/255"]] and seen["profile"] == "quick" and seen["jobs"] == 4
    assert seen["slurm"] == {"timeout_min": 240, "slurm_partition": "gpu", "gpus_per_node": 1}
    assert seen["executor"] == "slurm" and seen["index"] is False
    out = capsys.readouterr().out
    assert "2 jobs" in out and "1 ran, 0 reused, 1 failed" in out and "FAILED {'eps': '8/255'}: cell 3: boom" in out
    monkeypatch.setattr(sweep, "sweep", lambda *a, **k: [RunResult("x", {}, "reused")])
    assert sweep.main(["nb.ipynb"]) == 0


def test_cli_refuses_bad_input_with_the_parameter_named(tmp_path, reports, capsys):
    nb = make_notebook(tmp_path, "04_ablation", PLAIN_CODE)
    with pytest.raises(SystemExit) as exit_:
        sweep.main([str(nb), "-p", "gamma", "1", "--no-index"])
    assert exit_.value.code == 2 and "parameter gamma is not in 04_ablation.ipynb" in capsys.readouterr().err


def _fake_cuda(monkeypatch, n):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _fake_cuda(monkeypatch, 0)
    assert sweep.visible_gpus() == []
    _fake_cuda(monkeypatch, 3)
    assert sweep.visible_gpus() == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5, GPU-abc")
    _fake_cuda(monkeypatch, 2)
    assert sweep.visible_gpus() == ["5", "GPU-abc"]
    # a GPU pool only for profiles that run on CUDA by auto / cuda; cuda:N, cpu or mps keep the devices as they are
    assert sweep.gpus_for(["quick", "paper:epochs=3"]) == ["5", "GPU-abc"]
    assert sweep.gpus_for(["quick", "smoke"]) == [] and sweep.gpus_for(["quick:device=cuda:1"]) == []
    assert sweep.gpus_for([]) == []
    assert sweep.on_accelerator(["quick:device=cuda:1"]) and sweep.on_accelerator(["smoke", "quick"])
    assert sweep.on_accelerator(["quick:device=mps"]) and not sweep.on_accelerator(["quick:device=cpu", "smoke"])
    _fake_cuda(monkeypatch, 0)
    assert not sweep.on_accelerator(["quick"])  # auto without CUDA: the CPU


@pytest.mark.parametrize("profiles", [["quick:device=cuda:0"], ["smoke", "quick"]])
def test_a_sweep_on_one_named_gpu_or_mixed_devices_runs_one_job_at_once(tmp_path, reports, monkeypatch, capsys,
                                                                       profiles):
    """cuda:N, or a CPU profile beside a CUDA one, spreads over no GPUs; it used to start a job per CPU core (16) on
    the one GPU."""
    nb = make_notebook(tmp_path, "nb", PLAIN_CODE)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _fake_cuda(monkeypatch, 1)
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 16)
    seen = {}
    monkeypatch.setattr(sweep, "_sweep", lambda path, combos, executor, jobs, *a: seen.update(jobs=jobs) or [])
    sweep.sweep(nb, {"rate": [0.1, 0.2, 0.3], "profile": profiles}, profile=profiles[0], index=False)
    assert seen["jobs"] == 1 and "1 job at once" in capsys.readouterr().err
    sweep.sweep(nb, {"rate": [0.1, 0.2, 0.3], "profile": profiles}, profile=profiles[0], jobs=2, index=False)
    assert seen["jobs"] == 2


@pytest.mark.parametrize("n_gpus, jobs, expected", [(0, None, 2), (1, None, 1), (2, None, 2), (1, 3, 3)])
def test_the_default_pool_has_one_job_per_gpu_on_cuda(tmp_path, reports, monkeypatch, capsys, n_gpus, jobs,
                                                       expected):
    """A quick/paper sweep on a GPU machine runs one job per GPU unless --jobs says otherwise (a job per CPU core
    would start a dozen CUDA contexts on one GPU); on the CPU the pool stays min(#combinations, #CPUs)."""
    nb = make_notebook(tmp_path, "nb", PLAIN_CODE)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _fake_cuda(monkeypatch, n_gpus)
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 16)
    seen = {}
    monkeypatch.setattr(sweep, "_sweep", lambda path, combos, executor, jobs, *a: seen.update(
        jobs=jobs, gpus=a[-1], n=len(combos)) or [])
    profile = "smoke" if n_gpus == 0 else "quick"
    sweep.sweep(nb, {"rate": [0.1, 0.2, 0.3]} if n_gpus else {"rate": [0.1, 0.2]}, profile=profile, jobs=jobs,
                index=False)
    assert seen["jobs"] == expected and seen["gpus"] == [str(i) for i in range(n_gpus)]
    assert ("one per GPU" in capsys.readouterr().err) == (n_gpus in (1, 2) and jobs is None and seen["n"] > expected)


def test_cpu_notebooks_are_sized_by_cpus_even_on_a_gpu_machine(tmp_path, reports, monkeypatch):
    from pathlib import Path

    root = Path(sweep.__file__).resolve().parent.parent / "notebooks"
    cpu = {p.stem[:2] for p in root.glob("[0-9][0-9]_*.ipynb") if sweep.runs_on_cpu(p)}
    assert cpu == {"07", "09"}  # invisible-watermark and the codec; the others take the profile's device
    nb = make_notebook(tmp_path, "cpu_nb", 'import dovlib.report as r\nr.start_notebook(profile, 0, "cpu")')
    kw = make_notebook(tmp_path, "kw_nb", 'start_notebook(profile, 0, device="cpu", note="x")')
    assert sweep.runs_on_cpu(nb) and sweep.runs_on_cpu(kw)
    assert not sweep.runs_on_cpu(make_notebook(tmp_path, "gpu_nb", "start_notebook(profile, 0, cfg.device)"))
    assert not sweep.runs_on_cpu(make_notebook(tmp_path, "magic_nb", "%matplotlib inline"))
    _fake_cuda(monkeypatch, 1)
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 16)
    seen = {}
    monkeypatch.setattr(sweep, "_sweep", lambda path, combos, executor, jobs, *a: seen.update(jobs=jobs, gpus=a[-1])
                        or [])
    sweep.sweep(nb, {"rate": [0.1, 0.2, 0.3]}, profile="quick", index=False)
    assert seen == {"jobs": 3, "gpus": []}


def test_run_local_pins_each_worker_to_a_gpu_in_turn(monkeypatch):
    """With several GPUs the pool's initializer gives each worker one of them as its only visible device."""
    import concurrent.futures as cf

    made = {}

    class InlinePool:  # runs the initializer once per worker, then the tasks in this process
        def __init__(self, max_workers, mp_context, initializer=None, initargs=()):
            made.update(workers=max_workers, initializer=initializer)
            made["pinned"] = []
            for _ in range(max_workers):
                if initializer:
                    initializer(*initargs)
                    made["pinned"].append(sweep.os.environ["CUDA_VISIBLE_DEVICES"])

        def shutdown(self, wait=True, cancel_futures=False):
            made["shutdown"] = made.get("shutdown", 0) + 1

        def submit(self, fn, *args):
            fut = cf.Future()
            fut.set_result(fn(*args))
            return fut

    monkeypatch.setattr(sweep, "ProcessPoolExecutor", InlinePool)
    monkeypatch.setattr(sweep, "_job", lambda x: x * 2)
    monkeypatch.setattr(sweep, "exit_on_sigterm", lambda: made.setdefault("sigterm", True))  # not this process's
    monkeypatch.setattr(sweep, "_IN_POOL", False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "unchanged")
    out = {}
    sweep.run_local([(0, (1,)), (1, (2,)), (2, (3,))], 3, out.__setitem__, None, gpus=["4", "7"])
    assert out == {0: 2, 1: 4, 2: 6} and made["pinned"] == ["4", "7", "4"] and made["shutdown"] == 1
    assert made["sigterm"] and sweep._IN_POOL  # each worker exits on SIGTERM and knows it is a pool worker
    made.clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "unchanged")  # the inline workers above pinned this process
    sweep.run_local([(0, (1,))], 2, out.__setitem__, None, gpus=["4"])  # one GPU: nothing to spread
    assert made["pinned"] == ["unchanged", "unchanged"]


SLOW_CODE = """import os, pathlib, time
d = pathlib.Path(os.environ["DOVLIB_REPORTS"])
d.mkdir(parents=True, exist_ok=True)
with open(d / "started.log", "a") as f:
    f.write(f"{{rate}}\\n")
time.sleep(120)
"""

DRIVER = """import sys
from dovlib import reproduce, sweep
if __name__ == "__main__":  # spawned workers import this file
    reproduce.exit_on_sigterm()  # as the sweep and reproduce command lines do
    nb, reports = sys.argv[1], sys.argv[2]
    tasks = [(i, (nb, {"profile": "smoke", "rate": r}, False, reports, 1, None, 120.0))
             for i, r in enumerate((0.1, 0.2, 0.3))]
    sweep.run_local(tasks, 1, lambda i, res: print("done", i, res.status, flush=True), lambda i, e: e)
"""


@pytest.mark.slow
@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc")
def test_stopping_a_local_pool_starts_no_queued_job_and_stops_the_running_one(tmp_path):
    """SIGTERM to the driver of a 1-worker pool with 3 jobs: it exits promptly, the queued jobs never start and the
    running job's worker is stopped (its half-written notebook removed), where the pool used to run all 3."""
    import os
    import signal
    import subprocess
    import sys
    import time

    nb = make_notebook(tmp_path, "slow", SLOW_CODE)
    reports = tmp_path / "reports"
    env = {**os.environ, "DOVLIB_REPORTS": str(reports), "DOVLIB_RUNS": str(tmp_path / "runs")}
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(script), str(nb), str(reports)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = reports / "started.log"
    deadline = time.monotonic() + 90
    while not started.is_file() and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
    assert started.is_file(), driver.communicate(timeout=30)
    time.sleep(1)
    children = _descendants(driver.pid)  # the worker and its kernel
    assert len(children) >= 2, children
    t0 = time.monotonic()
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == 128 + signal.SIGTERM, err
    assert time.monotonic() - t0 < 45  # not the 120 s the job sleeps, nor three of them
    time.sleep(3)
    assert started.read_text().splitlines() == ["0.1"]  # jobs 2 and 3 never started
    assert "done" not in out and not list(reports.rglob("*.running-*"))
    alive = [pid for pid in children if _running(pid)]
    assert alive == [], f"worker or kernel still running: {alive}"


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux /proc)."""
    from pathlib import Path

    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


def _running(pid: int) -> bool:
    from pathlib import Path

    try:  # a zombie has exited; only its parent has not collected it yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("executor, expected", [("local", 8), ("submitit-local", 4), ("slurm", None)])
def test_jobs_on_this_machine_share_its_cores(tmp_path, reports, monkeypatch, executor, expected):
    """submitit-local runs its whole array here at once: each job gets its share of the cores, as in the local pool
    (every job taking all 16 threads ran about 10x slower); Slurm jobs get their own nodes' settings."""
    nb = make_notebook(tmp_path, "nb", PLAIN_CODE)
    _fake_cuda(monkeypatch, 0)
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 16)
    seen = {}
    monkeypatch.setattr(sweep, "_sweep", lambda path, combos, executor, jobs, force, reports, threads, *a: seen.update(
        jobs=jobs, threads=threads) or [])
    jobs = 2 if executor == "local" else None
    sweep.sweep(nb, {"rate": [0.1, 0.2, 0.3, 0.4]}, executor=executor, jobs=jobs, index=False)
    assert seen["threads"] == expected and seen["jobs"] == (2 if executor == "local" else 4)


def test_a_stopped_pool_cancels_its_queued_jobs_before_stopping_the_workers(monkeypatch):
    """Cancelling first closes the race in which a worker that just finished takes a queued job before it is
    stopped."""
    import concurrent.futures as cf

    calls = []

    class FakePool:
        def __init__(self, **kw):
            self._processes = {}

        def submit(self, fn, *args):
            fut = cf.Future()
            fut.set_result(fn(*args))
            return fut

        def shutdown(self, wait=True, cancel_futures=False):
            calls.append((wait, cancel_futures))

    monkeypatch.setattr(sweep, "ProcessPoolExecutor", FakePool)
    monkeypatch.setattr(sweep, "_job", lambda x: x)

    def stop(i, result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_local([(0, (1,)), (1, (2,))], 1, stop, None)
    assert calls == [(False, True)]  # cancel without waiting (the workers are stopped and joined one by one)


@pytest.mark.parametrize("stop, code", [("KeyboardInterrupt()", 130), ("SystemExit(143)", 143)])
def test_a_stopped_job_ends_its_pool_worker_with_the_stops_status(stop, code):
    """In a pool worker a job stopped by Ctrl-C or SIGTERM ends the process (status 130 or the SystemExit's code)
    rather than return, so the worker takes no further job; outside a pool the stop propagates as usual."""
    import subprocess
    import sys

    prog = ("from dovlib import sweep\n"
            "sweep._IN_POOL = {in_pool}\n"
            "def stopped(*a, **k):\n"
            f"    raise {stop}\n"
            "sweep.run_notebook = stopped\n"
            "try:\n"
            "    sweep._job('nb.ipynb', {{}}, False, '.', None, None, None, tag=False)\n"
            "except BaseException as e:\n"
            "    print('raised', type(e).__name__)\n")
    pool = subprocess.run([sys.executable, "-c", prog.format(in_pool=True)], capture_output=True, text=True,
                          timeout=120)
    assert pool.returncode == code and "raised" not in pool.stdout, pool.stderr
    plain = subprocess.run([sys.executable, "-c", prog.format(in_pool=False)], capture_output=True, text=True,
                           timeout=120)
    assert plain.returncode == 0 and "raised" in plain.stdout, plain.stderr


def test_recompute_and_one_spelled_values_are_one_job_and_finished_runs_are_not_resubmitted(tmp_path, reports,
                                                                                            capsys, monkeypatch):
    """-p recompute True,False made two jobs writing one notebook file and one stamp; -p x nan,nan two jobs with one
    tag; and a finished combination given with recompute False was always submitted again (its stamp has none)."""
    jobs = sweep._distinct_jobs([{"rate": 0.1, "recompute": True}, {"rate": 0.1, "recompute": False},
                                 {"rate": float("nan")}, {"rate": float("nan")}])
    assert len(jobs) == 2 and jobs[0] == {"rate": 0.1, "recompute": True} and math.isnan(jobs[1]["rate"])
    assert "one job runs it" in capsys.readouterr().err
    seen = []
    monkeypatch.setattr(sweep, "cached_result", lambda path, params: seen.append(params))
    monkeypatch.setattr(sweep, "run_local", lambda todo, *a, **k: None)
    sweep._sweep(tmp_path / "04_x.ipynb", [{"rate": 0.1, "recompute": False}, {"rate": 0.2, "recompute": True}],
                 "local", 1, False, None, None, None, None, None, False, False)
    assert seen == [{"rate": 0.1}]  # looked up as the plain run; a recompute True job is never reused


def test_budget_key_takes_only_the_budget_parameters():
    """budget_key reads eps as the notebooks' label and rate as a fraction; any other name is refused by name rather
    than read as a rate."""
    assert sweep.budget_key("eps", "8/255") == sweep.budget_key("eps", 8 / 255)
    assert sweep.budget_key("rate", "1/10") == sweep.budget_key("rate", 0.1)
    for name in ("seed", "profile", "Eps"):
        with pytest.raises(ValueError, match=rf"name must be one of \('eps', 'rate'\); got '{name}'"):
            sweep.budget_key(name, 0.5)
