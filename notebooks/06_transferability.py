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
# # 06 · Transferability: does the watermark work when the suspect's architecture differs? (SSCL-BW Fig. 6)
#
# The owner trains the generator against a surrogate of one architecture, but cannot know which architecture the
# suspect trains on the published data. For every (surrogate, suspect) pair of ResNet-18, ResNet-34, VGG-16 and
# VGG-19 (16 cells) we mark the set with the generator of that surrogate, train the suspect on it, and measure BA
# and WSR. A model of the suspect's architecture trained on the CLEAN set is queried with the same marks: marks made
# against a surrogate can move a model that never saw them (adversarial transfer), so a cell counts as learnt only
# where the suspect is verified and that clean model is not. One draw per cell says little about the architecture
# (at a reduced CPU scale the learnt cells changed from one draw to the next, docs/measured-sscl-cpu.md):
# `n_draws` repeats every cell with independent surrogates, generators, markings, suspects and clean models (draw i
# runs with seed `seed + i`, i = 0 to `n_draws - 1`: its generator, marking, suspect and clean model are seeded
# `seed + i`, its surrogate `seed + i + 7919`, `dovlib.sscl.SURROGATE_SEED_OFFSET`, so that it is never the clean
# model of the same architecture) and the figure shows each cell's mean WSR and how many draws were learnt. Each
# draw of a cell is a record in `reports/06_transferability/metrics.json` (reused unless `recompute`), and every
# model is checkpointed under `runs/`, so an interrupted grid resumes and a larger `n_draws` adds only new draws.

# %% tags=["parameters"]
profile = "smoke"  # smoke | quick | paper (dovlib/params.py)
dataset = "cifar10-subset"  # offline real CIFAR-10 subset; "cifar10" for the full set (online)
archs = None  # comma-separated architectures, e.g. "resnet18,vgg16"; None: the profile's grid (smoke: 2, else all 4)
eps = "8/255"  # L-inf budget of the watermark
rate = 0.1  # gamma: share of the whole training set marked (target class only)
target = 1  # target label t (rate may not exceed its share of the set: under 0.1 for some classes)
key = 20240607  # the owner's secret key (as in notebooks 01-03; only its hash is recorded)
seed = 0  # seeds the data draw and the first draw of every cell
n_draws = 1  # independent draws per cell, an integer at least 1 (draw i: seed + i; its surrogate seed + i + 7919)
perceptual = "ssim"  # generator similarity loss: "lpips" (needs AlexNet weights) | "ssim" | "mse"
recompute = False  # True: recompute cells already in metrics.json

# %% [markdown]
# ## Setup

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from dovlib.data import load_dataset
from dovlib.models import ARCHS
from dovlib.params import check_choice, check_int, get_profile, parse_eps, parse_list, parse_rate
from dovlib.perceptual import require_perceptual
from dovlib.plotting import readable
from dovlib.report import run_context, save_fig, save_table, start_notebook
from dovlib.sscl import check_key, key_hash, run_sscl
from dovlib.studies import (PROVENANCE, benign_model, cached, check_study_queries, eps_label, grid, measured_context,
                            ownership_metrics, span_text, study_label, transfer_cells)
from dovlib.watermarks import select_indices

NOTEBOOK = "06_transferability"
cfg = get_profile(profile)
eps = parse_eps(eps)
rate = parse_rate(rate)
require_perceptual(perceptual)  # LPIPS without its weights fails here
key = check_key(key)
target = check_int("target", target, 0)  # "1" or 1.0 from papermill -> 1 (as notebooks 01-03)
arch_choices = [k for k in ARCHS if k != "badnets_cnn"]
arch_list = grid("archs", cfg) if archs is None else parse_list("archs", archs, lambda a: str(a).strip())
for a in arch_list:
    check_choice("archs", a, arch_choices)
arch_list = list(dict.fromkeys(arch_list))  # a repeated name is one architecture (the grid pivots on names)
seed = check_int("seed", seed, 0)  # "1" or 1.0 from papermill -> 1; -1 or 1.5 refused by name
n_draws = check_int("n_draws", n_draws, 1)
draw_seeds = list(range(seed, seed + n_draws))
device = start_notebook(profile, seed, cfg.device, note=f"grid {arch_list}, {n_draws} draw(s) per cell")

# %%
ds = load_dataset(dataset).subsample(cfg.n_train, cfg.n_test, seed=seed)
select_indices(ds.y_train, rate, target, clean_label=True)
print(ds.describe())
m_verify = check_study_queries(ds, target, cfg)  # the profile's verify_m, capped at the test set, can claim:
# before any training
print(f"verification: {m_verify} non-target queries per model")

# %% [markdown]
# ## The grid
# Rows: the surrogate the generator was trained against; columns: the suspect's architecture.

# %%
context = run_context(profile, device, ds, perceptual=perceptual)  # what records and figures were measured with
rows = []
for s in draw_seeds:  # draw by draw: an interrupted run has whole grids of the first draws
    for sur in arch_list:
        for sus in arch_list:
            params = {"profile": profile, "dataset": dataset, "data": context["data_hash"], "surrogate": sur,
                      "suspect": sus, "eps": eps_label(eps), "rate": rate, "target": target, "seed": s,
                      "key_hash": key_hash(key), "perceptual": perceptual}

            def compute(sur=sur, sus=sus, s=s):
                run = run_sscl(ds, cfg, arch=sus, surrogate_arch=sur, eps=eps, rate=rate, target=target, seed=s,
                               perceptual=perceptual, key=key)
                return ownership_metrics(run.suspect.model, ds.x_test, ds.y_test, run.trigger, target,
                                         default_m=cfg.verify_m, benign=benign_model(ds, cfg, sus, s))

            rec = cached(NOTEBOOK, params, compute, recompute=recompute, needs=("WSR_benign",), **context)
            rows.append({"surrogate": sur, "suspect": sus, "seed": s, **rec["metrics"],
                         **{k: rec.get(k) for k in PROVENANCE}})
            m = rec["metrics"]
            print(f"seed {s}: {sur:>9} -> {sus:<9} BA {m['BA']:.3f} WSR {m['WSR']:.3f} p {m['p_value']:.2g} "
                  f"(clean model: WSR {m['WSR_benign']:.3f} p {m['p_value_benign']:.2g})"
                  f"{' (reused)' if rec['reused'] else ''}")
df = pd.DataFrame(rows)
cells = transfer_cells(df)  # per cell: mean BA / WSR / clean model's WSR over the draws, learnt and verified counts

# %% [markdown]
# ## Fig. 6: BA and WSR heat maps
# With several draws each cell shows the mean over them, and the last panel how many draws were learnt.

# %%
mean_of = f"mean of {n_draws} draws, " if n_draws > 1 else ""
fig, axes = plt.subplots(1, 4, figsize=(18, 4))
panels = (("BA", "BA (%)"), ("WSR", "WSR (%)"), ("WSR_benign", "WSR of a model trained clean (%)"))
for ax, (metric, title) in zip(axes, panels):
    mat = cells.pivot(index="surrogate", columns="suspect", values=metric).loc[arch_list, arch_list]
    sns.heatmap(mat * 100, annot=True, fmt=".1f", vmin=0, vmax=100, cmap="viridis", ax=ax, cbar=False)
    ax.set_title(f"{mean_of}{title}", fontsize="medium")
mat = cells.pivot(index="surrogate", columns="suspect", values="learnt").loc[arch_list, arch_list]
sns.heatmap(mat, annot=True, fmt="d", vmin=0, vmax=n_draws, cmap="viridis", ax=axes[3], cbar=False)
axes[3].set_title(f"draws learnt (of {n_draws})", fontsize="medium")
for ax in axes:  # seaborn stands the row names on end: with four architectures "resnet34" ran into its neighbours
    ax.tick_params(axis="y", labelrotation=0)
# each cell's own settings: the grid's axes are the architectures
setting = dict(target=target, eps=eps, rate=rate, perceptual=perceptual)
fig.suptitle(f"SSCL-BW transferability on {study_label(ds, profile, **setting, profile_line=True)}",
             fontsize="medium")  # the profile string can be long: its own line
fig.tight_layout()
record_context = measured_context(context, df[list(PROVENANCE)].to_dict("records"))  # reused cells: their devices
save_fig(fig, "fig6_transferability", NOTEBOOK, **record_context)
devices = record_context.get("device_name", record_context.get("device"))
save_table(df.drop(columns=list(PROVENANCE)), "transferability", NOTEBOOK,
           caption=f"surrogate x suspect on {study_label(ds, profile, **setting, devices=devices)}, one row per draw "
                   "(seed); *_benign: a model of the suspect's architecture trained on the clean set, queried with the "
                   "same marks", **record_context)
save_table(cells, "transferability_cells", NOTEBOOK,
           caption=f"per cell over {n_draws} draw(s) (seed{'s' * (n_draws > 1)} {span_text(draw_seeds)}): mean BA, "
                   "WSR and WSR_benign, and how many draws were learnt (the suspect verified, the clean model not), "
                   f"verified and verified_benign; {study_label(ds, profile, **setting, devices=devices)}",
           **record_context)
readable(cells)  # each value its own digits (the CSV keeps every digit)

# %% [markdown]
# ## Reading the grid
# The paper reports WSR above 90% in every cell on full CIFAR-10. The diagonal (surrogate = suspect) is the
# white-box-like case; off-diagonal cells measure transfer. The ResNet-18 row is the surrogate of the paper's other
# experiments (Tables I and II), read on its own too. Every statement below counts single draws (a cell of
# `n_draws` draws counts `n_draws` times). Smoke numbers are meaningless by design.

# %%
diag_rows = df[df["surrogate"] == df["suspect"]]
diag = diag_rows["WSR"].mean()
off = df[df["surrogate"] != df["suspect"]]["WSR"].mean()
worst = df.loc[df["WSR"].idxmin()]
every = bool((df["WSR"] > 0.9).all())
r18 = df[df["surrogate"] == "resnet18"]
display(Markdown("\n".join([
    f"* Mean WSR on the diagonal {diag:.1%}, "
    + (f"off the diagonal {off:.1%}." if len(df) > len(diag_rows) else "no off-diagonal cells (one architecture)."),
    f"* **WSR above 90% in every cell**: {'confirmed' if every else 'NOT confirmed'} (lowest: {worst['WSR']:.1%}, "
    f"surrogate {worst['surrogate']}, suspect {worst['suspect']}; "
    f"{int((df['WSR'] > 0.9).sum())} of {len(df)} cell draws above 90%; seed {int(worst['seed'])}).",
    (f"* Generator against a ResNet-18 surrogate: {int((r18['WSR'] > 0.9).sum())} of {len(r18)} suspect draws above "
     f"90% WSR (lowest {r18['WSR'].min():.1%})." if len(r18) else "* No ResNet-18 surrogate in this grid."),
    f"* **Learnt** (the suspect verified, a model of its architecture trained on the clean set not): "
    f"{int(df['learnt'].sum())} of {len(df)} cell draws; clean models reach WSR "
    f"{span_text(df['WSR_benign'], '{:.1%}')} with the same marks, {int(df['verified_benign'].sum())} verified.",
    (f"* Cells learnt in every draw: {int((cells['learnt'] == n_draws).sum())} of {len(cells)}; in none: "
     f"{int((cells['learnt'] == 0).sum())}; in some but not all (the draw decides, not the architectures): "
     f"{int(((cells['learnt'] > 0) & (cells['learnt'] < n_draws)).sum())}." if n_draws > 1 else
     "* One draw per cell: whether a cell is learnt may be the draw's, not the architectures' (`n_draws`)."),
    f"* Measured on {ds.name} ({'subset' if ds.is_subset else 'full'}), {profile} profile"
    + (": smoke numbers are meaningless by design." if cfg.name == "smoke" else "."),  # not said of quick or paper
])))
