"""The GPU pass's notebook runner (.ci/device/run_py_notebook.py) injects parameters as papermill does."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _runner():
    spec = importlib.util.spec_from_file_location("run_py_notebook", ROOT / ".ci" / "device" / "run_py_notebook.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SOURCE = '''# %%
import math

# %% tags=["parameters"]
profile = "smoke"  # smoke | quick
steps = None

# %%
result = (profile, steps, math.pi)
'''


def test_inject_assigns_parameters_after_the_parameters_cell():
    r = _runner()
    code = r.inject(SOURCE, {"profile": "quick", "steps": 3000})
    ns = {}
    exec(code, ns)
    assert ns["result"][:2] == ("quick", 3000)
    lines = code.splitlines()  # after the cell's own defaults, before the next cell
    assert lines.index("profile = 'quick'") > lines.index('profile = "smoke"  # smoke | quick')
    assert lines.index("profile = 'quick'") < lines.index("result = (profile, steps, math.pi)")
    assert r.literal("3000") == 3000 and r.literal("quick") == "quick" and r.literal("[1, 2]") == [1, 2]


def test_inject_refuses_unknown_parameters_and_a_source_without_the_cell():
    r = _runner()
    with pytest.raises(ValueError, match=r"parameter\(s\) \['epochs'\] are not in the notebook's parameters cell"):
        r.inject(SOURCE, {"epochs": 3})
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        r.inject("# %%\nx = 1\n", {"x": 2})


def test_every_notebook_source_has_a_parameters_cell_the_runner_finds():
    r = _runner()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        assert "profile = 'smoke'" in r.inject(nb.read_text(), {"profile": "smoke"}), nb.name
