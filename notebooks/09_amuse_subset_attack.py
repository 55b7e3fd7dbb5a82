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
# # 09 · AMUSE under the subset attack: how much of a dataset must leak to rebuild the message?
#
# A dataset owner hides an L-bit message in every image. An adversary who uses only a random share of the images
# leaves the owner only their sub-messages. Three codecs from `dovlib.amuse` are compared:
#
# * **baseline** (`RepeatCodec`): the whole message in every image; any single image carries it, but it costs L bits.
# * **AMUSE** (`AmuseCodec`, the paper's Algorithm 2 via `choose_nk`): `n` chunks, `k` per image plus
#   `ceil(log2 C(n, k))` ordering bits; every chunk survives any leaked share above `rho = (n - k) / n`.
# * **erasure** (`ErasureCodec`, beyond the paper): Reed-Solomon fragments (`reedsolo`); any `k` distinct fragments
#   of `n` rebuild the message, so any leaked share above `(k - 1) / n` suffices. Its `k` is chosen so that a
#   sub-message is no longer than AMUSE's (at most AMUSE's bits per image, so at most its embedding cost).
#
# Both ratios are exact when the images split evenly over AMUSE's C(n, k) combinations or the code's n fragments;
# otherwise a few more images are needed, and `min_leak_count` (below) gives the exact guarantee for these images.
#
# For each leaked share, `amuse_subsets` distinct random subsets (paper: 100) are decoded by majority vote, or every
# subset once where there are no more (1 image of 40 has 40 subsets, all 40 images one). Extraction is
# simulated (`ideal`: error-free; `bitflip`: each extracted bit flipped with `bit_error_rate`) or real: the
# sub-messages are embedded into 256x256 images with `method` (DCT-DWT or DCT-DWT-SVD from the invisible-watermark
# package, `dovlib.imwm`) and extracted again. Bits that no leaked image carries count as wrong (never guessed).
#
# `.venv/bin/papermill notebooks/09_amuse_subset_attack.ipynb out.ipynb -p profile quick -p method dwtDct`.

# %% tags=["parameters"]
profile = "smoke"  # smoke | quick | paper (images and subsets per share; see dovlib/params.py)
method = "simulated"  # simulated (ideal + bitflip) | ideal | bitflip | dwtDct | dwtDctSvd (real extraction)
message_bits = 300  # L, bits of the owner message, at least 3 (paper: 30, 100, 200, 300)
rho = 0.8  # rho_max of AMUSE for choose_nk (paper: 0.8 and 0.6 for L 100-300, 0.5 and 0.8 for L 30)
erasure_n = None  # erasure code fragments (1-255; None: 31 or the largest below it that fits, else the smallest)
bit_error_rate = 0.02  # bitflip: probability that an extracted bit is wrong
dataset = "skimage-photos"  # real extraction only: RGB image pool (256x256 crops), cifar10-subset, folder:PATH, ...
scale = 36  # real extraction only: DCT quantisation step (paper: 36, 30, 20)
shares = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # leaked shares of the images
n_images = None  # None: amuse_images of the profile (paper: 1000)
n_subsets = None  # None: amuse_subsets of the profile (paper: 100)
seed = 0  # seeds the message, the combination assignment, bit flips and the subsets

# %%
from dovlib.data import check_rgb_dataset
from dovlib.params import check_choice, check_int, get_profile, parse_fraction, parse_list

cfg = get_profile(profile)
check_choice("method", method, ["simulated", "ideal", "bitflip", "dwtDct", "dwtDctSvd"])
message_bits = check_int("message_bits", message_bits, 3)  # the smallest erasure code (n = 1) carries 3 bits
rho = parse_fraction("rho", rho, 0.0, 1.0, high_inclusive=False)
# the values used get names of their own (*_used): the parameters stay as given, so a re-run reads None again
if erasure_n is not None:
    check_int("erasure_n", erasure_n, 1, 255)
bit_error_rate = parse_fraction("bit_error_rate", bit_error_rate, 0.0, 0.5, low_inclusive=True)
shares_used = sorted(parse_list("shares", shares, lambda s: parse_fraction("shares", s)))  # a list or "0.1,0.5"
n_images_used = cfg.amuse_images if n_images is None else check_int("n_images", n_images, 1)
n_subsets_used = cfg.amuse_subsets if n_subsets is None else check_int("n_subsets", n_subsets, 1)
extractions = ["ideal", "bitflip"] if method == "simulated" else [method]
real = method in ("dwtDct", "dwtDctSvd")
if real:  # the image pool is read only for real extraction: any RGB set or folder:PATH, refused before loading
    check_rgb_dataset(dataset, "dataset", method)

# %% [markdown]
# ## Setup

# %%
import time

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from dovlib.amuse import (PAPER_SUB_MESSAGE_BITS, AmuseCodec, ErasureCodec, RepeatCodec,
                          choose_erasure_k, choose_erasure_n, choose_nk, distinct_leak_shares, flip_bits,
                          leak_shares_note, leak_subset_accuracy, random_message, recovery_share, tradeoff_table)
from dovlib.plotting import figure_legend, readable, set_title
from dovlib.report import (NOTHING_TRAINED, env_info, record_summary, save_fig, save_table, start_notebook,
                           write_record)

NOTEBOOK = "09_amuse_subset_attack"
amuse_bits = AmuseCodec.from_rho(message_bits, rho).sub_message_bits
# the erasure code must fit AMUSE's bits per image: a given erasure_n that cannot is refused, naming what fits
try:
    erasure_n_used = choose_erasure_n(message_bits, amuse_bits, erasure_n)
except ValueError as exc:
    if erasure_n is not None:  # a given erasure_n that does not fit: the error names the values that do
        raise
    raise ValueError(f"message_bits = {message_bits} with rho = {rho:g} gives AMUSE {amuse_bits} bits per image, "
                     f"which no erasure code of the comparison fits ({exc}): choose another message_bits or rho"
                     ) from None
if real:  # the method's limits (capacity for the baseline's L bits, scale) are refused here, before any output
    from dovlib.imwm import ImWatermarker

    for bits in (message_bits, amuse_bits):
        ImWatermarker(method, bits, scale, workers=1)
# each extraction as captions and titles name it, with what sets its errors: the bit error rate or the scale (only
# real extraction reads the scale: a simulated run leaves it unformatted, as its record leaves it None)
simulated_notes = {"ideal": "ideal (error-free)", "bitflip": f"bitflip (bit error rate {bit_error_rate:g})"}
extraction_note = ", ".join(simulated_notes[e] if e in simulated_notes else f"{e} (scale {scale:g})"
                            for e in extractions)
cell_seconds = {}  # what the cells doing the work (extraction, decoding) took: each cell times its own last run
# codecs are NumPy; real extraction runs invisible-watermark on the CPU
seed = check_int("seed", seed, 0)  # "1" or 1.0 from papermill -> 1; -1 or 1.5 refused by name
device = str(start_notebook(profile, seed, "cpu",
                            note=f"numpy {np.__version__} | {n_images_used} images, {n_subsets_used} subsets per "
                                 "share"))
# what every output names; its perceptual measure "none (no images)" where it is computed from no images
context = dict(profile=profile, perceptual="none (no images)", device=device,
               device_name=env_info(device)["device_name"])

# %% [markdown]
# ## Algorithm 2 against the paper
# `choose_nk` searches every (n, k) with n <= L (stopping once no larger n can win) for the shortest sub-message with
# `(n - k) / n <= rho_max`; ties go to the smallest n. The paper's rule for ordering bits is `ceil(log2 C(n, k))`.

# %%
paper_rows = [{"message_bits": L, "rho_max": r, "paper_nk": str(nk), "ours_nk": str(choose_nk(L, r)),
               "paper": bits, "ours": AmuseCodec.from_rho(L, r).sub_message_bits}
              for (L, r), (nk, bits) in PAPER_SUB_MESSAGE_BITS.items()]
paper_table = pd.DataFrame(paper_rows).assign(diff=lambda d: d["ours"] - d["paper"])
save_table(paper_table, "sub_message_bits_vs_paper", NOTEBOOK,
           caption="AMUSE sub-message length (bits per image) chosen by Algorithm 2, paper vs ours. Pure "
                   "combinatorics: no data, any profile and device.", dataset="none", **context)
paper_table

# %% [markdown]
# ## The three codecs
# AMUSE from `rho`; the erasure code with `erasure_n` fragments and the smallest `k` that fits AMUSE's bits per image.
# `rho` is the asymptotic leak ratio (any larger share holds the message, error-free, when the images split evenly
# over the labels); `min_leak_count` is the exact count for these `n_images` images (a seeded permutation of the labels,
# repeated; AMUSE's leftover images take combinations that keep its chunks as even as a greedy choice can).

# %%
message = random_message(message_bits, seed=seed)
amuse = AmuseCodec.from_rho(message_bits, rho, seed=seed)
erasure = ErasureCodec(message_bits, erasure_n_used,
                       choose_erasure_k(message_bits, erasure_n_used, amuse.sub_message_bits), seed=seed)
codecs = [RepeatCodec(message_bits, seed=seed), amuse, erasure]
codec_table = pd.DataFrame([{**c.describe(), "min_leak_count": c.min_leak_count(n_images_used),
                             "n_images": n_images_used} for c in codecs])
codec_table["min_leak_share"] = codec_table["min_leak_count"] / n_images_used
codec_table[["codec", "n", "k", "sub_message_bits", "rho", "min_unique_sub_messages", "min_leak_count",
             "min_leak_share"]]

# %% [markdown]
# ## Extraction
# Simulated: the encoded sub-messages, with bits flipped at `bit_error_rate` for `bitflip`. Real: embedded with
# `method` into 256x256 images drawn from `dataset` and extracted without attack.

# %%
t0, pool = time.perf_counter(), None
if real:
    from dovlib.data import load_dataset
    from dovlib.imwm import embed_dataset, get_watermarker, sample_images

    pool = load_dataset(dataset)
    images = sample_images(pool.x_train, n_images_used, side=256, seed=seed)
extracted, quality = {}, {}
for codec in codecs:
    subs = codec.encode(message, n_images_used)
    extracted[codec.name, "ideal"] = subs
    extracted[codec.name, "bitflip"] = flip_bits(subs, bit_error_rate, seed=seed)
    if real:
        wm = get_watermarker(method, message_bits=codec.sub_message_bits, scale=scale)
        marked, _, quality[codec.name] = embed_dataset(wm, codec, images, message)
        extracted[codec.name, method] = wm.extract(marked)
sub_bit_acc = {f"{name}/{ext}": float((extracted[name, ext] == extracted[name, "ideal"]).mean())
               for name, ext in extracted if ext in extractions}
print("per-image sub-message bit accuracy:", ", ".join(f"{k} {v:.4f}" for k, v in sub_bit_acc.items()))
print("PSNR (dB), marked images against their covers:",
      ", ".join(f"{k} {q['psnr']:.2f}" for k, q in quality.items()) if quality else "none (no image marked: simulated)")
cell_seconds["extraction"] = time.perf_counter() - t0

# %% [markdown]
# ## Accuracy against leaked share
# A leaked share is a count of images, `max(1, round(share * n_images))`: shares that round to the same count are run
# once, at the smallest of them (e.g. 0.01 and 0.02 of 40 images are both 1 image). Tables, figures and captions give
# the share leaked (1 of 40 images: 0.025), and the captions the shares asked for it where they differ.

# %%
t0 = time.perf_counter()
shares_run, shares_dropped = distinct_leak_shares(shares_used, n_images_used)  # sorted: each count at its smallest
# named as the tables and figures show them (leaked / n_images), each with the asked shares it stands for: "shares
# 0.01 (not run: 0.05)" captioned a figure whose first point is 0.05 (1 of 20 images)
shares_note = leak_shares_note(shares_used, n_images_used)
print(shares_note)
curves = pd.concat([leak_subset_accuracy(c, message, extracted[c.name, ext], shares_run, n_subsets_used, seed=seed)
                    .assign(extraction=ext) for ext in extractions for c in codecs], ignore_index=True)
# subsets are distinct; a share with no more than n_subsets of them decodes each once (all_subsets), not repeats
every_subset = curves[curves.all_subsets].groupby("share")["subset"].nunique()
subsets_note = f"{n_subsets_used} distinct random subsets per share" + (
    " (every subset once where there are no more: "
    + ", ".join(f"share {s:g}: {c} subset{'s' * (c != 1)}" for s, c in every_subset.items()) + ")"
    if len(every_subset) else "")
print(subsets_note)
long = curves.melt(id_vars=["share", "method", "extraction", "subset"], value_vars=["bit_acc", "word_acc"],
                   var_name="metric", value_name="accuracy")
g = sns.relplot(data=long, x="share", y="accuracy", hue="method", style="method", row="metric", col="extraction",
                kind="line", markers=True, errorbar=("ci", 95), n_boot=200, seed=seed, height=3.0, aspect=1.4,
                facet_kws={"sharey": False})
g.set(xscale="log")
# one legend beside the panels, in room the layout leaves for it: seaborn's, at the figure's right edge, ran into the
# second panel's title in the single-column figure (one extraction: -p method dwtDct)
g.legend.remove()
figure_legend(g.figure, title="method")
# wrapped by set_title: one line was wider than the four panels
set_title(g, f"L = {message_bits} bits, {n_images_used} images, {n_subsets_used} distinct subsets/share"
          f"{' (all, where fewer)' if len(every_subset) else ''}, extraction {extraction_note} ({profile} profile, "
          f"{device}); dashed: guaranteed leaked share for these images")
guaranteed = codec_table.set_index("codec")["min_leak_share"]  # exact for this many images (NaN: never)
for ax in g.axes.flat:
    for c, colour in zip(codecs[1:], sns.color_palette()[1:]):
        if pd.notna(guaranteed[c.name]):
            ax.axvline(max(guaranteed[c.name], curves["share"].min()), ls="--", lw=0.8, color=colour)
fig_context = {**context, "dataset": pool.name if real else "simulated", "is_subset": bool(real and pool.is_subset),
               "perceptual": "psnr" if real else "none (simulated extraction: no images)"}  # as the record says
save_fig(g.figure, "accuracy_vs_leaked_share", NOTEBOOK, **fig_context)
cell_seconds["decoding"] = time.perf_counter() - t0

# %% [markdown]
# ## Guaranteed and observed leak ratios
# `rho`: the asymptotic guarantee (any leaked share above it, error-free, images split evenly). `min_leak_share`: the
# guarantee for exactly these `n_images` images: the smallest count strictly above `rho` x `n_images`, and more when
# the images do not split evenly over combinations or fragments, so it is always above `rho`.
# `min_share_recovered`: the smallest tested share from which every random subset decoded the whole message exactly
# (random subsets do better than the worst case; bit errors make it worse).

# %%
observed = recovery_share(curves, by=("method", "extraction")).pivot(index="method", columns="extraction",
                                                                     values="min_share_recovered")
observed.columns = [f"min_share_recovered_{c}" for c in observed.columns]
compare = codec_table.set_index("codec")[["n", "k", "sub_message_bits", "rho", "min_unique_sub_messages",
                                          "min_leak_share"]].join(observed).reset_index()
compare = compare.rename(columns={"sub_message_bits": "bits_per_image", "rho": "asymptotic_leak_ratio"})
save_table(compare, "codecs_bits_vs_leak_ratio", NOTEBOOK,
           caption=f"Baseline vs AMUSE vs erasure code: bits per image, asymptotic leak ratio (rho), the "
                   f"guaranteed share for these images (min_leak_share) and the smallest "
                   f"leaked share recovered by every random subset (L = {message_bits}, {n_images_used} images, "
                   f"{subsets_note}, {shares_note}; extraction {extraction_note}; {profile} profile, "
                   f"{device}).",
           **fig_context)
readable(compare)  # each value its own digits: the baseline's rho 0, not 0.00000 (the CSV keeps every digit)

# %% [markdown]
# How to read it. Error-free, AMUSE recovers from any share above `rho` and random subsets from much smaller ones
# (each image of a random subset adds k chunks). At about the same bits per image, the erasure code guarantees
# recovery from a much smaller share (`(k - 1) / n` against `(n - k) / n`) because any k distinct fragments suffice,
# not every chunk. Bit errors can cost the erasure code more of its own error-free result than they cost AMUSE: each
# erasure fragment sits in only `1 / n` of the images (`n = erasure_n`), while each AMUSE chunk sits in `k / n` of them
# (the codec table's `n` and `k`), so with few leaked images a fragment has one or two copies to vote over and
# Reed-Solomon must correct what voting could not. Whether it did here, and whether the erasure code still beats AMUSE
# with bit errors, is computed below (method `simulated`), as are errors that no vote removes and, where a codec could
# not rebuild the message from every image, why (real extraction). The baseline carries everything in each image, at
# L bits per image.

# %%
def shown(share):  # a share from the tables, or that none qualified
    return "no tested share" if pd.isna(share) else f"a share of {share:g}"


def times_worse(r):  # how many times the error-free share the codec needs with bit errors
    return r["bitflip"] / r["ideal"] if r.notna().all() else np.inf


reading, all_wrong = [], {}  # all_wrong (real extraction): bits the vote over every image still gets wrong
misread, not_rebuilt = {}, {}  # of those: bits decoded wrong; and why a codec could not rebuild the others
mean_wa = curves.groupby(["extraction", "method", "share"])["word_acc"].mean()
if {"ideal", "bitflip"} <= set(extractions):  # each codec with bit errors against itself error-free
    rec = observed.rename(columns=lambda c: c.removeprefix("min_share_recovered_"))
    e, a = rec.loc["erasure"], rec.loc["amuse"]
    e_need, a_need = (np.inf if pd.isna(r["bitflip"]) else r["bitflip"] for r in (e, a))
    verdict = ("so neither recovers every message at any tested share with bit errors" if np.isinf(e_need)
               and np.isinf(a_need) else "so the erasure code still beats AMUSE with bit errors" if e_need < a_need
               else "so the two need the same share with bit errors" if e_need == a_need
               else "so AMUSE beats the erasure code with bit errors")
    reading.append(f"With bit errors (rate {bit_error_rate:g}) the erasure code recovers every message from "
                   f"{shown(e['bitflip'])} (error-free: {shown(e['ideal'])}) and AMUSE from {shown(a['bitflip'])} "
                   f"(error-free: {shown(a['ideal'])}), {verdict}. With bit errors the erasure code needs "
                   f"{times_worse(e):.3g}x its error-free share and AMUSE {times_worse(a):.3g}x"
                   + (": bit errors cost the erasure code more of its own result." if times_worse(e) > times_worse(a)
                      else "."))
    if pd.notna(s_e := e["ideal"]):  # where the erasure code is exact error-free
        reading.append(f"At share {s_e:g} (the erasure code's error-free one), word accuracy with bit errors: erasure "
                       f"{mean_wa['bitflip', 'erasure', s_e]:.2f}, AMUSE {mean_wa['bitflip', 'amuse', s_e]:.2f} "
                       f"(error-free: erasure 1.00, AMUSE {mean_wa['ideal', 'amuse', s_e]:.2f}).")
if real:
    for c in codecs:
        res = c.decode_partial(extracted[c.name, method])
        all_wrong[c.name] = int(((res.bits != message) | ~res.known).sum())
        misread[c.name] = int(((res.bits != message) & res.known).sum())
        # why, as decode says it: chunks no image held, too few fragments, too many errors
        if (exc := c.why_incomplete(res, len(extracted[c.name, method]))) is not None:
            dropped = (f"; {exc.dropped} of the {n_images_used} sub-messages were dropped, their index bits "
                       "corrupted" if exc.dropped else "")
            rs = (f" (any k = {c.k} of its n = {c.n} distinct fragments rebuild the message, with at most "
                  "(fragments received - k) / 2 wrong symbols per row)" if c.name == "erasure" else "")
            not_rebuilt[c.name] = (f"{c.name} could not rebuild {int((~res.known).sum())} of the "
                                   f"{message_bits} bits from all {n_images_used} images: "
                                   f"{', '.join(map(str, exc.missing))}{rs}{dropped}")
    top = curves[curves.share == curves.share.max()].groupby("method", sort=False)[["bit_acc", "word_acc"]].mean()
    reading.append(f"{method}: decoded from all {n_images_used} images, the message has "
                   + ", ".join(f"{n} of {message_bits} bits wrong for {name}" for name, n in all_wrong.items())
                   + f"; at the largest share ({curves.share.max():g}) "
                   + ", ".join(f"{m} bit accuracy {r.bit_acc:.3f}, word accuracy {r.word_acc:.2f}"
                               for m, r in top.iterrows()) + ".")
    if not_rebuilt:  # bits a codec cannot rebuild count as wrong (never guessed): say why they could not be
        reading.append("; ".join(not_rebuilt.values()) + ". Bits that are not rebuilt count as wrong (never "
                       "guessed).")
    voted = [name for name in ("baseline", "amuse") if misread[name]]  # majority vote, no error correction
    if voted:
        reading.append(f"A bit that the majority vote over every image gets wrong ({' and '.join(voted)}) was read "
                       "wrong in most images carrying it: these errors sit at the same bit positions across images, so "
                       f"more leaked images do not remove them: even all {n_images_used} do not decode the message "
                       "exactly.")
print("\n".join(reading) or f"Nothing to compare here (extraction {', '.join(extractions)}): the comparison with "
      "bit errors needs method = simulated; real extraction reports the errors no vote removes.")

# %% [markdown]
# ## extra: the whole trade-off
# Every AMUSE and erasure (n, k) with n <= 16, and the baseline (all L bits in every image, so any one image holds
# the message: rho 0): bits per image against the guaranteed leak ratio. Erasure codes reach a low guaranteed ratio
# at a similar length, where AMUSE must send most of the message per image.

# %%
# extra: cheap (combinatorics only)
trade = tradeoff_table(message_bits, n_max=16)
fig, ax = plt.subplots()  # its own figure: not the last panel of a grid left open above
sns.scatterplot(data=trade, x="rho", y="sub_message_bits", hue="codec", style="codec", ax=ax)
ax.set(xlabel="guaranteed leak ratio rho (lower is better)", ylabel="bits per image",
       title=f"L = {message_bits}: every (n, k) with n <= 16, and the baseline")
save_fig(ax.figure, "tradeoff_bits_vs_rho", NOTEBOOK, dataset="none", **context);

# %% [markdown]
# ## Record

# %%
summary = curves.groupby(["extraction", "method", "share"])[["bit_acc", "word_acc", "recovered"]].mean()
metrics = {
    "codecs": {row["codec"]: {k: row[k] for k in ("n", "k", "sub_message_bits", "rho", "min_leak_count")}
               for row in codec_table.to_dict("records")},
    "min_share_recovered": observed.reset_index().to_dict("records"),
    "mean_by_share": {f"{e}/{m}/{s:g}": r for (e, m, s), r in summary.to_dict("index").items()},
    "sub_bit_acc": sub_bit_acc, "psnr": quality, "shares_dropped": list(shares_dropped),
    "shares_leaked": sorted(curves["share"].unique().tolist()),  # as mean_by_share keys them: leaked / n_images
    "all_subsets": {f"{s:g}": int(c) for s, c in every_subset.items()},  # shares decoded over every subset, once
    "wrong_bits_all_images": all_wrong,  # real extraction: bits the vote over every image gets wrong
    "paper_sub_message_bits_max_abs_diff": int(paper_table["diff"].abs().max()),
}
# the work's own time: a cell run again (after an interrupt) counts once, the time between cells run by hand not at
# all; the other cells take milliseconds
wall = cell_seconds["extraction"] + cell_seconds["decoding"]
record = write_record(
    NOTEBOOK,
    params={"profile": profile, "method": method, "message_bits": message_bits, "rho": rho, "erasure_n": erasure_n_used,
            "bit_error_rate": bit_error_rate if "bitflip" in extractions else None,  # only where bits are flipped
            "dataset": dataset if real else None, "scale": scale if real else None,
            "shares": shares_run,  # the shares run: one leaking as many images as a smaller one is not
            "n_images": n_images_used, "n_subsets": n_subsets_used, "seed": seed},
    metrics=metrics, **fig_context, wall_time=wall, training_precision=NOTHING_TRAINED,  # codecs only
    compute_time=wall,  # nothing is read back from a cache (no runs/): what the results cost is what the cells took
)
print(record_summary(record, notebook=NOTEBOOK))
