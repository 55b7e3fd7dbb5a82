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
# # 07 · AMUSE: bit and word accuracy against message length, without and with attacks
#
# A dataset owner hides an L-bit message in a set of images. The **baseline** puts the whole message in every image
# and takes a bitwise majority vote at extraction; **AMUSE** (Ranjbar Alvar et al., ICME 2025) splits it into `n`
# chunks and gives every image only `k` of them plus a combination index (`dovlib.amuse.AmuseCodec`), so each image
# carries a much shorter sub-message. This notebook measures, for an off-the-shelf image watermark
# (`dovlib.imwm`: DCT-DWT, DCT-DWT-SVD or RivaGAN from `invisible-watermark`):
#
# * per-image sub-message bit accuracy, and bit / word accuracy of the rebuilt L-bit message,
# * without attack and after image attacks (`dovlib.attacks`, from the 45-attack grid of Fernandez et al. 2022: all
#   45 on `paper`, one per family (8) otherwise; `-p attacks grid` for all),
# * and, first, the limits of the watermark itself: JPEG with 4:2:0 vs 4:4:4 chroma subsampling and centre crops.
#
# Word accuracy (WA) is the share of messages rebuilt exactly (one per random message); bit accuracy (BA) the share
# of correct bits of the rebuilt message. Bits that no surviving image carries count as wrong, so a failed AMUSE
# rebuild can score below chance (the AMUSE authors score a failed rebuild 0); `failed` is the share of rebuilds that
# missed some bits altogether.

# %% tags=["parameters"]
profile = "smoke"  # smoke | quick | paper (see dovlib/params.py)
method = "dwtDct"  # dwtDct | dwtDctSvd | rivaGan (at most 32 bits; its ONNX nets take minutes on a CPU, even smoke)
scale = 36  # DCT quantisation step (the AMUSE paper uses 36, 30, 20); ignored by rivaGan
message_bits = None  # message lengths L to sweep, e.g. [100, 200, 300] or "100,200"; None: the profile's list
rho = 0.8  # AMUSE rho_max: any leaked share of images above it must still hold the whole message
attacks = None  # none | representative (8) | grid (45) | hidden (6, HiDDeN's noises); None: representative, paper grid
dataset = "skimage-photos"  # image pool of RGB images: skimage-photos (256x256 crops), cifar10-subset, folder:PATH, ...
n_messages = None  # random messages per setting (the paper: 10); None: smoke 1, quick 3, paper 10
seed = 0  # seeds image sampling and messages
recompute = False  # True: compute every setting again, not read the ones a run with this code finished (runs/)

# %% [markdown]
# ## Setup

# %%
import time

import numpy as np
import pandas as pd
import seaborn as sns

from dovlib.amuse import AmuseCodec, RepeatCodec, random_messages
from dovlib.attacks import ATTACKS, attack_set, attack_set_label, jpeg
from dovlib.data import check_rgb_dataset, load_dataset
from dovlib.imwm import ImWatermarker, evaluate_dataset, sample_images
from dovlib.index import dataset_label
from dovlib.metrics import bit_accuracy, mean_psnr
from dovlib.params import check_bool, check_choice, check_int, get_profile, parse_fraction, parse_list
from dovlib.plotting import image_grid, set_title
from dovlib.report import (NOTHING_TRAINED, cached_frame, env_info, record_summary, run_times, save_fig, save_table,
                           start_notebook, timer, write_record)
from dovlib.train import data_hash

NOTEBOOK = "07_amuse_message_length"
cfg = get_profile(profile)
seed = check_int("seed", seed, 0)  # "1" or 1.0 from papermill -> 1; -1 or 1.5 refused by name
check_choice("method", method, ("dwtDct", "dwtDctSvd", "rivaGan"))
check_rgb_dataset(dataset, "dataset", method)  # any RGB set or folder:PATH; refused before loading
# values resolved from the parameters get names of their own (lengths, attacks_used, n_messages_used): the parameters
# stay as given, so running this cell again reads the same None defaults
default_bits = [16, 32] if method == "rivaGan" else ([32, 64] if cfg.name == "smoke" else [32, 64, 100, 200, 300])
lengths = parse_list("message_bits", default_bits if message_bits is None else message_bits,
                     lambda v: check_int("message_bits", v, 1))
rho = parse_fraction("rho", rho, 0.0, 1.0, high_inclusive=False)
attacks_used = attacks or ("grid" if cfg.name == "paper" else "representative")
attack_names = attack_set(attacks_used)
n_messages_used = check_int("n_messages", {"smoke": 1, "quick": 3}.get(cfg.name, 10) if n_messages is None
                            else n_messages, 1)
check_bool("recompute", recompute)  # the string "False" is refused here, not read as True
probe = ImWatermarker(method, scale=scale)
capacity, wm_label = probe.capacity_bits, probe.label  # label: 'dwtDct (scale 36)'; rivaGan has no scale
scale_used = None if method == "rivaGan" else scale  # as the record names it: rivaGan ignores the parameter
too_long = [L for L in lengths if AmuseCodec.from_rho(L, rho, seed).sub_message_bits > capacity]
if len(too_long) == len(lengths):  # lengths only some schemes fit are run for those and skipped for the others
    raise ValueError(f"message_bits {lengths}: even AMUSE's sub-messages (rho {rho:g}) exceed {method}'s "
                     f"capacity_bits = {capacity} for every length; give shorter messages")
start_notebook(profile, seed, "cpu", note="invisible-watermark runs on the CPU");

# %% [markdown]
# ## Images
# `invisible-watermark` refuses images under 256x256 pixels, so the pool is cut into 256x256 crops (photos) or
# upsampled to 256x256 (CIFAR-10 subset; said so in the record). `amuse_images` of the profile sets how many.

# %%
ds = load_dataset(dataset)
images = sample_images(ds.x_train, cfg.amuse_images, side=256, seed=seed)
image_note = {"skimage-photos": "random 256x256 crops (flipped at random) of scikit-image's photos",
              "cifar10-subset": "CIFAR-10 subset images upsampled (bicubic) from 32x32 to 256x256"}
image_note = image_note.get(dataset, ds.note)
print(ds.describe())
print(f"{len(images)} images {tuple(images.shape[1:])}: {image_note}")
# what drew the figures; the perceptual measure named as notebooks 01-06 name theirs: PSNR, the only one measured
fig_context = dict(profile=profile, dataset=ds.name, is_subset=ds.is_subset, perceptual="psnr", device="cpu",
                   device_name=env_info("cpu")["device_name"])
# every figure title names the images, subset or full, as the report index labels the captions ("cifar10-subset
# (subset)"; a folder by the path it was given): results on a subset say so in every report, figures included
pool_label = dataset_label({**fig_context, "dataset": dataset})

# %% [markdown]
# ## The watermark's own limits
# The DCT methods write into the U (chroma) channel only. JPEG's usual 4:2:0 chroma subsampling halves that channel's
# resolution; 4:4:4 keeps it. A centre crop moves the 8x8 block grid (it is resized back to the original size before
# extraction, as every size-changing attack here).

# %%
with timer() as t_limits:  # this cell's own time (run again: this run's), for the record's wall and compute time
    wm32 = ImWatermarker(method, 32, scale)
    bits32 = np.random.default_rng(seed).integers(0, 2, (len(images), 32)).astype(np.uint8)
    marked32 = wm32.embed(images, bits32)
    limits = {"none": marked32, "jpeg90_420": jpeg(marked32, 90, "4:2:0"), "jpeg90_444": jpeg(marked32, 90, "4:4:4"),
              "jpeg50_420": jpeg(marked32, 50, "4:2:0"), "jpeg50_444": jpeg(marked32, 50, "4:4:4"),
              "center_crop_0.9": ATTACKS["center_crop_0.9"](marked32)}
    limits_df = pd.DataFrame([{"condition": k, "bit_acc": float(bit_accuracy(wm32.extract(v), bits32).mean())}
                              for k, v in limits.items()])
    limits_df["mark_psnr_db"] = mean_psnr(images, marked32)  # of the marked images before any attack, every row
print(limits_df.to_string(index=False))

# %%
fig = image_grid({"cover": images[:6], f"{method} 32 bits": marked32[:6],
                  "x8 difference": ((marked32[:6].float() - images[:6].float()) * 8 + 128).clamp(0, 255).byte()},
                 ncols=6, scale=1.6)
set_title(fig, f"{wm_label}, 32 bits per image: {len(images[:6])} of {len(images)} images from {pool_label} "
               f"({profile} profile)")
save_fig(fig, "examples", NOTEBOOK, **fig_context);

# %% [markdown]
# ## Accuracy against message length
# For every L: the baseline (`RepeatCodec`: L bits per image) and AMUSE (`AmuseCodec.from_rho(L, rho)`: its
# sub-message length per image), each on the same images and messages, without attack and after each attack. Each
# (L, scheme) is kept under `runs/` as it finishes (`cached_frame`): an interrupted run resumes where it was.

# %%
# a setting read back from runs/ counts its reading in wall_time, what computing it took in compute_time
with timer() as t_sweep:  # this cell's own time: run again after an interrupt, this run's
    start = time.perf_counter()
    frames, codecs, images_hash, skipped, skipped_at = [], {}, data_hash(images), [], {}
    capacity = ImWatermarker(method, scale=scale).capacity_bits  # bits per image the method carries
    for L in lengths:
        for codec in (RepeatCodec(L, seed), AmuseCodec.from_rho(L, rho, seed)):
            if codec.sub_message_bits > capacity:
                print(f"skip {codec!r}: more bits per image than {method} carries")
                skipped.append(f"{codec.name} at L={L} ({codec.sub_message_bits} bits per image)")
                skipped_at.setdefault(L, []).append(codec.name)
                continue
            codecs[(L, codec.name)] = codec
            wm = ImWatermarker(method, codec.sub_message_bits, scale)
            messages = random_messages(L, n_messages_used, seed)  # each seed its own messages (not seed + i: shared)
            key = {"method": method, "scale": scale_used, "codec": repr(codec), "seed": seed,  # rivaGan: no scale
                   "messages": n_messages_used, "message_hash": data_hash(messages), "attacks": attack_names,
                   "images": images_hash}
            df, reused, seconds = cached_frame(NOTEBOOK, key, lambda: evaluate_dataset(wm, codec, images, messages,
                                                                                       attack_names, seed=seed),
                                               recompute=recompute)
            frames.append(df.assign(L=L, scheme=codec.name, sub_message_bits=codec.sub_message_bits))
            print(f"L={L:4d} {codec.name:8s} {codec.sub_message_bits:4d} bits/image "
                  f"{f'reused ({seconds:.0f} s when computed)' if reused else 'done'} "
                  f"({time.perf_counter() - start:.0f} s)")
    results = pd.concat(frames, ignore_index=True)
    results["attacked"] = np.where(results["attack"] == "none", "no attack", "attacked (mean)")

# %%
summary = (results.groupby(["L", "scheme", "sub_message_bits", "attacked"], as_index=False)
           [["psnr", "sub_bit_acc", "bit_acc", "word_acc", "failed"]].mean())
print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

# %%
long = summary.melt(id_vars=["L", "scheme", "attacked"], value_vars=["bit_acc", "word_acc"], var_name="metric",
                    value_name="accuracy")
g = sns.relplot(data=long, x="L", y="accuracy", hue="scheme", style="attacked", col="metric", kind="line",
                marker="o", height=3.2, aspect=1.2)
g.set(ylim=(-0.02, 1.02))
set_title(g, f"{wm_label}, {len(images)} images from {pool_label}, rho={rho:g}, {attack_set_label(attacks_used)} "
             f"({profile} profile, CPU)")
save_fig(g.figure, "accuracy_vs_length", NOTEBOOK, **fig_context);

# %% [markdown]
# Per attack family (mean over the family's parameters), rebuilt-message bit accuracy:

# %%
if attack_names:
    fam = (results[results.attack != "none"].groupby(["family", "L", "scheme"], as_index=False)
           [["bit_acc", "word_acc", "sub_bit_acc"]].mean())
    g = sns.catplot(data=fam, x="family", y="bit_acc", hue="scheme", col="L", kind="bar", height=3, aspect=1.4)
    g.set_xticklabels(rotation=45, ha="right")
    set_title(g, f"{wm_label}, {len(images)} images from {pool_label}, rho={rho:g}: per attack family of the "
                 f"'{attacks_used}' set ({profile} profile, CPU)")
    save_fig(g.figure, "accuracy_by_attack_family", NOTEBOOK, **fig_context)

# %% [markdown]
# ## Record

# %%
# which schemes the tables hold: a scheme past the method's capacity was skipped, and the captions say so
compared = " vs ".join(dict.fromkeys(name for _, name in codecs)).replace("amuse", f"AMUSE (rho={rho:g})")
not_run = f" Not run (past {method}'s {capacity} bits per image): {', '.join(skipped)}." if skipped else ""
context = dict(profile=profile, dataset=ds.name, is_subset=ds.is_subset, perceptual="psnr",
               dataset_note=f"{len(images)} images: {image_note}", device="cpu",
               device_name=env_info("cpu")["device_name"], **run_times(t_limits, t_sweep),
               training_precision=NOTHING_TRAINED)  # not the profile's fp32: no network is trained here
save_table(summary, "accuracy_vs_length", NOTEBOOK,
           caption=f"{wm_label}: {compared}, mean over {n_messages_used} messages; "
                   + (f"attacked = mean over the '{attacks_used}' attack set; psnr = the marked images against "
                      f"their covers (before any attack, on attacked rows too). " if attack_names else
                      "no attacks (attacks 'none'); psnr = the marked images against their covers. ")
                   + f"{len(images)} images ({image_note}); "
                   f"{profile} profile, CPU.{not_run}", **context)
save_table(limits_df, "watermark_limits", NOTEBOOK,
           caption=f"{wm_label}, 32 bits per image, per-image bit accuracy under JPEG 4:2:0 vs 4:4:4 and a centre crop "
                   f"keeping 90% of the area ({len(images)} images, {image_note}; CPU).", **context)
if attack_names:
    save_table(fam, "accuracy_by_attack_family", NOTEBOOK,
               caption=f"{wm_label}, {compared}: rebuilt-message bit and word "
                       f"accuracy and sub-message bit accuracy per attack family (mean over the family's attacks in "
                       f"the '{attacks_used}' set and {n_messages_used} messages); {len(images)} images "
                       f"({image_note}); CPU.{not_run}",
               **context)
written = []
for L in lengths:
    if len(skipped_at.get(L, [])) == 2:  # neither scheme fits the method at this L: nothing was measured
        continue
    metrics = {"skipped": skipped_at.get(L, [])}
    for (scheme, attacked), row in summary[summary.L == L].set_index(["scheme", "attacked"]).iterrows():
        tag = "clean" if attacked == "no attack" else "attacked"
        metrics.update({f"{scheme}_{tag}_bit_acc": row.bit_acc, f"{scheme}_{tag}_word_acc": row.word_acc,
                        f"{scheme}_{tag}_sub_bit_acc": row.sub_bit_acc, f"{scheme}_psnr": row.psnr,
                        f"{scheme}_sub_message_bits": int(row.sub_message_bits)})
    metrics.update({f"limit_{r.condition}_bit_acc": r.bit_acc for r in limits_df.itertuples()})
    written.append(write_record(
        NOTEBOOK, params={"profile": profile, "method": method, "scale": scale_used, "message_bits": L, "rho": rho,
                          "attacks": attacks_used, "dataset": dataset, "n_messages": n_messages_used, "seed": seed},
        metrics=metrics, **context))
bits = ", ".join(str(r["params"]["message_bits"]) for r in written)
print(f"{len(written)} record{'s' * (len(written) != 1)} (message_bits {bits}), "  # one run: the same context
      + record_summary(written[-1], notebook=NOTEBOOK) if written else "no record: no message length was measured")
