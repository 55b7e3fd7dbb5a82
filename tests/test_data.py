from pathlib import Path

import numpy as np
import pytest
import torch

from dovlib import data
from dovlib.data import DATASETS, DatasetNotFoundError, ImageDataset, load_dataset, stratified_subsample


def test_unknown_dataset_names_choices():
    with pytest.raises(ValueError, match=r"dataset must be one of .*cifar10-subset.* or folder:<path>"):
        load_dataset("cifar100")


def test_cifar10_subset_is_real_and_labelled_as_subset():
    ds = load_dataset("cifar10-subset")
    assert ds.x_train.shape == (5085, 3, 32, 32) and ds.x_train.dtype == torch.uint8
    assert ds.x_test.shape == (1017, 3, 32, 32)
    assert ds.classes[:2] == ["airplane", "automobile"] and ds.num_classes == 10
    assert ds.is_subset and "SUBSET" in ds.describe()
    counts = torch.bincount(ds.y_train, minlength=10)
    assert counts.min() >= 475 and counts.max() <= 537  # as ../shared/data/README.md says
    assert ds.x_train.float().std() > 30  # real images, not blanks


def test_mnist_offline_reads_idx_test_set():
    ds = load_dataset("mnist-offline")
    assert ds.x_train.shape == (17435, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.y_test).tolist()[0] == 980  # MNIST test set: 980 zeros
    assert ds.is_subset


def test_missing_offline_path_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"cifar10-subset.*DOVLIB_DATA") as err:
        load_dataset("cifar10-subset")
    # the datasets it offers download on a machine with internet; sub-imagenet never downloads
    assert "(cifar10, flowers102, mnist) on a machine with internet" in str(err.value)
    assert "python -m dovlib.data build-offline" in str(err.value)  # or build the subset itself, once


def test_a_relative_data_folder_says_it_was_read_from_the_working_folder(tmp_path, monkeypatch):
    """A kernel JupyterLab starts for a notebook runs in notebooks/: ``export DOVLIB_DATA=../shared/data`` in the
    repository's root (what this message used to suggest) then names another folder there. The message says the
    folder was relative, which working folder it was read from, and asks for an absolute path."""
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.setenv("DOVLIB_DATA", "../shared/data")
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10-subset")
    msg = str(err.value)
    assert f"{tmp_path / 'shared' / 'data' / 'cifar10-subset' / 'cifar10_subset.npz'} not found" in msg
    assert f"DOVLIB_DATA='../shared/data' is relative: read from the working folder {tmp_path / 'notebooks'}" in msg
    assert "export DOVLIB_DATA=../shared/data" not in msg and "absolute" in msg


def test_damaged_offline_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "cifar10-subset").mkdir()
    np.savez(tmp_path / "cifar10-subset" / "cifar10_subset.npz", x_train=np.zeros((1, 32, 32, 3), np.uint8))
    monkeypatch.setenv("DOVLIB_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="holds other data .*arrays sha256 be3a0ab2"):
        load_dataset("cifar10-subset")


def test_offline_npz_is_checked_by_its_arrays_not_its_zip_bytes(tmp_path, monkeypatch):
    """A file with the same arrays written by another numpy (other zip bytes, another md5) loads; one changed pixel
    is refused."""
    shared = data.offline_data_dir() / "cifar10-subset" / "cifar10_subset.npz"
    with np.load(shared) as d:
        arrays = {k: d[k] for k in d.files}
    (tmp_path / "cifar10-subset").mkdir()
    again = tmp_path / "cifar10-subset" / "cifar10_subset.npz"
    np.savez(again, **arrays)  # the shared file is compressed
    assert data.md5sum(again) != data.md5sum(shared) and data.arrays_sha256(again) == data.arrays_sha256(shared)
    monkeypatch.setenv("DOVLIB_DATA", str(tmp_path))
    assert torch.equal(load_dataset("cifar10-subset").x_test, _shared("cifar10-subset").x_test)
    arrays["x_test"][5, 3, 3, 0] ^= 1
    np.savez(again, **arrays)
    with pytest.raises(DatasetNotFoundError, match="holds other data"):
        load_dataset("cifar10-subset")
    # the hash covers names, dtypes and shapes too
    a = tmp_path / "a.npz"
    np.savez(a, x=np.zeros(4, np.uint8))
    h = data.arrays_sha256(a)
    for other in ({"y": np.zeros(4, np.uint8)}, {"x": np.zeros(4, np.int8)}, {"x": np.zeros((2, 2), np.uint8)}):
        np.savez(a, **other)
        assert data.arrays_sha256(a) != h


def _shared(name):
    return load_dataset(name)


class _FakeCifar:
    """torchvision's CIFAR10 as far as build_offline_data reads it: the shared subset's images at the start of each
    10,000-image batch, other images after them."""

    def __init__(self, root, train=True, download=True):
        with np.load(self.shared) as d:
            xs, ys, self.classes = (d["x_train"], d["y_train"], list(d["classes"])) if train else \
                (d["x_test"], d["y_test"], list(d["classes"]))
        g = np.random.default_rng(0)
        parts = [(xs[b * 1017:(b + 1) * 1017], ys[b * 1017:(b + 1) * 1017]) for b in range(len(xs) // 1017)]
        self.data = np.concatenate([np.concatenate([x, g.integers(0, 256, (10000 - len(x), 32, 32, 3), np.uint8)])
                                    for x, _ in parts])
        self.targets = [int(v) for _, y in parts for v in np.concatenate([y, g.integers(0, 10, 10000 - len(y))])]


class _FakeMnist:
    def __init__(self, root, train=True, download=True):
        with np.load(self.shared / "mnist_train_partial.npz") as d:
            x, y = d["x_train"], d["y_train"]
        self.data = torch.from_numpy(np.concatenate([x, np.zeros((60000 - len(x), 28, 28), np.uint8)]))
        self.targets = torch.from_numpy(np.concatenate([y, np.zeros(60000 - len(y), np.uint8)]).astype(np.int64))
        self.raw_folder = str(self.shared)


def test_build_offline_data_makes_the_shared_files_from_the_official_sets(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    root = data.offline_data_dir()
    monkeypatch.setattr(_FakeCifar, "shared", root / "cifar10-subset" / "cifar10_subset.npz", raising=False)
    monkeypatch.setattr(_FakeMnist, "shared", root / "mnist", raising=False)
    monkeypatch.setattr(tvd, "CIFAR10", _FakeCifar)
    monkeypatch.setattr(tvd, "MNIST", _FakeMnist)
    monkeypatch.setenv("DOVLIB_CACHE", str(tmp_path / "cache"))
    assert data.main(["build-offline", "--dest", str(tmp_path / "built")]) == 0
    built = tmp_path / "built"
    for rel in data.OFFLINE_ARRAYS_SHA256:
        assert data.arrays_sha256(built / rel) == data.arrays_sha256(root / rel)
    for name in data.MNIST_RAW_FILES:
        assert data.md5sum(built / "mnist" / name) == data.OFFLINE_MD5[f"mnist/{name}"]
    monkeypatch.setenv("DOVLIB_DATA", str(built))
    for name in ("cifar10-subset", "mnist-offline"):
        got = load_dataset(name)
        monkeypatch.setenv("DOVLIB_DATA", str(root))
        ref = load_dataset(name)
        monkeypatch.setenv("DOVLIB_DATA", str(built))
        assert torch.equal(got.x_train, ref.x_train) and torch.equal(got.y_test, ref.y_test)
    # a CIFAR-10 in another order (torchvision's batches shuffled) is refused with the file named, never kept quietly
    monkeypatch.setattr(_FakeCifar, "shared", built / "bad.npz", raising=False)
    with np.load(root / "cifar10-subset" / "cifar10_subset.npz") as d:
        np.savez(built / "bad.npz", **{k: (d[k][::-1] if k == "x_train" else d[k]) for k in d.files})
    with pytest.raises(DatasetNotFoundError, match=r"cifar10_subset.npz holds other data"):
        data.build_offline_data(tmp_path / "again")
    assert list((tmp_path / "again").rglob("*")) == []  # the refused file was never put in place, nor left staged
    # a rebuild into a folder of good files that fails (here: the wrong CIFAR-10 order) leaves them as they were
    before = {rel: data.md5sum(built / rel) for rel in data.OFFLINE_MD5}
    with pytest.raises(DatasetNotFoundError, match=r"holds other data"):
        data.build_offline_data(built)
    assert {rel: data.md5sum(built / rel) for rel in data.OFFLINE_MD5} == before
    assert not list(built.glob(".build-offline-*"))


def test_an_interrupted_offline_build_leaves_the_files_it_would_replace(tmp_path, monkeypatch):
    """Ctrl-C while the new arrays are written: the good files in dest stay byte-identical and load."""
    import shutil
    import torchvision.datasets as tvd

    root = data.offline_data_dir()
    dest = tmp_path / "data"
    shutil.copytree(root / "cifar10-subset", dest / "cifar10-subset")
    before = data.md5sum(dest / "cifar10-subset" / "cifar10_subset.npz")
    monkeypatch.setattr(_FakeCifar, "shared", root / "cifar10-subset" / "cifar10_subset.npz", raising=False)
    monkeypatch.setattr(_FakeMnist, "shared", root / "mnist", raising=False)
    monkeypatch.setattr(tvd, "CIFAR10", _FakeCifar)
    monkeypatch.setattr(tvd, "MNIST", _FakeMnist)

    def cut_short(path, **arrays):
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(data.np, "savez_compressed", cut_short)
    with pytest.raises(KeyboardInterrupt):
        data.build_offline_data(dest)
    assert data.md5sum(dest / "cifar10-subset" / "cifar10_subset.npz") == before
    assert not list(dest.glob(".build-offline-*")) and not (dest / "mnist").exists()


def test_a_damaged_offline_file_is_named_not_a_zip_error(tmp_path, monkeypatch):
    import shutil

    root = data.offline_data_dir()
    (tmp_path / "cifar10-subset").mkdir()
    good = (root / "cifar10-subset" / "cifar10_subset.npz").read_bytes()
    for damaged in (good[: len(good) // 2], b"\x00"):  # cut short; one byte (numpy read it as pickled data)
        (tmp_path / "cifar10-subset" / "cifar10_subset.npz").write_bytes(damaged)
        monkeypatch.setenv("DOVLIB_DATA", str(tmp_path))
        with pytest.raises(DatasetNotFoundError, match=r"'cifar10-subset': .*cifar10_subset.npz holds other data .*"
                                                       r"damaged"):
            load_dataset("cifar10-subset")
    shutil.rmtree(tmp_path / "cifar10-subset")


def test_build_offline_refuses_a_dest_it_cannot_write_before_downloading(tmp_path, monkeypatch, capsys):
    import torchvision.datasets as tvd

    def no_download(*a, **k):
        raise AssertionError("downloaded before the dest was checked")

    monkeypatch.setattr(tvd, "CIFAR10", no_download)
    (tmp_path / "a_file").write_text("")
    assert data.main(["build-offline", "--dest", str(tmp_path / "a_file" / "sub")]) == 1
    assert capsys.readouterr().err.startswith(f"error: dest {tmp_path / 'a_file' / 'sub'}: ")
    monkeypatch.setattr(data.os, "access", lambda *a: False)  # a read-only folder (root may write anywhere)
    assert data.main(["build-offline", "--dest", str(tmp_path / "ro")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path} cannot be written" in err and "--dest DIR" in err and not (tmp_path / "ro").exists()


def test_build_offline_data_offline_says_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_CACHE", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"reads the official CIFAR-10 and MNIST files from") as err:
        data.build_offline_data(tmp_path / "out", download=False)
    msg = str(err.value)  # where to copy them, and nothing of torchvision's API ("download=True")
    assert f"{tmp_path}/cifar10/cifar-10-batches-py" in msg and f"{tmp_path}/mnist/MNIST/raw" in msg
    assert "--no-download" in msg and "download=True" not in msg and "\n" not in msg


def test_online_dataset_offline_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_CACHE", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"'cifar10' could not be loaded .*offline") as err:
        load_dataset("cifar10", download=False)
    assert f"copy torchvision's files for cifar10 to {tmp_path}/cifar10/cifar-10-batches-py," in str(err.value)
    assert "download=True" not in str(err.value)


def test_online_files_that_torchvision_refuses_are_named_not_asked_for(tmp_path, monkeypatch):
    """CIFAR-10 batch files in place that fail torchvision's md5 check (damaged, cut short, another copy): the error
    says the files there were refused, not "copy the files to" the folder that already holds them."""
    import pickle

    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / f, "wb") as fh:
            pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, fh)
    monkeypatch.setenv("DOVLIB_CACHE", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"'cifar10' could not be loaded") as err:
        load_dataset("cifar10", download=False)
    msg = str(err.value)
    assert f"{folder} holds 7 files (batches.meta, data_batch_1, " in msg and "torchvision refused them" in msg
    assert "copy torchvision's files" not in msg and "download=True" not in msg and "\n" not in msg


def test_a_multi_line_download_error_stays_one_line(tmp_path, monkeypatch):
    """Offline, torchvision's MNIST error lists every mirror on its own line; the message keeps the first."""
    import torchvision.datasets as tvd

    class Failing:
        def __init__(self, root, train=True, download=True):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a, got:\n<urlopen error>")

    monkeypatch.setenv("DOVLIB_CACHE", str(tmp_path))
    monkeypatch.setattr(tvd, "MNIST", Failing)
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist")
    assert "\n" not in str(err.value) and "Error downloading train-images-idx3-ubyte.gz:" in str(err.value)
    assert f"{tmp_path}/mnist/MNIST/raw," in str(err.value)


def test_sub_imagenet_missing_root(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="sub-imagenet"):
        load_dataset("sub-imagenet", root=tmp_path)


def _image_folder(root, classes=("n01", "n02", "n03"), n=2):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(d / f"{i}.JPEG")


def test_sub_imagenet_reads_imagefolder(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_CACHE", str(tmp_path / "cache"))
    _image_folder(tmp_path)
    ds = load_dataset("sub-imagenet", root=tmp_path, num_classes=2, image_size=32)
    assert ds.x_train.shape == (4, 3, 32, 32) and ds.classes == ["n01", "n02"]
    assert ds.y_test.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="num_classes=5"):
        load_dataset("sub-imagenet", root=tmp_path, num_classes=5)


def test_flowers102_keeps_its_decoded_arrays(tmp_path, monkeypatch):
    """Flowers-102 (offline here: torchvision's class faked over a few real JPEGs) is decoded once; the next load
    reads data/decoded/*.npz, and a changed image decodes afresh."""
    import torchvision.datasets as tvd
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "jpg"
    folder.mkdir()
    opened = []

    class FakeFlowers:
        def __init__(self, root, split, download=False):
            n = {"train": 3, "val": 2, "test": 2}[split]
            self._image_files = [folder / f"{split}{i}.jpg" for i in range(n)]
            self._labels = [i % 2 for i in range(n)]
            for f in self._image_files:
                if not f.exists():
                    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(f)

        def __len__(self):
            return len(self._image_files)

        def __getitem__(self, i):
            opened.append(self._image_files[i].name)
            return Image.open(self._image_files[i]), self._labels[i]

    monkeypatch.setattr(tvd, "Flowers102", FakeFlowers)
    monkeypatch.setenv("DOVLIB_CACHE", str(tmp_path / "cache"))
    first = load_dataset("flowers102", image_size=16)
    assert first.x_train.shape == (5, 3, 16, 16) and first.x_test.shape == (2, 3, 16, 16) and len(opened) == 7
    assert len(list((tmp_path / "cache" / "decoded").glob("flowers102-16-*.npz"))) == 1
    again = load_dataset("flowers102", image_size=16)
    assert len(opened) == 7 and all(torch.equal(getattr(first, k), getattr(again, k))
                                    for k in ("x_train", "y_train", "x_test", "y_test"))
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "test1.jpg")  # a changed file: decoded again
    changed = load_dataset("flowers102", image_size=16)
    assert len(opened) == 14 and changed.x_test[1].sum() == 0


def test_sub_imagenet_keeps_its_decoded_arrays_until_a_file_changes(tmp_path, monkeypatch):
    """The second load reads data/decoded/*.npz instead of decoding the JPEGs; other sizes, classes or a changed
    file decode afresh; an unwritable cache folder only warns."""
    from PIL import Image

    import dovlib.data as data

    monkeypatch.setenv("DOVLIB_CACHE", str(tmp_path / "cache"))
    _image_folder(tmp_path / "root")
    first = load_dataset("sub-imagenet", root=tmp_path / "root", num_classes=2, image_size=16)
    assert len(list((tmp_path / "cache" / "decoded").glob("sub-imagenet-16-*.npz"))) == 1
    real, decoded = data._pil_to_uint8, []
    monkeypatch.setattr(data, "_pil_to_uint8", lambda *a: decoded.append(1) or real(*a))
    again = load_dataset("sub-imagenet", root=tmp_path / "root", num_classes=2, image_size=16)
    assert decoded == [] and all(torch.equal(getattr(first, k), getattr(again, k))
                                 for k in ("x_train", "y_train", "x_test", "y_test"))
    load_dataset("sub-imagenet", root=tmp_path / "root", num_classes=3, image_size=16)
    assert decoded == [1, 1]  # other classes: decoded (train and val)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "root" / "train" / "n01" / "0.JPEG")
    changed = load_dataset("sub-imagenet", root=tmp_path / "root", num_classes=2, image_size=16)
    assert decoded == [1, 1, 1, 1] and changed.x_train[0].sum() == 0 and not torch.equal(changed.x_train, first.x_train)
    # another Pillow (or another decoding function) is another key
    import PIL

    key = data._decoded_path("sub-imagenet", [[(tmp_path / "root" / "train" / "n01" / "0.JPEG", 0)]], 16)
    monkeypatch.setattr(PIL, "__version__", "0.0")
    assert data._decoded_path("sub-imagenet", [[(tmp_path / "root" / "train" / "n01" / "0.JPEG", 0)]], 16) != key

    def partial(path, **arrays):  # a write cut short: a partial file, then the error
        open(path, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(data.np, "savez", partial)
    with pytest.warns(UserWarning, match="disk full"):
        data._save_decoded(tmp_path / "cache" / "decoded" / "x.npz", a=torch.zeros(2))
    assert not list((tmp_path / "cache" / "decoded").glob("*x*"))  # no partial file left
    (tmp_path / "ro").write_text("a file where the cache folder should be")
    monkeypatch.setenv("DOVLIB_CACHE", str(tmp_path / "ro"))
    with pytest.warns(UserWarning, match="could not keep the decoded images"):
        blocked = load_dataset("sub-imagenet", root=tmp_path / "root", num_classes=2, image_size=16)
    assert torch.equal(blocked.x_train, changed.x_train)


def test_digits_and_synthetic_offline():
    d = load_dataset("digits")
    assert d.x_train.shape[1:] == (1, 28, 28) and len(d.x_train) + len(d.x_test) == 1797
    s = load_dataset("synthetic", num_classes=4, n_train=40, n_test=8, image_size=16)
    assert s.x_train.shape == (40, 3, 16, 16) and torch.bincount(s.y_train).tolist() == [10] * 4
    s2 = load_dataset("synthetic", num_classes=4, n_train=40, n_test=8, image_size=16)
    assert torch.equal(s.x_train, s2.x_train)  # deterministic
    for bad, message in ((dict(image_size=0), "image_size must be an integer >= 1"),
                         (dict(num_classes=1), "num_classes must be an integer >= 2"),
                         (dict(n_test=0), "n_test must be an integer >= 1"),
                         (dict(channels=2), r"channels must be one of \[1, 3\]")):
        with pytest.raises(ValueError, match=message):
            load_dataset("synthetic", **bad)


def test_skimage_photos_offline():
    p = load_dataset("skimage-photos", image_size=256)
    assert p.x_train.shape[1:] == (3, 256, 256) and len(p.x_train) >= 4


def test_stratified_subsample_keeps_proportions_and_is_seeded():
    y = torch.tensor([0] * 80 + [1] * 20)
    idx = stratified_subsample(y, 10, seed=1)
    assert len(idx) == 10 and torch.bincount(y[idx]).tolist() == [8, 2]
    assert torch.equal(idx, stratified_subsample(y, 10, seed=1))
    assert not torch.equal(idx, stratified_subsample(y, 10, seed=2))
    assert len(stratified_subsample(y, None)) == 100
    # fewer items than classes: classes drawn with the seed, weighted by size (the first classes were always kept and
    # the 90% class dropped, whatever the seed)
    skew = torch.tensor([0] * 90 + [1] * 9 + [2])
    kept = [tuple(sorted(skew[stratified_subsample(skew, 2, seed=s)].tolist())) for s in range(30)]
    assert all(len(set(k)) == 2 for k in kept)  # one item per drawn class
    assert sum(0 in k for k in kept) >= 25  # the big class nearly always drawn
    balanced = torch.arange(100) % 10
    drawn = {tuple(sorted(balanced[stratified_subsample(balanced, 5, seed=s)].tolist())) for s in range(10)}
    assert len(drawn) > 1  # not the same five classes for every seed
    assert torch.equal(stratified_subsample(balanced, 5, seed=3), stratified_subsample(balanced, 5, seed=3))


def test_subsample_marks_subset_and_validates():
    s = load_dataset("synthetic", n_train=100, n_test=50)
    sub = s.subsample(20, None)
    assert len(sub.x_train) == 20 and len(sub.x_test) == 50 and sub.is_subset
    assert "stratified subsample" in sub.note
    assert s.subsample(None, None) is s
    # n < 1 is refused for either split (n = None keeps a split whole)
    with pytest.raises(ValueError, match=r"n \(subsample size\) must be an integer >= 1; got 0"):
        s.subsample(0, None)
    with pytest.raises(ValueError, match=r"n \(subsample size\) must be an integer >= 1; got -2"):
        s.subsample(None, -2)
    with pytest.raises(ValueError, match=r"n \(subsample size\) must be an integer >= 1; got 0"):
        stratified_subsample(s.y_train, 0)
    # the kept rows are the stratified indices (train with seed, test with seed + 1), images still paired with labels
    sub = s.subsample(20, 10, seed=4)
    tr, te = stratified_subsample(s.y_train, 20, 4), stratified_subsample(s.y_test, 10, 5)
    assert torch.equal(sub.x_train, s.x_train[tr]) and torch.equal(sub.y_train, s.y_train[tr])
    assert torch.equal(sub.x_test, s.x_test[te]) and torch.equal(sub.y_test, s.y_test[te])
    assert torch.bincount(sub.y_train, minlength=10).tolist() == [2] * 10  # 10 balanced classes
    assert sub.note == s.note + "; stratified subsample 20/10 (seed 4)" and sub.is_subset
    assert sub.classes == s.classes and sub.name == s.name
    # asking for at least the whole split keeps it whole and unmarked
    whole = s.subsample(100, 500)
    assert not whole.is_subset and whole.note == s.note
    assert torch.equal(whole.x_train, s.x_train) and torch.equal(whole.y_test, s.y_test)


def test_imagedataset_validates_dtype():
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset("bad", x, torch.zeros(2), x.byte(), torch.zeros(2), ["a"])


def test_registry_lists_all_issue_names():
    for name in ("cifar10", "mnist", "flowers102", "sub-imagenet", "digits", "synthetic", "cifar10-subset",
                 "mnist-offline"):
        assert name in DATASETS
    assert data.offline_data_dir().exists()


def _write_images(folder, n, size=(40, 30), seed=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"img{i}.png")


def test_image_folder_with_classes_and_seeded_split(tmp_path):
    _write_images(tmp_path / "cats", 6)
    _write_images(tmp_path / "dogs", 4, seed=1)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load_dataset(f"folder:{tmp_path}", image_size=16, test_share=0.2)
    assert ds.classes == ["cats", "dogs"] and ds.x_train.shape[1:] == (3, 16, 16)
    assert len(ds.x_train) == 8 and len(ds.x_test) == 2 and ds.name == "image-folder"
    assert sorted((torch.cat([ds.y_train, ds.y_test])).tolist()) == [0] * 6 + [1] * 4
    again = load_dataset("image-folder", root=tmp_path, image_size=16, test_share=0.2)
    assert torch.equal(again.x_test, ds.x_test)  # the split is seeded
    assert str(tmp_path) in ds.note and "80%/20%" in ds.note


def test_an_empty_folder_path_is_refused_not_read_as_the_working_folder():
    for name in ("folder:", "folder:  "):
        with pytest.raises(ValueError, match=r"needs root= a folder of images .*got ''|got '  '"):
            load_dataset(name)


def test_image_folder_max_images_draws_across_classes(tmp_path):
    """The file list is sorted by class; max_images must not keep only the first class's images."""
    for i, c in enumerate(("a", "b", "c", "d")):
        _write_images(tmp_path / "train" / c, 5, seed=i)
        _write_images(tmp_path / "val" / c, 2, seed=10 + i)
    ds = load_dataset(f"folder:{tmp_path}", image_size=8, max_images=8)
    assert (len(ds.x_train), len(ds.x_test)) == (8, 8) and ds.classes == ["a", "b", "c", "d"]
    assert len(set(ds.y_train.tolist())) >= 3 and len(set(ds.y_test.tolist())) >= 3
    again = load_dataset(f"folder:{tmp_path}", image_size=8, max_images=8)
    assert torch.equal(again.x_train, ds.x_train)  # seeded
    # images were left out: a subset, and its description says so (reports label results on subsets)
    assert ds.is_subset and "(SUBSET of the full dataset)" in ds.describe()
    assert "at most 8 images per split" in ds.describe()
    whole = load_dataset(f"folder:{tmp_path}", image_size=8, max_images=20)  # every image fits: the full folder
    assert not whole.is_subset and len(whole.x_train) == 20 and "at most" not in whole.describe()
    with pytest.raises(ValueError, match="max_images must be an integer >= 1"):
        load_dataset(f"folder:{tmp_path}", max_images=0)


def test_unknown_loader_options_are_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"dataset 'digits' takes no option\(s\) \['imagesize'\]; its options: "
                                         r"\['image_size'\]"):
        load_dataset("digits", imagesize=64)
    with pytest.raises(ValueError, match=r"'cifar10-subset' takes no option\(s\) \['image_size'\]; its options: none"):
        load_dataset("cifar10-subset", image_size=64)
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['num_classes'\]"):
        load_dataset("folder:/nowhere", num_classes=3)  # refused before the folder is even looked at
    assert load_dataset("digits", image_size=12).x_train.shape[-1] == 12


def test_image_folder_uses_train_val_and_loose_images(tmp_path):
    _write_images(tmp_path / "train", 3)
    _write_images(tmp_path / "val", 2, seed=1)
    ds = load_dataset(f"folder:{tmp_path}", image_size=8)
    assert (len(ds.x_train), len(ds.x_test)) == (3, 2) and ds.classes == ["images"] and ds.num_classes == 1
    assert "train/ and val/" in ds.note


def test_image_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="is not a folder"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="no images"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(ValueError, match="needs root"):
        load_dataset("image-folder")
    _write_images(tmp_path, 2)
    with pytest.raises(ValueError, match="image_size"):
        load_dataset(f"folder:{tmp_path}", image_size=2)
    # a split that would be empty is refused naming test_share (it failed later, in training or evaluation)
    with pytest.raises(ValueError, match=r"test_share = 0.75 of the 2 images in .* leaves no training image: the "
                                         r"folder loader's test_share argument must be above 0.25 and below 0.75"):
        load_dataset(f"folder:{tmp_path}", test_share=0.75)
    with pytest.raises(ValueError, match="test_share = 0.2 of the 2 images.* leaves no test image"):
        load_dataset(f"folder:{tmp_path}", test_share=0.2)
    one = tmp_path.with_name(tmp_path.name + "_one")  # beside tmp_path: not one of its images
    _write_images(one, 1)  # no test_share splits one image: the folder and the minimum named, no empty range
    with pytest.raises(ValueError, match=r"holds 1 image: a training and a test split need at least 2 images") as e:
        load_dataset(f"folder:{one}", test_share=0.2)
    assert str(one) in str(e.value) and "must be above" not in str(e.value)
    assert len(load_dataset(f"folder:{tmp_path}", image_size=8, test_share=0).x_test) == 0  # 0: no test split


def test_image_folder_refuses_val_classes_without_training_images(tmp_path):
    """Tiny-ImageNet's val/images/ (or ImageNet's flat val/) became a class 'images' with no training image: test
    accuracy 0 and one class too many, silently."""
    for c in ("n01", "n02"):
        _write_images(tmp_path / "train" / c / "images", 2, seed=len(c))
    _write_images(tmp_path / "val" / "images", 2)
    with pytest.raises(ValueError, match=r"holds classes with no training images \['images'\].*sub-imagenet"):
        load_dataset(f"folder:{tmp_path}", image_size=8)


def test_16_bit_images_are_scaled_not_clipped_white(tmp_path):
    from PIL import Image

    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 to 65520
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    assert Image.open(tmp_path / "ramp.png").mode.startswith("I")
    x = load_dataset(f"folder:{tmp_path}", image_size=64, test_share=0).x_train[0, 0].numpy().astype(int)
    assert abs(x.mean() - ramp.mean() * 255 / 65535) < 2 and (x == 255).mean() < 0.01  # was 99.6% white
    Image.fromarray(np.ones((8, 8), np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(ValueError, match=r"float.tiff.*32-bit floats \(mode F\)"):
        load_dataset(f"folder:{tmp_path}", image_size=8, test_share=0)


def test_data_dir_follows_env_and_md5sum_reads_in_chunks(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("DOVLIB_CACHE", str(tmp_path / "cache"))
    assert data.data_dir() == tmp_path / "cache"
    monkeypatch.delenv("DOVLIB_CACHE")
    assert data.data_dir().name == "data" and (data.data_dir().parent / "dovlib").is_dir()
    f = tmp_path / "blob.bin"
    payload = bytes(range(256)) * 41  # 10,496 bytes: several 1,000-byte chunks and a short last one
    f.write_bytes(payload)
    assert data.md5sum(f, chunk=1000) == data.md5sum(f) == hashlib.md5(payload).hexdigest()
    with pytest.raises(FileNotFoundError):
        data.md5sum(tmp_path / "missing.bin")


def test_a_folder_with_only_train_takes_labels_below_it(tmp_path):
    """train/<class>/ without val/ or test/: the classes are the folders below train/ (they used to be one class
    named "train"), and the test split is drawn from them."""
    _write_images(tmp_path / "train" / "cat", 6)
    _write_images(tmp_path / "train" / "dog", 4, seed=1)
    ds = load_dataset(f"folder:{tmp_path}", image_size=8, test_share=0.2)
    assert ds.classes == ["cat", "dog"] and (len(ds.x_train), len(ds.x_test)) == (8, 2)
    assert sorted(torch.cat([ds.y_train, ds.y_test]).tolist()) == [0] * 6 + [1] * 4
    whole = load_dataset(f"folder:{tmp_path}", image_size=8, test_share=0)  # no test split asked for: allowed
    assert (len(whole.x_train), len(whole.x_test)) == (10, 0)
    with pytest.raises(ValueError, match=r"test_share must be a number in \[0, 1\)"):
        load_dataset(f"folder:{tmp_path}", image_size=8, test_share=1)


def test_skimage_photos_are_distinct_photographs():
    """scikit-image's cat() is chelsea(): the set once held that photo twice under two labels."""
    p = load_dataset("skimage-photos", image_size=64)
    flat = p.x_train.flatten(1)
    assert len(p.x_train) >= 4 and "cat" not in p.classes
    assert all(not torch.equal(flat[i], flat[j]) for i in range(len(flat)) for j in range(i))
    with pytest.raises(ValueError, match="image_size must be an integer >= 8; got 0"):
        load_dataset("skimage-photos", image_size=0)


def test_image_dataset_refuses_labels_outside_its_classes_and_mixed_shapes():
    x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"y_train must be class indices in \[0, 1\] \(2 classes\); got labels in "
                                         r"\[0, 5\]"):
        ImageDataset("bad", x, torch.tensor([0, 5]), x, torch.tensor([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="y_train must hold integer class labels; got torch.float32"):
        ImageDataset("bad", x, torch.tensor([0.7, 1.9]), x, torch.tensor([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match=r"one shape; got \(1, 4, 4\) and \(3, 8, 8\)"):
        ImageDataset("bad", x, torch.tensor([0, 1]), torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.tensor([1]),
                     ["a", "b"])
    with pytest.raises(ValueError, match=r"n \(subsample size\) must be an integer >= 1; got 2.5"):
        stratified_subsample(torch.arange(10) % 2, 2.5)


def test_loader_options_that_would_be_ignored_or_are_out_of_range_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'cifar10' keeps its own image size; image_size applies to flowers102 only"):
        load_dataset("cifar10", image_size=64, download=False)
    with pytest.raises(ValueError, match=r"dataset 'sub-imagenet' takes no option\(s\) \['seed'\]"):
        load_dataset("sub-imagenet", root=tmp_path, seed=1)
    with pytest.raises(ValueError, match="image_size must be an integer >= 8; got 0"):
        load_dataset("digits", image_size=0)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1; got 0"):
        load_dataset("sub-imagenet", root=tmp_path, num_classes=0)
    (tmp_path / "train" / "n01").mkdir(parents=True)
    _write_images(tmp_path / "train" / "n01", 2)
    with pytest.raises(DatasetNotFoundError, match=r"no .* images of the first 1 classes under .*val"):
        load_dataset("sub-imagenet", root=tmp_path, num_classes=1, image_size=8)


def test_build_offline_cli_prints_the_reason_and_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DOVLIB_CACHE", str(tmp_path))
    assert data.main(["build-offline", "--dest", str(tmp_path / "out"), "--no-download"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: build-offline reads the official CIFAR-10 and MNIST files from")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_the_dest_check_asks_for_write_and_search_permission(tmp_path, monkeypatch):
    """A folder that can be read but not written (or entered) is refused, not only one that cannot be read."""
    need = data.os.W_OK | data.os.X_OK
    monkeypatch.setattr(data.os, "access", lambda p, mode: (mode & need) != need)  # readable, not writable
    with pytest.raises(PermissionError, match="cannot be written"):
        data._check_writable(tmp_path / "ro")


def test_the_offline_build_stages_inside_dest(tmp_path, monkeypatch):
    """The staging folder is in dest (one file system), so each os.replace is an atomic rename, not a copy."""
    import torchvision.datasets as tvd

    root = data.offline_data_dir()
    dest = tmp_path / "data"
    monkeypatch.setattr(_FakeCifar, "shared", root / "cifar10-subset" / "cifar10_subset.npz", raising=False)
    monkeypatch.setattr(_FakeMnist, "shared", root / "mnist", raising=False)
    monkeypatch.setattr(tvd, "CIFAR10", _FakeCifar)
    monkeypatch.setattr(tvd, "MNIST", _FakeMnist)
    written = []

    def record(path, **arrays):
        written.append(Path(path))
        raise KeyboardInterrupt

    monkeypatch.setattr(data.np, "savez_compressed", record)
    with pytest.raises(KeyboardInterrupt):
        data.build_offline_data(dest)
    stage = written[0].parents[1]
    assert stage.parent == dest and stage.name.startswith(".build-offline-") and not stage.exists()


def test_first_line_drops_torchvisions_hint_and_trailing_dots_and_names_an_empty_error():
    assert data._first_line(RuntimeError("Dataset not found or corrupted. You can use download=True to download it")) \
        == "Dataset not found or corrupted"
    assert data._first_line(RuntimeError("no route to host.")) == "no route to host"
    assert data._first_line(RuntimeError()) == "RuntimeError" and data._first_line(OSError("  \n")) == "OSError"


def test_split_problems_name_what_makes_the_test_split_unfit():
    import warnings

    from dovlib.data import ImageDataset

    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    ok = ImageDataset("toy", x, y, x[:3].clone() + 1, torch.tensor([0, 1, 2]), ["a", "b", "c"])
    assert ok.split_problems(1) == [] and ok.split_problems() == []
    same = ImageDataset("toy", x, y, x.clone(), y.clone(), ["a", "b", "c"])  # scikit-image's photos: test = train
    assert len(same.split_problems()) == 1 and "training accuracy" in same.split_problems()[0]
    no_target = ImageDataset("toy", x, y, x[:2], torch.tensor([0, 2]), ["a", "b", "c"])
    (msg,) = no_target.split_problems(1)
    assert "target class 1 has no test image among the 2" in msg and "NaN" in msg
    only_target = ImageDataset("toy", x, y, x[:2], torch.tensor([1, 1]), ["a", "b", "c"])
    assert "WSR" in only_target.split_problems(1)[0] and only_target.split_problems(0)[0].startswith("target class 0")
    empty = ImageDataset("toy", x, y, x[:0], y[:0], ["a", "b", "c"])
    assert "no test image" in empty.split_problems(1)[0] and len(empty.split_problems(1)) == 1
    with pytest.warns(UserWarning, match="target class 1 has no test image"):
        assert no_target.warn_split_problems(1) == no_target.split_problems(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ok.warn_split_problems(1) == []
    photos = load_dataset("skimage-photos", image_size=16)
    assert any("training accuracy" in m for m in photos.split_problems())


def test_greyscale_datasets_are_named_and_the_rgb_ones_listed():
    """Notebook 10 (DCT-DWT marks RGB images) refuses a greyscale dataset by name before loading it, listing the RGB
    ones; data.GREYSCALE says which names hold greyscale images, checked here on the offline ones."""
    assert data.GREYSCALE == {"mnist", "mnist-offline", "digits"}
    # the list must not drift from the loaders: every offline set loaded (synthetic with its default channels, as a
    # notebook loads it), and every online one given its channels here, so a set added later has to be placed
    online_channels = {"cifar10": 3, "mnist": 1, "flowers102": 3, "sub-imagenet": 3}  # cannot be loaded here
    assert set(data.ONLINE) == set(online_channels), "a new online dataset: give its channel count above"
    channels = {name: load_dataset(name).image_shape[0] for name in set(data.OFFLINE) - {"image-folder"}}
    assert {name for name, c in {**channels, **online_channels}.items() if c == 1} == data.GREYSCALE, channels
    rgb = data.rgb_datasets()
    assert "cifar10-subset" in rgb and "cifar10" in rgb and "skimage-photos" in rgb and "folder:PATH" in rgb
    assert not set(rgb) & data.GREYSCALE and "image-folder" not in rgb  # folder:PATH names it with its root


def test_check_rgb_dataset_refuses_greyscale_unknown_and_missing_folders_by_name(tmp_path):
    """Notebooks 07-09 take a dataset of RGB images (invisible-watermark and HiDDeN mark three channels): 07 and 08
    accepted only cifar10-subset and skimage-photos (not cifar10 or flowers102), 09 checked nothing before loading.
    check_rgb_dataset refuses, before any loading, a greyscale set, an unknown name and a missing folder, naming the
    parameter and the RGB sets."""
    for ok in ("cifar10", "flowers102", "cifar10-subset", "skimage-photos", "synthetic", f"folder:{tmp_path}"):
        assert data.check_rgb_dataset(ok) == ok
    with pytest.raises(ValueError, match=r"hidden_dataset must hold RGB images for HiDDeN: one of \[.*'cifar10'.*"
                                         r"'folder:PATH'\]; got 'mnist' \(greyscale\)"):
        data.check_rgb_dataset("mnist", "hidden_dataset", "HiDDeN")
    for bad in ("cifar100", "image-folder", None, 3):
        with pytest.raises(ValueError, match=r"dataset must be one of \[.*'skimage-photos'.*\] \(RGB images"):
            data.check_rgb_dataset(bad)
    with pytest.raises(ValueError, match="dataset 'folder:.*missing': no such folder"):
        data.check_rgb_dataset(f"folder:{tmp_path / 'missing'}")
