"""Shared pieces of the Table I baselines: trigger sizes that scale with the image, fixed seeded patterns, patch
stamping, sample selection for untargeted methods, and the two surrogate-based optimisers (PGD for
Label-Consistent, gradient matching for Sleeper Agent and UBW-C). See notebook 02.

Scaling rule (all methods): a size given "for 32x32" (the papers' CIFAR-10 settings) becomes
``max(1, round(size * H / 32))`` pixels for an H x H image, so a 3x3 BadNets patch is 3x3 at 28 (MNIST) and 32
(CIFAR-10) and 6x6 at 64 (Sub-ImageNet); blended and warping triggers are drawn at the image's own size.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..params import check_int, parse_rate
from ..train import data_hash, load_state, model_hash, resolve_device, to_float

# Bumped when PGD or gradient matching changes what it returns, so Table I's cached crafted marks are made again
# (2: one signed Adam step per pass over the poisons, a frozen copy of the surrogate, marks clipped to eps; 3: the
# UBW authors' 3x3 trigger for UBW-C and Label-Consistent, which used a checkerboard one pixel away from it).
CRAFTING_VERSION = 3

__all__ = ["CRAFTING_VERSION", "scaled", "check_images", "seeded_pattern", "PUBLISHED_PATCH", "published_patch",
           "stamp", "select_any", "pgd_untargeted", "SourceLoss", "gradient_matching", "crafting_devices"]


def scaled(size_at_32: int, image_size: int) -> int:
    """Pixels for an image whose shorter side is ``image_size`` of a length given for 32x32 images (at least 1)."""
    return max(1, int(round(size_at_32 * image_size / 32)))


def check_images(x: torch.Tensor) -> torch.Tensor:
    """Refuse anything but uint8 (N, C, H, W) images."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"x must be uint8 images of shape (N, C, H, W); got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
    return x


def seeded_pattern(shape, seed: int) -> torch.Tensor:
    """A fixed uniform-noise uint8 pattern of ``shape`` drawn from ``seed`` (the same on every machine)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, tuple(shape), generator=g, dtype=torch.uint8)


# The 3x3 black/white trigger of the UBW authors' released code (UBW-P and UBW-C: four white pixels, a black top-left),
# which BackdoorBox's Label-Consistent examples paste into the right-hand corners, and its mirror image into the
# left-hand ones.
PUBLISHED_PATCH = ((0, 0, 255), (0, 255, 0), (255, 0, 255))


def published_patch(channels: int, side: int, mirrored: bool = False) -> torch.Tensor:
    """:data:`PUBLISHED_PATCH` as uint8 (channels, side, side), the same in every channel, ``mirrored`` left to right
    for the left-hand corners; a side other than 3 (a patch scaled with the image, ``scaled``) is the pattern resized
    by nearest neighbour: a multiple of 3 repeats each pixel (6 px at 64x64 is the pattern at twice the size), other
    sides repeat some rows and columns more than others, and side 1 is the pattern's top-left pixel (black)."""
    p = torch.tensor(PUBLISHED_PATCH, dtype=torch.uint8)
    p = p.flip(-1) if mirrored else p
    if side != 3:
        p = F.interpolate(p[None, None].float(), size=(side, side), mode="nearest")[0, 0].to(torch.uint8)
    return p.expand(channels, side, side).clone()


def stamp(x: torch.Tensor, patch: torch.Tensor, corners=("br",)) -> torch.Tensor:
    """Paste ``patch`` (C, s, s) uint8 into the given corners ("tl", "tr", "bl", "br") of uint8 images."""
    out = check_images(x).clone()
    bad = [c for c in corners if c not in ("tl", "tr", "bl", "br")]
    if bad:
        raise ValueError(f"corners must be among 'tl', 'tr', 'bl', 'br'; got {bad}")
    s = patch.shape[-1]
    h, w = x.shape[-2:]
    if s > min(h, w):
        raise ValueError(f"patch side must be <= the image's shorter side {min(h, w)} (image {h}x{w}; patch_size is "
                         f"given for 32x32 images and scaled by the shorter side); got {s}")
    for c in corners:
        r0 = 0 if c[0] == "t" else h - s
        c0 = 0 if c[1] == "l" else w - s
        out[:, :, r0:r0 + s, c0:c0 + s] = patch.to(out.device)
    return out


def select_any(n: int, rate, seed: int = 0, name: str = "rate (gamma)") -> torch.Tensor:
    """Sorted indices of ``round(rate * n)`` samples drawn from the whole set (untargeted UBW methods); a rate that
    marks no image is refused, as :func:`dovlib.watermarks.base.select_indices` refuses it."""
    n = check_int("n (training images)", n, 1)
    rate = parse_rate(rate, name)
    n_mark = min(int(round(rate * n)), n)
    if n_mark == 0:
        raise ValueError(f"{name} = {rate:g} marks no image: round({rate:g} * {n} images) = 0; a rate of at least "
                         f"1/{n} = {1 / n:.4g} marks one")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:n_mark].sort().values


def _frozen(model: nn.Module, device) -> nn.Module:
    """A frozen copy of ``model`` on ``device`` (eval mode, no parameter gradients): crafting never changes the
    caller's surrogate, which Table I shares between methods (mode, gradient flags and device stay as they were)."""
    model = copy.deepcopy(model).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _to_uint8_within(x0: torch.Tensor, delta: torch.Tensor, x_orig: torch.Tensor, eps: float) -> torch.Tensor:
    """``x0 + delta`` as uint8 images no more than ``eps`` from ``x_orig`` (uint8): rounding to whole grey levels
    could otherwise step past a budget that is not a whole number of levels (8.6/255 -> 9 levels)."""
    out = ((x0 + delta).clamp(0, 1) * 255).round()
    levels = math.floor(eps * 255 + 1e-6)
    ref = x_orig.to(out.device, torch.float32)
    return torch.minimum(torch.maximum(out, ref - levels), ref + levels).to(torch.uint8).cpu()


_CRAFTED_BY: contextvars.ContextVar = contextvars.ContextVar("dovlib_crafted_by", default=None)


@contextlib.contextmanager
def crafting_devices():
    """Collects, in the set it yields, the names (:func:`dovlib.report.device_name`) of the devices that crafted the
    marks made inside the block by :func:`pgd_untargeted` and :func:`gradient_matching`: this run's, and those a
    resumed checkpoint says crafted its earlier part ("unknown" for checkpoints of older code). Crafted marks are
    data, not models, so they are named apart from :func:`dovlib.train.training_provenance`: the cached marks keep
    the names (``crafted_by``) and Table I's rows show them (:func:`dovlib.watermarks.table.table_row`)."""
    names: set = set()
    token = _CRAFTED_BY.set(names)
    try:
        yield names
    finally:
        _CRAFTED_BY.reset(token)


class _Resumable:
    """The crafting loops' checkpoint file: ``state()`` is the saved state when it was written for the same
    ``inputs`` (settings, the hashes of the images and of the surrogate's weights), else None; ``save(state)``
    offers ``state()`` (a function) to a :class:`dovlib.train.Checkpointer`: written atomically at most once per
    ``every`` seconds, otherwise kept as a copy that a ``with`` block around the loop writes when the loop is
    interrupted; ``done()`` removes the file. Without a path every call does nothing. The file is read with
    ``weights_only=True``: one that needs more to load (a foreign file, which could run code) is not read, and a
    warning says that the crafting starts afresh and replaces it. ``device``: where this run crafts; the file keeps
    the names of every device that crafted part of it (``crafted_by``), which :func:`crafting_devices` collects."""

    def __init__(self, path, inputs: dict, every: float, device):
        from ..report import device_name
        from ..train import Checkpointer

        self.path, self.inputs = (Path(path) if path is not None else None), inputs
        self.saver = Checkpointer(self.path, every)
        self.crafted_by = {device_name(device)}
        self._collect()

    def _collect(self) -> None:
        if (names := _CRAFTED_BY.get()) is not None:
            names.update(self.crafted_by)

    def __enter__(self) -> _Resumable:
        self.saver.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        return self.saver.__exit__(*exc)

    def state(self) -> dict | None:
        if self.path is None or not self.path.is_file():
            return None
        try:  # weights_only: a foreign file at the path runs no code; the crafting starts afresh, saying so
            st = load_state(self.path, "the crafting's resumable state",
                            remedy="crafting starts afresh and replaces it")
        except ValueError as e:
            warnings.warn(str(e), stacklevel=3)
            return None
        if st.get("inputs") != self.inputs:
            return None
        # its earlier part was crafted where the file says (files of older code: unknown)
        self.crafted_by.update(str(st.get("crafted_by") or "unknown").split(" + "))
        self._collect()
        return st

    def save(self, state, copied: bool = False) -> None:
        from ..train import joined_names

        by = joined_names(*self.crafted_by)
        self.saver.offer(lambda: {"inputs": self.inputs, "crafted_by": by, **state()}, copied=copied)

    def done(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def pgd_untargeted(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 100,
                   alpha: float | None = None, batch_size: int = 256, device="auto", seed: int = 0,
                   checkpoint=None, checkpoint_every: float = 60.0) -> torch.Tensor:
    """L_inf PGD (Madry et al., 2018) that pushes uint8 images away from their true labels on a frozen surrogate;
    random start, step ``alpha`` (default 2.5 * eps / steps). Returns uint8 images within ``eps`` of ``x``.

    With ``checkpoint`` (a file path) the finished batches and the random generator are saved after a batch whenever
    ``checkpoint_every`` seconds have passed since the last save (and the finished batches when the run is
    interrupted); an interrupted run with the same inputs resumes
    from it and returns what an uninterrupted run returns; the file is removed when done."""
    check_images(x)
    check_int("steps", steps, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    if len(torch.as_tensor(y)) != len(x):
        raise ValueError(f"y must hold one label per image: {len(x)} images, {len(torch.as_tensor(y))} labels")
    dev = resolve_device(device)
    alpha = alpha if alpha is not None else 2.5 * eps / max(steps, 1)
    # what a partial run must match: the settings, the images and labels, and the surrogate (a pixel sum, and no
    # model, let another surrogate's or other images' finished batches be resumed)
    inputs = {"shape": tuple(x.shape), "eps": float(eps), "steps": steps, "alpha": float(alpha), "seed": int(seed),
              "batch_size": batch_size, "data": data_hash(x, torch.as_tensor(y).long()),
              "model": model_hash(model)} if checkpoint is not None else {}
    model = _frozen(model, dev)
    g = torch.Generator().manual_seed(seed)
    out, start = [], 0
    ckpt = _Resumable(checkpoint, inputs, checkpoint_every, dev)
    if (st := ckpt.state()) is not None:  # else: no checkpoint, or one of other inputs: start afresh
        out, start = list(st["out"]), st["next"]
        g.set_state(st["g"])
    with ckpt:  # an interruption keeps the finished batches
        for i in range(start, len(x), batch_size):
            x0 = to_float(x[i:i + batch_size]).to(dev)
            yb = torch.as_tensor(y[i:i + batch_size]).long().to(dev)
            delta = ((torch.rand(x0.shape, generator=g) * 2 - 1) * eps).to(dev)
            for _ in range(steps):
                delta.requires_grad_(True)
                loss = F.cross_entropy(model((x0 + delta).clamp(0, 1)), yb)
                grad, = torch.autograd.grad(loss, delta)
                delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
            out.append(_to_uint8_within(x0, delta, x[i:i + batch_size], eps))
            if i + batch_size < len(x):
                # finished batches are never changed: a new list of them is a copy (no copy growing per batch)
                ckpt.save(lambda: {"next": i + batch_size, "out": list(out), "g": g.get_state()}, copied=True)
    ckpt.done()
    return torch.cat(out) if out else x.clone()


def _flat_grad(loss, params, create_graph=False):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, create_graph=create_graph)])


@dataclass
class SourceLoss:
    """The loss whose decrease plants the watermark, as a mean over source images: ``loss(logits, idx)`` is its mean
    over the images ``images[idx]`` whose logits are given. :func:`gradient_matching` averages its gradient over
    mini-batches of sources, weighted by their size (exact for a mean in eval mode), so a thousand sources never sit
    in one backward pass (ResNet-18 keeps about 4.5 MiB of activations per 32x32 image, 18 MiB at 64x64: 18 GB
    for 1,000 Sub-ImageNet sources in one batch)."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __post_init__(self):
        check_images(self.images)
        if len(self.images) == 0:
            raise ValueError("SourceLoss needs at least one source image")

    def gradient(self, model: nn.Module, params: list, batch_size: int) -> torch.Tensor:
        """The flattened gradient of the mean loss over every source image with respect to ``params``."""
        dev = next(model.parameters()).device
        n, total = len(self.images), None
        for i in range(0, n, batch_size):
            idx = torch.arange(i, min(i + batch_size, n))
            g = _flat_grad(self.loss(model(to_float(self.images[idx]).to(dev)), idx), params) * (len(idx) / n)
            total = g if total is None else total + g
        return total


def gradient_matching(model: nn.Module, x_poison: torch.Tensor, y_poison: torch.Tensor, target_grad_loss,
                      eps: float, steps: int = 250, lr: float | None = None, batch_size: int = 128, device="auto",
                      seed: int = 0, checkpoint=None, checkpoint_every: float = 60.0) -> torch.Tensor:
    """Gradient matching (Geiping et al., 2021 "Witches' Brew"; used by Sleeper Agent and UBW-C): find L_inf
    perturbations (``eps``) of uint8 ``x_poison`` so that the training gradient on (x_poison + delta, y_poison)
    aligns (cosine) with the gradient of the loss whose decrease plants the watermark: ``target_grad_loss``, a
    :class:`SourceLoss` (its gradient taken in mini-batches of ``batch_size`` sources) or a callable ``model ->
    loss`` (one backward pass).

    As in Witches' Brew, each of the ``steps`` iterations takes the alignment loss's gradient for every poison (in
    mini-batches of ``batch_size``, each poison once) and then one signed Adam step of all perturbations together, with
    the step size ``lr`` (default eps / 10, in [0, 1] units: this project's choice; the UBW authors' code and
    BackdoorBox's Sleeper Agent use 0.025, 0.4 * eps at 16/255: pass ``lr=0.025`` for theirs) cut tenfold at 3/8, 5/8
    and 7/8 of the steps (the reference's MultiStepLR milestones). Returns uint8 images within ``eps`` of ``x_poison``;
    ``model`` is left as it was (the crafting works on a frozen copy).

    With ``checkpoint`` (a file path) the state (perturbations, optimiser, schedule, random generator, step) is saved
    after a step whenever ``checkpoint_every`` seconds have passed since the last save (and the last finished step
    when the run is interrupted), and an interrupted run with the same inputs resumes from it and returns what an
    uninterrupted run returns; the file is removed when done."""
    check_images(x_poison)
    check_int("steps", steps, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    if len(torch.as_tensor(y_poison)) != len(x_poison):
        raise ValueError(f"y_poison must hold one label per image: {len(x_poison)} images, "
                         f"{len(torch.as_tensor(y_poison))} labels")
    dev = resolve_device(device)
    surrogate_id = model_hash(model) if checkpoint is not None else None  # a partial run of another is not resumed
    model = _frozen(model, dev)
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    if isinstance(target_grad_loss, SourceLoss):
        target = target_grad_loss.gradient(model, params, batch_size).detach()
    else:
        target = _flat_grad(target_grad_loss(model), params).detach()
    t_norm = target.norm()
    x0 = to_float(x_poison).to(dev)
    yp = torch.as_tensor(y_poison).long().to(dev)
    g = torch.Generator().manual_seed(seed)
    delta = ((torch.rand(x0.shape, generator=g) * 2 - 1) * eps * 0.5).to(dev).requires_grad_(True)
    opt = torch.optim.Adam([delta], lr=lr if lr is not None else eps / 10)
    milestones = sorted({max(1, steps * k // 8) for k in (3, 5, 7)})
    schedule = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
    n, start = len(x0), 0
    inputs = {"shape": tuple(x0.shape), "eps": float(eps), "seed": int(seed), "lr": lr, "batch_size": batch_size,
              "steps": steps, "update": "full-pass",  # per-batch updates of older versions are not resumed
              "data": data_hash(x_poison, torch.as_tensor(y_poison).long()), "model": surrogate_id,
              "target_norm": float(t_norm)} if checkpoint is not None else {}  # the target loss: by its norm
    ckpt = _Resumable(checkpoint, inputs, checkpoint_every, dev)
    if (st := ckpt.state()) is not None and st["step"] <= steps:  # else: start afresh
        with torch.no_grad():
            delta.copy_(st["delta"].to(dev))
        opt.load_state_dict(st["opt"])
        schedule.load_state_dict(st["schedule"])
        g.set_state(st["g"])
        start = st["step"]
    with ckpt:  # an interruption keeps the finished steps
        for step in range(start, steps):
            perm = torch.randperm(n, generator=g)
            grad = torch.zeros_like(delta)
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size].to(dev)
                xb = (x0[idx] + delta[idx]).clamp(0, 1)
                pg = _flat_grad(F.cross_entropy(model(xb), yp[idx]), params, create_graph=True)
                loss = 1 - F.cosine_similarity(pg, target, dim=0) if t_norm > 0 else pg.sum() * 0
                grad += torch.autograd.grad(loss, delta)[0]  # nonzero only on this batch's rows
            opt.zero_grad()
            delta.grad = grad.sign_()
            opt.step()
            schedule.step()
            with torch.no_grad():
                delta.clamp_(-eps, eps)
            if step + 1 < steps:
                ckpt.save(lambda: {"step": step + 1, "delta": delta.detach(), "opt": opt.state_dict(),
                                   "schedule": schedule.state_dict(), "g": g.get_state()})
    ckpt.done()
    return _to_uint8_within(x0, delta.detach(), x_poison, eps)
