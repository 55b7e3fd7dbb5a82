"""Notebooks used by hand, as in JupyterLab: a real kernel started in notebooks/, cells run one at a time, some of
them again after the run (a student re-running the set-up or a figure cell), some with a package missing. nbval
and papermill only ever run every cell once, in order."""

import os

import jupytext
import pytest

from dovlib.data import REPO_ROOT

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _code_cells(stem: str) -> list[str]:
    nb = jupytext.read(REPO_ROOT / "notebooks" / f"{stem}.py")
    return [c.source for c in nb.cells if c.cell_type == "code"]


class _Kernel:
    """A python3 kernel as JupyterLab starts one for a notebook (cwd notebooks/, this process's environment, which
    conftest points at temporary reports/ and runs/ folders and the Agg backend)."""

    def __init__(self):
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(REPO_ROOT / "notebooks"),
                                            env=dict(os.environ))

    def run(self, code: str, timeout: float = 900) -> dict:
        """Execute ``code``; its output (stream text) in ``out``, and its error ``(ename, evalue)`` or None."""
        text = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                text.append(msg["content"]["text"])

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)["content"]
        err = (reply["ename"], reply["evalue"]) if reply["status"] == "error" else None
        return {"out": "".join(text), "error": err}

    def ok(self, code: str, timeout: float = 900) -> str:
        res = self.run(code, timeout)
        assert res["error"] is None, res["error"]
        return res["out"]

    def value(self, expr: str):
        """``expr`` evaluated in the kernel, read back through its repr (numbers, strings, lists, dicts)."""
        import ast

        return ast.literal_eval(self.ok(f"print(repr(({expr})))").strip())

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel():
    k = _Kernel()
    yield k
    k.close()


@pytest.mark.parametrize("stem", ["02_watermark_dataset", "03_verification"])
def test_rerunning_the_setup_cell_keeps_the_parameters_it_read(kernel, stem):
    """Run the parameters and set-up cells, then the set-up cell again (Run All Below from it, or a re-run after an
    edit): it must read the same parameters. It used to overwrite check_alpha (None: alpha) with the level it
    resolved to, and its second run refused that value as if the user had set check_alpha without selection."""
    cells = _code_cells(stem)
    kernel.ok(cells[0])  # parameters
    kernel.ok(cells[1])  # set-up
    again = kernel.run(cells[1])
    assert again["error"] is None, again["error"]
    # the parameter as given; the level the owner's self-check uses under its own name
    assert kernel.value("check_alpha, owner_alpha") == (None, 0.01)
