"""Dataset registry: every dataset comes back as uint8 image tensors (N, C, H, W), int64 labels and class names.

``load_dataset(name)`` knows:

* ``cifar10``, ``mnist``, ``flowers102``: torchvision datasets, downloaded into ``data/`` when online
  (``download=True``); offline, a clear error says where to put the files.
* ``sub-imagenet``: 50 classes from an ImageFolder or Tiny-ImageNet root (the SSCL-BW paper's Sub-ImageNet).
* ``cifar10-subset``, ``mnist-offline``: real images kept offline under ``$DOVLIB_DATA`` (see
  ``data/README.md``; :func:`build_offline_data`, ``python -m dovlib.data build-offline``, makes the
  same files from the official downloads). Results on them are subset results: ``ImageDataset.is_subset`` says so.
* ``digits``: scikit-learn's bundled 8x8 digits, upsampled to 28x28 (offline).
* ``synthetic``: small generated classes (offline, any size; for tests).
* ``skimage-photos``: scikit-image's bundled photographs (offline; AMUSE notebooks).
* ``image-folder`` (``root=``), or the shorthand ``folder:<path>``: any folder of images, e.g. your own photos or an
  unpacked dataset. ``train/`` and ``val/`` (or ``test/``) subfolders are used as the splits if present, else a
  seeded split; class subfolders give the labels (images lying directly in a split get one class).
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

__all__ = [
    "ImageDataset",
    "DATASETS",
    "GREYSCALE",
    "rgb_datasets",
    "check_rgb_dataset",
    "load_dataset",
    "data_dir",
    "offline_data_dir",
    "stratified_subsample",
    "md5sum",
    "arrays_sha256",
    "build_offline_data",
    "DatasetNotFoundError",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where they should be (message says where to put them)."""


@dataclass
class ImageDataset:
    """Images as uint8 tensors (N, C, H, W), labels as int64 tensors, class names, provenance."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    is_subset: bool = False
    note: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise ValueError(f"x_{split} must be a uint8 tensor (N, C, H, W); got {x.dtype} {tuple(x.shape)}")
            if y.ndim != 1 or len(y) != len(x):
                raise ValueError(f"y_{split} must have one label per image ({len(x)}); got {tuple(y.shape)}")
            if y.dtype.is_floating_point or y.dtype == torch.bool:
                raise ValueError(f"y_{split} must hold integer class labels; got {y.dtype}")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                k = len(self.classes)
                raise ValueError(f"y_{split} must be class indices in [0, {k - 1}] ({k} classes); got labels in "
                                 f"[{int(y.min())}, {int(y.max())}]")
            setattr(self, f"y_{split}", y.long())
        if len(self.x_test) and self.x_test.shape[1:] != self.x_train.shape[1:]:
            raise ValueError(f"x_train and x_test must hold images of one shape; got {tuple(self.x_train.shape[1:])} "
                             f"and {tuple(self.x_test.shape[1:])}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split_problems(self, target: int | None = None) -> list[str]:
        """What makes this test split unfit for the numbers measured on it (empty when nothing does): no test image,
        a test split that is the training split (scikit-image's photos), and with ``target`` a target class without
        test images (its clean accuracy is NaN) or no non-target test image (WSR and the verification queries are
        undefined)."""
        out = []
        n = len(self.y_test)
        if n == 0:
            return [f"{self.name} has no test image: test accuracy, WSR and verification are undefined"]
        if self.x_test.shape == self.x_train.shape and torch.equal(self.x_test, self.x_train) \
                and torch.equal(self.y_test, self.y_train):
            out.append(f"{self.name}'s test split is its training split: a 'test' accuracy here is training accuracy")
        if target is not None:
            hits = int((self.y_test == target).sum())
            if hits == 0:
                out.append(f"target class {target} has no test image among the {n}: its clean accuracy is undefined "
                           f"(NaN); use more test images (the profile's n_test)")
            if hits == n:
                out.append(f"every one of the {n} test images is of the target class {target}: WSR and the "
                           f"verification queries (non-target images) are undefined")
        return out

    def warn_split_problems(self, target: int | None = None) -> list[str]:
        """:meth:`split_problems`, each issued as a ``UserWarning`` (shown in a notebook's output); returns them."""
        import warnings

        problems = self.split_problems(target)
        for msg in problems:
            warnings.warn(msg, UserWarning, stacklevel=2)
        return problems

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        c, h, w = self.image_shape
        kind = "SUBSET of the full dataset" if self.is_subset else "full dataset"
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test images, {c}x{h}x{w}, "
                f"{self.num_classes} classes ({kind}){'; ' + self.note if self.note else ''}")

    def subsample(self, n_train: int | None, n_test: int | None, seed: int = 0) -> "ImageDataset":
        """Stratified subsample of both splits (``None`` keeps a split whole). Marks the result as a subset."""
        if n_train is None and n_test is None:
            return self
        tr = stratified_subsample(self.y_train, n_train, seed)
        te = stratified_subsample(self.y_test, n_test, seed + 1)
        smaller = len(tr) < len(self.y_train) or len(te) < len(self.y_test)
        note = self.note
        if smaller:
            note = (note + "; " if note else "") + f"stratified subsample {len(tr)}/{len(te)} (seed {seed})"
        return ImageDataset(self.name, self.x_train[tr], self.y_train[tr], self.x_test[te], self.y_test[te],
                            list(self.classes), self.is_subset or smaller, note, dict(self.extra))


def stratified_subsample(labels: torch.Tensor, n: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of ``n`` items drawn with the class proportions of ``labels`` (sorted). ``None``: all."""
    from .params import check_int

    labels = torch.as_tensor(labels)
    if n is None:
        return torch.arange(len(labels))
    n = check_int("n (subsample size)", n, 1)
    if n >= len(labels):
        return torch.arange(len(labels))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=g)
    # Per-class quotas proportional to the class sizes (at least one each while n allows), rounded to sum to n.
    classes = labels.unique()
    per_class = [perm[labels[perm] == c] for c in classes]
    if n < len(classes):  # fewer items than classes: n classes drawn (seeded, weighted by size), one item each
        sizes = torch.tensor([len(p) for p in per_class], dtype=torch.float64)
        chosen = torch.multinomial(sizes, n, replacement=False, generator=g).tolist()
        return torch.stack([per_class[c][0] for c in chosen]).sort().values
    quota = [max(1, round(n * len(p) / len(labels))) for p in per_class]
    while sum(quota) > n:
        quota[int(np.argmax(quota))] -= 1
    while sum(quota) < n:
        room = [len(p) - q for p, q in zip(per_class, quota)]
        quota[int(np.argmax(room))] += 1
    idx = torch.cat([p[:q] for p, q in zip(per_class, quota)])
    return idx.sort().values


def data_dir() -> Path:
    """The git-ignored download cache for datasets: ``data/`` in the repository (``$DOVLIB_CACHE`` overrides)."""
    return Path(os.environ.get("DOVLIB_CACHE", REPO_ROOT / "data")).expanduser()


def offline_data_dir() -> Path:
    """Where the offline real-image subsets live: ``$DOVLIB_DATA``, else ``../shared/data`` beside the repo,
    else ``data/``; resolved either way, so a folder has one name (the run stamps hash it) whether the Makefile
    exported it or it is the default (``../shared`` may be a symlink)."""
    env = os.environ.get("DOVLIB_DATA")
    if env:
        return Path(env).expanduser().resolve()
    shared = REPO_ROOT.parent / "shared" / "data"
    return (shared if shared.is_dir() else data_dir()).resolve()


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


OFFLINE_MD5 = {
    "mnist/t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "mnist/t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "mnist/train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",  # all 60,000 labels (not loaded)
    "mnist/mnist_train_partial.npz": "e4ad815af16df9b0ad003aa616dba9d5",
    "cifar10-subset/cifar10_subset.npz": "2fdf48dcfb6534e9ed3b916613783c58",
}


# The arrays of the .npz files (names, dtypes, shapes, bytes; arrays_sha256): a file rebuilt by
# build_offline_data holds the same arrays in other zip bytes (timestamps), so its md5 differs.
OFFLINE_ARRAYS_SHA256 = {
    "mnist/mnist_train_partial.npz": "8c67a9723f95fa3a0fd723b8fcec1f03275c75dd2a249a0aa1e58ecea9045812",
    "cifar10-subset/cifar10_subset.npz": "be3a0ab2f24d7a54e55630b5c9ea5c8af24ccd86794657b2bd0bb4db5c628abe",
}
CIFAR10_SUBSET_PER_BATCH = 1017  # the first images of each of CIFAR-10's six batch files
MNIST_PARTIAL_TRAIN = 17435  # the first MNIST training images
MNIST_RAW_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz")


def arrays_sha256(path: str | Path) -> str:
    """SHA-256 over an .npz file's arrays (sorted by name: name, dtype, shape, then the C-order bytes), independent
    of how the zip was written."""
    h = hashlib.sha256()
    with np.load(path, allow_pickle=False) as d:
        for name in sorted(d.files):
            a = np.ascontiguousarray(d[name])
            h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _arrays_match(path: Path, expected: str) -> bool:
    """Whether an .npz file's arrays hash to ``expected``; a file that is no readable .npz (cut short, or not a zip)
    does not match, so the caller's "damaged" error names it instead of numpy's or zipfile's."""
    import zipfile

    try:
        return arrays_sha256(path) == expected
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError):
        return False


def _offline_file(rel: str, dataset: str, verify: bool = True, root: Path | None = None) -> Path:
    env = os.environ.get("DOVLIB_DATA", "") if root is None else ""  # the folder came from $DOVLIB_DATA
    root = offline_data_dir() if root is None else Path(root)
    path = root / rel
    if not path.is_file():
        relative = (f" (DOVLIB_DATA={env!r} is relative: read from the working folder {Path.cwd()}, which for a "
                    f"Jupyter kernel is the notebook's folder)") if env and not Path(env).expanduser().is_absolute() \
            else ""
        raise DatasetNotFoundError(
            f"dataset {dataset!r}: file {path} not found{relative}. Set DOVLIB_DATA to the absolute path of the "
            f"folder that holds '{rel}' (e.g. export DOVLIB_DATA=$(realpath ../shared/data) in the repository's "
            f"folder), build it once on a machine with internet "
            f"(python -m dovlib.data build-offline --dest DIR, then export DOVLIB_DATA=DIR), or use an online dataset "
            f"({', '.join(sorted(set(ONLINE) - {'sub-imagenet'}))}) on a machine with internet.")
    if verify and md5sum(path) != OFFLINE_MD5[rel] and not (
            rel in OFFLINE_ARRAYS_SHA256 and _arrays_match(path, OFFLINE_ARRAYS_SHA256[rel])):
        expected = (f"arrays sha256 {OFFLINE_ARRAYS_SHA256[rel]}" if rel in OFFLINE_ARRAYS_SHA256
                    else f"md5 {OFFLINE_MD5[rel]}")
        raise DatasetNotFoundError(f"dataset {dataset!r}: {path} holds other data (expected {expected}); the file is "
                                   "damaged or a different version")
    return path


def build_offline_data(dest: str | Path | None = None, download: bool = True) -> Path:
    """Make the offline subsets ``cifar10-subset`` and ``mnist-offline`` from torchvision's official CIFAR-10 and
    MNIST (downloaded into ``data/cifar10`` and ``data/mnist`` unless already there), for a machine without the
    shared data folder: ``<dest>/cifar10-subset/cifar10_subset.npz`` (the first 1,017 images of each CIFAR-10 batch
    file: 5,085 training and 1,017 test images) and ``<dest>/mnist/`` (the first 17,435 training images and labels,
    plus the official test images, test labels and training labels, copied as downloaded). Every file is checked
    against the pinned hashes before this returns; ``dest`` defaults to ``data/``, where :func:`offline_data_dir`
    looks when ``$DOVLIB_DATA`` is unset and ``../shared/data`` is missing. Returns ``dest``.

    The files are written into a hidden folder inside ``dest`` and checked there; only files that pass replace those
    in ``dest`` (each by an atomic rename), so an interruption or a failed check leaves ``dest`` as it was. A ``dest``
    that cannot be written is refused (``PermissionError`` naming it) before anything is downloaded."""
    import shutil
    import tempfile

    import torchvision.datasets as tvd

    dest = Path(dest) if dest is not None else data_dir()
    _check_writable(dest)
    try:
        c_train = tvd.CIFAR10(data_dir() / "cifar10", train=True, download=download)
        c_test = tvd.CIFAR10(data_dir() / "cifar10", train=False, download=download)
        mnist = tvd.MNIST(data_dir() / "mnist", train=True, download=download)
    except Exception as exc:  # URLError offline, RuntimeError("Dataset not found") with download=False
        raise DatasetNotFoundError(
            f"build-offline reads the official CIFAR-10 and MNIST files from {data_dir()} (not from the destination), "
            f"downloading them there when online, and could not ({_first_line(exc)}). Offline, copy torchvision's "
            f"files to {data_dir()}/{TORCHVISION_FOLDERS['cifar10']} and {data_dir()}/{TORCHVISION_FOLDERS['mnist']} "
            f"and run it with --no-download") from exc
    x, y = np.asarray(c_train.data), np.asarray(c_train.targets)
    if x.shape != (50000, 32, 32, 3) or len(c_test.data) != 10000:
        raise DatasetNotFoundError(f"CIFAR-10 under {data_dir() / 'cifar10'} has {len(x)} training and "
                                   f"{len(c_test.data)} test images; the official set has 50,000 and 10,000")
    n = CIFAR10_SUBSET_PER_BATCH
    sel = np.concatenate([np.arange(b * 10000, b * 10000 + n) for b in range(5)])  # torchvision keeps batch order
    dest.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".build-offline-", dir=dest))  # same file system: renames are atomic
    try:
        (stage / "cifar10-subset").mkdir()
        np.savez_compressed(stage / "cifar10-subset" / "cifar10_subset.npz", x_train=x[sel],
                            y_train=y[sel].astype(np.uint8), x_test=np.asarray(c_test.data)[:n],
                            y_test=np.asarray(c_test.targets)[:n].astype(np.uint8), classes=np.array(c_train.classes))
        (stage / "mnist").mkdir()
        np.savez_compressed(stage / "mnist" / "mnist_train_partial.npz",
                            x_train=mnist.data[:MNIST_PARTIAL_TRAIN].numpy(),
                            y_train=mnist.targets[:MNIST_PARTIAL_TRAIN].numpy().astype(np.uint8))
        for name in MNIST_RAW_FILES:  # torchvision keeps the downloaded archives beside what it extracts
            src = Path(mnist.raw_folder) / name
            if not src.is_file():
                raise DatasetNotFoundError(f"{src} not found: build_offline_data copies MNIST's official .gz files "
                                           "from torchvision's raw folder (delete the folder and build again to "
                                           "fetch)")
            shutil.copyfile(src, stage / "mnist" / name)
        files = [("cifar10-subset/cifar10_subset.npz", "cifar10-subset")] + [
            (f"mnist/{f}", "mnist-offline") for f in ("mnist_train_partial.npz",) + MNIST_RAW_FILES]
        for rel, dataset in files:  # every file checked before any replaces what dest holds
            _offline_file(rel, dataset, root=stage)
        for rel, _ in files:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, dest / rel)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return dest


def _check_writable(dest: Path) -> None:
    """Refuse a ``dest`` that cannot be written (it, or the nearest folder above it that exists), naming it, before
    the downloads; nothing is created here."""
    probe = Path(dest).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        what = "is not a folder" if not probe.is_dir() else "cannot be written"
        raise PermissionError(f"dest {dest}: {probe} {what}; choose a writable folder for the offline subsets "
                              "(--dest DIR)")


def _nhwc_to_nchw(x: np.ndarray) -> torch.Tensor:
    if x.ndim == 3:
        x = x[..., None]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzip or plain."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def _cifar10_subset() -> ImageDataset:
    with np.load(_offline_file("cifar10-subset/cifar10_subset.npz", "cifar10-subset")) as f:
        d = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test", "classes")}
    return ImageDataset("cifar10-subset", _nhwc_to_nchw(d["x_train"]), torch.from_numpy(d["y_train"].astype(np.int64)),
                        _nhwc_to_nchw(d["x_test"]), torch.from_numpy(d["y_test"].astype(np.int64)),
                        [str(c) for c in d["classes"]], is_subset=True,
                        note="first 1,017 images of each CIFAR-10 batch file (5,085 train / 1,017 test)")


def _mnist_offline() -> ImageDataset:
    with np.load(_offline_file("mnist/mnist_train_partial.npz", "mnist-offline")) as f:
        tr = {k: f[k] for k in ("x_train", "y_train")}
    x_te = _read_idx(_offline_file("mnist/t10k-images-idx3-ubyte.gz", "mnist-offline"))
    y_te = _read_idx(_offline_file("mnist/t10k-labels-idx1-ubyte.gz", "mnist-offline"))
    return ImageDataset("mnist-offline", _nhwc_to_nchw(tr["x_train"]), torch.from_numpy(tr["y_train"].astype(np.int64)),
                        _nhwc_to_nchw(x_te), torch.from_numpy(y_te.astype(np.int64)), [str(i) for i in range(10)],
                        is_subset=True, note="first 17,435 MNIST training images; full 10,000-image test set")


# where torchvision keeps each set's files under data/ (what an offline user copies there)
TORCHVISION_FOLDERS = {"cifar10": "cifar10/cifar-10-batches-py/", "mnist": "mnist/MNIST/raw/",
                       "flowers102": "flowers102/flowers-102/"}


def _first_line(exc: BaseException) -> str:
    """An exception's first line, without torchvision's API hint ("You can use download=True ..."), which names an
    argument the user of the CLI or a notebook never sees; multi-line download errors (every mirror) stay one line."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text.split(" You can use download=True")[0].rstrip(" .")


def _torchvision(name: str, download: bool = True, image_size: int | None = None) -> ImageDataset:
    """CIFAR-10 and MNIST at their own size; Flowers-102 resized to ``image_size`` (default 64)."""
    import torchvision.datasets as tvd

    from .params import check_int

    if name != "flowers102" and image_size is not None:  # would be ignored: refused, as a misspelt option is
        raise ValueError(f"dataset {name!r} keeps its own image size; image_size applies to flowers102 only")
    image_size = 64 if image_size is None else check_int("image_size", image_size, 8)

    root = data_dir() / name
    cls = {"cifar10": tvd.CIFAR10, "mnist": tvd.MNIST, "flowers102": tvd.Flowers102}[name]
    try:
        if name == "flowers102":
            splits = [cls(root, split=s, download=download) for s in ("train", "val", "test")]
            train_parts, test = splits[:2], splits[2]
        else:
            train_parts, test = [cls(root, train=True, download=download)], cls(root, train=False, download=download)
    except Exception as exc:  # URLError, RuntimeError("Dataset not found"), ...
        folder = data_dir() / TORCHVISION_FOLDERS[name]
        held = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        # files in place that torchvision did not accept (CIFAR-10: each batch file's md5) are named: asking for
        # them to be copied to the folder that holds them would send the user in circles
        what = (f"{folder} holds {len(held)} file{'s' if len(held) != 1 else ''} ({', '.join(held[:4])}"
                f"{', ...' if len(held) > 4 else ''}) and torchvision refused them: damaged, incomplete or not the "
                f"official files (it checks CIFAR-10's batch files against their md5). Replace them by torchvision's "
                f"files for {name} (online: empty the folder and load again to download them)") if held else (
            f"On a machine with internet it downloads there by itself; offline, copy torchvision's files for {name} "
            f"to {folder}")
        raise DatasetNotFoundError(
            f"dataset {name!r} could not be loaded from {root} ({type(exc).__name__}: {_first_line(exc)}). {what}, "
            f"or use an offline dataset: {', '.join(sorted(OFFLINE))}.") from exc
    if name == "flowers102":
        # decoded once, then read back from data/decoded/ (as sub-imagenet) rather than 8,189 JPEGs at every load;
        # keyed by every file's path, label, size and time. torchvision's file lists are private attributes: without
        # them every load decodes.
        files = [list(zip(getattr(p, "_image_files", []), getattr(p, "_labels", []))) for p in (*train_parts, test)]
        cache = _decoded_path(name, [files[0] + files[1], files[2]], image_size) if all(files) else None
        if cache is not None and cache.is_file():
            with np.load(cache) as z:
                x_tr, y_tr, x_te, y_te = (torch.from_numpy(z[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
        else:
            x_tr, y_tr = _pil_to_uint8((s for p in train_parts for s in p), image_size)  # one image at a time
            x_te, y_te = _pil_to_uint8(test, image_size)
            if cache is not None:
                _save_decoded(cache, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
        classes = [str(i) for i in range(102)]
        return ImageDataset(name, x_tr, y_tr, x_te, y_te, classes,
                            note=f"train+val as training split, resized to {image_size}x{image_size}")
    data_tr = np.asarray(train_parts[0].data)
    data_te = np.asarray(test.data)
    return ImageDataset(name, _nhwc_to_nchw(data_tr), torch.as_tensor(np.asarray(train_parts[0].targets)),
                        _nhwc_to_nchw(data_te), torch.as_tensor(np.asarray(test.targets)), list(test.classes))


def _pil_to_uint8(samples, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    xs, ys = [], []
    for img, label in samples:
        if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit: convert("RGB") clips to 255 (white)
            arr = np.asarray(img, dtype=np.float64)
            img = Image.fromarray(np.round(np.clip(arr, 0, 65535) * 255 / 65535).astype(np.uint8), "L")
        elif img.mode == "F":
            raise ValueError(f"image {getattr(img, 'filename', '')!r} holds 32-bit floats (mode F), which have no "
                             f"fixed range: save it with 8 or 16 bits per channel")
        img = img.convert("RGB").resize((size, size), Image.BILINEAR)
        xs.append(np.asarray(img))
        ys.append(int(label))
    return _nhwc_to_nchw(np.stack(xs)), torch.tensor(ys)


_DECODER_HASH = hashlib.sha1(inspect.getsource(_pil_to_uint8).encode()).hexdigest()  # part of the decoded-array key


def _decoded_path(name: str, splits: list, image_size: int) -> Path:
    """Where the decoded arrays of image files are kept: ``data/decoded/<name>-<size>-<hash>.npz``, the hash over every
    file's path, label, size and modification time, the decoding code (:func:`_pil_to_uint8`) and Pillow's version,
    so a changed, added or removed file, or another decoder, decodes afresh."""
    import PIL

    h = hashlib.sha1(f"{name}\0{image_size}\0{PIL.__version__}\0{_DECODER_HASH}".encode())
    for files in splits:
        h.update(b"\1")
        for f, y in files:
            st = Path(f).stat()
            h.update(f"{f}\0{y}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return data_dir() / "decoded" / f"{name}-{image_size}-{h.hexdigest()[:16]}.npz"


def _save_decoded(path: Path, **arrays) -> None:
    """Write the decoded arrays atomically; a folder that cannot be written only costs the next load its decoding."""
    import uuid
    import warnings

    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp.npz")  # unique across hosts sharing the folder
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **{k: v.numpy() for k, v in arrays.items()})
        os.replace(tmp, path)
    except OSError as e:
        warnings.warn(f"could not keep the decoded images in {path} ({e}); the next load decodes them again",
                      stacklevel=3)
    finally:  # a write cut short (disk full, Ctrl-C) leaves no partial file of up to a gigabyte behind
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # e.g. its folder could not be made
            pass


def _sub_imagenet(root: str | None = None, num_classes: int = 50, image_size: int = 64) -> ImageDataset:
    """First ``num_classes`` classes (sorted wnids) of an ImageFolder root with ``train/`` and ``val/`` folders.
    Tiny-ImageNet's ``val/images`` + ``val_annotations.txt`` layout is understood as well. The decoded, resized
    arrays are kept in ``data/decoded/`` (``$DOVLIB_CACHE``; :func:`_decoded_path`), so later loads (every notebook,
    every sweep job) read one file instead of decoding tens of thousands of JPEGs again (minutes each time)."""
    from PIL import Image

    from .params import check_int

    num_classes, image_size = check_int("num_classes", num_classes, 1), check_int("image_size", image_size, 8)
    if root is None:
        root = os.environ.get("DOVLIB_IMAGENET", str(data_dir() / "sub-imagenet"))
    root = Path(root).expanduser()
    if not (root / "train").is_dir():
        raise DatasetNotFoundError(
            f"dataset 'sub-imagenet': no train/ folder under {root}. Pass root=... (or set DOVLIB_IMAGENET) to an "
            "ImageFolder root (train/<class>/*.JPEG, val/<class>/*.JPEG) or an unpacked Tiny-ImageNet-200.")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())[:num_classes]
    if len(classes) < num_classes:
        raise ValueError(f"num_classes={num_classes} but {root / 'train'} holds only {len(classes)} class folders")
    index = {c: i for i, c in enumerate(classes)}

    def load(files):
        return _pil_to_uint8(((Image.open(f), y) for f, y in files), image_size)

    exts = {".jpeg", ".jpg", ".png"}
    train = [(f, index[c]) for c in classes for f in sorted((root / "train" / c).rglob("*"))
             if f.suffix.lower() in exts]
    ann = root / "val" / "val_annotations.txt"
    if ann.is_file():  # Tiny-ImageNet
        pairs = [line.split("\t")[:2] for line in ann.read_text().splitlines() if line.strip()]
        val = [(root / "val" / "images" / f, index[c]) for f, c in pairs if c in index]
    else:
        val = [(f, index[c]) for c in classes for f in sorted((root / "val" / c).rglob("*"))
               if f.suffix.lower() in exts]
    for split, files in (("train", train), ("val", val)):
        if not files:
            raise DatasetNotFoundError(f"dataset 'sub-imagenet': no {', '.join(sorted(exts))} images of the first "
                                       f"{num_classes} classes under {root / split}")
    cache = _decoded_path("sub-imagenet", [train, val], image_size)
    if cache.is_file():
        with np.load(cache) as z:
            x_tr, y_tr, x_te, y_te = (torch.from_numpy(z[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    else:
        x_tr, y_tr = load(train)
        x_te, y_te = load(val)
        _save_decoded(cache, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    return ImageDataset("sub-imagenet", x_tr, y_tr, x_te, y_te, classes,
                        note=f"{num_classes} classes of {root}, resized to {image_size}x{image_size}")


def _digits(image_size: int = 28) -> ImageDataset:
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from .params import check_int

    image_size = check_int("image_size", image_size, 8)
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_test = len(y) // 5
    te, tr = perm[:n_test].sort().values, perm[n_test:].sort().values
    return ImageDataset("digits", x[tr], y[tr], x[te], y[te], [str(i) for i in range(10)],
                        note=f"scikit-learn's 1,797 8x8 digits upsampled to {image_size}x{image_size}")


def _synthetic(num_classes: int = 10, n_train: int = 1000, n_test: int = 200, image_size: int = 32,
               channels: int = 3, seed: int = 0) -> ImageDataset:
    """Each class is a smooth random colour pattern; samples add noise and brightness changes, and each split one
    shift of all its images (drawn per split).
    Learnable in a few CPU epochs, so tests can check that training really learns."""
    from .params import check_choice, check_int

    num_classes, image_size = check_int("num_classes", num_classes, 2), check_int("image_size", image_size, 1)
    n_train, n_test = check_int("n_train", n_train, 1), check_int("n_test", n_test, 1)
    check_choice("channels", channels, (1, 3))
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(num_classes, channels, 4, 4, generator=g)
    protos = torch.nn.functional.interpolate(protos, size=(image_size, image_size), mode="bicubic",
                                             align_corners=False).clamp(0, 1)

    def make(n, offset):
        gg = torch.Generator().manual_seed(seed * 1000 + offset)
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=gg)]
        x = protos[y]
        shift = torch.randint(-2, 3, (2,), generator=gg).tolist()
        x = torch.roll(x, shifts=shift, dims=(2, 3))
        x = x * (0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=gg)) + 0.15 * torch.randn(x.shape, generator=gg)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    x_tr, y_tr = make(n_train, 1)
    x_te, y_te = make(n_test, 2)
    return ImageDataset("synthetic", x_tr, y_tr, x_te, y_te, [f"class{i}" for i in range(num_classes)],
                        note="generated classes (not real images)")


def _skimage_photos(image_size: int | None = None) -> ImageDataset:
    """scikit-image's bundled RGB photographs (offline). No labels worth learning: one class per photo.
    Both splits hold the same photos (for watermark embedding/extraction, not classification)."""
    import skimage.data as skd
    from PIL import Image

    from .params import check_int

    # not "cat": in scikit-image it is the same photograph as "chelsea" (dovlib listed both until 2026-12-04)
    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina"]
    side = 512 if image_size is None else check_int("image_size", image_size, 8)
    imgs = []
    for n in names:
        fn = getattr(skd, n, None)
        if fn is None:
            continue
        try:
            a = fn()
        except Exception:  # some images need pooch downloads in newer skimage
            continue
        if a.ndim != 3 or a.shape[2] != 3:
            continue
        a = np.asarray(Image.fromarray(a).resize((side, side), Image.BICUBIC))
        imgs.append((n, a))
    x = _nhwc_to_nchw(np.stack([a for _, a in imgs]))
    y = torch.arange(len(imgs))
    return ImageDataset("skimage-photos", x, y, x.clone(), y.clone(), [n for n, _ in imgs],
                        note="scikit-image sample photographs, resized to a square")


def _image_folder(root: str | None = None, image_size: int = 256, test_share: float = 0.2, seed: int = 0,
                  max_images: int | None = None) -> ImageDataset:
    """Every image under ``root`` (extensions of torchvision's ImageFolder), resized to ``image_size`` squared."""
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from .params import check_int, parse_fraction

    if root is None or not str(root).strip():  # "" would read the working folder (Path("") is ".")
        raise ValueError("dataset 'image-folder' needs root= a folder of images (or use the name 'folder:<path>'); "
                         f"got {root!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"dataset 'image-folder': {root} is not a folder. Pass root=... (or the name "
                                   "'folder:<path>') pointing at a folder of images")
    image_size = check_int("image_size", image_size, 8)
    test_share = parse_fraction("test_share", test_share, 0.0, 1.0, low_inclusive=True, high_inclusive=False)

    def images(d: Path) -> list[Path]:
        return sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS)

    train_dir = root / "train" if (root / "train").is_dir() else None
    test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    splits = {"train": train_dir, "test": test_dir} if train_dir and test_dir else None
    # one split folder alone (train/<class>/...): its class folders give the labels and the split is drawn here
    whole = train_dir or test_dir or root
    files = {k: images(d) for k, d in splits.items()} if splits else {"all": images(whole)}
    if not all(files.values()):
        empty = [str(splits[k] if splits else whole) for k, v in files.items() if not v]
        raise ValueError(f"dataset 'image-folder': no images ({', '.join(sorted(IMG_EXTENSIONS))}) under "
                         f"{', '.join(empty)}")
    base = {k: (splits[k] if splits else whole) for k in files}

    def label(f: Path, k: str) -> str:  # the first folder below the split, or one class for loose images
        rel = f.relative_to(base[k]).parts
        return rel[0] if len(rel) > 1 else "images"

    classes = sorted({label(f, k) for k, fs in files.items() for f in fs})
    if splits:  # a class only in val/ (or val/ without class folders: "images") has no training image
        only_test = sorted({label(f, "test") for f in files["test"]} - {label(f, "train") for f in files["train"]})
        if only_test:
            raise ValueError(f"dataset 'image-folder': {test_dir} holds classes with no training images "
                             f"{only_test[:5]}{' ...' if len(only_test) > 5 else ''}: its images must sit in class "
                             f"folders named as in {train_dir} (Tiny-ImageNet: use the dataset 'sub-imagenet', which "
                             f"reads val_annotations.txt; ImageNet: sort val/ into class folders first)")
    index = {c: i for i, c in enumerate(classes)}
    if not splits:
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(files["all"]), generator=g).tolist()
        n_test = int(round(test_share * len(perm)))
        if n_test >= len(perm) or (test_share > 0 and n_test == 0):
            leaves = f"{'no training' if n_test else 'no test'} image"
            if len(perm) < 2:  # no test_share splits one image
                raise ValueError(f"dataset 'image-folder': {whole} holds {len(perm)} image: a training and a test "
                                 f"split need at least 2 images (the folder loader's test_share = {test_share:g} "
                                 f"leaves {leaves}; test_share=0 keeps no test split)")
            lo, hi = 0.5 / len(perm), 1 - 0.5 / len(perm)
            raise ValueError(f"dataset 'image-folder': test_share = {test_share:g} of the {len(perm)} images in "
                             f"{whole} leaves {leaves}: the folder loader's test_share argument must be above "
                             f"{lo:.3g} and below {hi:.3g} for this folder (or 0: no test split), or the folder "
                             f"needs more images")
        files = {"test": [files["all"][i] for i in sorted(perm[:n_test])],
                 "train": [files["all"][i] for i in sorted(perm[n_test:])]}
        base = {"train": whole, "test": whole}
    drawn = False  # some images left out by max_images: the dataset is a subset, and says so
    if max_images is not None:  # a seeded draw per split (the file lists are sorted by class: never the first ones)
        max_images = check_int("max_images", max_images, 1)
        drawn = any(len(v) > max_images for v in files.values())
        g = torch.Generator().manual_seed(seed + 1)
        files = {k: [v[i] for i in sorted(torch.randperm(len(v), generator=g)[:max_images].tolist())]
                 for k, v in files.items()}

    def load(fs: list[Path], k: str):
        if not fs:
            return torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)
        return _pil_to_uint8(((Image.open(f), index[label(f, k)]) for f in fs), image_size)

    x_tr, y_tr = load(files["train"], "train")
    x_te, y_te = load(files["test"], "test")
    how = ("train/ and " + test_dir.name + "/ folders" if splits
           else f"a seeded {1 - test_share:.0%}/{test_share:.0%} split")
    if drawn:
        how += f"; a seeded draw of at most {max_images} images per split"
    return ImageDataset("image-folder", x_tr, y_tr, x_te, y_te, classes, is_subset=drawn,
                        note=f"{len(x_tr) + len(x_te)} images of {root} ({how}), resized to {image_size}x{image_size}",
                        extra={"root": str(root)})


OFFLINE: dict[str, Callable[..., ImageDataset]] = {
    "cifar10-subset": _cifar10_subset,
    "mnist-offline": _mnist_offline,
    "digits": _digits,
    "synthetic": _synthetic,
    "skimage-photos": _skimage_photos,
    "image-folder": _image_folder,
}
ONLINE: dict[str, Callable[..., ImageDataset]] = {
    "cifar10": lambda **kw: _torchvision("cifar10", **kw),
    "mnist": lambda **kw: _torchvision("mnist", **kw),
    "flowers102": lambda **kw: _torchvision("flowers102", **kw),
    "sub-imagenet": _sub_imagenet,
}
DATASETS = {**OFFLINE, **ONLINE}
GREYSCALE = frozenset({"mnist", "mnist-offline", "digits"})  # names whose images have one channel


def rgb_datasets() -> list[str]:
    """The dataset names that hold RGB images, and ``folder:PATH`` (a folder of images is read as RGB): what a
    notebook that needs colour (10's DCT-DWT marks) lists when it refuses a name of :data:`GREYSCALE`."""
    return sorted(set(DATASETS) - GREYSCALE - {"image-folder"}) + ["folder:PATH"]


def check_rgb_dataset(name, param: str = "dataset", purpose: str = "this notebook") -> str:
    """Refuse, before anything is loaded (or downloaded), a dataset name that cannot give RGB images: a greyscale set
    (:data:`GREYSCALE`), an unknown name, or ``folder:PATH`` whose PATH is not a folder; the error names ``param``,
    what needs colour (``purpose``) and :func:`rgb_datasets`. Returns ``name``."""
    if isinstance(name, str) and name.startswith("folder:"):
        path = Path(name[len("folder:"):]).expanduser()
        if not path.is_dir():
            raise ValueError(f"{param} {name!r}: no such folder (folder:PATH names a folder of images)")
        return name
    if isinstance(name, str) and name in GREYSCALE:
        raise ValueError(f"{param} must hold RGB images for {purpose}: one of {rgb_datasets()}; got {name!r} "
                         "(greyscale)")
    if not isinstance(name, str) or name not in set(rgb_datasets()) - {"folder:PATH"}:
        raise ValueError(f"{param} must be one of {rgb_datasets()} (RGB images, for {purpose}); got {name!r}")
    return name


def load_dataset(name: str, **kwargs) -> ImageDataset:
    """Load a dataset by name; see the module docstring for the names. Keyword arguments go to its loader
    (``root=``, ``image_size=``, ``num_classes=``, ``download=``, ...). ``folder:<path>`` is ``image-folder`` with
    ``root=<path>``, so a notebook's ``dataset`` parameter can name any folder of images."""
    folder = isinstance(name, str) and name.startswith("folder:")
    if not folder and name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)} or folder:<path> (a folder of images); "
                         f"got {name!r}")
    loader = _image_folder if folder else (_torchvision if name in ("cifar10", "mnist", "flowers102")
                                           else DATASETS[name])
    options = set(inspect.signature(loader).parameters) - {"name"} - ({"root"} if folder else set())
    unknown = sorted(set(kwargs) - options)
    if unknown:  # a misspelt option must not be ignored (image_size vs imagesize)
        raise ValueError(f"dataset {name!r} takes no option(s) {unknown}; its options: {sorted(options) or 'none'}")
    if folder:
        return _image_folder(root=name[len("folder:"):], **kwargs)
    return DATASETS[name](**kwargs)


def main(argv=None) -> int:
    """``python -m dovlib.data build-offline [--dest DIR] [--no-download]``: :func:`build_offline_data`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dovlib.data", description=(
        "build-offline: make the offline subsets cifar10-subset and mnist-offline from the official CIFAR-10 and "
        "MNIST (downloaded once), for a machine without the shared data folder."))
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build-offline", help="make cifar10-subset and mnist-offline from the official downloads")
    build.add_argument("--dest", default=None, help=f"folder to write (default {data_dir()})")
    build.add_argument("--no-download", action="store_true", help="use only files already under data/")
    args = parser.parse_args(argv)
    try:
        dest = build_offline_data(args.dest, download=not args.no_download)
    except (DatasetNotFoundError, OSError) as exc:  # offline, damaged files, dest not writable: the message only
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"offline subsets written to {dest} and checked; use them with: export DOVLIB_DATA={dest.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
