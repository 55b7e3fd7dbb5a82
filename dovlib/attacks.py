"""Image attacks on watermarked images: the 45-attack grid of the SSL-watermarking evaluation and HiDDeN's noise layers.

Grid (Fernandez et al. 2022, *Watermarking Images in Self-Supervised Latent Spaces*, as used by AMUSE), 45 attacks:

=========== ============================================= =====
family      parameter values                              count
=========== ============================================= =====
blur        Gaussian kernel 3, 5, 7, 9, 11, 13            6
brightness  factor 0.5, 1.5, 2                            3
contrast    factor 0.5, 1.5, 2                            3
hue         shift -0.5, -0.25, 0.25, 0.5                  4
jpeg        quality 30, 40, ..., 100 (4:2:0 chroma)       8
center_crop share of the area 0.4, 0.5, ..., 0.9          6
resize      share of the area 0.4, 0.5, ..., 0.9          6
rotation    5, 10, ..., 45 degrees                        9
=========== ============================================= =====

The ranges are the paper's; the identity settings (brightness 1, contrast 1, hue 0) are left out, which gives
exactly 45. ``center_crop`` and ``resize`` take the share of the area kept, as in SSL-watermarking (its
``center_crop(x, scale)`` and ``resize(x, scale)``): each side becomes ``sqrt(share)`` of the original, rounded to
the nearest pixel, so ``center_crop_0.9`` keeps the 243x243 centre of a 256x256 image (SSL-watermarking truncates:
242x242; a side can differ by that one pixel, kept so the numbers measured since stay reproducible). (Before
2026-12-04 dovlib read the parameter as a side ratio, a stronger attack: 230x230 there.) Both make the image
smaller: by default :func:`apply_attack` resizes the result back to the original size (bilinear), because the
DCT-DWT / RivaGAN extractors need >= 256x256 images and a fixed layout; ``restore_size=False`` keeps the small
image (HiDDeN's decoder reads any size). Rotation keeps the size and fills the corners with black.

HiDDeN's noise layers (Zhu et al. 2018) mix the watermarked image with its cover: ``dropout`` (keep a random share
``p`` of watermarked pixels), ``cropout`` (keep a random rectangle of area share ``p``), ``crop`` (return a random
rectangle of area share ``p``, smaller image). They are differentiable (HiDDeN trains through them) and also serve as
attacks. ``jpeg_mask`` is HiDDeN's differentiable JPEG approximation (8x8 DCT, high frequencies zeroed).

All attacks are built on ``torchvision.transforms.v2.functional`` and PIL; images are uint8 (N, C, H, W).
See notebooks/07_amuse_message_length.py.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from .metrics import check_channels
from .params import check_choice, check_int, parse_fraction

__all__ = ["Attack", "ATTACKS", "HIDDEN_NOISES", "REPRESENTATIVE", "attack_grid", "attack_set", "apply_attack",
           "resolve_attacks", "jpeg",
           "dropout", "cropout", "crop",
           "jpeg_mask", "restore_size"]


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a uint8 tensor (N, C, H, W); got {got}")
    check_channels(images.shape)
    return images


def _share(name: str, value) -> float:
    """A share (of the area or of the pixels) in (0, 1]; errors name ``name`` and the range."""
    return parse_fraction(name, value, 0.0, 1.0)


def jpeg(images: torch.Tensor, quality: int, subsampling: str = "4:2:0") -> torch.Tensor:
    """JPEG compression through PIL at ``quality`` (an integer in [1, 100]; 50.7 is refused, not truncated) with
    ``subsampling`` "4:2:0" (the usual default) or "4:4:4" (no chroma subsampling)."""
    from PIL import Image

    _check_images(images)
    quality = check_int("quality", quality, 1, 100)
    check_choice("subsampling", subsampling, ("4:2:0", "4:4:4"))
    if len(images) == 0 or images.shape[1] not in (1, 3):
        raise ValueError(f"jpeg needs at least one grey (C = 1) or RGB (C = 3) image; got shape {tuple(images.shape)}")
    out = []
    for img in images.permute(0, 2, 3, 1).cpu().numpy():
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality, subsampling=0 if subsampling == "4:4:4" else 2)
        arr = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        out.append(arr[..., None] if arr.ndim == 2 else arr)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous().to(images.device)


def _blur(images, k):
    """Gaussian blur with a k x k kernel (torchvision; it rounds uint8 itself). Its reflect padding needs k // 2 less
    than each side of the image."""
    k = int(k)
    h, w = images.shape[-2:]
    if k // 2 >= min(h, w):
        raise ValueError(f"blur_{k} needs images with both sides at least {k // 2 + 1} pixels (kernel {k}, reflect "
                         f"padding {k // 2}); got {h}x{w}")
    return TF.gaussian_blur(images, [k, k])


def _scaled_size(images: torch.Tensor, share: float) -> list[int]:
    """(H, W) of an image keeping ``share`` of the area: each side times ``sqrt(share)``, rounded (SSL-watermarking
    truncates, one pixel less where the fraction is 0.5 or more), at least 1."""
    h, w = images.shape[-2:]
    side = math.sqrt(share)
    return [max(1, int(round(h * side))), max(1, int(round(w * side)))]


def _center_crop(images, share):
    """The centre of the images keeping ``share`` of the area, as in SSL-watermarking (not a side ratio)."""
    return TF.center_crop(images, _scaled_size(images, _share("center_crop share of the area", share)))


def _resize(images, share):
    """The images resized (antialiased) to ``share`` of the area, as in SSL-watermarking (not a side ratio)."""
    return TF.resize(images, _scaled_size(images, _share("resize share of the area", share)), antialias=True)


def _hue(images, shift):
    if images.shape[1] != 3:
        raise ValueError(f"hue needs RGB images (C = 3); got C = {images.shape[1]}")
    return TF.adjust_hue(images, shift)


def _rounded(fn: Callable) -> Callable:
    """``fn`` applied to the images as floats in [0, 1] and rounded back to uint8. torchvision's colour adjustments
    on uint8 tensors truncate (brightness 0.5 makes 255 into 127, not 128): up to one grey level darker than the
    float images SSL-watermarking attacks."""
    def apply(images, value):
        out = fn(images.float() / 255, value)
        return (out * 255).round_().clamp_(0, 255).to(torch.uint8)
    return apply


_FAMILIES: dict[str, tuple[Callable, list]] = {
    "blur": (_blur, [3, 5, 7, 9, 11, 13]),
    "brightness": (_rounded(TF.adjust_brightness), [0.5, 1.5, 2.0]),
    "contrast": (_rounded(TF.adjust_contrast), [0.5, 1.5, 2.0]),
    "hue": (_rounded(_hue), [-0.5, -0.25, 0.25, 0.5]),
    "jpeg": (lambda x, q: jpeg(x, q), [30, 40, 50, 60, 70, 80, 90, 100]),
    "center_crop": (_center_crop, [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    "resize": (_resize, [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    "rotation": (lambda x, a: TF.rotate(x, float(a)), [5, 10, 15, 20, 25, 30, 35, 40, 45]),
}
_SIZE_CHANGING = {"center_crop", "resize", "crop"}


def _finite(name: str, value, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}]; got {value!r}")
    return float(value)


def _check_param(family: str, value):
    """The parameter of an :class:`Attack` built by hand, checked as the grid's are built (a blur kernel of 4.7 is
    refused, not truncated to 4; a rotation by NaN is refused, not turned into a black image)."""
    if family == "blur":
        k = check_int("blur kernel size", value, 3)
        if k % 2 == 0:
            raise ValueError(f"blur kernel size must be an odd integer >= 3; got {value!r}")
    elif family in ("brightness", "contrast"):
        _finite(f"{family} factor", value, 0.0)
    elif family == "hue":
        _finite("hue shift", value, -0.5, 0.5)
    elif family == "rotation":
        _finite("rotation angle (degrees)", value)


# --- HiDDeN noise layers: float or uint8, differentiable for float inputs ---------------------------------------------

def _gen(generator, device) -> torch.Generator:
    if generator is not None:
        return generator
    return torch.Generator(device=device).manual_seed(0)


def _rect(h: int, w: int, share: float, gen: torch.Generator) -> tuple[int, int, int, int]:
    """A random rectangle covering ``share`` of the image area (same ratio on both sides)."""
    side = math.sqrt(share)
    rh, rw = max(1, int(round(h * side))), max(1, int(round(w * side)))
    top = int(torch.randint(0, h - rh + 1, (1,), generator=gen, device=gen.device))
    left = int(torch.randint(0, w - rw + 1, (1,), generator=gen, device=gen.device))
    return top, left, rh, rw


def dropout(encoded: torch.Tensor, cover: torch.Tensor, p: float, generator: torch.Generator | None = None):
    """HiDDeN Dropout: keep a random share ``p`` of the watermarked pixels, take the others from the cover."""
    p = _share("dropout p", p)
    gen = _gen(generator, encoded.device)
    keep = torch.rand((encoded.shape[0], 1, *encoded.shape[-2:]), generator=gen, device=encoded.device) < p
    return torch.where(keep, encoded, cover)


def cropout(encoded: torch.Tensor, cover: torch.Tensor, p: float, generator: torch.Generator | None = None):
    """HiDDeN Cropout: a random rectangle of area share ``p`` from the watermarked image, the rest from the cover."""
    p = _share("cropout p", p)
    gen = _gen(generator, encoded.device)
    top, left, rh, rw = _rect(*encoded.shape[-2:], p, gen)
    mask = torch.zeros((1, 1, *encoded.shape[-2:]), dtype=torch.bool, device=encoded.device)
    mask[..., top:top + rh, left:left + rw] = True
    return torch.where(mask, encoded, cover)


def crop(encoded: torch.Tensor, p: float, generator: torch.Generator | None = None):
    """HiDDeN Crop: a random rectangle of area share ``p`` of the watermarked image (a smaller image)."""
    p = _share("crop p", p)
    top, left, rh, rw = _rect(*encoded.shape[-2:], p, _gen(generator, encoded.device))
    return encoded[..., top:top + rh, left:left + rw]


def _dct_matrix(n: int = 8, device=None, dtype=torch.float32) -> torch.Tensor:
    k = torch.arange(n, dtype=dtype, device=device)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m  # orthonormal DCT-II: X = M x M^T


def jpeg_mask(x: torch.Tensor, keep_y: int = 5, keep_uv: int = 3) -> torch.Tensor:
    """HiDDeN's differentiable JPEG-Mask on float RGB images in [0, 1]: YUV, 8x8 block DCT, keep the low
    ``keep_y`` x ``keep_y`` (Y) and ``keep_uv`` x ``keep_uv`` (U, V) coefficients (integers in [1, 8]), inverse.
    Sides are padded to 8. The square is our reading of Zhu et al.'s 5x5 / 3x3 (a PyTorch reimplementation,
    ando-khachatryan/HiDDeN, keeps the first 25 / 9 in zig-zag order instead). bf16 and fp16 are computed in float32 and
    returned in their own dtype."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"jpeg_mask needs float images in [0, 1] (N, 3, H, W) (uint8 images: divide by 255 first); "
                         f"got {got}")
    if x.shape[1] != 3:
        raise ValueError(f"jpeg_mask needs RGB images (C = 3); got C = {x.shape[1]}")
    keep_y, keep_uv = check_int("keep_y", keep_y, 1, 8), check_int("keep_uv", keep_uv, 1, 8)
    n, _, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    dtype = x.dtype  # linalg.inv has no bf16/fp16: those are computed in float32 (float64 stays float64)
    work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    xp = torch.nn.functional.pad(x.to(work), (0, pw, 0, ph), mode="replicate")
    rgb2yuv = torch.tensor([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]],
                           device=x.device, dtype=work)
    yuv = torch.einsum("ij,njhw->nihw", rgb2yuv, xp)
    H, W = yuv.shape[-2:]
    blocks = yuv.reshape(n, 3, H // 8, 8, W // 8, 8).permute(0, 1, 2, 4, 3, 5)
    m = _dct_matrix(8, x.device, work)  # built in float64 for float64 images (a float32 one capped them at 1e-6)
    coef = m @ blocks @ m.T
    mask = torch.zeros(3, 8, 8, device=x.device, dtype=work)
    mask[0, :keep_y, :keep_y] = 1
    mask[1:, :keep_uv, :keep_uv] = 1
    blocks = m.T @ (coef * mask[None, :, None, None]) @ m
    yuv = blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, 3, H, W)
    rgb = torch.einsum("ij,njhw->nihw", torch.linalg.inv(rgb2yuv), yuv)
    return rgb[..., :h, :w].to(dtype)


HIDDEN_NOISES = {"dropout": [0.3, 0.55], "cropout": [0.3, 0.55], "crop": [0.3, 0.55]}
"""HiDDeN noise settings used as attacks: ``p`` = share of watermarked pixels kept. Zhu et al.'s single-noise models
keep 0.3 for Dropout and Cropout and a far smaller share of the area for Crop (0.035, as we read the paper); their
combined model keeps about 0.55-0.6. Here Crop keeps 0.3 and 0.55 like the others; AMUSE trains with Dropout,
Cropout and Crop."""


# --- registry ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Attack:
    """One attack with a fixed parameter. Call it on uint8 images (and the covers for Dropout/Cropout)."""

    name: str
    family: str
    param: float
    needs_cover: bool = False
    changes_size: bool = False

    def __call__(self, images: torch.Tensor, cover: torch.Tensor | None = None, *, restore_size: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        return apply_attack(self, images, cover, restore_size=restore_size, generator=generator)


def _name(family: str, param) -> str:
    return f"{family}_{param:g}"


def attack_grid() -> list[tuple[str, float]]:
    """The 45 (family, parameter) pairs of the SSL-watermarking grid (see the module docstring)."""
    return [(fam, p) for fam, (_, values) in _FAMILIES.items() for p in values]


ATTACKS: dict[str, Attack] = {
    **{_name(f, p): Attack(_name(f, p), f, p, changes_size=f in _SIZE_CHANGING) for f, p in attack_grid()},
    **{_name(f"hidden_{f}", p): Attack(_name(f"hidden_{f}", p), f"hidden_{f}", p, needs_cover=f != "crop",
                                       changes_size=f == "crop")
       for f, values in HIDDEN_NOISES.items() for p in values},
}
"""Every attack by name, e.g. ``ATTACKS["jpeg_50"]``, ``ATTACKS["hidden_dropout_0.3"]``: the 45 grid attacks and
HiDDeN's Dropout/Cropout/Crop."""


REPRESENTATIVE = ["blur_5", "brightness_1.5", "contrast_1.5", "hue_0.25", "jpeg_80", "center_crop_0.9", "resize_0.7",
                  "rotation_10"]
"""One moderate setting per family of the grid: the short attack list of smoke runs."""


def attack_set(name: str) -> list[str]:
    """Named attack lists: ``"none"`` (empty), ``"representative"`` (8, one per family), ``"grid"`` (the 45),
    ``"hidden"`` (HiDDeN's Dropout/Cropout/Crop at the :data:`HIDDEN_NOISES` settings)."""
    check_choice("attacks", name, ("none", "representative", "grid", "hidden"))
    if name == "none":
        return []
    if name == "representative":
        return list(REPRESENTATIVE)
    if name == "grid":
        return [_name(f, p) for f, p in attack_grid()]
    return [_name(f"hidden_{f}", p) for f, values in HIDDEN_NOISES.items() for p in values]


def attack_set_label(name: str) -> str:
    """What a figure's title says about :func:`attack_set` ``name``: "no attacks", or e.g. "attacked = mean over
    the 'representative' set (8 attacks)" (notebooks 07 and 08, whose panels say only "attacked")."""
    n = len(attack_set(name))
    return "no attacks" if n == 0 else f"attacked = mean over the '{name}' set ({n} attack{'s' * (n != 1)})"


def restore_size(images: torch.Tensor, size) -> torch.Tensor:
    """Resize (bilinear, antialiased) uint8 images back to ``size`` = (H, W)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return TF.resize(images, list(size), antialias=True)


def resolve_attacks(attacks) -> list[Attack]:
    """A list of attacks (names in :data:`ATTACKS` or :class:`Attack` objects) as :class:`Attack` objects, all checked
    up front: an unknown name is refused listing the valid ones, a bare string (not a list) by name."""
    if isinstance(attacks, (str, Attack)):
        raise ValueError(f"attacks must be a list of attack names or Attack objects (e.g. ['jpeg_50']); got "
                         f"{attacks!r}")
    out = []
    for a in attacks:
        if isinstance(a, str):
            check_choice("attacks", a, ATTACKS)
            a = ATTACKS[a]
        elif not isinstance(a, Attack):
            raise ValueError(f"attacks must hold attack names or Attack objects; got {a!r}")
        out.append(a)
    return out


def apply_attack(attack: Attack | str, images: torch.Tensor, cover: torch.Tensor | None = None, *,
                 restore_size: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply one attack (an :class:`Attack` or its name in :data:`ATTACKS`) to uint8 images (N, C, H, W).
    ``restore_size``: size-changing attacks are resized back to the input size (see the module docstring)."""
    if isinstance(attack, str):
        check_choice("attack", attack, ATTACKS)
        attack = ATTACKS[attack]
    _check_images(images)
    size = tuple(images.shape[-2:])
    fam = attack.family
    families = [*_FAMILIES, *(f"hidden_{k}" for k in HIDDEN_NOISES)]
    if fam not in families:  # an Attack built by hand
        raise ValueError(f"attack family must be one of {families}; got {fam!r}")
    if fam.startswith("hidden_"):
        kind = fam[len("hidden_"):]
        if kind in ("dropout", "cropout"):
            if cover is None or cover.shape != images.shape or cover.dtype != images.dtype:
                got = "none" if cover is None else f"{cover.dtype} {tuple(cover.shape)}"
                raise ValueError(f"{attack.name} mixes the watermarked images with their covers: pass cover= as "
                                 f"{images.dtype} images of the same shape {tuple(images.shape)}; got {got}")
            out = (dropout if kind == "dropout" else cropout)(images, cover.to(images.device), attack.param, generator)
        else:
            out = crop(images, attack.param, generator)
    else:
        _check_param(fam, attack.param)
        out = _FAMILIES[fam][0](images, attack.param)
    if restore_size and tuple(out.shape[-2:]) != size:
        out = TF.resize(out, list(size), antialias=True)
    return out.contiguous()
