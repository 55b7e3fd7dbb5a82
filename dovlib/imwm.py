"""Image watermarkers behind one interface: DCT-DWT, DCT-DWT-SVD and RivaGAN (``invisible-watermark``) and HiDDeN.

A :class:`Watermarker` hides ``message_bits`` bits in every image: ``embed(images, bits)`` takes uint8 images
(N, C, H, W) and bits (N, message_bits) of 0/1 and returns uint8 images; ``extract(images)`` returns (N, message_bits)
uint8 bits. ``capacity_bits`` is the most a method can carry; a longer message, or an image smaller than the method
allows, is refused with the limits named. AMUSE (notebooks 07, 08, 10) puts its short sub-messages into images
through this interface.

* ``ImWatermarker("dwtDct" | "dwtDctSvd" | "rivaGan")`` wraps the ``invisible-watermark`` package (``imwatermark``;
  RGB <-> the package's BGR HWC arrays is done here). Its limits, measured in notebook 07 and stated, not hidden:
  images need at least 256x256 pixels (the package's area check); the DCT methods mark only the U colour channel,
  with ``scale`` the quantisation step (the AMUSE paper uses 36, 30, 20; larger = more robust, lower PSNR); JPEG with
  4:2:0 chroma subsampling halves U's resolution: dwtDct falls to chance there (0.55 bit accuracy at quality 90) and
  with 4:4:4 survives high qualities only (0.91 at 90, 0.62 at 50), while dwtDctSvd holds (4:2:0: 0.999 at 90, 0.80
  at 50; 40 crops of scikit-image's photos, 32 bits, docs/measured-amuse-cpu.md); crops shift the block grid.
  RivaGAN (its ONNX models ship in the wheel; needs ``onnxruntime``) carries exactly 32 bits: shorter messages are
  padded with zeros, which extraction drops.
* ``HiDDeN`` (Zhu et al. 2018, *HiDDeN: Hiding Data With Deep Networks*): conv encoder/decoder in PyTorch, trained
  here by :func:`train_hidden` on any uint8 image set through the noise layers of :mod:`dovlib.attacks` (Identity,
  Dropout, Cropout, Crop, differentiable JPEG-Mask); ``save``/``HiDDeN.load`` keep the weights with their settings.
  ``HIDDEN_ARCHS["zhu2018"]`` is the paper's network (the message broadcast over the image, a globally pooled
  decoder), except that its encoder's last 1x1 convolution adds a residual to the image, initialised to zero, where
  the paper's outputs the encoded image itself: training starts at the identity (PSNR unbounded, no message);
  ``HIDDEN_ARCHS["msgmap"]`` (beyond the paper) feeds the message through a learnt linear map onto a coarse spatial
  grid (as StegaStamp, Tancik et al. 2020, does) and pools the decoder onto a 4x4 grid, so bits can
  ride on spatial patterns, and raises its image-loss weight once the message is learnt: measured on one CPU thread
  (identity noise, 30 bits, 32x32 CIFAR images) it reaches 0.999 bit accuracy after 300 steps, the paper's network
  0.69 after 800 (both measured with the message loss then weighed 4x the paper's, see :data:`HIDDEN_LOSS_VERSION`);
  the price is robustness to Crop (docs/measured-amuse-cpu.md).
"""

from __future__ import annotations

import math
import numbers
import os
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import attacks as _attacks
from .metrics import as_bits, bit_accuracy, check_channels, mean_psnr, word_accuracy
from .params import check_choice, check_int, check_seed, parse_fraction

__all__ = ["Watermarker", "ImWatermarker", "HiDDeN", "HiddenConfig", "HiddenNet", "train_hidden", "HIDDEN_LOSS_VERSION",
           "get_watermarker", "evaluate_attacks", "evaluate_dataset", "embed_dataset", "embed_at_size",
           "extract_dataset", "sample_images", "to_min_size", "resize_round_trip", "default_workers", "HIDDEN_ARCHS",
           "METHODS", "attack_generator", "MAX_DCT_SCALE"]

METHODS = ("dwtDct", "dwtDctSvd", "rivaGan", "hidden")


class Watermarker(ABC):
    """Common interface. Subclasses set ``name``, ``capacity_bits``, ``message_bits`` and ``min_side``/``min_area``."""

    name: str = "base"
    capacity_bits: int = 0
    message_bits: int = 0
    min_area: int = 1  # H * W at least
    any_size: bool = True  # True: extract() reads images of any size (HiDDeN); False: needs the embedding layout

    def _check_message_bits(self, message_bits: int | None) -> int:
        if message_bits is None:
            return self.capacity_bits
        try:
            return check_int("message_bits", message_bits, 1, self.capacity_bits)
        except ValueError as exc:  # say where the limit comes from
            raise ValueError(f"{exc} ({self.name} carries at most capacity_bits = {self.capacity_bits} bits per "
                             "image)") from None

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W); got {got}")
        if len(images) == 0:
            raise ValueError(f"images must hold at least one image; got 0 (shape {tuple(images.shape)})")
        if images.shape[1] != 3:
            raise ValueError(f"{self.name} needs RGB images (C = 3); got C = {images.shape[1]}")
        h, w = images.shape[-2:]
        if h * w < self.min_area:
            side = math.isqrt(self.min_area)
            raise ValueError(f"{self.name} needs images of at least {self.min_area} pixels (e.g. {side}x{side}); "
                             f"got {h}x{w}. Upsample them first (dovlib.imwm.to_min_size) or use larger images")
        return images

    def _check_bits(self, bits, n: int) -> np.ndarray:
        arr = np.atleast_2d(as_bits(bits))
        if arr.shape[1] > self.capacity_bits:
            raise ValueError(f"message length must be <= capacity_bits = {self.capacity_bits} for {self.name}; "
                             f"got {arr.shape[1]} bits")
        if arr.shape != (n, self.message_bits):
            raise ValueError(f"bits must have shape (N, message_bits) = ({n}, {self.message_bits}); got {arr.shape}")
        return arr

    @abstractmethod
    def embed(self, images: torch.Tensor, bits) -> torch.Tensor:
        """Hide one row of ``bits`` in each image; uint8 in, uint8 out (same shape)."""

    @abstractmethod
    def extract(self, images: torch.Tensor) -> np.ndarray:
        """The (N, message_bits) uint8 bits read from each image."""

    def describe(self) -> dict:
        return {"name": self.name, "capacity_bits": self.capacity_bits, "message_bits": self.message_bits}


# The largest DCT quantisation step whose change cannot overflow 8 bits. invisible-watermark moves one coefficient of
# each 4x4 block of the U channel's Haar approximation by up to 0.75 * scale (dwtDct: the block's largest entry after
# the first, no DCT applied; dwtDctSvd: its largest singular value, through an orthonormal DCT, which moves no entry by
# more), a pixel by up to half that, and writes the result
# into the uint8 YUV image unclipped. Pure blue has U = 239 and pure yellow U = 17 (cv2), about 16 levels from either
# end: 0.375 * 42 = 15.75. Measured on saturated blue, red and yellow images with random bits: dwtDct wraps from scale
# 50, dwtDctSvd from about 184.
MAX_DCT_SCALE = 42


def to_min_size(images: torch.Tensor, side: int = 256) -> torch.Tensor:
    """Upsample (bicubic, antialiased) uint8 images whose shorter side is below ``side`` so that it equals ``side``;
    larger images are returned unchanged. Used to bring CIFAR-size images to the 256x256 that DCT-DWT needs."""
    import torchvision.transforms.v2.functional as TF

    h, w = images.shape[-2:]
    if min(h, w) >= side:
        return images
    scale = side / min(h, w)
    return TF.resize(images, [round(h * scale), round(w * scale)], interpolation=TF.InterpolationMode.BICUBIC,
                     antialias=True)


def _resize_to(images: torch.Tensor, hw) -> torch.Tensor:
    """Resize (bicubic, antialiased) uint8 images to ``hw``: the way back of :func:`embed_at_size`."""
    import torchvision.transforms.v2.functional as TF

    return TF.resize(images, list(hw), interpolation=TF.InterpolationMode.BICUBIC, antialias=True)


def resize_round_trip(images: torch.Tensor, side: int = 256, chunk_size: int = 1024) -> torch.Tensor:
    """:func:`embed_at_size`'s round trip without the mark: upsample to ``side`` (:func:`to_min_size`) and resize back
    to the original size, the same resizes in the same chunks. Images already large enough come back unchanged. The
    unmarked reference for sets marked through an upsampled copy (notebook 10), which the round trip alone blurs."""
    from .params import check_int

    chunk_size = check_int("chunk_size", chunk_size, 1)
    hw = images.shape[-2:]
    if min(hw) >= side or not len(images):
        return images
    return torch.cat([_resize_to(to_min_size(images[i:i + chunk_size], side), hw)
                      for i in range(0, len(images), chunk_size)])


# --- invisible-watermark ----------------------------------------------------------------------------------------------

def default_workers() -> int:
    """Worker processes for the per-image ``invisible-watermark`` methods: ``$DOVLIB_WORKERS`` if set, else the CPU
    cores this process may use, at most 8."""
    env = os.environ.get("DOVLIB_WORKERS")
    if env not in (None, ""):
        return check_int("DOVLIB_WORKERS", env, 1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores))


def _im_embed(method: str, configs: dict, arrays: list, rows: list) -> list:
    from imwatermark import WatermarkEncoder

    if method == "rivaGan":
        WatermarkEncoder.loadModel()  # once per process (a worker starts without it); later calls return at once
    out = []
    for arr, row in zip(arrays, rows):
        enc = WatermarkEncoder()
        enc.set_watermark("bits", row)
        out.append(enc.encode(arr, method, **configs))
    return out


def _im_extract(method: str, configs: dict, width: int, arrays: list) -> list:
    from imwatermark import WatermarkDecoder

    if method == "rivaGan":
        WatermarkDecoder.loadModel()
    dec = WatermarkDecoder("bits", width)
    return [np.asarray(dec.decode(arr, method, **configs), dtype=np.uint8) for arr in arrays]


class ImWatermarker(Watermarker):
    """DCT-DWT (``"dwtDct"``), DCT-DWT-SVD (``"dwtDctSvd"``) or RivaGAN (``"rivaGan"``) from ``invisible-watermark``.

    ``scale``: quantisation step of the DCT methods (package default 36; the AMUSE paper also uses 30 and 20).
    ``capacity_bits``: 1024 for the DCT methods (one bit per 4x4 block of the U channel's DWT band of a 256x256
    image; accuracy falls long before that, see notebook 07), 32 for RivaGAN.
    ``workers``: the package works one image at a time in Python (15-25 ms per 256x256 image on one core), so calls
    with at least ``min_parallel`` images are spread over that many processes (default :func:`default_workers`;
    1 = never) with joblib; its worker processes are started once and reused; results do not depend on ``workers``.
    """

    min_area = 256 * 256
    any_size = False
    min_parallel = 64

    def __init__(self, method: str = "dwtDct", message_bits: int | None = None, scale: float = 36,
                 workers: int | None = None):
        check_choice("method", method, ("dwtDct", "dwtDctSvd", "rivaGan"))
        self.method = self.name = method
        self.capacity_bits = 32 if method == "rivaGan" else (256 // 8) * (256 // 8)
        self.message_bits = self._check_message_bits(message_bits)
        if isinstance(scale, bool) or not (isinstance(scale, numbers.Real) and 0 < scale <= MAX_DCT_SCALE):
            raise ValueError(f"scale must be a number in (0, {MAX_DCT_SCALE}]; got {scale!r} (the paper used 36, 30 "
                             f"and 20; above {MAX_DCT_SCALE} invisible-watermark can push the U channel of saturated "
                             "colours past 255, where its uint8 write wraps around: blue turns black)")
        self.scale = float(scale)
        self.workers = default_workers() if workers is None else check_int("workers", workers, 1)
        if method == "rivaGan":
            try:
                from imwatermark import WatermarkEncoder
                WatermarkEncoder.loadModel()
            except ImportError as exc:  # pragma: no cover - onnxruntime is a dependency
                raise ImportError("RivaGAN needs onnxruntime: pip install onnxruntime") from exc

    @property
    def label(self) -> str:
        """How captions and titles name it: the method, with its scale for the DCT methods (RivaGAN has none)."""
        return self.method if self.method == "rivaGan" else f"{self.method} (scale {self.scale:g})"

    def _configs(self) -> dict:
        return {} if self.method == "rivaGan" else {"scales": [0, self.scale, 0]}

    def _check_images(self, images):
        images = super()._check_images(images)
        h, w = images.shape[-2:]
        if self.method != "rivaGan" and (h // 8) * (w // 8) < self.message_bits:
            raise ValueError(f"{self.name} with message_bits={self.message_bits} needs at least that many 8x8 blocks "
                             f"per image; a {h}x{w} image has {(h // 8) * (w // 8)}")
        return images

    @staticmethod
    def _to_bgr(img: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(img.permute(1, 2, 0).numpy()[..., ::-1])

    @staticmethod
    def _from_bgr(arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arr[..., ::-1])).permute(2, 0, 1)

    def _padded(self, row: np.ndarray) -> list[int]:
        width = 32 if self.method == "rivaGan" else self.message_bits
        return [int(b) for b in row] + [0] * (width - len(row))

    def _map(self, fn, *args, per_image: list) -> list:
        """``fn(*args, *chunk)`` over chunks of the per-image lists, in order; in worker processes for large calls
        (joblib's reusable loky pool: no ``if __name__ == "__main__"`` guard needed in scripts)."""
        n = len(per_image[0])
        if self.workers == 1 or n < self.min_parallel:
            return fn(*args, *per_image)
        from joblib import Parallel, delayed

        size = math.ceil(n / (4 * self.workers))
        parts = Parallel(n_jobs=self.workers)(delayed(fn)(*args, *[lst[i:i + size] for lst in per_image])
                                              for i in range(0, n, size))
        return [out for part in parts for out in part]

    def embed(self, images, bits):
        images = self._check_images(images).cpu()
        arr = self._check_bits(bits, len(images))
        marked = self._map(_im_embed, self.method, self._configs(),
                           per_image=[[self._to_bgr(img) for img in images], [self._padded(row) for row in arr]])
        return torch.stack([self._from_bgr(m) for m in marked]).to(torch.uint8)

    def extract(self, images):
        images = self._check_images(images).cpu()
        width = 32 if self.method == "rivaGan" else self.message_bits
        rows = self._map(_im_extract, self.method, self._configs(), width,
                         per_image=[[self._to_bgr(img) for img in images]])
        return np.stack([r[:self.message_bits] for r in rows]).astype(np.uint8)

    def describe(self):
        return {**super().describe(), "scale": self.scale if self.method != "rivaGan" else None}


# --- HiDDeN -----------------------------------------------------------------------------------------------------------

@dataclass
class HiddenConfig:
    """HiDDeN settings. The sizes and loss weights are Zhu et al. 2018's (as in the AMUSE repo's 30-bit model); the
    noise layers are dovlib's choice (no Gaussian blur; ``p`` drawn in ``noise_p`` for Dropout, Cropout and Crop,
    where the paper's single-noise models fix it), see :data:`dovlib.attacks.HIDDEN_NOISES`."""

    message_bits: int = 30
    encoder_blocks: int = 4
    decoder_blocks: int = 7
    channels: int = 64
    image_size: int = 128  # training crop side
    encoder_loss: float = 0.7
    decoder_loss: float = 1.0
    adversarial_loss: float = 1e-3  # 0 switches the discriminator off
    noises: tuple = ("identity", "dropout", "cropout", "crop", "jpeg")  # one drawn per mini-batch
    noise_p: tuple = (0.3, 0.6)  # range of p (share of watermarked pixels kept) for dropout/cropout/crop
    lr: float = 1e-3
    batch_size: int = 32
    message_map: int = 0  # >0: channels of a learnt message -> map_side x map_side map (0: the paper's broadcast)
    map_side: int = 8
    decoder_grid: int = 1  # side of the decoder's adaptive average pooling (1: the paper's global pooling)
    encoder_loss_late: float | None = None  # image-loss weight from late_start x steps on (None: encoder_loss)
    late_start: float = 0.5
    late_bit_acc: float | None = None  # if set, the rise also waits until the training bit accuracy reaches it

    def __post_init__(self):
        # papermill may pass "4" or 16.0: the checked int is what is kept (and what the networks are built with)
        for name, low in (("message_bits", 1), ("image_size", 8), ("encoder_blocks", 1), ("decoder_blocks", 1),
                          ("channels", 1), ("batch_size", 1), ("message_map", 0), ("map_side", 1),
                          ("decoder_grid", 1)):
            setattr(self, name, check_int(name, getattr(self, name), low))
        def real(v):  # a finite number, not a bool (True is a numbers.Real)
            return not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)

        if not (real(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0; got {self.lr!r}")
        for name in ("encoder_loss", "decoder_loss", "adversarial_loss"):
            w = getattr(self, name)
            if not (real(w) and w >= 0):
                raise ValueError(f"{name} (a loss weight) must be a finite number >= 0; got {w!r}")
        if self.decoder_loss == 0:
            raise ValueError("decoder_loss must be > 0: without the message loss nothing is learnt to be read back")
        if self.encoder_loss_late is not None and not (real(self.encoder_loss_late) and self.encoder_loss_late >= 0):
            raise ValueError(f"encoder_loss_late must be a finite number >= 0 or None; got {self.encoder_loss_late!r}")
        if not (real(self.late_start) and 0 <= self.late_start <= 1):
            raise ValueError(f"late_start must be a number in [0, 1] (a share of the training steps); "
                             f"got {self.late_start!r}")
        if self.late_bit_acc is not None and not (real(self.late_bit_acc) and 0.5 <= self.late_bit_acc <= 1):
            raise ValueError(f"late_bit_acc must be a number in [0.5, 1] or None; got {self.late_bit_acc!r}")
        if self.late_bit_acc is not None and self.encoder_loss_late is None:
            raise ValueError(f"late_bit_acc={self.late_bit_acc!r} delays the rise to encoder_loss_late, which is None "
                             f"(no rise): set encoder_loss_late too, or leave late_bit_acc None")
        self.noises = tuple(self.noises) if isinstance(self.noises, (list, tuple)) else (self.noises,)
        if not self.noises:
            raise ValueError("noises must name at least one of ['identity', 'dropout', 'cropout', 'crop', 'jpeg']; "
                             "got none")
        for n in self.noises:
            check_choice("noises", n, ("identity", "dropout", "cropout", "crop", "jpeg"))
        self.noise_p = tuple(self.noise_p) if isinstance(self.noise_p, (list, tuple)) else (self.noise_p,)
        if len(self.noise_p) != 2:
            raise ValueError(f"noise_p must be a range (low, high) of two numbers in (0, 1]; got {self.noise_p!r}")
        self.noise_p = tuple(parse_fraction("noise_p", p, 0.0, 1.0) for p in self.noise_p)
        if self.noise_p[0] > self.noise_p[1]:
            raise ValueError(f"noise_p must be a range (low, high) with low <= high, both in (0, 1]; "
                             f"got {self.noise_p!r}")
        # plain floats (numpy's np.float32(1e-3) passed the checks): saved settings then load with weights_only=True
        for name in ("lr", "encoder_loss", "decoder_loss", "adversarial_loss", "encoder_loss_late", "late_start",
                     "late_bit_acc"):
            if getattr(self, name) is not None:
                setattr(self, name, float(getattr(self, name)))
        self.noises, self.noise_p = tuple(str(n) for n in self.noises), tuple(float(q) for q in self.noise_p)


def _block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


HIDDEN_ARCHS = {"zhu2018": {"message_map": 0, "decoder_grid": 1},
                "msgmap": {"message_map": 8, "map_side": 8, "decoder_grid": 4, "encoder_loss_late": 5.0,
                           "late_start": 0.25, "late_bit_acc": 0.8, "decoder_loss": 4.0}}
"""Named HiDDeN settings (keyword arguments of :class:`HiddenConfig`): ``zhu2018`` is the paper's network and loss
(the encoder's output a zero-initialised residual, see the module docstring),
``msgmap`` the faster-learning variant with a learnt spatial message map and a 4x4-pooled decoder (beyond the paper),
whose image-loss weight rises from 0.7 to 5 once the message is learnt (training bit accuracy 0.8, not before a
quarter of the steps): the message first, then the image is cleaned up (a constant weight of 2 from the start never
leaves the no-message plateau, and a rise before the message is learnt erases it; docs/measured-amuse-cpu.md).
``msgmap`` weighs the message loss 4 (in the paper's units, MSE of {0, 1} bits), the balance it was measured with
(before 2026-12-05 every network weighed it so; ``zhu2018`` now has the paper's 1)."""


class HiddenNet(nn.Module):
    """Encoder (conv blocks, message broadcast over the image and concatenated), decoder (conv blocks, global average
    pool, linear) and, when adversarial, a small discriminator. The encoder predicts a residual added to the image.
    With ``cfg.message_map`` > 0 the message enters through a linear map onto a ``map_side`` grid (upsampled to the
    image) instead of the broadcast; with ``cfg.decoder_grid`` > 1 the decoder pools onto that grid, keeping where
    on the image a pattern was."""

    def __init__(self, cfg: HiddenConfig):
        super().__init__()
        c, L = cfg.channels, cfg.message_bits
        self.map_side = cfg.map_side
        self.enc = nn.Sequential(_block(3, c), *[_block(c, c) for _ in range(cfg.encoder_blocks - 1)])
        self.msg_map = nn.Linear(L, cfg.message_map * cfg.map_side ** 2) if cfg.message_map else None
        self.enc_after = _block(c + (cfg.message_map or L) + 3, c)
        self.enc_final = nn.Conv2d(c, 3, 1)
        nn.init.zeros_(self.enc_final.weight)  # start as the identity: the residual grows only as far as it must
        nn.init.zeros_(self.enc_final.bias)
        self.dec = nn.Sequential(_block(3, c), *[_block(c, c) for _ in range(cfg.decoder_blocks - 1)], _block(c, L),
                                 nn.AdaptiveAvgPool2d(cfg.decoder_grid), nn.Flatten())
        self.dec_linear = nn.Linear(L * cfg.decoder_grid ** 2, L)
        self.disc = nn.Sequential(_block(3, c), _block(c, c), _block(c, c), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(c, 1)) if cfg.adversarial_loss > 0 else None

    def encode(self, x: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
        """x: float images in [0, 1]; msg: (N, L) in {-1, +1}. Returns float images (not clamped)."""
        xc = x - 0.5
        if self.msg_map is not None:
            grid = self.msg_map(msg).view(len(x), -1, self.map_side, self.map_side)
            m = F.interpolate(grid, size=x.shape[-2:], mode="nearest")
        else:
            m = msg[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        h = self.enc_after(torch.cat([self.enc(xc), m, xc], dim=1))
        return x + self.enc_final(h)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Soft message (N, L); bit = output > 0."""
        return self.dec_linear(self.dec(x - 0.5))


def _noise(kind: str, enc: torch.Tensor, cover: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    if kind == "dropout":
        return _attacks.dropout(enc, cover, p, gen)
    if kind == "cropout":
        return _attacks.cropout(enc, cover, p, gen)
    if kind == "crop":
        return _attacks.crop(enc, p, gen)
    if kind == "jpeg":
        return _attacks.jpeg_mask(enc)
    return enc


class HiDDeN(Watermarker):
    """A trained HiDDeN model as a :class:`Watermarker` (any image of at least 64 pixels; fully convolutional)."""

    name = "hidden"
    min_area = 64
    any_size = True

    def __init__(self, net: HiddenNet, cfg: HiddenConfig, history: list | None = None, device="cpu",
                 wall_time: float | None = None, provenance: dict | None = None):
        from .train import resolve_device

        self.net, self.cfg = net.eval(), cfg
        self.capacity_bits = self.message_bits = cfg.message_bits
        self.history = history or []
        # seconds training took (train_hidden's, resumed runs included); None: not known (a net built by hand)
        self.wall_time = None if wall_time is None else float(wall_time)
        # how train_hidden trained it: trained_on, trained_by, training_precision (dovlib.train.training_provenance);
        # {} for a net built by hand
        self.provenance = dict(provenance or {})
        self.device = resolve_device(device)  # "auto" as train_hidden takes it
        self.net.to(self.device)

    @torch.no_grad()
    def embed(self, images, bits, batch_size: int = 64):
        batch_size = check_int("batch_size", batch_size, 1)
        images = self._check_images(images)
        arr = self._check_bits(bits, len(images))
        msg = torch.from_numpy(arr.astype(np.float32) * 2 - 1)
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(self.device).float() / 255
            y = self.net.encode(x, msg[i:i + batch_size].to(self.device))
            out.append((y.clamp(0, 1) * 255).round().to(torch.uint8).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def extract(self, images, batch_size: int = 64):
        batch_size = check_int("batch_size", batch_size, 1)
        images = self._check_images(images)
        outs = [self.net.decode(images[i:i + batch_size].to(self.device).float() / 255).cpu()
                for i in range(0, len(images), batch_size)]
        return (torch.cat(outs) > 0).numpy().astype(np.uint8)

    def save(self, path) -> Path:
        """Weights with their settings and training history (``torch.save``, written whole or not at all)."""
        from .train import _save_atomic

        path = Path(path)
        _save_atomic(self._state(), path)
        return path

    def _state(self) -> dict:
        return {"config": asdict(self.cfg), "state_dict": self.net.state_dict(), "history": self.history,
                **({} if self.wall_time is None else {"wall_time": self.wall_time}),
                **({"provenance": self.provenance} if self.provenance else {})}

    @classmethod
    def load(cls, path, device="cpu") -> "HiDDeN":
        """A model saved by :meth:`save` or :func:`train_hidden`, read with ``weights_only=True``: a file from
        elsewhere can hold tensors and plain settings only, never code that runs on loading. ``wall_time``: the
        seconds its training took as saved (files of older code: the last logged step's ``seconds``), which is what
        it counts in :func:`dovlib.train.compute_ledger`, not the reading. Where and in what precision it was trained
        (``provenance``; "unknown" where the file does not say) counts in :func:`dovlib.train.training_provenance`,
        so records name the machine that trained it, not this one."""
        from .train import charge, noted_provenance, safe_torch_load

        started = time.perf_counter()
        state = safe_torch_load(path, "a saved HiDDeN", "HiDDeN.load reads files written by HiDDeN.save or "
                                "train_hidden")
        if not isinstance(state, dict) or not {"config", "state_dict"} <= set(state):
            kind = "a train_hidden .partial (resumable state: let train_hidden finish it)" \
                if isinstance(state, dict) and "net" in state else "not a saved HiDDeN"
            raise ValueError(f"{path} is {kind}; HiDDeN.load reads files written by HiDDeN.save or train_hidden")
        cfg = HiddenConfig(**state["config"])
        net = HiddenNet(cfg)
        net.load_state_dict(state["state_dict"])
        # files of older code and nets saved by hand say "unknown" (train_hidden's files of older code: its bf16)
        provenance = noted_provenance(state.get("provenance") or {}, (
            "bf16" if state["bf16"] else "fp32") if "bf16" in state else "unknown")
        model = cls(net, cfg, state.get("history"), device, _saved_seconds(state), provenance)
        charge(path, model.wall_time, True, started)
        return model

    def describe(self):
        return {**super().describe(), **{k: v for k, v in asdict(self.cfg).items() if k != "message_bits"}}


def _saved_seconds(state: dict) -> float | None:
    """The training seconds a saved HiDDeN holds: its ``wall_time``, or in files of older code the ``seconds`` of its
    last logged step (train_hidden logs the last step too), or None."""
    seconds = state.get("wall_time")
    if seconds is None:
        history = state.get("history")
        last = history[-1] if isinstance(history, list) and history else None
        seconds = last.get("seconds") if isinstance(last, dict) else None
    return float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) \
        and math.isfinite(seconds) and seconds >= 0 else None


def _random_crops(x: torch.Tensor, n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    idx = torch.randint(0, len(x), (n,), generator=gen)
    h, w = x.shape[-2:]
    tops = torch.randint(0, h - size + 1, (n,), generator=gen)
    lefts = torch.randint(0, w - size + 1, (n,), generator=gen)
    return torch.stack([x[i, :, top:top + size, left:left + size]
                        for i, top, left in zip(idx.tolist(), tops.tolist(), lefts.tolist())])


def _message_loss(decoded: torch.Tensor, message: torch.Tensor) -> torch.Tensor:
    """HiDDeN's message loss for +-1 bits and a decoder read at 0: the MSE on the paper's {0, 1} scale (Zhu et al.
    and its reference code take the MSE of {0, 1} messages), i.e. a quarter of the MSE on +-1, so ``decoder_loss``
    and ``encoder_loss`` keep the paper's balance."""
    return F.mse_loss((decoded + 1) / 2, (message + 1) / 2)


HIDDEN_LOSS_VERSION = 2
"""Saved with every trained HiDDeN: 2 takes the message MSE on the paper's {0, 1} scale (1, before 2026-12-05: on
+-1 bits, four times as heavy). A checkpoint of another version is retrained, not reused."""


def _load_safely(path, what: str) -> dict:
    """One of train_hidden's own files, read with ``weights_only=True`` (they hold tensors and plain settings only):
    a foreign file at the checkpoint path cannot run code; it is refused by name instead."""
    from .train import load_state

    return load_state(path, what, remedy="move it away or pass another checkpoint path")


def train_hidden(images: torch.Tensor, cfg: HiddenConfig | None = None, steps: int = 1000, device="cpu", seed: int = 0,
                 log_every: int = 50, checkpoint=None, progress: bool = True, checkpoint_every: float = 60.0,
                 precision: str = "auto", **overrides) -> HiDDeN:
    """Train HiDDeN on uint8 images (N, 3, H, W) with random ``cfg.image_size`` crops (images smaller than that are
    upsampled). Losses: image MSE (``encoder_loss``, or ``encoder_loss_late`` after ``late_start`` x ``steps`` and,
    with ``late_bit_acc``, from the first log step at which the mean training bit accuracy of the last three logged
    mini-batches reaches it; on images scaled to [-1, 1] as in Zhu et al., i.e. four times the MSE in [0, 1]),
    message MSE (``decoder_loss``; on {0, 1} bits as in Zhu et al., see :data:`HIDDEN_LOSS_VERSION`), adversarial
    BCE. One noise layer from ``cfg.noises`` per mini-batch. With
    ``checkpoint`` (a path) a finished model is loaded instead of retrained when its settings match, and the
    training state (weights, optimisers, random generators, history) is saved to ``<checkpoint>.partial`` at the
    first log step (every ``log_every`` steps) after ``checkpoint_every`` seconds since the last save and at the last
    log step when the run is interrupted, so an interrupted run resumes where it stopped and ends with the same
    weights as an uninterrupted one. With ``late_bit_acc``, whose rise is decided at the log steps, ``log_every``
    must match too (a finished checkpoint of older code, which did not record it, is reused, as notebook 08 derives
    log_every from the keyed ``steps``; an older partial run starts afresh). Returns a :class:`HiDDeN`;
    ``.history`` holds the logged losses and bit accuracy.

    ``precision`` (a profile's, :data:`dovlib.params.PRECISIONS`): "auto" runs the networks under bf16 autocast on
    CUDA and in fp32 on the CPU, "bf16" under bf16 autocast on any device, "fp32" never; the noise layers and the
    losses stay fp32, and embedding / extraction after training run in fp32. Whether bf16 was used is saved with
    the weights: a checkpoint trained otherwise is retrained, not reused.

    The noise layers see the encoder's output as it is, unclamped and unrounded, as in Zhu et al.'s reference code;
    :meth:`HiDDeN.embed` clamps to [0, 1] and rounds to uint8. On images with saturated areas some bits are then lost
    (measured 2026-12-06, 4 bits at 16x16 with 60% of each image white, three seeds: bit accuracy 0.79-0.88 after
    the clamp against 0.86-0.93 before; identical on images without saturated pixels)."""
    from .train import (Checkpointer, SaveTimer, charge, charging, data_hash, noted_provenance, resolve_device,
                        restore_generator, training_device, uses_bf16)

    started = time.perf_counter()  # what the model costs (HiDDeN.wall_time, dovlib.train.compute_ledger)
    cfg = cfg or HiddenConfig()
    if overrides:
        cfg = HiddenConfig(**{**asdict(cfg), **overrides})
    steps = check_int("steps", steps, 1)
    seed = check_seed(seed)  # "1", 1.5, -1 and 2**64 reached torch (or passed) without the parameter's name
    SaveTimer(checkpoint_every)  # refuses a bad checkpoint_every by name now, not at the first log step
    log_every = check_int("log_every", log_every, 1)
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or not len(images) \
            or images.shape[1] not in (1, 3):
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"train_hidden needs uint8 images (N, C, H, W) with N >= 1 and C = 3 (or 1: grey, "
                         f"repeated to RGB for training; embed/extract take RGB only); got {got} (float images in "
                         f"[0, 1]: "
                         f"(x * 255).round().to(torch.uint8))")
    device = resolve_device(device)
    bf16 = uses_bf16(precision, device)
    data = data_hash(images)  # a checkpoint is reused or resumed only for the images it was trained on
    if checkpoint is not None and Path(checkpoint).is_file():
        state = _load_safely(checkpoint, "train_hidden's checkpoint")
        if "steps" not in state or "seed" not in state:
            raise ValueError(f"checkpoint {checkpoint} holds a HiDDeN saved by HiDDeN.save, without the training run "
                             f"that made it (steps, seed, images): train_hidden would overwrite it. Load it with "
                             f"HiDDeN.load, or pass another checkpoint path")
        if (state.get("loss_version", 1) == HIDDEN_LOSS_VERSION and state.get("config") == asdict(cfg)
                and state.get("steps") == steps and state.get("seed") == seed
                and state.get("bf16", False) == bf16 and state.get("data_hash", data) == data
                and (cfg.late_bit_acc is None or state.get("log_every", log_every) == log_every)):
            with charging(started):  # the checks above count as the reading back too
                return HiDDeN.load(checkpoint, device)
    images = to_min_size(images if images.shape[1] == 3 else images.expand(-1, 3, -1, -1), cfg.image_size)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    net = HiddenNet(cfg).to(device).train()
    enc_dec = [p for n, p in net.named_parameters() if not n.startswith("disc")]
    opt = torch.optim.Adam(enc_dec, lr=cfg.lr)
    opt_d = torch.optim.Adam(net.disc.parameters(), lr=cfg.lr) if net.disc is not None else None
    history, t0, wall, start = [], time.perf_counter(), 0.0, 0
    trained_on, trained_by = training_device(device)  # saved with it: records name the machine that trained it
    partial = Path(str(checkpoint) + ".partial") if checkpoint is not None else None
    saver = Checkpointer(partial, checkpoint_every)  # and on an interruption, the last logged step
    if partial is not None and partial.is_file():
        st = _load_safely(partial, "train_hidden's partial run")
        # the same run only: the image-loss schedule depends on ``steps`` (and with ``late_bit_acc`` on
        # ``log_every``), so a partial run of another length (or of other images) starts afresh rather than mixing
        # two schedules
        if (st.get("loss_version", 1) == HIDDEN_LOSS_VERSION and st["config"] == asdict(cfg) and st["seed"] == seed
                and st.get("steps") == steps
                and st.get("data_hash") == data and st.get("bf16", False) == bf16
                and (cfg.late_bit_acc is None or st.get("log_every") == log_every)):
            net.load_state_dict(st["net"])
            opt.load_state_dict(st["opt"])
            if opt_d is not None:
                opt_d.load_state_dict(st["opt_d"])
            gen.set_state(st["gen"])
            restore_generator(noise_gen, st["noise_gen"], reseed=seed + 1 + st["step"], what="noise-layer",
                              path=partial)
            torch.set_rng_state(st["torch_rng"])
            history, start, wall = st["history"], st["step"], st["wall"]
            trained_on, trained_by = training_device(device, st)  # resumed elsewhere: both (older files: "unknown")
    xs = images.to(device)
    from tqdm.auto import tqdm

    def amp():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    with saver:
        for step in tqdm(range(start + 1, steps + 1), desc="HiDDeN", disable=not progress, leave=False, initial=start,
                         total=steps):
            x = _random_crops(xs, cfg.batch_size, cfg.image_size, gen).float() / 255
            msg = torch.randint(0, 2, (len(x), cfg.message_bits), generator=gen).float().to(device) * 2 - 1
            kind = cfg.noises[int(torch.randint(0, len(cfg.noises), (1,), generator=gen))]
            p = float(torch.empty(1).uniform_(*cfg.noise_p, generator=gen))
            with amp():
                enc = net.encode(x, msg).float()
            if net.disc is not None:  # discriminator step: cover -> 1, encoded -> 0
                with amp():
                    d_real, d_fake = net.disc(x - 0.5).float(), net.disc(enc.detach() - 0.5).float()
                d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones(len(x), 1, device=device))
                          + F.binary_cross_entropy_with_logits(d_fake, torch.zeros(len(x), 1, device=device)))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
            noised = _noise(kind, enc, x, p, noise_gen)  # fp32: the JPEG approximation's DCT would lose bits in bf16
            with amp():
                dec = net.decode(noised).float()
            l_img = F.mse_loss(enc, x)  # in [0, 1]; the loss weighs it in [-1, 1] (x4), the paper's normalisation
            l_msg = _message_loss(dec, msg)
            if cfg.late_bit_acc is None:
                late = cfg.encoder_loss_late is not None and step > cfg.late_start * steps
            else:  # decided at the log steps below and kept in the history, so a resumed run decides the same
                late = bool(history) and history[-1].get("late_next", False)
            w_img = cfg.encoder_loss_late if late else cfg.encoder_loss
            first_late = cfg.late_bit_acc is None and late and step - 1 <= cfg.late_start * steps and history
            if first_late:
                recent = float(np.mean([h["bit_acc"] for h in history[-3:]]))
                if recent < 0.75:
                    warnings.warn(f"HiDDeN: the image-loss weight rises to encoder_loss_late = "
                                  f"{cfg.encoder_loss_late} at "
                                  f"step {step} of {steps} while the training bit accuracy is only {recent:.2f}: the "
                                  "message is not learnt yet and the heavier image loss can lock it out (measured at "
                                  "64x64). Train longer or raise late_start.", stacklevel=2)
            loss = w_img * 4 * l_img + cfg.decoder_loss * l_msg
            if net.disc is not None:
                with amp():
                    d_enc = net.disc(enc - 0.5).float()
                l_adv = F.binary_cross_entropy_with_logits(d_enc, torch.ones(len(x), 1, device=device))
                loss = loss + cfg.adversarial_loss * l_adv
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % log_every == 0 or step == steps:
                with torch.no_grad():
                    ba = ((dec > 0) == (msg > 0)).float().mean().item()
                    mse = l_img.item()
                entry = {"step": step, "loss": loss.item(), "image_mse": mse, "message_mse": l_msg.item(),
                         "bit_acc": ba, "noise": kind, "psnr": 10 * math.log10(1 / max(mse, 1e-12)),
                         "image_weight": w_img, "seconds": wall + time.perf_counter() - t0}
                if cfg.late_bit_acc is not None and cfg.encoder_loss_late is not None:  # the message learnt: rise next
                    recent = float(np.mean([h["bit_acc"] for h in history[-2:]] + [ba]))
                    entry["late_next"] = late or (step >= cfg.late_start * steps and recent >= cfg.late_bit_acc)
                history.append(entry)
                if step < steps:  # the finished model is saved below instead
                    saver.offer(lambda: {"net": net.state_dict(), "opt": opt.state_dict(),
                                         "opt_d": opt_d.state_dict() if opt_d is not None else None,
                                         "gen": gen.get_state(), "noise_gen": noise_gen.get_state(),
                                         "torch_rng": torch.get_rng_state(), "step": step, "history": history,
                                         "wall": wall + time.perf_counter() - t0, "config": asdict(cfg), "seed": seed,
                                         "bf16": bf16, "steps": steps, "data_hash": data, "log_every": log_every,
                                         "loss_version": HIDDEN_LOSS_VERSION, "device_type": trained_on,
                                         "device_name": trained_by})
    # its cost: this call (image preparation included) and the partial run it resumed
    provenance = noted_provenance({"trained_on": trained_on, "trained_by": trained_by}, "bf16" if bf16 else "fp32")
    model = HiDDeN(net.eval(), cfg, history, device, wall_time=wall + time.perf_counter() - started,
                   provenance=provenance)
    if checkpoint is not None:
        from .train import _save_atomic

        # one write: a file holding the model without its run (steps, seed, ...) would be refused as hand-saved
        _save_atomic({**model._state(), "steps": steps, "seed": seed, "bf16": bf16, "data_hash": data,
                      "log_every": log_every, "loss_version": HIDDEN_LOSS_VERSION}, Path(checkpoint))
        partial.unlink(missing_ok=True)  # the finished model holds what is worth keeping
        charge(checkpoint, model.wall_time, False, started)
    return model


def get_watermarker(method: str, message_bits: int | None = None, scale: float = 36, hidden: HiDDeN | str | None = None,
                    workers: int | None = None) -> Watermarker:
    """``dwtDct`` / ``dwtDctSvd`` / ``rivaGan`` (with ``message_bits``, ``scale``, ``workers``: see
    :class:`ImWatermarker`) or ``hidden`` (a trained :class:`HiDDeN` or the path of a saved one)."""
    check_choice("method", method, METHODS)
    if method == "hidden":
        if hidden is None:
            raise ValueError("method 'hidden' needs hidden= a trained HiDDeN (dovlib.imwm.train_hidden) or its saved "
                             "path")
        model = hidden if isinstance(hidden, HiDDeN) else HiDDeN.load(hidden)
        message_bits = None if message_bits is None else check_int("message_bits", message_bits, 1)  # "6" -> 6
        if message_bits is not None and message_bits != model.message_bits:
            raise ValueError(f"message_bits must equal the trained HiDDeN's {model.message_bits}; got {message_bits}")
        return model
    return ImWatermarker(method, message_bits, scale, workers)


# --- evaluation -------------------------------------------------------------------------------------------------------

def attack_generator(seed: int, *names) -> torch.Generator:
    """The random stream of one attack (dropout masks, crop positions) under ``seed``: drawn from the seed and the
    attack's name (and any further ``names``, e.g. the message's index), so an attack's result does not depend on
    which other attacks run beside it, or in which order."""
    import hashlib

    seed = check_int("seed", seed, 0)
    digest = hashlib.sha256(":".join(map(str, (seed, *names))).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def evaluate_attacks(wm: Watermarker, marked: torch.Tensor, bits, cover: torch.Tensor | None = None,
                     attacks: list | None = None, seed: int = 0):
    """Per-image bit and word accuracy of ``wm`` on ``marked`` images, without attack ("none") and after each attack
    (names of :data:`dovlib.attacks.ATTACKS` or :class:`dovlib.attacks.Attack` objects; default: the 45-attack
    grid). Size-changing attacks are resized back unless ``wm.any_size``. Each attack draws from its own random stream
    (:func:`attack_generator`), so its row is the same whichever attacks run beside it. Returns a DataFrame: attack,
    family, param, bit_acc, word_acc (means over images)."""
    import pandas as pd

    names = ["none"] + _attacks.resolve_attacks(attacks if attacks is not None else
                                                [f"{f}_{p:g}" for f, p in _attacks.attack_grid()])
    check_int("seed", seed, 0)
    rows = []
    for a in names:
        if a == "none":
            x, fam, param = marked, "none", float("nan")
        else:
            x = a(marked, cover, restore_size=not wm.any_size, generator=attack_generator(seed, a.name))
            fam, param = a.family, a.param
        dec = wm.extract(x)
        rows.append({"attack": a if a == "none" else a.name, "family": fam, "param": param,
                     "bit_acc": float(bit_accuracy(dec, bits).mean()),
                     "word_acc": float(word_accuracy(dec, bits).mean())})
    return pd.DataFrame(rows)


def embed_dataset(wm: Watermarker, codec, images: torch.Tensor, message) -> tuple[torch.Tensor, np.ndarray, dict]:
    """Dataset watermarking: ``codec.encode(message, N)`` gives one sub-message per image (AMUSE, or the baseline
    ``RepeatCodec`` that repeats the whole message), ``wm.embed`` hides them. Returns (marked images, sub-messages,
    quality dict with mean PSNR in dB)."""
    from .amuse import _check_message

    message = _check_message(message, codec.message_bits)  # 0/1 bits of the codec's length; 0.9 is not read as 0
    subs = np.asarray(codec.encode(message, len(images)), dtype=np.uint8)
    marked = wm.embed(images, subs)
    return marked, subs, {"psnr": mean_psnr(images, marked)}


def extract_dataset(wm: Watermarker, codec, images: torch.Tensor, message, subs=None) -> dict:
    """Extract every image's sub-message and let the codec (:mod:`dovlib.amuse`) rebuild the message by voting.
    Returns bit_acc (share of the L bits rebuilt correctly; bits no surviving sub-message holds count as wrong),
    word_acc (1.0 when the whole message is right), failed (some bits were not received at all), and sub_bit_acc
    (per-image sub-message accuracy) when the embedded ``subs`` are given. (The AMUSE authors score a failed rebuild as
    bit accuracy 0; here the bits that were received still count.)"""
    from .amuse import _check_message

    message = _check_message(message, codec.message_bits)  # a 1-bit message would broadcast against all L bits
    decoded_subs = wm.extract(images)
    out = {} if subs is None else {"sub_bit_acc": float(bit_accuracy(decoded_subs, subs).mean())}
    res = codec.decode_partial(decoded_subs)
    correct = (np.asarray(res.bits, dtype=np.uint8) == message) & np.asarray(res.known, dtype=bool)
    return {**out, "bit_acc": float(correct.mean()), "word_acc": float(correct.all()), "failed": not res.complete}


def sample_images(images: torch.Tensor, n: int, side: int = 256, seed: int = 0) -> torch.Tensor:
    """``n`` uint8 RGB images of ``side`` x ``side`` from a pool: random crops, flipped at random, when the pool's
    images are at least that large (e.g. 8 skimage photos -> many 256x256 crops; CIFAR-10 at 32 -> whole images),
    else the images upsampled (bicubic) until their shorter side is ``side`` (:func:`to_min_size`, the aspect ratio
    kept) and centre-cropped (e.g. CIFAR-10 32x32 -> 256x256; 200x400 -> 256x512 -> its middle 256x256). Either way
    the images are drawn without replacement where the pool allows (n at most the pool's size), with replacement
    otherwise."""
    n = check_int("n", n, 1)
    side = check_int("side", side, 1)
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or not len(images):
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty uint8 tensor (N, C, H, W); got {got}")
    check_channels(images.shape)
    g = torch.Generator().manual_seed(check_seed(seed))
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    h, w = images.shape[-2:]
    if min(h, w) >= side:
        if n <= len(images):  # distinct images, one random crop each (at the pool's size: the whole image)
            idx = torch.randperm(len(images), generator=g)[:n]
            tops = torch.randint(0, h - side + 1, (n,), generator=g)
            lefts = torch.randint(0, w - side + 1, (n,), generator=g)
            out = torch.stack([images[i, :, t:t + side, l_:l_ + side]
                               for i, t, l_ in zip(idx.tolist(), tops.tolist(), lefts.tolist())])
        else:
            out = _random_crops(images, n, side, g)
        flip = torch.rand(n, generator=g) < 0.5
        return torch.where(flip[:, None, None, None], out.flip(-1), out).contiguous()
    if n <= len(images):
        idx = torch.randperm(len(images), generator=g)[:n]
    else:
        idx = torch.randint(0, len(images), (n,), generator=g)
    import torchvision.transforms.v2.functional as TF

    return TF.center_crop(to_min_size(images[idx], side), [side, side]).contiguous()  # no squashing of non-squares


def evaluate_dataset(wm: Watermarker, codec, images: torch.Tensor, messages, attacks: list | None = None,
                     seed: int = 0):
    """For each message (rows of ``messages``): mark ``images`` through ``codec`` and ``wm`` (:func:`embed_dataset`),
    then rebuild the message without attack and after each attack (names in :data:`dovlib.attacks.ATTACKS` or
    :class:`dovlib.attacks.Attack` objects).
    Each (message, attack) has its own random stream (:func:`attack_generator`).
    Returns a DataFrame with one row per (message, attack): psnr, sub_bit_acc (per-image sub-message accuracy),
    bit_acc and word_acc of the rebuilt message, failed."""
    import pandas as pd

    chosen = ["none"] + _attacks.resolve_attacks(attacks or [])  # all checked before any image is marked
    check_int("seed", seed, 0)
    rows = []
    for i, message in enumerate(np.atleast_2d(np.asarray(messages))):  # each checked by embed_dataset
        marked, subs, quality = embed_dataset(wm, codec, images, message)
        for a in chosen:
            if a == "none":
                x, fam, param = marked, "none", float("nan")
            else:
                x = a(marked, images, restore_size=not wm.any_size, generator=attack_generator(seed, a.name, i))
                fam, param = a.family, a.param
            name = a if a == "none" else a.name
            rows.append({"message": i, "attack": name, "family": fam, "param": param, "psnr": quality["psnr"],
                         **extract_dataset(wm, codec, x, message, subs)})
    return pd.DataFrame(rows)


def embed_at_size(wm: Watermarker, images: torch.Tensor, bits, side: int = 256, keep: int | None = None,
                  chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed into small images through an upsampled copy: upsample to ``side`` (:func:`to_min_size`), embed, resize
    back (bicubic, antialiased) to the original size. Returns (marked images at the original size, the first
    ``keep`` marked images at the embedding size; ``keep`` None: all). The round trip is lossy for the mark;
    notebook 10 measures what survives.

    Images go through in chunks of ``chunk_size``, so one chunk's upsampled copies are in memory at a time, and only
    ``keep`` embedding-size images are kept: 50,000 CIFAR-10 images at 256x256 are 9.8 GB per copy.
    :func:`resize_round_trip` gives the same round trip without the mark."""
    from .params import check_int

    chunk_size = check_int("chunk_size", chunk_size, 1)
    n = len(images)
    keep = n if keep is None else min(check_int("keep", keep, 0), n)
    bits = np.atleast_2d(np.asarray(bits))  # one image's 1-D message: one row, sliced by rows below
    downs, ups, resized = [], [], False
    for i in range(0, n, chunk_size) if n else [0]:
        marked_up = wm.embed(to_min_size(images[i:i + chunk_size], side), bits[i:i + chunk_size])
        if marked_up.shape[-2:] == images.shape[-2:]:
            downs.append(marked_up)  # large enough: marked at its own size, nothing to resize
            continue
        resized = True
        downs.append(_resize_to(marked_up, images.shape[-2:]))
        if keep > i or not ups:  # a copy: a view would keep the whole chunk's storage alive
            ups.append(marked_up[:max(0, keep - i)].clone())
    down = downs[0] if len(downs) == 1 else torch.cat(downs)
    if not resized:  # the embedding-size images are the marked ones
        return down, (down if keep == n else down[:keep].clone())
    return down, (ups[0] if len(ups) == 1 else torch.cat(ups))
