"""Plot helpers shared by the notebooks: one seaborn style, image grids, learning curves, tables shown readably."""

from __future__ import annotations

import re

import matplotlib
import matplotlib.ticker

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["set_style", "image_grid", "show_images", "learning_curve", "to_numpy_images", "wrap_text", "set_title",
           "rotate_xticklabels", "figure_legend", "epoch_ticks", "readable"]


def set_style() -> None:
    """The project's one plotting style (seaborn 'whitegrid', notebook context, colour-blind palette)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "axes.titlesize": "medium"})


def _cut(text: str, after: str) -> list[str]:
    """``text`` cut after each match of the regex ``after`` that lies outside its mathtext (``$...$``, which
    matplotlib reads line by line: a cut inside one leaves two lines of raw TeX)."""
    math = [m.span() for m in re.finditer(r"(?<!\\)\$.*?(?<!\\)\$", text)]
    cuts = [m.end() for m in re.finditer(after, text) if not any(a < m.end() < b for a, b in math)]
    return [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)]) if i < j] or [text]


def wrap_text(text: str, width: float, fontsize="medium", *, fontproperties=None) -> str:
    """``text`` broken into lines no wider than ``width`` inches at ``fontsize`` (points or a name such as
    ``"small"``), in the current font, or in ``fontproperties`` (a Text's own, its weight and family too) where given.
    Lines break after ',' or ';' (so a long profile string, ``quick:device=cpu,epochs=10,...``, breaks between its
    overrides; never inside a number such as ``50,000``), or after a space within a part too wide for one line; a
    piece with none of them stays whole, as does mathtext (``$\\tau = 0.25$``), which is measured as drawn. Line
    breaks already in ``text`` are kept."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    prop = fontproperties if fontproperties is not None else FontProperties(size=fontsize)
    # hinting makes a text's width depend a little on the dpi: it must fit on screen and in the saved file
    dpis = {float(matplotlib.rcParams["figure.dpi"]), 150.0}  # 150: save_fig's
    if matplotlib.rcParams["savefig.dpi"] != "figure":
        dpis.add(float(matplotlib.rcParams["savefig.dpi"]))
    renderers = [(RendererAgg(1, 1, dpi), dpi) for dpi in sorted(dpis)]

    def inches(s: str) -> float:
        dollars = len(re.findall(r"(?<!\\)\$", s))
        ismath = dollars > 0 and dollars % 2 == 0  # as matplotlib decides it for a line
        return max(r.get_text_width_height_descent(s, prop, ismath=ismath)[0] / dpi for r, dpi in renderers)

    lines = []
    for paragraph in text.split("\n"):
        line, pieces = "", []
        for part in _cut(paragraph, r"[,;](?!(?<=\d,)\d)"):  # "tau 0.25," stays on one line where it fits
            pieces += [part] if inches(part.strip()) <= width else _cut(part, " ")
        for piece in pieces:
            if line.strip() and inches((line + piece).rstrip()) > width:
                lines.append(line.rstrip())
                line = piece.lstrip()
            else:
                line += piece
        lines.append(line.rstrip())
    return "\n".join(lines)


def set_title(target, text: str, fontsize="medium", **kwargs):
    """A title that fits its figure: on an Axes its title, wrapped (:func:`wrap_text`, in the title's own font) to
    the axes' width; on a Figure (or a seaborn FacetGrid) a suptitle wrapped to the figure's width, above everything
    the figure already draws, so a long title (one naming a profile such as ``quick:device=cpu,epochs=10,width=16``)
    neither widens the saved image around a small plot nor runs down into the panel titles. Either lies inside the
    figure: where the figure has no room above its panels for it, the figure grows taller at its top by the room the
    title needs, the panels keeping their size (so ``plt.show()`` and ``savefig`` without ``bbox_inches="tight"``
    show the whole title; the tight bbox of :func:`dovlib.report.save_fig` comes out as before). A figure with a
    layout engine (``layout="constrained"``) makes that room itself. ``y`` in ``kwargs`` places a suptitle where it
    says, and the caller lays the figure out (e.g. ``tight_layout`` after it). Call it once the layout is done (after
    ``tight_layout``; seaborn's figure-level plots lay themselves out). Returns the Text."""
    from matplotlib.axes import Axes
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    fig = target.figure if isinstance(target, Axes) else getattr(target, "figure", target)
    engine = fig.get_layout_engine()
    laid_out = engine is not None and not isinstance(engine, PlaceHolderLayoutEngine)  # room made at each draw
    if isinstance(target, Axes):
        width = target.get_position().width * fig.get_figwidth()
        title = target.set_title(text, fontsize=fontsize, **kwargs)
    else:
        width = 0.98 * fig.get_figwidth()
        # an engine places a suptitle of no given y (constrained layout makes room only for that one)
        at_top = {} if laid_out or "y" in kwargs else {"y": 1 - _TITLE_PAD / fig.get_figheight(), "va": "top"}
        title = fig.suptitle(text, fontsize=fontsize, **{**at_top, **kwargs})
    title.set_text(wrap_text(text, width, fontproperties=title.get_fontproperties()))
    if not laid_out and (isinstance(target, Axes) or "y" not in kwargs):
        _room_above(fig, title, suptitle=not isinstance(target, Axes))
    return title


_TITLE_PAD = 4 / 72  # inches between a title and the figure's top edge, and between a suptitle and the panels


def _room_above(fig, title, suptitle: bool = False) -> None:
    """Grow ``fig`` at its top, where ``title`` needs room to lie inside it: an Axes' title by as much as it pokes
    out above the top edge; a suptitle (set at the top edge, hanging down) so that it clears everything else the
    figure draws. Everything else keeps its size and its distance from the bottom edge."""
    renderer = fig.canvas.get_renderer()
    height = fig.get_figheight()
    if suptitle:
        title.set_visible(False)  # what the figure draws without it (an earlier suptitle is this same Text)
        try:
            top = fig.get_tightbbox(renderer).y1  # inches from the bottom edge
        finally:
            title.set_visible(True)
        needed = top + 2 * _TITLE_PAD + title.get_window_extent(renderer).height / fig.dpi
    else:
        fig.draw_without_rendering()  # the Axes' title takes its place above its axes' tick labels at a draw
        needed = title.get_window_extent(renderer).y1 / fig.dpi + _TITLE_PAD
    if needed > height:
        _grow_top(fig, needed - height, keep=title)
    if suptitle:
        title.set_y(1 - _TITLE_PAD / fig.get_figheight())


def _grow_top(fig, inches: float, keep=None) -> None:
    """Make ``fig`` ``inches`` taller at its top: its axes, figure legends and figure texts (all but ``keep``) keep
    their size and place, measured in inches from the bottom edge."""
    from matplotlib.transforms import Bbox

    dpi = fig.dpi
    width, height = fig.get_size_inches()
    scale = height / (height + inches)
    anchors = [(legend, Bbox(legend.get_bbox_to_anchor().get_points() / dpi)) for legend in fig.legends]
    for ax in fig.axes:
        in_layout = ax.get_in_layout()  # set_position takes an axes out of tight_layout: not ours to change
        for original in (True, False):
            pos = ax.get_position(original=original)
            ax.set_position([pos.x0, pos.y0 * scale, pos.width, pos.height * scale],
                            which="original" if original else "active")
        ax.set_in_layout(in_layout)
    for text in fig.texts:
        if text is not keep and text.get_transform() == fig.transFigure:
            x, y = text.get_position()
            text.set_position((x, y * scale))
    pars = fig.subplotpars  # a later subplots_adjust (of one side) keeps the panels where they now are
    pars.update(bottom=pars.bottom * scale, top=pars.top * scale)
    fig.set_size_inches(width, height + inches)
    for legend, box in anchors:  # in inches: where it was
        legend.set_bbox_to_anchor(Bbox(box.get_points() / [width, height + inches]), transform=fig.transFigure)


def rotate_xticklabels(ax, rotation: float = 45) -> None:
    """Slant the x tick labels of ``ax`` so that each ends at its own tick (right-aligned, rotated about that
    end): centred slanted labels sit half a label to the right, under the next bar."""
    for label in ax.get_xticklabels():
        label.set(rotation=rotation, ha="right", rotation_mode="anchor")


def epoch_ticks(*axes) -> None:
    """Tick whole numbers only on the x axis of each of ``axes`` (epochs): with two epochs (the smoke profile)
    matplotlib's default ticks read 1.2, 1.4, ..., epochs that do not exist."""
    for ax in axes:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))


def grid_axis(ax, values, grid, hint: str | None = None) -> None:
    """Span the x axis of ``ax`` over a study's ``grid`` (e.g. eps 1..10 /255 or gamma 1%..10%) as well as the
    ``values`` drawn in it, so that a panel holding one point (a run without a sweep) shows where that point lies
    on the grid; matplotlib's default axis around a single x spans +-4% of it (gamma 0.096 to 0.104), ticks that
    mean nothing. With fewer than two distinct finite values, ``hint`` (e.g. how to walk the grid) is written in
    the panel. Raises ValueError if ``grid`` is empty or not numbers."""
    try:
        grid = [float(g) for g in grid]
        values = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"grid_axis: grid and values must be numbers ({exc})") from None
    if not grid or not all(np.isfinite(grid)):
        raise ValueError(f"grid_axis: grid must hold at least one finite number; got {grid}")
    values = [v for v in values if np.isfinite(v)]
    low, high = min(grid + values), max(grid + values)
    pad = 0.05 * (high - low) if high > low else max(0.05 * abs(low), 0.5)
    ax.set_xlim(low - pad, high + pad)
    if hint and len(set(values)) < 2:
        ax.text(0.03, 0.5, wrap_text(hint, 0.55 * ax.get_position().width * ax.figure.get_figwidth(), "small"),
                transform=ax.transAxes, ha="left", va="center", fontsize="small", color="0.35")


def figure_legend(fig, axes=None, fontsize="small", **kwargs):
    """One legend for the whole figure, beside its panels on the right, in room the layout leaves for it, so it lies
    over no panel: a legend inside the axes covers the curves wherever they run (BA and WSR near 0.9 at the quick
    and paper profiles sit under an upper-right legend), and panels sharing their entries drew the same legend
    twice. It holds the labelled entries of ``axes`` (default: all of the figure's), each label once, in the order
    first met; their own legends are removed. It lays the figure out (``tight_layout``), so call it once the panels
    are drawn, before :func:`set_title`. ``kwargs`` go to ``Figure.legend`` (e.g. ``title``). Returns the Legend."""
    axes = list(fig.axes if axes is None else axes)
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not entries:
        raise ValueError("figure_legend needs at least one labelled line, marker or bar in the axes; got none")
    legend = fig.legend(list(entries.values()), list(entries), loc="center right", bbox_to_anchor=(1, 0.5),
                        fontsize=fontsize, **kwargs)
    width = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.bbox.width
    if width >= 0.6:
        raise ValueError(f"the legend would take {width:.0%} of the figure's width (at most 60%): widen the figure "
                         "or shorten its labels")
    fig.tight_layout(rect=(0, 0, 1 - width - 0.01, 1))  # the panels to its left
    return legend


def to_numpy_images(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) uint8 or [0,1] float (C = 1 grey or 3 RGB) -> (N, H, W, C) float in [0, 1] for imshow; floats
    outside [0, 1] are clipped."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor of shape (N, C, H, W); got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, C, H, W) with C = 1 (grey) or 3 (RGB) (one image: x[None]); "
                         f"got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():  # an int64 0-255 image would show white
        raise ValueError(f"images must be uint8 (0-255) or floats in [0, 1]; got dtype {x.dtype}")
    x = x.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def image_grid(rows: dict[str, torch.Tensor], ncols: int = 8, scale: float = 1.3):
    """A figure with one labelled row per entry of ``rows`` (name -> images (N, C, H, W)); ``ncols`` (>= 1) images
    per row, fewer where a row has fewer. A row's label runs along the row above its images and never shrinks them
    (laid out with a one-line stand-in of each label's height: a label wider than its first image used to squeeze
    every image of the grid to make room beside it)."""
    if not rows:
        raise ValueError("rows must name at least one batch of images (name -> (N, C, H, W)); got none")
    from .params import check_int

    ncols = check_int("ncols", ncols, 1)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(ncols * scale, len(rows) * scale), squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        arr = to_numpy_images(imgs[:ncols])
        for c in range(ncols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(arr):
                img = arr[c]
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                          vmin=0, vmax=1)
        axes[r, 0].set_title("Xg" + "\nXg" * str(name).count("\n"), loc="left", fontsize="small")  # its height only
    fig.tight_layout()
    for r, name in enumerate(rows):  # the labels themselves, once the images are placed
        axes[r, 0].set_title(name, loc="left", fontsize="small")
    return fig


def show_images(images: torch.Tensor, titles: list[str] | None = None, scale: float = 1.5):
    """One row of images (N >= 1) with optional titles, one per image."""
    arr = to_numpy_images(images)
    if len(arr) == 0:
        raise ValueError("show_images needs at least one image; got an empty batch")
    if titles is not None and len(titles) != len(arr):
        raise ValueError(f"titles must hold one title per image: {len(arr)}; got {len(titles)}")
    fig, axes = plt.subplots(1, len(arr), figsize=(len(arr) * scale, scale + 0.3), squeeze=False)
    for i, ax in enumerate(axes[0]):
        img = arr[i]
        gray = img.shape[-1] == 1
        ax.imshow(img[..., 0] if gray else img, cmap="gray" if gray else None, vmin=0, vmax=1)
        ax.axis("off")
        if titles:
            ax.set_title(titles[i], fontsize="small")
    fig.tight_layout()
    return fig


def learning_curve(history: list[dict], title: str = ""):
    """Loss and accuracy per epoch from a :class:`dovlib.train.TrainResult` history. The training accuracy is the
    running accuracy over the epoch's augmented batches in train mode (as ``fit`` logs it), not the final model's
    accuracy on the training set; the legend says so."""
    import pandas as pd
    import seaborn as sns

    df = pd.DataFrame(history)
    missing = [c for c in ("epoch", "train_loss") if c not in df]
    if len(df) == 0 or missing:
        raise ValueError(f"history must be a non-empty list of per-epoch dicts with 'epoch' and 'train_loss' "
                         f"(TrainResult.history); got {len(df)} rows" + (f" without {missing}" if len(df) else ""))
    acc_cols = [c for c in ("train_acc", "test_acc") if c in df]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    sns.lineplot(data=df, x="epoch", y="train_loss", ax=ax1, marker="o")
    ax1.set_ylabel("training loss")
    names = {"train_acc": "train (running, augmented batches)", "test_acc": "test"}
    long = df.melt(id_vars="epoch", value_vars=acc_cols, var_name="split", value_name="accuracy")
    long["split"] = long["split"].map(names)
    sns.lineplot(data=long, x="epoch", y="accuracy", hue="split", ax=ax2, marker="o")
    ax2.set_ylim(0, 1)
    epoch_ticks(ax1, ax2)
    if title:  # wrapped (a quick or paper profile string in it is long), inside the figure: tight_layout makes room
        set_title(fig, title, fontsize="large", y=0.98, va="top")
    fig.tight_layout()
    return fig


SWEEP_RATES = {"verified_rate": "paired t-test", "bounded_verified_rate": "betting test (bounded)"}  # column: test


def verification_sweep(sweep, x: str, mark: float, title: str = ""):
    """Share of models verified against ``x`` (``"tau"`` or ``"m"``: the output of :func:`dovlib.verify.tau_sweep`
    or :func:`dovlib.verify.m_sweep`), one line per scenario (colour and style, so overlapping lines stay visible),
    one panel per baseline; a dashed line at ``mark`` (the value the report's verdicts use). The y label says what
    was counted: models for tau, (model, query subset) tests for m (``m_sweep`` pools the subsets of each model's
    queries). With both tests' rates (``test="both"``: ``verified_rate`` and ``bounded_verified_rate``) one row of
    panels per test, each titled with its test, the t-test's first. Returns the FacetGrid."""
    import pandas as pd
    import seaborn as sns

    from .params import check_choice

    check_choice("x", x, ("tau", "m"))  # the y label below names what each counts
    rates = [c for c in SWEEP_RATES if c in sweep]
    if x not in sweep or not rates:
        raise ValueError(f"sweep must have columns {x!r} and 'verified_rate' or 'bounded_verified_rate' "
                         f"(verify.tau_sweep / m_sweep); got {list(sweep.columns)}")
    keys = [c for c in sweep.columns if c not in SWEEP_RATES]
    long = pd.concat([sweep[keys].assign(test=SWEEP_RATES[c], verified_rate=sweep[c].to_numpy()) for c in rates],
                     ignore_index=True)
    grid = sns.relplot(data=long, x=x, y="verified_rate", hue="scenario", style="scenario", col="baseline",
                       row="test" if len(rates) > 1 else None, kind="line", markers=True, height=3)
    for ax in grid.axes.flat:
        ax.axvline(mark, ls="--", c="k", lw=1)
        ax.set_ylim(-0.03, 1.03)  # rates: a sweep with no claim is drawn at 0 of 1, not on a +-0.04 axis
    if len(rates) > 1:  # the test on its own line: "test = ... | baseline = ..." overran the panel
        grid.set_titles("{row_name}\n{col_var} = {col_name}")
    elif rates[0] != "verified_rate":  # one test, not the paper's: the titles say which
        grid.set_titles("{col_var} = {col_name}, " + SWEEP_RATES[rates[0]])
    grid.set_ylabels("share of models\nverified" if x == "tau" else "share of (model, query\nsubset) tests verified")
    grid.tight_layout()  # room for the two-line titles: the lower row's sat on the upper row's x axis
    if title:
        set_title(grid, title, fontsize="small")
    return grid


def readable(df, digits: int = 3, na: str = "-"):
    """A copy of ``df`` for display: each float value written with ``digits`` significant digits on its own, NaN as
    ``na``, whole numbers in full; other columns as they are. pandas prints a float column in one format, so one tiny
    p-value beside a delta_p showed every value of the column in scientific notation (0.76 as 7.625539e-01). Save
    the frame itself (:func:`dovlib.report.save_table`): the CSV keeps every digit."""
    import pandas as pd

    from .params import check_int

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"readable needs a pandas DataFrame; got {type(df).__name__}")
    digits = check_int("digits", digits, 1)
    out = df.copy()
    for col in out.columns[[pd.api.types.is_float_dtype(t) for t in out.dtypes]]:
        out[col] = [na if pd.isna(v) else str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.{digits}g}"
                    for v in out[col]]  # whole numbers whole (a count in a float column: 1234, not 1.23e+03)
    return out
