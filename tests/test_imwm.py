from pathlib import Path

import numpy as np
import pytest
import torch

from dovlib.attacks import jpeg
from dovlib.imwm import (HIDDEN_ARCHS, HIDDEN_LOSS_VERSION, HiDDeN, HiddenConfig, HiddenNet, ImWatermarker, Watermarker,
                         MAX_DCT_SCALE, attack_generator, embed_at_size, evaluate_attacks, evaluate_dataset,
                         get_watermarker, sample_images, to_min_size, train_hidden)
from dovlib.metrics import bit_accuracy, psnr


@pytest.fixture(scope="module")
def photos():
    from dovlib.data import load_dataset

    x = load_dataset("skimage-photos").x_train[:3]
    return torch.nn.functional.interpolate(x.float(), size=(256, 256), mode="area").round().to(torch.uint8)


def _bits(n, length, seed=0):
    return np.random.default_rng(seed).integers(0, 2, (n, length)).astype(np.uint8)


def test_dwt_dct_svd_round_trip_is_invisible_and_exact(photos):
    wm = ImWatermarker("dwtDctSvd", 32)
    bits = _bits(len(photos), 32)
    marked = wm.embed(photos, bits)
    assert marked.dtype == torch.uint8 and marked.shape == photos.shape
    assert bit_accuracy(wm.extract(marked), bits).mean() >= 0.95
    assert psnr(photos, marked).mean() > 30
    # unmarked images carry no message: accuracy near chance
    assert bit_accuracy(wm.extract(photos), bits).mean() < 0.8


def test_dwt_dct_scale_trades_quality_for_strength(photos):
    bits = _bits(len(photos), 32)
    strong, weak = ImWatermarker("dwtDct", 32, scale=36), ImWatermarker("dwtDct", 32, scale=10)
    assert psnr(photos, weak.embed(photos, bits)).mean() > psnr(photos, strong.embed(photos, bits)).mean()
    # ... and the larger step survives JPEG (4:4:4, quality 70) better. Measured over 4 messages x 3 photos
    # (384 bits): scale 36 reads 0.687, scale 10 0.555 (chance 0.5); per message 0.64-0.72 vs 0.54-0.56
    acc = {}
    for wm in (strong, weak):
        reads = [bit_accuracy(wm.extract(jpeg(wm.embed(photos, b), 70, "4:4:4")), b).mean()
                 for b in [_bits(len(photos), 32, seed=s) for s in range(4)]]
        acc[wm.scale] = float(np.mean(reads))
    assert acc[36.0] > 0.62 and acc[36.0] > acc[10.0] + 0.07, acc


def test_dwt_dct_reads_zero_bits_as_one_and_the_svd_variant_does_not():
    """The README's claim (docs/measured-amuse-cpu.md, Table 2): invisible-watermark's dwtDct is biased towards 1,
    the same way in every image, so a majority vote over images cannot remove it; dwtDctSvd is not."""
    from dovlib.data import load_dataset

    imgs = sample_images(load_dataset("skimage-photos").x_train, 16, side=256, seed=0)
    msg = _bits(1, 100, seed=3)[0]
    bits = np.tile(msg, (len(imgs), 1))
    read = {m: ImWatermarker(m, 100, 30).extract(ImWatermarker(m, 100, 30).embed(imgs, bits))
            for m in ("dwtDct", "dwtDctSvd")}
    dct = read["dwtDct"]
    assert (dct[:, msg == 1] == 1).mean() > 0.95 and (dct[:, msg == 0] == 0).mean() < 0.7
    assert ((dct.mean(0) > 0.5) == msg).mean() < 0.9  # the vote keeps the error
    assert (read["dwtDctSvd"] == bits).mean() > 0.95


def test_dwt_dct_marks_only_chroma_so_444_jpeg_keeps_it_better(photos):
    wm = ImWatermarker("dwtDct", 32)
    bits = _bits(len(photos), 32)
    marked = wm.embed(photos, bits)
    acc444 = bit_accuracy(wm.extract(jpeg(marked, 90, "4:4:4")), bits).mean()
    acc420 = bit_accuracy(wm.extract(jpeg(marked, 90, "4:2:0")), bits).mean()
    assert acc444 > acc420
    # the luma (grey level) is almost untouched: the mark lives in the U channel
    grey = lambda x: (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).float()  # noqa: E731
    assert (grey(marked) - grey(photos)).abs().mean() < 1.0


def test_limits_are_refused_with_names(photos):
    with pytest.raises(ValueError, match="message_bits must be an integer in \\[1, 32\\]"):
        ImWatermarker("rivaGan", 40)
    with pytest.raises(ValueError, match="message_bits"):
        ImWatermarker("dwtDct", 2000)
    wm = ImWatermarker("dwtDct", 16)
    with pytest.raises(ValueError, match="65536 pixels"):
        wm.embed(torch.zeros(1, 3, 128, 128, dtype=torch.uint8), _bits(1, 16))
    with pytest.raises(ValueError, match="shape"):
        wm.embed(photos, _bits(len(photos), 8))
    with pytest.raises(ValueError, match="C = 3"):
        wm.embed(photos[:, :1], _bits(len(photos), 16))
    with pytest.raises(ValueError, match="method must be one of"):
        ImWatermarker("lsb")
    with pytest.raises(ValueError, match="scale"):
        ImWatermarker("dwtDct", scale=0)
    with pytest.raises(ValueError, match="hidden="):
        get_watermarker("hidden")


def test_to_min_size_upsamples_small_images_only():
    small = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    assert to_min_size(small).shape[-2:] == (256, 256)
    big = torch.zeros(1, 3, 300, 260, dtype=torch.uint8)
    assert to_min_size(big) is big


def test_to_min_size_is_an_antialiased_bicubic_resize_keeping_the_aspect_ratio():
    import torchvision.transforms.v2.functional as TF

    flat = torch.full((2, 3, 32, 48), 123, dtype=torch.uint8)  # shorter side 32 -> 256: 256 x 384
    out = to_min_size(flat)
    assert out.shape == (2, 3, 256, 384) and out.dtype == torch.uint8 and (out == 123).all()
    # a left-to-right ramp stays a ramp (non-decreasing along every row, the same in every row); side=64 from 20 rows
    ramp = torch.arange(0, 256, 8, dtype=torch.uint8).view(1, 1, 1, 32).expand(2, 3, 20, 32).contiguous()
    up = to_min_size(ramp, side=64)
    assert up.shape == (2, 3, 64, 102)  # round(32 * 64 / 20) = 102
    assert (up[..., 1:].int() - up[..., :-1].int()).min() >= 0 and (up == up[:, :, :1]).all()
    assert up[..., 0].max() <= 8 and up[..., -1].min() >= 240
    assert up.unique().numel() > 90  # interpolated, not nearest-neighbour steps (32 values)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 24, 30), generator=g, dtype=torch.uint8)
    ref = TF.resize(x, [256, 320], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    assert torch.equal(to_min_size(x), ref)
    near = torch.nn.functional.interpolate(x, size=(256, 320), mode="nearest")
    assert not torch.equal(to_min_size(x), near)


def test_hidden_learns_a_short_message_and_round_trips_through_save(tmp_path):
    g = torch.Generator().manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(64, 3, 4, 4, generator=g), size=(16, 16), mode="bilinear")
    images = (base.clamp(0, 1) * 255).round().to(torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=16, encoder_blocks=2, decoder_blocks=2, image_size=16, batch_size=32,
                       adversarial_loss=0, noises=("identity",), lr=3e-3)
    model = train_hidden(images, cfg, steps=150, progress=False, log_every=50)
    bits = _bits(32, 4, seed=1)
    marked = model.embed(images[:32], bits)
    assert marked.dtype == torch.uint8
    assert bit_accuracy(model.extract(marked), bits).mean() > 0.8
    path = model.save(tmp_path / "hidden.pt")
    loaded = HiDDeN.load(path)
    assert loaded.cfg == model.cfg and loaded.message_bits == 4
    np.testing.assert_array_equal(loaded.extract(marked), model.extract(marked))
    # any image size: HiDDeN is fully convolutional
    assert model.extract(marked[:, :, :12, :12]).shape == (32, 4)
    with pytest.raises(ValueError, match="capacity_bits = 4"):
        model.embed(images[:2], _bits(2, 5))


def _noise_stops_at(monkeypatch, n: int):
    """Make HiDDeN training's ``n``-th noise-layer call raise KeyboardInterrupt (an interrupted run); returns the
    function that puts the real noise layer back."""
    import dovlib.imwm as imwm

    real, calls = imwm._noise, []

    def interrupted(*a):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(imwm, "_noise", interrupted)
    return lambda: monkeypatch.setattr(imwm, "_noise", real)


@pytest.mark.parametrize("every", [0, 60.0])
def test_hidden_training_resumes_after_an_interruption(tmp_path, monkeypatch, every):
    """An interrupted run resumes from ``<checkpoint>.partial`` (written when due, or, before the default minute has
    passed, when interrupted) and ends with the weights of an uninterrupted run."""

    g = torch.Generator().manual_seed(0)
    images = (torch.rand(16, 3, 16, 16, generator=g) * 255).round().to(torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=8, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4,
                       noises=("identity", "dropout"))
    straight = train_hidden(images, cfg, steps=6, progress=False, log_every=1)
    ckpt = tmp_path / "hidden.pt"
    restore = _noise_stops_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train_hidden(images, cfg, steps=6, progress=False, log_every=1, checkpoint=ckpt, checkpoint_every=every)
    partial = tmp_path / "hidden.pt.partial"
    assert partial.is_file() and not ckpt.is_file()
    assert torch.load(partial, weights_only=False)["step"] == 3
    restore()
    resumed = train_hidden(images, cfg, steps=6, progress=False, log_every=1, checkpoint=ckpt)
    assert ckpt.is_file() and not partial.is_file()
    assert [h["step"] for h in resumed.history] == list(range(1, 7))
    for (k, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), k
    # a finished model is loaded, not retrained; other settings start afresh
    assert train_hidden(images, cfg, steps=6, progress=False, log_every=1, checkpoint=ckpt).history == resumed.history
    other = train_hidden(255 - images, cfg, steps=6, progress=False, log_every=1, checkpoint=ckpt)  # other images
    assert other.history != resumed.history


def test_hidden_partial_run_from_a_gpu_resumes_on_the_cpu(tmp_path, monkeypatch):
    """A partial run saved on CUDA holds a CUDA noise generator state (16 bytes), which a CPU generator cannot load:
    the run resumes with that stream reseeded and says so."""

    images = (torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).round().to(torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=8, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4,
                       noises=("identity", "dropout"))
    ckpt = tmp_path / "h.pt"
    restore = _noise_stops_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train_hidden(images, cfg, steps=4, progress=False, log_every=1, checkpoint=ckpt, checkpoint_every=0)
    restore()
    partial = tmp_path / "h.pt.partial"
    st = torch.load(partial, weights_only=False)
    from dovlib.report import device_name
    from dovlib.train import reset_training_provenance, training_provenance

    here = device_name("cpu")
    assert (st["device_type"], st["device_name"]) == ("cpu", here)
    torch.save({**st, "noise_gen": torch.tensor([7, 64], dtype=torch.int64).view(torch.uint8), "device_type": "cuda",
                "device_name": "NVIDIA H100 80GB HBM3"}, partial)
    with pytest.warns(UserWarning, match="noise-layer random generator's state, which this cpu generator cannot load"):
        resumed = train_hidden(images, cfg, steps=4, progress=False, log_every=1, checkpoint=ckpt)
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4] and ckpt.is_file() and not partial.is_file()
    # the model, its file and the records name both machines (a model read back says what trained it, not who reads)
    both = {"trained_on": "cpu+cuda", "trained_by": " + ".join(sorted([here, "NVIDIA H100 80GB HBM3"])),
            "training_precision": "fp32"}
    assert resumed.provenance == both and training_provenance() == both
    reset_training_provenance()
    assert HiDDeN.load(ckpt).provenance == both and training_provenance() == both
    reset_training_provenance()
    assert train_hidden(images, cfg, steps=4, progress=False, log_every=1, checkpoint=ckpt).provenance == both
    # files of older code name no device; a net saved by hand says nothing of its training
    state = torch.load(ckpt, weights_only=False)
    del state["provenance"]
    torch.save(state, ckpt)
    reset_training_provenance()
    assert HiDDeN.load(ckpt).provenance == {"trained_on": "unknown", "trained_by": "unknown",
                                            "training_precision": "fp32"} == training_provenance()
    bare = HiDDeN(resumed.net, cfg).save(tmp_path / "bare.pt")
    assert HiDDeN.load(bare).provenance["training_precision"] == "unknown"


def test_hidden_partial_run_of_another_length_starts_afresh(tmp_path, monkeypatch):
    """The image-loss schedule depends on ``steps``: a partial run of 6 steps must not be continued as one of 8."""

    g = torch.Generator().manual_seed(0)
    images = (torch.rand(16, 3, 16, 16, generator=g) * 255).round().to(torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=8, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4,
                       noises=("identity",), encoder_loss_late=5.0, late_start=0.5)  # the weight rises at steps / 2
    ckpt = tmp_path / "hidden.pt"
    restore = _noise_stops_at(monkeypatch, 6)  # the partial holds step 5; step 4 ran late here, not in 8 steps
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning, match="image-loss weight rises"):
        train_hidden(images, cfg, steps=6, progress=False, log_every=1, checkpoint=ckpt, checkpoint_every=0)
    restore()
    with pytest.warns(UserWarning, match="image-loss weight rises"):  # expected: 8 steps learn no message
        longer = train_hidden(images, cfg, steps=8, progress=False, log_every=1, checkpoint=ckpt)
    with pytest.warns(UserWarning, match="image-loss weight rises"):
        fresh = train_hidden(images, cfg, steps=8, progress=False, log_every=1)
    assert [h["step"] for h in longer.history] == list(range(1, 9))
    for (k, a), b in zip(fresh.net.state_dict().items(), longer.net.state_dict().values()):
        assert torch.equal(a, b), k


def test_hidden_precision_bf16_runs_the_networks_in_bf16_and_the_noise_in_fp32(tmp_path, monkeypatch):
    import dovlib.imwm as imwm

    g = torch.Generator().manual_seed(0)
    images = (torch.rand(16, 3, 16, 16, generator=g) * 255).round().to(torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=8, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4,
                       noises=("identity", "jpeg"))
    conv_dtypes, noise_dtypes = set(), set()
    real = imwm._noise

    def noise(kind, enc, cover, p, gen):
        noise_dtypes.add(enc.dtype)
        return real(kind, enc, cover, p, gen)

    monkeypatch.setattr(imwm, "_noise", noise)
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda mod, inp, out: conv_dtypes.add(out.dtype) if isinstance(mod, torch.nn.Conv2d) else None)
    try:
        ckpt = tmp_path / "hidden.pt"
        a = train_hidden(images, cfg, steps=4, progress=False, log_every=1, precision="bf16", checkpoint=ckpt)
        assert conv_dtypes == {torch.bfloat16} and noise_dtypes == {torch.float32}
        assert torch.load(ckpt, weights_only=False)["bf16"] is True
        conv_dtypes.clear()
        a.extract(a.embed(images[:4], _bits(4, 4)))  # after training: fp32
        assert conv_dtypes == {torch.float32}
        conv_dtypes.clear()
        b = train_hidden(images, cfg, steps=4, progress=False, log_every=1, precision="bf16")
        assert all(torch.equal(x, y) for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()))
        conv_dtypes.clear()
        # "auto" on the CPU is fp32, the old behaviour, and does not reuse the bf16 checkpoint
        c = train_hidden(images, cfg, steps=4, progress=False, log_every=1, checkpoint=ckpt)
        assert conv_dtypes == {torch.float32} and torch.load(ckpt, weights_only=False)["bf16"] is False
        assert not all(torch.equal(x, y) for x, y in zip(a.net.state_dict().values(), c.net.state_dict().values()))
    finally:
        hook.remove()
    with pytest.raises(ValueError, match="precision"):
        train_hidden(images, cfg, steps=1, progress=False, precision="fp16")


def test_hidden_config_validates():
    with pytest.raises(ValueError, match="noises must be one of"):
        HiddenConfig(noises=("identity", "gaussian"))
    with pytest.raises(ValueError, match="message_bits"):
        HiddenConfig(message_bits=0)
    with pytest.raises(ValueError, match="decoder_grid"):
        HiddenConfig(decoder_grid=0)
    with pytest.raises(ValueError, match="message_map"):
        HiddenConfig(message_map=-1)


@pytest.mark.parametrize("bad,match", [
    ({"noise_p": (1.2, 1.5)}, r"noise_p must be a number in \(0, 1\]"),  # used to fail mid-training
    ({"noise_p": (0.0, 0.5)}, r"noise_p must be a number in \(0, 1\]"),
    ({"noise_p": (0.6, 0.3)}, r"noise_p must be a range \(low, high\) with low <= high"),
    ({"noise_p": (0.3,)}, r"noise_p must be a range \(low, high\) of two numbers in \(0, 1\]"),
    ({"noises": ()}, r"noises must name at least one of \['identity'"),
    ({"noises": ("identity", "blur")}, r"noises must be one of"),
    # loss weights: a negative adversarial weight used to switch the discriminator off silently
    ({"adversarial_loss": -1}, r"adversarial_loss \(a loss weight\) must be a finite number >= 0; got -1"),
    ({"encoder_loss": -1}, r"encoder_loss \(a loss weight\) must be a finite number >= 0"),
    ({"decoder_loss": float("nan")}, r"decoder_loss \(a loss weight\) must be a finite number >= 0; got nan"),
    ({"decoder_loss": 0}, r"decoder_loss must be > 0"),
    ({"late_bit_acc": 0.9}, r"late_bit_acc=0.9 delays the rise to encoder_loss_late, which is None"),
    ({"batch_size": 0}, r"batch_size must be an integer >= 1; got 0"),
    ({"encoder_blocks": 0}, r"encoder_blocks must be an integer >= 1; got 0"),  # used to build 1 block silently
    ({"decoder_blocks": 0}, r"decoder_blocks must be an integer >= 1; got 0"),
    ({"channels": 0}, r"channels must be an integer >= 1; got 0"),
    ({"lr": 0}, r"lr must be a finite number > 0; got 0"),
    ({"lr": float("nan")}, r"lr must be a finite number > 0; got nan"),
    ({"lr": "1e-3"}, r"lr must be a finite number > 0; got '1e-3'"),
    ({"message_bits": 0}, r"message_bits must be an integer >= 1; got 0"),
    ({"image_size": 4}, r"image_size must be an integer >= 8; got 4"),
])
def test_hidden_config_refuses_bad_settings_at_construction(bad, match):
    with pytest.raises(ValueError, match=match):
        HiddenConfig(**bad)


def test_hidden_config_keeps_valid_settings():
    assert HiddenConfig().noise_p == (0.3, 0.6) and HiddenConfig(noise_p=[1, 1]).noise_p == (1.0, 1.0)
    cfg = HiddenConfig(noises=["identity"], lr=np.float32(1e-3), batch_size=np.int64(4))
    assert cfg.noises == ("identity",)
    for arch in HIDDEN_ARCHS.values():
        HiddenConfig(**arch)


def test_scale_accepts_any_real_number_but_not_a_bool():
    assert ImWatermarker("dwtDct", 16, scale=np.int64(30)).scale == 30.0
    assert ImWatermarker("dwtDct", 16, scale=np.float32(20.5)).scale == 20.5
    for bad in (True, False, "30", 0, 300, 42.5, float("nan")):
        with pytest.raises(ValueError, match=r"scale must be a number in \(0, 42\]; got"):
            ImWatermarker("dwtDct", 16, scale=bad)
    assert ImWatermarker("dwtDctSvd", 16, scale=42).scale == 42.0


@pytest.mark.parametrize("method", ["dwtDct", "dwtDctSvd"])
def test_the_largest_scale_does_not_wrap_saturated_colours(method):
    # invisible-watermark writes the marked U channel into a uint8 image unclipped: above the limit a saturated blue
    # (U = 239) or yellow (U = 17) pixel wraps around (measured: dwtDct from scale 50). At the limit every change
    # stays within what the scale allows.
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 30, (2, 3, 256, 256), generator=g).to(torch.uint8)
    x[0, 2] = 255  # blue
    x[1, :2] = 255  # yellow
    bits = torch.randint(0, 2, (2, 64), generator=g).numpy().astype(np.uint8)
    d = (ImWatermarker(method, 64, scale=MAX_DCT_SCALE, workers=1).embed(x, bits).int() - x.int()).abs()
    assert int(d.max()) < 128  # a wrap moves a channel by about 255


def test_label_names_the_scale_only_where_it_is_used():
    assert ImWatermarker("dwtDct", 16, scale=30).label == "dwtDct (scale 30)"
    assert ImWatermarker("dwtDctSvd", 16, scale=20.5).label == "dwtDctSvd (scale 20.5)"
    assert ImWatermarker("rivaGan", 16, scale=30).label == "rivaGan"  # RivaGAN has no quantisation step


def test_embed_and_extract_refuse_zero_images_clearly():
    cfg = HiddenConfig(message_bits=4, channels=4, encoder_blocks=1, decoder_blocks=1, image_size=16,
                       adversarial_loss=0)
    hidden = HiDDeN(HiddenNet(cfg), cfg)
    for wm, side in ((ImWatermarker("dwtDct", 4, workers=1), 256), (hidden, 16)):
        empty = torch.zeros(0, 3, side, side, dtype=torch.uint8)
        with pytest.raises(ValueError, match=r"images must hold at least one image; got 0"):
            wm.embed(empty, np.zeros((0, 4), np.uint8))
        with pytest.raises(ValueError, match=r"images must hold at least one image; got 0"):
            wm.extract(empty)


def test_hidden_msgmap_network_learns_spatial_bits_and_keeps_any_image_size(tmp_path):
    """The ``msgmap`` variant: the message enters as a learnt map (not a broadcast), the decoder pools onto a grid.
    On the same images, steps and seed it learns an 8-bit message that the paper's network has not yet learnt."""
    g = torch.Generator().manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(64, 3, 4, 4, generator=g), size=(16, 16), mode="bilinear")
    images = (base.clamp(0, 1) * 255).round().to(torch.uint8)
    common = dict(message_bits=8, channels=16, encoder_blocks=2, decoder_blocks=2, image_size=16, batch_size=32,
                  adversarial_loss=0, noises=("identity",))
    bits = _bits(64, 8, seed=1)
    acc = {}
    for arch, kw in HIDDEN_ARCHS.items():
        model = train_hidden(images, HiddenConfig(**common, **kw), steps=120, progress=False, log_every=40)
        acc[arch] = bit_accuracy(model.extract(model.embed(images, bits)), bits).mean()
        if arch == "msgmap":
            assert model.net.msg_map is not None and model.net.dec_linear.in_features == 8 * 16
            assert model.extract(images[:3, :, :9, :11]).shape == (3, 8)  # still any image size
            loaded = HiDDeN.load(model.save(tmp_path / "m.pt"))
            assert loaded.cfg.message_map == 8 and loaded.cfg.decoder_grid == 4
            np.testing.assert_array_equal(loaded.extract(images[:8]), model.extract(images[:8]))
    assert acc["msgmap"] > 0.95 and acc["msgmap"] > acc["zhu2018"] + 0.1, acc


def test_hidden_image_loss_uses_the_papers_minus_one_to_one_scale():
    """Zhu et al. normalise images to [-1, 1]: the image term is 4x the MSE in [0, 1] (without a discriminator the
    logged loss is exactly encoder_loss * 4 * image_mse + decoder_loss * message_mse)."""
    images = (torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=8, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4,
                       adversarial_loss=0, noises=("identity",), encoder_loss=0.7, decoder_loss=1.0)
    h = train_hidden(images, cfg, steps=3, progress=False, log_every=1).history
    for row in h:
        assert row["loss"] == pytest.approx(0.7 * 4 * row["image_mse"] + row["message_mse"], rel=1e-5)
    # with encoder_loss_late the image weight changes after late_start x steps (here: steps 3 and 4 of 4)
    late = HiddenConfig(**{**cfg.__dict__, "encoder_loss_late": 5.0, "late_start": 0.5})
    with pytest.warns(UserWarning, match="message is not learnt yet"):  # 2 steps cannot learn it: said, not hidden
        h = train_hidden(images, late, steps=4, progress=False, log_every=1).history
    for row in h:
        w = 0.7 if row["step"] <= 2 else 5.0
        assert row["loss"] == pytest.approx(w * 4 * row["image_mse"] + row["message_mse"], rel=1e-5), row["step"]
    assert [row["image_weight"] for row in h] == [0.7, 0.7, 5.0, 5.0]


def test_hidden_late_image_weight_waits_for_the_message_and_resumes_identically(tmp_path, monkeypatch):
    """With ``late_bit_acc`` the image weight rises only once the logged training bit accuracy reaches it: never on a
    message that is not learnt (threshold 1.0 on 4 steps), at the first log step after late_start when the threshold
    is met (0.5); an interrupted run makes the same decision as an uninterrupted one."""

    images = (torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=8, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4,
                       adversarial_loss=0, noises=("identity", "dropout"), encoder_loss_late=5.0, late_start=0.25,
                       late_bit_acc=1.0)
    never = train_hidden(images, cfg, steps=4, progress=False, log_every=1).history
    assert [r["image_weight"] for r in never] == [0.7] * 4 and not any(r["late_next"] for r in never)
    easy = HiddenConfig(**{**cfg.__dict__, "late_bit_acc": 0.5, "late_start": 0.5})
    h = train_hidden(images, easy, steps=6, progress=False, log_every=1).history
    first = next(r["step"] for r in h if r["late_next"])
    assert first >= 3 and all(r["image_weight"] == (5.0 if r["step"] > first else 0.7) for r in h)
    ckpt = tmp_path / "h.pt"
    restore = _noise_stops_at(monkeypatch, first + 1)  # stop right after the decision was logged
    with pytest.raises(KeyboardInterrupt):
        train_hidden(images, easy, steps=6, progress=False, log_every=1, checkpoint=ckpt, checkpoint_every=0)
    assert torch.load(tmp_path / "h.pt.partial", weights_only=False)["step"] == first
    restore()
    resumed = train_hidden(images, easy, steps=6, progress=False, log_every=1, checkpoint=ckpt).history
    assert [r["image_weight"] for r in resumed] == [r["image_weight"] for r in h]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in h])
    for bad in ({"encoder_loss_late": -1.0}, {"late_start": 1.5}, {"late_bit_acc": 0.2}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            HiddenConfig(**bad)


def test_train_hidden_refuses_images_and_log_every_it_cannot_use():
    cfg = HiddenConfig(message_bits=4, image_size=16, channels=4, encoder_blocks=1, decoder_blocks=1, batch_size=2)
    floats = torch.rand(4, 3, 16, 16)  # [0, 1] floats used to be divided by 255 again: near-black training images
    with pytest.raises(ValueError, match=r"train_hidden needs uint8 images .*got torch.float32 \(4, 3, 16, 16\)"):
        train_hidden(floats, cfg, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"C = 3 \(or 1.*got torch.uint8 \(4, 4, 16, 16\)"):
        train_hidden(torch.zeros(4, 4, 16, 16, dtype=torch.uint8), cfg, steps=1, progress=False)
    with pytest.raises(ValueError, match="log_every must be an integer >= 1; got 0"):
        train_hidden(torch.zeros(4, 3, 16, 16, dtype=torch.uint8), cfg, steps=1, progress=False, log_every=0)


def test_evaluations_refuse_unknown_attacks_before_any_work(photos):
    from dovlib.amuse import RepeatCodec
    from dovlib.attacks import ATTACKS
    from dovlib.imwm import evaluate_dataset

    wm = ImWatermarker("dwtDctSvd", 8)
    bits = _bits(2, 8)
    for bad, match in ((["jpeg50"], r"attacks must be one of"), ("grid", r"attacks must be a list"),
                       ([3], r"attacks must hold attack names or Attack objects")):
        with pytest.raises(ValueError, match=match):
            evaluate_attacks(wm, photos[:2], bits, attacks=bad)
        with pytest.raises(ValueError, match=match):
            evaluate_dataset(wm, RepeatCodec(8), photos[:2], bits[:1], attacks=bad)
    # Attack objects work in both
    df = evaluate_dataset(wm, RepeatCodec(8), photos[:2], bits[:1], attacks=[ATTACKS["jpeg_90"]])
    assert list(df.attack) == ["none", "jpeg_90"]


def test_evaluate_attacks_reports_no_attack_first(photos):
    wm = ImWatermarker("dwtDctSvd", 16)
    bits = _bits(len(photos), 16)
    marked = wm.embed(photos, bits)
    df = evaluate_attacks(wm, marked, bits, photos, attacks=["jpeg_90", "center_crop_0.5"])
    assert list(df["attack"]) == ["none", "jpeg_90", "center_crop_0.5"]
    assert df.loc[0, "bit_acc"] >= 0.95
    assert df.loc[2, "bit_acc"] < df.loc[0, "bit_acc"]  # a crop shifts the block grid


def test_dataset_watermark_with_amuse_and_baseline_rebuilds_the_message(photos):
    from dovlib.amuse import AmuseCodec, RepeatCodec, random_message
    from dovlib.imwm import evaluate_dataset, sample_images

    images = sample_images(photos, 10, side=256, seed=0)
    assert images.shape == (10, 3, 256, 256)
    message = random_message(40, seed=3)
    assert 0 < message.sum() < len(message)  # both bit values: a reader that answers all 0 (or all 1) fails below
    for codec in (RepeatCodec(40), AmuseCodec(40, 5, 1)):
        wm = ImWatermarker("dwtDctSvd", codec.sub_message_bits)
        df = evaluate_dataset(wm, codec, images, message[None], attacks=["center_crop_0.4"])
        clean = df[df.attack == "none"].iloc[0]
        assert clean.bit_acc == 1.0 and clean.word_acc == 1.0 and not clean.failed
        assert clean.psnr > 30
        assert df[df.attack == "center_crop_0.4"].iloc[0].bit_acc < 1.0


def test_embed_at_size_round_trips_small_images():
    from dovlib.imwm import embed_at_size

    g = torch.Generator().manual_seed(0)
    small = (torch.nn.functional.interpolate(torch.rand(2, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear")
             * 255).round().to(torch.uint8)
    wm = ImWatermarker("dwtDctSvd", 8)
    bits = _bits(2, 8)
    down, up = embed_at_size(wm, small, bits)
    assert down.shape == small.shape and up.shape == (2, 3, 256, 256)
    assert bit_accuracy(wm.extract(up), bits).mean() >= 0.9
    import torchvision.transforms.v2.functional as TF

    # the large image is the marked upsampled input; the small one its bicubic, antialiased downscale
    assert up.dtype == down.dtype == torch.uint8
    assert torch.equal(up, wm.embed(to_min_size(small), bits))
    assert torch.equal(down, TF.resize(up, [32, 32], interpolation=TF.InterpolationMode.BICUBIC, antialias=True))
    # close to the input (measured 42.2 / 43.9 dB) but not the input: about half the pixels changed (0.48 / 0.46),
    # while resizing up and down without a mark changes 7% of them (59.3 / 59.8 dB)
    unmarked = TF.resize(to_min_size(small), [32, 32], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    assert (psnr(small, down) > 38).all() and (psnr(small, down) < 50).all()
    assert ((down != small).float().mean(dim=(1, 2, 3)) > 0.3).all()
    assert ((down != unmarked).float().mean(dim=(1, 2, 3)) > 0.3).all()
    assert (psnr(to_min_size(small), up) > 35).all()  # measured 40.6 / 41.4 dB
    # here the mark survives the round trip: read again after upsampling the small images (measured: every bit)
    assert bit_accuracy(wm.extract(to_min_size(down)), bits).mean() >= 0.875


def test_embed_at_size_in_chunks_gives_the_one_pass_result_and_keeps_only_what_is_asked():
    from dovlib.imwm import embed_at_size

    g = torch.Generator().manual_seed(1)
    small = (torch.rand(5, 3, 32, 32, generator=g) * 255).round().to(torch.uint8)
    wm = ImWatermarker("dwtDctSvd", 8, workers=1)
    bits = _bits(5, 8, seed=4)
    down, up = embed_at_size(wm, small, bits)
    down2, up2 = embed_at_size(wm, small, bits, keep=3, chunk_size=2)  # chunks 2 + 2 + 1; the first 3 kept
    assert torch.equal(down2, down) and up2.shape == (3, 3, 256, 256) and torch.equal(up2, up[:3])
    assert up2.untyped_storage().nbytes() == up2.numel()  # only what is kept, not a view of whole chunks
    one = embed_at_size(wm, small, bits, keep=1, chunk_size=4)[1]
    assert one.shape == (1, 3, 256, 256) and one.untyped_storage().nbytes() == one.numel()
    assert embed_at_size(wm, small, bits, keep=0, chunk_size=2)[1].shape == (0, 3, 256, 256)
    assert torch.equal(embed_at_size(wm, small, bits, keep=9)[1], up)  # more than there are: all
    with pytest.raises(ValueError, match="chunk_size must be an integer"):
        embed_at_size(wm, small, bits, chunk_size=0)
    with pytest.raises(ValueError, match="keep must be an integer"):
        embed_at_size(wm, small, bits, keep=-1)


def test_embed_at_size_marks_large_enough_images_directly(photos):
    from dovlib.imwm import embed_at_size

    wm = ImWatermarker("dwtDctSvd", 8)
    bits = _bits(len(photos), 8, seed=2)
    down, up = embed_at_size(wm, photos, bits)
    assert down is up and torch.equal(up, wm.embed(photos, bits)) and not torch.equal(up, photos)
    down2, up2 = embed_at_size(wm, photos, bits, keep=2, chunk_size=3)
    assert torch.equal(down2, down) and torch.equal(up2, down[:2])


def test_worker_processes_give_the_serial_result(photos):
    """Large calls are spread over worker processes; the marked pixels and the read bits must not change."""
    imgs = photos.repeat(22, 1, 1, 1)[:ImWatermarker.min_parallel]
    bits = _bits(len(imgs), 24, seed=5)
    serial, pooled = ImWatermarker("dwtDct", 24, workers=1), ImWatermarker("dwtDct", 24, workers=2)
    marked = serial.embed(imgs, bits)
    assert torch.equal(pooled.embed(imgs, bits), marked)
    assert np.array_equal(pooled.extract(marked), serial.extract(marked))
    assert bit_accuracy(pooled.extract(marked), bits).mean() > 0.75  # a real read (dwtDct's 0-bit bias: not 1.0)


def test_worker_count_is_checked(monkeypatch):
    from dovlib.imwm import default_workers

    monkeypatch.setenv("DOVLIB_WORKERS", "3")
    assert default_workers() == 3 and ImWatermarker("dwtDct", 8).workers == 3
    monkeypatch.setenv("DOVLIB_WORKERS", "0")
    with pytest.raises(ValueError, match="DOVLIB_WORKERS must be an integer >= 1"):
        default_workers()
    monkeypatch.delenv("DOVLIB_WORKERS")
    assert 1 <= default_workers() <= 8
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        ImWatermarker("dwtDct", 8, workers=0)


def test_worker_processes_work_from_a_script_without_a_main_guard(tmp_path):
    """A user's plain script (no ``if __name__ == "__main__"``) must not be re-run by the workers (multiprocessing's
    spawn would run it again in every worker and fail)."""
    import subprocess
    import sys

    script = tmp_path / "plain.py"
    script.write_text("import numpy as np, torch\n"
                      "from dovlib.imwm import ImWatermarker\n"
                      "print('top level ran', flush=True)\n"
                      "x = torch.randint(0, 256, (64, 3, 256, 256), dtype=torch.uint8)\n"
                      "bits = np.random.default_rng(0).integers(0, 2, (64, 8))\n"
                      "wm = ImWatermarker('dwtDct', 8, workers=2)\n"
                      "print('read', wm.extract(wm.embed(x, bits)).shape)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("top level ran") == 1 and "read (64, 8)" in out.stdout


def test_rivagan_loads_its_model_in_the_workers(photos):
    """The ONNX model is loaded per process; a worker must load it itself (found when first run in a pool)."""
    bits = _bits(len(photos), 32, seed=6)
    serial, pooled = ImWatermarker("rivaGan", 32, workers=1), ImWatermarker("rivaGan", 32, workers=2)
    pooled.min_parallel = 2  # this instance only: a pool for 3 images
    marked = serial.embed(photos, bits)
    assert torch.equal(pooled.embed(photos, bits), marked)
    assert np.array_equal(pooled.extract(marked), serial.extract(marked))


class _LSB(Watermarker):
    """An exact stand-in: bit i in the least significant bit of pixel i of the first row, red channel."""

    name, capacity_bits = "lsb", 64

    def __init__(self, message_bits):
        self.message_bits = message_bits

    def embed(self, images, bits):
        images = self._check_images(images)
        bits = torch.as_tensor(self._check_bits(bits, len(images)))
        out = images.clone()
        out[:, 0, 0, :self.message_bits] = (out[:, 0, 0, :self.message_bits] & 0xFE) | bits
        return out

    def extract(self, images):
        return (images[:, 0, 0, :self.message_bits] & 1).numpy().astype(np.uint8)


def test_embed_and_extract_dataset_rebuild_the_message_and_count_lost_bits():
    from dovlib.amuse import AmuseCodec, RepeatCodec
    from dovlib.imwm import embed_dataset, extract_dataset

    images = torch.randint(0, 256, (20, 3, 8, 64), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    message = _bits(1, 30, seed=1)[0]
    codec = AmuseCodec(30, 5, 1)  # 6-bit chunks + 3 ordering bits = 9 bits per image
    wm = _LSB(codec.sub_message_bits)
    marked, subs, quality = embed_dataset(wm, codec, images, message)
    assert subs.shape == (20, 9) and marked.shape == images.shape
    assert (marked.int() - images.int()).abs().max() <= 1 and 48 < quality["psnr"] < 80
    out = extract_dataset(wm, codec, marked, message, subs)
    assert out == {"sub_bit_acc": 1.0, "bit_acc": 1.0, "word_acc": 1.0, "failed": False}
    assert extract_dataset(wm, codec, images, message)["word_acc"] < 1  # unmarked images do not carry it
    # the 4 images holding chunk 0 only (combination index 0): its 6 bits are lost, counted wrong, flagged failed
    keep = torch.from_numpy(subs[:, -3:] @ np.array([4, 2, 1]) != 0)
    lost = extract_dataset(wm, codec, marked[keep], message)
    assert lost["failed"] and lost["bit_acc"] == pytest.approx(24 / 30) and lost["word_acc"] == 0.0
    # the message is checked, not cast: 0.9 was read as 0, a 1-bit message broadcast against all 30
    for bad, msg in ((np.full(30, 0.9), "only 0/1 bits"), (message[:1], "message_bits = 30 bits; got shape")):
        with pytest.raises(ValueError, match=msg):
            embed_dataset(wm, codec, images, bad)
        with pytest.raises(ValueError, match=msg):
            extract_dataset(wm, codec, marked, bad, subs)
    base = RepeatCodec(30)  # the baseline: the whole message in every image
    marked, subs, _ = embed_dataset(_LSB(30), base, images, message)
    assert (subs == message).all() and extract_dataset(_LSB(30), base, marked, message)["word_acc"] == 1.0


def test_hidden_checkpoints_by_time_not_every_log_step(tmp_path, monkeypatch):
    """By default the training state is written at most once a minute (writing it at every log step slowed a GPU
    run); ``checkpoint_every=0`` writes it at every log step but the last (the finished model is saved instead)."""
    import dovlib.train

    saved = []
    real = dovlib.train._save_atomic
    monkeypatch.setattr(dovlib.train, "_save_atomic",
                        lambda obj, path: (saved.append(Path(path).name), real(obj, path)))
    images = (torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=8, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4,
                       noises=("identity",))
    now = [100.0]  # a frozen clock (a slow machine cannot reach the 60 s interval), moved only by the noise layer
    monkeypatch.setattr(dovlib.train.time, "perf_counter", lambda: now[0])
    train_hidden(images, cfg, steps=5, progress=False, log_every=1, checkpoint=tmp_path / "a.pt")
    assert saved == ["a.pt"]  # only the finished model
    saved.clear()
    train_hidden(images, cfg, steps=5, progress=False, log_every=1, checkpoint=tmp_path / "b.pt", checkpoint_every=0)
    assert saved == ["b.pt.partial"] * 4 + ["b.pt"]
    import dovlib.imwm as imwm

    real_noise = imwm._noise

    def slow_noise(seconds):
        def noise(*a):  # called once per training step
            now[0] += seconds
            return real_noise(*a)
        return noise

    saved.clear()  # 30 s a step: the 60 s default interval has passed at steps 2 and 4
    monkeypatch.setattr(imwm, "_noise", slow_noise(30))
    train_hidden(images, cfg, steps=5, progress=False, log_every=1, checkpoint=tmp_path / "c.pt")
    assert saved == ["c.pt.partial"] * 2 + ["c.pt"]
    saved.clear()
    monkeypatch.setattr(imwm, "_noise", slow_noise(61))  # 61 s a step: every log step but the last
    train_hidden(images, cfg, steps=5, progress=False, log_every=1, checkpoint=tmp_path / "d.pt")
    assert saved == ["d.pt.partial"] * 4 + ["d.pt"]


def _tiny_hidden(seed=0, message_bits=4):
    from dovlib.imwm import HiddenNet

    cfg = HiddenConfig(message_bits=message_bits, channels=8, encoder_blocks=1, decoder_blocks=1, image_size=16,
                       adversarial_loss=0, noises=("identity",))
    torch.manual_seed(seed)
    net = HiddenNet(cfg)
    with torch.no_grad():  # a non-zero residual, so embedding changes the image (the init is the identity)
        net.enc_final.weight.normal_(0, 0.1)
    return HiDDeN(net, cfg)


def test_get_watermarker_hidden_takes_a_model_or_its_saved_path(tmp_path):
    model = _tiny_hidden(seed=3)
    assert get_watermarker("hidden", hidden=model) is model
    assert get_watermarker("hidden", 4, hidden=model) is model  # the same length is fine
    path = model.save(tmp_path / "h.pt")
    loaded = get_watermarker("hidden", hidden=path)
    assert isinstance(loaded, HiDDeN) and loaded is not model and loaded.cfg == model.cfg
    assert loaded.message_bits == loaded.capacity_bits == 4
    for (k, a), b in zip(model.net.state_dict().items(), loaded.net.state_dict().values()):
        assert torch.equal(a, b), k
    images = torch.randint(0, 256, (3, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    bits = _bits(3, 4, seed=4)
    assert torch.equal(loaded.embed(images, bits), model.embed(images, bits))
    assert not torch.equal(model.embed(images, bits), images)
    np.testing.assert_array_equal(get_watermarker("hidden", hidden=str(path)).extract(images), model.extract(images))
    with pytest.raises(ValueError, match="message_bits must equal the trained HiDDeN's 4; got 5"):
        get_watermarker("hidden", 5, hidden=model)
    with pytest.raises(ValueError, match="message_bits must equal the trained HiDDeN's 4; got 3"):
        get_watermarker("hidden", 3, hidden=path)
    with pytest.raises(ValueError, match="method must be one of"):
        get_watermarker("lsb")
    wm = get_watermarker("dwtDctSvd", 16, scale=20, workers=1)
    assert type(wm) is ImWatermarker and (wm.method, wm.message_bits, wm.scale, wm.workers) == ("dwtDctSvd", 16,
                                                                                                 20.0, 1)


def test_describe_names_each_watermarker_and_its_settings():
    from dataclasses import asdict

    assert _LSB(9).describe() == {"name": "lsb", "capacity_bits": 64, "message_bits": 9}
    assert ImWatermarker("dwtDct", 16, scale=20).describe() == {"name": "dwtDct", "capacity_bits": 1024,
                                                                "message_bits": 16, "scale": 20.0}
    assert ImWatermarker("dwtDctSvd").describe() == {"name": "dwtDctSvd", "capacity_bits": 1024,
                                                     "message_bits": 1024, "scale": 36.0}
    assert ImWatermarker("rivaGan", 20).describe() == {"name": "rivaGan", "capacity_bits": 32, "message_bits": 20,
                                                       "scale": None}
    model = _tiny_hidden(message_bits=6)
    d = model.describe()
    settings = {k: v for k, v in asdict(model.cfg).items() if k != "message_bits"}
    assert d == {"name": "hidden", "capacity_bits": 6, "message_bits": 6, **settings}
    assert (d["channels"], d["encoder_blocks"], d["image_size"], d["noises"], d["adversarial_loss"]) == (
        8, 1, 16, ("identity",), 0)


def test_sample_images_draws_distinct_images_where_the_pool_allows():

    pool = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 3, 32, 32).contiguous()  # image i is i
    for side in (32, 16, 64):  # whole images, crops, upsampled
        out = sample_images(pool, 20, side=side, seed=0)
        assert out.shape == (20, 3, side, side) and out.dtype == torch.uint8
        assert sorted(out[:, 0, 0, 0].tolist()) == list(range(20))  # every image once (was 13 distinct at 32)
    more = sample_images(pool, 50, side=32, seed=0)  # more than the pool: with replacement
    assert len(more) == 50 and set(more[:, 0, 0, 0].tolist()) <= set(range(20))
    assert torch.equal(sample_images(pool, 20, side=16, seed=3), sample_images(pool, 20, side=16, seed=3))
    # a non-square pool under the side keeps its aspect: upsampled by its shorter side, the middle cut out (a
    # centred square stays a square; resizing straight to side x side made it a 2:1 rectangle)
    wide = torch.zeros(2, 3, 20, 40, dtype=torch.uint8)
    wide[..., 5:15, 15:25] = 255  # a 10x10 square in the middle
    out = sample_images(wide, 2, side=32, seed=0)
    rows, cols = (out[0, 0] > 127).any(1).sum().item(), (out[0, 0] > 127).any(0).sum().item()
    assert out.shape == (2, 3, 32, 32) and abs(rows - cols) <= 1 and 15 <= rows <= 17


class _Recording(_LSB):
    """The LSB stand-in that records every batch it reads; ``any_size`` per instance."""

    def __init__(self, message_bits, any_size=True):
        super().__init__(message_bits)
        self.any_size, self.read = any_size, []

    def extract(self, images):
        self.read.append(images.clone())
        return super().extract(images)


def test_evaluate_attacks_scores_bit_and_word_accuracy_of_each_attacked_batch():
    from dovlib.attacks import apply_attack
    from dovlib.metrics import word_accuracy

    images = torch.randint(0, 256, (12, 3, 64, 64), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    bits = _bits(12, 8, seed=2)
    wm = _LSB(8)
    marked = wm.embed(images, bits)
    names = ["brightness_1.5", "hidden_dropout_0.55", "jpeg_90", "hidden_cropout_0.3", "resize_0.5"]
    df = evaluate_attacks(wm, marked, bits, images, attacks=names, seed=7)
    assert list(df.attack) == ["none", *names]
    for name in ["none", *names]:  # each attack's own stream under seed 7
        x = marked if name == "none" else apply_attack(name, marked, images, restore_size=False,
                                                       generator=attack_generator(7, name))
        dec = wm.extract(x)
        row = df[df.attack == name].iloc[0]
        assert row.bit_acc == float(bit_accuracy(dec, bits).mean()), name
        assert row.word_acc == float(word_accuracy(dec, bits).mean()), name
    assert (df.bit_acc > df.word_acc).any() and df.loc[0, "bit_acc"] == df.loc[0, "word_acc"] == 1.0


def test_evaluate_attacks_restores_the_size_only_for_fixed_layout_watermarkers():
    images = torch.randint(0, 256, (2, 3, 64, 64), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    bits = _bits(2, 8, seed=3)
    for any_size, side in ((True, 45), (False, 64)):  # resize_0.5: 64 * sqrt(0.5) = 45.25
        wm = _Recording(8, any_size=any_size)
        evaluate_attacks(wm, wm.embed(images, bits), bits, images, attacks=["resize_0.5"])
        assert [tuple(x.shape[-2:]) for x in wm.read] == [(64, 64), (side, side)], any_size


class _Inverting(_Recording):
    """Marks by inverting every pixel (255 - x: every marked pixel differs from the clean one)."""

    def embed(self, images, bits):
        self._check_bits(bits, len(self._check_images(images)))
        return 255 - images


def test_evaluate_dataset_mixes_hidden_dropout_and_cropout_with_the_clean_images():
    from dovlib.amuse import RepeatCodec
    from dovlib.imwm import evaluate_dataset

    images = torch.randint(0, 256, (4, 3, 32, 32), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    wm = _Inverting(8)
    evaluate_dataset(wm, RepeatCodec(8), images, _bits(1, 8), attacks=["hidden_dropout_0.3", "hidden_cropout_0.3"])
    none, dropped, cropped = wm.read
    assert torch.equal(none, 255 - images)
    for x, kept in ((dropped, 0.3), (cropped, 0.3)):
        clean, marked = (x == images).all(1), (x == 255 - images).all(1)
        assert (clean | marked).all()  # every pixel from one of the two
        assert abs(marked.float().mean().item() - kept) < 0.08, kept  # the share p kept from the marked images


def test_sample_images_flips_some_crops_horizontally():

    pool = torch.randint(0, 256, (12, 3, 40, 40), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    crops = pool.unfold(2, 32, 1).unfold(3, 32, 1)  # (12, 3, 9, 9, 32, 32): every 32x32 crop

    def is_crop(img):
        return bool((crops == img[None, :, None, None]).flatten(-2).all(-1).all(1).any())

    for n in (12, 30):  # distinct images, and with replacement
        out = sample_images(pool, n, side=32, seed=0)
        plain = [is_crop(img) for img in out]
        flipped = [is_crop(img.flip(-1)) for img in out]
        assert all(a or b for a, b in zip(plain, flipped)), n
        assert 0 < sum(flipped) < n and 0 < sum(plain) < n, (n, sum(flipped))


def test_hidden_training_draws_noise_p_across_its_range(monkeypatch):
    import dovlib.imwm as imwm

    seen, real = [], imwm._noise

    def noise(kind, enc, cover, p, gen):
        seen.append((kind, p))
        return real(kind, enc, cover, p, gen)

    monkeypatch.setattr(imwm, "_noise", noise)
    images = (torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=4, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=2,
                       adversarial_loss=0, noises=("dropout",), noise_p=(0.3, 0.6))
    train_hidden(images, cfg, steps=10, progress=False, log_every=10)
    ps = [p for _, p in seen]
    assert len(ps) == 10 and {k for k, _ in seen} == {"dropout"}
    assert all(0.3 <= p <= 0.6 for p in ps) and len(set(ps)) == 10
    assert min(ps) < 0.4 and max(ps) > 0.5  # spread over the range, not one end of it


def test_map_spreads_large_calls_over_worker_processes_in_order():
    import os

    wm = ImWatermarker("dwtDct", 8, workers=2)
    wm.min_parallel = 6  # this instance only

    def tag(prefix, xs, ys):  # by value to the workers (a local function)
        import os as _os
        return [(prefix, x, y, _os.getpid()) for x, y in zip(xs, ys)]

    xs, ys = list(range(8)), list(range(10, 18))
    pooled = wm._map(tag, "a", per_image=[xs, ys])
    serial = tag("a", xs, ys)
    assert [r[:3] for r in pooled] == [r[:3] for r in serial]  # the serial result, in order
    assert {r[3] for r in pooled} - {os.getpid()}, "no chunk ran in a worker process"
    small = wm._map(tag, "b", per_image=[xs[:5], ys[:5]])  # below min_parallel: in this process
    assert {r[3] for r in small} == {os.getpid()} and [r[:3] for r in small] == [r[:3] for r in tag("b", xs, ys)][:5]


def test_hidden_message_loss_is_the_papers_mse_of_zero_one_bits(monkeypatch):
    """Zhu et al. take the MSE of {0, 1} messages; dovlib's bits are +-1, whose MSE is 4x as heavy and would weigh the
    message four times the paper's decoder_loss. A decoder that reads 0 (undecided) for every bit scores 0.25."""
    from dovlib.imwm import HiddenNet, _message_loss

    msg = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    assert _message_loss(torch.zeros(1, 4), msg).item() == pytest.approx(0.25)
    assert _message_loss(msg, msg).item() == 0 and _message_loss(-msg, msg).item() == pytest.approx(1.0)
    real_decode = HiddenNet.decode
    monkeypatch.setattr(HiddenNet, "decode", lambda self, x: real_decode(self, x) * 0)  # undecided, keeps the graph
    images = (torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=8, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4,
                       adversarial_loss=0, noises=("identity",))
    h = train_hidden(images, cfg, steps=2, progress=False, log_every=1).history
    assert [row["message_mse"] for row in h] == pytest.approx([0.25, 0.25])
    assert HIDDEN_ARCHS["msgmap"]["decoder_loss"] == 4.0  # the balance msgmap was measured with (docs)
    assert "decoder_loss" not in HIDDEN_ARCHS["zhu2018"]  # the paper's 1


def test_train_hidden_retrains_a_checkpoint_of_the_old_loss_and_keeps_a_saved_model(tmp_path):
    images = (torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=8, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4,
                       adversarial_loss=0, noises=("identity",))
    path = tmp_path / "h.pt"
    first = train_hidden(images, cfg, steps=2, progress=False, checkpoint=path)
    assert torch.load(path, weights_only=False)["loss_version"] == HIDDEN_LOSS_VERSION != 1
    again = train_hidden(images, cfg, steps=2, progress=False, checkpoint=path)
    assert again.history == first.history  # reused
    state = torch.load(path, weights_only=False)
    state["loss_version"] = 1  # trained with the +-1 message MSE: not the model asked for
    state["history"] = [{"marker": True}]
    torch.save(state, path)
    assert train_hidden(images, cfg, steps=2, progress=False, checkpoint=path).history != [{"marker": True}]
    saved = _tiny_hidden().save(tmp_path / "mine.pt")  # a model saved by hand: not overwritten by a training run
    before = saved.read_bytes()
    with pytest.raises(ValueError, match=r"saved by HiDDeN.save, without the training run .* train_hidden would "
                                         r"overwrite it"):
        train_hidden(images, cfg, steps=2, progress=False, checkpoint=saved)
    assert saved.read_bytes() == before


def test_hidden_config_keeps_the_checked_integers_and_refuses_bad_late_settings():
    cfg = HiddenConfig(message_bits="4", channels=16.0, image_size="16", batch_size=np.int64(2))
    assert (cfg.message_bits, cfg.channels, cfg.image_size, cfg.batch_size) == (4, 16, 16, 2)
    assert all(type(v) is int for v in (cfg.message_bits, cfg.channels, cfg.image_size, cfg.batch_size))
    for bad, match in [({"encoder_loss_late": float("inf")}, "encoder_loss_late must be a finite number >= 0"),
                       ({"encoder_loss_late": True}, "encoder_loss_late must be a finite number >= 0"),
                       ({"encoder_loss_late": "5"}, "encoder_loss_late must be a finite number >= 0"),
                       ({"late_start": "0.5"}, r"late_start must be a number in \[0, 1\]"),
                       ({"encoder_loss_late": 5.0, "late_bit_acc": True}, r"late_bit_acc must be a number in "
                                                                          r"\[0.5, 1\]")]:
        with pytest.raises(ValueError, match=match):
            HiddenConfig(**bad)


def test_hidden_embed_extract_and_sample_images_refuse_sizes_of_zero(photos):
    model = _tiny_hidden()
    x = photos[:1, :, :16, :16].contiguous()
    for bs in (0, -1):
        with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1"):
            model.embed(x, _bits(1, 4), batch_size=bs)
        with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1"):
            model.extract(x, batch_size=bs)
    with pytest.raises(ValueError, match=r"side must be an integer >= 1; got 0"):
        sample_images(photos, 2, side=0)


def test_dwt_dct_marks_the_blue_difference_channel_of_rgb_images(photos):
    """invisible-watermark works on OpenCV's BGR order and marks U (blue minus luma): on RGB tensors the change must
    land mostly in blue. Fed RGB as if it were BGR, the mark would land in red (measured: mean |change| R/G/B
    0.11 / 0.69 / 2.54 in the right order, 2.71 / 0.72 / 0.12 swapped)."""
    wm = ImWatermarker("dwtDct", 32)
    marked = wm.embed(photos, _bits(len(photos), 32))
    change = (marked.float() - photos.float()).abs().mean(dim=(0, 2, 3))
    assert change[2] > 2 * change[0] and change[2] > 2 * change[1]


def test_rivagan_round_trips_a_short_message_padded_to_its_32_bits(photos):
    wm = ImWatermarker("rivaGan", 20)
    bits = _bits(len(photos), 20, seed=4)
    marked = wm.embed(photos, bits)
    read = wm.extract(marked)
    assert read.shape == (len(photos), 20)
    assert bit_accuracy(read, bits).mean() >= 0.95 and psnr(photos, marked).mean() > 35


def test_an_attacks_row_does_not_depend_on_the_attacks_beside_it():
    """All attacks used to draw from one generator: dropout after cropout got other masks than dropout alone."""
    from dovlib.amuse import RepeatCodec

    g = torch.Generator().manual_seed(0)
    cover = torch.randint(0, 256, (16, 3, 8, 64), generator=g, dtype=torch.uint8)
    wm, bits = _LSB(64), _bits(16, 64, seed=2)
    marked = wm.embed(cover, bits)
    alone = evaluate_attacks(wm, marked, bits, cover, attacks=["hidden_dropout_0.3"], seed=0)
    beside = evaluate_attacks(wm, marked, bits, cover, attacks=["hidden_cropout_0.3", "hidden_dropout_0.3"], seed=0)
    assert alone.iloc[1].equals(beside.iloc[2])
    assert 0.55 < alone.loc[1, "bit_acc"] < 0.75  # ~30% of pixels kept marked, a random half of the rest right
    other = evaluate_attacks(wm, marked, bits, cover, attacks=["hidden_dropout_0.3"], seed=1)
    assert other.loc[1, "bit_acc"] != alone.loc[1, "bit_acc"]  # the seed still moves it
    message = _bits(2, 16, seed=3)
    one = evaluate_dataset(_LSB(16), RepeatCodec(16), cover, message, attacks=["hidden_dropout_0.55"], seed=0)
    two = evaluate_dataset(_LSB(16), RepeatCodec(16), cover, message,
                           attacks=["hidden_crop_0.55", "hidden_dropout_0.55"], seed=0)
    pd_cols = ["message", "sub_bit_acc", "bit_acc"]
    assert one[one.attack != "none"][pd_cols].values.tolist() == two[two.attack == "hidden_dropout_0.55"][
        pd_cols].values.tolist()
    assert torch.equal(torch.rand(4, generator=attack_generator(0, "x", 1)),
                       torch.rand(4, generator=attack_generator(0, "x", 1)))
    assert not torch.equal(torch.rand(4, generator=attack_generator(0, "x", 1)),
                           torch.rand(4, generator=attack_generator(0, "x", 2)))
    with pytest.raises(ValueError, match="seed must be"):
        attack_generator(-1, "x")


def test_sample_images_refuses_channel_last_float_and_empty_pools():
    pool = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"C = 1 \(grey\) or 3 \(RGB\); got shape \(4, 32, 32, 3\) \(channel-last"):
        sample_images(pool.permute(0, 2, 3, 1), 2, side=16)
    for bad, got in ((pool.float(), "torch.float32"), (pool[:0], r"\(0, 3, 32, 32\)"), (pool[0], r"\(3, 32, 32\)")):
        with pytest.raises(ValueError, match=rf"images must be a non-empty uint8 tensor \(N, C, H, W\); got .*{got}"):
            sample_images(bad, 2, side=16)
    with pytest.raises(ValueError, match=r"images must be \(N, C, H, W\) with C = 1"):
        sample_images(torch.zeros(4, 4, 32, 32, dtype=torch.uint8), 2, side=16)
    assert sample_images(pool[:, :1], 2, side=16).shape == (2, 3, 16, 16)  # grey: made RGB


def test_get_watermarker_reads_message_bits_as_papermill_passes_them():
    model = _tiny_hidden(message_bits=6)
    assert get_watermarker("hidden", "6", hidden=model) is model
    assert get_watermarker("hidden", 6.0, hidden=model) is model
    with pytest.raises(ValueError, match="message_bits must equal the trained HiDDeN's 6; got 5"):
        get_watermarker("hidden", "5", hidden=model)
    with pytest.raises((TypeError, ValueError), match="message_bits must be an integer >= 1; got 'six'"):
        get_watermarker("hidden", "six", hidden=model)


def test_embed_at_size_takes_one_images_1d_message_in_any_chunk_size():
    g = torch.Generator().manual_seed(1)
    small = (torch.rand(1, 3, 32, 32, generator=g) * 255).round().to(torch.uint8)
    wm = ImWatermarker("dwtDctSvd", 6, workers=1)
    bits = _bits(1, 6, seed=2)[0]
    down, up = embed_at_size(wm, small, bits)
    down4, up4 = embed_at_size(wm, small, bits, chunk_size=4)  # used to slice the 6 bits to 4
    assert torch.equal(down, down4) and torch.equal(up, up4)
    np.testing.assert_array_equal(wm.extract(up), bits[None])


def test_evaluate_dataset_gives_each_message_its_own_attack_stream():
    """Each (message, attack) draws from its own stream: the same message marked twice is dropped out differently
    the second time (a stream per attack alone would repeat the first message's masks)."""
    from dovlib.amuse import RepeatCodec
    from dovlib.attacks import apply_attack

    images = torch.randint(0, 256, (4, 3, 32, 32), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    wm = _Inverting(8)
    evaluate_dataset(wm, RepeatCodec(8), images, np.vstack([_bits(1, 8)] * 2), attacks=["hidden_dropout_0.55"], seed=5)
    _, first, _, second = wm.read
    assert not torch.equal(first, second)
    for i, x in enumerate((first, second)):
        assert torch.equal(x, apply_attack("hidden_dropout_0.55", 255 - images, images, restore_size=False,
                                           generator=attack_generator(5, "hidden_dropout_0.55", i)))


def test_sample_images_refuses_seeds_outside_the_checked_range():
    pool = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    for bad in (-1, 2 ** 31):  # torch's manual_seed would take both without naming the parameter
        with pytest.raises(ValueError, match="seed must be an integer in"):
            sample_images(pool, 2, side=16, seed=bad)


def test_too_many_message_bits_name_the_watermarkers_capacity():
    with pytest.raises(ValueError, match=r"rivaGan carries at most capacity_bits = 32 bits per image"):
        ImWatermarker("rivaGan", 40)


def test_hidden_config_keeps_plain_floats_and_the_file_loads_safely(tmp_path):
    """numpy scalars passed the checks and were saved as numpy objects, which only an unsafe load (weights_only=False,
    able to run code from the file) could read; HiDDeN.load now reads with weights_only=True."""
    cfg = HiddenConfig(message_bits=4, channels=4, encoder_blocks=1, decoder_blocks=1, image_size=16,
                       lr=np.float32(1e-3), adversarial_loss=np.float64(0), noise_p=(np.float32(0.5), 1))
    assert type(cfg.lr) is float and type(cfg.adversarial_loss) is float and cfg.lr == pytest.approx(1e-3)
    assert all(type(p) is float for p in cfg.noise_p)
    model = HiDDeN(HiddenNet(cfg), cfg, history=[{"step": 1, "bit_acc": 0.5}])
    path = model.save(tmp_path / "h.pt")
    assert set(torch.load(path, weights_only=True)) >= {"config", "state_dict", "history"}
    loaded = HiDDeN.load(path, device="auto")  # "auto" as train_hidden takes it (torch.device refused it)
    assert loaded.cfg == cfg and loaded.history == model.history and loaded.device.type in ("cpu", "cuda")


def test_hidden_load_refuses_files_that_need_code_to_load(tmp_path, check_planted_code_refused):
    cfg = HiddenConfig(message_bits=4, channels=4, encoder_blocks=1, decoder_blocks=1, image_size=16)
    state = HiDDeN(HiddenNet(cfg), cfg)._state()
    check_planted_code_refused(state, HiDDeN.load, "a saved HiDDeN",
                               "HiDDeN.load reads files written by HiDDeN.save or train_hidden")
    torch.save({"net": state["state_dict"], "step": 3}, tmp_path / "h.pt.partial")  # train_hidden's resumable state
    with pytest.raises(ValueError, match=r"a train_hidden \.partial"):
        HiDDeN.load(tmp_path / "h.pt.partial")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a saved HiDDeN"):
        HiDDeN.load(tmp_path / "other.pt")


@pytest.mark.parametrize("bad, match", [
    (dict(seed=1.5), r"seed must be an integer in \[0, 2147483647\]; got 1.5"),
    (dict(seed=-1), r"seed must be an integer in \[0, 2147483647\]; got -1"),
    (dict(seed=2 ** 64), r"seed must be an integer in \[0, 2147483647\]"),
    (dict(checkpoint_every="60"), r"checkpoint_every must be a number of seconds >= 0"),
    (dict(checkpoint_every=float("nan")), r"checkpoint_every must be a number of seconds >= 0"),
    (dict(checkpoint_every=-1), r"checkpoint_every must be a number of seconds >= 0"),
])
def test_train_hidden_refuses_a_bad_seed_or_checkpoint_every_by_name(bad, match, monkeypatch):
    from dovlib import imwm

    monkeypatch.setattr(imwm, "HiddenNet", lambda *a, **k: pytest.fail("trained before the check"))
    with pytest.raises(ValueError, match=match):
        train_hidden(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), HiddenConfig(message_bits=4, image_size=16),
                     steps=2, progress=False, **bad)


def test_each_noise_layer_is_the_attack_it_names():
    """_noise is what training applies per mini-batch: each kind must be the attack of its name (with the same
    generator), never the encoded image unchanged (a mutant returning ``enc`` for cropout/crop/jpeg passed every
    training test)."""
    from dovlib import attacks
    from dovlib.imwm import _noise

    g = torch.Generator().manual_seed(0)
    enc, cover = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    for kind, expect in [("dropout", lambda gen: attacks.dropout(enc, cover, 0.5, gen)),
                         ("cropout", lambda gen: attacks.cropout(enc, cover, 0.5, gen)),
                         ("crop", lambda gen: attacks.crop(enc, 0.5, gen)),
                         ("jpeg", lambda gen: attacks.jpeg_mask(enc))]:
        got = _noise(kind, enc, cover, 0.5, torch.Generator().manual_seed(3))
        want = expect(torch.Generator().manual_seed(3))
        assert got.shape == want.shape and torch.equal(got, want), kind
        assert got.shape != enc.shape or not torch.equal(got, enc), kind  # the layer changed something
    assert torch.equal(_noise("identity", enc, cover, 0.5, g), enc)


@pytest.mark.parametrize("kind", ["dropout", "cropout", "crop", "jpeg"])
def test_training_applies_the_configured_noise_layer(kind, monkeypatch):
    from dovlib import imwm

    seen = []
    real = imwm._noise
    monkeypatch.setattr(imwm, "_noise", lambda k, *a: seen.append(k) or real(k, *a))
    cfg = HiddenConfig(message_bits=4, channels=4, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4,
                       adversarial_loss=0, noises=(kind,))
    train_hidden(torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8), cfg, steps=3, progress=False, log_every=1)
    assert seen == [kind] * 3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_jpeg_mask_takes_low_precision_images_and_keeps_their_dtype(dtype):
    from dovlib.attacks import jpeg_mask

    x = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    out = jpeg_mask(x.to(dtype))  # bf16/fp16: linalg.inv raised "Low precision dtypes not supported"
    assert out.dtype == dtype and out.shape == x.shape
    tol = 1e-12 if dtype == torch.float64 else 2e-2
    assert torch.allclose(out.double(), jpeg_mask(x.double()), atol=tol)


def test_hidden_checkpoints_key_log_every_only_with_late_bit_acc(tmp_path, monkeypatch):
    """With ``late_bit_acc`` (msgmap) the rise of the image weight is decided at the log steps, so ``log_every``
    changes the weights: a finished or partial checkpoint of another log_every is retrained, not reused or resumed.
    Without it log_every only thins the history, and the checkpoint is reused."""

    def weights(m):
        return torch.cat([p.flatten() for p in m.net.state_dict().values() if p.is_floating_point()])

    images = torch.randint(0, 256, (16, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    cfg = HiddenConfig(message_bits=4, encoder_blocks=1, decoder_blocks=1, channels=4, image_size=16, batch_size=4,
                       **{**HIDDEN_ARCHS["msgmap"], "late_bit_acc": 0.5, "late_start": 0.0})
    kw = dict(steps=12, seed=0, progress=False)
    ckpt = tmp_path / "hidden.pt"
    a = train_hidden(images, cfg, log_every=12, checkpoint=ckpt, **kw)
    b = train_hidden(images, cfg, log_every=2, checkpoint=ckpt, **kw)
    fresh = train_hidden(images, cfg, log_every=2, **kw)
    assert len(a.history) == 1 and len(b.history) == 6  # trained again, not a's
    assert torch.equal(weights(b), weights(fresh)) and not torch.equal(weights(a), weights(b))
    assert torch.equal(weights(train_hidden(images, cfg, log_every=2, checkpoint=ckpt, **kw)), weights(b))  # reused
    state = torch.load(ckpt, weights_only=False)
    del state["log_every"]  # a finished checkpoint of older code (notebook 08's log_every follows its keyed steps)
    torch.save(state, ckpt)
    assert len(train_hidden(images, cfg, log_every=12, checkpoint=ckpt, **kw).history) == 6  # reused
    # a partial run of another log_every is not resumed either
    part = tmp_path / "p.pt"
    restore = _noise_stops_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        train_hidden(images, cfg, log_every=1, checkpoint=part, checkpoint_every=0, **kw)
    restore()
    assert torch.load(tmp_path / "p.pt.partial", weights_only=False)["step"] == 4
    resumed = train_hidden(images, cfg, log_every=2, checkpoint=part, **kw)
    assert torch.equal(weights(resumed), weights(fresh)) and resumed.history == [
        {**h, "seconds": r["seconds"]} for h, r in zip(fresh.history, resumed.history)]
    # without late_bit_acc log_every does not change the weights: the checkpoint is reused
    plain = HiddenConfig(**{**cfg.__dict__, "late_bit_acc": None})
    p12 = train_hidden(images, plain, log_every=12, checkpoint=tmp_path / "plain.pt", **kw)
    p2 = train_hidden(images, plain, log_every=2, checkpoint=tmp_path / "plain.pt", **kw)
    assert len(p2.history) == 1 and torch.equal(weights(p12), weights(p2))


class _Unmarked(_LSB):
    """Embeds nothing: the images come back as they went in."""

    def embed(self, images, bits):
        self._check_bits(bits, len(self._check_images(images)))
        return images.clone()


def test_resize_round_trip_is_embed_at_size_without_a_mark():
    """Notebook 10's clean_resampled set: the same upsampling and resizing back as embed_at_size, no mark, so the
    marked sets are compared with images that went through the same blur."""
    from dovlib.imwm import resize_round_trip

    g = torch.Generator().manual_seed(3)
    small = (torch.rand(5, 3, 32, 32, generator=g) * 255).round().to(torch.uint8)
    down, _ = embed_at_size(_Unmarked(8), small, _bits(5, 8))
    out = resize_round_trip(small)
    assert out.dtype == torch.uint8 and out.shape == small.shape and torch.equal(out, down)
    assert not torch.equal(out, small)  # the round trip changes pixels on its own
    assert torch.equal(resize_round_trip(small, chunk_size=2), out)  # chunks 2 + 2 + 1
    assert torch.equal(resize_round_trip(small, side=64), embed_at_size(_Unmarked(8), small, _bits(5, 8), side=64)[0])
    big = torch.randint(0, 256, (2, 3, 256, 300), generator=g, dtype=torch.uint8)
    assert torch.equal(resize_round_trip(big), big)  # large enough: embedded at its own size, nothing resized
    assert resize_round_trip(small[:0]).shape == (0, 3, 32, 32)
    with pytest.raises(ValueError, match="chunk_size must be an integer"):
        resize_round_trip(small, chunk_size=0)


def test_hidden_config_keeps_late_settings_and_noise_names_plain(tmp_path):
    """numpy scalars and strings (e.g. from a numpy array of settings) become plain floats and str: the late schedule's
    settings and the noise names too, so the saved settings load with weights_only=True."""
    cfg = HiddenConfig(message_bits=4, channels=4, encoder_blocks=1, decoder_blocks=1, image_size=16,
                       encoder_loss_late=np.float32(2.0), late_start=np.float64(0.5), late_bit_acc=np.float32(0.75),
                       noises=list(np.array(["identity", "dropout"])))
    assert all(type(getattr(cfg, k)) is float for k in ("encoder_loss_late", "late_start", "late_bit_acc"))
    assert cfg.noises == ("identity", "dropout") and all(type(n) is str for n in cfg.noises)
    path = HiDDeN(HiddenNet(cfg), cfg).save(tmp_path / "h.pt")
    assert HiDDeN.load(path).cfg == cfg


def test_hidden_load_names_a_real_partial_run_and_files_that_are_not_dicts(tmp_path, monkeypatch):
    """train_hidden's .partial holds the settings ("config") but no "state_dict": it is named as a partial run, not
    read as a model; a file holding a list is not a saved HiDDeN."""
    images = torch.randint(0, 256, (8, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=4, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4)
    restore = _noise_stops_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train_hidden(images, cfg, steps=4, progress=False, log_every=1, checkpoint=tmp_path / "h.pt",
                     checkpoint_every=0)
    restore()
    partial = tmp_path / "h.pt.partial"
    assert "config" in torch.load(partial, weights_only=False)
    with pytest.raises(ValueError, match=r"a train_hidden \.partial"):
        HiDDeN.load(partial)
    torch.save([{"config": 1}], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a saved HiDDeN"):
        HiDDeN.load(tmp_path / "list.pt")


def test_hidden_partial_runs_resume_when_log_every_allows(tmp_path, monkeypatch):
    """A partial run records log_every: with late_bit_acc one of the same log_every is resumed (only the steps left
    are trained), and without late_bit_acc one of another log_every is resumed too (log_every only thins the
    history there)."""
    import dovlib.imwm as imwm

    images = torch.randint(0, 256, (16, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    late = HiddenConfig(message_bits=4, encoder_blocks=1, decoder_blocks=1, channels=4, image_size=16, batch_size=4,
                        **{**HIDDEN_ARCHS["msgmap"], "late_bit_acc": 0.5, "late_start": 0.0})
    plain = HiddenConfig(**{**late.__dict__, "late_bit_acc": None})
    kw = dict(steps=12, seed=0, progress=False)
    real = imwm._noise
    for name, cfg, first, then in (("late", late, 2, 2), ("plain", plain, 1, 2)):
        ckpt = tmp_path / f"{name}.pt"
        restore = _noise_stops_at(monkeypatch, 5)  # interrupted in step 5: the partial holds step 4
        with pytest.raises(KeyboardInterrupt):
            train_hidden(images, cfg, log_every=first, checkpoint=ckpt, checkpoint_every=0, **kw)
        restore()
        st = torch.load(tmp_path / f"{name}.pt.partial", weights_only=False)
        assert st["step"] == 4 and st["log_every"] == first
        calls = []
        monkeypatch.setattr(imwm, "_noise", lambda *a: (calls.append(1), real(*a))[1])
        train_hidden(images, cfg, log_every=then, checkpoint=ckpt, **kw)
        monkeypatch.setattr(imwm, "_noise", real)
        assert len(calls) == 8, name  # steps 5 to 12: resumed, not trained afresh (12)


def test_train_hidden_reads_its_checkpoint_and_partial_safely(tmp_path, plant_code):
    """A foreign file at train_hidden's checkpoint path (or its .partial) is refused by name, never unpickled with
    code; train_hidden's own files load with weights_only=True."""
    cfg = HiddenConfig(message_bits=4, channels=4, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4,
                       adversarial_loss=0, noises=("identity",))
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    ckpt = tmp_path / "h.pt"
    first = train_hidden(images, cfg, steps=2, progress=False, log_every=1, checkpoint=ckpt)
    assert train_hidden(images, cfg, steps=2, progress=False, log_every=1, checkpoint=ckpt).history == first.history
    for path in (ckpt, tmp_path / "g.pt.partial"):
        ran = plant_code(path, steps=2, seed=0)  # open(marker, "w") on unpickling
        with pytest.raises(ValueError, match=rf"{path.name} \(.+\) does not load safely \(weights_only=True: tensors "
                                             r"and plain settings only\): Unsupported global: GLOBAL (_?io|builtins)"
                                             r"\.open was not an allowed global by default; move it away or pass "
                                             r"another checkpoint path$"):
            train_hidden(images, cfg, steps=2, progress=False, log_every=1,
                         checkpoint=str(path).removesuffix(".partial"))
        assert not ran.exists()  # the code never ran


def test_hidden_load_names_an_empty_or_truncated_file(tmp_path, check_damaged_copies):
    # HiDDeN.load called torch.load directly: an empty file gave a bare EOFError, a truncated one a RuntimeError, a
    # whole zip archive with a garbled data.pkl torch's bare KeyError, or an "unsupported global" of garbage
    cfg = HiddenConfig(message_bits=8, image_size=16, channels=8, encoder_blocks=1, decoder_blocks=1)
    h = HiDDeN(HiddenNet(cfg), cfg)
    good = tmp_path / "h.pt"
    h.save(good)
    check_damaged_copies(good, HiDDeN.load, "a saved HiDDeN", "HiDDeN.load reads files written by HiDDeN.save or "
                         "train_hidden", {"memo.pt": b"\x80\x02h\x05.", "global.pt": b"\x80\x02c\x1b[31m\n\x07\x00\n."})
    assert HiDDeN.load(good).cfg.message_bits == 8


def test_a_hidden_read_back_counts_its_stored_training_time_and_older_files_their_last_step(tmp_path):
    from dovlib.train import compute_ledger, compute_ledger_mark

    images = (torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).round().to(torch.uint8)
    cfg = HiddenConfig(message_bits=4, channels=8, encoder_blocks=1, decoder_blocks=1, image_size=16, batch_size=4,
                       noises=("identity",))
    ckpt = tmp_path / "hidden.pt"
    mark = compute_ledger_mark()
    trained = train_hidden(images, cfg, steps=2, progress=False, log_every=1, checkpoint=ckpt)
    read = train_hidden(images, cfg, steps=2, progress=False, log_every=1, checkpoint=ckpt)
    first, second = compute_ledger(since=mark)
    assert first["artifact"] == second["artifact"] == str(ckpt.resolve())
    assert (first["reused"], second["reused"]) == (False, True)
    assert first["cost"] == trained.wall_time == read.wall_time == second["cost"] >= trained.history[-1]["seconds"]
    state = torch.load(ckpt, weights_only=False)
    del state["wall_time"]  # a file of older code: its last logged step's seconds stand for it
    torch.save(state, ckpt)
    assert HiDDeN.load(ckpt).wall_time == state["history"][-1]["seconds"] > 0
    assert HiDDeN(HiddenNet(cfg), cfg).wall_time is None  # built by hand: not known, not saved
