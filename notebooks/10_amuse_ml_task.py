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
# # 10 · Does a watermarked dataset still train a good classifier?
#
# The AMUSE paper (Ranjbar Alvar et al., ICME 2025) trains a classifier on a watermarked copy of Flowers-102 and
# compares it with one trained on the clean set: a dataset watermark should not cost the dataset its usefulness.
# Here the same experiment with the one dovlib trainer (`dovlib.train.fit`), four training sets:
#
# * **clean**: the training images as they are,
# * **clean_resampled**: the same images sent through the embedding's round trip (below) without a mark,
# * **baseline**: the whole L-bit message in every training image (`RepeatCodec`),
# * **AMUSE**: short sub-messages (`AmuseCodec.from_rho(L, rho)`); whether they change the images less is measured
#   below (`psnr_vs_resampled`; DCT-DWT spreads any number of bits over every block, so expect equal PSNR there),
#
# all evaluated on the same clean test set. The default dataset is the CIFAR-10 subset (kept offline, labelled as a
# subset everywhere) on every profile, online or not; the paper's Flowers-102 is `dataset="flowers102"` and needs
# internet. DCT-DWT needs >= 256x256 images, so small images are upsampled to 256x256 for embedding and resized back
# to their size for training (`dovlib.imwm.embed_at_size`). That round trip changes the images by itself (the table
# below gives how much: `psnr_train_size` of clean_resampled), so the marked sets are compared with
# **clean_resampled** (`dovlib.imwm.resize_round_trip`: the same resizes, no mark; `*_minus_resampled`,
# `psnr_vs_resampled`); the comparison with **clean** (`*_minus_clean`, `psnr_train_size`) includes the resampling.
# The notebook also measures how much of the mark survives the round trip, and says so where none does: a set marked
# at 256x256 and resized back to 32x32 may carry no readable mark at the size it is trained at.

# %% tags=["parameters"]
profile = "smoke"  # smoke | quick | paper (see dovlib/params.py)
dataset = "cifar10-subset"  # RGB: cifar10-subset | flowers102 (the paper's, online) | a dovlib.data name | folder:PATH
method = "dwtDct"  # dwtDct | dwtDctSvd | rivaGan (carries 32 bits at most; slow on a CPU)
scale = 36  # DCT quantisation step
message_bits = 100  # L: the owner's message
rho = 0.8  # AMUSE rho_max
arch = "resnet18"  # resnet18 | resnet34 | vgg16 | vgg19
n_train = None  # training images, 10 up to the split's size; None: the profile's (smoke: 200 unless its string sets it)
seed = 0  # seeds subsampling, messages and training
n_models = None  # classifiers per set, at least 1 (training seeds seed to seed + n_models - 1); None: the profile's
recompute = False  # True: watermark the training sets again, not read the ones saved under runs/ (models: see below)

# %% [markdown]
# ## Setup

# %%
import pandas as pd
import seaborn as sns

from dovlib.amuse import AmuseCodec, RepeatCodec, random_message
from dovlib.data import check_rgb_dataset, load_dataset
from dovlib.imwm import ImWatermarker, embed_at_size, extract_dataset, resize_round_trip, to_min_size
from dovlib.index import dataset_label
from dovlib.metrics import mean_psnr
from dovlib.params import PROFILES, check_bool, check_choice, check_int, get_profile, parse_fraction
from dovlib.plotting import epoch_ticks, image_grid, readable, set_title
from dovlib.report import (cached_tensors, record_summary, run_context, run_times, save_fig, save_table,
                           start_notebook, timer, write_record)
from dovlib.sscl import train_classifier
from dovlib.studies import paired_effects

NOTEBOOK = "10_amuse_ml_task"
cfg = get_profile(profile)
seed = check_int("seed", seed, 0)  # "1" or 1.0 from papermill -> 1; -1 or 1.5 refused by name
check_choice("method", method, ("dwtDct", "dwtDctSvd", "rivaGan"))
check_rgb_dataset(dataset, "dataset", method)  # refused by name, before loading (or downloading) it
message_bits = check_int("message_bits", message_bits, 1)
rho = parse_fraction("rho", rho, 0.0, 1.0, high_inclusive=False)
check_choice("arch", arch, ("resnet18", "resnet34", "vgg16", "vgg19"))
check_bool("recompute", recompute)  # the string "False" is refused here, not read as True
n_models_used = cfg.n_models if n_models is None else check_int("n_models", n_models, 1)
train_seeds = list(range(seed, seed + n_models_used))
# the codecs and their watermarkers first: a message longer than the method carries fails here, before any data
codecs = {"baseline": RepeatCodec(message_bits, seed), "amuse": AmuseCodec.from_rho(message_bits, rho, seed)}
watermarkers = {name: ImWatermarker(method, codec.sub_message_bits, scale) for name, codec in codecs.items()}
scale_used = None if method == "rivaGan" else scale  # as the record names it: rivaGan ignores the parameter
device = start_notebook(profile, seed, cfg.device)

# %% [markdown]
# ## Data

# %%
# smoke trains on 200 images unless the profile string sets another n_train ("smoke:n_train=1000"; the smoke
# profile's own 600 is the profile, as records key it) or the n_train parameter is given
smoke_default = cfg.name == "smoke" and cfg.n_train == PROFILES["smoke"].n_train
# (the count used is n_train_used: n_train stays as given, so running this cell again reads None again)
given = n_train is not None
n_train_used = check_int("n_train", n_train, 10) if given else (200 if smoke_default else cfg.n_train)
full = load_dataset(dataset)
if given:  # refused above the training split, naming its size (not silently capped)
    if len(full.x_train) < 10:  # no n_train fits: say so, not an empty range [10, N]
        raise ValueError(f"dataset {dataset!r}: its training split is too small for n_train: it holds "
                         f"{len(full.x_train)} images, n_train needs at least 10")
    n_train_used = check_int("n_train", n_train, 10, len(full.x_train))
ds = full.subsample(n_train_used, cfg.n_test, seed=seed)
# recorded as trained on, a count in every case: the profile's None (quick, paper: the whole split) or an n_train above
# the split keeps the split whole, and the record names its size, as -p n_train <that size> does (one set, one record)
n_train_used = len(ds.x_train)
print(ds.describe())
fig_context = run_context(profile, device, ds, perceptual="psnr")  # what figures say they were measured with

# %% [markdown]
# ## Watermark the training set
# One random L-bit message; every training image gets its sub-message (baseline: the whole message). The owner's
# check reads the first `amuse_images` marked images (the profile's), at the embedding size and after the round trip.
# Each watermarked set is saved under `runs/` (keyed by these settings, the images and the code), so a run cut short
# while training does not embed again; `recompute = True` embeds anyway. `clean_resampled` takes the same round trip
# without a mark (cheap: not saved).

# %%
# a set read back from runs/ counts its reading in wall_time, what embedding it took in compute_time
with timer() as t_embed:  # this cell's own time: run again after an interrupt, this run's
    message = random_message(message_bits, seed)
    resampled = resize_round_trip(ds.x_train)  # the marked sets' round trip, no mark (unchanged where none is needed)
    train_sets, quality = {"clean": ds.x_train, "clean_resampled": resampled}, []
    m = cfg.amuse_images
    embed_seconds, reused = 0.0, []  # what embedding the two sets took (read back: when computed)
    for name, codec in codecs.items():
        wm = watermarkers[name]
        subs = codec.encode(message, len(ds.x_train))
        key = {"set": name, "data": fig_context["data_hash"], "method": method, "scale": scale_used,
               "message_bits": message_bits, "rho": rho, "seed": seed, "keep": m}
        out, was_reused, seconds = cached_tensors(NOTEBOOK, key, lambda: dict(zip(
            ("marked", "marked_up"), embed_at_size(wm, ds.x_train, subs, keep=m))), recompute=recompute)
        marked, marked_up = out["marked"], out["marked_up"]  # only the m read below kept at the embedding size
        embed_seconds += seconds
        reused += [name] * was_reused
        train_sets[name] = marked
        at_embed = extract_dataset(wm, codec, marked_up[:m], message, subs[:m])  # the owner's full-size copies
        round_trip = extract_dataset(wm, codec, to_min_size(marked[:m]), message, subs[:m])  # the released small images
        quality.append({"set": name, "sub_message_bits": codec.sub_message_bits,
                        "psnr_train_size": mean_psnr(ds.x_train, marked),
                        "psnr_vs_resampled": mean_psnr(resampled, marked),
                        "psnr_embed_size": mean_psnr(to_min_size(ds.x_train[:m]), marked_up[:m]),
                        "bit_acc_embed_size": at_embed["bit_acc"], "word_acc_embed_size": at_embed["word_acc"],
                        "sub_bit_acc_embed_size": at_embed["sub_bit_acc"], "bit_acc_round_trip": round_trip["bit_acc"],
                        "word_acc_round_trip": round_trip["word_acc"],
                        "sub_bit_acc_round_trip": round_trip["sub_bit_acc"]})
    quality.append({"set": "clean_resampled", "psnr_train_size": mean_psnr(ds.x_train, resampled)})  # the blur alone
    quality = pd.DataFrame(quality)
embed_hw = tuple(marked_up.shape[-2:])  # 256x256 for small images (upsampled); larger images embed at their own size
print(f"embedding took {embed_seconds:.0f} s" + (f" (read back from runs/: {', '.join(reused)})" if reused else ""))
print(quality.set_index("set").T.apply(lambda row: row.map(  # one row per quantity; -: does not apply
    lambda v: "-" if pd.isna(v) else f"{v:.0f}" if row.name == "sub_message_bits" else f"{v:.3f}"), axis=1)
    .rename_axis(columns=None).to_string())
# a mark the owner cannot read back from the released (training-size) images: after the round trip, both the
# per-image bits and the rebuilt message near chance (0.5), so neither the images nor the vote over them hold it
unreadable = quality[(quality.bit_acc_round_trip < 0.6) & (quality.sub_bit_acc_round_trip < 0.6)]  # NaN: clean
size = ds.image_shape[1]
mark_note = "" if unreadable.empty else (
    f" At {size}x{size} the {' and '.join(unreadable.set)} marks are not readable: rebuilt-message bit accuracy "
    f"after the round trip {', '.join(f'{v:.2f}' for v in unreadable.bit_acc_round_trip)} (per image "
    f"{', '.join(f'{v:.2f}' for v in unreadable.sub_bit_acc_round_trip)}; chance 0.5), so these training sets carry "
    f"no readable mark at this size: they were marked at {embed_hw[0]}x{embed_hw[1]} and resized, and what they "
    "measure is the change marking left, not a dataset an owner can check.")
marked_as = {name: "marked-then-resized" if name in set(unreadable.set) else "watermarked" for name in codecs}
print(("WARNING:" + mark_note) if mark_note else f"every mark reads above chance at {size}x{size} after the round "
      f"trip (rebuilt-message bit accuracy {', '.join(f'{v:.2f}' for v in quality.bit_acc_round_trip.dropna())})")

# %%
fig = image_grid({k: v[:8] for k, v in train_sets.items()}, ncols=8)
save_fig(fig, "examples", NOTEBOOK, **fig_context);

# %% [markdown]
# ## Train classifiers on each training set
# The same trainer and budget for the four sets, `n_models` classifiers each: training seed s (initial weights and
# data order) is the same for every set, so each set's difference from clean_resampled is paired seed by seed, and
# the spread of those differences says whether a difference is the mark's or the seed's (a paired t-test over the
# seeds, `dovlib.studies.paired_effects`; one model per set cannot tell them apart). Each model is checkpointed
# under `runs/sscl/` by `dovlib.sscl.train_classifier`, keyed by its training data, test set and settings: an
# interrupted run resumes, and a finished model is loaded (with its training curve), not trained again; `recompute`
# does not retrain it (the same marked set is the same key): delete its `runs/sscl/` folder to train it afresh.

# %%
# a model read back from runs/ counts its reading in wall_time, what training it took in compute_time
with timer() as t_train:  # this cell's own time: run again after an interrupt, this run's
    models, histories = [], []
    for s in train_seeds:
        for name, x_train in train_sets.items():
            res = train_classifier(x_train, ds.y_train, ds.x_test, ds.y_test, arch=arch, profile=cfg, seed=s,
                                   num_classes=ds.num_classes, key_test=True)  # the curve below is on this test set
            read_back = res.resumed_from_epoch == len(res.history)
            models.append({"set": name, "train_seed": s, "test_acc": res.final["test_acc"],
                           "train_acc": res.final["train_acc"], "wall_time": res.wall_time,
                           "trained_on": res.trained_on, "training_precision": res.precision,
                           "trained_by": res.trained_by})  # CPUs with other kernels train other weights
            histories.append(pd.DataFrame(res.history).assign(set=name, train_seed=s))
            print(f"seed {s} {name:15s} test accuracy {res.final['test_acc']:.4f}"
                  + (f" (model read back from runs/, trained on {res.trained_on} ({res.trained_by}) in "
                     f"{res.precision})" * read_back))
    models = pd.DataFrame(models)
# per set: mean test accuracy over the seeds, and its seed-paired difference from clean (the resampling's effect
# included) and from clean_resampled (the mark's own effect), with their spread and paired t-test p
vs_clean = paired_effects(models, "test_acc", "clean")
vs_resampled = paired_effects(models, "test_acc", "clean_resampled").rename(columns=lambda c: c.replace(
    "minus_clean_resampled", "minus_resampled"))
results = (models.groupby("set", sort=False, as_index=False)
           .agg(train_acc=("train_acc", "mean"), wall_time=("wall_time", "sum"),
                trained_on=("trained_on", lambda v: ", ".join(dict.fromkeys(v))),
                training_precision=("training_precision", lambda v: ", ".join(dict.fromkeys(v))),
                trained_by=("trained_by", lambda v: "; ".join(dict.fromkeys(v))))  # names hold commas
           .merge(vs_clean[["set", "n", "test_acc", "test_acc_std", "test_acc_minus_clean", "p_vs_clean"]], on="set")
           .merge(vs_resampled[["set", "test_acc_minus_resampled", "test_acc_minus_resampled_std",
                                "p_vs_clean_resampled"]], on="set")
           .merge(quality, on="set", how="left"))
results = results[["set", "n", "test_acc", "test_acc_std", "train_acc"]
                  + [c for c in results.columns if c not in ("set", "n", "test_acc", "test_acc_std", "train_acc")]]
shown = {"set": "set", "n": "n", "test_acc": "test_acc", "test_acc_std": "test_sd", "train_acc": "train_acc",
         "test_acc_minus_clean": "vs_clean", "p_vs_clean": "p_clean", "test_acc_minus_resampled": "vs_resampled",
         "test_acc_minus_resampled_std": "vs_resampled_sd", "p_vs_clean_resampled": "p_resampled"}  # a narrow print
print(readable(results[list(shown)].rename(columns=shown), digits=4).to_string(index=False))  # a p 3e-05 not 0.0000
print("vs_*: test_acc minus clean's / clean_resampled's, paired by training seed (mean; vs_resampled_sd: their sd), "
      "p_*: paired t-test; the marks' quality: the table above; every column: ml_task.csv (the Record cell below)")
effect = results.set_index("set").loc[list(codecs)]
if n_models_used < 2:
    effect_note = (f"One classifier per set (training seed {seed}): a difference from clean_resampled cannot be told "
                   "from a seed's; n_models 2 or more measures the spread.")
else:
    seed_sd = results.set_index("set").loc["clean_resampled", "test_acc_std"]
    effect_note = (f"Against clean_resampled, over {n_models_used} training seeds ({train_seeds[0]} to "
                   f"{train_seeds[-1]}, paired): " + "; ".join(
                       f"{name} {100 * r.test_acc_minus_resampled:+.1f} points (sd "
                       f"{100 * r.test_acc_minus_resampled_std:.1f}, paired t-test p {r.p_vs_clean_resampled:.2g})"
                       for name, r in effect.iterrows())
                   + f"; the clean_resampled model itself moves {100 * seed_sd:.1f} points (sd) between seeds.")
print(effect_note)

# %%
hist = pd.concat(histories)  # several seeds: each set's mean curve, its band one standard deviation
g = sns.relplot(data=hist, x="epoch", y="test_acc", hue="set", kind="line", marker="o", height=3.2, aspect=1.4,
                errorbar="sd")
g.set_axis_labels("epoch", "test accuracy")  # not the column's name, test_acc
epoch_ticks(*g.axes.flat)  # whole epochs: at smoke (two) the axis read 1.2, 1.4, ...
seeds_note = f"; mean of {n_models_used} training seeds, band 1 sd" if n_models_used > 1 else ""
set_title(g, f"{arch} on {dataset_label(fig_context)} ({profile} profile, {device}{seeds_note})")  # subset or full
save_fig(g.figure, "test_accuracy", NOTEBOOK, **fig_context);

# %% [markdown]
# ## Record

# %%
context = {**fig_context, **run_times(t_embed, t_train)}
save_table(results, "ml_task", NOTEBOOK,
           caption=f"{arch} trained on clean / clean_resampled (the embedding's resize round trip, no mark) / "
                   f"baseline-{marked_as['baseline']} / AMUSE-{marked_as['amuse']} (rho={rho:g}) training sets, "
                   f"{watermarkers['amuse'].label}, L={message_bits}; clean test set. {ds.describe()}; {profile} "
                   f"profile, {device}. Embedding at {embed_hw[0]}x{embed_hw[1]}, training at {size}x{size}. "
                   "test_acc_minus_resampled and psnr_vs_resampled compare with clean_resampled (the mark's effect); "
                   "test_acc_minus_clean and psnr_train_size with clean (including the resampling). "
                   f"test_acc: mean of n = {n_models_used} classifier(s) per set (training seeds {seed} to "
                   f"{train_seeds[-1]}, the same for every set), _std their sample standard deviation, p_vs_*: paired "
                   f"t-test over the seeds (none with one). {effect_note}"
                   f"{mark_note} The paper's Flowers-102 numbers were not found, so no paper column.", **context)
save_table(models, "ml_task_models", NOTEBOOK, caption=f"Every classifier of the ml_task table, one row per training "
           f"set and training seed ({arch}, {profile} profile, {device}; {ds.describe()}).", **context)
metrics = {f"{r.set}_{k}": getattr(r, k) for r in results.itertuples()
           for k in ("test_acc", "test_acc_std", "test_acc_minus_clean", "test_acc_minus_resampled",
                     "test_acc_minus_resampled_std", "p_vs_clean", "p_vs_clean_resampled", "psnr_train_size",
                     "psnr_vs_resampled", "psnr_embed_size", "bit_acc_embed_size",
                     "word_acc_embed_size", "sub_bit_acc_embed_size", "bit_acc_round_trip", "word_acc_round_trip",
                     "sub_bit_acc_round_trip") if pd.notna(getattr(r, k))}
metrics.update({f"{name}_mark_readable_round_trip": name not in set(unreadable.set) for name in codecs})
record = write_record(NOTEBOOK, params={"profile": profile, "dataset": dataset, "method": method, "scale": scale_used,
                                        "message_bits": message_bits, "rho": rho, "arch": arch, "n_train": n_train_used,
                                        "seed": seed, "n_models": n_models_used},
                      metrics=metrics, **context)
print(record_summary(record, notebook=NOTEBOOK))
