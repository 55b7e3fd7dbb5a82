"""Notebooks used by hand, as in JupyterLab: a real kernel started in notebooks/, cells run one at a time, some of
them again after the run (a student re-running the set-up or a figure cell), some with a package missing. nbval
and papermill only ever run every cell once, in order."""

import os
import re

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

    def __init__(self, **env):
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(REPO_ROOT / "notebooks"),
                                            env={**os.environ, **env})

    def run(self, code: str, timeout: float = 900) -> dict:
        """Execute ``code``; its output (stream text) in ``out``, the MIME types of each thing it displayed (its
        result too) in ``shown``, and its error ``(ename, evalue)`` or None."""
        text, shown = [], []

        def hook(msg):
            if msg["msg_type"] == "stream":
                text.append(msg["content"]["text"])
            elif msg["msg_type"] in ("display_data", "execute_result"):
                shown.append(sorted(msg["content"]["data"]))

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)["content"]
        err = (reply["ename"], reply["evalue"]) if reply["status"] == "error" else None
        if reply["status"] == "aborted":  # not run at all: ipykernel drops requests that reach it just after an error
            err = ("aborted", "the kernel aborted the request without running it")
        return {"out": "".join(text), "shown": shown, "error": err}

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


def _interrupted(kernel: _Kernel, code: str, after: float) -> dict:
    """Start ``code``, press "Interrupt kernel" (SIGINT) ``after`` seconds later, as JupyterLab does, and return the
    cell's reply (status "error" with ename KeyboardInterrupt, or "ok" where it finished first)."""
    import time

    msg_id = kernel.kc.execute(code)
    time.sleep(after)
    kernel.km.interrupt_kernel()
    return _reply(kernel, msg_id)


def _reply(kernel: _Kernel, msg_id: str) -> dict:
    """The reply to the request ``msg_id`` sent with ``kernel.kc.execute``, once the kernel runs requests again
    (:func:`_settled`)."""
    while (reply := kernel.kc.get_shell_msg(timeout=300))["parent_header"].get("msg_id") != msg_id:
        pass
    _settled(kernel)
    return reply["content"]


def _settled(kernel: _Kernel) -> None:
    """Wait until the kernel runs requests. After an error (a KeyboardInterrupt too) ipykernel aborts, unrun, the
    requests that reach it before it is done with the error: 1 in 30 sent right after the error's reply, as a test
    sends them (never as fast as a person clicks), so a cell "run again" there would not run at all."""
    import time

    for _ in range(100):
        if kernel.kc.execute_interactive("pass", timeout=60)["content"]["status"] != "aborted":
            return
        time.sleep(0.05)
    raise AssertionError("the kernel kept aborting requests")


def test_a_request_the_kernel_aborts_is_not_a_cell_that_ran(kernel):
    """A request that reaches the kernel while it handles an error is aborted, unrun; ``run`` took its reply (no
    error in it) for a cell that ran, so a cell "run again" after an interrupt could silently not run."""
    kernel.kc.execute("import time\ntime.sleep(0.5)\n1 / 0")  # still running when the next request arrives
    res = kernel.run("ran = True")
    assert res["error"] is not None and res["error"][0] == "aborted", res
    _settled(kernel)
    assert kernel.value("'ran' in dir()") is False


def test_quickstart_training_cell_run_again_after_an_interrupt_trains_the_same_model(kernel):
    """Notebook 00's Train cell built its model from torch's global random stream, which start_notebook seeds once:
    run again (after "Interrupt kernel" in the middle of training, or after an edit), it started from other weights
    and wrote other numbers under the same parameters than a papermill run (smoke: test_acc 0.24 against 0.267)."""
    cells = _code_cells("00_quickstart")
    train = _cell(cells, "fit(model")
    for cell in cells[:cells.index(train) + 1]:
        kernel.ok(cell)
    first = kernel.value("result.history")
    stopped = _interrupted(kernel, train, after=1.0)
    assert stopped["status"] == "ok" or stopped["ename"] == "KeyboardInterrupt", stopped
    kernel.ok(train)
    again = kernel.value("result.history")
    assert [{k: v for k, v in row.items() if k != "epoch_time"} for row in again] == [
        {k: v for k, v in row.items() if k != "epoch_time"} for row in first]


def test_plug_and_play_wall_time_after_an_interrupted_table_2_counts_each_setting_once(tmp_path):
    """Notebook 08's Table 2 loop keeps each finished setting (cached_frame), so "Interrupt kernel" in its middle and
    a second run of the cell reads those back. The record's wall time was the time since the set-up cell plus what
    the reused settings took to compute: settings computed by the interrupted run in this kernel counted twice (and
    again at every further run of the cell), and the time the kernel sat idle between cells counted too. Each table
    now times its own cell: after the rerun, the wall time is at most the time since the cell was first started."""
    import time

    k = _Kernel(DOVLIB_RUNS=str(tmp_path / "runs"), DOVLIB_REPORTS=str(tmp_path / "reports"))
    try:
        cells = _code_cells("08_amuse_plug_and_play")
        table2 = _cell(cells, "cached_frame(NOTEBOOK, key")
        for cell in [cells[0] + '\ntables = "2"'] + cells[1:cells.index(table2)]:
            k.ok(cell)
        k.ok("import time as _time; _t0 = _time.perf_counter()")
        msg_id = k.kc.execute(table2)
        deadline = time.perf_counter() + 120
        while not list(tmp_path.glob("runs/08_amuse_plug_and_play/*/frame.json")) and time.perf_counter() < deadline:
            time.sleep(0.05)  # the first setting finished and kept
        k.km.interrupt_kernel()
        reply = _reply(k, msg_id)
        assert reply["status"] == "ok" or reply["ename"] == "KeyboardInterrupt"
        assert "reused" in k.ok(table2)  # the rerun read the kept setting(s) back
        for cell in cells[cells.index(table2) + 1:]:
            k.ok(cell)
        wall, elapsed = k.value("times['wall_time'], _time.perf_counter() - _t0")
        assert 0 < wall <= elapsed, (wall, elapsed)
    finally:
        k.close()


def _cell(cells: list[str], marker: str) -> str:
    """The one code cell holding ``marker``."""
    found = [c for c in cells if marker in c]
    assert len(found) == 1, f"{len(found)} cells hold {marker!r}"
    return found[0]


def _set_up_on_stand_ins(kernel: _Kernel, stem: str, stand_ins: str) -> list[str]:
    """Run notebook ``stem``'s parameters and set-up cells, then ``stand_ins`` (code that binds stand-ins for what
    later cells read, with ``types.SimpleNamespace`` as ``_NS``) in place of the cells that train; returns the
    notebook's code cells, for the cells to run on them."""
    cells = _code_cells(stem)
    kernel.ok(cells[0])  # parameters
    kernel.ok(cells[1])  # set-up
    kernel.ok("from types import SimpleNamespace as _NS\n" + stand_ins)
    return cells


# defines drawn(i) in a kernel that ran notebook 01 (or stand-ins for its ds and G): the axes of _sample_figure(i)
# that show images, and the largest difference of each image shown from sample i clean, watermarked (G.mark) and its
# amplified residual
_DRAWN = ("import numpy as np\n"
          "def drawn(i):\n"
          "    axes = [a for a in _sample_figure(i).axes if a.images]\n"
          "    x = ds.x_test[i:i + 1]\n"
          "    xm = G.mark(x)\n"
          "    want = [x / 255, xm / 255, sscl.amplified_residual(x, xm)]\n"
          "    return len(axes), [float(np.abs(np.asarray(a.images[0].get_array()) - w[0].permute(1, 2, 0)"
          ".numpy()).max()) for a, w in zip(axes, want)]")


def test_subset_attack_wall_time_counts_each_cell_once_and_no_idle_time(kernel):
    """Notebook 09's record took its wall time from the set-up cell to the record cell: in JupyterLab the time the
    kernel sat idle between cells run by hand counted, and so did an interrupted run of a cell and every earlier run
    of a cell run again (smoke, 3 shares: 7.5 s recorded for 3.8 s of cells run after the set-up cell, the decoding
    cell interrupted, then run again after a 2 s pause). The cells that do the work (extraction, decoding) now time
    themselves and the record sums them: at most the time the kernel spent running the cells after the set-up."""
    import time

    cells = _code_cells("09_amuse_subset_attack")
    decode, setup = _cell(cells, "leak_subset_accuracy("), cells.index(_cell(cells, "start_notebook("))
    for cell in [cells[0] + "\nshares = [0.1, 0.5, 1.0]"] + cells[1:setup + 1]:  # 3 shares: a shorter decoding cell
        kernel.ok(cell)
    busy = 0.0  # what running the later cells took, as the client saw it: the interrupted run and the pause left out
    for cell in cells[setup + 1:]:
        if cell is decode:
            stopped = _interrupted(kernel, cell, after=0.5)
            assert stopped["status"] == "ok" or stopped["ename"] == "KeyboardInterrupt", stopped
            time.sleep(2)  # the user reads the output before running the cell again
        t = time.perf_counter()
        kernel.ok(cell)
        busy += time.perf_counter() - t
    assert 0 < kernel.value("wall") <= busy, (kernel.value("wall"), busy)


def test_subset_attack_trade_off_plot_gets_its_own_figure(kernel):
    """Where figures stay open after their cell (MPLBACKEND=Agg, as under nbval and batch runs, or
    `%matplotlib widget` in JupyterLab), the trade-off scatter was drawn on the current axes: the last panel of the
    leaked-share grid, saved as tradeoff_bits_vs_rho.png with the grid around it; a second run of its cell drew
    every point again on the same axes."""
    for cell in _code_cells("09_amuse_subset_attack"):
        kernel.ok(cell)
    grid_panels = kernel.value("[len(a.collections) + len(a.lines) for a in g.axes.flat]")
    trade = _cell(_code_cells("09_amuse_subset_attack"), "tradeoff_table(")
    kernel.ok("first_trade = ax")
    kernel.ok(trade)  # re-run after the completed run
    assert kernel.value("ax.figure is not g.figure, len(ax.figure.axes), first_trade.figure is not ax.figure") == (
        True, 1, True)
    assert kernel.value("len(ax.collections) == len(first_trade.collections)")  # the points once, not twice
    assert kernel.value("[len(a.collections) + len(a.lines) for a in g.axes.flat]") == grid_panels


def test_watermark_notebook_bar_charts_get_their_own_figures(kernel):
    """Notebook 02's two bar charts (per-class accuracy, then Table I) were drawn on the current axes: with figures
    left open, Table I's bars landed on the per-class chart (table1_all_methods.png showed both). Run here on
    stand-in results (the cells' own code after the real parameters and set-up cells), without the minutes of
    training Table I takes."""
    cells = _set_up_on_stand_ins(
        kernel, "02_watermark_dataset",
        "ds = _NS(classes=[f'class {i}' for i in range(10)], num_classes=10, x_test=None, y_test=None)\n"
        "benign, run = _NS(model=None), _NS(suspect=_NS(model=None))\n"
        "per_class_accuracy = lambda model, x, y, n: [0.5] * n\n"
        "label = table_label = 'stand-in'; context = {}; crafted = {}\n"
        "table_all = pd.DataFrame({'method': ['BadNets', 'SSCL-BW'], 'BA': [0.9, 0.8], 'WSR': [0.5, 0.6],\n"
        "                          'WSR_benign': [0.1, 0.2]})")
    kernel.ok(_cell(cells, "per_class_accuracy(benign.model"))
    kernel.ok("per_class_ax, per_class_bars = ax, len(ax.patches)")
    kernel.ok(_cell(cells, "var_name=\"measure\""))
    assert kernel.value("ax.figure is not per_class_ax.figure, len(ax.figure.axes)") == (True, 1)
    assert kernel.value("len(per_class_ax.patches)") == kernel.value("per_class_bars")
    # read as a reader would: each slanted name ends at its own bars (centred, "automobile" sat under "bird"), the
    # legend beside the bars (at quick/paper BA is near 0.9 for every method), the long run label wrapped to the
    # axes (one line made the saved image far wider than the plot), Fig. 4's name for the clean model's WSR
    kernel.ok("label = table_label = 'quick:device=cpu,epochs=10,width=16,gen_iters=300,batch_size=128,lr=0.05 "
              "profile, ' * 2")
    kernel.ok(_cell(cells, "per_class_accuracy(benign.model"))
    kernel.ok("per_class_ax = ax")
    kernel.ok(_cell(cells, "var_name=\"measure\""))
    for name in ("per_class_ax", "ax"):
        kernel.ok(f"_a = {name}; _r = _a.figure.canvas.get_renderer(); _a.figure.draw(_r)")
        assert kernel.value("{t.get_ha() for t in _a.get_xticklabels()}") == {"right"}
        assert kernel.value("bool(_a.get_legend().get_window_extent(_r).x0 >= _a.get_window_extent(_r).x1)")
        assert kernel.value("bool(_a.title.get_window_extent(_r).width <= _a.get_window_extent(_r).width + 1)")
    assert "WSR (clean model)" in kernel.value("[t.get_text() for t in ax.get_legend().get_texts()]")


# defines legends_over_data() in a kernel whose ``fig`` is drawn: the figure's legends (its own and its axes'), and
# for each one the plotted lines, markers and bars whose window extents (the renderer's) it overlaps
_LEGENDS = ("import matplotlib.colors\nimport numpy as np\n"
            "def legends_over_data():\n"
            "    r = fig.canvas.get_renderer(); fig.draw(r)\n"
            "    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend() is not None]\n"
            "    data = [(a, d) for a in fig.axes for d in [*a.lines, *a.collections, *a.patches]\n"
            "            if np.isfinite(d.get_window_extent(r).bounds).all()]  # not an empty error band\n"
            "    return len(legends), [[f'panel {fig.axes.index(a)}: {d.get_label()}' for a, d in data\n"
            "                           if leg.get_window_extent(r).overlaps(d.get_window_extent(r))]\n"
            "                          for leg in legends]\n"
            "def texts_overlapping():  # axis labels and titles that run into each other\n"
            "    r = fig.canvas.get_renderer(); fig.draw(r)\n"
            "    texts = [t for a in fig.axes for t in (a.xaxis.label, a.yaxis.label, a.title) if t.get_text()]\n"
            "    return [(s.get_text(), t.get_text()) for i, s in enumerate(texts) for t in texts[i + 1:]\n"
            "            if s.get_window_extent(r).overlaps(t.get_window_extent(r))]")

# a sweep as the quick and paper profiles measure it: BA near 0.9, WSR near 1, the clean model's WSR near 0.1
_ABLATION_RECORDS = (
    "_recs = [{'params': {'profile': profile, 'dataset': dataset, 'data': 'h', 'arch': arch, 'eps': e, 'rate': r,\n"
    "                     'target': target, 'seed': seed, 'key_hash': key_hash(key), 'perceptual': perceptual},\n"
    "          'metrics': {'BA': 0.90 + 0.03 * (i % 10) / 9, 'WSR': 0.85 + 0.14 * (i % 10) / 9,\n"
    "                      'WSR_benign': 0.05 + 0.01 * (i % 10),\n"
    "                      'delta_p': 0.8, 'p_value': 1e-9, 'verified': True, 'p_value_benign': 0.4,\n"
    "                      'verified_benign': False, 'learnt': True}, 'device': 'cuda', 'device_name': 'H100'}\n"
    "         for i, (e, r) in enumerate([(f'{j}/255', 0.1) for j in range(1, 11)]\n"
    "                                    + [('8/255', j / 100) for j in range(1, 10)])]\n"
    "load_records = lambda notebook: _recs\n"
    "ds = _NS(name='cifar10-subset', is_subset=True)\n"
    "context = {'profile': profile, 'device': 'cpu', 'device_name': 'CPU', 'data_hash': 'h', "
    "'perceptual': perceptual}\n")


def test_ablation_figure_has_one_legend_off_the_lines_and_names_its_y_axis(kernel):
    """Fig. 4 drew the same legend (BA, WSR, WSR of the clean model) in both panels, inside the axes, over the lines:
    at the quick and paper profiles BA and WSR sit near 0.9, where the legend was. Its y axis read "value". Run on
    stand-in records at such values (the cells' own code after the real parameters and set-up cells)."""
    cells = _set_up_on_stand_ins(kernel, "04_ablation", _ABLATION_RECORDS)
    kernel.ok(_cell(cells, "fig4_ablation"))
    kernel.ok(_LEGENDS)
    n, covered = kernel.value("legends_over_data()")
    assert n == 1 and covered == [[]], covered
    assert kernel.value("[t.get_text() for t in fig.legends[0].get_texts()]") == ["BA", "WSR", "WSR (clean model)"]
    assert kernel.value("axes[0].get_ylabel()") == "BA / WSR"
    assert kernel.value("texts_overlapping()") == []
    assert kernel.value("len(axes[0].lines)") >= 3  # drawn: 10 eps points per metric
    assert kernel.value("[len(a.texts) for a in axes]") == [0, 0]  # a walked grid needs no hint


def test_watermark_notebook_table_i_shows_each_value_with_its_own_digits(kernel):
    """Notebook 02 showed Table I rounded to 4 decimals: BadNets' perceptual distance 0.00026 read 0.0003 and UBW-P's
    0.000225 read 0.0002, the benign floor 0.003663 read 0.0037. Shown readable (3 significant digits each, counts
    whole); the CSV keeps every digit."""
    cells = _set_up_on_stand_ins(
        kernel, "02_watermark_dataset",
        "pcol = f'perceptual_{perceptual}'\n"
        "import dovlib.watermarks.table as _table  # the cell imports table_i: this stand-in is what it gets\n"
        "_table.table_i = lambda *a, **k: pd.DataFrame({'method': ['BadNets', 'UBW-P'], 'key': ['badnets', 'ubw-p'],\n"
        "    'kind': ['poison-label'] * 2, 'BA': [0.9, 0.88], 'WSR': [0.5, 0.866667], 'WSR_benign': [0.003663, 0.88],\n"
        "    pcol: [0.00026108, 0.000224893], 'PSNR': [26.3735, 25.5611], 'SSIM': [0.99257, 0.993373],\n"
        "    'n_marked': [60, 60]})\n"
        "ds = run = _NS(surrogate=None); idx = list(range(60)); label = 'stand-in'\n"
        "row_wm = {'BA': 0.163333, 'WSR': 0.0, pcol: 0.002038, 'PSNR': 41.0261, 'SSIM': 0.997973}\n"
        "row_benign = {'WSR': 0.003663}")
    kernel.ok(_cell(cells, "table_all = table_i("))
    shown = kernel.value("_.to_string()")  # what the cell showed: IPython's last result
    rows = {line.split()[1]: line.split()[1:] for line in shown.splitlines()[1:]}  # after the index
    assert rows["BadNets"][1:] == ["poison-label", "0.9", "0.5", "0.00366", "0.000261", "26.4", "0.993", "60"], shown
    assert rows["UBW-P"][4:6] == ["0.88", "0.000225"] and rows["UBW-P"][3] == "0.867", shown


def test_ablation_table_shows_each_p_value_with_its_own_digits(kernel):
    """At the quick and paper profiles the ablation's p-values are tiny beside BA and WSR near 0.9: pandas showed the
    whole p_value column in scientific notation with six digits (1.000000e-09); the table is shown readable."""
    cells = _set_up_on_stand_ins(kernel, "04_ablation", _ABLATION_RECORDS)
    kernel.ok(_cell(cells, "fig4_ablation"))
    kernel.ok(_cell(cells, 'save_table(table, "ablation"'))
    shown = kernel.value("_.to_string()")  # what the cell showed: IPython's last result
    assert "1e-09" in shown and "0.4" in shown and "e-09" not in shown.replace("1e-09", ""), shown


def test_ablation_figure_without_a_sweep_puts_its_one_point_on_the_grid_and_says_how_to_walk_it(kernel):
    """Without a sweep each panel of Fig. 4 holds one point, and matplotlib spanned the gamma axis 0.096 to 0.104."""
    one_point = _ABLATION_RECORDS.replace("[(f'{j}/255', 0.1) for j in range(1, 11)]\n", "[('8/255', 0.1)]\n"
                                          ).replace("+ [('8/255', j / 100) for j in range(1, 10)]", "")
    assert one_point != _ABLATION_RECORDS
    cells = _set_up_on_stand_ins(kernel, "04_ablation", one_point)
    kernel.ok(_cell(cells, "fig4_ablation"))
    assert kernel.value("len(df)") == 1
    low, high = kernel.value("[float(v) for v in axes[1].get_xlim()]")
    assert low < kernel.value("float(min(rate_grid))") and high > 0.1  # the grid the sweep walks, not 0.096-0.104
    hints = kernel.value("[[t.get_text().replace(chr(10), ' ') for t in a.texts] for a in axes]")
    assert hints[0][0].startswith("one point measured; sweep = 'eps' or 'both' walks eps"), hints
    assert hints[1][0].startswith("one point measured; sweep = 'rate' or 'both' walks gamma"), hints


_REMOVAL_STAND_INS = (
    "import numpy as np\n"
    "ds = _NS(name='cifar10-subset', is_subset=True, num_classes=10)\n"
    "context = {'profile': profile, 'device': 'cpu', 'device_name': 'CPU', 'data_hash': 'h', "
    "'perceptual': perceptual}\n"
    "_e = np.arange(11)\n"
    "ft = pd.DataFrame({'epoch': _e, 'BA': 0.90 + 0.003 * _e, 'WSR': 0.99 - 0.014 * _e, 'delta_p': 0.8,\n"
    "                   'p_value': 10.0 ** -(12 - _e), 'verified': True})\n"
    "_r = np.round(np.arange(0, 0.951, 0.05), 4)\n"
    "pr = pd.DataFrame({'rate': _r, 'pruned_channels': (_r * 512).astype(int),\n"
    "                   'BA': np.where(_r < 0.85, 0.93 - 0.03 * _r, 0.1),\n"
    "                   'WSR': np.where(_r < 0.85, 0.99 - 0.14 * _r, 1.0),\n"
    "                   'p_value': np.where(_r < 0.85, 1e-8, 0.5), 'verified': _r < 0.85})\n"
    "floor = {'BA': 0.92, 'WSR': 0.1, 'p_value': 0.4, 'verified': False}\n"
    "rec = {'metrics': {'finetune_batch_size': 128}, 'device': 'cuda', 'device_name': 'H100'}\n"
    "ft_steps, ft_budget = 40, '508 benign images, batch 128, 40 optimizer steps in 10 epochs'\n")


def test_removal_tables_show_each_p_value_with_its_own_digits(kernel):
    """At the quick and paper profiles fine-tuning keeps p-values of 1e-12 beside 0.5, and pandas showed the whole
    p_value column in scientific notation with six digits (5.000000e-01); both tables are shown readable."""
    cells = _set_up_on_stand_ins(kernel, "05_removal_attacks", _REMOVAL_STAND_INS)
    kernel.ok(_cell(cells, 'readable(ft[["epoch"'))
    shown = kernel.value("_.to_string()")  # what the cell showed: IPython's last result
    first, last = shown.splitlines()[1].split(), shown.splitlines()[-1].split()
    assert first[1:] == ["0", "0.9", "0.99", "0.8", "1e-12", "True"] and last[5] == "0.01", shown
    kernel.ok(_cell(cells, 'readable(pr[["rate"'))
    shown = kernel.value("_.to_string()")
    lines = [line.split() for line in shown.splitlines()[1:]]
    assert lines[0][1:] == ["0", "0", "0.93", "0.99", "1e-08", "True"], shown
    assert lines[-1][1:] == ["0.95", "486", "0.1", "1", "0.5", "False"], shown
    assert "e-01" not in shown and "e+00" not in shown, shown


def test_generator_quality_table_shows_each_value_with_its_own_digits(kernel):
    """Notebook 01's quality table is one float column: pandas wrote every value in it with six decimals (the L-inf
    distance 8 as 8.000000, a wall time 10.488677). Run on stand-ins for the generator and the surrogate's measures
    (the cell's own code after the real parameters and set-up cells)."""
    cells = _set_up_on_stand_ins(
        kernel, "01_train_generator",
        "ds = _NS(x_test=torch.zeros(4, 3, 8, 8, dtype=torch.uint8), y_test=torch.tensor([0, 1, 1, 1]))\n"
        "G = _NS(mark=lambda x: x + 8, meta={'wall_time': 10.488677})\n"
        "surrogate, surrogate_acc = _NS(model=None), 0.153333\n"
        "predict_logits = lambda model, x: torch.zeros(len(x), 10)\n"
        "evaluate = lambda model, x, y: 0.1533333\n"
        "perceptual_distance = lambda x, xm, how: torch.tensor([0.002772])\n"
        "mean_psnr, ssim = lambda x, xm: 41.262547, lambda x, xm: torch.tensor([0.997092])\n")
    kernel.ok(_cell(cells, 'to_frame("value")'))
    shown = dict(line.split() for line in kernel.value("_.to_string()").splitlines()[1:])
    assert shown == {f"perceptual_{kernel.value('perceptual')}": "0.00277", "PSNR": "41.3", "SSIM": "0.997",
                     "linf_255": "8", "surrogate_clean_acc": "0.153", "surrogate_marked_acc": "0.153",
                     "surrogate_wsr": "0", "generator_wall_time": "10.5"}, shown


def test_sscl_table1_row_shows_each_value_with_its_own_digits(kernel):
    """Notebook 02's SSCL-BW row of Table I showed a perceptual distance of 0.002038 and BA 0.12 with six decimals
    (0.120000) and WSR 0.003663 beside them. Run on stand-in measures (the cell's own code after the real parameters
    and set-up cells)."""
    cells = _set_up_on_stand_ins(
        kernel, "02_watermark_dataset",
        "import numpy as np\n"
        "ds = _NS(x_test=None, y_test=None, x_train=np.zeros((4, 3, 8, 8), dtype=np.uint8))\n"
        "marked, run, benign = _NS(marked=[1, 2], x=ds.x_train), _NS(suspect=_NS(model='wm'), trigger=None), "
        "_NS(model='benign')\n"
        "def evaluate_watermark(model, trigger, x, y, target, **kw):\n"
        "    return {'BA': 0.12 if model == 'benign' else 0.163333, 'WSR': 0.003663 if model == 'benign' else 0.0,\n"
        "            f'perceptual_{perceptual}': 0.002038, 'PSNR': 41.026115, 'SSIM': 0.997973}\n")
    kernel.ok(_cell(cells, "table1 = table1[["))
    shown = kernel.value("_.to_string()").splitlines()
    assert shown[1].split()[-5:] == ["0.12", "0.00366", "-", "-", "-"], shown
    assert shown[2].split()[-5:] == ["0.163", "0", "0.00204", "41", "0.998"], shown


def test_removal_figure_has_one_legend_off_the_lines_and_names_its_y_axes(kernel):
    """Fig. 5 put a legend inside each of its three panels; at the quick and paper profiles BA and WSR sit near 0.9
    for most of both attacks, under the legends of the fine-tuning and pruning panels, which also said "value" on
    their y axes. Run on stand-in curves at such values (the cells' own code after the parameters and set-up cells),
    pruning collapsing BA to chance at 85% (the red marks, with their legend entry). With the legend beside the
    panels, the long x labels of the pruning and p-value panels ran into each other; the fine-tuning panel ticked
    epochs 2.5 and 7.5."""
    cells = _set_up_on_stand_ins(kernel, "05_removal_attacks", _REMOVAL_STAND_INS)
    kernel.ok(_cell(cells, "fig5_removal"))
    kernel.ok(_LEGENDS)
    n, covered = kernel.value("legends_over_data()")
    assert n == 1 and covered == [[]], covered
    texts = kernel.value("[t.get_text() for t in fig.legends[0].get_texts()]")
    assert {"BA", "WSR", "WSR, clean model", "alpha = 0.01"} <= set(texts) and len(texts) == len(set(texts))
    assert any(t.startswith("BA within 0.05 of chance") for t in texts)
    # one legend for all three panels: the p-value panel's attacks are told apart from the BA and WSR lines by colour
    colours = kernel.value("{t.get_text(): matplotlib.colors.to_hex(h.get_color()) for t, h in "
                           "zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles) if hasattr(h, 'get_xdata')}")
    attacks = [t for t in colours if t.startswith("p-value")]
    assert len(attacks) == 2 and not {colours[t] for t in attacks} & {colours["BA"], colours["WSR"]}, colours
    assert kernel.value("[a.get_ylabel() for a in axes]") == ["BA / WSR", "BA / WSR", "verification p-value"]
    # the long x labels of neighbouring panels ran into each other once the legend took its room; epochs whole
    assert kernel.value("texts_overlapping()") == []
    assert kernel.value("all(float(t).is_integer() for t in axes[0].get_xticks())")


# defines texts_running_together() in a kernel whose ``fig`` is drawn: every pair of texts of its axes (tick labels,
# axis labels, titles, heat-map annotations) whose window extents overlap
_TEXTS = ("def texts_running_together():\n"
          "    r = fig.canvas.get_renderer(); fig.draw(r)\n"
          "    texts = [t for a in fig.axes for t in (*a.get_xticklabels(), *a.get_yticklabels(), a.xaxis.label,\n"
          "                                           a.yaxis.label, a.title, *a.texts) if t.get_text()]\n"
          "    return [(s.get_text(), t.get_text()) for i, s in enumerate(texts) for t in texts[i + 1:]\n"
          "            if s.get_window_extent(r).overlaps(t.get_window_extent(r))]")

# a quick or paper grid (every architecture) of one draw per cell, and what the figure and reading cells read
_TRANSFER_STAND_INS = (
    "from dovlib.studies import transfer_cells\n"
    "ds = _NS(name='cifar10-subset', is_subset=True)\n"
    "context = {'profile': profile, 'device': 'cpu', 'device_name': 'CPU', 'data_hash': 'h', "
    "'perceptual': perceptual}\n"
    "df = pd.DataFrame([{'surrogate': a, 'suspect': b, 'seed': 0, 'BA': 0.9, 'WSR': 0.95, 'BA_benign': 0.91,\n"
    "                    'WSR_benign': 0.1, 'learnt': True, 'verified': True, 'verified_benign': False,\n"
    "                    'device': 'cuda', 'device_name': 'H100', 'trained_on': 'cuda', 'training_precision': 'bf16',\n"
    "                    'trained_by': 'H100'}\n"
    "                   for a in arch_list for b in arch_list])\n"
    "cells = transfer_cells(df)\n")


def _quick_set_up_on_stand_ins(kernel: _Kernel, stem: str, stand_ins: str) -> list[str]:
    """As :func:`_set_up_on_stand_ins`, on the quick profile (on the CPU, as meant: no GPU warning)."""
    cells = _code_cells(stem)
    kernel.ok(cells[0] + '\nprofile = "quick:device=cpu"')  # as papermill puts -p profile after the parameters
    kernel.ok(cells[1])
    kernel.ok("from types import SimpleNamespace as _NS\n" + stand_ins)
    return cells


def test_transferability_heat_maps_of_the_full_grid_keep_their_labels_apart(kernel):
    """Fig. 6 on the quick and paper profiles' grid (all four architectures, smoke runs two): seaborn stood the
    surrogates' names on end, and in the 4-inch-high panels "resnet34" ran into "resnet18" and "vgg16" beside it
    (seen in a quick run on the CPU). Run on stand-in cells at such values (the cell's own code after the real
    parameters and set-up cells)."""
    cells = _quick_set_up_on_stand_ins(kernel, "06_transferability", _TRANSFER_STAND_INS)
    assert kernel.value("arch_list") == ["resnet18", "resnet34", "vgg16", "vgg19"]
    kernel.ok(_cell(cells, "fig6_transferability"))
    kernel.ok(_TEXTS)
    assert kernel.value("texts_running_together()") == []
    assert kernel.value("[[t.get_text() for t in a.get_yticklabels()] for a in fig.axes]") == [
        ["resnet18", "resnet34", "vgg16", "vgg19"]] * 4


def test_transferability_cells_show_each_value_with_its_own_digits(kernel):
    """Notebook 06's per-cell table showed each mean with six decimals (0.950000 beside 0.123456). Run on stand-in
    draws (the cell's own code after the real parameters and set-up cells)."""
    cells = _quick_set_up_on_stand_ins(kernel, "06_transferability", _TRANSFER_STAND_INS
                                       + "df.loc[0, 'WSR'] = 0.123456\ncells = transfer_cells(df)\n")
    kernel.ok(_cell(cells, "fig6_transferability"))
    shown = kernel.value("_.to_dict('list')")  # what the cell showed: IPython's last result
    assert shown["WSR"][:2] == ["0.123", "0.95"] and shown["BA_benign"][0] == "0.91", shown
    assert shown["learnt"][0] == 1 and shown["n_draws"][0] == 1, shown


def test_subset_attack_codec_comparison_shows_each_value_with_its_own_digits(kernel):
    """Notebook 09's codec comparison wrote the leak ratios in one format: the baseline's rho 0 as 0.00000 beside
    the erasure code's 0.16129. Its own cells, smoke profile."""
    cells = _code_cells("09_amuse_subset_attack")
    for cell in cells[:cells.index(_cell(cells, '"codecs_bits_vs_leak_ratio"')) + 1]:
        kernel.ok(cell)
    shown = kernel.value("_.set_index('codec').to_dict()")
    assert shown["asymptotic_leak_ratio"] == {"baseline": "0", "amuse": "0.8", "erasure": "0.161"}, shown
    assert shown["bits_per_image"] == {"baseline": 300, "amuse": 63, "erasure": 55}, shown
    assert all(isinstance(v, str) for v in shown["min_share_recovered_ideal"].values()), shown


# notebook 05's and 06's reading cells end in display(Markdown(...)): kept here as the text shown
_SHOWN = "_shown = []\ndisplay = lambda obj: _shown.append(getattr(obj, 'data', obj))\n"


@pytest.mark.parametrize("stem, stand_ins, marker", [
    ("05_removal_attacks", _REMOVAL_STAND_INS, "removal_claims(ft, pr, floor)"),
    ("06_transferability", _TRANSFER_STAND_INS, "every = bool("),
])
def test_removal_and_transferability_readings_call_only_smoke_numbers_meaningless(kernel, stem, stand_ins, marker):
    """The readings of 05 and 06 ended "..., quick profile: smoke numbers are meaningless by design." on every
    profile (seen in quick runs on the CPU): on quick or paper that calls the run's own numbers smoke. Run on
    stand-ins (the cell's own code after the real parameters and set-up cells), then again as smoke."""
    cells = _quick_set_up_on_stand_ins(kernel, stem, stand_ins + _SHOWN)
    kernel.ok(_cell(cells, marker))
    last = kernel.value("_shown[-1].splitlines()[-1]")
    assert last == "* Measured on cifar10-subset (subset), quick:device=cpu profile.", last
    kernel.ok('profile, cfg = "smoke", get_profile("smoke")')
    kernel.ok(_cell(cells, marker))
    assert kernel.value("_shown[-1].splitlines()[-1]") == ("* Measured on cifar10-subset (subset), smoke profile: "
                                                           "smoke numbers are meaningless by design.")


def test_ml_task_accuracy_figure_names_its_y_axis_and_ticks_whole_epochs(kernel):
    """Notebook 10's test_accuracy figure read "test_acc" (the column's name) on its y axis, and at the smoke profile
    (two epochs) its x axis ticked epochs 1.2, 1.4, ... that do not exist (learning_curve had the same, fixed).
    Run on stand-in training curves (the cell's own code after the real parameters and set-up cells)."""
    cells = _set_up_on_stand_ins(
        kernel, "10_amuse_ml_task",
        "ds = _NS(name='cifar10-subset')\n"
        "fig_context = {'profile': profile, 'device': 'cpu', 'dataset': 'cifar10-subset', 'is_subset': True}\n"
        "histories = [pd.DataFrame({'epoch': [1, 2], 'test_acc': [0.2 + i / 20, 0.3 + i / 20]}).assign(set=name)\n"
        "             for i, name in enumerate(['clean', 'clean_resampled', 'baseline', 'amuse'])]")
    kernel.ok(_cell(cells, "\"test_accuracy\""))
    kernel.ok("_ax = g.ax; g.figure.canvas.draw()")
    assert kernel.value("_ax.get_ylabel()") == "test accuracy"
    title = kernel.value("g.figure._suptitle.get_text()")  # the smoke profile's 2 models per set: their mean
    assert title.startswith("resnet18 on cifar10-subset (subset) (smoke") and "mean of 2 training seeds" in title
    assert kernel.value("[float(t) for t in _ax.get_xticks() if _ax.get_xlim()[0] <= t <= _ax.get_xlim()[1]]") == [
        1.0, 2.0]


def test_generator_notebook_without_ipywidgets_shows_one_sample_and_still_writes_its_record(kernel):
    """ipywidgets only drives notebook 01's slider, yet without it (a kernel environment it was not installed in;
    docs/measured-h100.md) the slider cell's import stopped Run All there, before the quality table and the record.
    The cell now draws the first sample and says how to draw others; the slider's callback draws sample i clean,
    watermarked (G.mark) and its residual (_sample_figure(i), which _show(i) shows)."""
    kernel.ok("import sys; sys.modules['ipywidgets'] = None  # as if it were not installed")
    outs = [kernel.run(cell) for cell in _code_cells("01_train_generator")]
    assert [o["error"] for o in outs] == [None] * len(outs)
    assert any("ipywidgets is not installed" in o["out"] for o in outs)
    kernel.ok("from dovlib.report import load_records")
    assert kernel.value("[r['params']['arch'] for r in load_records(NOTEBOOK)]") == ["resnet18"]  # the record
    assert any(["image/png", "text/plain"] in o["shown"] for o in outs if "ipywidgets is not installed" in o["out"])
    kernel.ok(_DRAWN)
    for i in (0, 5, "len(ds.x_test) - 1"):
        n, diffs = kernel.value(f"drawn({i})")
        assert n == 3 and max(diffs[:2]) == 0 and diffs[2] <= 1 / 255  # the residual is shown as uint8


def test_generator_loss_figure_names_the_surrogate_and_loss_weights_it_trained_with(kernel):
    """Notebook 01's loss figure was titled with the profile, data, eps and perceptual measure only: a generator
    trained against a narrower surrogate (-p surrogate_width 4) or with a loss switched off (-p l1 0) was titled as
    the default one. Run on a stand-in training history (the cell's own code after the real parameters, as papermill
    gives them, and set-up cells)."""
    cells = _code_cells("01_train_generator")
    kernel.ok(cells[0] + "\nl1 = 0\nsurrogate_width = 4")  # as papermill puts -p after the parameters
    kernel.ok(cells[1])
    kernel.ok("from types import SimpleNamespace as _NS\n"
              "ds = _NS(name='cifar10-subset')\n"
              "context = {'profile': profile, 'device': 'cpu', 'device_name': 'CPU', 'perceptual': perceptual}\n"
              "surrogate_width_used = 4\n"
              "G = _NS(meta={'history': [{'iter': i, 'L_target': 1.0, 'L_nontarget': 1.0, 'L_perceptual': 0.1,\n"
              "                            'asr_surrogate': 0.5} for i in (0, 10)]})")
    kernel.ok(_cell(cells, "\"generator_losses\""))
    title = " ".join(kernel.value("grid.figure.get_suptitle()").split())
    assert "resnet18 surrogate of width 4, loss weights l1 0, l2 1, l3 1)" in title, title


def test_verification_notebook_rerun_keeps_a_target_drawn_from_the_key_and_the_default_m(kernel):
    """target = "key" and m = None, then the set-up cell and the run cell twice (a lecturer's re-run). The run cell
    overwrote target with the class it drew (5) and the set-up cell m with the profile's verify_m (40): the second
    run read the class as a fixed target (gamma above its share: refused) and m as given (m_given 40, which the
    target code uses for every class). Run on stand-ins for the training (sscl.run_sscl and run_controls record
    what they were asked for), so the two runs can be compared."""
    cells = _code_cells("03_verification")
    kernel.ok(cells[0] + '\ntarget = "key"')
    kernel.ok(cells[1])
    kernel.ok("asked = []\n"
              "sscl.run_sscl = lambda ds, cfg, **kw: asked.append(('run_sscl', kw)) or kw\n"
              "sscl.run_controls = lambda run, **kw: asked.append(('run_controls', kw)) or pd.DataFrame(\n"
              "    columns=['p_b', 'p_w', 'p_decoy'])")
    kernel.ok(cells[2])
    for cell in cells[1:3]:  # again, in the same kernel
        again = kernel.run(cell)
        assert again["error"] is None, again["error"]
    assert kernel.value("target, m, n_models") == ("key", None, None)  # the parameters as given
    assert kernel.value("len(asked)") == 4
    assert kernel.value("asked[:2] == asked[2:]")  # the same class, gamma, m and models both times
    drawn, rate = kernel.value("asked[0][1]['target'], asked[0][1]['rate']")
    assert kernel.value("sscl.key_targets(key, ds.num_classes, 1)[0], target_from_key, m_given") == (drawn, True,
                                                                                                   None)
    assert rate < 0.1  # the drawn class is smaller than gamma: capped (a fixed target would be refused)


def test_a_relative_reports_or_runs_folder_is_said_to_be_read_from_the_notebooks_folder(tmp_path):
    """DOVLIB_REPORTS / DOVLIB_RUNS exported relative (as from the repository's folder before `jupyter lab`) are read
    by the kernel from its working folder, notebooks/: the tables, figures, records and models went to another
    folder than meant, silently. start_notebook (every notebook's set-up) now warns, naming the folder used; an
    absolute path (what dovlib.reproduce passes its kernels) is not warned about."""
    notebooks = REPO_ROOT / "notebooks"
    rel = {name: os.path.relpath(tmp_path / folder, notebooks)  # relative from notebooks/, so tmp_path gets the files
           for name, folder in (("DOVLIB_REPORTS", "my-reports"), ("DOVLIB_RUNS", "my-runs"))}
    k = _Kernel(**rel)
    try:
        out = k.ok("from dovlib.report import run_dir, start_notebook, write_record\n"
                   "start_notebook('smoke', 0, 'cpu')")
        flat = " ".join(out.split())
        for name, folder in (("DOVLIB_REPORTS", "my-reports"), ("DOVLIB_RUNS", "my-runs")):
            assert f"{name}={rel[name]!r} is relative: read from the working folder {notebooks}" in flat, out
            assert str(tmp_path / folder) in flat, out  # where the results go, resolved
        k.ok("write_record('00_quickstart', {'profile': 'smoke'}, {'acc': 1.0}); run_dir('00_quickstart', {})")
        assert (tmp_path / "my-reports" / "00_quickstart" / "metrics.json").is_file()
        assert list((tmp_path / "my-runs" / "00_quickstart").iterdir())
    finally:
        k.close()
    k = _Kernel(**{name: str(tmp_path / name) for name in rel})
    try:
        assert "is relative" not in k.ok("from dovlib.report import start_notebook\nstart_notebook('smoke', 0, 'cpu')")
    finally:
        k.close()


def test_generator_notebook_slider_shows_each_sample_and_leaves_no_figure_open(kernel):
    """Notebook 01's slider drew each sample with plt.show(): under MPLBACKEND=Agg (nbval, batch runs, a kernel
    started with it) that shows nothing, so the slider's first state and every move stayed empty, and each left its
    figure open (one more per move). Each sample is now shown as a PNG and its figure closed, under any backend. On
    stand-ins for the trained generator (a mark that adds 3 grey levels) and the data."""
    cells = _set_up_on_stand_ins(kernel, "01_train_generator",
                                 "ds = _NS(x_test=torch.randint(0, 250, (5, 3, 32, 32), dtype=torch.uint8))\n"
                                 "G = _NS(mark=lambda x: x + 3)\n"
                                 "plt.close('all')")
    slider = kernel.run(_cell(cells, "widgets.interact("))
    assert slider["error"] is None, slider["error"]
    assert ["image/png", "text/plain"] in slider["shown"]  # sample 0, in the slider's output
    assert kernel.value("plt.get_fignums()") == []
    moved = kernel.run("_show.widget.children[0].value = 4")  # what moving the slider does in the kernel
    assert moved["error"] is None, moved["error"]
    assert ["image/png", "text/plain"] in moved["shown"] and kernel.value("plt.get_fignums()") == []
    # what is shown: sample i clean, watermarked and its amplified residual, side by side
    kernel.ok(_DRAWN)
    n, diffs = kernel.value("drawn(4)")
    assert n == 3 and max(diffs[:2]) == 0 and diffs[2] <= 1 / 255  # the residual is shown as uint8


# The one way a later cell may bind a parameter's name again: ``name = checker(..., name, ...)``, a check that returns
# the value normalised ("8/255" -> 0.0314, "3" -> 3) and accepts its own result unchanged, so a re-run of the cell
# checks the same value again. Each is shown to be so below: (checker, arguments with VALUE where the value goes,
# a value as a user or papermill gives it).
_VALUE = object()
_CHECKERS = {
    "check_int": ("dovlib.params", ("n", _VALUE, 1), "3"),
    "parse_eps": ("dovlib.params", (_VALUE,), "8/255"),
    "parse_rate": ("dovlib.params", (_VALUE,), "0.1"),
    "parse_fraction": ("dovlib.params", ("tau", _VALUE, 0, 1), "1/4"),
    "check_bool": ("dovlib.params", ("b", _VALUE), True),
    "check_key": ("dovlib.sscl", (_VALUE,), "20240607"),
    "check_redraw": ("dovlib.sscl", (_VALUE, 2), True),
    "check_code_draws": ("dovlib.sscl", (_VALUE, 2, 2), "2"),
    "check_train_batch": ("dovlib.models", ("batch", _VALUE, "resnet18", (3, 32, 32)), "8"),
}


@pytest.mark.parametrize("name", sorted(_CHECKERS))
def test_parameter_checkers_accept_their_own_result_unchanged(name):
    import importlib

    module, args, given = _CHECKERS[name]
    fn = getattr(importlib.import_module(module), name)

    def call(value):
        return fn(*[value if a is _VALUE else a for a in args])

    once = call(given)
    assert call(once) == once and type(call(once)) is type(once)
    assert once != given or isinstance(given, bool)  # the string was normalised: the check is not a no-op here


def test_parse_target_is_not_such_a_checker():
    """parse_target("key") is None, which parse_target refuses: a cell that wrote target = parse_target(target) could
    not run twice (notebook 03 did)."""
    from dovlib.params import parse_target

    assert parse_target("key") is None
    with pytest.raises(ValueError, match="target must be a class index"):
        parse_target(None)


def _parameter_rebindings(source: str, params: set[str]) -> list[tuple[int, str]]:
    """``(line, statement)`` for each binding at module level of a name in ``params`` that is not a check in place
    (``name = checker(..., name, ...)``, or such checks side by side in a tuple assignment). Bindings: assignments
    (plain, augmented, annotated, ``:=``), for/with/except targets, imports, def/class, del, and a function's
    ``global`` name; function bodies' own names are local and not looked at."""
    import ast

    def checked_in_place(target, value) -> bool:
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
            return all(checked_in_place(t, v) for t, v in zip(target.elts, value.elts))
        if not isinstance(target, ast.Name) or target.id not in params:
            return True  # binds no parameter (as far as this pair goes)
        if not isinstance(value, ast.Call):
            return False
        fn = value.func.attr if isinstance(value.func, ast.Attribute) else getattr(value.func, "id", None)
        args = list(value.args) + [k.value for k in value.keywords]
        return fn in _CHECKERS and any(isinstance(a, ast.Name) and a.id == target.id for a in args)

    def stored(node) -> set[str]:
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}

    def header(node):
        """The nodes of a statement outside its nested statements and function scopes (lambdas, defs, classes)."""
        todo = [v for f, v in ast.iter_fields(node) if f not in ("body", "orelse", "finalbody", "handlers", "cases")]
        while todo:
            item = todo.pop()
            if isinstance(item, list):
                todo += item
            elif isinstance(item, ast.AST) and not isinstance(item, (ast.Lambda, ast.FunctionDef, ast.ClassDef)):
                yield item
                todo += list(ast.iter_child_nodes(item))

    found = []

    def flag(node, names):
        if names & params:
            found.append((node.lineno, ast.get_source_segment(source, node).splitlines()[0]))

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                flag(node, {node.name})
                flag(node, {n for g in ast.walk(node) if isinstance(g, ast.Global) for n in g.names})
                continue
            if isinstance(node, ast.Assign):
                if not all(checked_in_place(t, node.value) for t in node.targets):
                    flag(node, set().union(*map(stored, node.targets)))
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.Delete)):
                flag(node, stored(node))
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                flag(node, stored(node.target))
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                flag(node, set().union(set(), *(stored(i.optional_vars) for i in node.items if i.optional_vars)))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                flag(node, {(a.asname or a.name).split(".")[0] for a in node.names})
            elif isinstance(node, ast.Try):
                for h in node.handlers:
                    if h.name:
                        flag(h, {h.name})
            flag(node, {n.target.id for n in header(node) if isinstance(n, ast.NamedExpr)})
            for field in ("body", "orelse", "finalbody"):
                visit(getattr(node, field, []))
            for h in getattr(node, "handlers", []):
                visit(h.body)
            for case in getattr(node, "cases", []):
                flag(case.pattern, {getattr(n, "name", None) or getattr(n, "rest", None)
                                    for n in ast.walk(case.pattern)})
                visit(case.body)

    visit(ast.parse(source).body)
    return found


def _python(cell: str) -> str:
    """A code cell's Python: IPython's magics and shell escapes (``%matplotlib``, ``!pip``) made ``pass``."""
    return "\n".join(line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
                     for line in cell.splitlines())


@pytest.mark.parametrize("stem", sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")))
def test_no_cell_binds_a_parameter_name_again_except_to_check_it(stem):
    """A lecturer re-runs cells: a later cell that binds a parameter's name to a value it resolved (a default filled
    in, a class drawn from the key, the count used) makes the next run of the cells read that value as if the user had
    given it (notebook 03: target "key" became the class drawn, 5, and the re-run refused gamma for it as a fixed
    target; m None became 40, and the target code then took m as given). Resolved values get names of their own
    (m_used, target_class, owner_alpha); the parameter's name may only be checked in place."""
    import ast

    nb = jupytext.read(REPO_ROOT / "notebooks" / f"{stem}.py")
    code = [c for c in nb.cells if c.cell_type == "code"]
    [first] = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    params = {n.id for n in ast.walk(ast.parse(code[first].source)) if isinstance(n, ast.Name)
              and isinstance(n.ctx, ast.Store)}
    assert params, "no names in the parameters cell"
    found = [f"code cell {i}, line {line}: {text}" for i, c in enumerate(code[first + 1:], first + 1)
             for line, text in _parameter_rebindings(_python(c.source), params)]
    assert not found, f"{stem} binds parameters again:\n" + "\n".join(found)


@pytest.mark.parametrize("stem", sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")))
def test_no_cell_shows_what_a_report_function_returns(stem):
    """dovlib.report's functions return bookkeeping (save_fig the files' paths, save_table one path, start_notebook
    the device, write_record the record): a cell ending in a bare call to one showed it as its result, e.g.
    `[PosixPath('.../learning_curve.png'), PosixPath('.../learning_curve.svg')]` under a figure, or
    `device(type='cpu')` under notebook 07's set-up. Such a last line ends with `;` (or assigns the value)."""
    import ast

    import dovlib.report

    report = {name for name, obj in vars(dovlib.report).items() if callable(obj)
              and getattr(obj, "__module__", None) == "dovlib.report"}
    found = []
    for i, cell in enumerate(_code_cells(stem)):
        src = _python(cell)
        body = ast.parse(src).body
        last = body[-1] if body else None
        if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call):
            fn = last.value.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            if name in report and not src.rstrip().endswith(";"):
                found.append(f"code cell {i}: {ast.get_source_segment(src, last).splitlines()[0]}")
    assert not found, f"{stem} shows a report function's value:\n" + "\n".join(found)


@pytest.mark.parametrize("stem", sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")))
def test_no_cell_prints_a_raw_dict(stem):
    """Notebooks 00-03 ended by printing their record as a dict ({'profile': 'smoke', ..., 'is_subset': True} and
    full-precision metrics): a record's line is dovlib.report.record_summary's; a dict shows best as a table."""
    import ast

    found = []
    for i, cell in enumerate(_code_cells(stem)):
        src = _python(cell)
        for node in ast.walk(ast.parse(src)):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"
                    and any(isinstance(a, (ast.Dict, ast.DictComp)) for a in node.args)):
                found.append(f"code cell {i}: {ast.get_source_segment(src, node).splitlines()[0]}")
    assert not found, f"{stem} prints a dict:\n" + "\n".join(found)


@pytest.mark.parametrize("dataset, named", [("skimage-photos", "skimage-photos (full)"),
                                            ("cifar10-subset", "cifar10-subset (subset)")])
def test_message_length_figure_titles_name_the_images_and_whether_they_are_a_subset(kernel, dataset, named):
    """Notebook 07's tables were captioned with the image pool (and the report index labelled them subset or full),
    its figures not: accuracy_vs_length.png of a cifar10-subset run read like one on full data, and the examples
    figure had no title at all. Run on stand-in marks and results (the cells' own code after the real parameters,
    set-up and images cells), for a full pool and a subset."""
    cells = _code_cells("07_amuse_message_length")
    kernel.ok(cells[0] + f"\ndataset = {dataset!r}")  # as papermill puts -p after the parameters
    kernel.ok(cells[1])
    kernel.ok(_cell(cells, "images = sample_images("))
    kernel.ok("import numpy as np\n"
              "marked32 = images\n"
              "_rows = [dict(L=L, scheme=s, sub_message_bits=L // 2, attack=a, family=f, psnr=40.0, sub_bit_acc=0.9,\n"
              "              bit_acc=0.9, word_acc=0.5, failed=0.0)\n"
              "         for L in lengths for s in ('baseline', 'amuse')\n"
              "         for a, f in (('none', 'none'), ('jpeg_50', 'jpeg'), ('blur_3', 'blur'))]\n"
              "results = pd.DataFrame(_rows)\n"
              "results['attacked'] = np.where(results['attack'] == 'none', 'no attack', 'attacked (mean)')")
    titles = []
    for marker, figure in (("image_grid(", "fig"), ("summary = (results", None),
                           ('save_fig(g.figure, "accuracy_vs_length"', "g"), ("per attack family of the", "g")):
        kernel.ok(_cell(cells, marker))
        if figure:
            titles.append(" ".join(kernel.value(f"{figure}.figure.get_suptitle()").split()))
    assert len(titles) == 3
    for title in titles:
        assert f"images from {named}" in title, title
    assert "6 of 40 images" in titles[0], titles[0]


# defines legend_over_anything() in a kernel whose ``fig`` is drawn: for each of the figure's legends (its own and its
# axes'), the texts (titles, the suptitle, axis and tick labels) and the plotted lines, markers and bars it overlaps
_LEGEND_COVERS = (
    "import numpy as np\n"
    "def legend_over_anything():\n"
    "    r = fig.canvas.get_renderer(); fig.draw(r)\n"
    "    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend() is not None]\n"
    "    texts = [t for a in fig.axes for t in (a.title, a.xaxis.label, a.yaxis.label, *a.get_xticklabels(),\n"
    "                                           *a.get_yticklabels())] + list(fig.texts)\n"
    "    texts = [t for t in texts if t.get_visible() and t.get_text().strip()]\n"
    "    data = [d for a in fig.axes for d in [*a.lines, *a.collections, *a.patches]\n"
    "            if np.isfinite(d.get_window_extent(r).bounds).all()]\n"
    "    return len(legends), [[t.get_text() for t in texts if leg.get_window_extent(r).overlaps(\n"
    "        t.get_window_extent(r))] + [d.get_label() for d in data if leg.get_window_extent(r).overlaps(\n"
    "        d.get_window_extent(r))] for leg in legends]")


@pytest.mark.parametrize("method", ["ideal", "simulated"])
def test_subset_attack_legend_covers_no_title_text_or_curve(kernel, method):
    """Notebook 09's leaked-share figure kept seaborn's legend at the figure's right edge: in the single-column figure
    (one extraction, e.g. -p method dwtDct) its "method" title ran into the second panel's title ("... | extraction
    = dwtDct"). One legend now lies beside the panels, over nothing. Run with simulated extraction (one column:
    ideal; two: ideal and bitflip) and 3 shares, the cells' own code."""
    cells = _code_cells("09_amuse_subset_attack")
    decode = _cell(cells, "leak_subset_accuracy(")
    for cell in [cells[0] + f"\nmethod = {method!r}\nshares = [0.1, 0.5, 1.0]"] + cells[1:cells.index(decode) + 1]:
        kernel.ok(cell)
    kernel.ok("fig = g.figure\n" + _LEGEND_COVERS)
    n, covered = kernel.value("legend_over_anything()")
    assert n == 1 and covered == [[]], covered
    assert kernel.value("[t.get_text() for t in fig.legends[0].get_texts()]") == ["baseline", "amuse", "erasure"]
    assert kernel.value("fig.legends[0].get_title().get_text()") == "method"


@pytest.mark.parametrize("n_images, flip, why", [
    (20, 0.2, "Reed-Solomon could not correct every symbol row from the {got} distinct fragments received: too many "
              "bit errors (any k = {k} of its n = {n} distinct fragments rebuild the message"),
    (3, 0.0, "needs {k} distinct fragments of {n}, received {got}"),
])
def test_subset_attack_reading_says_why_the_erasure_code_rebuilt_nothing(kernel, n_images, flip, why):
    """Notebook 09 with real extraction on few images (-p method dwtDct on the paper profile's 20 images) read
    "300 of 300 bits wrong for erasure" and no more: the Reed-Solomon decode had failed (too many bit errors in the
    fragments received, or fewer distinct fragments than k) and bits it cannot rebuild count as wrong by design. The
    reading now says why, from what decode reports. Run on stand-in extractions (the ideal sub-messages, with bits
    flipped at ``flip``) in place of the embedding, the other cells' own code."""
    cells = _code_cells("09_amuse_subset_attack")
    extraction, reading_cell = _cell(cells, "embed_dataset(wm"), _cell(cells, "def shown(share)")
    kernel.ok(cells[0] + f"\nmethod = 'dwtDct'\nn_images = {n_images}\nshares = [0.5, 1.0]")
    for cell in cells[1:cells.index(extraction)]:
        kernel.ok(cell)
    kernel.ok("from types import SimpleNamespace as _NS\n"
              "pool = _NS(name='skimage-photos', is_subset=False)\n"
              "extracted, quality, sub_bit_acc = {}, {}, {}\n"
              "for codec in codecs:\n"
              "    extracted[codec.name, 'ideal'] = codec.encode(message, n_images_used)\n"
              f"    extracted[codec.name, method] = flip_bits(extracted[codec.name, 'ideal'], {flip}, seed=1)\n"
              "cell_seconds['extraction'] = 0.0")
    for cell in cells[cells.index(extraction) + 1:cells.index(reading_cell) + 1]:
        kernel.ok(cell)
    assert kernel.value("all_wrong['erasure']") > 0  # the case: the erasure code rebuilt (some) bits wrong
    # the distinct fragments the stand-in extraction holds (index bits < n), the bits decode_partial leaves unknown
    got, unknown = kernel.value(
        "len({i for i in (int(''.join(map(str, r[erasure.fragment_bits:])), 2) for r in extracted['erasure', method])"
        " if i < erasure.n}), int((~erasure.decode_partial(extracted['erasure', method]).known).sum())")
    k, n = kernel.value("erasure.k, erasure.n")
    assert unknown > 0 and (got < k) == (n_images < k), (got, unknown, k)
    text = " ".join(kernel.value("'\\n'.join(reading)").split())
    assert f"erasure could not rebuild {unknown} of the 300 bits from all {n_images} images: " in text, text
    assert why.format(got=got, k=k, n=n) in text, text
    assert "Bits that are not rebuilt count as wrong (never guessed)." in text
    if not flip:  # error-free: AMUSE's chunks no image holds are not rebuilt, not read wrong by the vote
        assert "amuse could not rebuild" in text and "gets wrong" not in text, text


def test_quickstart_learning_curve_title_says_whether_its_data_is_a_subset(kernel):
    """Notebook 00's title named the dataset only ("resnet18 on mnist-offline"): mnist-offline is 17,435 of MNIST's
    60,000 training images, and results on a subset say so in every report, figures included."""
    cells = _set_up_on_stand_ins(
        kernel, "00_quickstart",
        "context = {'profile': profile, 'device': 'cpu', 'dataset': 'mnist-offline', 'is_subset': True}\n"
        "result = _NS(history=[{'epoch': e, 'train_loss': 2.0 / e, 'test_acc': 0.3 * e} for e in (1, 2)])")
    kernel.ok(_cell(cells, "learning_curve(result.history"))
    title = kernel.value("fig._suptitle.get_text().replace(chr(10), ' ')")
    assert title.startswith("resnet18 on mnist-offline (subset) (smoke profile)"), title


def test_subset_attack_extraction_says_no_image_was_marked_when_simulated(kernel):
    """Notebook 09's simulated extraction printed "PSNR (dB): {}" (an empty dict) and bit accuracies to 16 digits;
    it now says no image was marked and rounds the accuracies."""
    cells = _code_cells("09_amuse_subset_attack")
    extraction = _cell(cells, "embed_dataset(wm")
    for cell in cells[:cells.index(extraction)]:
        kernel.ok(cell)
    out = kernel.ok(extraction)
    assert "PSNR (dB), marked images against their covers: none (no image marked: simulated)" in out, out
    assert "{" not in out and "amuse/bitflip 0." in out, out
    assert all(len(v.split(".")[-1]) == 4 for v in re.findall(r"/\w+ (\d\.\d+)", out)), out


def test_plug_and_play_printed_table_1_shows_no_nan_in_its_empty_columns(kernel):
    """Notebook 08 printed Table 1's comparison with 'NaN' in every empty paper and diff cell (the CSV leaves them
    empty): the printed table now shows '-' there."""
    cells = _code_cells("08_amuse_plug_and_play")
    compare = _cell(cells, "cmp1 = pd.DataFrame(rows)")
    kernel.ok(cells[0] + '\ntables = "1"')
    for cell in cells[1:cells.index(compare)]:
        kernel.ok(cell)
    out = kernel.ok(compare)
    assert "NaN" not in out and "nan" not in out, out
    assert kernel.value("int(cmp1['paper'].isna().sum())") == kernel.value("len(cmp1)")  # the cells were empty
    assert re.search(r"BA\s+-\s+0\.8933", out), out  # paper empty, the authors' repo value beside it
