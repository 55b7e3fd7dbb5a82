"""Label-Consistent backdoor (Turner et al., 2019, "Label-Consistent Backdoor Attacks"): a clean-label watermark.
Target-class samples are first made hard to classify with an L_inf PGD perturbation on a surrogate (so the model
must lean on the trigger), then stamped with the trigger; labels never change.

Defaults (Turner et al.'s CIFAR-10 setting): PGD eps = 16/255, 100 steps (step 2.5 * eps / steps, random start), the
four-corner 3x3 black/white trigger at full amplitude (255): ``common.PUBLISHED_PATCH`` in the right-hand corners and
its mirror image in the left-hand ones, as BackdoorBox's Label-Consistent examples draw it; marked samples from the
target class only. The corner patches scale with the image (``common.scaled``): 3 px at 28/32, 6 px at 64. ``fit`` takes
the owner's trained, frozen surrogate (dovlib.sscl.train_surrogate). See notebook 02.

One difference from Turner et al. (say so when reporting): they run PGD on an adversarially trained (robust) model,
whose perturbations look like features of other classes and transfer better; here PGD runs on the ordinary
surrogate every method shares (as BackdoorBox's own Label-Consistent test does), which may lower WSR.
"""

from __future__ import annotations

import torch

from ..params import check_int, parse_eps, parse_fraction
from .base import SurrogateWatermark, register
from .common import check_images, pgd_untargeted, published_patch, scaled, stamp

__all__ = ["LabelConsistent"]

CORNERS = ("tl", "tr", "bl", "br")


@register
class LabelConsistent(SurrogateWatermark):
    name = "label-consistent"
    kind = "clean-label"
    targeted = True
    uses = "runs PGD on it"

    def __init__(self, eps=16 / 255, steps: int = 100, alpha=None, patch_size: int = 3, amplitude: int = 255,
                 device="auto"):
        self.eps = parse_eps(eps)
        self.steps = check_int("steps", steps, 0)
        self.alpha = None if alpha is None else parse_fraction("alpha", alpha, 0.0, 1.0)  # a PGD step: may be < 1/255
        self.patch_size = check_int("patch_size", patch_size, 1, 16)
        self.amplitude = check_int("amplitude", amplitude, 1, 255)
        self.device = device

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        if not len(x):  # an empty batch: nothing to mark (the pattern below is drawn on an image of x's size)
            return x.clone()
        s = scaled(self.patch_size, min(x.shape[-2:]))
        c = x.shape[1]
        blank = torch.zeros_like(x[:1])
        board = stamp(stamp(blank, published_patch(c, s), ("tr", "br")), published_patch(c, s, mirrored=True),
                      ("tl", "bl"))[0]  # the pattern at full amplitude, in place, zero elsewhere
        full = stamp(blank, torch.ones(c, s, s, dtype=torch.uint8), CORNERS)[0].bool()
        if self.amplitude == 255:
            return torch.where(full, board, x)
        # reduced amplitude (Turner et al. Sec. 4.3): blend the pattern over the image instead of pasting it
        delta = ((board.float() / 255 * 2 - 1) * self.amplitude).where(full, torch.zeros(()))
        return (x.float() + delta).round().clamp(0, 255).to(torch.uint8)

    def _craft(self, x, y, idx, target, seed, checkpoint=None):
        adv = pgd_untargeted(self.surrogate, x[idx], y[idx], self.eps, self.steps, self.alpha, device=self.device,
                             seed=seed, checkpoint=checkpoint)
        return self.trigger(adv)

    def describe(self) -> dict:
        # alpha (the PGD step) keys the crafted set too; named only when set, so sets cached with the default keep
        # their keys
        return {**super().describe(), "eps": self.eps, "steps": self.steps, "patch_size_at_32": self.patch_size,
                "amplitude": self.amplitude, **({} if self.alpha is None else {"alpha": self.alpha})}
