"""WaNet (Nguyen & Tran, ICLR 2021, "WaNet - Imperceptible Warping-based Backdoor Attack"): a poison-label
watermark whose trigger is a smooth, fixed warping field; "noise mode" adds samples warped with the field plus
random noise that KEEP their labels, so the model learns the exact field only.

Defaults (Nguyen & Tran's CIFAR-10 setting, also BackdoorBox's): k = 4 control points per side, strength s = 0.5,
grid_rescale = 1, cross (noise) ratio 2 (twice as many noise samples as poisoned ones), poisoning rate 0.1. The
field is drawn from ``field_seed`` on a k x k grid and upsampled (bicubic) to the image size; displacements are in
normalised coordinates divided by the image side along each axis (width for x, height for y; the original divides
both by the height, the same on its square images), so they stay the same in pixels at any size: with the defaults
(field_seed 0, s = 0.5) a mean of 0.17 px and a maximum of 0.5 px along each axis (grid_sample with
align_corners=True maps a normalised displacement d to d * (side - 1) / 2 px, so a unit of the field moves about s / 2
px; its mean magnitude is 1 at the control points and smaller between them) at 28, 32 and 64. See notebook 02.

One difference from the original training recipe: the noise samples' random jitter is drawn once, in ``apply``, and
so frozen into the published set, where WaNet (and BackdoorBox) redraw it every time a sample is loaded; a dataset
that is published, not a training loop, cannot do otherwise. Its effect on WSR is not measured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..params import check_int, parse_fraction
from .base import DatasetWatermark, register
from .common import check_images

__all__ = ["WaNet"]


@register
class WaNet(DatasetWatermark):
    name = "wanet"
    kind = "poison-label"
    targeted = True

    def __init__(self, k: int = 4, s=0.5, grid_rescale=1.0, cross_ratio=2.0, field_seed: int = 0):
        self.k = check_int("k", k, 2, 32)
        self.s = parse_fraction("s", s, 0, 10)
        self.grid_rescale = parse_fraction("grid_rescale", grid_rescale, 0, 10)
        self.cross_ratio = parse_fraction("cross_ratio", cross_ratio, 0, 10, low_inclusive=True)
        self.field_seed = check_int("field_seed", field_seed, 0)
        self.noise_indices = torch.empty(0, dtype=torch.long)  # label-kept noise samples of the last apply()

    def grids(self, h: int, w: int):
        """(identity grid, warping offset) of shape (1, h, w, 2) in grid_sample's [-1, 1] coordinates; the warping
        grid is ``(identity + offset) * grid_rescale``, as in WaNet's definition (the whole grid is rescaled)."""
        g = torch.Generator().manual_seed(self.field_seed)
        ins = torch.rand(1, 2, self.k, self.k, generator=g) * 2 - 1
        ins = ins / ins.abs().mean()
        noise = F.interpolate(ins, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        identity = torch.stack((xx, yy), 2)[None]
        return identity, self.s * noise / torch.tensor([w, h], dtype=noise.dtype)  # (x, y): per-axis pixels

    def _warp(self, x: torch.Tensor, extra_noise: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        identity, offset = self.grids(h, w)
        grid = ((identity + offset) * self.grid_rescale).expand(len(x), h, w, 2)
        if extra_noise is not None:
            grid = grid + extra_noise
        grid = grid.clamp(-1, 1).to(x.device)
        out = F.grid_sample(x.float() / 255, grid, align_corners=True)
        return (out * 255).round().clamp(0, 255).to(torch.uint8)

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        return self._warp(x) if len(x) else x.clone()

    def apply(self, x, y, rate, target: int, seed: int = 0):
        """Poison ``rate`` of the set (relabelled to ``target``) and warp ``cross_ratio * rate`` more with field plus
        noise (labels kept, indices in ``self.noise_indices``). Returns the poisoned indices only."""
        check_images(x)
        x_out, y_out, idx = super().apply(x, y, rate, target, seed)
        n_noise = int(round(self.cross_ratio * len(idx)))
        keep = torch.ones(len(x), dtype=torch.bool)
        keep[idx] = False
        pool = torch.nonzero(keep).flatten()
        g = torch.Generator().manual_seed(seed + 1)
        noise_idx = pool[torch.randperm(len(pool), generator=g)[:n_noise]].sort().values
        if len(noise_idx):
            h, w = x.shape[-2:]
            jitter = (torch.rand(len(noise_idx), h, w, 2, generator=g) * 2 - 1) / torch.tensor([w, h])
            x_out[noise_idx] = self._warp(x[noise_idx], jitter)
        self.noise_indices = noise_idx
        return x_out, y_out, idx

    def describe(self) -> dict:
        return {**super().describe(), "k": self.k, "s": self.s, "grid_rescale": self.grid_rescale,
                "cross_ratio": self.cross_ratio, "field_seed": self.field_seed}
