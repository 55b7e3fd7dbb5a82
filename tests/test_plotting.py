"""dovlib.plotting: the figures the notebooks share."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from dovlib.plotting import image_grid, learning_curve, readable, show_images, verification_sweep


def test_verification_sweep_draws_one_panel_per_baseline_and_marks_the_value_used():
    sweep = pd.DataFrame({"baseline": ["clean"] * 4 + ["decoy"] * 4, "m": [10, 100] * 4,
                          "scenario": (["Malicious"] * 2 + ["Ind-W"] * 2) * 2,
                          "verified_rate": [0.5, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]})
    grid = verification_sweep(sweep, "m", 100, "title")
    assert len(grid.axes.flat) == 2
    ax = grid.axes.flat[0]
    assert any(list(line.get_xdata()) == [100, 100] for line in ax.get_lines())  # the dashed mark
    styles = {h.get_linestyle() for h in grid.legend.legend_handles}
    assert len(styles) == 2  # scenarios differ in style, not only colour
    assert ax.get_ylabel() == "share of (model, query\nsubset) tests verified"  # m_sweep pools the subsets
    assert ax.get_ylim() == (-0.03, 1.03)  # a rate's whole range, also when nothing is claimed
    tau = verification_sweep(sweep.rename(columns={"m": "tau"}), "tau", 0.25)
    assert tau.axes.flat[0].get_ylabel() == "share of models\nverified"
    with pytest.raises(ValueError, match="'tau'"):
        verification_sweep(sweep, "tau", 0.25)
    matplotlib.pyplot.close("all")


def test_image_grid_and_learning_curve_return_figures():
    rows = {"clean": torch.zeros(3, 3, 8, 8, dtype=torch.uint8),
            "marked": torch.full((3, 3, 8, 8), 255, dtype=torch.uint8)}
    fig = image_grid(rows, ncols=3)
    assert len(fig.axes) == 6
    assert [ax.get_title(loc="left") for ax in fig.axes[::3]] == ["clean", "marked"]  # one labelled row per entry
    assert (fig.axes[0].images[0].get_array() == 0).all() and (fig.axes[3].images[0].get_array() == 1).all()
    # a long label runs along its row: the images keep the size they have under a short one
    long = image_grid({"clean": rows["clean"], "residual x15.9 around grey (largest change 8/255)": rows["marked"]},
                      ncols=3)
    assert np.ravel([ax.get_position().bounds for ax in long.axes]) == pytest.approx(
        np.ravel([ax.get_position().bounds for ax in fig.axes]))
    assert long.axes[3].get_title(loc="left") == "residual x15.9 around grey (largest change 8/255)"
    short = image_grid({"two": rows["clean"][:2]}, ncols=3)  # a row with fewer images leaves the rest empty
    assert [len(ax.images) for ax in short.axes] == [1, 1, 0]
    fig = learning_curve([{"epoch": 1, "train_loss": 2.0, "train_acc": 0.2, "test_acc": 0.1},
                          {"epoch": 2, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.4}], "t")
    assert len(fig.axes) == 2 and fig.axes[1].get_ylim() == (0, 1)
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["train (running, augmented batches)",
                                                                             "test"]
    matplotlib.pyplot.close("all")


def test_image_helpers_refuse_bad_shapes_clearly():
    from dovlib.plotting import show_images, to_numpy_images

    for bad in (torch.zeros(3, 8, 8), torch.zeros(2, 4, 8, 8)):  # no batch axis; 4 channels
        with pytest.raises(ValueError, match=r"images must have shape \(N, C, H, W\) with C = 1 \(grey\) or 3"):
            to_numpy_images(bad)
    with pytest.raises(TypeError, match="torch.Tensor"):
        to_numpy_images(np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="uint8 .* or floats in \\[0, 1\\]; got dtype torch.int64"):
        to_numpy_images(torch.full((1, 3, 4, 4), 128))  # an int64 0-255 image showed white
    with pytest.raises(ValueError, match="one title per image: 2; got 1"):
        show_images(torch.zeros(2, 3, 4, 4), titles=["a"])
    with pytest.raises(ValueError, match="at least one image"):
        show_images(torch.zeros(0, 3, 4, 4))
    with pytest.raises(ValueError, match="rows must name at least one batch"):
        image_grid({})
    with pytest.raises(ValueError, match="ncols"):
        image_grid({"a": torch.zeros(2, 3, 4, 4)}, ncols=0)
    matplotlib.pyplot.close("all")


def test_to_numpy_images_and_show_images():
    from dovlib.plotting import set_style, show_images, to_numpy_images

    u8 = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(1, 3, 1, 1).expand(2, 3, 2, 2)
    arr = to_numpy_images(u8)
    assert arr.shape == (2, 2, 2, 3) and arr[0, 0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])
    assert to_numpy_images(torch.full((1, 1, 2, 2), 1.5)).max() == 1.0  # floats are clipped to [0, 1]
    set_style()
    assert matplotlib.rcParams["savefig.dpi"] == 150
    fig = show_images(torch.zeros(3, 1, 4, 4), titles=["a", "b", "c"])  # one grey-scale row
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    assert fig.axes[0].images[0].get_cmap().name == "gray"
    matplotlib.pyplot.close("all")


def test_learning_curve_and_verification_sweep_refuse_what_they_cannot_draw():
    with pytest.raises(ValueError, match=r"history must be a non-empty list of per-epoch dicts .*got 0 rows"):
        learning_curve([])
    with pytest.raises(ValueError, match=r"got 1 rows without \['train_loss'\]"):
        learning_curve([{"epoch": 1, "loss": 2.0}])
    sweep = pd.DataFrame({"alpha": [0.01], "verified_rate": [0.5], "scenario": ["Malicious"], "baseline": ["b"]})
    with pytest.raises(ValueError, match=r"x must be one of \['tau', 'm'\]; got 'alpha'"):
        verification_sweep(sweep, "alpha", 0.01)  # its y label would have said "(model, query subset) tests"


def test_plotted_values_are_the_histories_and_the_sweeps():
    """The lines carry the data they are labelled with: a learning_curve drawing train_acc as the test curve, or a
    verification_sweep plotting another column, would pass the label checks above."""
    hist = [{"epoch": 1, "train_loss": 2.0, "train_acc": 0.2, "test_acc": 0.1},
            {"epoch": 2, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.4},
            {"epoch": 3, "train_loss": 0.5, "train_acc": 0.7, "test_acc": 0.6}]
    fig = learning_curve(hist)
    loss = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) == 3]
    assert [list(ln.get_ydata()) for ln in loss] == [[2.0, 1.0, 0.5]]
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    curves = [list(ln.get_ydata()) for ln in fig.axes[1].get_lines() if len(ln.get_xdata()) == 3]
    by_label = dict(zip(legend, curves))
    assert by_label == {"train (running, augmented batches)": [0.2, 0.5, 0.7], "test": [0.1, 0.4, 0.6]}
    sweep = pd.DataFrame({"baseline": ["clean"] * 4, "tau": [0.1, 0.25] * 2,
                          "scenario": ["Malicious"] * 2 + ["Ind-W"] * 2, "verified_rate": [1.0, 0.8, 0.3, 0.0]})
    ax = verification_sweep(sweep, "tau", 0.25).axes.flat[0]
    data = sorted(list(ln.get_ydata()) for ln in ax.get_lines() if len(ln.get_xdata()) == 2
                  and list(ln.get_xdata()) == [0.1, 0.25])
    assert data == [[0.3, 0.0], [1.0, 0.8]]
    matplotlib.pyplot.close("all")


def test_to_numpy_images_keeps_height_and_width_apart_and_refuses_a_single_image():
    from dovlib.plotting import to_numpy_images

    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6) / 200
    arr = to_numpy_images(x)
    assert arr.shape == (2, 4, 6, 3) and arr[1, 3, 5, 2] == pytest.approx(float(x[1, 2, 3, 5]))
    with pytest.raises(ValueError, match=r"images must have shape \(N, C, H, W\)"):
        to_numpy_images(torch.zeros(3, 3, 8))  # one (C, H, W) image whose height happens to be 3


def test_images_are_drawn_on_a_fixed_zero_to_one_scale_grey_in_grey():
    from dovlib.plotting import show_images

    grey = torch.full((2, 1, 4, 4), 0.5)  # constant images: autoscaling would stretch them
    grid_im = image_grid({"grey": grey}, ncols=2).axes[0].images[0]
    assert grid_im.get_cmap().name == "gray" and grid_im.get_clim() == (0, 1)
    for im in (image_grid({"rgb": grey.expand(2, 3, 4, 4)}, ncols=2).axes[0].images[0],
               show_images(grey).axes[0].images[0], show_images(grey.expand(2, 3, 4, 4)).axes[1].images[0]):
        assert im.get_clim() == (0, 1)
    matplotlib.pyplot.close("all")


def test_verification_sweep_needs_the_verified_rate_and_set_style_sets_the_figure_dpi():
    from dovlib.plotting import set_style

    sweep = pd.DataFrame({"baseline": ["clean"] * 2, "m": [10, 100], "scenario": ["Malicious"] * 2,
                          "share": [0.5, 1.0]})
    with pytest.raises(ValueError, match="'verified_rate'"):
        verification_sweep(sweep, "m", 100)
    set_style()
    assert matplotlib.rcParams["figure.dpi"] == 100
    matplotlib.pyplot.close("all")


def test_verification_sweep_puts_the_bounded_test_in_its_own_labelled_row():
    sweep = pd.DataFrame({"baseline": ["clean"] * 4, "m": [10, 100] * 2, "scenario": ["Malicious"] * 2 + ["Ind-W"] * 2,
                          "verified_rate": [0.5, 1.0, 0.5, 1.0], "bounded_verified_rate": [0.0, 1.0, 0.0, 0.0]})
    grid = verification_sweep(sweep, "m", 100)
    assert grid.axes.shape == (2, 1)  # one row per test, the t-test's first
    titles = [ax.get_title() for ax in grid.axes.flat]
    assert "paired t-test" in titles[0] and "betting test (bounded)" in titles[1]
    bounded_lines = [list(line.get_ydata()) for line in grid.axes[1, 0].get_lines()]
    assert [0.0, 0.0] in bounded_lines and [0.0, 1.0] in bounded_lines  # the bounded rates, not the t-test's
    alone = verification_sweep(sweep.drop(columns=["verified_rate"]), "m", 100)
    assert alone.axes.shape == (1, 1) and "betting test (bounded)" in alone.axes.flat[0].get_title()
    with pytest.raises(ValueError, match="'verified_rate' or 'bounded_verified_rate'"):
        verification_sweep(sweep.drop(columns=["verified_rate", "bounded_verified_rate"]), "m", 100)
    matplotlib.pyplot.close("all")


# notebook 03's figure label at the quick profile (a real run's, from reports/03_verification/tau_sweep.png)
QUICK_LABEL = ("quick:device=cpu,epochs=10,width=16,gen_iters=300,batch_size=128,lr=0.05 profile, cifar10-subset "
               "(subset), resnet18, cpu, target 1, eps 8/255, gamma 0.1, decoy_rate 0, m 100, tau 0.25, alpha 0.01, "
               "2 model(s) per scenario, surrogate width 16, Ind-W owners share our surrogate")


def _saved_width_over_figure_width(fig) -> float:
    """How much wider than the figure itself the image save_fig writes (bbox_inches="tight") comes out: above 1,
    something (a one-line title) pokes out at the sides and the plot becomes a small island in a wide image."""
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    return fig.get_tightbbox(renderer).width / fig.get_figwidth()


def _extent(text):
    return text.get_window_extent(text.figure.canvas.get_renderer())


def _two_test_sweep():
    return pd.DataFrame({"baseline": ["clean"] * 4 + ["decoy"] * 4, "tau": [0.1, 0.25] * 4,
                         "scenario": (["Malicious"] * 2 + ["Ind-W"] * 2) * 2,
                         "verified_rate": [1.0, 0.5] * 4, "bounded_verified_rate": [1.0, 0.0] * 4})


def test_a_long_title_fits_the_figure_instead_of_widening_it():
    """Notebook 03's figures took their run label as a one-line title: at the quick profile the saved tau_sweep was
    2430 px wide around a 1000 px plot, its title in x-small text. The title now wraps to the figure."""
    grid = verification_sweep(_two_test_sweep(), "tau", 0.25, QUICK_LABEL)
    assert _saved_width_over_figure_width(grid.figure) <= 1.01
    title = grid.figure._suptitle
    assert title.get_text().replace("\n", " ") == QUICK_LABEL  # wrapped, not shortened
    assert title.get_text().count("\n") >= 1
    panel_titles = [_extent(ax.title) for ax in grid.axes.flat]
    assert not any(_extent(title).overlaps(t) for t in panel_titles)  # it grows upwards, not into the panels
    matplotlib.pyplot.close("all")


def test_set_title_wraps_to_the_axes_or_the_figure():
    from dovlib.plotting import set_title, wrap_text

    fig, ax = matplotlib.pyplot.subplots(figsize=(7, 3.4))
    ax.plot([0, 1], [0, 1])
    set_title(ax, QUICK_LABEL, fontsize="x-small")
    assert _saved_width_over_figure_width(fig) <= 1.01
    assert _extent(ax.title).width <= ax.get_window_extent().width + 1  # no wider than its axes
    assert ax.get_title().replace("\n", " ") == QUICK_LABEL
    # the profile string breaks between its overrides, never inside one
    lines = wrap_text(QUICK_LABEL, 1.5, "medium").split("\n")
    assert "quick:device=cpu," in lines and "batch_size=128," in lines
    assert wrap_text("short title", 5.0) == "short title"
    assert wrap_text("two\nlines", 5.0) == "two\nlines"  # breaks already there stay
    fig2, axes = matplotlib.pyplot.subplots(1, 2, figsize=(6, 3))
    fig2.tight_layout()
    title = set_title(fig2, QUICK_LABEL)
    assert _saved_width_over_figure_width(fig2) <= 1.01
    assert not any(_extent(title).overlaps(ax.get_window_extent()) for ax in axes)
    matplotlib.pyplot.close("all")


def test_the_second_row_of_a_sweep_keeps_its_titles_off_the_first_row():
    """The betting test's two-line panel titles ("betting test (bounded)" / "baseline = clean") sat on the x axis
    line of the t-test's panels above them (seen in reports/03_verification/tau_sweep.png and m_sweep.png)."""
    grid = verification_sweep(_two_test_sweep(), "tau", 0.25, "t")
    renderer = grid.figure.canvas.get_renderer()
    grid.figure.draw(renderer)
    for top, bottom in zip(grid.axes[0], grid.axes[1]):
        above = top.get_tightbbox(renderer)  # the upper panel with its tick labels
        assert _extent(bottom.title).y1 < above.y0, (bottom.get_title(), top.get_title())
    matplotlib.pyplot.close("all")


def test_rotate_xticklabels_ends_each_label_at_its_own_tick():
    """Notebook 02's bar charts slanted centred labels (tick_params(rotation=45)): each read as the next bar's
    ("automobile" under "bird")."""
    from dovlib.plotting import rotate_xticklabels

    fig, ax = matplotlib.pyplot.subplots()
    names = ["airplane", "automobile", "bird", "Label-Consistent", "Sleeper Agent"]
    ax.bar(names, [1, 2, 3, 4, 5])
    rotate_xticklabels(ax)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    for label, x in zip(ax.get_xticklabels(), ax.get_xticks()):
        tick_x = ax.transData.transform((x, 0))[0]
        box = label.get_window_extent(renderer)
        assert abs(box.x1 - tick_x) < 0.35 * box.width, label.get_text()  # ends at its tick, not centred on it
        assert label.get_rotation() == 45
    matplotlib.pyplot.close("all")


def test_learning_curve_ticks_whole_epochs():
    """With two epochs (the smoke profile) the x axes read 1.0, 1.2, ..., 2.0: epochs that do not exist."""
    fig = learning_curve([{"epoch": 1, "train_loss": 2.0, "train_acc": 0.2, "test_acc": 0.1},
                          {"epoch": 2, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.4}])
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    title = f"resnet18 on cifar10-subset ({QUICK_LABEL.split(' ')[0]} profile)"  # notebook 00's, at quick
    fig = learning_curve([{"epoch": 1, "train_loss": 2.0}], title)
    assert _saved_width_over_figure_width(fig) <= 1.01
    assert "".join(fig._suptitle.get_text().split()) == "".join(title.split())  # wrapped, nothing dropped
    matplotlib.pyplot.close("all")


def test_figure_legend_puts_one_legend_beside_the_panels_off_their_lines():
    """Notebooks 04 and 05 drew one legend per panel, inside the axes: where BA and WSR sit near 0.9 (quick, paper)
    the legend covered them, and the panels of Fig. 4 repeated the same one."""
    from dovlib.plotting import figure_legend

    fig, axes = matplotlib.pyplot.subplots(1, 2, figsize=(9, 3.4))
    for ax in axes:
        ax.plot([0, 1, 2], [0.90, 0.92, 0.93], marker="o", label="BA")
        ax.plot([0, 1, 2], [0.85, 0.95, 0.99], marker="o", label="WSR")
        ax.axhline(0.1, ls=":", label="WSR (clean model)")
        ax.plot([0.5], [0.5], label="_hidden")  # matplotlib's mark for "no legend entry"
        ax.legend(loc="upper right")
    legend = figure_legend(fig)
    assert [t.get_text() for t in legend.get_texts()] == ["BA", "WSR", "WSR (clean model)"]  # each label once
    assert all(ax.get_legend() is None for ax in axes) and fig.legends == [legend]
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in axes)  # beside the panels
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1  # and inside the figure, not past its edge
    with pytest.raises(ValueError, match="at least one labelled"):
        figure_legend(matplotlib.pyplot.figure())
    matplotlib.pyplot.close("all")


def _history(epochs: int) -> list[dict]:
    return [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.9 - 0.5 / e, "test_acc": 0.85 - 0.5 / e}
            for e in range(1, epochs + 1)]


def _legend_figure():
    from dovlib.plotting import figure_legend, set_title

    fig, axes = matplotlib.pyplot.subplots(1, 3, figsize=(13, 3.4))
    for ax in axes:
        ax.plot([0, 1], [0.9, 0.93], marker="o", label="BA")
        ax.axhline(0.1, label="WSR, clean model")
    axes[1].scatter([0.95], [1.0], marker="x", label="BA within 0.05 of chance (0.10)")
    axes[2].set_xlabel("attack strength (epoch / last epoch, or pruning rate)")
    figure_legend(fig)
    set_title(fig, f"Removal attacks on SSCL-BW, resnet18 on cifar10-subset (subset), {QUICK_LABEL}")
    return fig


_IMAGES = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
# each plotting helper's figure with labels as long as the notebooks give it at the quick and paper profiles
HELPER_FIGURES = {
    "image_grid": lambda: image_grid({"cover": _IMAGES, "AMUSE-marked-then-resized": _IMAGES,
                                      "x8 difference (clean_resampled)": _IMAGES}, ncols=8),
    "image_grid_one_row": lambda: image_grid({"#9999 clean / watermarked / residual": _IMAGES[:3]}, ncols=3,
                                             scale=2.2),  # notebook 01's slider
    "show_images": lambda: show_images(_IMAGES[:4], titles=["clean", "watermarked, eps 8/255", "residual (amplified)",
                                                            "BadNets trigger"]),
    "learning_curve": lambda: learning_curve(_history(30), f"resnet18 on cifar10-subset ({QUICK_LABEL})"),
    "verification_sweep": lambda: verification_sweep(_two_test_sweep(), "tau", 0.25, QUICK_LABEL).figure,
    "figure_legend": _legend_figure,
}


@pytest.fixture(params=sorted(HELPER_FIGURES))
def helper_figure(request):
    """A figure drawn by one of dovlib.plotting's helpers with long, realistic labels."""
    from dovlib.plotting import set_style

    set_style()  # as every notebook draws
    fig = HELPER_FIGURES[request.param]()
    yield fig
    matplotlib.pyplot.close("all")


def test_every_helper_figure_keeps_its_text_within_the_figure(helper_figure, tmp_path, monkeypatch):
    """What widened saved figures (one-line titles of quick-profile labels, legends past the edge) checked once for
    every helper: the PNG that save_fig's settings write is no wider than the figure itself (a 1% margin), and no
    text the figure draws lies outside it (set_title's suptitle included: it was set just above the top edge)."""
    from PIL import Image

    fig = helper_figure
    path = tmp_path / "figure.png"
    fig.savefig(path, dpi=150, bbox_inches="tight")  # as save_fig writes it
    with Image.open(path) as png:
        assert png.size[0] <= 1.01 * fig.get_figwidth() * 150 + 2, (png.size, fig.get_figwidth())
    drawn, draw = [], matplotlib.text.Text.draw

    def record(text, renderer):  # the texts a draw puts on the canvas (not an axis' unused tick labels)
        if text.get_visible() and text.get_text().strip():
            drawn.append(text)
        return draw(text, renderer)

    monkeypatch.setattr(matplotlib.text.Text, "draw", record)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    assert drawn
    for text in drawn:
        box, bounds = text.get_window_extent(renderer), fig.bbox
        assert bounds.x0 - 1 <= box.x0 and box.x1 <= bounds.x1 + 1, text.get_text()
        assert bounds.y0 - 1 <= box.y0 and box.y1 <= bounds.y1 + 1, text.get_text()


MATH_TITLE = r"sweep of $\tau = 0.25$ and $\epsilon = 8/255, \gamma = 0.1$ over 50,000 images; model resnet18"


@pytest.mark.parametrize("width", [0.6, 1.0, 1.5, 2.0, 2.5, 3.0])
def test_wrap_text_never_breaks_inside_mathtext_or_a_number(width):
    """matplotlib reads each line of a title for mathtext on its own: a line break inside ``$\\tau = 0.25$`` left
    "$\\tau =" and "0.25$" each with one dollar, printed as raw TeX. A number's thousands separator ("50,000") was
    taken for a list's comma, so "50," ended one line and "000 images" began the next."""
    from dovlib.plotting import wrap_text

    lines = wrap_text(MATH_TITLE, width).split("\n")
    for line in lines:
        assert line.count("$") % 2 == 0, lines
        assert not line.endswith("50,") and not line.startswith("000"), lines
    assert " ".join(lines) == MATH_TITLE  # wrapped at spaces or after ", ", nothing dropped


def test_wrap_text_breaks_beside_mathtext_after_a_semicolon_and_leaves_a_long_word_whole():
    """Mathtext is kept whole, not glued to its neighbours: the line may break just before it. A ';' breaks like a
    ',', and a word wider than the width stays whole on its own line (no empty line before it)."""
    from dovlib.plotting import wrap_text

    fig = matplotlib.pyplot.figure()

    def inches(s):
        return fig.text(0, 0, s).get_window_extent(fig.canvas.get_renderer()).width / fig.dpi

    assert wrap_text(r"spacing $\tau$", 1.05 * inches("spacing")) == "spacing\n$\\tau$"
    assert wrap_text("aaaaaaaa;bbbbbbbb", 1.05 * inches("aaaaaaaa;")) == "aaaaaaaa;\nbbbbbbbb"
    word = "averyveryverylongwordwithoutanyspaces"
    assert wrap_text(word, 0.5) == word and wrap_text(f"{word} x", 0.5) == f"{word}\nx"
    matplotlib.pyplot.close("all")


def test_wrap_text_measures_mathtext_as_drawn():
    """``$\\alpha$`` is drawn as one glyph, not the eight characters of its source: a title of mathtext that fits
    the width stays on one line."""
    from dovlib.plotting import wrap_text

    fig = matplotlib.pyplot.figure()
    text = r"$\alpha$ and $\beta$ and $\gamma$"
    drawn = fig.text(0, 0, text, fontsize="medium")
    width = drawn.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi
    assert wrap_text(text, 1.1 * width) == text
    assert wrap_text(text, 0.7 * width) != text  # it is measured, not left whole
    matplotlib.pyplot.close("all")


def test_set_title_wraps_a_bold_title_to_its_axes():
    """The title was measured in the normal weight whatever weight it was drawn in: a bold one ran past its axes."""
    from dovlib.plotting import set_title

    fig, ax = matplotlib.pyplot.subplots(figsize=(3, 2))
    title = set_title(ax, QUICK_LABEL, fontweight="bold")
    assert title.get_fontweight() == "bold"
    assert _extent(title).width <= ax.get_window_extent().width + 1
    assert "".join(title.get_text().split()) == "".join(QUICK_LABEL.split())  # wrapped, nothing dropped
    matplotlib.pyplot.close("all")


def test_learning_curve_keeps_its_title_inside_the_figure():
    """learning_curve's title sat inside the figure (tight_layout made room for it); once wrapped it was set above the
    figure's top edge, so ``fig.savefig(path)`` without bbox_inches="tight" cut it off."""
    fig = learning_curve([{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.0}], QUICK_LABEL)
    title = _extent(fig._suptitle)
    assert fig.bbox.y0 <= title.y0 and title.y1 <= fig.bbox.y1
    assert not any(title.overlaps(ax.get_tightbbox(fig.canvas.get_renderer())) for ax in fig.axes)
    assert fig._suptitle.get_text().count("\n") >= 1  # wrapped to the figure
    matplotlib.pyplot.close("all")



def _to_title(kind):
    """A figure of each kind set_title takes, laid out as the notebooks lay theirs out, and the target to title."""
    import seaborn as sns

    from dovlib.plotting import figure_legend

    if kind == "axes":  # notebooks 02 and 03: a plain subplots() figure, its axes titled
        fig, ax = matplotlib.pyplot.subplots(figsize=(7, 3.4))
        ax.plot([0, 1], [0, 1])
        return ax
    if kind == "figure":  # notebook 08's HiDDeN training: tight_layout, then the suptitle
        fig, axes = matplotlib.pyplot.subplots(1, 2, figsize=(9, 3.2))
        for ax in axes:
            ax.plot([0, 1], [0, 1])
            ax.set_title("panel")
        fig.tight_layout()
        return fig
    if kind == "legend":  # notebooks 04 and 05: figure_legend (a legend in figure coordinates), then the suptitle
        fig, axes = matplotlib.pyplot.subplots(1, 3, figsize=(13, 3.4))
        for ax in axes:
            ax.plot([0, 1], [0.9, 0.93], marker="o", label="BA")
            ax.set_title("panel")
        figure_legend(fig)
        return fig
    data = pd.DataFrame({"bits": [8, 16] * 2, "accuracy": [1.0, 0.9, 0.8, 0.7], "method": ["AMUSE"] * 2 + ["base"] * 2,
                         "attack": ["none", "none", "jpeg", "jpeg"]})  # notebooks 07-10: seaborn's legend outside
    return sns.relplot(data=data, x="bits", y="accuracy", hue="method", col="attack", kind="line", height=2.5)


@pytest.mark.parametrize("kind", ["axes", "figure", "legend", "facetgrid"])
def test_set_title_keeps_the_title_inside_the_figure_without_a_tight_bbox(kind, tmp_path):
    """set_title set a Figure's (or FacetGrid's) suptitle just above the figure's top edge: save_fig's tight bbox
    showed it, but ``plt.show()`` without one and ``fig.savefig(path)`` cut it off; a long Axes title wrapped to
    several lines ran past the top edge too. The title now lies inside the figure, clear of the panels."""
    from PIL import Image

    from dovlib.plotting import set_style, set_title

    set_style()
    target = _to_title(kind)
    fig = getattr(target, "figure", target)
    title = set_title(target, QUICK_LABEL, fontsize="small" if kind == "axes" else "medium")
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)  # as plt.show() draws it: the figure, no tight bbox
    box = title.get_window_extent(renderer)
    assert title.get_text().count("\n") >= 1  # a long title, wrapped
    assert fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1, (box, fig.bbox)
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, (box, fig.bbox)
    panels = [ax for ax in fig.axes if ax.title is not title]
    assert not any(box.overlaps(ax.get_tightbbox(renderer)) for ax in panels)  # clear of the panels and their titles
    assert not any(box.overlaps(legend.get_window_extent(renderer)) for legend in fig.legends)
    # savefig with no bbox_inches: the title's rows of the image hold its dark text, not cut off at the top
    path = tmp_path / "plain.png"
    fig.savefig(path, dpi=fig.dpi)  # at the figure's dpi: the image's rows are the window's
    with Image.open(path) as png:
        pixels = np.asarray(png.convert("L"))
        assert abs(png.size[1] - fig.bbox.height) < 1
    top, bottom = (pixels.shape[0] - np.array([box.y1, box.y0])).astype(int)  # rows counted from the image's top
    assert top >= 0 and (pixels[top:bottom] < 100).sum() > 50
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize("kind", ["axes", "figure", "legend", "facetgrid"])
def test_set_title_grows_the_figure_and_leaves_the_panels_as_they_were(kind):
    """The room for a title that needs it is added above the panels: each panel keeps its size and its place in
    inches from the bottom edge, the figure's legends too (a plot squeezed by a long title would read differently at
    each profile)."""
    from dovlib.plotting import set_style, set_title

    def inches(artist):  # where it lies, in inches from the figure's bottom left corner
        return tuple(np.round(np.asarray(artist.get_window_extent(renderer).bounds) / fig.dpi, 3))

    set_style()
    target = _to_title(kind)
    fig = getattr(target, "figure", target)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    height, before = fig.get_figheight(), {id(a): inches(a) for a in [*fig.axes, *fig.legends]}
    set_title(target, QUICK_LABEL, fontsize="small" if kind == "axes" else "medium")
    fig.draw(renderer)
    assert fig.get_figheight() > height  # it grew for the title
    assert {id(a): inches(a) for a in [*fig.axes, *fig.legends]} == before
    assert set_title(target, "short").get_text() == "short" and fig.get_figheight() > height  # no shrinking back
    matplotlib.pyplot.close("all")


def test_set_title_leaves_a_figure_with_room_as_it_is_and_a_layout_engine_to_itself():
    """A short title that fits above the panels grows nothing; a figure with a layout engine (constrained layout)
    makes room for its suptitle itself, inside the figure."""
    from dovlib.plotting import set_title

    fig, ax = matplotlib.pyplot.subplots(figsize=(6, 4))  # subplots' default top leaves 12% of the height
    ax.plot([0, 1], [0, 1])
    set_title(fig, "short")
    assert fig.get_figheight() == 4
    fig, axes = matplotlib.pyplot.subplots(1, 2, figsize=(6, 3), layout="constrained")
    title = set_title(fig, QUICK_LABEL)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    box = title.get_window_extent(renderer)
    assert fig.get_figheight() == 3 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
    assert not any(box.overlaps(ax.get_tightbbox(renderer)) for ax in axes)
    matplotlib.pyplot.close("all")


def test_grid_axis_places_a_single_point_on_the_studys_grid_and_says_how_to_walk_it():
    """Fig. 4 without a sweep drew its gamma panel's one point on matplotlib's default axis, 0.096 to 0.104."""
    from dovlib.plotting import grid_axis

    fig, axes = matplotlib.pyplot.subplots(1, 2, figsize=(9, 3.4))
    axes[0].plot([0.1], [0.9], marker="o")
    grid_axis(axes[0], [0.1], [0.01 * i for i in range(1, 11)], hint="one point: sweep='rate' walks gamma 1%-10%")
    low, high = axes[0].get_xlim()
    assert low < 0.01 and high > 0.1 and high - low < 0.2  # the whole grid, a little padding
    assert [t.get_text().replace("\n", " ") for t in axes[0].texts] == ["one point: sweep='rate' walks gamma 1%-10%"]
    axes[1].plot([4, 8], [0.9, 0.8], marker="o")
    grid_axis(axes[1], [4, 8, float("nan")], [1, 2, 10], hint="never shown: two points")
    assert axes[1].get_xlim()[0] < 1 and axes[1].get_xlim()[1] > 10 and not axes[1].texts
    single = matplotlib.pyplot.figure().gca()
    grid_axis(single, [3], [3])  # one value, grid of one: a unit span around it, not a zero-width axis
    assert single.get_xlim() == (2.5, 3.5)
    with pytest.raises(ValueError, match="grid must hold at least one finite number"):
        grid_axis(single, [3], [])
    with pytest.raises(ValueError, match="must be numbers"):
        grid_axis(single, ["eps"], [1])
    matplotlib.pyplot.close("all")


def test_readable_formats_each_float_on_its_own():
    """pandas prints a float column in one format, so one tiny p-value turned every value of notebook 03's paper
    comparison into scientific notation (0.76 as 7.625539e-01): readable shows each float with its own significant
    digits, NaN as '-', and leaves other columns and the saved frame as they are."""
    import numpy as np

    frame = pd.DataFrame({"scenario": ["Ind-W", "Ind-W", "Malicious"], "n": [2, 2, 3],
                          "ours": [0.7625539393745208, 2.3419135528275137e-24, 1.0], "paper": [0.0, 1.0, np.nan]})
    shown = readable(frame)
    assert shown["ours"].tolist() == ["0.763", "2.34e-24", "1"]
    assert shown["paper"].tolist() == ["0", "1", "-"]
    assert shown["scenario"].tolist() == frame["scenario"].tolist() and shown["n"].tolist() == [2, 2, 3]
    assert frame["ours"].dtype == float and frame["ours"].iloc[0] == 0.7625539393745208  # the input untouched
    assert readable(frame, digits=5)["ours"].iloc[0] == "0.76255"
    counts = pd.DataFrame({"n_marked": [1234.0, np.nan], "x": [-0.0, 2.5e-7]})  # a count with a NaN: a float column
    assert readable(counts).to_dict("list") == {"n_marked": ["1234", "-"], "x": ["0", "2.5e-07"]}
    assert "e-01" not in shown.to_string()
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="digits must be an integer >= 1"):
            readable(frame, digits=bad)
    with pytest.raises(TypeError, match="readable needs a pandas DataFrame"):
        readable([1.0, 2.0])
