"""UBW-C (Li et al., NeurIPS 2022, "Untargeted Backdoor Watermark: Towards Harmless and Stealthy Dataset Copyright
Protection"), clean-label variant: a bi-level problem -- perturb some training samples (labels kept) so that a
model trained on them misclassifies triggered images into DISPERSED wrong classes -- solved, as in Li et al., by
gradient matching on a surrogate: the poisons' training gradient is aligned with the gradient of
``-(CE(f(trigger(x)), y) + lam * H(f(trigger(x))))`` on triggered source images (H: prediction entropy).

Defaults: eps = 16/255, 250 crafting steps, lam = 2, the authors' 3x3 black/white patch trigger
(``common.PUBLISHED_PATCH``) at the bottom-right corner (as for UBW-P; scaled with the image by ``common.scaled``),
poisons and sources drawn from the whole set (untargeted; ``target`` is not used), up to 1000 source images. Its success
measure is untargeted: the share of triggered test images not classified as their true class. See notebook 02.

Differences from Li et al.'s released code (say so when reporting): no surrogate retraining during crafting; no
differentiable augmentation while crafting (they craft through random shifts and flips, the suspect trains with
crops and flips); poisons drawn at random (they take the images of largest gradient norm); sources from every class
(they use one source class); and a fixed 3x3 corner patch (theirs: a 3x3 pattern upscaled to 8x8 at a random
position).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..params import check_int, parse_eps, parse_fraction
from .base import SurrogateWatermark, register
from .common import SourceLoss, check_images, gradient_matching, published_patch, scaled, select_any, stamp

__all__ = ["UBWC"]


@register
class UBWC(SurrogateWatermark):
    name = "ubw-c"
    kind = "clean-label"
    targeted = False
    uses = "matches gradients on it"

    def __init__(self, eps=16 / 255, steps: int = 250, lam=2.0, patch_size: int = 3, n_source: int = 1000,
                 device="auto"):
        self.eps = parse_eps(eps)
        self.steps = check_int("steps", steps, 0)
        self.lam = parse_fraction("lam", lam, 0, 100, low_inclusive=True)
        self.patch_size = check_int("patch_size", patch_size, 1, 32)
        self.n_source = check_int("n_source", n_source, 1)
        self.device = device

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        return stamp(x, published_patch(x.shape[1], scaled(self.patch_size, min(x.shape[-2:]))))

    def apply(self, x, y, rate, target: int = 0, seed: int = 0, cache=None):
        """Untargeted: ``target`` is ignored and the marked images are drawn from every class."""
        return super().apply(x, y, rate, target, seed, cache)

    def _select(self, y, rate, target, seed):
        return select_any(len(y), rate, seed)

    def _craft(self, x, y, idx, target, seed, checkpoint=None):
        g = torch.Generator().manual_seed(seed + 2)
        pick = torch.randperm(len(y), generator=g)[:self.n_source]
        src, ysrc = self.trigger(x[pick]), y[pick]

        def source_loss(logits, chunk):  # raise the triggered sources' loss and prediction entropy (both means)
            entropy = -(logits.softmax(1) * logits.log_softmax(1)).sum(1).mean()
            return -(F.cross_entropy(logits, ysrc[chunk].to(logits.device)) + self.lam * entropy)

        return gradient_matching(self.surrogate, x[idx], y[idx], SourceLoss(src, source_loss), self.eps, self.steps,
                                 device=self.device, seed=seed, checkpoint=checkpoint)

    def describe(self) -> dict:
        return {**super().describe(), "eps": self.eps, "steps": self.steps, "lam": self.lam,
                "patch_size_at_32": self.patch_size, "n_source": self.n_source}
