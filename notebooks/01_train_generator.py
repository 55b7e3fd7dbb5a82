# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · SSCL-BW: train the watermark generator
#
# SSCL-BW (sample-specific clean-label backdoor watermark) marks a dataset with a U-Net generator G. *Clean-label*:
# only images of the target class are marked and every label stays correct, so no published image looks mislabelled
# (a poison-label watermark instead relabels the images it marks, e.g. to the target class). Exactly,
# `G(x) = clamp(x + eps * tanh(U([2x - 1, K])), 0, 1)` for images x in [0, 1] (`sscl.SSCLGenerator.forward`; U is the
# U-Net, K the key pattern below), so every watermarked image stays inside the L-inf ball of radius `eps` around the
# original, by construction. `G.mark`, which marks the uint8 images of the published set, rounds G(x) to 8 bits and
# clips every pixel to within floor(eps * 255) grey levels of the original (8 at eps 8/255). G is trained against a
# frozen surrogate classifier f with
#
# $$\mathcal{L} = \lambda_1\, \mathrm{CE}(f(G(x_t)), y_{\min}) + \lambda_2\, \mathrm{CE}(f(G(x_n)), t)
#   + \lambda_3\, d(x, G(x))$$
#
# where x_t are target-class images (pushed to the class the surrogate finds least likely, which erases their
# natural target features), x_n are the other images (pushed to the target class t) and d is LPIPS, or the
# explicit fallback named in `perceptual` (real LPIPS needs torchvision's AlexNet weights, which these machines
# cannot download; see `dovlib/perceptual.py` for where to put them). The fallback `ssim` is 1 - SSIM as
# pytorch-msssim computes it (11x11 Gaussian window; a smaller odd window on images under 11 px); the `SSIM` column
# reported below is another SSIM, scikit-image's (7x7 uniform window, `dovlib.metrics.ssim`), so the perceptual
# column is not 1 minus the SSIM column.
#
# K is the owner's secret key pattern (extra input channels: a fixed standard-normal pattern drawn from the integer
# `key`), so two owners with the same data get different generators; reports record the key's hash only. Two
# caveats. The pattern is drawn by torch's random generator, which uses only the key's low 32 bits: keys equal modulo
# 2**32 give the same pattern (`sscl.check_key`). A 128-bit key (`secrets.randbits(128)`) protects the key's hash,
# which a 32-bit key would give away to a search of about an hour; it adds nothing to the pattern, which has at most
# 2**32 variants. And different generators do not make the marks owner-specific: in notebook 03's Ind-W
# (independent-watermark) scenario, a model trained on another owner's marks towards the same target class answers
# our marks too, as if they were its own (the marks are interchangeable), and the paper's test often claims it
# falsely (docs/owner-specificity.md).
#
# Notebooks 02 and 03 reuse the generator trained here (cached under `runs/sscl/`). In the parameters below, C is the
# dataset's number of classes and *ours* marks an option this project adds (not in the SSCL-BW paper).

# %% tags=["parameters"]
profile = "smoke"  # smoke | quick | paper, optionally with field overrides after a colon (README; dovlib/params.py)
dataset = "cifar10-subset"  # cifar10-subset | mnist-offline | cifar10 | ... (dovlib.data)
arch = "resnet18"  # surrogate architecture: resnet18 | resnet34 | vgg16 | vgg19 | badnets_cnn
eps = "8/255"  # L-inf budget in [1/255, 1] (MNIST needs more, e.g. 32/255 or 64/255)
rate = 0.1  # gamma in (0, the target class's share of the set], at least one image; 02/03 mark, 01 checks it
target = 1  # target class t, 0 to C - 1 (rate may not exceed its share of the set: under 0.1 for some classes)
seed = 0  # an integer at least 0: data subsampling, surrogate, generator initialisation
key = 20240607  # the owner's secret key, an integer at least 0 (secrets.randbits(128) for a real dataset)
perceptual = "ssim"  # lpips | ssim | mse; "lpips" needs the AlexNet weights (README); "ssim": 1 - pytorch-msssim SSIM
l1 = 1.0  # weight of L_target, in [0, 1e6] (target-class images -> least likely class)
l2 = 1.0  # weight of L_nontarget, in [0, 1e6] (other images -> target class)
l3 = 1.0  # weight of L_perceptual, in [0, 1e6]
surrogate_width = None  # None (the profile's width, the suspects') or an integer at least 1; ours: README, 02/03

# %% [markdown]
# ## Setup

# %%
import io

import pandas as pd
import seaborn as sns
import torch
from IPython.display import Image, display
from matplotlib import pyplot as plt

from dovlib import sscl
from dovlib.data import load_dataset
from dovlib.index import dataset_label
from dovlib.metrics import mean_psnr, ssim
from dovlib.params import check_int, get_profile, parse_eps, parse_rate
from dovlib.perceptual import lpips_available, perceptual_distance, require_perceptual
from dovlib.plotting import image_grid, readable, set_title
from dovlib.report import record_summary, run_context, run_times, save_fig, start_notebook, timer, write_record
from dovlib.studies import eps_label
from dovlib.train import evaluate, predict_logits
from dovlib.watermarks import select_indices

NOTEBOOK = "01_train_generator"
cfg = get_profile(profile)
eps, rate = parse_eps(eps), parse_rate(rate)
target, seed = check_int("target", target, 0), check_int("seed", seed, 0)
require_perceptual(perceptual)  # LPIPS without its weights fails here, before any training
key = sscl.check_key(key)
gen_cfg = sscl.generator_config(cfg, eps=eps, target=target, key=key, seed=seed, perceptual=perceptual, l1=l1,
                                l2=l2, l3=l3)  # refuses bad loss weights (l1, l2, l3) before any training
weights = dict(l1=gen_cfg.l1, l2=gen_cfg.l2, l3=gen_cfg.l3)  # as parsed ("1/2" -> 0.5): one record per generator
device = start_notebook(profile, seed, cfg.device)
print(f"eps = {eps_label(eps)}, target {target}, perceptual measure: {perceptual} "
      f"(real LPIPS weights cached: {lpips_available()}), owner key hash {sscl.key_hash(key)}")

# %% [markdown]
# ## Data and surrogate
# The surrogate is an ordinary classifier trained on the clean set (its own seed, so it is never one of the
# benign models that notebook 03 tests).

# %%
ds = load_dataset(dataset).subsample(cfg.n_train, cfg.n_test, seed=seed)
require_perceptual(perceptual, image_shape=ds.x_train.shape)  # LPIPS needs 31 px: refused before the surrogate trains
context = run_context(profile, device, ds, perceptual=perceptual)  # what figures say they were measured with
print(ds.describe())
check_int("target", target, 0, ds.num_classes - 1)
ds.warn_split_problems(target)  # a target class without test images, no non-target test image, test = train
# gamma is used by 02/03, which mark the set; checked here so a gamma above the target class's share fails before
# the generator trains, and shown as the share of the target class it will mark (at 0.1 almost all of it)
n_marked = len(select_indices(ds.y_train, rate, target, clean_label=True, seed=seed))
n_target = int((ds.y_train == target).sum())
print(f"gamma {rate:g}: notebooks 02/03 mark {n_marked} of the {n_target} class-{target} training images "
      f"({n_marked / n_target:.0%} of the class), labels untouched")
with timer() as t_sur:
    surrogate = sscl.train_surrogate(ds, cfg, arch, seed, width=surrogate_width)
surrogate_width_used = surrogate_width or cfg.width  # the parameter stays as given
surrogate_acc = evaluate(surrogate.model, ds.x_test, ds.y_test)  # this test set (a cached model's history may not be)
print(f"surrogate {arch} (width {surrogate_width_used}): clean test accuracy {surrogate_acc:.3f} "
      f"({t_sur['seconds']:.1f} s)")

# %% [markdown]
# ## Train the generator
# Batches hold as many target as non-target images; Adam. The run is checkpointed and cached by its settings.
# The plot below shows the three loss terms (before the weights l1-l3) and `asr_surrogate`, the share of each
# batch's marked non-target training images (float, before `G.mark` rounds them) that the surrogate classifies as t,
# averaged over each logging interval.

# %%
gen_cfg = sscl.generator_config(cfg, eps=eps, target=target, key=key, seed=seed, perceptual=perceptual,
                                l1=l1, l2=l2, l3=l3)
with timer() as t_gen:
    G = sscl.get_or_train_generator(surrogate.model, ds.x_train, ds.y_train, gen_cfg, device=device)
g_set = G.settings()
where = f"loaded from cache, trained by {G.meta['trained_by']} in {G.meta['training_precision']}" if G.cached \
    else "trained"  # a cached generator may come from another machine (its file says which; older files: unknown)
print(f"generator: {where} ({t_gen['seconds']:.1f} s); settings: eps "
      f"{eps_label(g_set['eps'])}, width {g_set['width']}, depth {g_set['depth']}, key channels "
      f"{g_set['key_channels']}, input channels {g_set['in_channels']}")

# %%
hist = pd.DataFrame(G.meta["history"]).melt(id_vars="iter", var_name="term", value_name="value")
grid = sns.relplot(data=hist, x="iter", y="value", col="term", kind="line", height=2.6,
                   facet_kws={"sharey": False})
weights_label = sscl.loss_weights_label(**weights)  # "" at the defaults (1, 1, 1)
set_title(grid, f"generator training ({profile} profile, {dataset_label(context)}, eps {eps_label(eps)}, "
          f"perceptual measure {perceptual}, {arch} surrogate of width {surrogate_width_used}"
          f"{', ' + weights_label if weights_label else ''})")  # wrapped: a profile string is long
save_fig(grid.figure, "generator_losses", NOTEBOOK, **context);

# %% [markdown]
# ## What the watermark looks like
# Clean test images, their watermarked versions and the residual amplified to full range.

# %%
show = ds.x_test[:8]
marked = G.mark(show)
fig = image_grid({"clean": show, "watermarked": marked,
                  sscl.residual_label(show, marked): sscl.amplified_residual(show, marked)})  # gain, largest change
set_title(fig, f"SSCL-BW marks of {dataset_label(context)} test images ({profile} profile, eps {eps_label(eps)}, "
          f"target {target} ({ds.classes[target]}))")
save_fig(fig, "clean_watermarked_residual", NOTEBOOK, **context);

# %% [markdown]
# In JupyterLab the slider browses the test samples, under any matplotlib backend. A batch run (papermill,
# `dovlib.reproduce`) runs the cell once: sample 0 is drawn into the slider's output, which the executed notebook keeps
# only in its saved widget state (a viewer that renders widgets shows it; the cell's own output is the slider, as
# text elsewhere). Without ipywidgets the cell draws sample 0 as its output and says so; `_show(i)` draws sample i.

# %%
try:
    import ipywidgets as widgets
except ImportError:  # only the slider needs it: the quality table and the record below still run
    widgets = None


def _sample_figure(i=0):
    x = ds.x_test[i:i + 1]
    xm = G.mark(x)
    residual = (sscl.amplified_residual(x, xm) * 255).to(torch.uint8)
    return image_grid({f"#{i} clean / watermarked / {sscl.residual_label(x, xm)}": torch.cat([x, xm, residual])},
                      ncols=3, scale=2.2)


def _show(i=0):  # as a PNG, its figure closed: the same under any matplotlib backend (plt.show() under Agg shows none)
    fig = _sample_figure(i)
    png = io.BytesIO()
    fig.savefig(png, format="png", bbox_inches="tight")
    plt.close(fig)
    display(Image(png.getvalue()))


if widgets is None:
    print(f"ipywidgets is not installed, so there is no slider: sample 0 below; _show(i) draws sample i "
          f"(0 to {len(ds.x_test) - 1})")
    _show(0)
else:
    widgets.interact(_show, i=widgets.IntSlider(0, 0, len(ds.x_test) - 1, 1, description="sample"))

# %% [markdown]
# ## Image quality and the surrogate's view
# Quality between clean and watermarked test images: `perceptual_<measure>` is the measure named in `perceptual`
# (for `ssim`, 1 - SSIM of pytorch-msssim, 11x11 Gaussian window), `SSIM` is scikit-image's (7x7 uniform window,
# `dovlib.metrics.ssim`): two different SSIMs, so the first is not 1 minus the second.
#
# `surrogate_wsr`, the surrogate's attack success rate (non-target test images classified as the target after
# marking), is white-box success on the very model G was optimised against: it shows that the optimisation worked,
# and does not predict that a user's model trained on the marked set learns the mark (notebook 02 measures that; on
# the H100's quick profile the surrogate reached 0.683 while the user's model stayed at 0.239, below the benign
# model's 0.484: docs/measured-h100.md). `surrogate_marked_acc` is the surrogate's accuracy on all marked test images
# with their true labels (marking pushes target-class images away from their class and the others towards it).

# %%
xq = ds.x_test[:min(500, len(ds.x_test))]
xqm = G.mark(xq)
non_target = ds.y_test != target
pred_sur = predict_logits(surrogate.model, G.mark(ds.x_test[non_target])).argmax(1)
metrics = {
    f"perceptual_{perceptual}": perceptual_distance(xq, xqm, perceptual).mean().item(),
    "PSNR": mean_psnr(xq, xqm), "SSIM": float(ssim(xq, xqm).mean()),
    "linf_255": (xq.int() - xqm.int()).abs().max().item(),
    "surrogate_clean_acc": surrogate_acc,
    "surrogate_marked_acc": evaluate(surrogate.model, G.mark(ds.x_test), ds.y_test),
    "surrogate_wsr": (pred_sur == target).float().mean().item(),
    "generator_wall_time": G.meta["wall_time"],
}
readable(pd.Series(metrics).to_frame("value"))  # each value its own digits: linf_255 8, not 8.000000

# %% [markdown]
# ## Record

# %%
params = {"profile": profile, "dataset": dataset, "arch": arch, "eps": eps, "target": target, "seed": seed,
          "key_hash": sscl.key_hash(key), "perceptual": perceptual, **weights,
          "surrogate_width": surrogate_width_used}
# wall_time: what these cells took now (a surrogate or generator read back from runs/: its reading); compute_time: what
# they cost, each model read back counted at its stored training time, the same whether the cache was warm or cold
record = write_record(NOTEBOOK, params, metrics, **run_times(t_sur, t_gen), generator=G.meta["config"], **context)
print(record_summary(record, notebook=NOTEBOOK))
