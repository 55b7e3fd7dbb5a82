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
# # 00 · Quickstart: train a benign classifier with the one dovlib trainer
#
# Every experiment in this collection trains models with `dovlib.train.fit`: the training set stays on the device
# as uint8, augmentation (random crop, flip) is batched on the device, and CUDA runs use bf16 autocast and
# channels_last. This notebook trains a benign classifier, draws its learning curve and writes
# `reports/00_quickstart/metrics.json`.
#
# Run it in batch with papermill, e.g.
# `.venv/bin/papermill notebooks/00_quickstart.ipynb out.ipynb -p profile quick -p dataset cifar10-subset` on a GPU
# (`-p profile smoke` on a CPU: `quick` would train there for about an hour).
# Profiles: `smoke` (CPU, seconds; what CI runs), `quick` (one GPU, minutes), `paper` (full settings).

# %% tags=["parameters"]
profile = "smoke"  # smoke | quick | paper, optionally with field overrides after a colon (README; dovlib/params.py)
dataset = "cifar10-subset"  # see dovlib.data.DATASETS; *-subset / *-offline are real offline subsets
arch = "resnet18"  # resnet18 | resnet34 | vgg16 | vgg19 | badnets_cnn
epochs = None  # None: the profile's number of epochs; else an integer at least 1
seed = 0  # an integer at least 0: seeds data subsampling, initialisation and augmentation

# %% [markdown]
# ## Setup

# %%
from dovlib.data import load_dataset
from dovlib.index import dataset_label
from dovlib.models import build_model
from dovlib.params import check_int, get_profile
from dovlib.plotting import learning_curve
from dovlib.report import record_summary, run_context, run_times, save_fig, start_notebook, timer, write_record
from dovlib.train import TrainConfig, fit, seed_everything

NOTEBOOK = "00_quickstart"
cfg = get_profile(profile)
epochs_used = cfg.epochs if epochs is None else check_int("epochs", epochs, 1)  # epochs itself stays as given
seed = check_int("seed", seed, 0)  # "1" or 1.0 from papermill -> 1; -1 or 1.5 refused by name
device = start_notebook(profile, seed, cfg.device)

# %% [markdown]
# ## Data
# The profile decides how many images are used (`smoke` keeps a stratified few hundred).

# %%
ds = load_dataset(dataset).subsample(cfg.n_train, cfg.n_test, seed=seed)
context = run_context(profile, device, ds)  # what figures say they were measured with
ds.warn_split_problems()  # e.g. scikit-image's photos: the test split is the training split
print(ds.describe())

# %% [markdown]
# ## Train

# %%
channels, size = ds.image_shape[0], ds.image_shape[1]
seed_everything(seed)  # the initial weights from the seed: this cell run again (after an interrupt) trains the same
model = build_model(arch, ds.num_classes, channels, width=cfg.width, image_size=size)
train_cfg = TrainConfig.for_profile(cfg, epochs=epochs_used, device=str(device), seed=seed,
                                    flip=channels == 3)  # no flips for digits
with timer() as t_fit:  # no checkpoint: the model is trained every run, so compute_time equals wall_time
    result = fit(model, ds.x_train, ds.y_train, ds.x_test, ds.y_test, train_cfg)
print(f"test accuracy {result.final['test_acc']:.4f} after {epochs_used} epochs, {t_fit['seconds']:.1f} s "
      f"({result.images_per_second:,.0f} training images/s on {result.device})")

# %%
fig = learning_curve(result.history, title=f"{arch} on {dataset_label(context)} ({profile} profile)")  # subset or full
save_fig(fig, "learning_curve", NOTEBOOK, **context);

# %% [markdown]
# ## Record
# One record per parameter set in `reports/00_quickstart/metrics.json`, with the profile, dataset (subset or not)
# and device beside the number.

# %%
record = write_record(
    NOTEBOOK,
    params={"profile": profile, "dataset": dataset, "arch": arch, "epochs": epochs_used, "seed": seed},
    metrics={"test_acc": result.final["test_acc"], "train_acc": result.final["train_acc"],  # train_acc: the last
             "images_per_second": result.images_per_second},  # epoch's running accuracy over augmented batches
    **run_times(t_fit), **context,
)
print(record_summary(record, metrics=True, notebook=NOTEBOOK))
