"""Sleeper Agent (Souri et al., NeurIPS 2022, "Sleeper Agent: Scalable Hidden Trigger Backdoors for Neural Networks
Trained from Scratch"): a clean-label, hidden-trigger watermark. Target-class samples get an L_inf perturbation
found by gradient matching on a surrogate, so that training on them has the same gradient as training on
"non-target image + patch trigger -> target". The poisons do NOT contain the trigger; only queries do.

Defaults (Souri et al.'s CIFAR-10 setting): eps = 16/255, 250 crafting steps of signed Adam, a random-noise patch
trigger of 8x8 pixels (here fixed in the bottom-right corner and drawn from ``patch_seed``; Souri et al. place it at a
random position). Up to ``n_source`` = 1000 source images is this project's budget, not Souri et al.'s: their crafting
uses up to 5,000 (``--sources_train``, the whole source class on CIFAR-10; their 1,000 are the test-time sources), so
the target gradient here is noisier; pass a larger ``n_source`` for theirs. Simplifications (say so when reporting): one
restart and no surrogate retraining during crafting (Souri et al. use restarts and retrain the surrogate 4 times);
poisons drawn at random from the target class (Souri et al. take the target-class images of largest gradient norm: moot
when gamma marks the whole class, as 0.1 does on full CIFAR-10, not on smaller gamma or larger classes); and no
differentiable augmentation while crafting (the suspect's training crops and flips; Souri et al. craft through it).
Sources come from every non-target class (Souri et al. and BackdoorBox's ``y_source`` use one source class; WSR here is
measured over all non-target classes, so the sources match it), and the patch is uniform noise over 0-255 (BackdoorBox's
example draws a binary black/white patch, of about twice the contrast). The patch side scales with the image
(``common.scaled``): 7 px at 28, 8 at 32, 16 at 64. See notebook 02.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..params import check_int, parse_eps
from .base import SurrogateWatermark, register
from .common import SourceLoss, check_images, gradient_matching, scaled, seeded_pattern, stamp

__all__ = ["SleeperAgent"]


@register
class SleeperAgent(SurrogateWatermark):
    name = "sleeper-agent"
    kind = "clean-label"
    targeted = True
    uses = "matches gradients on it"

    def __init__(self, eps=16 / 255, steps: int = 250, patch_size: int = 8, patch_seed: int = 0,
                 n_source: int = 1000, device="auto"):
        self.eps = parse_eps(eps)
        self.steps = check_int("steps", steps, 0)
        self.patch_size = check_int("patch_size", patch_size, 1, 32)
        self.patch_seed = check_int("patch_seed", patch_seed, 0)
        self.n_source = check_int("n_source", n_source, 1)
        self.device = device

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        s = scaled(self.patch_size, min(x.shape[-2:]))
        return stamp(x, seeded_pattern((x.shape[1], s, s), self.patch_seed))

    def _craft(self, x, y, idx, target, seed, checkpoint=None):
        pool = torch.nonzero(y != target).flatten()
        g = torch.Generator().manual_seed(seed + 2)
        src = self.trigger(x[pool[torch.randperm(len(pool), generator=g)[:self.n_source]]])

        def source_loss(logits, _):  # the triggered sources, labelled with the target class
            return F.cross_entropy(logits, torch.full((len(logits),), target, device=logits.device))

        return gradient_matching(self.surrogate, x[idx], y[idx], SourceLoss(src, source_loss), self.eps, self.steps,
                                 device=self.device, seed=seed, checkpoint=checkpoint)

    def describe(self) -> dict:
        # the poisons are matched to the patch: patch_seed keys the crafted set (named only when not 0, so sets cached
        # with the default keep their keys)
        return {**super().describe(), "eps": self.eps, "steps": self.steps, "patch_size_at_32": self.patch_size,
                "n_source": self.n_source, **({"patch_seed": self.patch_seed} if self.patch_seed else {})}
