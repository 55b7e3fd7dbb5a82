"""SSCL-BW behind the common :class:`DatasetWatermark` interface: a thin adapter over :mod:`dovlib.sscl`.

``fit`` trains (or loads from ``runs/sscl``) the owner's key-conditioned generator against the given surrogate;
``trigger`` is the generator's uint8 marking; ``apply`` marks gamma of the whole set from the target class only.
See notebooks 01-03.
"""

from __future__ import annotations

import math
from dataclasses import fields

import torch

from ..params import check_int, parse_eps
from ..sscl import GeneratorConfig, SSCLGenerator, check_key, get_or_train_generator
from .base import DatasetWatermark, register

__all__ = ["SSCLBW"]


@register
class SSCLBW(DatasetWatermark):
    name = "sscl-bw"
    kind = "clean-label"
    targeted = True

    def __init__(self, eps=None, target: int | None = None, key: int | None = None,
                 generator: SSCLGenerator | None = None, device="auto", progress: bool = True, **config):
        """``eps`` (default 8/255), ``target`` (default 1), ``key`` (default 0) and ``config`` (further
        :class:`dovlib.sscl.GeneratorConfig` fields: iters, batch, l1, l2, l3, perceptual, width, depth,
        key_channels, seed) set the generator ``fit`` trains. ``generator``: an already trained generator (``fit``
        is then a no-op); its own budget, key, architecture and target class (``G.meta["target"]``, recorded by
        training) are used, an ``eps``/``target``/``key`` that disagrees with them is refused, and training
        settings are refused (nothing is trained)."""
        self.generator = generator
        self.device, self.progress = device, progress
        if generator is None:
            self.config = GeneratorConfig(eps=8 / 255 if eps is None else eps, target=1 if target is None else target,
                                          key=0 if key is None else key, **config)
            return
        if config:
            raise ValueError(f"generator= is already trained: training settings do not apply; got {sorted(config)}")
        recorded = generator.meta.get("target")
        if eps is not None and not math.isclose(parse_eps(eps), generator.eps, abs_tol=1e-9):
            raise ValueError(f"eps = {eps!r} disagrees with the generator's eps {generator.eps * 255:g}/255; leave eps "
                             f"out to use the generator's")
        if key is not None and check_key(key) != generator.key:
            raise ValueError("key disagrees with the generator's key; leave key out to use the generator's")
        if target is not None:
            target = check_int("target", target, 0)
            if recorded is not None and target != recorded:
                raise ValueError(f"target = {target} disagrees with the generator's target class {recorded} (recorded "
                                 f"when it was trained); leave target out to use it")
        elif recorded is None:
            raise ValueError("this generator records no target class (G.meta['target'], set by training): pass "
                             "target=")
        names = {f.name for f in fields(GeneratorConfig)}
        trained = {k: v for k, v in generator.meta.get("config", {}).items() if k in names}  # when recorded
        own = {"eps": generator.eps, "key": generator.key, "width": generator.width, "depth": generator.depth,
               "key_channels": generator.key_channels, "target": recorded if target is None else target}
        self.config = GeneratorConfig(**{**trained, **own})

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
