import pytest
import torch

from dovlib.perceptual import (BACKBONE_FILES, MIN_SIDE, PerceptualWeightsMissing, check_perceptual_size,
                               lpips_available, lpips_weights_path, perceptual_distance, perceptual_loss,
                               require_perceptual)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_lpips_missing_weights_fail_fast_with_a_helpful_message(empty_hub, monkeypatch):
    assert not lpips_available("alex")

    def no_download(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")  # offline, that hangs ~6 s and then fails

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    with pytest.raises(PerceptualWeightsMissing, match="alexnet-owt-7be5be79.pth") as err:
        perceptual_loss("lpips")
    assert "perceptual='ssim'" in str(err.value) and str(empty_hub) in str(err.value)


def test_require_perceptual_refuses_lpips_without_weights_before_any_training(empty_hub):
    """What notebooks 01-06 call in their first cell: the same message as perceptual_loss, with nothing built."""
    with pytest.raises(PerceptualWeightsMissing, match="perceptual='ssim'"):
        require_perceptual("lpips")
    assert require_perceptual("ssim") == "ssim" and require_perceptual("mse") == "mse"
    with pytest.raises(ValueError, match="perceptual must be one of"):
        require_perceptual("psnr")
    path = lpips_weights_path("alex")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")  # a half-copied file is named as damaged here, before any training
    with pytest.raises(PerceptualWeightsMissing, match=r"the file is there but cannot be read \(1 bytes; .*partly "
                                                        r"copied.*perceptual='ssim'"):
        require_perceptual("lpips")
    torch.save({"w": torch.zeros(1)}, path)  # a state dict (whether its tensors fit is perceptual_loss's job)
    assert require_perceptual("lpips") == "lpips"


def test_lpips_available_looks_for_the_torchvision_checkpoint_file(empty_hub):
    path = lpips_weights_path("vgg")
    assert path == empty_hub / "checkpoints" / BACKBONE_FILES["vgg"]
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # empty (an interrupted copy): not available
    assert not lpips_available("vgg")
    torch.save([1, 2], path)  # readable, but not a state dict
    assert not lpips_available("vgg")
    torch.save({"w": torch.zeros(1)}, path)
    assert lpips_available("vgg") and not lpips_available("alex")


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="perceptual must be one of"):
        perceptual_loss("psnr")
    with pytest.raises(ValueError, match="net must be one of"):
        lpips_weights_path("resnet")


def test_ssim_distance_is_zero_for_identical_images_grows_with_noise_and_is_differentiable():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    d = perceptual_loss("ssim")
    small = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    big = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert torch.allclose(d(x, x), torch.zeros(4), atol=1e-5)
    assert (d(x, small) > 1e-3).all() and (d(x, big) > d(x, small)).all()
    y = small.clone().requires_grad_(True)
    d(x, y).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    # constant images have no variance: 1 - d = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * data range 1)^2
    a, b, c1 = 0.3, 0.5, 0.01 ** 2
    flat = d(torch.full((1, 3, 32, 32), a), torch.full((1, 3, 32, 32), b))
    assert 1 - flat.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-4)


def test_ssim_distance_refuses_images_under_its_smallest_window():
    d = perceptual_loss("ssim")
    assert d(torch.zeros(2, 3, 3, 3), torch.zeros(2, 3, 3, 3)).shape == (2,)  # 3x3: the smallest window fits
    with pytest.raises(ValueError, match=r"1 - SSIM needs images of at least 3x3 pixels .* got 2x2"):
        d(torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2))


def test_ssim_works_for_grey_28px_images_and_uint8_pairs():
    a = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    b = (a.int() + 8).clamp(0, 255).to(torch.uint8)
    out = perceptual_distance(a, b, "ssim")
    assert out.shape == (3,) and (out > 0).all() and (out < 1).all()
    mse = perceptual_distance(a, b, "mse")
    expected = ((a.float() - b.float()) / 255).pow(2).flatten(1).mean(1)
    assert torch.allclose(mse, expected, atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        perceptual_distance(a, b[:2], "mse")


@pytest.mark.skipif(not lpips_available("alex"), reason="LPIPS needs the AlexNet weights in the torch cache (README)")
def test_real_lpips_is_zero_on_identical_images_and_grows_with_the_change():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    small, large = [(x + s * torch.randn(x.shape, generator=g)).clamp(0, 1) for s in (0.02, 0.2)]
    d = perceptual_loss("lpips")
    assert torch.allclose(d(x, x), torch.zeros(4), atol=1e-6)
    assert (d(x, small) < d(x, large)).all() and (d(x, small) > 0).all()


def test_lpips_loads_a_cached_backbone_offline_and_stays_deterministic_in_train_mode(empty_hub, monkeypatch):
    """The real loading path, without the real weights: an AlexNet state dict (random, the real file's shapes) under
    the checkpoint name is loaded with no download. LPIPS's linear heads hold Dropout, so ``.train()`` on the
    measure (or on a module holding it) must leave it deterministic."""
    import torchvision

    path = lpips_weights_path("alex")
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.alexnet().state_dict(), path)

    def no_download(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    d = perceptual_loss("lpips")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    small, large = [(x + s * torch.randn(x.shape, generator=g)).clamp(0, 1) for s in (0.02, 0.3)]
    assert torch.allclose(d(x, x), torch.zeros(4), atol=1e-6)
    assert (d(x, small) < d(x, large)).all()
    holder = torch.nn.ModuleDict({"measure": d}).train()  # e.g. a generator module that keeps its loss inside
    assert holder.training and not d.net.training
    first, second = d(x, large), d(x, large)
    assert torch.equal(first, second)


def test_distance_refuses_non_batches_and_a_zero_batch_size():
    from dovlib.perceptual import perceptual_distance

    x = torch.rand(4, 3, 16, 16)
    with pytest.raises(ValueError, match=r"image batches \(N, C, H, W\); got shape \(3, 16, 16\)"):
        perceptual_distance(x[0], x[1], "mse")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
        perceptual_distance(x, x, "mse", batch_size=0)
    assert perceptual_distance(x, x, "mse", batch_size=3).shape == (4,)
    # 0-255 floats (a forgotten / 255) would be a wrong distance, not an error, if they were let through
    with pytest.raises(ValueError, match=r"b must be uint8 \(0-255\) or floats in \[0, 1\]; got torch.float32 values "
                                         r"in \[0\.\d+, 25\d"):
        perceptual_distance(x, x * 255, "ssim")
    with pytest.raises(ValueError, match="a must be uint8"):
        perceptual_distance(torch.full_like(x, float("nan")), x, "mse")
    u8 = (x * 255).round().to(torch.uint8)
    as_floats = perceptual_distance(u8.float() / 255, u8.flip(0).float() / 255, "mse")
    assert torch.allclose(perceptual_distance(u8, u8.flip(0), "mse"), as_floats)


def test_distance_builds_its_measure_once_per_process_and_retries_after_a_failure(monkeypatch):
    """perceptual_distance without a module reuses one module per measure (LPIPS would otherwise load its network at
    every call); a failed build (LPIPS weights missing) is not remembered, so placing the weights later works."""
    from dovlib import perceptual

    built, fail = [], [True]

    def fake_loss(name, net="alex"):
        if name == "lpips" and fail[0]:
            raise perceptual.PerceptualWeightsMissing("no weights")
        built.append(name)
        return perceptual._MSEDistance()

    monkeypatch.setattr(perceptual, "perceptual_loss", fake_loss)
    perceptual._shared_measure.cache_clear()
    try:
        x = torch.rand(3, 3, 32, 32)  # LPIPS (AlexNet) takes sides of 31 px and more
        for _ in range(3):
            perceptual.perceptual_distance(x, x.flip(0), "mse")
        assert built == ["mse"]
        with pytest.raises(perceptual.PerceptualWeightsMissing):
            perceptual.perceptual_distance(x, x, "lpips")
        fail[0] = False  # the weights are placed now
        assert perceptual.perceptual_distance(x, x, "lpips").shape == (3,) and built == ["mse", "lpips"]
        with pytest.raises(ValueError, match="perceptual must be one of"):
            perceptual.perceptual_distance(x, x, ["mse"])
    finally:
        perceptual._shared_measure.cache_clear()  # later tests build the real modules


def test_lpips_gets_images_scaled_to_its_minus_one_to_one_range(monkeypatch):
    """Offline: the lpips network dovlib builds is replaced by a stub that records what it is fed. LPIPS wants
    [-1, 1] inputs; dovlib takes [0, 1] (or uint8) images, so white must arrive as +1 and black as -1."""
    import lpips

    from dovlib import perceptual

    seen = []

    class StubLPIPS(torch.nn.Module):
        def __init__(self, net="alex", verbose=True, **kwargs):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, a, b):
            seen.append((a.detach().clone(), b.detach().clone()))
            return (a - b).abs().mean((1, 2, 3), keepdim=True) + self.w

    monkeypatch.setattr(perceptual, "lpips_available", lambda net="alex": True)
    monkeypatch.setattr(lpips, "LPIPS", StubLPIPS)
    d = perceptual_loss("lpips")
    white, black = torch.ones(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    out = d(white, black)
    a, b = seen[-1]
    assert a.shape == b.shape == (2, 3, 8, 8)
    assert a.min() == a.max() == 1.0 and b.min() == b.max() == -1.0
    assert torch.allclose(out, torch.full((2,), 2.0))
    # a grey [0, 1] image of 0.25 arrives as -0.5, and one-channel images are expanded to 3 channels
    d(torch.full((1, 1, 8, 8), 0.25), torch.full((1, 1, 8, 8), 0.75))
    a, b = seen[-1]
    assert a.shape == (1, 3, 8, 8) and torch.allclose(a, torch.tensor(-0.5)) and torch.allclose(b, torch.tensor(0.5))
    # uint8 images through perceptual_distance: 255 -> +1, 0 -> -1
    u_white = torch.full((3, 3, 8, 8), 255, dtype=torch.uint8)
    dist = perceptual_distance(u_white, torch.zeros_like(u_white), "lpips", module=d)
    a, b = seen[-1]
    assert a.min() == a.max() == 1.0 and b.min() == b.max() == -1.0 and torch.allclose(dist, torch.full((3,), 2.0))


@pytest.mark.parametrize("size, win", [(3, 3), (4, 3), (5, 5), (6, 5), (7, 7), (8, 7), (9, 9), (10, 9), (11, 11),
                                       (16, 11)])
def test_ssim_distance_shrinks_its_window_for_images_under_11_px(monkeypatch, size, win):
    """1 - SSIM on images under 11 px takes the largest odd Gaussian window that fits (odd sides used
    to get one size less: 5x5 images a 3x3 window): the distances equal pytorch-msssim's at that window size."""
    from pytorch_msssim import ssim

    g = torch.Generator().manual_seed(size)
    a = torch.rand(3, 3, size, size, generator=g)
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    got = perceptual_loss("ssim")(a, b)
    want = 1 - ssim(a, b, data_range=1.0, size_average=False, win_size=win)
    assert torch.allclose(got, want, atol=1e-6)
    if win != 3:
        assert not torch.allclose(got, 1 - ssim(a, b, data_range=1.0, size_average=False, win_size=3), atol=1e-4)
    # non-square images: the shorter side sets the window
    wide = torch.rand(2, 1, size, size + 5, generator=g)
    wide_b = (wide + 0.2 * torch.randn(wide.shape, generator=g)).clamp(0, 1)
    assert torch.allclose(perceptual_loss("ssim")(wide, wide_b),
                          1 - ssim(wide, wide_b, data_range=1.0, size_average=False, win_size=win), atol=1e-6)


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_lpips_min_side_is_where_its_backbone_starts_to_run(net):
    """MIN_SIDE is measured, not assumed: the lpips network (random backbone, the same shapes as the real weights)
    fails one pixel below it and runs at it; a size check refuses exactly the sizes that fail."""
    import contextlib
    import io
    import warnings

    import lpips

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    side = MIN_SIDE[f"lpips-{net}"]
    with pytest.raises(RuntimeError):
        m(torch.rand(1, 3, side - 1, side - 1), torch.rand(1, 3, side - 1, side - 1))
    assert m(torch.rand(1, 3, side, side + 5), torch.rand(1, 3, side, side + 5)).shape == (1, 1, 1, 1)
    assert check_perceptual_size("lpips", (3, side, side + 5), net) == "lpips"
    with pytest.raises(ValueError, match=rf"perceptual='lpips' \({net}\) needs images of at least {side}x{side} "
                                         rf"pixels; got {side + 5}x{side - 1}"):
        check_perceptual_size("lpips", (8, 3, side + 5, side - 1), net)


def test_mnist_sized_images_are_refused_for_lpips_before_any_training(empty_hub):
    """28x28 digits with perceptual='lpips': a clear error naming the size and the fallback (torch's "Output size is
    too small" came after the surrogate had trained). Weights missing is said first."""
    with pytest.raises(PerceptualWeightsMissing):
        require_perceptual("lpips", image_shape=(1, 28, 28))
    path = lpips_weights_path("alex")
    path.parent.mkdir(parents=True)
    torch.save({"w": torch.zeros(1)}, path)  # present and readable
    with pytest.raises(ValueError, match=r"at least 31x31 pixels; got 28x28 \(MNIST-sized images: pass "
                                         r"perceptual='ssim' or 'mse'\)"):
        require_perceptual("lpips", image_shape=(1, 28, 28))
    assert require_perceptual("lpips", image_shape=(3, 32, 32)) == "lpips"
    assert require_perceptual("ssim", image_shape=(1, 28, 28)) == "ssim"
    with pytest.raises(ValueError, match="needs images of at least 31x31"):
        perceptual_distance(torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28), "lpips")
    with pytest.raises(ValueError, match=r"perceptual='ssim' needs images of at least 3x3 pixels; got 2x9"):
        check_perceptual_size("ssim", (2, 9))
    with pytest.raises(ValueError, match="net must be one of"):
        check_perceptual_size("lpips", (32, 32), net="resnet")


def test_require_perceptual_checks_the_weights_and_size_of_the_net_asked_for(empty_hub):
    path = lpips_weights_path("vgg")
    path.parent.mkdir(parents=True)
    torch.save({"w": torch.zeros(1)}, path)  # VGG's weights only (a readable state dict), not AlexNet's
    assert require_perceptual("lpips", net="vgg") == "lpips"
    assert require_perceptual("lpips", net="vgg", image_shape=(3, 20, 20)) == "lpips"  # VGG runs from 16 px
    with pytest.raises(ValueError, match=r"perceptual='lpips' \(vgg\) needs images of at least 16x16 pixels"):
        require_perceptual("lpips", net="vgg", image_shape=(3, 15, 15))
    with pytest.raises(PerceptualWeightsMissing, match="alexnet"):
        require_perceptual("lpips")


def test_mse_takes_any_image_size_and_distance_takes_an_empty_batch():
    assert check_perceptual_size("mse", (3, 1, 1)) == "mse"
    assert perceptual_distance(torch.rand(1, 3, 1, 1), torch.rand(1, 3, 1, 1), "mse").shape == (1,)
    out = perceptual_distance(torch.zeros(0, 3, 8, 8), torch.zeros(0, 3, 8, 8), "mse")
    assert out.shape == (0,)


def test_distance_uses_the_module_passed_in():
    class Constant(torch.nn.Module):
        def forward(self, a, b):
            return torch.full((len(a),), 7.0)

    x = torch.rand(5, 3, 8, 8)
    assert torch.equal(perceptual_distance(x, x.flip(0), "mse", batch_size=2, module=Constant()),
                       torch.full((5,), 7.0))


def test_a_missing_file_is_named_missing_and_an_empty_state_dict_unreadable(empty_hub):
    from dovlib.perceptual import _missing_message, _unreadable, lpips_available, lpips_weights_path

    path = lpips_weights_path("alex")
    assert _unreadable(path) == ""  # not there: nothing to read
    assert "which is not there" in _missing_message("alex") and "cannot be read" not in _missing_message("alex")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({}, path)  # a state dict with nothing in it is no backbone
    assert not lpips_available("alex")
    assert "not a state dict" in _unreadable(path) and "cannot be read" in _missing_message("alex")


def test_a_file_rewritten_at_the_same_size_is_read_again(empty_hub):
    import os

    from dovlib.perceptual import _unreadable, lpips_weights_path

    path = lpips_weights_path("alex")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.zeros(64)}, path)
    good = path.read_bytes()
    assert _unreadable(path) == ""
    path.write_bytes(b"\0" * len(good))  # damaged in place: same size, a later time
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    assert _unreadable(path)


def _torch_file_with_pickle(path, rewrite_pickle, data: bytes):
    torch.save({"w": torch.zeros(4)}, path)
    return rewrite_pickle(path, data)


@pytest.mark.parametrize("damage, reason", [
    ("storage key of control characters", r"not a whole torch file .*data/\\x1b\[2J\\x07"),
    ("global of raw bytes", r"damaged: its data\.pkl is no readable pickle \(UnicodeDecodeError: 'ascii' codec can't "
                            r"decode byte 0xff"),
    ("garbled opcode", r"damaged: its data\.pkl is no readable pickle"),
    ("not a zip archive", r"not a whole torch file"),
    ("code on unpickling", r"does not load safely .*Unsupported global: GLOBAL (io|builtins)\.open"),
], ids=["control-characters", "raw-bytes", "garbled-opcode", "no-zip", "code"])
def test_a_garbled_weights_file_is_named_in_printable_words_without_torchs_advice(empty_hub, rewrite_pickle,
                                                                                  plant_code, damage, reason):
    """A user-placed backbone file that does not load was described by torch's first error line, raw: the control
    characters of a garbled storage key (an ANSI clear-screen and a bell, written to the terminal as they are), the
    ANSI bold of torch's refusal of a file that would run code, a bare UnicodeDecodeError for a global of raw bytes,
    and torch's advice that loading with weights_only=False "will likely succeed" for a garbled pickle or a file that
    is no zip archive. It is now described as dovlib's own files are (train.safe_torch_load): why, in printable words,
    and no code in it runs."""
    from dovlib.perceptual import _missing_message, _unreadable

    path = lpips_weights_path("alex")
    path.parent.mkdir(parents=True)
    marker = None
    if damage == "storage key of control characters":
        torch.save({"w": torch.zeros(4)}, path)
        original = rewrite_pickle(path, b"")
        rewrite_pickle(path, original.replace(b"X\x01\x00\x00\x000", b"X\x05\x00\x00\x00\x1b[2J\x07"))
    elif damage == "global of raw bytes":
        _torch_file_with_pickle(path, rewrite_pickle, b"\x80\x02c\x1b[2J\xff\nx\x07\n)R.")
    elif damage == "garbled opcode":
        _torch_file_with_pickle(path, rewrite_pickle, b"\x80\x02\xf0\x1b[2J.")
    elif damage == "not a zip archive":
        path.write_bytes(b"\x1b[31m\xff\xfe" + bytes(range(256)))
    else:
        marker = plant_code(path, w=torch.zeros(4))
    problem = _unreadable(path)
    assert problem.startswith(f"{path.stat().st_size:,} bytes; it ") and not lpips_available("alex")
    with pytest.raises(PerceptualWeightsMissing) as err:
        require_perceptual("lpips")
    for text in (problem, _missing_message("alex"), str(err.value)):
        assert text.isprintable() and "\\x1b" not in text.replace("\\x1b[2J", ""), text  # only the file's own
        assert "False" not in text and "likely succeed" not in text and "can still be loaded" not in text
    import re

    assert re.search(reason, problem), problem
    assert str(path) not in problem and "copy it again" not in problem, problem  # the why, once, in the message's words
    assert problem in str(err.value) and "Copy it again" in str(err.value)
    assert marker is None or not marker.exists()


def test_a_weights_file_that_cannot_be_opened_is_named_by_its_error_in_printable_words(empty_hub, refuse_opening):
    """An error that is not about what the file holds (it cannot be opened) still makes the weights unavailable, with
    its first line, escaped. A whole file this process may not read was described as "not a whole torch file (...
    truncated, damaged or not torch's)", "so it is damaged, only partly copied or not torchvision's" (the check that
    it is a zip archive answered False for any OSError); the open refused every reader (this test refused only
    torch.load's, which that check never reached)."""
    from dovlib.perceptual import _missing_message, _unreadable

    path = lpips_weights_path("alex")
    path.parent.mkdir(parents=True)
    torch.save({"w": torch.zeros(4)}, path)
    refuse_opening(path, PermissionError("\n[Errno 13] Permission denied: 'alex\x1b[2J'\nsecond line"))
    assert _unreadable(path) == (f"{path.stat().st_size:,} bytes; PermissionError: [Errno 13] Permission denied: "
                                 f"'alex\\x1b[2J'")
    assert not lpips_available("alex")
    message = _missing_message("alex")
    assert "damaged" not in message and "not torchvision's" not in message and message.isprintable(), message
    assert "this process cannot read it" in message and "Copy it again" not in message, message
