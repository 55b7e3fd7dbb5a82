"""One command regenerates every table and figure: run the numbered notebooks with papermill, in order.

``python -m dovlib.reproduce --profile smoke`` (or ``make reproduce PROFILE=smoke``) executes every
``notebooks/NN_*.ipynb`` into ``reports/<notebook>/`` (the executed notebook beside the ``metrics.json``, tables and
figures the notebook writes), then builds ``reports/index.html`` and ``reports/summary.md`` (:mod:`dovlib.index`).
A failing notebook is reported and the others still run. A run that is up to date (same notebook file, same
parameters, same ``dovlib`` source; see :func:`stamp_key`) is reused unless ``--force``. The same
:func:`run_notebook` runs each job of a parameter sweep (:mod:`dovlib.sweep`). How to run it: ``docs/reproduce.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import os
import random
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .data import REPO_ROOT
from .params import canonical_profile, check_int
from .report import RUN_TAG_ENV, _atomic_write, file_lock, record_key, reports_dir, reports_env

__all__ = ["NOTEBOOK_GLOB", "RunResult", "kernel_start_failed", "find_notebooks", "notebook_parameters", "source_hash",
           "data_sources", "stamp_key", "run_tag", "output_name", "load_stamps", "cached_result", "run_notebook",
           "reproduce", "main"]

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
STAMPS = "stamps.json"  # reports/<notebook>/stamps.json: one entry per parameter set run


@dataclass
class RunResult:
    """What happened to one notebook run: ``status`` is ``ok``, ``reused`` (up to date, not run) or ``failed``."""

    notebook: str
    parameters: dict
    status: str
    wall_time: float = 0.0
    output: str = ""  # the executed notebook, relative to reports/
    error: str = ""
    key: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "reused")


def find_notebooks(folder: str | Path | None = None, select: list[str] | None = None) -> list[Path]:
    """The numbered notebooks ``NN_*.ipynb`` in ``folder`` (default ``notebooks/``), in order. ``select`` keeps
    those whose stem starts with one of the given prefixes (``["03", "04_abl"]``)."""
    folder = Path(folder) if folder is not None else REPO_ROOT / "notebooks"
    if not folder.is_dir():
        raise ValueError(f"notebooks folder {str(folder)!r} does not exist")
    paths = sorted(folder.glob(NOTEBOOK_GLOB))
    if select:
        select = [str(s).strip() for s in select]
        unmatched = [s for s in select if not s or not any(p.stem.startswith(s) for p in paths)]
        if unmatched:  # every prefix must name a notebook: '00,99' must not quietly run 00 alone
            raise ValueError(f"select {unmatched!r} matches no notebook in {folder} (names look like 04_ablation; "
                             f"there are {', '.join(p.stem[:2] for p in paths)})")
        paths = [p for p in paths if any(p.stem.startswith(s) for s in select)]
    return paths


def notebook_parameters(path: str | Path) -> dict:
    """The parameters a notebook declares in its cell tagged ``parameters`` (name -> default as written)."""
    import logging

    import papermill

    log = logging.getLogger("papermill")
    level = log.level
    log.setLevel(logging.ERROR)  # its parser warns about comments it cannot read; only the names matter here
    try:
        return {name: info["default"] for name, info in papermill.inspect_notebook(str(path)).items()}
    finally:
        log.setLevel(level)


def _code_only(source: bytes) -> bytes:
    """A Python file's code without its comments, docstrings and layout (its syntax tree without positions), so an
    edit to the prose only keeps every stamp and cached result; the bytes themselves when it does not parse."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def source_hash(package: Path | None = None) -> str:
    """SHA-256 over the ``dovlib`` package's Python code (file names and syntax trees: comments, docstrings and
    layout do not count, so they never make a finished result stale; any change to the code does)."""
    package = Path(package) if package is not None else Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(package.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        h.update(p.relative_to(package).as_posix().encode() + b"\0" + _code_only(p.read_bytes()) + b"\0")
    return h.hexdigest()


def data_sources() -> dict:
    """Where datasets are read from (``$DOVLIB_DATA``'s offline subsets, ``$DOVLIB_CACHE``'s downloads,
    ``$DOVLIB_IMAGENET``): part of :func:`stamp_key`, since one dataset name can stand for other images there."""
    from .data import data_dir, offline_data_dir

    return {"data": str(offline_data_dir()), "cache": str(data_dir().resolve()),
            "imagenet": os.environ.get("DOVLIB_IMAGENET", "")}


def run_environment(parameters: dict) -> dict:
    """What else decides a result besides the files: the kind of device the parameters' profile resolves to here
    (``auto`` is CUDA on a GPU node, the CPU elsewhere) and the versions of the libraries the notebooks compute with
    (:data:`dovlib.report.CACHED_FRAME_LIBRARIES`). Part of :func:`stamp_key`."""
    from .params import get_profile
    from .report import _library_versions
    from .train import resolve_device

    try:
        device = resolve_device(get_profile(str(parameters.get("profile", "smoke"))).device).type
    except (ValueError, RuntimeError, TypeError):  # a bad profile fails in the notebook; CUDA asked for, not here
        device = "unavailable"
    return {"device": device, "libraries": _library_versions()}


def stamp_key(notebook: str | Path, parameters: dict, package: Path | None = None) -> str:
    """Hash of the notebook file, its parameters, the dovlib code (:func:`source_hash`), :func:`data_sources` and
    :func:`run_environment` (device kind, library versions): equal keys mean an up-to-date result. Files changed in
    place under the same folders are not seen: run with ``--force`` then."""
    h = hashlib.sha256()
    h.update(Path(notebook).read_bytes())
    h.update(record_key(parameters).encode())
    h.update(source_hash(package).encode())
    h.update(json.dumps(data_sources(), sort_keys=True).encode())
    h.update(json.dumps(run_environment(parameters), sort_keys=True).encode())
    return h.hexdigest()[:16]


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_tag(parameters: dict, max_len: int = 120) -> str:
    """A file-name-safe label of a parameter set: readable, with no ``/`` or ``{}``, and a short hash so distinct
    values never collide (``eps-8_255_rate-0.1__<hash>``). Names executed notebooks, and a sweep job's tables and
    figures (:func:`dovlib.report.artifact_name`)."""
    readable = "_".join(f"{k}-{v}" for k, v in sorted(parameters.items()))
    readable = _UNSAFE.sub("_", readable).strip("._") or "defaults"
    digest = hashlib.sha1(record_key(parameters).encode()).hexdigest()[:8]
    return f"{readable[:max_len]}__{digest}"


def output_name(stem: str, parameters: dict, max_len: int = 120) -> str:
    """A file name for the executed notebook (papermill formats parameters into output paths, and ``8/255`` would
    make a folder): ``<stem>__<run_tag>.ipynb``."""
    return f"{stem}__{run_tag(parameters, max_len)}.ipynb"


def load_stamps(notebook_dir: Path) -> dict:
    p = Path(notebook_dir) / STAMPS
    return json.loads(p.read_text()) if p.is_file() else {}


def _artifacts(out_dir: Path, since: _dt.datetime | None = None) -> dict:
    """``{"tables/<name>": written, "figures/<name>": written}`` from the notebook's ``tables.json`` and
    ``figures.json`` (written by ``report.save_table`` / ``save_fig``), only those written at or after ``since`` and,
    in a sweep job, only those carrying its tag (the other jobs of the sweep write theirs meanwhile)."""
    tag = os.environ.get(RUN_TAG_ENV, "") if since is not None else ""
    found = {}
    for kind in ("tables", "figures"):
        manifest = out_dir / f"{kind}.json"
        entries = json.loads(manifest.read_text()) if manifest.is_file() else {}
        for name, entry in entries.items():
            written = entry.get("written") if isinstance(entry, dict) else None
            if written and (since is None or _dt.datetime.fromisoformat(written) >= since) and (
                    not tag or name.endswith(f"__{tag}")):
                found[f"{kind}/{name}"] = written
    return found


def _artifact_file(out_dir: Path, key: str, tables: dict) -> Path:
    """The file behind an artifact key of :func:`_artifacts`: a table's CSV (its entry's ``file`` in ``tables``, the
    notebook's ``tables.json``), a figure's PNG."""
    kind, name = key.split("/", 1)
    if kind == "figures":
        return out_dir / f"{name}.png"
    return out_dir / (tables.get(name, {}).get("file") or f"{name}.csv")


def _save_stamp(out_dir: Path, result: RunResult, artifacts: dict | None = None) -> None:
    path = out_dir / STAMPS
    with file_lock(path):  # sweep jobs of one notebook share this file
        stamps = load_stamps(out_dir)
        pkey = record_key(result.parameters)  # keep one entry per parameter set: the latest
        stamps = {k: v for k, v in stamps.items() if record_key(v.get("parameters", {})) != pkey}
        entry = asdict(result)
        entry.pop("extra")
        entry["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        entry["artifacts"] = artifacts or {}
        entry["wrote_records"] = result.status == "ok" and (out_dir / "metrics.json").is_file()
        stamps[result.key] = entry
        _atomic_write(path, json.dumps(stamps, indent=2, default=str))


def cached_result(path: str | Path, parameters: dict) -> RunResult | None:
    """The earlier successful run of this notebook with these parameters if it is up to date, else None. Up to date
    also means that the tables and figures it wrote are still its own: another parameter set's run of the notebook
    (a smoke run after a paper run, say) writes the same file names outside a sweep, and the paper run is then run
    again, not reported as reused over the smoke run's files."""
    path = Path(path).resolve()
    key = stamp_key(path, parameters)
    out_dir = reports_dir() / path.stem
    name = output_name(path.stem, parameters)
    previous = load_stamps(out_dir).get(key)
    if previous and previous.get("status") == "ok" and (out_dir / name).is_file():
        if previous.get("wrote_records") and not (out_dir / "metrics.json").is_file():
            return None  # its records were deleted ("start that notebook afresh"): run it again
        current = _artifacts(out_dir)
        manifest = out_dir / "tables.json"
        tables = json.loads(manifest.read_text()) if manifest.is_file() else {}  # read once, not per artifact
        if all(current.get(k) == v and _artifact_file(out_dir, k, tables).is_file()
               for k, v in previous.get("artifacts", {}).items()):
            return RunResult(path.stem, parameters, "reused", previous.get("wall_time", 0.0), f"{path.stem}/{name}",
                             key=key)
    return None


KERNEL_START_ATTEMPTS = 3
_KERNEL_MANAGER = None


def kernel_manager_class():
    """The kernel manager papermill starts kernels with: jupyter_client's AsyncKernelManager over IPC (Unix domain
    socket files under the temporary folder, one unique prefix per kernel) instead of TCP ports on localhost. Kernels
    started together can then never be handed the same port, and ipykernel does not print its warning about
    unencrypted TCP for every notebook. On Windows (no IPC transport) it is the plain TCP manager."""
    global _KERNEL_MANAGER
    if _KERNEL_MANAGER is None:
        from jupyter_client.manager import AsyncKernelManager

        if os.name == "nt":
            _KERNEL_MANAGER = AsyncKernelManager
        else:
            import tempfile
            import uuid

            from traitlets import CaselessStrEnum, default

            class IPCKernelManager(AsyncKernelManager):
                transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

                @default("ip")
                def _ip_default(self):  # jupyter_client's default is "kernel-ipc" in the cwd: shared by all kernels
                    return os.path.join(tempfile.gettempdir(), f"dovlib-kernel-{uuid.uuid4().hex[:16]}")

            _KERNEL_MANAGER = IPCKernelManager
    return _KERNEL_MANAGER


def exit_on_sigterm() -> None:
    """Make SIGTERM (``kill``, a batch scheduler's time limit) raise ``SystemExit(143)`` in this process, so an
    interrupted run cleans up as after Ctrl-C: the half-written ``*.running-<pid>.ipynb`` is removed, no stamp is
    written and papermill shuts its kernel down. Python's default SIGTERM ends the process without any of that.
    Only the command-line entry points call it (a library must not take over a process's signals; the one exception,
    ``train.Checkpointer``, does the same only inside a training loop and only while nothing else handles SIGTERM)."""
    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def kernel_start_failed(error: BaseException) -> bool:
    """True for the error of a kernel that died before running any cell. With several jobs starting at once,
    jupyter_client's TCP transport (Windows) can hand two kernels the same free port (``ZMQError: Address already in
    use``); no cell ran, so
    starting again is safe. Errors raised by the notebook's own cells are never retried."""
    return "Kernel died before replying to kernel_info" in str(error)


def run_notebook(path: str | Path, parameters: dict | None = None, *, force: bool = False,
                 reports: str | Path | None = None, kernel_name: str | None = None,
                 cell_timeout: float | None = None) -> RunResult:
    """Execute one notebook with papermill into ``reports/<stem>/`` unless an up-to-date run exists.

    The executed notebook is written under a temporary name and renamed when done, so a failure never replaces
    an earlier good one; a failed run is kept as ``*.failed.ipynb``. The kernel inherits ``$DOVLIB_REPORTS``
    (``reports``, set for this call only) so the notebook's records, tables and figures land in the same folder.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ValueError(f"notebook {str(path)!r} does not exist")
    with reports_env(reports), _this_dovlib_first(), _absolute_paths(PATH_VARS):  # the kernel inherits them
        return _run_notebook(path, dict(parameters or {}), force, kernel_name, cell_timeout)


def _literal(path: Path) -> str:
    """``path`` as papermill takes it: papermill formats input and output paths with the parameters, so a literal
    brace (a folder named ``rep{x}``) is doubled."""
    return str(path).replace("{", "{{").replace("}", "}}")


# folders named by environment variables: the kernel runs in notebooks/, where a relative one would name another
# folder than the one the stamp recorded (an export DOVLIB_DATA=../shared/data in the repository's folder, say)
PATH_VARS = ("DOVLIB_DATA", "DOVLIB_RUNS", "DOVLIB_CACHE", "DOVLIB_IMAGENET")


@contextlib.contextmanager
def _absolute_paths(names):
    """Make the relative paths in the environment variables ``names`` absolute (from this process's working folder;
    a leading ``~`` is the home folder) for a ``with`` block; the old values come back afterwards."""
    old = {n: os.environ.get(n) for n in names}
    for n, v in old.items():
        if v and not os.path.isabs(v):  # "~/data" is the home folder's, as dovlib reads it; not <cwd>/~/data
            os.environ[n] = os.path.abspath(os.path.expanduser(v))
    try:
        yield
    finally:
        for n, v in old.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


@contextlib.contextmanager
def _this_dovlib_first():
    """Put the folder holding this ``dovlib`` first on ``$PYTHONPATH`` for a ``with`` block, so kernels started
    inside import the same package as this process (the one the stamps hash), not another checkout's installed
    into the same environment: the kernel runs in ``notebooks/``, where ``import dovlib`` would otherwise find
    whichever copy is installed, and with it that copy's data and ``runs/`` folders."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *([old] if old else [])])  # REPO_ROOT: dovlib's parent
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _run_notebook(path: Path, parameters: dict, force: bool, kernel_name, cell_timeout) -> RunResult:
    import papermill

    out_dir = reports_dir() / path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    # ``recompute`` says how to run, not what the result is: a run that measured its records again (reproduce
    # --force gives 04-06 recompute=True) is the plain parameter set's result, so the next plain run reuses it
    ident = {k: v for k, v in parameters.items() if k != "recompute"}
    key = stamp_key(path, ident)
    name = output_name(path.stem, ident)
    final = out_dir / name
    cached = None if force or parameters.get("recompute") is True else cached_result(path, ident)
    if cached is not None:
        return cached
    running = out_dir / (name[: -len(".ipynb")] + f".running-{os.getpid()}.ipynb")
    started = _dt.datetime.now(_dt.timezone.utc)  # the tables and figures written from now on are this run's
    start = time.perf_counter()
    error = ""
    try:
        for attempt in range(KERNEL_START_ATTEMPTS):
            try:
                papermill.execute_notebook(_literal(path), _literal(running), parameters=parameters,
                                           kernel_name=kernel_name,
                                           progress_bar=False, log_output=False, cwd=str(path.parent),
                                           execution_timeout=cell_timeout, start_timeout=180,  # busy machines: slow
                                           kernel_manager_class=kernel_manager_class())
                break
            except RuntimeError as e:
                if not kernel_start_failed(e) or attempt + 1 == KERNEL_START_ATTEMPTS:
                    raise
                time.sleep(1 + 2 * random.random())  # jobs started together picked the same free port; try again
    except papermill.PapermillExecutionError as e:
        error = f"cell {e.exec_count}: {e.ename}: {e.evalue}"
    except Exception as e:  # kernel died, timeout, bad parameters: report it and let the other notebooks run
        error = f"{type(e).__name__}: {e}"
    except BaseException:  # Ctrl-C: leave no half-written notebook behind
        running.unlink(missing_ok=True)
        raise
    wall = time.perf_counter() - start
    if error:
        failed = out_dir / (name[: -len(".ipynb")] + ".failed.ipynb")
        kept = running.is_file()  # not there when the kernel did not even start
        if kept:
            os.replace(running, failed)
        result = RunResult(path.stem, ident, "failed", wall, f"{path.stem}/{failed.name}" if kept else "",
                           error, key)
    else:
        os.replace(running, final)
        result = RunResult(path.stem, ident, "ok", wall, f"{path.stem}/{name}", key=key)
    _save_stamp(out_dir, result, _artifacts(out_dir, since=started) if not error else None)
    return result


RECORD_NOTEBOOKS = ("04_", "05_", "06_")  # their records (studies.cached) are reused whatever code computed them


def _for_notebook(path: Path, profile: str, extra: dict, force: bool = False) -> dict:
    """Only the parameters the notebook declares (``profile`` first); papermill would only warn about others. With
    ``force``, a notebook that keeps its own records (:data:`RECORD_NOTEBOOKS`) also measures them again, unless
    ``-p recompute`` was given: a forced run never redraws figures from another code's numbers. (07, 08 and 10 also
    declare ``recompute``, for caches already keyed by the code: forcing would only throw away hours of work.)"""
    declared = notebook_parameters(path)
    params = {"profile": profile} if "profile" in declared else {}
    if force and "recompute" in declared and path.stem.startswith(RECORD_NOTEBOOKS):
        params["recompute"] = True
    params.update({k: v for k, v in extra.items() if k in declared})
    return params


def reproduce(profile: str = "smoke", notebooks: list[str | Path] | None = None, *, force: bool = False,
              reports: str | Path | None = None, extra: dict | None = None, kernel_name: str | None = None,
              cell_timeout: float | None = None, index: bool = True, progress: bool = True,
              jobs: int = 1) -> list[RunResult]:
    """Run every notebook (or the given ones) on ``profile``; then build ``reports/index.html``.

    ``extra`` holds more parameters, passed to the notebooks that declare them. ``jobs`` > 1 runs that many
    notebooks at once in a process pool (several notebooks can share one GPU; models they share in the
    ``runs/sscl`` cache are trained once). Returns one :class:`RunResult` per notebook, in the notebooks' order;
    failures are returned, not raised. ``reports`` holds for this call only (``$DOVLIB_REPORTS`` is restored).
    """
    # a known profile, optionally with overrides ("quick:device=cpu,epochs=10"), in its one spelling, so the
    # executed notebook's name and its up-to-date check do not depend on spaces or the order of the overrides
    profile = canonical_profile(profile)
    if extra and "profile" in extra:  # -p profile ... overrides --profile: checked here too, not in each kernel
        extra = {**extra, "profile": canonical_profile(extra["profile"])}
    paths = [Path(p) for p in notebooks] if notebooks is not None else find_notebooks()
    jobs = check_int("jobs", jobs, 1)
    if extra:  # a name no selected notebook declares is a typo, not something to drop silently
        declared = set().union(*(notebook_parameters(p) for p in paths)) if paths else set()
        unknown = sorted(set(extra) - declared)
        if unknown:
            raise ValueError(f"parameter(s) {unknown} are declared by none of the selected notebooks "
                             f"({', '.join(p.stem for p in paths)}); their parameters: {sorted(declared)}")
        from .sweep import BUDGET_PARAMETERS, budget_key

        for name in BUDGET_PARAMETERS:  # -p eps 8/0: refused here, not by a kernel that writes a failed run
            if name in extra:
                budget_key(name, extra[name])
    with reports_env(reports):
        return _reproduce(profile, paths, force, extra, kernel_name, cell_timeout, index, progress, jobs)


def _reproduce(profile, paths, force, extra, kernel_name, cell_timeout, index, progress, jobs) -> list[RunResult]:
    from tqdm.auto import tqdm

    from .index import build_index  # now: the code this run started with, even if dovlib changes on disk meanwhile

    results: list[RunResult | None] = [None] * len(paths)
    bar = tqdm(total=len(paths), desc="notebooks", unit="nb", disable=not progress, file=sys.stderr)

    def done(i: int, result: RunResult) -> None:
        results[i] = result
        bar.update()
        line = f"{result.status:>6}  {result.notebook}  {result.wall_time:7.1f} s"
        bar.write(line + (f"  {result.error}" if result.error else ""), file=sys.stderr)

    todo = []
    for i, path in enumerate(paths):
        try:
            todo.append((i, path, _for_notebook(path, profile, dict(extra or {}), force)))
        except Exception as e:  # an unreadable notebook must not stop the others either
            done(i, RunResult(path.stem, {"profile": profile}, "failed", error=f"{type(e).__name__}: {e}"))
    if jobs == 1:
        for i, path, params in todo:
            bar.set_postfix_str(path.stem)
            try:
                result = run_notebook(path, params, force=force, kernel_name=kernel_name, cell_timeout=cell_timeout)
            except Exception as e:
                result = RunResult(path.stem, params, "failed", error=f"{type(e).__name__}: {e}")
            done(i, result)
    elif todo:
        from .sweep import gpus_for, run_local

        out = str(reports_dir().resolve())
        threads = max(1, (os.cpu_count() or 1) // jobs)
        tasks = [(i, (str(path), params, force, out, threads, kernel_name, cell_timeout, False))  # plain names
                 for i, path, params in todo]
        tasks_params = {i: params for i, _, params in todo}
        run_local(tasks, jobs, done, lambda i, e: RunResult(paths[i].stem, tasks_params[i], "failed",
                                                              error=f"{type(e).__name__}: {e}"),
                  gpus=gpus_for([(extra or {}).get("profile", profile)]))  # several GPUs: spread over them
    bar.close()
    if index:
        build_index()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dovlib.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: every notebooks/NN_*.ipynb)")
    parser.add_argument("--profile", default="smoke",
                        help="smoke | quick | paper, optionally with overrides, e.g. quick:device=cpu,epochs=10 "
                             "(default smoke)")
    parser.add_argument("--only", default="", help="comma-separated notebook prefixes, e.g. 00,04_ablation")
    parser.add_argument("--force", action="store_true", help="re-run notebooks whose results are up to date (and "
                        "measure the records of 04-06 again: recompute=True; trained models stay cached in runs/)")
    parser.add_argument("--reports", default=None, help="reports folder (default $DOVLIB_REPORTS or reports/)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="extra parameter for the notebooks that declare it (parsed like papermill -p); a "
                             "name that no selected notebook declares is refused")
    parser.add_argument("--cell-timeout", type=float, default=None, help="seconds per cell (default: none)")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    parser.add_argument("--no-index", action="store_true", help="do not rebuild reports/index.html")
    parser.add_argument("-j", "--jobs", type=int, default=1,
                        help="notebooks run at once (default 1, in order); several can share one GPU")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    from .sweep import parse_value

    out_dir = Path(args.reports).resolve() if args.reports else reports_dir()
    try:
        if args.notebooks:
            if args.only:
                raise ValueError(f"name notebooks or select them with --only, not both (got {args.only!r} and "
                                 f"{len(args.notebooks)} named)")
            paths = [Path(p) for p in args.notebooks]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:  # refused up front, like a bad --only (not a traceback, nor a "failed" notebook)
                raise ValueError(f"notebook {missing[0]!r} does not exist (or is not a file)")
        else:
            paths = find_notebooks(select=[s for s in args.only.split(",") if s] or None)
        start = time.perf_counter()
        results = reproduce(args.profile, paths, force=args.force, reports=args.reports,
                            extra={k: parse_value(v) for k, v in args.parameter}, kernel_name=args.kernel,
                            cell_timeout=args.cell_timeout, index=not args.no_index, jobs=args.jobs)
    except (ValueError, TypeError) as e:  # e.g. -p profile 1: a usage error, not a traceback
        parser.error(str(e))
    failed = [r for r in results if not r.ok]
    print(f"{len(results)} notebooks in {time.perf_counter() - start:.1f} s: "
          f"{sum(r.status == 'ok' for r in results)} ran, {sum(r.status == 'reused' for r in results)} reused, "
          f"{len(failed)} failed; reports in {out_dir}")
    for r in failed:
        print(f"FAILED {r.notebook}: {r.error} (see {out_dir / r.output})" if r.output
              else f"FAILED {r.notebook}: {r.error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
