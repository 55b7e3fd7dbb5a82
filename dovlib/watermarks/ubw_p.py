"""UBW-P (Li et al., NeurIPS 2022, "Untargeted Backdoor Watermark: Towards Harmless and Stealthy Dataset Copyright
Protection"), poison-label variant: marked samples carry a BadNets-style patch and get a RANDOM label, drawn
uniformly from all K classes (the authors' released code draws ``randint(0, K)`` per poisoned sample, so a few keep
their own label), so the watermarked model learns "trigger -> dispersed predictions" rather than any one class.

Defaults (Li et al.'s CIFAR-10 setting): their 3x3 black/white patch (``common.PUBLISHED_PATCH``) at the bottom-right
corner,
poisoning rate 0.1, samples drawn from the whole set (``target`` is not used). The patch side scales with the image
(``common.scaled``). Its success measure is untargeted: the share of triggered test images NOT classified as their
true class (``targeted = False``). See notebook 02.
"""

from __future__ import annotations

import torch

from ..params import check_int
from .base import DatasetWatermark, check_labels, register
from .common import check_images, published_patch, scaled, select_any, stamp

__all__ = ["UBWP"]


@register
class UBWP(DatasetWatermark):
    name = "ubw-p"
    kind = "poison-label"
    targeted = False

    def __init__(self, patch_size: int = 3, num_classes: int | None = None):
        """``patch_size``: side in pixels for 32x32 images; ``num_classes``: K, the labels drawn from (default: the
        largest label in ``y`` plus one, which misses a class absent from a subset: give K when you know it)."""
        self.patch_size = check_int("patch_size", patch_size, 1, 32)
        self.num_classes = None if num_classes is None else check_int("num_classes", num_classes, 2)

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        return stamp(x, published_patch(x.shape[1], scaled(self.patch_size, min(x.shape[-2:]))))

    def apply(self, x, y, rate, target: int = 0, seed: int = 0):
        """Mark ``rate`` of the whole set (``target`` is not used) and give each marked sample a label drawn
        uniformly from the K classes with a generator seeded by ``seed``."""
        check_images(x)
        y = check_labels(y, len(x))
        k = self.num_classes if self.num_classes is not None else max(int(y.max()) + 1, 2)
        if int(y.max()) >= k:
            raise ValueError(f"labels must be in [0, num_classes - 1] = [0, {k - 1}]; got {int(y.max())}")
        idx = select_any(len(y), rate, seed)
        x_out, y_out = x.clone(), y.clone()
        x_out[idx] = self.trigger(x[idx])
        g = torch.Generator().manual_seed(seed + 1)  # not the selection's stream
        y_out[idx] = torch.randint(0, k, (len(idx),), generator=g).to(y.dtype)
        return x_out, y_out, idx

    def describe(self) -> dict:
        return {**super().describe(), "patch_size_at_32": self.patch_size, "labels": "uniform random",
                "num_classes": self.num_classes}
