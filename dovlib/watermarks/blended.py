"""Blended (Chen et al., 2017, "Targeted Backdoor Attacks on Deep Learning Systems Using Data Poisoning"): a
poison-label watermark. The marked image is ``(1 - alpha) * x + alpha * pattern``, relabelled to the target.

Defaults: blend ratio alpha = 0.2 (the value of Chen et al.'s training-time blend and of BackdoorBox's example),
poisoning rate 0.1. The pattern is Chen et al.'s random-noise key pattern: uniform uint8 noise drawn from
``pattern_seed`` at the image's own size and channels (Chen et al.'s other key, the Hello-Kitty picture that
BackdoorBox's example uses, is not available offline). See notebook 02.
"""

from __future__ import annotations

import torch

from ..params import check_int, parse_fraction
from .base import DatasetWatermark, register
from .common import check_images, seeded_pattern

__all__ = ["Blended"]


@register
class Blended(DatasetWatermark):
    name = "blended"
    kind = "poison-label"
    targeted = True

    def __init__(self, alpha=0.2, pattern_seed: int = 0):
        self.alpha = parse_fraction("alpha", alpha)
        self.pattern_seed = check_int("pattern_seed", pattern_seed, 0)

    def pattern(self, channels: int, h: int, w: int) -> torch.Tensor:
        return seeded_pattern((channels, h, w), self.pattern_seed)

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        p = self.pattern(*x.shape[1:]).float().to(x.device)
        return ((1 - self.alpha) * x.float() + self.alpha * p).round().clamp(0, 255).to(torch.uint8)

    def describe(self) -> dict:
        return {**super().describe(), "alpha": self.alpha, "pattern_seed": self.pattern_seed}
