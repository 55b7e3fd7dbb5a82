"""Run a notebook's jupytext source (notebooks/NN_*.py) as a plain Python script, with papermill-style parameters.

For the GPU machine only, whose image has no papermill or Jupyter kernel: the parameters given with ``-p NAME VALUE``
are assigned right after the cell tagged ``parameters`` (as papermill injects them; a VALUE that reads as a Python
literal is that literal, otherwise a string), and the whole file runs in one namespace with matplotlib's Agg backend.
Users run the notebooks with papermill (README); this exists so a short device lease needs no Jupyter stack.

    python .ci/device/run_py_notebook.py notebooks/08_amuse_plug_and_play.py -p profile quick -p tables 1
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path


def inject(source: str, params: dict) -> str:
    """``source`` with ``NAME = value`` lines added after its parameters cell (the cell tagged ``parameters`` ends at
    the next ``# %%`` line). A notebook without that cell, or a name it does not define there, is refused."""
    lines = source.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# %%") and "parameters" in line), None)
    if start is None:
        raise ValueError("no cell tagged 'parameters' in the notebook source")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# %%")), len(lines))
    defined = {n.id for node in ast.parse("\n".join(lines[start + 1:end])).body if isinstance(node, ast.Assign)
               for n in node.targets if isinstance(n, ast.Name)}
    unknown = sorted(set(params) - defined)
    if unknown:
        raise ValueError(f"parameter(s) {unknown} are not in the notebook's parameters cell; it has {sorted(defined)}")
    injected = ["# injected parameters"] + [f"{k} = {v!r}" for k, v in params.items()]
    return "\n".join(lines[:end] + injected + lines[end:]) + "\n"


def literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook", type=Path)
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = ap.parse_args(argv)
    code = inject(args.notebook.read_text(), {k: literal(v) for k, v in args.p})
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.path.insert(0, str(Path.cwd()))
    exec(compile(code, str(args.notebook), "exec"), {"__name__": "__main__"})


if __name__ == "__main__":
    main()
