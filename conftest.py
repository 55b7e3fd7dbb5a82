"""pytest set-up shared by the unit tests and nbval.

Notebook runs (nbval) must not write into the working tree's reports/ and runs/: both are pointed at a temporary
folder for the whole session before any kernel starts (kernels inherit this process's environment). Notebooks
executed by nbval use their default parameters, i.e. the ``smoke`` profile. The folder is removed when the session
ends (each session used to leave up to 40 MB in the temporary directory).
"""

import os
import shutil
import tempfile

_tmp = tempfile.mkdtemp(prefix="dovlib-pytest-")
# assigned, not defaulted: a DOVLIB_REPORTS / DOVLIB_RUNS the user exported (docs/reproduce.md suggests it for sweeps)
# must not receive the smoke runs' tables, figures and models
os.environ["DOVLIB_REPORTS"] = os.path.join(_tmp, "reports")
os.environ["DOVLIB_RUNS"] = os.path.join(_tmp, "runs")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("DOVLIB_RUN_TAG", None)  # a sweep's per-job file names (dovlib.report.artifact_name) stay out of tests


def pytest_unconfigure(config):
    shutil.rmtree(_tmp, ignore_errors=True)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_training_provenance():
    """Each test starts as a notebook does (start_notebook): records name only the models trained in that test."""
    from dovlib.train import reset_training_provenance

    reset_training_provenance()
    yield


class _RunsCodeOnLoading:
    """Unpickling this object creates ``marker`` (``open(marker, "w")``): the code a foreign file could run when read
    with ``torch.load(weights_only=False)``. With ``remove``, it deletes ``marker`` instead (``os.remove``, which
    pickles as ``posix.remove``/``nt.remove``: a module torch's weights_only loader blocks outright, as it does for
    ``os.system`` and ``sys.exit``; harmless: only the test's own marker file goes)."""

    def __init__(self, marker, remove=False):
        self.marker, self.remove = str(marker), remove

    def __reduce__(self):
        return (os.remove, (self.marker,)) if self.remove else (open, (self.marker, "w"))


@pytest.fixture
def code_payload(tmp_path):
    """``(payload, marker)``: an object whose unpickling would create ``marker`` (absent: no code ran), for files
    other than torch's (e.g. a NumPy object array saved with ``np.savez``). Checked first: unpickling a copy does
    create the marker."""
    import pickle

    marker = tmp_path / "code-ran"
    payload = _RunsCodeOnLoading(marker)
    pickle.loads(pickle.dumps(payload)).close()
    assert marker.is_file(), "the payload would not run code"
    marker.unlink()
    return payload, marker


@pytest.fixture
def plant_code(tmp_path):
    """``plant(path, **fields)`` writes with ``torch.save``, at ``path``, a dict of ``fields`` plus an object whose
    unpickling would create a marker file, and returns that marker's path (absent: no code ran). The payload is
    checked first: an unsafe load of a copy does create the marker. ``plant(path, remove_marker=True, **fields)``
    plants an ``os.remove`` of a marker file it creates instead (a function of a module torch blocks, like
    ``os.system``): there the marker's presence says no code ran."""
    import torch

    def plant(path, remove_marker=False, **fields):
        marker = tmp_path / ("code-did-not-run" if remove_marker else "code-ran")
        probe = tmp_path / "probe.pt"
        torch.save({**fields, "payload": _RunsCodeOnLoading(marker, remove_marker)}, probe)
        if remove_marker:
            marker.touch()
            torch.load(probe, weights_only=False)
            assert not marker.exists(), "the planted payload would not run code"
            marker.touch()
        else:
            payload = torch.load(probe, weights_only=False)["payload"]
            payload.close()
            assert marker.is_file(), "the planted payload would not run code"
            marker.unlink()
        probe.replace(path)
        return marker

    return plant


@pytest.fixture
def rewrite_pickle():
    """``rewrite(path, data)`` replaces the ``data.pkl`` entry of the torch file at ``path`` with the bytes ``data``
    (the file stays a valid zip archive, its tensors' entries untouched): a damaged or foreign pickle in a file
    torch.save wrote. Returns the entry's original bytes."""
    import io
    import zipfile
    from pathlib import Path

    def rewrite(path, data: bytes) -> bytes:
        with zipfile.ZipFile(io.BytesIO(Path(path).read_bytes())) as zin, zipfile.ZipFile(path, "w") as zout:
            names = [n for n in zin.namelist() if n.endswith("/data.pkl")]
            assert len(names) == 1, f"{path} is not a torch file: {zin.namelist()}"
            original = zin.read(names[0])
            for item in zin.infolist():
                zout.writestr(item, data if item.filename == names[0] else zin.read(item.filename))
        return original

    return rewrite


@pytest.fixture
def check_damaged_copies(tmp_path, rewrite_pickle):
    """``check(good, load, what, remedy, garbled)``: damaged copies of the torch file ``good`` are each refused by
    ``load(path)`` with a ValueError naming the copy, ``what`` it should be, why and the ``remedy`` (plain text), never
    torch's bare error: an empty one (was a bare EOFError), one cut in half (a RuntimeError), and for each ``name:
    data`` of ``garbled`` a whole zip archive whose data.pkl is the garbage ``data`` (a bare KeyError or IndexError,
    or an "unsupported global" of the garbage), named damaged in printable text only. The copies are written in
    ``tmp_path`` under those names ("empty.pt", "cut.pt" and ``garbled``'s)."""
    import re
    from pathlib import Path

    def check(good, load, what: str, remedy: str, garbled: dict) -> None:
        what, remedy, data = re.escape(what), re.escape(remedy), Path(good).read_bytes()
        (tmp_path / "empty.pt").write_bytes(b"")
        (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match=rf"empty\.pt \({what}\) is empty \(0 bytes\).*; {remedy}$"):
            load(tmp_path / "empty.pt")
        with pytest.raises(ValueError, match=rf"cut\.pt \({what}\) is not a whole torch file .*; {remedy}$"):
            load(tmp_path / "cut.pt")
        for name, garbage in garbled.items():
            (tmp_path / name).write_bytes(data)
            rewrite_pickle(tmp_path / name, garbage)
            with pytest.raises(ValueError, match=rf"{re.escape(name)} \({what}\) is damaged: its data\.pkl is no "
                                                 rf"readable pickle \(.+\); {remedy}$") as err:
                load(tmp_path / name)
            assert str(err.value).isprintable()

    return check


@pytest.fixture
def check_planted_code_refused(tmp_path, plant_code):
    """``check(fields, load, what, remedy)``: a torch file of the dict ``fields`` with a planted payload is refused by
    ``load(path)`` with a ValueError naming it, ``what`` it should be, the global it needs and the ``remedy`` (plain
    text), and the code never runs: one whose payload calls ``open`` (torch's "Unsupported global", free of its
    escape sequences and its advice to load with weights_only=False) and one whose payload calls ``os.remove``, a
    function of a module torch blocks outright (its message then opens with that advice, which is not the reason
    kept)."""
    import re

    def check(fields: dict, load, what: str, remedy: str) -> None:
        what, remedy = re.escape(what), re.escape(remedy)
        ran = plant_code(tmp_path / "evil.pt", **fields)  # open(marker, "w") on unpickling
        with pytest.raises(ValueError, match=rf"evil\.pt \({what}\) does not load safely \(weights_only=True: "
                                             r"tensors and plain settings only\): Unsupported global: GLOBAL "
                                             r"(_?io|builtins)\.open was not an allowed global by default; "
                                             rf"{remedy}$") as err:
            load(tmp_path / "evil.pt")
        assert not ran.exists()  # the code never ran
        assert "\x1b" not in str(err.value) and "weights_only=False" not in str(err.value)  # not torch's advice
        marker = plant_code(tmp_path / "blocked.pt", remove_marker=True, **fields)  # os.remove: posix is blocked
        with pytest.raises(ValueError, match=rf"blocked\.pt \({what}\) does not load safely \(weights_only=True: "
                                             r"tensors and plain settings only\): Trying to load unsupported GLOBAL "
                                             r"(posix|nt)\.remove whose module (posix|nt) is blocked; "
                                             rf"{remedy}$") as err:
            load(tmp_path / "blocked.pt")
        assert marker.exists() and not ran.exists()  # neither payload ran
        assert "weights_only" not in str(err.value).split("only):", 1)[1]  # not torch's advice

    return check


@pytest.fixture
def refuse_opening(monkeypatch):
    """``refuse(path, error)``: every ``open`` of ``path`` raises ``error`` from then on, as for a file this process
    may not read (the tests run as root here, which chmod cannot refuse)."""
    import builtins

    real_open = builtins.open

    def refuse(path, error: BaseException) -> None:
        def refusing_open(file, *args, **kwargs):
            if str(file) == str(path):
                raise error
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refusing_open)

    return refuse
