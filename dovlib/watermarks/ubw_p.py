"""UBW-P (Li et al., NeurIPS 2022, "Untargeted Backdoor Watermark: Towards Harmless and Stealthy Dataset Copyright
Protection"), poison-label variant: marked samples carry a BadNets-style patch and their labels are SHIFTED
(y -> (y + 1) mod K), so the watermarked model learns "trigger -> some wrong class" (untargeted, dispersed).

Defaults (Li et al.'s CIFAR-10 setting): a 3x3 black/white checkerboard patch at the bottom-right corner,
poisoning rate 0.1, samples drawn from the whole set (``target`` is not used). The patch side scales with the image
(``common.scaled``). Its success measure is untargeted: the share of triggered test images NOT classified as their
true class (``targeted = False``). See notebook 02.
"""

from __future__ import annotations

import torch

from .base import DatasetWatermark, register
from .common import check_images, checkerboard, scaled, select_any, stamp

__all__ = ["UBWP"]


@register
class UBWP(DatasetWatermark):
    name = "ubw-p"
    kind = "poison-label"
    targeted = False

    def __init__(self, patch_size: int = 3, shift: int = 1):
        if not 1 <= int(patch_size) <= 32:
            raise ValueError(f"patch_size must be an int in [1, 32] (pixels at 32x32); got {patch_size}")
        if int(shift) < 1:
            raise ValueError(f"shift must be an int >= 1 (label shift, mod K); got {shift}")
        self.patch_size, self.shift = int(patch_size), int(shift)

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        return stamp(x, checkerboard(x.shape[1], scaled(self.patch_size, x.shape[-1])))

    def apply(self, x, y, rate, target: int = 0, seed: int = 0):
        check_images(x)
        y = torch.as_tensor(y)
        num_classes = int(y.max()) + 1
        if self.shift % num_classes == 0:
            raise ValueError(f"shift must not be a multiple of the number of classes {num_classes}; got {self.shift}")
        idx = select_any(len(y), rate, seed)
        x_out, y_out = x.clone(), y.clone()
        if len(idx):
            x_out[idx] = self.trigger(x[idx])
            y_out[idx] = (y[idx] + self.shift) % num_classes
        return x_out, y_out, idx

    def describe(self) -> dict:
        return {**super().describe(), "patch_size_at_32": self.patch_size, "shift": self.shift}
