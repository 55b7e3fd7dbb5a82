"""Where results go: ``reports/<notebook>/metrics.json`` (one record per parameter set) and figures.

Every record carries its parameters, the profile, dataset (and whether it is a subset), device, wall time,
library versions and the perceptual measure where one is used, so a number is never separated from what it
was measured on. ``$DOVLIB_REPORTS`` moves the whole folder (the tests point it at a temporary directory).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from .data import REPO_ROOT, data_dir

__all__ = ["reports_dir", "notebook_dir", "RUN_TAG_ENV", "artifact_name", "save_fig", "save_table", "runs_dir",
           "run_dir", "env_info", "device_name", "run_context", "record_key", "load_records", "find_record",
           "write_record", "timer", "run_times", "file_lock", "reports_env", "start_notebook", "CACHED_FRAME_LIBRARIES",
           "cached_frame", "cached_tensors", "record_summary", "NOTHING_TRAINED"]


# a context's training_precision where no network went into its numbers (codecs, invisible-watermark): its records,
# tables and figures then name none of the notebook's trained models (dovlib.train.training_provenance)
NOTHING_TRAINED = "none (nothing trained)"


def reports_dir() -> Path:
    """``reports/`` of the repository, or ``$DOVLIB_REPORTS`` (a relative one from the working folder: a Jupyter
    kernel's is ``notebooks/``, so :func:`start_notebook` warns about it)."""
    return Path(os.environ.get("DOVLIB_REPORTS", REPO_ROOT / "reports")).expanduser()


@contextmanager
def reports_env(reports=None):
    """Point ``$DOVLIB_REPORTS`` at ``reports`` (default: the current :func:`reports_dir`, made absolute) for the
    duration of a ``with`` block, so kernels and workers started inside inherit it; the previous value (or its
    absence) is restored afterwards, so a library call never moves the caller's reports folder for good."""
    old = os.environ.get("DOVLIB_REPORTS")
    path = Path(reports if reports is not None else reports_dir()).resolve()
    os.environ["DOVLIB_REPORTS"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("DOVLIB_REPORTS", None)
        else:
            os.environ["DOVLIB_REPORTS"] = old


def notebook_dir(notebook: str) -> Path:
    """``reports/<notebook>/``, created if needed. ``notebook`` is the notebook's stem, e.g. ``00_quickstart``."""
    d = _notebook_path(notebook)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _notebook_path(notebook: str) -> Path:
    """``reports/<notebook>/`` as :func:`notebook_dir` names it, without creating it."""
    if not notebook or "/" in notebook or notebook.startswith("."):
        raise ValueError(f"notebook must be a notebook stem such as '00_quickstart'; got {notebook!r}")
    return reports_dir() / notebook


RUN_TAG_ENV = "DOVLIB_RUN_TAG"
_TAG_OK = re.compile(r"[A-Za-z0-9._-]+")


def artifact_name(name: str) -> str:
    """The file name (without extension) a table or figure called ``name`` is saved under.

    ``name`` itself, unless ``$DOVLIB_RUN_TAG`` is set: then ``<name>__<tag>``. ``dovlib.sweep`` sets it to each
    job's :func:`dovlib.reproduce.run_tag` (its parameters and their hash), so the jobs of one sweep keep their
    own tables and figures instead of overwriting each other's (their records in ``metrics.json`` are keyed by
    parameters anyway). A plain papermill or JupyterLab run keeps the plain name.
    """
    if not name or not _TAG_OK.fullmatch(name):
        raise ValueError(f"a table or figure name must be letters, digits, '.', '_' or '-'; got {name!r}")
    tag = os.environ.get(RUN_TAG_ENV, "")
    if tag and not _TAG_OK.fullmatch(tag):
        raise ValueError(f"${RUN_TAG_ENV} must be letters, digits, '.', '_' or '-' (a file name part); got {tag!r}")
    return f"{name}__{tag}" if tag else name


def save_fig(fig, name: str, notebook: str, dpi: int = 150, **context) -> list[Path]:
    """Save a matplotlib figure as PNG and SVG under ``reports/<notebook>/`` at a fixed dpi; return the paths. The
    file is named :func:`artifact_name` (``name``, or ``name__<tag>`` in a sweep job). ``context`` (profile,
    dataset, is_subset, device) is listed with the figure's time in ``reports/<notebook>/figures.json``, so the
    report index says which run drew it; without it the index can only name the notebook's newest record."""
    d = notebook_dir(notebook)
    name = artifact_name(name)
    paths = []
    manifest = d / "figures.json"
    context = {**_provenance(context), **context}
    with file_lock(manifest):  # the files and their entry together: parallel sweep jobs never mix them
        for ext in ("png", "svg"):
            p = d / f"{name}.{ext}"
            tmp = d / f"{name}.{ext}.tmp-{uuid.uuid4().hex[:12]}"  # never a half-drawn file under the final name
            try:
                fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight")
                os.replace(tmp, p)
            finally:
                tmp.unlink(missing_ok=True)
            paths.append(p)
        figures = json.loads(manifest.read_text()) if manifest.is_file() else {}
        figures[name] = {**context, "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")}
        _atomic_write(manifest, _json_text(figures))
    return paths


CPUINFO = Path("/proc/cpuinfo")  # Linux; elsewhere :func:`cpu_name` asks platform
CPU_FLAGS = ("fma", "avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")  # what kernels pick from
# set, these change which kernels run or how they split the work (env_info records them)
CPU_KERNEL_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                        "MKL_CBWR", "OMP_NUM_THREADS")


def _cpuinfo() -> dict:
    """The first processor's fields of ``/proc/cpuinfo`` ({} where there is none)."""
    fields = {}
    if CPUINFO.is_file():
        for line in CPUINFO.read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if not sep and fields:  # the first processor's block ends at its blank line
                break
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_name(fields: dict | None = None) -> tuple[str, str]:
    """The CPU as (short name, name with x86 family and model): ``("AMD EPYC", "AMD EPYC (family 25, model 17)")``
    from ``/proc/cpuinfo`` (``(R)``/``(TM)`` dropped; a virtual machine may show a generic name, which the family and
    model numbers tell apart), else what :mod:`platform` knows (``arm``, ``x86_64``)."""
    fields = _cpuinfo() if fields is None else fields
    name = " ".join(re.sub(r"\((R|TM)\)", "", fields.get("model name", ""), flags=re.I).split())
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    numbers = [f"{k.removeprefix('cpu ')} {fields[k]}" for k in ("cpu family", "model") if fields.get(k)]
    return name, name + (f" ({', '.join(numbers)})" if numbers else "")


def env_info(device=None) -> dict:
    """Versions and hardware, recorded beside every number. Besides the device: the CPU (``cpu``, with its x86 family
    and model), ``cpu_kernels`` (the instruction set torch's own CPU kernels use: ``AVX512``, ``AVX2``, ...),
    ``cpu_flags`` (the vector extensions oneDNN's and MKL's kernels choose from), ``torch_threads``, and any of
    :data:`CPU_KERNEL_VARIABLES` that is set. CPU training is deterministic on one machine with one thread count, busy
    or idle, but rounds differently with other kernels or threads, and the difference grows over training: notebook
    10's clean model (seed 0, same code, 2 cores) reached test accuracy 0.510 with AVX512 kernels, 0.571 with torch's
    AVX2 kernels, 0.536 with oneDNN's too and 0.569 on one thread (benchmarks/cpu_determinism.py; docs/
    measured-amuse-cpu.md). So a CPU's ``device_name`` names the kernels."""
    import torch

    fields = _cpuinfo()
    cpu = cpu_name(fields)[1]
    kernels = torch.backends.cpu.get_cpu_capability()
    flags = set(fields.get("flags", "").split())
    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "cpu": cpu, "cpu_kernels": kernels,
            "cpu_flags": " ".join(f for f in CPU_FLAGS if f in flags), "torch_threads": torch.get_num_threads()}
    variables = {v: os.environ[v] for v in CPU_KERNEL_VARIABLES if os.environ.get(v)}
    if variables:
        info["cpu_kernel_variables"] = variables
    dev = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    info["device"] = dev
    info["device_name"] = device_name(dev, fields)
    return info


def device_name(device=None, fields: dict | None = None) -> str:
    """The name records give ``device`` (``env_info``'s ``device_name``; default: CUDA when present, else the CPU):
    the GPU's name, or for the CPU its short name, cores, the kernels torch's CPU code uses, any oneDNN limit and
    torch's thread count where it is not one per core (a sweep job's OMP_NUM_THREADS; on the 2-core AMD EPYC build
    machine one thread trained notebook 10's clean cifar10-subset model to 0.569, two to 0.510), e.g. "CPU (AMD EPYC,
    2 cores, AVX512 kernels)". :func:`dovlib.train.fit` and the generator and HiDDeN caches keep it beside the models
    they train (``trained_by``), Table I's crafting beside the marks it crafts (``crafted_by``). ``fields``:
    /proc/cpuinfo's, when already read."""
    import torch

    dev = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if dev.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(dev))  # cuda:1 is GPU 1; cuda the current one
    if dev.startswith("mps"):
        return "Apple GPU (MPS)"
    short, _ = cpu_name(fields)
    kernels = torch.backends.cpu.get_cpu_capability()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    threads = torch.get_num_threads()
    extra = ([f"oneDNN {onednn}"] if onednn else []) + (
        [f"{threads} thread{'s' * (threads != 1)}"] if threads != os.cpu_count() else [])
    return f"CPU ({', '.join([short, f'{os.cpu_count()} cores', f'{kernels} kernels', *extra])})"


def crafted_by_text(devices: dict) -> str:
    """A ``{method: device}`` dict of crafted marks (:func:`dovlib.watermarks.table.crafted_by`, Table I's record)
    in one line, each device once with its methods: "marks crafted by CPU (AMD EPYC, 2 cores, AVX512 kernels)
    (label-consistent, sleeper-agent, ubw-c)"; "no marks crafted" for an empty dict. Notebook 02 prints it; the
    index (:func:`dovlib.index.context_label`) puts it beside tables whose marks were crafted on another device."""
    methods: dict[str, list] = {}
    for key, device in devices.items():
        methods.setdefault(device, []).append(key)
    return ("marks crafted by " + "; ".join(f"{d} ({', '.join(ks)})" for d, ks in methods.items())) if methods \
        else "no marks crafted"


def run_context(profile: str, device, ds=None, **extra) -> dict:
    """What a notebook's records, tables and figures say they were measured with: the profile string, the device
    and its name, and with a dataset ``ds`` (:class:`dovlib.data.Dataset`) its name, whether it is a subset, its
    description and ``data_hash``, a hash of its images and labels (train and test); ``extra`` adds entries (e.g.
    ``perceptual``). Notebooks 04-06 key their records by ``data_hash`` too: a dataset name alone (``sub-imagenet``
    from ``$DOVLIB_IMAGENET`` or Tiny-ImageNet, an image folder whose files changed) does not say which images ran."""
    ctx = {"profile": profile, "device": str(device), "device_name": env_info(device)["device_name"]}
    if ds is not None:
        from .train import data_hash

        ctx.update(dataset=ds.name, is_subset=ds.is_subset, dataset_note=ds.describe(),
                   data_hash=data_hash(ds.x_train, ds.y_train, ds.x_test, ds.y_test))
    return {**ctx, **extra}


def start_notebook(profile: str, seed: int | None = None, device="auto", note: str = ""):
    """The set-up every notebook shares; returns the torch device to run on.

    Resolves ``device`` (a profile's ``device`` field: "auto" takes CUDA when present), seeds Python's, NumPy's and
    torch's RNGs with ``seed`` (unless None), sets the project's plotting style, and prints one line naming dovlib's
    and torch's versions, the device's name, the profile string, the seed and ``note``, so an executed notebook
    always shows what it ran on. A ``quick`` or ``paper`` profile whose ``device="auto"`` finds no GPU warns: it
    runs on the CPU (at the full budget an hour or more for quick, days for paper); ``device=cpu`` in the profile
    string says that is meant and silences the warning. A relative ``$DOVLIB_REPORTS``, ``$DOVLIB_RUNS``,
    ``$DOVLIB_CACHE`` or ``$DOVLIB_IMAGENET`` warns too, naming the folder it resolves to: it is read from the working
    folder, for a Jupyter kernel the notebook's folder, not the one it was exported in (``dovlib.reproduce`` makes
    them absolute before its kernels start; a missing file under a relative ``$DOVLIB_DATA`` says so itself)."""
    import warnings

    import torch

    from . import __version__
    from .plotting import set_style
    from .params import check_seed
    from .train import reset_compute_ledger, reset_training_provenance, resolve_device, seed_everything

    if seed is not None:
        seed = check_seed(seed)  # a notebook's parameter: "1.5", -1 or 1e20 named here, not deep in numpy or torch
    dev = resolve_device(device)
    base = profile.partition(":")[0].strip() if isinstance(profile, str) else ""
    if device == "auto" and dev.type == "cpu" and base in ("quick", "paper"):
        full = {"quick": "an hour or more (notebook 00's full quick budget on the 2-core build machine)",
                "paper": "days"}[base]
        if ":" not in profile:
            how_long, instead = f", for {full}", ("a smaller budget such as -p profile "
                                                  "'quick:device=cpu,epochs=10,width=16'")
        else:  # overrides: their budget was not measured, and was chosen: it is shown with device=cpu added
            from .params import canonical_profile

            own = canonical_profile(profile)  # a device=auto given is replaced, not given twice
            how_long, instead = "", f"this budget on the CPU: -p profile '{own}{',' if ':' in own else ':'}device=cpu'"
        warnings.warn(f"profile {profile!r} is sized for a GPU but none was found: it runs on the CPU{how_long}. On "
                      f"a CPU use -p profile smoke, or {instead} (device=cpu also silences this warning)",
                      stacklevel=2)
    for var, folder, what in (("DOVLIB_REPORTS", reports_dir, "tables, figures and records go to"),
                              ("DOVLIB_RUNS", runs_dir, "checkpoints and cached results go to"),
                              ("DOVLIB_CACHE", data_dir, "dataset downloads and decoded arrays are read from"),
                              ("DOVLIB_IMAGENET", lambda: Path(os.environ["DOVLIB_IMAGENET"]).expanduser(),
                               "Sub-ImageNet images are read from")):
        value = os.environ.get(var, "")
        # exported in one folder, read in another (a kernel's notebooks/); "~/x" is the home folder's, absolute
        if value and not Path(value).expanduser().is_absolute():
            warnings.warn(f"{var}={value!r} is relative: read from the working folder {Path.cwd()} (a Jupyter "
                          f"kernel's is the notebook's folder), so this run's {what} {folder().resolve()}. "
                          f"For another folder, export its absolute path before starting Jupyter (e.g. "
                          f"export {var}=$(realpath {value}) in the folder it is relative to)", stacklevel=2)
    reset_training_provenance()  # records name how this notebook's models were trained (write_record)
    reset_compute_ledger()  # and what they cost (timer, run_times)
    if seed is not None:
        seed_everything(seed)
    set_style()
    name = env_info(dev)["device_name"]
    parts = [f"dovlib {__version__}", f"torch {torch.__version__}", name if dev.type == "cpu" else f"{dev} ({name})",
             f"profile {profile}"]
    parts += [f"seed {seed}"] if seed is not None else []
    parts += [note] if note else []
    print(" | ".join(parts))
    return dev


def record_key(params: dict) -> str:
    """The canonical text of a parameter set (sorted keys): how records and run folders are found again. NumPy and
    torch scalars are keyed as the numbers metrics.json stores (``np.int64(1)`` and ``1`` are the same set), and a
    ``profile`` string by its canonical spelling (:func:`dovlib.params.canonical_profile`: ``"quick: epochs=10"``
    and ``"quick:epochs=10"`` are the same set)."""
    if isinstance(params, dict) and "profile" in params:
        from .params import profile_key

        params = {**params, "profile": profile_key(params["profile"])}  # unreadable strings: keyed as written
    return json.dumps(params, sort_keys=True, default=_key_default)


def _key_default(obj):
    try:
        return _jsonable(obj)
    except TypeError:
        return str(obj)


def _metrics_path(notebook: str) -> Path:
    return notebook_dir(notebook) / "metrics.json"


def load_records(notebook: str) -> list[dict]:
    p = _metrics_path(notebook)
    if not p.is_file():
        return []
    return json.loads(p.read_text()).get("records", [])


def find_record(notebook: str, params: dict) -> dict | None:
    """The stored record for exactly these parameters, or None (used to skip finished parameter sets)."""
    key = record_key(params)
    for r in load_records(notebook):
        if record_key(r.get("params", {})) == key:
            return r
    return None


def write_record(notebook: str, params: dict, metrics: dict, **context) -> dict:
    """Insert or replace the record for ``params`` in ``reports/<notebook>/metrics.json`` (written atomically).
    ``context`` holds profile, dataset, device, wall_time, ... (``**run_times(t, ...)`` of the cells' :func:`timer`
    results gives ``wall_time``, this run's seconds, and ``compute_time``, what the results cost with models read
    back from ``runs/`` counted at their training time); env_info() is added, and so is
    ``training_precision``: when :func:`dovlib.train.fit`, the generator cache or HiDDeN returned models in this
    process since :func:`start_notebook`, how they were trained (with ``trained_on``, their device types, and
    ``trained_by``, the devices by name: a model read back from ``runs/`` may come from another machine, see
    :func:`dovlib.train.training_provenance`), otherwise what the profile's ``precision`` means on the context's
    device ("bf16" or "fp32"); a context saying ``training_precision=NOTHING_TRAINED`` gets neither. ``context``
    entries win."""
    from .train import training_provenance

    trained = {} if context.get("training_precision") == NOTHING_TRAINED else training_provenance()
    context = {**_training_precision(context), **trained, **context}
    record = {"params": params, **context, "metrics": metrics,
              "env": env_info(context.get("device")),
              "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    key = record_key(params)
    path = _metrics_path(notebook)
    with file_lock(path):  # several sweep jobs may write the same metrics.json at once
        records = [r for r in load_records(notebook) if record_key(r.get("params", {})) != key]
        records.append(record)
        _atomic_write(path, _json_text({"notebook": notebook, "records": records}))
    return record


def record_summary(record: dict, metrics: bool = False, notebook: str | None = None) -> str:
    """One line for a notebook to print after :func:`write_record`: what the record was measured on (profile,
    dataset and whether it is a subset as ``reports/index.html`` names them, device, perceptual measure) and its
    times; with ``metrics`` its scalar metrics too, floats with 4 significant digits (nested ones, lists and dicts,
    are left to metrics.json). Given ``notebook`` (the name ``write_record`` had), the line names that notebook's
    metrics.json (relative to the repository when the reports live in it) and a file that does not hold the record
    is a ValueError."""
    if not isinstance(record, dict) or "params" not in record or "metrics" not in record:
        raise TypeError(f"record_summary needs a record as write_record returns it (with params and metrics); got "
                        f"{type(record).__name__} {str(record)[:80]}")
    where = "metrics.json"
    if notebook is not None:
        path = _notebook_path(notebook) / "metrics.json"  # only read: a wrong name leaves no folder behind
        try:
            where = str(path.resolve().relative_to(REPO_ROOT.resolve()))
        except ValueError:  # reports outside the repository ($DOVLIB_REPORTS): the whole path
            where = str(path)
        if not path.is_file() or find_record(notebook, record["params"]) is None:
            raise ValueError(f"record_summary: {where} holds no record with this record's params; notebook must be "
                             f"the name write_record was given (got {notebook!r})")
    from .index import dataset_label  # the index's wording: "cifar10-subset (subset)", "none (simulated)", ...

    what = [f"profile {record['profile']}"] if record.get("profile") else []
    what += [f"dataset {dataset_label(record)}"] if record.get("dataset") or record.get("datasets") else []
    what += [str(record["device"])] if record.get("device") else []
    what += [f"perceptual {record['perceptual']}"] if record.get("perceptual") else []
    times = [f"{name.replace('_', ' ')} {record[name]:.1f} s" for name in ("wall_time", "compute_time")
             if isinstance(record.get(name), (int, float))]
    line = f"recorded in {where} ({', '.join(what)}): {', '.join(times)}"
    if metrics:
        values = {k: v.item() if getattr(v, "ndim", None) == 0 else v  # numpy and torch scalars as Python's
                  for k, v in record["metrics"].items()}
        scalars = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
                   if isinstance(v, (int, float, str, bool)) or v is None]
        line += "; " + ", ".join(scalars)
    return line


def _provenance(context: dict) -> dict:
    """For a figure's or table's context (or a record's) that names a device: how the models trained or read back so
    far in this notebook were trained (:func:`dovlib.train.training_provenance`), as its records say; nothing for a
    context whose ``training_precision`` is :data:`NOTHING_TRAINED` (notebook 08's Table 2 beside its HiDDeN)."""
    from .train import training_provenance

    return training_provenance() if "device" in context and context.get("training_precision") != NOTHING_TRAINED \
        else {}


def _training_precision(context: dict) -> dict:
    """``{"training_precision": "bf16" | "fp32"}`` for a context with a valid profile string and a device, else {}."""
    from .params import get_profile
    from .train import uses_bf16

    profile, device = context.get("profile"), context.get("device")
    if not isinstance(profile, str) or device is None:
        return {}
    try:
        return {"training_precision": "bf16" if uses_bf16(get_profile(profile).precision, str(device)) else "fp32"}
    except (ValueError, RuntimeError):  # a profile or device this dovlib does not know: say nothing
        return {}


def file_lock(path: Path, timeout: float = 600):
    """An inter-process lock beside ``path`` (``<path>.lock``) for read-modify-write of shared report files."""
    from filelock import FileLock

    return FileLock(str(path) + ".lock", timeout=timeout)


def _atomic_write(path: Path, text: str) -> None:
    import uuid

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique across hosts (Slurm nodes share PIDs)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _json_text(obj) -> str:
    """Strict JSON for the report files: tensors and NumPy values as numbers and lists (:func:`_jsonable`), and NaN
    or infinite floats as ``null`` (Python writes ``NaN``, which JSON parsers outside Python refuse)."""
    def finite(v):
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list):
            return [finite(x) for x in v]
        return v

    return json.dumps(finite(json.loads(json.dumps(obj, default=_jsonable))), indent=2, allow_nan=False)


def _jsonable(obj):
    try:
        import numpy as np
        import torch

        if isinstance(obj, torch.Tensor):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to metrics.json")


@contextmanager
def timer():
    """``with timer() as t: ...``; then ``t["seconds"]`` (what the block took in this run) and ``t["used"]``: the
    models, generators, HiDDeN networks and crafted marks the block trained or read back from ``runs/``
    (:func:`dovlib.train.compute_ledger`), from which :func:`run_times` makes a record's ``compute_time``."""
    from .train import compute_ledger, compute_ledger_mark

    t = {"seconds": 0.0, "used": []}
    mark = compute_ledger_mark()
    start = time.perf_counter()
    try:
        yield t
    finally:
        t["seconds"] = time.perf_counter() - start
        t["used"] = compute_ledger(since=mark)


def run_times(*timed) -> dict:
    """A record's times from the :func:`timer` results of the cells its results came from (dicts with ``seconds``
    and ``used``): ``wall_time``, what those cells took in this run (a model read back from ``runs/`` counts the
    seconds reading it took), and ``compute_time``, what the results cost, the same whether the cache was warm or
    cold: the cells' time with the seconds spent obtaining each cached or trained artefact replaced by what computing
    it took, as stored with it (training in this and earlier, resumed runs; an artefact used twice counts once; one
    whose file holds no cost, written by older code, counts its reading). ``cached_compute_time``: the part of it
    read back rather than computed in this run, and ``cached_artifacts``, how many artefacts that was."""
    wall = spent = 0.0
    costs, cached = {}, {}
    for t in timed:
        if not isinstance(t, dict) or not isinstance(t.get("seconds"), (int, float)):
            raise TypeError(f"run_times takes the dicts timer() yields (with 'seconds' and 'used'); got {t!r}")
        wall += t["seconds"]
        for e in t.get("used", []):
            spent += e["spent"]
            cost = e["spent"] if e["cost"] is None else e["cost"]  # not stored: what it took here
            costs[e["artifact"]] = max(costs.get(e["artifact"], 0.0), cost)
            cached[e["artifact"]] = cached.get(e["artifact"], True) and e["reused"]
    return {"wall_time": wall, "compute_time": max(0.0, wall - spent + sum(costs.values())),
            "cached_compute_time": sum((c for a, c in costs.items() if cached[a]), 0.0),
            "cached_artifacts": sum(cached.values())}


def runs_dir() -> Path:
    """Git-ignored folder for checkpoints and caches of long runs: ``runs/`` (``$DOVLIB_RUNS`` overrides; a relative
    one is read from the working folder, as :func:`reports_dir` says)."""
    return Path(os.environ.get("DOVLIB_RUNS", REPO_ROOT / "runs")).expanduser()


def run_dir(notebook: str, params: dict) -> Path:
    """``runs/<notebook>/<hash of params>/``: where one parameter set keeps its checkpoints, created if needed."""
    import hashlib

    h = hashlib.sha1(record_key(params).encode()).hexdigest()[:12]
    d = runs_dir() / notebook / h
    d.mkdir(parents=True, exist_ok=True)
    (d / "params.json").write_text(record_key(params))
    return d


CACHED_FRAME_LIBRARIES = ("torch", "torchvision", "numpy", "pandas", "pillow", "invisible-watermark",
                          "opencv-python-headless", "opencv-python", "onnxruntime", "kornia", "scipy",
                          "scikit-image", "scikit-learn", "pytorch-msssim", "lpips", "reedsolo")


def _library_versions(names=CACHED_FRAME_LIBRARIES) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _code_run_dir(notebook: str, params: dict) -> Path:
    """:func:`run_dir` of ``params`` plus a hash of the ``dovlib`` source and the versions of the libraries results
    depend on (:data:`CACHED_FRAME_LIBRARIES`): other code or libraries get another folder."""
    from .reproduce import source_hash

    return run_dir(notebook, {**params, "dovlib_source": source_hash()[:16], "libraries": _library_versions()})


CACHED_LOCK_TIMEOUT = 6 * 3600  # seconds a job waits for another job computing the same cached setting


def _cached(notebook: str, params: dict, compute, recompute, name: str, what: str, save, load, check):
    """What :func:`cached_frame` and :func:`cached_tensors` share: the folder keyed by ``params`` and the code, the
    result file ``name`` plus ``<stem>.json`` (what computing it took and the result's sha256, written last: a result
    without it is computed again), and a lock, so two sweep jobs wanting the same setting compute it once (the second
    reads it back). A result that is not the file the cache wrote (cut short, damaged, replaced: its sha256 differs),
    an unreadable ``<stem>.json``, or a result ``load`` refuses (``load(path, what, remedy)`` raises a ``ValueError``
    naming the file; tensors are read with ``weights_only=True``, so a foreign file runs no code) is computed again
    and replaced, with a warning naming the file, as crafted marks are (:mod:`dovlib.watermarks.base`): the result is
    a function of the folder's key, so refusing it would only make the user delete it or pass ``recompute=True``.
    The lock is not re-entrant: ``compute`` must not ask for the same cached setting itself (it would wait for
    :data:`CACHED_LOCK_TIMEOUT`), nor obtain cached models (their cost would count twice). The result enters
    :func:`dovlib.train.compute_ledger` at what computing it took, so a :func:`timer` around the call counts a result
    read back at that cost in :func:`run_times`' ``compute_time`` and at its reading in ``wall_time``."""
    import warnings

    from .params import check_bool
    from .train import charge, charging

    recompute = check_bool("recompute", recompute)  # the string "False" is refused, not read as True
    folder = _code_run_dir(notebook, params)
    path, meta = folder / name, folder / f"{Path(name).stem}.json"
    remedy = f"{name} is computed again and replaced"
    with charging(), file_lock(path, timeout=CACHED_LOCK_TIMEOUT):  # waiting for another job's lock: not its cost
        if path.is_file() and meta.is_file() and not recompute:
            try:
                seconds = _cached_cost(path, meta, what, remedy)
                out = load(path, what, remedy)
                charge(path, seconds, reused=True)
                return out, True, seconds
            except ValueError as e:  # the file's own fault (its messages end with the remedy), never a bare error
                warnings.warn(str(e), stacklevel=3)
        start = time.perf_counter()
        out = compute()
        seconds = time.perf_counter() - start
        check(out)
        save(out, path)
        _atomic_write(meta, json.dumps({"seconds": seconds, "sha256": _sha256(path)}))
        charge(path, seconds, reused=False)
    return out, False, seconds


def _sha256(path: Path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _cached_cost(path: Path, meta: Path, what: str, remedy: str) -> float:
    """The seconds ``meta`` records for the cached result at ``path``, once ``path`` is checked to be the file the
    cache wrote (the sha256 ``meta`` records); a ``ValueError`` naming the file otherwise (a frame.csv cut short
    used to be read back as a shorter frame, a garbled tensors.json raised json's bare error)."""
    from .train import printable

    about = f"what computing {path.name} took, and its sha256"
    try:
        record = json.loads(meta.read_text())
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{meta} ({about}) is unreadable ({printable(f'{type(e).__name__}: {e}')}); "
                         f"{remedy}") from None
    seconds = record.get("seconds") if isinstance(record, dict) else None
    if not (isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds)
            and seconds >= 0 and isinstance(record.get("sha256"), str)):
        raise ValueError(f"{meta} ({about}) holds {printable(repr(record))}, not {{'seconds': <seconds>, 'sha256': "
                         f"<hex digest>}}; {remedy}")
    if _sha256(path) != record["sha256"]:
        raise ValueError(f"{path} ({what}) is not the file this cache wrote: its sha256 differs from the one "
                         f"{meta.name} records (cut short, damaged or replaced since); {remedy}")
    return float(seconds)


def cached_frame(notebook: str, params: dict, compute, recompute: bool = False):
    """``compute()``'s pandas DataFrame, kept as ``frame.csv`` in :func:`run_dir` of ``params`` plus a hash of the
    ``dovlib`` source and the versions of the libraries results depend on (:data:`CACHED_FRAME_LIBRARIES`), and read
    back instead of computed when it is there (unless ``recompute``): a notebook's long loop of independent settings
    (AMUSE's tables of notebooks 07 and 08, CPU-hours at the paper's budget) resumes after an interruption at the
    setting it was in. Other code or libraries compute afresh, and so does a ``frame.csv`` that is not the file the
    cache wrote (cut short, damaged or replaced: a warning names it). Returns (frame, reused, seconds): ``seconds`` is
    what computing the frame took, also when it is reused (kept beside it), so a resumed run still reports its cost."""
    import pandas as pd

    def check(df):
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"cached_frame: compute() must return a pandas DataFrame; got {type(df).__name__}")

    def load(path, what, remedy):
        from .train import printable

        try:
            return pd.read_csv(path, keep_default_na=False, na_values=["", "NaN", "nan"])
        except ValueError as e:  # EmptyDataError, ParserError, UnicodeDecodeError
            raise ValueError(f"{path} ({what}) does not read as a CSV table "
                             f"({printable(f'{type(e).__name__}: {e}'.splitlines()[0])}); {remedy}") from None

    return _cached(notebook, params, compute, recompute, "frame.csv", "a cached_frame result",
                   save=lambda df, path: _atomic_write(path, df.to_csv(index=False)), load=load, check=check)


def cached_tensors(notebook: str, params: dict, compute, recompute: bool = False):
    """Like :func:`cached_frame` for a dict of tensors (``compute() -> {name: tensor}``), kept as ``tensors.pt``:
    a long step whose output is data, such as watermarking a whole training set (notebook 10), is done once and read
    back after an interruption. The same key (``params``, the ``dovlib`` source, library versions) and the same
    return value (tensors, reused, seconds). The file is read with ``weights_only=True`` (a foreign one runs no code);
    one that is not the file the cache wrote, or does not load, is computed again with a warning naming it."""
    import torch

    from .train import _save_atomic, safe_torch_load

    def tensor_dict(out) -> bool:
        return isinstance(out, dict) and bool(out) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                           for k, v in out.items())

    def check(out):
        if not tensor_dict(out):
            raise TypeError(f"cached_tensors: compute() must return a non-empty dict of str -> torch.Tensor; got "
                            f"{type(out).__name__}")

    def load(path, what, remedy):
        out = safe_torch_load(path, what, remedy)  # weights_only: runs no code; every failure a ValueError
        if not tensor_dict(out):
            raise ValueError(f"{path} ({what}) holds a {type(out).__name__}, not a non-empty dict of str -> "
                             f"torch.Tensor; {remedy}")
        return out

    return _cached(notebook, params, compute, recompute, "tensors.pt", "a cached_tensors result",
                   save=lambda out, path: _save_atomic({k: v.detach().cpu().contiguous() for k, v in out.items()},
                                                       path),
                   load=load, check=check)


def save_table(df, name: str, notebook: str, caption: str = "", **context) -> Path:
    """Save a pandas DataFrame as ``reports/<notebook>/<name>.csv`` and list it (with its caption) in
    ``reports/<notebook>/tables.json``, which the report index renders. Tables comparing with a paper should have
    the columns ``paper``, ``ours`` and ``diff`` (ours - paper) and say in the caption what data/profile was used.
    ``context`` (profile, dataset, is_subset, device, wall_time) labels the table in ``reports/index.html``; without
    it the index uses the notebook's newest record. In a sweep job the file and its entry are named
    :func:`artifact_name` (``name__<tag>``), so the jobs' tables sit side by side."""
    d = notebook_dir(notebook)
    name = artifact_name(name)
    path = d / f"{name}.csv"
    manifest = d / "tables.json"
    context = {**_provenance(context), **context}
    with file_lock(manifest):  # the CSV and its entry together, atomically: parallel sweep jobs never mix them
        _atomic_write(path, df.to_csv(index=False))
        tables = json.loads(manifest.read_text()) if manifest.is_file() else {}
        tables[name] = {"file": path.name, "caption": caption, **context,
                        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")}
        _atomic_write(manifest, _json_text(tables))
    return path
