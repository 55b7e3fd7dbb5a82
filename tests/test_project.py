"""The project's own conventions: environment.yml and pyproject agree, CI runs the README's command,
notebooks are clean, in sync with their jupytext sources, and parameterised with a smoke default."""

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CONDA_NAMES = {"pytorch": "torch", "jupyter_client": "jupyter-client"}  # conda-forge name: pip name


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    import yaml

    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_deps = {_name(d) for d in py["dependencies"] + py["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = set()
    for d in env["dependencies"]:
        if isinstance(d, dict):
            conda |= {_name(x) for x in d["pip"] if not x.startswith("-")}
        elif _name(d) not in ("python", "pip"):
            conda.add(CONDA_NAMES.get(_name(d), _name(d)))
    assert conda == pip_deps, f"only in environment.yml: {conda - pip_deps}; only in pyproject: {pip_deps - conda}"
    pins = {_name(d): d for d in py["dependencies"]}
    assert pins["torch"] == "torch==2.14.1" and pins["torchvision"] == "torchvision==0.29.1"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make reproduce" in readme
    assert "DOVLIB_DATA" in ci


DOCS = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_in_docs_resolve(doc):
    text = (ROOT / doc).read_text()
    links = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    broken = [t for t in links if not ((ROOT / doc).parent / t.split("#")[0]).exists()]
    assert not broken, f"{doc} links to missing files: {broken}"


def test_code_passes_ruff():
    """pyflakes (unused imports, undefined names), syntax errors and 120-character lines over the package, tests,
    benchmarks and notebook sources, with the settings in pyproject.toml's [tool.ruff]."""
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_pytest_session_removes_its_temporary_reports_and_runs(tmp_path):
    """conftest points DOVLIB_REPORTS / DOVLIB_RUNS at a fresh temporary folder, which must not outlive the session."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    probe = "import os; print('DIR', os.environ['DOVLIB_RUNS'])"
    (tmp_path / "test_probe.py").write_text(f"def test_probe():\n    {probe}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOVLIB_")} | {"TMPDIR": str(tmp)}
    # the probe lies outside the repository, so the repository's conftest is loaded as a plugin (-p conftest)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "conftest",
                          str(tmp_path / "test_probe.py")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    used = re.search(r"DIR (\S+)", out.stdout).group(1)
    assert used.startswith(str(tmp / "dovlib-pytest-"))  # the session's folder was made under TMPDIR ...
    assert not list(tmp.iterdir())  # ... and is gone


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_quickstart.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_parameterised_and_in_sync(path):
    import jupytext

    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "commit notebooks clean"
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    src = "".join(params[0]["source"])
    assert re.search(r'^profile = "smoke"', src, re.M), "default profile must be smoke (CI runs defaults)"
    for line in src.splitlines():  # literals only: nothing derived in the parameters cell
        if line.strip() and not line.lstrip().startswith("#"):
            assert re.match(r"^\w+ = ", line), f"parameters cell line is not a simple assignment: {line!r}"
    source = path.with_suffix(".py")
    assert source.is_file(), f"{path.name} needs its jupytext source {source.name}"
    py_cells = [c.source for c in jupytext.read(source).cells]
    nb_cells = [c.source for c in jupytext.read(path).cells]
    assert py_cells == nb_cells, f"{path.name} is out of sync with {source.name}: run `make notebooks`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path, caplog):
    """`papermill --help-notebook` and dovlib.reproduce see every parameter: papermill's parser gives up on a line
    whose comment holds `=` or `<=` and then silently drops that parameter from its listing."""
    import logging

    import papermill

    nb = json.loads(path.read_text())
    src = "".join(next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))["source"])
    names = [m.group(1) for m in re.finditer(r"^(\w+) = ", src, re.M)]
    with caplog.at_level(logging.WARNING, logger="papermill"):
        found = papermill.inspect_notebook(str(path))
    assert not [r.message for r in caplog.records if "Unable to parse" in r.getMessage()]
    assert list(found) == names


def test_the_test_session_writes_into_its_own_temporary_folders():
    """conftest.py assigns them: a DOVLIB_REPORTS / DOVLIB_RUNS the user exported never receives the smoke runs."""
    for var in ("DOVLIB_REPORTS", "DOVLIB_RUNS"):
        assert "dovlib-pytest-" in os.environ[var], var
