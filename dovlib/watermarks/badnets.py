"""BadNets (Gu et al., 2017, "BadNets: Identifying Vulnerabilities in the Machine Learning Model Supply Chain"):
a poison-label watermark. A white square patch in the bottom-right corner, marked samples relabelled to the target.

Defaults (BackdoorBox's CIFAR-10 setting, as in SSCL-BW's Table I; Gu et al. themselves used MNIST and traffic
signs): a 3x3 white patch at the bottom-right corner, poisoning rate 0.1. The side scales with the image
(``common.scaled``): 3 px at 28 and 32, 6 px at 64. See notebook 02.
"""

from __future__ import annotations

import torch

from ..params import check_int
from .base import DatasetWatermark, register
from .common import check_images, scaled, stamp

__all__ = ["BadNets"]


@register
class BadNets(DatasetWatermark):
    name = "badnets"
    kind = "poison-label"
    targeted = True

    def __init__(self, patch_size: int = 3, value: int = 255):
        """``patch_size``: side in pixels for 32x32 images (scaled with the image); ``value``: patch intensity."""
        self.patch_size = check_int("patch_size", patch_size, 1, 32)  # pixels at 32x32
        self.value = check_int("value", value, 0, 255)

    def patch(self, channels: int, image_size: int) -> torch.Tensor:
        s = scaled(self.patch_size, image_size)
        return torch.full((channels, s, s), self.value, dtype=torch.uint8)

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        return stamp(x, self.patch(x.shape[1], min(x.shape[-2:])))

    def describe(self) -> dict:
        return {**super().describe(), "patch_size_at_32": self.patch_size, "value": self.value}
