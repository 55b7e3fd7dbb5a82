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
# # 05 · Can a thief remove the watermark? Fine-tuning and pruning (SSCL-BW Fig. 5)
#
# The suspect model was trained on the SSCL-BW-marked set (the Malicious scenario). Its owner-adversary tries two
# removal attacks (`dovlib.removal`):
#
# * **fine-tuning** on `finetune_share` (paper: 10%) of benign training data in batches of `finetune_batch_size`
#   (128, as BackdoorBox's fine-tuning and the `paper` profile; not the classifier's batch, which on `quick` would
#   make an epoch of the 508 images one step); BA, WSR and the verification p-value after every epoch (Fig. 5 left);
# * **pruning** the channels of the last feature map that are least active on benign data (the pruning step of
#   fine-pruning, not followed by fine-tuning), 0% to 95% in 5% steps (Fig. 5 right). For a ResNet the masked map is
#   `layer4`'s output, after the residual addition (as BackdoorBox prunes it; zeroing the last conv's weights would not
#   silence a channel the shortcut still carries), for a VGG the ReLU after the last conv; no weight is changed.
#
# The p-value after each attack shows when ownership can no longer be proved (p >= alpha = 0.01).

# %% tags=["parameters"]
profile = "smoke"  # smoke | quick | paper (dovlib/params.py)
dataset = "cifar10-subset"  # offline real CIFAR-10 subset; "cifar10" for the full set (online)
arch = "resnet18"  # suspect (and surrogate) architecture
eps = "8/255"  # L-inf budget of the watermark
rate = 0.1  # gamma: share of the whole training set marked (target class only)
target = 1  # target label t (rate may not exceed its share of the set: under 0.1 for some classes)
key = 20240607  # the owner's secret key (as in notebooks 01-03; only its hash is recorded)
seed = 0  # seeds everything
perceptual = "ssim"  # generator similarity loss: "lpips" (needs AlexNet weights) | "ssim" | "mse"
finetune_share = 0.1  # share of the benign training set the thief fine-tunes on (paper: 10%)
finetune_lr = 0.01  # fine-tuning learning rate (cosine schedule)
finetune_batch_size = 128  # fine-tuning batch, at least 1 (BackdoorBox: 128), capped at the thief's images
prune_step = 0.05  # pruning rates 0, step, 2 step, ... up to 0.95 (step 0.01 to 0.95)
recompute = False  # True: recompute a parameter set already in metrics.json

# %% [markdown]
# ## Setup

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from dovlib.data import load_dataset, stratified_subsample
from dovlib.models import check_train_batch
from dovlib.params import check_int, get_profile, parse_eps, parse_fraction, parse_rate
from dovlib.perceptual import require_perceptual
from dovlib.plotting import epoch_ticks, figure_legend, readable, set_title
from dovlib.removal import finetune, finetune_budget, pruning_curve, removal_claims
from dovlib.report import run_context, run_dir, save_fig, save_table, start_notebook
from dovlib.sscl import check_key, key_hash, run_sscl
from dovlib.studies import (benign_model, cached, check_study_queries, eps_label, measured_context, ownership_metrics,
                            study_label)
from dovlib.train import TrainConfig, train_steps
from dovlib.watermarks import select_indices

NOTEBOOK = "05_removal_attacks"
cfg = get_profile(profile)
eps = parse_eps(eps)
rate = parse_rate(rate)
finetune_share = parse_fraction("finetune_share", finetune_share, 0, 1)
finetune_lr = parse_fraction("finetune_lr", finetune_lr, 0, 10)
finetune_batch_size = check_int("finetune_batch_size", finetune_batch_size, 1)  # "64" or 64.0 from papermill -> 64
prune_step = parse_fraction("prune_step", prune_step, 0.01, 0.95, low_inclusive=True)  # at most 96 pruning rates
require_perceptual(perceptual)  # LPIPS without its weights fails here
key = check_key(key)
target = check_int("target", target, 0)  # "1" or 1.0 from papermill -> 1 (as notebooks 01-03)
seed = check_int("seed", seed, 0)  # "1" or 1.0 from papermill -> 1; -1 or 1.5 refused by name
device = start_notebook(profile, seed, cfg.device)

# %%
ds = load_dataset(dataset).subsample(cfg.n_train, cfg.n_test, seed=seed)
context = run_context(profile, device, ds, perceptual=perceptual)  # what figures say they were measured with
select_indices(ds.y_train, rate, target, clean_label=True)  # gamma within the target class's share?
# a batch of one image cannot train where a BatchNorm sees a 1x1 map (a VGG on images of 16 pixels or fewer)
finetune_batch_size = check_train_batch("finetune_batch_size", finetune_batch_size, arch, ds.image_shape)
print(ds.describe())
m_verify = check_study_queries(ds, target, cfg)  # the profile's verify_m, capped at the test set, can claim:
# before any training
print(f"verification: {m_verify} non-target queries per model")
params = {"profile": profile, "dataset": dataset, "data": context["data_hash"], "arch": arch, "eps": eps_label(eps),
          "rate": rate, "target": target, "seed": seed, "key_hash": key_hash(key), "perceptual": perceptual,
          "finetune_share": finetune_share, "finetune_lr": finetune_lr, "finetune_batch_size": finetune_batch_size,
          "prune_step": prune_step}

# %% [markdown]
# ## The watermarked (Malicious) model and the attacks
# delta_p and the p-value are measured on the same `verify_m` non-target verification images after every attack;
# BA on the whole test set, WSR on all its non-target images. The thief's benign data is a stratified share of the
# clean training set, so it also holds clean originals of some images the thief only has marked (a stronger attack
# than a real thief's, as in BackdoorBox's fine-tuning defence). A model trained on the clean set, queried with the
# same marks, gives the floor: marks made against a surrogate can move a model that never saw them.

# %%
def compute():
    run = run_sscl(ds, cfg, arch=arch, eps=eps, rate=rate, target=target, seed=seed,
                   perceptual=perceptual, key=key)
    evaluate_fn = lambda model: ownership_metrics(model, ds.x_test, ds.y_test, run.trigger, target,  # noqa: E731
                                                  default_m=cfg.verify_m)
    # the thief's benign data: a stratified share of the CLEAN training set
    idx = stratified_subsample(ds.y_train, max(ds.num_classes, int(round(finetune_share * len(ds.y_train)))),
                               seed=seed + 7)
    ft_cfg = TrainConfig.for_profile(cfg, epochs=cfg.finetune_epochs, batch_size=min(finetune_batch_size, len(idx)),
                                     lr=finetune_lr, schedule="cosine", device=str(device), seed=seed,
                                     flip=ds.image_shape[0] == 3)
    ckpt = run_dir(NOTEBOOK, params) / "finetune.pt"
    if recompute:  # a finished checkpoint would hand back the old run's epochs
        ckpt.unlink(missing_ok=True)
    _, ft = finetune(run.suspect.model, ds.x_train[idx], ds.y_train[idx], ft_cfg, evaluate_fn, checkpoint=ckpt)
    rates = np.round(np.arange(0, 0.95 + 1e-9, prune_step), 4)
    pr = pruning_curve(run.suspect.model, ds.x_train[idx], rates, evaluate_fn)
    return {"finetune": ft.to_dict("records"), "pruning": pr.to_dict("records"), "n_finetune_images": len(idx),
            "finetune_batch_size": ft_cfg.batch_size,  # as trained: capped at the images
            "finetune_steps": train_steps(len(idx), ft_cfg.batch_size, ft_cfg.epochs),  # optimizer steps, all epochs
            "benign": evaluate_fn(benign_model(ds, cfg, arch, seed))}


rec = cached(NOTEBOOK, params, compute, recompute=recompute, needs=("benign", "finetune_steps"), **context)
ft = pd.DataFrame(rec["metrics"]["finetune"])
pr = pd.DataFrame(rec["metrics"]["pruning"])
floor = rec["metrics"]["benign"]  # the clean-set model, queried with the same marks
ft_steps, ft_epochs = rec["metrics"]["finetune_steps"], int(ft["epoch"].max())
ft_budget = finetune_budget(ft_steps, rec["metrics"]["finetune_batch_size"], finetune_lr,  # the rate too
                            n_images=rec["metrics"]["n_finetune_images"], epochs=ft_epochs)
print(f"fine-tuned on {ft_budget}{' (reused record)' if rec['reused'] else ''}")
print(f"model trained on the clean set: BA {floor['BA']:.3f} WSR {floor['WSR']:.3f} p {floor['p_value']:.2g} "
      f"verified {floor['verified']}")

# %%
readable(ft[["epoch", "BA", "WSR", "delta_p", "p_value", "verified"]])  # each value its own digits (CSV: all)

# %%
readable(pr[["rate", "pruned_channels", "BA", "WSR", "p_value", "verified"]])

# %% [markdown]
# ## Fig. 5
# In the pruning panel a red x marks a rate where BA is within 5 points of chance (1 / number of classes): such a
# collapsed model puts (almost) every image in one class, and if that class is the target its WSR reads near 1.0
# without the watermark having survived.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
ft_title = f"fine-tuning ({finetune_budget(ft_steps, rec['metrics']['finetune_batch_size'], finetune_lr)})"
for ax, data, x, title in ((axes[0], ft, "epoch", ft_title), (axes[1], pr, "rate", "pruning")):
    long = data.melt(id_vars=[x], value_vars=["BA", "WSR"], var_name="metric", value_name="value")
    sns.lineplot(data=long, x=x, y="value", hue="metric", marker="o", ax=ax)
    ax.axhline(floor["WSR"], color="grey", ls=":", label="WSR, clean model")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("BA / WSR")
    ax.set_title(title)
at_chance = pr["BA"] < 1 / ds.num_classes + 0.05  # a collapsed model: its WSR says nothing about the watermark
if at_chance.any():
    axes[1].scatter(pr.loc[at_chance, "rate"], pr.loc[at_chance, "WSR"], marker="x", s=60, color="red", zorder=3,
                    label=f"BA within 0.05 of chance ({1 / ds.num_classes:.2f})")
pv = pd.concat([ft.assign(attack="p-value, fine-tuning", x=ft["epoch"] / max(1, ft["epoch"].max())),
                pr.assign(attack="p-value, pruning", x=pr["rate"])])
sns.lineplot(data=pv, x="x", y=pv["p_value"].clip(lower=1e-300), hue="attack", marker="o", ax=axes[2],
             palette=[sns.color_palette()[i] for i in (2, 4)])  # one legend for all panels: not BA's, WSR's colours
axes[2].set_yscale("log")
axes[2].axhline(0.01, color="grey", ls="--", label="alpha = 0.01")
epoch_ticks(axes[0])  # whole epochs, not 2.5
axes[1].set_xlabel("pruning rate\n(share of last-layer channels)")  # not gamma, the marking rate
axes[2].set_xlabel("attack strength\n(epoch / last epoch, or pruning rate)")  # the axis read only "x"
axes[2].set_ylabel("verification p-value")
axes[2].set_title("can ownership still be proved?")
figure_legend(fig)  # one legend, beside the panels: inside them it covered BA and WSR near 0.9 (quick, paper)
label_kw = dict(target=target, arch=arch, eps=eps, rate=rate, perceptual=perceptual)
set_title(fig, f"Removal attacks on SSCL-BW: {study_label(ds, profile, **label_kw)}")
record_context = measured_context(context, [rec])  # a reused record's device, not this run's
save_fig(fig, "fig5_removal", NOTEBOOK, **record_context)
caption = study_label(ds, profile, **label_kw, devices=record_context.get("device_name", record_context.get("device")))
caption += f"; a model trained on the clean set: WSR {floor['WSR']:.3f}, p {floor['p_value']:.2g}"
caption += f"; fine-tuning: {ft_budget}"
save_table(ft, "finetuning", NOTEBOOK, caption="Fine-tuning: " + caption, **record_context)
collapsed = ("" if not at_chance.any() else f"; at rate(s) {', '.join(f'{r:.0%}' for r in pr.loc[at_chance, 'rate'])} "
             f"BA is within 0.05 of chance ({1 / ds.num_classes:.2f}): a collapsed model, whose WSR says nothing "
             "about the watermark")
save_table(pr, "pruning", NOTEBOOK, caption="Pruning: " + caption + collapsed, **record_context);

# %% [markdown]
# ## The paper's claims, checked on this data
# The paper finds the watermark survives fine-tuning (WSR stays high) and that pruning removes it only once BA
# collapses (beyond about 80% of the channels). Each is stated below as confirmed or not from this run's numbers.
# "Survives fine-tuning" here means: after the last epoch WSR is at least half its value before the attack and the
# suspect is still verified (`removal_claims` in `dovlib.removal`).

# %%
c = removal_claims(ft, pr, floor)  # dovlib.removal: the claims read off the two curves
untestable = f"not testable: {c['untestable']}"
last = ft.iloc[-1]
dips = ("" if not c["learnt"] or not c["ft_lost_epochs"] else
        f" Not at every epoch: verification was lost after epoch(s) {', '.join(map(str, c['ft_lost_epochs']))} "
        f"(largest p = {ft.loc[ft['epoch'].isin(c['ft_lost_epochs']), 'p_value'].max():.2g}), so a thief who stopped "
        "there would have removed the proof.")
lost_at = "no rate" if c["first_lost"] is None else f"{c['first_lost']:.0%}"
display(Markdown("\n".join([
    f"* Before any attack: BA {c['BA0']:.1%}, WSR {c['WSR0']:.1%}, verified: {c['verified0']}; a model trained on "
    f"the clean set: WSR {floor['WSR']:.1%}, verified: {floor['verified']}.",
    f"* **WSR after fine-tuning** ({ft_budget}): {last['WSR']:.1%}, p = {last['p_value']:.2g} — "
    + (f"{'confirmed' if c['survives'] else 'NOT confirmed'} that the watermark survives (WSR at least half its "
       f"start, {c['WSR0'] / 2:.1%}, and still verified).{dips}" if c["learnt"]
       else untestable + "."),
    f"* **BA collapse beyond 80% pruning**: {'confirmed' if c['collapse'] else 'NOT confirmed'} "
    f"(lowest BA at >= 80%: {c['lowest_high_BA']:.1%}; BA first below half its start at "
    f"{'no rate' if c['first_collapse'] is None else format(c['first_collapse'], '.0%')})."
    if c["collapse"] is not None
    else "* Pruning above 80% not run.",
    f"* Ownership still proved at every pruning rate up to {c['proved_up_to']:.0%}." if c["proved_up_to"] is not None
    else f"* Ownership under pruning: {untestable}." if not c["learnt"]
    else "* Ownership was not proved at any pruning rate, not even 0% (the unpruned model): see the pruning table's p.",
    "* **Pruning removes the watermark only once BA collapses**: "
    + (untestable if not c["learnt"] else "not testable (no BA collapse in the range)"
       if c["first_collapse"] is None else
       f"{'confirmed' if c['removed_only_at_collapse'] else 'NOT confirmed'} (verification first lost at "
       f"{lost_at}, BA below half its start from {c['first_collapse']:.0%})") + ".",
    f"* Measured on {ds.name} ({'subset' if ds.is_subset else 'full'}), {profile} profile"
    + (": smoke numbers are meaningless by design." if cfg.name == "smoke" else "."),  # not said of quick or paper
])))
