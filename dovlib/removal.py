"""Watermark-removal attacks a model thief may try: fine-tuning and pruning (SSCL-BW paper, Fig. 5).

* **Fine-tuning**: continue training the suspect model on a small benign set (the paper: 10% of the training data),
  with ``dovlib.train.fit``; an ``evaluate_fn(model) -> dict`` (BA, WSR, p-value, ...) is called after every epoch.
* **Pruning** (fine-pruning style, Liu et al., RAID 2018): rank the channels of the last convolutional feature map by
  their mean activation on benign data and switch off the least active ones. Channels are masked with a forward
  hook on ``model.feature_layer()`` (for a ResNet the output of ``layer4``: zeroing the last conv's weights would not
  silence a channel because of the residual connection; for a VGG the ReLU after the last conv, before the final
  max-pool). No weight is changed: :func:`prune` hooks a deep copy, so the suspect passed in is never touched
  (:class:`PrunedModel` hooks the model it is given until :meth:`PrunedModel.remove`).

Notebook ``05_removal_attacks`` walks through both.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn

from .params import parse_fraction
from .train import TrainConfig, data_hash, fit, to_float

__all__ = ["channel_activations", "prune", "PrunedModel", "pruning_curve", "finetune", "finetune_budget",
           "removal_claims"]


@torch.no_grad()
def channel_activations(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Mean (ReLU'd) activation of each channel of ``model.feature_layer()``'s output over images ``x`` (uint8)."""
    if len(x) == 0:
        raise ValueError("channel_activations needs at least one benign image")
    layer = model.feature_layer()
    dev = next(model.parameters()).device
    sums = []

    def hook(_, __, out):
        sums.append(out.float().clamp(min=0).mean(dim=(2, 3)).sum(0).cpu())

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            model(to_float(x[i:i + batch_size].to(dev)))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.stack(sums).sum(0) / len(x)


class PrunedModel(nn.Module):
    """``model`` with its feature channels in ``pruned`` forced to zero: a forward hook on ``model`` itself, which is
    changed in place until :meth:`remove` (:func:`prune` passes a deep copy, so the suspect is never touched)."""

    def __init__(self, model: nn.Module, pruned: torch.Tensor):
        super().__init__()
        self.model = model
        channels = model.last_conv().out_channels
        mask = torch.ones(channels)
        mask[pruned.cpu()] = 0
        # The mask lives on the model's device (a GPU model's hook would otherwise multiply across devices).
        self.register_buffer("mask", mask.view(1, -1, 1, 1).to(next(model.parameters()).device))
        self.pruned = pruned
        # a bound method, not a lambda over ``self``: copy.deepcopy (finetune's) rebinds it to the copy, whose hook
        # then reads the copy's own mask
        self._handle = model.feature_layer().register_forward_hook(self._apply_mask)

    def _apply_mask(self, _module, _inputs, out):
        return out * self.mask.to(device=out.device, dtype=out.dtype)

    def forward(self, x):
        return self.model(x)

    def remove(self) -> nn.Module:
        """Remove the mask and return the underlying (unchanged) model."""
        self._handle.remove()
        return self.model


def _parse_prune_rate(rate) -> float:
    return parse_fraction("rate", rate, 0.0, 1.0, low_inclusive=True, high_inclusive=False)


def prune(model: nn.Module, x_benign: torch.Tensor, rate, activations: torch.Tensor | None = None) -> PrunedModel:
    """Pruning (fine-pruning's first step): mask the ``rate`` share (in [0, 1)) of last-layer channels least active
    on ``x_benign``, rounded to the nearest count but never all of them: at least one channel is kept (0.99 of 32
    channels masks 31). ``activations`` (one value per channel, :func:`channel_activations`) skips measuring them.
    Returns a :class:`PrunedModel` around a deep copy (``model`` is untouched)."""
    rate = _parse_prune_rate(rate)
    channels = model.last_conv().out_channels
    acts = channel_activations(model, x_benign) if activations is None else torch.as_tensor(activations)
    if acts.ndim != 1 or len(acts) != channels:
        raise ValueError(f"activations must hold one value per channel of the last conv layer ({channels}); "
                         f"got shape {tuple(acts.shape)}")
    n_prune = min(int(round(rate * channels)), channels - 1)
    order = torch.argsort(acts)  # least active first
    # in eval mode, wrapper and copy alike: predict_logits restores the wrapper's mode, which it hands to the copy
    return PrunedModel(copy.deepcopy(model), order[:n_prune]).eval()


def pruning_curve(model: nn.Module, x_benign: torch.Tensor, rates, evaluate_fn: Callable[[nn.Module], dict]):
    """Evaluate the model pruned at each rate (e.g. 0, 0.05, ..., 0.95, or strings such as "1/2", read as
    :func:`prune` reads them); returns a pandas DataFrame with one row per rate: ``rate`` (as a float),
    ``pruned_channels`` and whatever ``evaluate_fn`` returns (BA, WSR, p_value, ...)."""
    import pandas as pd

    parsed = [_parse_prune_rate(r) for r in rates]  # all refused up front, before any channel is measured
    acts = channel_activations(model, x_benign)
    rows = []
    for r in parsed:
        pm = prune(model, x_benign, r, activations=acts)
        rows.append({"rate": r, "pruned_channels": len(pm.pruned), **evaluate_fn(pm)})
        pm.remove()
    return pd.DataFrame(rows)


def finetune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
             evaluate_fn: Callable[[nn.Module], dict] | None = None, checkpoint=None, eval_key: str | None = None):
    """Fine-tune a deep copy of ``model`` on benign (x, y) with the one trainer; ``evaluate_fn`` runs before training
    (epoch 0) and after every epoch. Returns (fine-tuned model, pandas DataFrame of the per-epoch rows).

    With ``checkpoint`` a finished run is read back with its history: the rows of epochs 1.. then hold the
    evaluations of the run that wrote it (``evaluate_fn`` is not called again for them), while epoch 0 is evaluated
    now. The checkpoint is tied to the starting weights and the data; ``eval_key`` (a string naming the evaluation,
    e.g. its test set, trigger and settings) ties it to the evaluation too, so a checkpoint written under another
    ``eval_key`` is refused rather than mixed into one table. Without it the caller's checkpoint path must be keyed by
    the evaluation (notebook 05 keys its folder by every parameter the evaluation depends on)."""
    import pandas as pd

    if eval_key is not None and not isinstance(eval_key, str):
        raise TypeError(f"eval_key must be a string (or None); got {type(eval_key).__name__}")
    tuned = copy.deepcopy(model)
    rows = []
    if evaluate_fn is not None:
        rows.append({"epoch": 0, **evaluate_fn(tuned.eval())})
    callbacks = [lambda m, e: evaluate_fn(m.eval())] if evaluate_fn is not None else []
    # the checkpoint is tied to the starting weights: a changed suspect never resumes another model's fine-tuning;
    # and with eval_key to the evaluation (without it the key is as before, so older checkpoints still load)
    key = f"start:{data_hash(*model.state_dict().values())}"
    result = fit(tuned, x, y, config=config, checkpoint=checkpoint, callbacks=callbacks,
                 checkpoint_key=key if eval_key is None else f"{key};eval:{eval_key}")
    keep = ("epoch", "train_loss", "train_acc", "lr")
    for row in result.history:
        extra = {k: v for k, v in row.items() if k not in keep and k != "epoch_time"}
        rows.append({"epoch": row["epoch"], "train_loss": row["train_loss"], **extra})
    return result.model, pd.DataFrame(rows)


def finetune_budget(steps: int, batch_size: int, lr, n_images: int | None = None, epochs: int | None = None) -> str:
    """The thief's fine-tuning budget in words (notebook 05's captions, verdict and panel title): the optimizer
    steps, the batch and the learning rate (cosine schedule), which sets how hard the attack pushes, and with
    ``n_images`` and ``epochs`` the benign images and epochs too (without them, the short form of a panel title).
    Notebook 05's captions named every part but the rate, so runs at ``finetune_lr`` 0.01 and 0.1 read the same.
    Counts may be numpy integers (a record's or a frame's); ``n_images`` and ``epochs`` come together or not at all."""
    from .params import check_int

    steps, batch_size = check_int("steps", steps, 0), check_int("batch_size", batch_size, 1)
    lr = parse_fraction("lr", lr, 0, 10)
    if (n_images is None) != (epochs is None):
        raise ValueError(f"n_images and epochs come together (the long form) or not at all (the short form); got "
                         f"n_images={n_images!r}, epochs={epochs!r}")
    if n_images is None:
        return f"{steps} step{'s' * (steps != 1)}, batch {batch_size}, lr {lr:g}"
    n_images, epochs = check_int("n_images", n_images, 1), check_int("epochs", epochs, 0)
    return (f"{n_images} benign images, batch {batch_size}, {steps} optimizer step{'s' * (steps != 1)} in {epochs} "
            f"epoch{'s' * (epochs != 1)}, lr {lr:g} (cosine schedule)")


def removal_claims(finetuning, pruning, benign: dict) -> dict:
    """The paper's removal-attack claims read off notebook 05's curves: ``finetuning`` (rows per epoch, epoch 0 the
    suspect before the attack) and ``pruning`` (rows per pruning rate, from 0), each row holding ``BA``, ``WSR``,
    ``p_value`` and ``verified`` (:func:`dovlib.studies.ownership_metrics`); ``benign``: the same measurements of a
    model trained on the clean set with the same marks. Returns

    * ``learnt``: the suspect verified before any attack and the clean model not (otherwise no claim is testable:
      ``untestable`` says why);
    * ``survives``: after the last fine-tuning epoch WSR is at least half its start and the suspect still verified
      (None when not ``learnt``); ``ft_lost_epochs``: the fine-tuning epochs at which verification was lost (an
      attacker who stops at one of them removes the proof, even if later epochs verify again; [] when none);
    * ``proved_up_to``: the largest pruning rate of the unbroken run of verified rates from 0% (a later rate verified
      again by chance does not extend it; None when not ``learnt`` or 0% is not verified); ``first_lost``: the first
      unverified rate;
    * ``collapse``: BA under half its start somewhere at 80% or more (None when no rate reaches 80%);
      ``first_collapse``: the first rate with BA under half its start;
    * ``removed_only_at_collapse``: verification is lost no earlier than BA collapses (None when not ``learnt`` or
      BA never collapses)."""
    import pandas as pd

    ft = pd.DataFrame(finetuning).sort_values("epoch").reset_index(drop=True)
    pr = pd.DataFrame(pruning).sort_values("rate").reset_index(drop=True)
    if len(ft) < 2 or ft["epoch"].iloc[0] != 0 or pr.empty or pr["rate"].iloc[0] != 0:
        raise ValueError("removal_claims needs fine-tuning rows from epoch 0 (the suspect before the attack) and at "
                         "least one epoch after it, and pruning rows from rate 0")
    ba0, wsr0, verified0 = float(ft["BA"].iloc[0]), float(ft["WSR"].iloc[0]), bool(ft["verified"].iloc[0])
    learnt = verified0 and not bool(benign["verified"])
    untestable = None if learnt else ("the suspect was not verified before any attack" if not verified0 else
                                      "a model trained on the clean set is verified too, so the marks are not "
                                      "shown to be learnt")
    last = ft.iloc[-1]
    lost = ~pr["verified"].astype(bool)
    first_lost = float(pr.loc[lost, "rate"].min()) if lost.any() else None
    proved = None if not learnt or first_lost == 0 else float(pr.loc[pr["rate"] < first_lost, "rate"].max()) \
        if first_lost is not None else float(pr["rate"].max())
    high = pr[pr["rate"] >= 0.8]
    down = pr["BA"] < 0.5 * ba0
    first_collapse = float(pr.loc[down, "rate"].min()) if down.any() else None
    return {"learnt": learnt, "untestable": untestable, "BA0": ba0, "WSR0": wsr0, "verified0": verified0,
            "survives": (bool(last["WSR"] >= 0.5 * wsr0 and bool(last["verified"])) if learnt else None),
            "ft_lost_epochs": [int(e) for e in ft.loc[~ft["verified"].astype(bool), "epoch"] if e > 0],
            "proved_up_to": proved, "first_lost": first_lost,
            "collapse": None if high.empty else bool(high["BA"].min() < 0.5 * ba0),
            "lowest_high_BA": None if high.empty else float(high["BA"].min()), "first_collapse": first_collapse,
            "removed_only_at_collapse": (None if not learnt or first_collapse is None else
                                         first_lost is None or first_lost >= first_collapse)}
