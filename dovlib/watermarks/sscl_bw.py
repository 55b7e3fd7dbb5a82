"""SSCL-BW behind the common :class:`DatasetWatermark` interface: a thin adapter over :mod:`dovlib.sscl`.

``fit`` trains (or loads from ``runs/sscl``) the owner's key-conditioned generator against the given surrogate;
``trigger`` is the generator's uint8 marking; ``apply`` marks gamma of the whole set from the target class only.
See notebooks 01-03.
"""

from __future__ import annotations

import torch

from ..sscl import GeneratorConfig, SSCLGenerator, get_or_train_generator
from .base import DatasetWatermark, register

__all__ = ["SSCLBW"]


@register
class SSCLBW(DatasetWatermark):
    name = "sscl-bw"
    kind = "clean-label"
    targeted = True

    def __init__(self, eps=8 / 255, target: int = 1, key: int = 0, generator: SSCLGenerator | None = None,
                 device="auto", progress: bool = True, **config):
        """``config``: further :class:`dovlib.sscl.GeneratorConfig` fields (iters, batch, l1, l2, l3, perceptual,
        width, depth, key_channels, seed). ``generator``: an already trained generator (``fit`` is then a no-op)."""
        self.config = GeneratorConfig(eps=eps, target=target, key=key, **config)
        self.generator = generator
        self.device, self.progress = device, progress

    def fit(self, x: torch.Tensor, y: torch.Tensor, surrogate: torch.nn.Module | None = None) -> "SSCLBW":
        if self.generator is not None:
            return self
        if surrogate is None:
            raise ValueError("surrogate must be a classifier trained on the clean set (dovlib.sscl.train_classifier); "
                             "SSCL-BW trains its generator against it")
        self.generator = get_or_train_generator(surrogate, x, y, self.config, device=self.device,
                                                progress=self.progress)
        return self

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            raise RuntimeError("call fit(x, y, surrogate) (or pass generator=) before trigger/apply")
        return self.generator.mark(x)

    def apply(self, x, y, rate, target: int, seed: int = 0):
        if target != self.config.target:
            raise ValueError(f"target must be the generator's target class {self.config.target}; got {target}")
        return super().apply(x, y, rate, target, seed)

    def describe(self) -> dict:
        return {**super().describe(), **self.config.public()}
