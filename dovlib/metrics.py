"""Image-quality and message metrics: PSNR, SSIM (per image and dataset mean), bit and word accuracy.

PSNR and SSIM come from scikit-image (``skimage.metrics``), not hand-written formulas. Images are (N, C, H, W)
tensors or arrays, uint8 or float in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["psnr", "mean_psnr", "PSNR_CAP", "ssim", "bit_accuracy", "word_accuracy", "as_bits"]


def _to_hwc01(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        x = x.numpy()
    else:
        x = np.asarray(x)
        x = x.astype(np.float64) / 255 if x.dtype == np.uint8 else x.astype(np.float64)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); got shape {x.shape}")
    if x.size and (x.min() < -1e-3 or x.max() > 1 + 1e-3):  # 0-255 floats would give a wrong PSNR, silently
        raise ValueError(f"images must be uint8 (0-255) or floats in [0, 1]; got {x.dtype} values in "
                         f"[{x.min():.4g}, {x.max():.4g}]")
    return np.clip(x, 0, 1).transpose(0, 2, 3, 1)  # rounding error just outside [0, 1] only


def _pairs(a, b):
    a, b = _to_hwc01(a), _to_hwc01(b)
    if a.shape != b.shape:
        raise ValueError(f"image batches must have the same shape; got {a.shape} and {b.shape}")
    return a, b


PSNR_CAP = 100.0  # dB an identical image counts as in a mean (its PSNR is +inf)


def mean_psnr(a, b, cap: float = PSNR_CAP) -> float:
    """Dataset PSNR: the mean of per-image PSNR with identical images counted at ``cap`` dB (not dropped, which
    would report only the images that changed). Every dovlib report averages PSNR this one way."""
    return float(np.mean(np.minimum(psnr(a, b), cap)))


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


def bit_accuracy(decoded, truth) -> np.ndarray:
    """Share of correct bits per message (rows), shape (N,). Inputs (N, L) or (L,)."""
    d, t = np.atleast_2d(as_bits(decoded)), np.atleast_2d(as_bits(truth))
    if d.shape[-1] != t.shape[-1]:
        raise ValueError(f"messages differ in length: {d.shape[-1]} vs {t.shape[-1]} bits")
    return (d == t).mean(axis=-1)


def word_accuracy(decoded, truth) -> np.ndarray:
    """1.0 where the whole message is correct, else 0.0, per row."""
    d, t = np.atleast_2d(as_bits(decoded)), np.atleast_2d(as_bits(truth))
    if d.shape[-1] != t.shape[-1]:
        raise ValueError(f"messages differ in length: {d.shape[-1]} vs {t.shape[-1]} bits")
    return (d == t).all(axis=-1).astype(float)
