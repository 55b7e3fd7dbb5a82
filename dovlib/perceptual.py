"""Perceptual distances between clean and watermarked images, honest about what is measured.

SSCL-BW's similarity loss and its Table I column are LPIPS (Zhang et al., 2018), which needs ImageNet backbone
weights from torchvision. These machines cannot download them, and ``lpips.LPIPS(pnet_rand=True)`` runs but is
*not* the LPIPS metric. So:

* ``perceptual_loss("lpips")`` uses the real weights when they are already in the torch hub cache and raises
  :class:`PerceptualWeightsMissing` otherwise (checked by file name and by reading the file, so a half-copied one is
  named as such: no download is ever attempted);
* ``perceptual_loss("ssim")`` is the explicit fallback, ``1 - SSIM`` (differentiable, from ``pytorch-msssim``:
  11x11 Gaussian window, sigma 1.5); ``"mse"`` is also available. Every record names the measure used
  (``perceptual`` in metrics.json). The ``SSIM`` column of the reports is another SSIM,
  :func:`dovlib.metrics.ssim` (scikit-image: 7x7 uniform window, sample covariances), so a ``perceptual_ssim``
  value is not 1 minus the ``SSIM`` value beside it (on CIFAR-10 test images with perturbations of at most 8 grey
  levels the two distances were up to about 0.05 apart per image).

To use real LPIPS offline, copy torchvision's backbone checkpoint into ``<torch hub dir>/checkpoints/``
(``python -c "import torch; print(torch.hub.get_dir())"``, usually ``~/.cache/torch/hub``; ``$TORCH_HOME`` moves
it): ``alexnet-owt-7be5be79.pth`` for ``net="alex"`` (the default), ``vgg16-397923af.pth`` for ``"vgg"``,
``squeezenet1_1-b8a52dc0.pth`` for ``"squeeze"``, all from ``https://download.pytorch.org/models/``. The small
LPIPS linear layers ship inside the ``lpips`` package. See notebook 01.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["PERCEPTUAL", "BACKBONE_FILES", "PerceptualWeightsMissing", "lpips_weights_path", "lpips_available",
           "perceptual_loss", "perceptual_distance", "check_perceptual", "require_perceptual",
           "check_perceptual_size", "MIN_SIDE"]

PERCEPTUAL = ("lpips", "ssim", "mse")
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
                  "squeeze": "squeezenet1_1-b8a52dc0.pth"}
# the smallest image side each measure takes: LPIPS's backbones pool the image away below these (measured with the
# lpips package: AlexNet fails at 30 px and runs at 31, VGG-16 at 16, SqueezeNet at 17); 1 - SSIM's smallest window 3
MIN_SIDE = {"lpips-alex": 31, "lpips-vgg": 16, "lpips-squeeze": 17, "ssim": 3, "mse": 1}


class PerceptualWeightsMissing(RuntimeError):
    """LPIPS was asked for but its backbone weights are not in the torch cache (and will not be downloaded)."""


def check_perceptual(name: str) -> str:
    """The name only: one of :data:`PERCEPTUAL` (see :func:`require_perceptual` for a check that it can run)."""
    if name not in PERCEPTUAL:
        raise ValueError(f"perceptual must be one of {list(PERCEPTUAL)}; got {name!r}")
    return name


def _missing_message(net: str) -> str:
    problem = _unreadable(lpips_weights_path(net))
    if problem and not _about_content(problem):  # e.g. a PermissionError: the file may be whole
        return (f"LPIPS ({net}) needs torchvision's ImageNet weights {BACKBONE_FILES[net]!r} in "
                f"{lpips_weights_path(net).parent}: the file is there but this process cannot read it ({problem}). "
                f"Let it read the file (its permissions), or pick the explicit fallback perceptual='ssim' "
                f"(1 - SSIM), which every report then names.")
    if problem:
        return (f"LPIPS ({net}) needs torchvision's ImageNet weights {BACKBONE_FILES[net]!r} in "
                f"{lpips_weights_path(net).parent}: the file is there but cannot be read ({problem}), so it is "
                f"damaged, only partly copied or not torchvision's. Copy it again (see dovlib/perceptual.py or the "
                f"README), or pick the explicit fallback perceptual='ssim' (1 - SSIM), which every report then names.")
    return (f"LPIPS ({net}) needs torchvision's ImageNet weights {BACKBONE_FILES[net]!r} in "
            f"{lpips_weights_path(net).parent}, which is not there and cannot be downloaded on this machine. "
            f"Place the file there (see dovlib/perceptual.py or the README), or pick the explicit fallback "
            f"perceptual='ssim' (1 - SSIM), which every report then names.")


def check_perceptual_size(name: str, shape, net: str = "alex") -> str:
    """Refuse images the measure cannot take: ``shape`` ends with (H, W) (an image, a batch or ``ds.image_shape``).
    LPIPS (AlexNet) needs sides of at least 31 px, so MNIST's 28x28 digits need ``perceptual="ssim"`` (or "mse");
    images are not resized behind the user's back, which would measure another distance."""
    check_perceptual(name)
    key = f"lpips-{net}" if name == "lpips" else name
    if key not in MIN_SIDE:
        raise ValueError(f"net must be one of {sorted(BACKBONE_FILES)}; got {net!r}")
    h, w = (int(v) for v in tuple(shape)[-2:])
    if min(h, w) < MIN_SIDE[key]:
        alt = " (MNIST-sized images: pass perceptual='ssim' or 'mse')" if name == "lpips" else ""
        raise ValueError(f"perceptual={name!r}{f' ({net})' if name == 'lpips' else ''} needs images of at least "
                         f"{MIN_SIDE[key]}x{MIN_SIDE[key]} pixels; got {h}x{w}{alt}")
    return name


def require_perceptual(name: str, net: str = "alex", image_shape=None) -> str:
    """:func:`check_perceptual`, and for ``"lpips"`` also that its backbone weights are cached, so that a notebook
    fails at its first cell rather than after a surrogate has trained (:class:`PerceptualWeightsMissing`). With
    ``image_shape`` (ending in H, W) also :func:`check_perceptual_size`."""
    check_perceptual(name)
    if name == "lpips" and not lpips_available(net):
        raise PerceptualWeightsMissing(_missing_message(net))
    if image_shape is not None:
        check_perceptual_size(name, image_shape, net)
    return name


def lpips_weights_path(net: str = "alex") -> Path:
    """Where torchvision looks for the LPIPS backbone checkpoint of ``net`` (alex | vgg | squeeze)."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"net must be one of {sorted(BACKBONE_FILES)}; got {net!r}")
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


def lpips_available(net: str = "alex") -> bool:
    """True when real LPIPS can run offline: the backbone file is cached and reads as a state dict (an empty or
    half-copied file used to pass here and fail later, after training, as an EOFError). Never tries a download."""
    path = lpips_weights_path(net)
    return path.is_file() and not _unreadable(path)


def _unreadable(path: Path) -> str:
    """Why the checkpoint at ``path`` cannot be used ("" when it can, or when it is not there): read once per file
    version (path, size, modification time)."""
    if not path.is_file():
        return ""
    st = path.stat()
    return _read_problem(str(path), st.st_size, st.st_mtime_ns)


def _about_content(problem: str) -> bool:
    """Whether :func:`_read_problem`'s ``problem`` is about what the file holds ("<size> bytes; it is damaged ...",
    "<size> bytes holding ..."), not an error reading it at all (a PermissionError)."""
    return problem.partition(" bytes")[2].startswith(("; it ", " holding "))


@functools.lru_cache(maxsize=8)
def _read_problem(path: str, size: int, mtime_ns: int) -> str:
    """Read as dovlib reads its own files (:func:`dovlib.train.safe_torch_load`: ``weights_only``, so no code in the
    file runs), and described in its words: why, printable (torch's first error line was quoted raw, with a garbled
    file's control characters and torch's advice to load it with ``weights_only=False``)."""
    from .train import TorchFileError, printable, safe_torch_load

    try:
        state = safe_torch_load(path, "LPIPS backbone weights", "copy it again")
    except TorchFileError as exc:
        return f"{size:,} bytes; it {exc.problem}"
    except Exception as exc:  # not what the file holds, e.g. it cannot be opened (PermissionError)
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return f"{size:,} bytes; {printable(f'{type(exc).__name__}: {lines[0]}' if lines else type(exc).__name__)}"
    if not isinstance(state, dict) or not state:
        return f"{size:,} bytes holding {type(state).__name__}, not a state dict"
    return ""


class _LPIPS(nn.Module):
    """Real LPIPS on [0,1] images (the ``lpips`` package wants [-1,1]); frozen; per-image distances."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        if not lpips_available(net):
            raise PerceptualWeightsMissing(_missing_message(net))
        import lpips

        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.net = lpips.LPIPS(net=net, verbose=False)
        self.net.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        """LPIPS stays in eval mode: the ``lpips`` package's linear heads hold Dropout, so ``.train()`` on this module
        or on a parent that holds it would make the distances random."""
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, a, b):
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        return self.net(a * 2 - 1, b * 2 - 1).flatten()


class _SSIMDistance(nn.Module):
    """``1 - SSIM`` per image (Gaussian window 11, sigma 1.5; pytorch-msssim), for images in [0,1]; for images under
    11 px the largest odd window that fits (7 at 7x7, 5 at 6x6). :func:`dovlib.metrics.ssim` shrinks its window by
    the same rule, but from 7 and with a uniform window (scikit-image), so the two SSIMs differ at every image size:
    this distance is not ``1 - dovlib.metrics.ssim``."""

    def forward(self, a, b):
        from pytorch_msssim import ssim

        if min(a.shape[-2:]) < 3:
            raise ValueError(f"1 - SSIM needs images of at least 3x3 pixels (its smallest window); got "
                             f"{a.shape[-2]}x{a.shape[-1]}")
        side = min(a.shape[-2:])
        win = 11 if side >= 11 else side - 1 + side % 2  # the largest odd size that fits (it was one less at odd sides)
        return 1 - ssim(a.float(), b.float(), data_range=1.0, size_average=False, win_size=win)


class _MSEDistance(nn.Module):
    def forward(self, a, b):
        return (a.float() - b.float()).pow(2).flatten(1).mean(1)


def perceptual_loss(name: str = "lpips", net: str = "alex") -> nn.Module:
    """A module ``d(a, b) -> (N,)`` distances for float images in [0,1] (N, C, H, W), differentiable.
    ``name``: ``"lpips"`` (real weights only, else :class:`PerceptualWeightsMissing`), ``"ssim"`` (1 - SSIM) or
    ``"mse"``."""
    check_perceptual(name)
    if name == "lpips":
        return _LPIPS(net)
    return _SSIMDistance() if name == "ssim" else _MSEDistance()


@functools.lru_cache(maxsize=None)
def _shared_measure(name: str) -> nn.Module:
    """One frozen module per measure for :func:`perceptual_distance` when none is passed: LPIPS loads its network
    once per process, not at every call. A failure (weights missing) is not kept: a later call tries again."""
    return perceptual_loss(name)


@torch.no_grad()
def perceptual_distance(a: torch.Tensor, b: torch.Tensor, name: str = "lpips", batch_size: int = 256,
                        module: nn.Module | None = None) -> torch.Tensor:
    """Per-image distances (CPU float tensor) between uint8 or [0,1] image batches ``a`` and ``b``, computed by
    ``module`` (default: the process's one module for ``name``, built at the first call)."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.ndim != 4:
        raise ValueError(f"a and b must be image batches (N, C, H, W); got shape {tuple(a.shape)}")
    from .params import check_int

    batch_size = check_int("batch_size", batch_size, 1)
    from .metrics import check_image_values

    check_image_values(a, "a")  # 0-255 floats would give a wrong distance, silently
    check_image_values(b, "b")
    if module is None:  # a module passed in is the caller's: its own limits apply
        check_perceptual_size(name, a.shape)
    d = module if module is not None else _shared_measure(check_perceptual(name))
    dev = next(d.parameters()).device if any(True for _ in d.parameters()) else torch.device("cpu")
    out = []
    for i in range(0, len(a), batch_size):
        xa, xb = a[i:i + batch_size].to(dev), b[i:i + batch_size].to(dev)
        xa = xa.float() / 255 if xa.dtype == torch.uint8 else xa.float()
        xb = xb.float() / 255 if xb.dtype == torch.uint8 else xb.float()
        out.append(d(xa, xb).float().cpu())
    return torch.cat(out) if out else torch.empty(0)
