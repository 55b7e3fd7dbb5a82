import numpy as np
import pytest
import torch

from dovlib.attacks import (ATTACKS, HIDDEN_NOISES, apply_attack, attack_grid, crop, cropout, dropout, jpeg, jpeg_mask,
                            restore_size)


def _images(n=2, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(n, 3, 6, 6, generator=g), size=(size, size), mode="bicubic")
    return (smooth.clamp(0, 1) * 255).round().to(torch.uint8)


def test_grid_has_45_attacks_over_eight_families():
    grid = attack_grid()
    assert len(grid) == 45 and len(set(grid)) == 45
    families = {f for f, _ in grid}
    assert families == {"blur", "brightness", "contrast", "hue", "jpeg", "center_crop", "resize", "rotation"}
    # ranges of the SSL-watermarking evaluation, identity settings left out
    params = lambda fam: sorted(p for f, p in grid if f == fam)  # noqa: E731
    assert params("blur")[0] == 3 and params("blur")[-1] == 13
    assert params("jpeg")[0] == 30 and params("jpeg")[-1] == 100
    assert params("rotation") == list(range(5, 50, 5))
    assert 1.0 not in params("brightness") and 0 not in params("hue")


def test_every_attack_keeps_dtype_restores_size_and_changes_the_image():
    x, cover = _images(), _images(seed=1)  # HiDDeN's Dropout / Cropout put cover pixels back: a different cover
    for name, attack in ATTACKS.items():
        y = attack(x, cover=cover)
        assert y.dtype == torch.uint8 and y.shape == x.shape, name
        assert (y.float() - x.float()).abs().mean() > 0.5, f"{name} left the images (almost) unchanged"


def test_size_changing_attacks_shrink_by_their_parameter():
    x = _images()
    for name, attack in ATTACKS.items():
        if not attack.changes_size:
            continue
        share = float(name.rsplit("_", 1)[1])
        side = 48 * share ** 0.5  # every size-changing attack keeps a share of the area (HiDDeN's Crop and the grid's)
        assert apply_attack(name, x, restore_size=False).shape[-2:] == (round(side),) * 2, name


def test_center_crop_and_resize_keep_an_area_share_as_in_ssl_watermarking():
    """Fernandez et al.'s center_crop(x, scale) / resize(x, scale) keep ``scale`` of the area: side * sqrt(scale)."""
    x = _images(2, 256)
    for share, side in [(0.4, 162), (0.5, 181), (0.7, 214), (0.9, 243)]:  # round(256 * sqrt(share)); 0.9 -> not 230
        for family in ("center_crop", "resize"):
            out = apply_attack(f"{family}_{share:g}", x, restore_size=False)
            assert out.shape[-2:] == (side, side), (family, share)
            assert out.shape[-2] * out.shape[-1] / 256 ** 2 == pytest.approx(share, abs=0.005)
    crop_half = ATTACKS["center_crop_0.5"](x, restore_size=False)  # the centre 181 x 181 (top: round(37.5))
    assert torch.equal(crop_half, x[..., 38:219, 38:219])


def test_center_crop_and_resize_refuse_shares_outside_zero_one_naming_them():
    from dovlib.attacks import Attack

    x = _images()
    for family in ("center_crop", "resize"):
        for bad in (0, 1.5, -0.2):
            with pytest.raises(ValueError, match=rf"{family} share of the area must be a number in \(0, 1\]"):
                apply_attack(Attack(f"{family}_{bad:g}", family, bad, changes_size=True), x)


def test_attacks_on_a_constant_image_do_what_they_define():
    """On one flat colour: smoothing and resampling change nothing, contrast blends with the mean grey level
    (0.299 R + 0.587 G + 0.114 B, as torchvision), a hue shift leaves grey untouched, JPEG stays within a few levels,
    rotation keeps the centre and fills the corners black."""
    rgb = torch.tensor([100, 150, 60], dtype=torch.uint8).reshape(1, 3, 1, 1).expand(2, 3, 48, 48).contiguous()
    for name in ("blur_3", "blur_13", "resize_0.5", "resize_0.9"):
        assert torch.equal(apply_attack(name, rgb), rgb), name
    grey_level = 0.299 * 100 + 0.587 * 150 + 0.114 * 60
    for c in (0.5, 2.0):
        want = (c * torch.tensor([100.0, 150.0, 60.0]) + (1 - c) * grey_level).clamp(0, 255)
        got = apply_attack(f"contrast_{c:g}", rgb)[0, :, 24, 24].float()
        assert (got - want).abs().max() <= 1, (c, got, want)
    grey = torch.full((2, 3, 48, 48), 100, dtype=torch.uint8)
    for name in ("hue_0.25", "hue_-0.5"):
        assert torch.equal(apply_attack(name, grey), grey), name
    assert (apply_attack("hue_0.25", rgb).float() - rgb.float()).abs().max() > 30  # a colour does move
    assert (apply_attack("jpeg_30", rgb).int() - rgb.int()).abs().max() <= 3
    turned = apply_attack("rotation_20", rgb)
    assert torch.equal(turned[..., 24, 24], rgb[..., 24, 24]) and (turned[..., 0, 0] == 0).all()


def test_attacks_change_images_and_size_changes_are_reported():
    x = _images()
    for name in ("blur_5", "brightness_1.5", "contrast_0.5", "hue_0.25", "jpeg_30", "rotation_20"):
        assert not torch.equal(apply_attack(name, x), x), name
    small = apply_attack("center_crop_0.5", x, restore_size=False)
    assert small.shape[-2:] == (34, 34)  # half the area: 48 * sqrt(0.5) = 33.9
    assert ATTACKS["resize_0.5"].changes_size and not ATTACKS["jpeg_50"].changes_size
    back = restore_size(small, (48, 48))
    assert back.shape[-2:] == (48, 48) and back.dtype == torch.uint8
    # the content is the crop's, upscaled: the smooth image's centre, not zeros or the uncropped picture
    centre = torch.nn.functional.interpolate(x[..., 7:41, 7:41].float(), size=(48, 48), mode="bilinear")
    assert (back.float() - centre).abs().mean() < 3 and (back.float() - x.float()).abs().mean() > 3
    assert restore_size(x, (48, 48)) is x  # already that size: untouched


def test_brightness_and_contrast_round_as_float_images_do():
    """As on SSL-watermarking's float images, rounded to the nearest level: torchvision on uint8 truncates (255 * 0.5
    became 127, a bias of -0.25 levels on average)."""
    x = _images()
    for f in (0.5, 1.5, 2.0):
        exact = (x.double() * f).clamp(0, 255)  # the nearest level, within float32's error at .5 ties
        assert (apply_attack(f"brightness_{f:g}", x).double() - exact).abs().max() <= 0.5 + 1e-4, f
    edge = torch.tensor([253, 255, 1, 3], dtype=torch.uint8).reshape(1, 1, 2, 2).expand(1, 3, 2, 2).contiguous()
    assert apply_attack("brightness_0.5", edge)[0, 0].flatten().tolist() == [126, 128, 0, 2]  # half to even
    grey = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for c in (0.5, 2.0):
        mean = (x.float() / 255 * grey).sum(1, keepdim=True).mean((-2, -1), keepdim=True)
        want = ((c * x.float() / 255 + (1 - c) * mean).clamp(0, 1) * 255).round()
        assert (apply_attack(f"contrast_{c:g}", x).float() - want).abs().max() <= 1, c  # float summation order
        assert (apply_attack(f"contrast_{c:g}", x).float() - want).abs().mean() < 0.01, c  # no bias left


def test_jpeg_quality_orders_error_and_444_keeps_more_colour():
    x = _images(size=64)
    err = [(jpeg(x, q).float() - x.float()).abs().mean().item() for q in (30, 90)]
    assert err[0] > err[1]
    e420 = (jpeg(x, 95, "4:2:0").float() - x.float()).abs().mean()
    e444 = (jpeg(x, 95, "4:4:4").float() - x.float()).abs().mean()
    assert e444 < e420  # strictly: 4:4:4 keeps the full-resolution chroma of this colourful image
    with pytest.raises(ValueError, match="quality"):
        jpeg(x, 0)
    with pytest.raises(ValueError, match="subsampling"):
        jpeg(x, 50, "4:1:1")


def test_jpeg_quality_must_be_an_integer_from_1_to_100_not_truncated():
    x = _images(size=32)
    for bad in (50.7, 0, 101, "high"):
        with pytest.raises((TypeError, ValueError), match=r"quality must be an integer in \[1, 100\]; got"):
            jpeg(x, bad)
    with pytest.raises(TypeError, match=r"quality must be an integer in \[1, 100\]; got True"):
        jpeg(x, True)
    assert torch.equal(jpeg(x, 50.0), jpeg(x, 50)) and torch.equal(jpeg(x, np.int64(50)), jpeg(x, 50))
    assert all(isinstance(p, int) for f, p in attack_grid() if f == "jpeg")  # the grid passes integer qualities


def test_hidden_noise_layers_mix_cover_and_encoded():
    enc, cover = torch.ones(2, 3, 40, 40), torch.zeros(2, 3, 40, 40)
    g = torch.Generator().manual_seed(0)
    share = dropout(enc, cover, 0.3, g).mean().item()
    assert 0.25 < share < 0.35
    assert abs(cropout(enc, cover, 0.25, g).mean().item() - 0.25) < 0.03
    assert crop(enc, 0.25, g).shape[-2:] == (20, 20)
    with pytest.raises(ValueError, match="cover"):
        apply_attack("hidden_dropout_0.3", _images())
    assert set(HIDDEN_NOISES) == {"dropout", "cropout", "crop"}


def test_jpeg_mask_is_differentiable_and_keeps_smooth_images():
    x = (_images(1, 32).float() / 255).requires_grad_(True)
    y = jpeg_mask(x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert (y - x).abs().mean() < 0.02  # smooth image: low frequencies carry almost everything


def test_jpeg_mask_keeps_are_integers_from_1_to_8_and_images_are_floats():
    x = _dct_pattern(1, 2)
    for name in ("keep_y", "keep_uv"):
        for bad in (0, 9, 2.5, -1):
            with pytest.raises(ValueError, match=rf"{name} must be an integer in \[1, 8\]; got"):
                jpeg_mask(x, **{name: bad})
    assert torch.allclose(jpeg_mask(x, keep_y=8, keep_uv=8), x, atol=1e-5)  # 8: every coefficient kept
    with pytest.raises(ValueError, match=r"jpeg_mask needs float images in \[0, 1\].*got torch.uint8"):
        jpeg_mask(_images(1, 16))


def _dct_pattern(u: int, v: int, size: int = 16) -> torch.Tensor:
    """A grey image (R = G = B) whose every 8x8 block is 0.5 plus the DCT basis function (u, v)."""
    from dovlib.attacks import _dct_matrix

    m = _dct_matrix(8)
    block = 0.5 + 0.3 * (m[u][:, None] * m[v][None, :]) / (m[u][:, None] * m[v][None, :]).abs().max()
    return block.repeat(size // 8, size // 8).expand(1, 3, size, size).contiguous()


def test_jpeg_mask_keeps_the_low_frequencies_and_drops_the_high_ones():
    for u, v in [(0, 0), (1, 2), (4, 4), (0, 4)]:  # inside the 5x5 luminance block: kept exactly (grey: Y only)
        x = _dct_pattern(u, v)
        assert torch.allclose(jpeg_mask(x), x, atol=1e-5), (u, v)
    for u, v in [(5, 0), (0, 6), (7, 7)]:  # outside it: removed, the flat 0.5 is left
        assert torch.allclose(jpeg_mask(_dct_pattern(u, v)), torch.full((1, 3, 16, 16), 0.5), atol=1e-5), (u, v)
    x = _dct_pattern(1, 2)
    assert not torch.allclose(jpeg_mask(x, keep_y=2), x, atol=1e-3)  # keep_y is honoured: (1, 2) is outside 2x2
    cb = ((torch.arange(32)[:, None] + torch.arange(32)[None]) % 2).float().expand(1, 3, 32, 32)
    assert (jpeg_mask(cb) - cb).abs().mean() > 0.4  # the finest checkerboard is all high frequency
    colour = torch.zeros(1, 3, 16, 16)
    colour[:, 0] = _dct_pattern(2, 2)[:, 0]  # a red-only pattern: chroma at (2, 2) is kept (3x3), at (3, 0) not
    assert torch.allclose(jpeg_mask(colour), colour, atol=1e-5)
    colour[:, 0] = _dct_pattern(3, 0)[:, 0]
    assert not torch.allclose(jpeg_mask(colour), colour, atol=1e-2)


def test_bad_inputs_name_the_parameter():
    with pytest.raises(ValueError, match="attack must be one of"):
        apply_attack("sharpen_2", _images())
    with pytest.raises(ValueError, match="images"):
        apply_attack("blur_3", torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="dropout p"):
        dropout(torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), 1.5)
    np.testing.assert_array_equal(apply_attack("blur_3", _images()).shape, (2, 3, 48, 48))


def test_attack_sets_name_registered_attacks():
    from dovlib.attacks import attack_set

    assert len(attack_set("grid")) == 45 and attack_set("none") == []
    rep = attack_set("representative")
    assert len(rep) == 8 and len({ATTACKS[n].family for n in rep}) == 8
    assert all(ATTACKS[n].family.startswith("hidden_") for n in attack_set("hidden"))
    with pytest.raises(ValueError, match="attacks must be one of"):
        attack_set("all")


def test_attack_set_label_names_the_set_and_its_size():
    from dovlib.attacks import attack_set, attack_set_label

    assert attack_set_label("none") == "no attacks"
    assert attack_set_label("grid") == "attacked = mean over the 'grid' set (45 attacks)"
    n = len(attack_set("hidden"))
    assert attack_set_label("hidden") == f"attacked = mean over the 'hidden' set ({n} attacks)"
    with pytest.raises(ValueError, match="attacks must be one of"):
        attack_set_label("all")


def test_a_cover_of_another_dtype_and_an_unknown_family_are_refused():
    from dovlib.attacks import Attack

    x = _images()
    with pytest.raises(ValueError, match=r"pass cover= as torch.uint8 images of the same shape .* got torch.float32"):
        apply_attack("hidden_dropout_0.3", x, cover=x.float())
    with pytest.raises(ValueError, match=r"attack family must be one of \[.*'blur'.*hidden_crop'\]; got 'blurr'"):
        apply_attack(Attack("blurr_3", "blurr", 3), x)


def _asymmetric(n=2, size=40, seed=0):
    """Random uint8 RGB images: no symmetry, colour detail at every scale."""
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_blur_uses_its_own_kernel_size_as_torchvision_gaussian_blur():
    import torchvision.transforms.v2.functional as TF

    x = _asymmetric()
    outs = {}
    for k in (3, 7, 13):
        outs[k] = apply_attack(f"blur_{k}", x)
        assert torch.equal(outs[k], TF.gaussian_blur(x, [k, k])), k
    assert not torch.equal(outs[3], outs[7]) and not torch.equal(outs[7], outs[13])
    assert outs[13].float().std() < outs[3].float().std()  # a wider kernel smooths more


def test_rotation_turns_by_its_own_angle_counter_clockwise_as_torchvision():
    import torchvision.transforms.v2.functional as TF

    x = _asymmetric()
    for angle in (10, 45):
        out = apply_attack(f"rotation_{angle}", x)
        assert torch.equal(out, TF.rotate(x, float(angle))), angle
        assert not torch.equal(out, TF.rotate(x, float(-angle))), angle  # the sign matters
    assert not torch.equal(apply_attack("rotation_10", x), apply_attack("rotation_45", x))


def test_hue_shift_is_torchvisions_on_float_images_rounded_with_its_sign():
    import torchvision.transforms.v2.functional as TF

    x = _asymmetric()
    outs = {}
    for shift in (0.25, -0.25):
        want = (TF.adjust_hue(x.float() / 255, shift) * 255).round().clamp(0, 255).to(torch.uint8)
        outs[shift] = apply_attack(f"hue_{shift:g}", x)
        assert torch.equal(outs[shift], want), shift
    assert (outs[0.25].float() - outs[-0.25].float()).abs().mean() > 10  # opposite turns of the colour wheel


def test_jpeg_444_and_420_are_pils_own_encodings():
    import io

    from PIL import Image

    x = _asymmetric(1, 32)
    for subsampling, pil_code in (("4:4:4", 0), ("4:2:0", 2)):
        buf = io.BytesIO()
        Image.fromarray(x[0].permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=90, subsampling=pil_code)
        want = torch.from_numpy(np.array(Image.open(io.BytesIO(buf.getvalue())))).permute(2, 0, 1)[None]
        assert torch.equal(jpeg(x, 90, subsampling), want), subsampling
    assert not torch.equal(jpeg(x, 90, "4:4:4"), jpeg(x, 90, "4:2:0"))


def test_cropout_rectangle_is_drawn_anywhere_top_and_left():
    enc, cover = torch.ones(1, 1, 40, 40), torch.zeros(1, 1, 40, 40)
    g = torch.Generator().manual_seed(0)
    tops, lefts = set(), set()
    for _ in range(12):
        out = cropout(enc, cover, 0.25, g)[0, 0]
        rows, cols = out.any(1).nonzero().flatten(), out.any(0).nonzero().flatten()
        assert len(rows) == len(cols) == 20 and out.sum() == 400  # one 20x20 rectangle
        tops.add(int(rows[0]))
        lefts.add(int(cols[0]))
    assert len(tops) > 3 and len(lefts) > 3 and max(tops) > 0
    # the draw: top, then left, uniform over the positions the rectangle fits
    g, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    out = cropout(enc, cover, 0.25, g)[0, 0]
    top, left = (int(torch.randint(0, 21, (1,), generator=g2)) for _ in range(2))
    assert out[top:top + 20, left:left + 20].all() and out.sum() == 400
    cropped = crop(torch.arange(1600.).view(1, 1, 40, 40), 0.25, torch.Generator().manual_seed(5))
    assert cropped[0, 0, 0, 0] == top * 40 + left  # Crop draws its rectangle the same way


@pytest.mark.parametrize("family, bad, match", [
    ("blur", 4.7, r"blur kernel size must be an integer >= 3; got 4.7"),  # used to be truncated to 4, then refused
    ("blur", 4, r"blur kernel size must be an odd integer >= 3; got 4"),
    ("rotation", float("nan"), r"rotation angle \(degrees\) must be a finite number"),  # used to give a black image
    ("hue", 0.7, r"hue shift must be a finite number in \[-0.5, 0.5\]; got 0.7"),
    ("brightness", -1.0, r"brightness factor must be a finite number in \[0, inf\]; got -1.0"),
    ("contrast", True, r"contrast factor must be a finite number"),
])
def test_hand_built_attacks_have_their_parameter_checked(family, bad, match):
    from dovlib.attacks import Attack

    with pytest.raises(ValueError, match=match):
        apply_attack(Attack(f"{family}_x", family, bad), _images())
    good = {"blur": 5, "rotation": 12.5, "hue": -0.5, "brightness": 0.0, "contrast": 3.0}[family]
    assert apply_attack(Attack(f"{family}_ok", family, good), _images()).shape == _images().shape


def test_jpeg_refuses_empty_batches_and_channels_it_cannot_write():
    x = _images()
    with pytest.raises(ValueError, match=r"jpeg needs at least one grey \(C = 1\) or RGB \(C = 3\) image; got shape "
                                         r"\(0, 3, "):
        jpeg(x[:0], 50)
    for c in (2, 4):
        with pytest.raises(ValueError, match=rf"got shape \(\d+, {c}, "):
            jpeg(torch.zeros(1, c, 16, 16, dtype=torch.uint8), 50)
    assert jpeg(x[:, :1].contiguous(), 50).shape == x[:, :1].shape  # grey works


def test_channel_last_images_are_refused_by_every_attack():
    """A channel-last batch used to be rotated or cropped along the wrong axes without an error."""
    x = _images()
    hwc = x.permute(0, 2, 3, 1).contiguous()
    for name in ("rotation_45", "center_crop_0.5", "blur_3", "jpeg_50", "brightness_1.5"):
        with pytest.raises(ValueError, match=r"C = 1 \(grey\) or 3 \(RGB\); got shape .*channel-last"):
            apply_attack(name, hwc)
        assert apply_attack(name, x).shape[:2] == x.shape[:2]


def test_blur_refuses_images_smaller_than_its_padding_naming_the_kernel():
    small = torch.zeros(2, 3, 6, 6, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"blur_13 needs images with both sides at least 7 pixels .*got 6x6"):
        apply_attack("blur_13", small)
    assert apply_attack("blur_11", small).shape == small.shape  # padding 5 < 6
    assert apply_attack("blur_3", torch.zeros(1, 1, 2, 9, dtype=torch.uint8)).shape == (1, 1, 2, 9)


def test_blur_refuses_images_with_one_side_shorter_than_its_padding():
    """The shorter side decides: a 3x48 image has no room for blur_7's reflect padding of 3 rows."""
    with pytest.raises(ValueError, match=r"blur_7 needs images with both sides at least 4 pixels .*got 3x48"):
        apply_attack("blur_7", torch.zeros(1, 3, 3, 48, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"blur_7 needs .*got 48x3"):
        apply_attack("blur_7", torch.zeros(1, 3, 48, 3, dtype=torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_jpeg_of_gpu_images_comes_back_on_the_gpu():
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = jpeg(x.cuda(), 50)
    assert out.device.type == "cuda" and torch.equal(out.cpu(), jpeg(x, 50))


def test_jpeg_mask_keeping_every_coefficient_is_the_identity_to_float64_precision():
    """float64 images are computed in float64 throughout (the DCT matrix was built in float32, capping the round
    trip's error at about 1e-6 whatever the dtype)."""
    from dovlib.attacks import jpeg_mask

    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert (jpeg_mask(x, keep_y=8, keep_uv=8) - x).abs().max() < 1e-12
    x32 = x.float()
    assert (jpeg_mask(x32, keep_y=8, keep_uv=8) - x32).abs().max() < 1e-5


@pytest.mark.parametrize("family, bad", [("rotation", float("inf")), ("rotation", -float("inf")),
                                         ("brightness", float("inf")), ("contrast", np.inf), ("hue", -np.inf)])
def test_hand_built_attacks_refuse_infinite_parameters(family, bad):
    """NaN fails every range comparison, but an infinite rotation or factor lies within [low, inf]: the finiteness
    check alone refuses it (a rotation by inf degrees, a brightness factor of inf)."""
    from dovlib.attacks import Attack

    with pytest.raises(ValueError, match=r"must be a finite number in \[.*\]; got -?inf"):
        apply_attack(Attack(f"{family}_x", family, bad), _images())


def test_a_cover_of_another_shape_is_refused_not_broadcast():
    """Dropout and Cropout mix each image with its own cover: one cover for a batch of two (which torch.where would
    broadcast) or a cover of another size is refused, naming the shape expected."""
    x = _images()
    for name in ("hidden_dropout_0.3", "hidden_cropout_0.3"):
        for cover in (x[:1], x[..., :40, :40]):
            with pytest.raises(ValueError, match=r"pass cover= as torch.uint8 images of the same shape \(2, 3, 48, "
                                                 r"48\); got torch.uint8 \("):
                apply_attack(name, x, cover=cover)
