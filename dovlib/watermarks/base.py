"""One interface for every dataset watermark (SSCL-BW and the Table I baselines).

A dataset watermark marks part of a training set so that a model trained on it learns a hidden behaviour
("watermark -> target label" for targeted methods; "watermark -> any wrong label" for the untargeted UBW ones).

* ``fit(x, y, surrogate=None)``: learn what the method needs (a generator, PGD perturbations, ...); a no-op for
  methods without training. Returns self.
* ``apply(x, y, rate, target, seed) -> (x_marked, y_marked, marked_indices)``: watermark ``rate`` of the WHOLE
  training set (uint8 images (N, C, H, W), int64 labels). Poison-label methods may change labels of marked samples;
  clean-label methods never do, and the targeted ones draw marked samples from the target class only (UBW-C, which
  is untargeted, from every class).
* ``trigger(x) -> x``: the watermark applied to query images at verification time (uint8 in, uint8 out).
"""

from __future__ import annotations

import numbers
import time
import warnings

from abc import ABC, abstractmethod

from pathlib import Path

import torch

from ..params import parse_rate
from .common import check_images, crafting_devices

__all__ = ["DatasetWatermark", "SurrogateWatermark", "select_indices", "check_labels", "WATERMARKS", "register",
           "get_watermark"]


def check_labels(y, n: int) -> torch.Tensor:
    """``y`` as a 1-D integer tensor of ``n`` non-negative class labels (one per image), else a clear error."""
    y = torch.as_tensor(y)
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"y must be a 1-D tensor of integer class labels; got {y.dtype} {tuple(y.shape)}")
    if len(y) != n:
        raise ValueError(f"y must hold one label per image: {n} images, {len(y)} labels")
    if n and int(y.min()) < 0:
        raise ValueError(f"labels must be class indices >= 0; got {int(y.min())}")
    return y


class DatasetWatermark(ABC):
    name: str = "base"
    kind: str = "poison-label"  # or "clean-label"
    targeted: bool = True  # False for UBW-P / UBW-C (untargeted)

    def fit(self, x: torch.Tensor, y: torch.Tensor, surrogate: torch.nn.Module | None = None) -> "DatasetWatermark":
        return self

    @abstractmethod
    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the watermark to uint8 images (N, C, H, W); returns uint8 images of the same shape."""

    def apply(self, x: torch.Tensor, y: torch.Tensor, rate, target: int, seed: int = 0):
        """Default: mark ``rate`` of the set (target class only for clean-label methods) with ``trigger``; poison-label
        targeted methods relabel the marked samples to ``target``."""
        check_images(x)
        y = check_labels(y, len(x))
        idx = select_indices(y, rate, target, clean_label=self.kind == "clean-label", seed=seed)
        x_out, y_out = x.clone(), y.clone()
        if len(idx):
            x_out[idx] = self.trigger(x[idx])
            if self.kind == "poison-label" and self.targeted:
                y_out[idx] = target
        return x_out, y_out, idx

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "targeted": self.targeted}


class SurrogateWatermark(DatasetWatermark):
    """A method that crafts its marks on the owner's trained, frozen surrogate (Label-Consistent, Sleeper Agent,
    UBW-C): ``fit`` requires the surrogate and ``apply`` refuses to run before it."""

    uses = "crafts its marks on it"  # what the method does with the surrogate, for the error message
    surrogate: torch.nn.Module | None = None
    crafted_by: str | None = None  # set by apply: the device(s) that crafted its marks, as the cache says

    def fit(self, x, y, surrogate=None) -> "SurrogateWatermark":
        if surrogate is None:
            raise ValueError("surrogate must be a trained classifier (dovlib.sscl.train_surrogate(...).model); "
                             f"{self.name} {self.uses}")
        self.surrogate = surrogate
        return self

    def _check_fitted(self) -> None:
        if self.surrogate is None:
            raise RuntimeError(f"call fit(x, y, surrogate) before apply ({self.name} needs the surrogate)")

    def _select(self, y: torch.Tensor, rate, target: int, seed: int) -> torch.Tensor:
        """Indices to mark (default: ``rate`` of the set from the target class, clean-label)."""
        return select_indices(y, rate, target, clean_label=True, seed=seed)

    def _craft(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, target: int, seed: int,
               checkpoint=None) -> torch.Tensor:
        """The marked versions of ``x[idx]`` (uint8), crafted on ``self.surrogate``; ``checkpoint``: a file for the
        crafting's resumable state, where the method has one (gradient matching, PGD)."""
        raise NotImplementedError

    def apply(self, x, y, rate, target: int, seed: int = 0, cache=None):
        """Mark the selected images with :meth:`_craft`; labels are never changed.

        ``cache``: a folder for this exact call (the caller keys it by data, surrogate, settings; see
        :func:`dovlib.watermarks.table.table_row`). The crafted images are saved there as ``marked.pt`` and reused
        by later calls with the same settings, target, seed, indices, images and labels (their hash) and surrogate
        (the hash of its weights); any other call crafts afresh and overwrites them. An interrupted crafting resumes
        from ``craft.partial``, which is tied to the same images and surrogate. Both are read with
        ``weights_only=True``: a file there that needs more to load (it could run code) is not read; a warning says
        that the marks are crafted afresh and the file replaced. Afterwards ``crafted_by`` names the device(s) that
        crafted the marks (:func:`dovlib.report.device_name`, joined "A + B" for a crafting resumed elsewhere), as
        ``marked.pt`` says for reused marks ("unknown" for files of older code): crafting on another device gives other
        marks, as training does."""
        check_images(x)
        self._check_fitted()
        y = check_labels(y, len(x))
        idx = self._select(y, rate, target, seed)
        x_out = x.clone()
        if len(idx):
            x_out[idx] = self._crafted(x, y, idx, target, seed, cache)
        return x_out, y.clone(), idx

    def _crafted(self, x, y, idx, target, seed, cache):
        from ..train import charge, data_hash, model_hash

        if cache is None:
            return self._craft_named(x, y, idx, target, seed)

        started = time.perf_counter()  # what the marks cost (dovlib.train.compute_ledger): kept beside them
        final = Path(cache) / "marked.pt"
        # the images and the surrogate too: a folder the caller did not key by them (Table I's is) is never handed
        # another surrogate's or other images' marks (files written before they were recorded are crafted again)
        call = {"method": self.describe(), "target": int(target), "seed": int(seed),
                "data": data_hash(x, y.long()), "surrogate": model_hash(self.surrogate)}
        if final.is_file():  # another call's images (the folder was reused for other settings) are crafted afresh
            from ..train import load_state

            try:  # weights_only: a foreign file in the folder runs no code; the marks are crafted again, saying so
                st = load_state(final, "crafted marks", remedy="the marks are crafted again and replace it")
            except ValueError as e:
                warnings.warn(str(e), stacklevel=3)
                st = {}
            if isinstance(st.get("idx"), torch.Tensor) and torch.equal(st["idx"], idx) and st.get("call") == call:
                seconds = st.get("seconds")  # files of older code hold none: their reading counts instead
                charge(final, seconds if isinstance(seconds, float) else None, True, started)
                self.crafted_by = str(st.get("crafted_by") or "unknown")  # files of older code named none
                return st["x_marked"]
        marked = self._craft_named(x, y, idx, target, seed, checkpoint=Path(cache) / "craft.partial")
        from ..train import _save_atomic

        seconds = time.perf_counter() - started  # a crafting resumed from craft.partial: this run's part only
        _save_atomic({"idx": idx, "x_marked": marked, "call": call, "seconds": seconds,
                      "crafted_by": self.crafted_by}, final)
        charge(final, seconds, False, started)
        return marked

    def _craft_named(self, *args, **kwargs) -> torch.Tensor:
        """:meth:`_craft`, with ``crafted_by`` set to the device(s) that crafted (:func:`.common.crafting_devices`)."""
        from ..train import joined_names

        with crafting_devices() as names:
            marked = self._craft(*args, **kwargs)
        self.crafted_by = joined_names(*names) or "unknown"  # a _craft of its own that does not say
        return marked


def select_indices(y: torch.Tensor, rate, target: int, clean_label: bool, seed: int = 0,
                   name: str = "rate (gamma)") -> torch.Tensor:
    """Indices of ``round(rate * N)`` samples to mark (sorted). ``rate`` is a share of the WHOLE set; clean-label
    methods draw from the target class only, so ``rate`` may not exceed that class's share; poison-label methods draw
    from the non-target classes. ``name``: the parameter named in errors."""
    y = torch.as_tensor(y)
    rate = parse_rate(rate, name)
    if not len(y):
        raise ValueError("y must hold the labels of at least one training image; got none")
    num_classes = int(y.max()) + 1
    if isinstance(target, bool) or not isinstance(target, numbers.Integral) or not 0 <= target < max(num_classes, 1):
        raise ValueError(f"target must be a class index (an integer) in [0, {num_classes - 1}]; got {target!r}")
    pool = torch.nonzero(y == target if clean_label else y != target).flatten()
    share = len(pool) / len(y)
    # the share itself, not the rounded count: 0.255 of a class holding 0.25 is refused (1e-6: a share computed
    # as a float32 mean, 0.1000000015 for 12 of 120, is that share; one image is 2e-5 of even 50,000)
    if rate > share + 1e-6:
        which = f"the target class {target}'s share" if clean_label else "the non-target share"
        raise ValueError(f"{name} must be <= {which} of the training set, {share:.4f} "
                         f"({len(pool)} of {len(y)} images); got {rate:g}")
    n_mark = min(int(round(rate * len(y))), len(pool))  # the tolerance above may round one past the pool
    if n_mark == 0:
        raise ValueError(f"{name} = {rate:g} marks no image: round({rate:g} * {len(y)} images) = 0; a rate of "
                         f"at least 1/{len(y)} = {1 / len(y):.4g} marks one")
    g = torch.Generator().manual_seed(seed)
    return pool[torch.randperm(len(pool), generator=g)[:n_mark]].sort().values


WATERMARKS: dict[str, type] = {}


def register(cls):
    """Class decorator: make a watermark available to ``get_watermark(cls.name)``."""
    WATERMARKS[cls.name] = cls
    return cls


def get_watermark(name: str, **kwargs) -> DatasetWatermark:
    from . import _load_all  # noqa: F401  (imports every method module so they register)

    if name not in WATERMARKS:
        raise ValueError(f"method must be one of {sorted(WATERMARKS)}; got {name!r}")
    return WATERMARKS[name](**kwargs)
