"""Image-quality and message metrics: PSNR, SSIM (per image and dataset mean), bit and word accuracy.

PSNR and SSIM come from scikit-image (``skimage.metrics``), not hand-written formulas. Images are (N, C, H, W)
tensors or arrays, uint8 or float in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["psnr", "mean_psnr", "PSNR_CAP", "ssim", "bit_accuracy", "word_accuracy", "as_bits",
           "check_image_values", "check_channels"]


def check_channels(shape, name: str = "images") -> None:
    """Refuse a batch whose second axis is not 1 (grey) or 3 (RGB) channels: channel-last (N, H, W, C) images would
    otherwise be read with H as the channels and C as the width, and give wrong numbers without an error."""
    shape = tuple(shape)
    if len(shape) == 4 and shape[1] not in (1, 3):
        hint = " (channel-last? use x.permute(0, 3, 1, 2))" if shape[-1] in (1, 3) else ""
        raise ValueError(f"{name} must be (N, C, H, W) with C = 1 (grey) or 3 (RGB); got shape {shape}{hint}")


def _to_hwc01(x) -> np.ndarray:
    shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    if len(shape) != 4:  # a 3-D array could be one (C, H, W) image or N grey (H, W) images: never guessed
        raise ValueError(f"images must be a batch (N, C, H, W) (one image: x[None]; grey images: x[:, None]); got "
                         f"shape {shape}")
    check_channels(shape)
    if isinstance(x, torch.Tensor):
        given = x.dtype
        x = x.detach().cpu()
        x = x.double() / 255 if x.dtype == torch.uint8 else x.double()  # as the array path: equal images, +inf
        x = x.numpy()
    else:
        x = np.asarray(x)
        given = x.dtype
        x = x.astype(np.float64) / 255 if x.dtype == np.uint8 else x.astype(np.float64)
    check_image_values(x, "images", given)
    return np.clip(x, 0, 1).transpose(0, 2, 3, 1)  # rounding error just outside [0, 1] only


def _is_uint8(dtype) -> bool:
    return dtype == torch.uint8 if isinstance(dtype, torch.dtype) else np.dtype(dtype) == np.uint8


def _is_float(dtype) -> bool:
    return dtype.is_floating_point if isinstance(dtype, torch.dtype) else np.issubdtype(np.dtype(dtype), np.floating)


def check_image_values(x, name: str = "images", given=None) -> None:
    """Refuse float images (a tensor or an array) that are not finite values in [0, 1]: 0-255 floats would give a
    wrong PSNR or perceptual distance, silently, and NaN fails every range comparison. uint8 images pass.
    ``given``: the dtype to name in the error (the caller's, before a conversion). Other integer types are refused
    (an int64 0/1 image would be read as [0, 1], a 0-255 one as out of range)."""
    dtype = given if given is not None else x.dtype
    if not (_is_uint8(dtype) or _is_float(dtype)):
        raise ValueError(f"{name} must be uint8 (0-255) or floats in [0, 1]; got dtype {dtype}")
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.uint8 or x.numel() == 0:
            return
        size, finite = x.numel(), int(torch.isfinite(x).sum())
    else:
        x = np.asarray(x)
        if x.dtype == np.uint8 or x.size == 0:
            return
        size, finite = x.size, int(np.isfinite(x).sum())
    bad = size - finite
    allowed = f"{name} must be uint8 (0-255) or floats in [0, 1]"
    if bad:
        raise ValueError(f"{allowed}; got {bad} non-finite (NaN or inf) of {size} values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{allowed}; got {given or x.dtype} values in [{lo:.4g}, {hi:.4g}]")


def _pairs(a, b):
    a, b = _to_hwc01(a), _to_hwc01(b)
    if a.shape != b.shape:
        raise ValueError(f"image batches must have the same shape; got {a.shape} and {b.shape}")
    return a, b


PSNR_CAP = 100.0  # dB an identical image counts as in a mean (its PSNR is +inf)


def mean_psnr(a, b, cap: float = PSNR_CAP) -> float:
    """Dataset PSNR: the mean of per-image PSNR with identical images counted at ``cap`` dB (not dropped, which
    would report only the images that changed). Every dovlib report averages PSNR this one way. Needs at least one
    image pair."""
    values = psnr(a, b)
    if len(values) == 0:
        raise ValueError("mean_psnr needs at least one image pair (N >= 1); got 0 images")
    return float(np.mean(np.minimum(values, cap)))


def psnr(a, b) -> np.ndarray:
    """Per-image PSNR in dB (data range 1). Identical images give +inf."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _pairs(a, b)
    out = []
    for x, y in zip(a, b):
        if np.array_equal(x, y):
            out.append(np.inf)
        else:
            out.append(peak_signal_noise_ratio(x, y, data_range=1.0))
    return np.asarray(out)


def ssim(a, b) -> np.ndarray:
    """Per-image SSIM (scikit-image defaults, 7x7 window or the image size if smaller, channels averaged)."""
    from skimage.metrics import structural_similarity

    a, b = _pairs(a, b)
    win = min(7, a.shape[1], a.shape[2])
    win -= 1 - win % 2  # odd
    if win < 3:
        raise ValueError(f"images must be at least 3x3 pixels for SSIM; got {a.shape[1]}x{a.shape[2]}")
    return np.asarray([structural_similarity(x, y, data_range=1.0, channel_axis=-1, win_size=win)
                       for x, y in zip(a, b)])


def as_bits(x) -> np.ndarray:
    """Validate and convert to a uint8 array of 0/1 bits."""
    arr = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError("bits must contain only 0 and 1")
    return arr.astype(np.uint8)


def _messages(decoded, truth) -> tuple[np.ndarray, np.ndarray]:
    """Both as (N, L) bit arrays with L >= 1 and the same shape; a 1-D input is one message, compared with every row
    of the other."""
    d, t = as_bits(decoded), as_bits(truth)
    for name, arr in (("decoded", d), ("truth", t)):
        if arr.ndim not in (1, 2):
            raise ValueError(f"{name} must be (N, L) bits, N messages of L >= 1 bits (or one message of L bits); "
                             f"got shape {arr.shape}")
    d, t = np.atleast_2d(d), np.atleast_2d(t)
    if d.shape[1] != t.shape[1]:
        raise ValueError(f"messages differ in length: {d.shape[1]} vs {t.shape[1]} bits; decoded and truth must "
                         f"have the same shape (N, L)")
    if d.shape[1] == 0:
        raise ValueError(f"messages must hold L >= 1 bits; got shape {d.shape} (N, L)")
    if d.shape[0] != t.shape[0] and 1 not in (d.shape[0], t.shape[0]):  # one message may stand for all N
        raise ValueError(f"decoded and truth must have the same shape (N, L), or one of them one message (L,); "
                         f"got {d.shape} and {t.shape}")
    return np.broadcast_arrays(d, t)


def bit_accuracy(decoded, truth) -> np.ndarray:
    """Share of correct bits per message (rows), shape (N,). Inputs: the same shape (N, L) with L >= 1; either may be
    one message (L,), compared with every row of the other."""
    d, t = _messages(decoded, truth)
    return (d == t).mean(axis=1)


def word_accuracy(decoded, truth) -> np.ndarray:
    """1.0 where the whole message is correct, else 0.0, per row, shape (N,). Inputs as :func:`bit_accuracy`."""
    d, t = _messages(decoded, truth)
    return (d == t).all(axis=1).astype(float)
