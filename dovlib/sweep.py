"""Parameter sweeps: every combination of values is one papermill job of the same notebook.

``python -m dovlib.sweep notebooks/04_ablation.ipynb -p eps 1/255,2/255,4/255 -p rate 0.01,0.1`` runs the six
combinations in a local process pool (default) or on Slurm through ``submitit`` (``--executor slurm``): the same
command on a laptop and on a cluster. Each job is :func:`dovlib.reproduce.run_notebook`, so finished combinations
are reused unless ``--force``, and the notebooks' records merge into one ``reports/<notebook>/metrics.json``
(``write_record`` holds a file lock). Values are read like papermill's CLI reads ``-p``: ``8/255`` stays the
string ``"8/255"``, ``0.1`` is a float, ``3`` an int, ``True``/``None`` what they say. See ``docs/reproduce.md``.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import re
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from .params import canonical_profile, check_choice, check_int
from .reproduce import RunResult, cached_result, exit_on_sigterm, notebook_parameters, run_notebook, run_tag
from .report import RUN_TAG_ENV, reports_dir, reports_env, runs_dir

__all__ = ["EXECUTORS", "parse_value", "parse_grid", "combinations", "sweep", "run_local", "visible_gpus", "gpus_for",
           "runs_on_cpu", "main"]

EXECUTORS = ("local", "slurm", "submitit-local")


def parse_value(text: str):
    """Read one ``-p`` value the way papermill's CLI does: True/False/None, then int, then float, else str."""
    if not isinstance(text, str):
        return text
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _split_values(name: str, text: str) -> list[str]:
    """Split one ``-p`` value on commas, keeping quoted parts whole (the standard library's shlex does the quoting)."""
    lex = shlex.shlex(text, posix=True)
    lex.whitespace, lex.whitespace_split, lex.commenters = ",", True, ""
    lex.escape = ""  # a backslash is kept as given (folder:C:\data\x), as papermill's own -p keeps it
    try:
        parts = [t.strip() for t in lex]
    except ValueError as e:  # an unclosed quote
        raise ValueError(f"-p {name} {text!r}: {e}") from None
    if name == "profile" and any(re.match(r"^[A-Za-z_]\w*=", t) for t in parts):
        raise ValueError(f"-p profile {text!r} was split on its commas into {parts}: quote an override string to keep "
                         f"it whole (-p profile \"'quick:device=cpu,epochs=10'\") or pass it as --profile")
    return [t for t in parts if t]


def parse_grid(pairs: list[tuple[str, str]] | dict) -> dict[str, list]:
    """``[("eps", "1/255,2/255"), ("rate", "0.1")]`` -> ``{"eps": ["1/255", "2/255"], "rate": [0.1]}``.

    Values are comma-separated; a value in quotes is one value, commas included (``-p archs "'resnet18,vgg16'"``
    runs notebook 06 once with both, ``-p profile "'quick:device=cpu,epochs=10'"`` one profile string); a name given
    twice adds values. A dict of lists is taken as already parsed."""
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def add(have: list, value) -> None:  # a value given twice is one job: two would share a tag and outputs
        # 1 and 1.0 are one value too (the notebooks' check_int reads both as 1); True is not 1
        if not any((type(v) is type(value) or (number(v) and number(value))) and v == value for v in have):
            have.append(value)

    grid: dict[str, list] = {}
    if isinstance(pairs, dict):
        for name, values in pairs.items():
            have = grid.setdefault(name, [])
            for value in values if isinstance(values, (list, tuple)) else [values]:
                add(have, value)
    else:
        for name, values in pairs:
            have = grid.setdefault(name, [])
            for text in _split_values(name, str(values)):
                add(have, parse_value(text))
    for name, values in grid.items():
        if not name.isidentifier():
            raise ValueError(f"parameter name must be a Python identifier; got {name!r}")
        if not values:
            raise ValueError(f"parameter {name} needs at least one value (comma-separated, e.g. 1/255,2/255)")
    return grid


BUDGET_PARAMETERS = ("eps", "rate")  # checked before any job runs (here and by dovlib.reproduce)


def budget_key(name: str, value):
    """What the notebooks read an ``eps`` or ``rate`` value as (:func:`dovlib.studies.eps_label`,
    :func:`dovlib.params.parse_rate`), or a ValueError naming the parameter and its allowed range: ``-p eps 8/0``
    is refused before a kernel starts, and writes no failed run into the reports."""
    from .params import parse_rate
    from .studies import eps_label

    if name not in BUDGET_PARAMETERS:
        raise ValueError(f"budget_key: name must be one of {BUDGET_PARAMETERS}; got {name!r}")
    try:
        return (eps_label if name == "eps" else parse_rate)(value)
    except TypeError as e:  # -p eps None: a usage error like 8/0, not a traceback
        raise ValueError(f"-p {name} {value!r}: {e}") from None


def _one_per_value(name: str, values: list) -> list:
    """``values`` of an ``eps`` or ``rate`` parameter, each checked by :func:`budget_key` (a bad one is refused
    before any job starts), keeping the first spelling of each: values the notebooks read as one (``8/255`` and
    ``0.03137254`` by :func:`dovlib.studies.eps_label`; ``1/10`` and ``0.1``) would be two jobs writing one record."""
    return _first_of_each(values, lambda value: budget_key(name, value),
                          lambda value, key, first: f"-p {name}: {value!r} is {key} already given as {first!r}; "
                                                    f"one job runs it")


def _first_of_each(items: list, key, note) -> list:
    """``items`` without those whose ``key`` an earlier one has, each dropped one named on stderr by
    ``note(item, key, first)``."""
    kept: dict = {}
    for item in items:
        k = key(item)
        if k in kept:
            print(note(item, k, kept[k]), file=sys.stderr)
        else:
            kept[k] = item
    return list(kept.values())


def combinations(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in a stable order (the first parameter varies slowest)."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def _identity(params: dict) -> dict:
    """A job's parameters without ``recompute``, which says how to run, not what the result is (as
    :func:`dovlib.reproduce.run_notebook` keys runs)."""
    return {k: v for k, v in params.items() if k != "recompute"}


def _distinct_jobs(combos: list[dict]) -> list[dict]:
    """One job per executed-notebook name: combinations that differ only in ``recompute`` (``-p recompute
    True,False``), or in values with one spelling in a file name (``-p x nan,nan``), would run at once into one file
    and one stamp entry. The first is kept, and the others are named."""
    return _first_of_each(combos, lambda c: run_tag(_identity(c)), lambda c, tag, first: (
        f"sweep: {c} runs as {first} (the same run; recompute only says how); one job runs it"))


def _job(path: str, params: dict, force: bool, reports: str, threads: int | None, kernel_name: str | None,
         cell_timeout: float | None, tag: bool = True) -> RunResult:
    """One sweep job (runs in a pool worker or a Slurm task). ``tag``: name the job's tables and figures after its
    parameters (a sweep: many jobs of one notebook); ``dovlib.reproduce --jobs`` runs distinct notebooks and keeps
    the plain names."""
    try:  # all of it: a stop before run_notebook must end a pool worker too
        if threads:  # the job's share of the CPUs, for torch's threads and dovlib.imwm's worker processes
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "DOVLIB_WORKERS"):
                os.environ.setdefault(var, str(threads))
        if tag:  # this job's tables and figures get their own names (report.artifact_name)
            os.environ[RUN_TAG_ENV] = run_tag(params)
        else:
            os.environ.pop(RUN_TAG_ENV, None)
        return run_notebook(path, params, force=force, reports=reports, kernel_name=kernel_name,
                            cell_timeout=cell_timeout)
    except (KeyboardInterrupt, SystemExit) as stop:  # run_notebook has cleaned up (notebook removed, kernel shut down)
        if _IN_POOL:  # a pool worker that returned this as a result would go on to the next queued job
            os._exit(stop.code if isinstance(stop, SystemExit) and isinstance(stop.code, int) else 130)
        raise


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries: that variable's own entries when
    set (indices or UUIDs), else ``0 .. device_count - 1``; empty without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    n = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    listed = [d.strip() for d in env.split(",") if d.strip()] if env else []
    return listed[:n] if listed else [str(i) for i in range(n)]


def gpus_for(profiles: list[str]) -> list[str]:
    """The GPUs a local pool spreads its workers over: :func:`visible_gpus` when every profile runs on CUDA through
    ``device=auto`` or ``cuda`` (a profile that names ``cuda:N``, the CPU or MPS keeps the devices as they are: [])."""
    from .params import get_profile

    if not profiles or any(get_profile(p).device not in ("auto", "cuda") for p in profiles):
        return []
    return visible_gpus()


def on_accelerator(profiles: list[str]) -> bool:
    """True when some profile runs on a GPU: ``cuda``, ``cuda:N`` or ``mps``, or ``auto`` where CUDA is available."""
    import torch

    from .params import get_profile

    devices = {get_profile(p).device for p in profiles}
    return any(d == "mps" or d.startswith("cuda") or (d == "auto" and torch.cuda.is_available()) for d in devices)


def runs_on_cpu(notebook: str | Path) -> bool:
    """True when the notebook starts with ``start_notebook(..., "cpu")`` (or ``device="cpu"``) whatever its profile
    (07 and 09: invisible-watermark and the codec run on the CPU), so a sweep of it is sized by CPUs, not GPUs."""
    import ast
    import json

    cells = json.loads(Path(notebook).read_text()).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse("".join(cell.get("source", "")))
        except SyntaxError:  # IPython magics and the like
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == \
                    "start_notebook":
                device = node.args[2] if len(node.args) > 2 else next(
                    (k.value for k in node.keywords if k.arg == "device"), None)
                return isinstance(device, ast.Constant) and device.value == "cpu"
    return False


def _pin_gpu(slots) -> None:
    """Take one GPU from ``slots`` and make it this worker's only visible device, so its kernels (which inherit the
    environment) run there."""
    os.environ["CUDA_VISIBLE_DEVICES"] = slots.get()


_IN_POOL = False  # True in run_local's workers: a stopped job ends its worker (_job)


def _init_worker(slots=None) -> None:
    """Pool worker initializer: SIGTERM exits the worker as Ctrl-C does (:func:`exit_on_sigterm`: its half-written
    notebook is removed and its kernel shut down) when :func:`run_local` stops it; with ``slots``, pin a GPU."""
    global _IN_POOL
    _IN_POOL = True
    exit_on_sigterm()
    if slots is not None:
        _pin_gpu(slots)


def run_local(tasks: list[tuple[int, tuple]], jobs: int, done, failed, gpus: list[str] | None = None) -> None:
    """Run ``_job(*args)`` for each ``(i, args)`` of ``tasks`` in a pool of ``jobs`` processes; call ``done(i, result)``
    as each finishes, with ``failed(i, error)`` as the result of a worker that died. With two or more ``gpus`` each
    worker is pinned to one of them in turn (``CUDA_VISIBLE_DEVICES``; workers share a GPU only when ``jobs``
    exceeds their number). Used by sweeps and by ``dovlib.reproduce --jobs``.

    Stopped (Ctrl-C, SIGTERM once the caller has :func:`exit_on_sigterm`, an error in ``done``), it starts no queued
    job and stops the running ones (SIGTERM to each worker, which cleans up as after Ctrl-C) before re-raising: a pool
    left to finish would run every queued combination after the user had stopped the sweep."""
    # spawn, not fork: the caller may have imported torch (threads); workers only start papermill kernels
    ctx = multiprocessing.get_context("spawn")
    slots = None
    if gpus and len(gpus) > 1:
        slots = ctx.Queue()
        for k in range(jobs):
            slots.put(gpus[k % len(gpus)])
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(slots,))
    try:
        futures = {pool.submit(_job, *args): i for i, args in tasks}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                done(i, fut.result())
            except Exception as e:  # a worker that died
                done(i, failed(i, e))
    except BaseException:
        workers = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown forgets them
        pool.shutdown(wait=False, cancel_futures=True)  # jobs already handed to a worker's queue die with it
        for proc in workers:
            if proc.is_alive():
                proc.terminate()
        for proc in workers:  # wait while each removes its half-written notebook and shuts its kernel down
            proc.join(60)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        raise
    pool.shutdown(wait=True)


def _failed(path: Path, params: dict, err: BaseException) -> RunResult:
    return RunResult(path.stem, params, "failed", error=f"{type(err).__name__}: {err}")


def sweep(notebook: str | Path, grid: dict | list, *, profile: str = "smoke", executor: str = "local",
          jobs: int | None = None, force: bool = False, reports: str | Path | None = None,
          kernel_name: str | None = None, cell_timeout: float | None = None, slurm: dict | None = None,
          index: bool = True, progress: bool = True) -> list[RunResult]:
    """Run ``notebook`` once per combination of ``grid`` and return one :class:`RunResult` per combination.

    ``executor``: ``local`` (process pool of ``jobs`` workers; default min(#combinations, #CPUs), or one per visible
    GPU when the profiles run on CUDA and the notebook is not a CPU one (:func:`runs_on_cpu`), each worker then
    pinned to a GPU in turn, or one at a time when the profiles name one device (``cuda:N``, ``mps``) or mix the CPU
    with a GPU (:func:`on_accelerator`); stopped, it starts no queued job (:func:`run_local`)), ``slurm`` (submitit
    job array; ``slurm`` holds submitit parameters such as ``timeout_min``, ``slurm_partition``, ``gpus_per_node``,
    ``cpus_per_task``) or ``submitit-local`` (the same submitit path on this machine). Jobs of ``local`` and
    ``submitit-local`` get ``OMP_NUM_THREADS`` and ``DOVLIB_WORKERS`` = #CPUs // jobs unless set. Failed jobs are
    returned, not raised. ``reports`` holds for this call only (``$DOVLIB_REPORTS`` is restored).
    """
    path = Path(notebook).resolve()
    if not path.is_file():
        raise ValueError(f"notebook {str(notebook)!r} does not exist")
    check_choice("executor", executor, EXECUTORS)
    profile = canonical_profile(profile)  # a known profile, optionally with overrides ("quick:device=cpu,epochs=10")
    grid = parse_grid(grid)
    declared = notebook_parameters(path)
    if "profile" in declared:
        grid.setdefault("profile", [profile])
    if "profile" in grid:  # -p profile a,b: each checked here (not once per failed kernel), one job per budget
        grid["profile"] = list(dict.fromkeys(canonical_profile(p) for p in grid["profile"]))
    for name in BUDGET_PARAMETERS:  # likewise one job per budget: 8/255 and 0.0313725 are one record of 04-06
        if name in grid:
            grid[name] = _one_per_value(name, grid[name])
    unknown = [n for n in grid if n not in declared]
    if unknown:
        raise ValueError(f"parameter {unknown[0]} is not in {path.name}'s parameters cell; allowed: {sorted(declared)}")
    combos = _distinct_jobs(combinations(grid))
    cpus = os.cpu_count() or 1
    on_gpu = executor == "local" and not runs_on_cpu(path)
    gpus = gpus_for([c.get("profile", profile) for c in combos]) if on_gpu else []
    if jobs is None:  # a local pool is bounded by this machine (by its GPUs when it runs on them); Slurm by the cluster
        if executor != "local":
            jobs = len(combos)
        elif gpus:  # one job per GPU: a job per CPU core would put a dozen CUDA contexts and models on one GPU
            jobs = min(len(combos), len(gpus))
            if len(combos) > jobs and progress:
                print(f"sweep: {jobs} job(s) at once, one per GPU ({len(gpus)} visible); --jobs N runs N at once, "
                      f"sharing the GPUs", file=sys.stderr)
        elif on_gpu and on_accelerator([c.get("profile", profile) for c in combos]):
            jobs = 1  # one device named (cuda:N, mps) or profiles mixing devices: never a job per core on one GPU
            if len(combos) > 1 and progress:
                print("sweep: 1 job at once (the profiles name one GPU, or mix devices); --jobs N runs N at once",
                      file=sys.stderr)
        else:
            jobs = min(len(combos), cpus)
    jobs = check_int("jobs", jobs, 1)
    reports = str(Path(reports if reports is not None else reports_dir()).resolve())
    # jobs on this machine share its cores (submitit-local runs its whole array here at once); Slurm sets its own
    threads = max(1, cpus // jobs) if executor in ("local", "submitit-local") else None
    with reports_env(reports):  # for this call only: workers and kernels inherit it, the caller keeps its own
        return _sweep(path, combos, executor, jobs, force, reports, threads, kernel_name, cell_timeout, slurm, index,
                      progress, gpus)


def _sweep(path, combos, executor, jobs, force, reports, threads, kernel_name, cell_timeout, slurm, index,
           progress, gpus=()) -> list[RunResult]:
    from tqdm.auto import tqdm

    results: list[RunResult | None] = [None] * len(combos)
    bar = tqdm(total=len(combos), desc=f"sweep {path.stem}", unit="job", disable=not progress, file=sys.stderr)

    def done(i: int, result: RunResult) -> None:
        results[i] = result
        bar.update()
        bar.write(f"{result.status:>6}  {result.parameters}  {result.wall_time:7.1f} s"
                  + (f"  {result.error}" if result.error else ""), file=sys.stderr)

    todo = []  # up-to-date combinations are not submitted at all
    for i, c in enumerate(combos):
        cached = None if force or c.get("recompute") is True else cached_result(path, _identity(c))
        if cached is not None:
            done(i, cached)
        else:
            todo.append(i)
    args = [(str(path), combos[i], force, reports, threads, kernel_name, cell_timeout) for i in todo]
    if todo and executor == "local":
        run_local(list(zip(todo, args)), jobs, done, lambda i, e: _failed(path, combos[i], e), gpus=gpus)
    elif todo:
        import submitit

        folder = runs_dir() / "sweeps" / path.stem / "submitit" / "%j"
        try:
            ex = submitit.AutoExecutor(folder=folder, cluster="slurm" if executor == "slurm" else "local")
        except RuntimeError as e:  # e.g. no srun on this machine
            raise ValueError(f"executor {executor!r} is not available here: {e}") from e
        params = {"timeout_min": 60, "name": f"dovlib-{path.stem}", **(slurm or {})}
        params.setdefault("slurm_array_parallelism", jobs)
        ex.update_parameters(**params)
        submitted = ex.map_array(_job, *zip(*args))
        bar.write(f"submitted {len(submitted)} jobs ({executor}); logs in {folder.parent}", file=sys.stderr)
        for i, job in zip(todo, submitted):
            try:
                done(i, job.result())
            except Exception as e:  # the job failed outside the notebook (killed, time limit)
                done(i, _failed(path, combos[i], e))
    bar.close()
    if index:
        from .index import build_index

        build_index()
    return [r for r in results if r is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dovlib.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("notebook", help="the notebook to sweep, e.g. notebooks/04_ablation.ipynb")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUES"),
                        help="a parameter and its comma-separated values, e.g. -p eps 1/255,2/255 (repeatable)")
    parser.add_argument("--profile", default="smoke", help="smoke | quick | paper, unless -p profile is given")
    parser.add_argument("--executor", default="local", choices=EXECUTORS)
    parser.add_argument("-j", "--jobs", type=int, default=None,
                        help="parallel jobs (local pool size, default min(#combinations, #CPUs), or one per GPU "
                             "when the profile runs on CUDA; Slurm array parallelism, default all)")
    parser.add_argument("--force", action="store_true", help="re-run combinations whose results are up to date")
    parser.add_argument("--reports", default=None, help="reports folder (default $DOVLIB_REPORTS or reports/)")
    parser.add_argument("--cell-timeout", type=float, default=None, help="seconds per cell (default: none)")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    parser.add_argument("--timeout-min", type=int, default=60, help="Slurm: minutes per job")
    parser.add_argument("--partition", default=None, help="Slurm partition")
    parser.add_argument("--gpus", type=int, default=None, help="Slurm: GPUs per job")
    parser.add_argument("--cpus", type=int, default=None, help="Slurm: CPUs per job")
    parser.add_argument("--no-index", action="store_true", help="do not rebuild reports/index.html")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    slurm = {"timeout_min": args.timeout_min}
    for key, value in (("slurm_partition", args.partition), ("gpus_per_node", args.gpus),
                       ("cpus_per_task", args.cpus)):
        if value is not None:
            slurm[key] = value
    out_dir = Path(args.reports).resolve() if args.reports else reports_dir()
    start = time.perf_counter()
    try:
        results = sweep(args.notebook, args.parameter, profile=args.profile, executor=args.executor,
                        jobs=args.jobs, force=args.force, reports=args.reports, kernel_name=args.kernel,
                        cell_timeout=args.cell_timeout, slurm=slurm, index=not args.no_index)
    except (ValueError, TypeError) as e:  # e.g. -p profile None: a usage error, not a traceback
        parser.error(str(e))
    failed = [r for r in results if not r.ok]
    print(f"{len(results)} jobs in {time.perf_counter() - start:.1f} s: {sum(r.status == 'ok' for r in results)} ran, "
          f"{sum(r.status == 'reused' for r in results)} reused, {len(failed)} failed; reports in {out_dir}")
    for r in failed:
        print(f"FAILED {r.parameters}: {r.error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
