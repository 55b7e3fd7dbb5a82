import numpy as np
import pytest
import torch

from dovlib.metrics import PSNR_CAP, as_bits, bit_accuracy, mean_psnr, psnr, ssim, word_accuracy


def test_psnr_matches_definition():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[0] += 0.1  # MSE 0.01 -> 20 dB
    b[1] += 0.01  # MSE 1e-4 -> 40 dB
    assert psnr(a, b) == pytest.approx([20.0, 40.0], rel=1e-4)
    assert np.isinf(psnr(a, a)).all()


def test_psnr_uint8_and_shapes():
    a = torch.full((1, 1, 4, 4), 100, dtype=torch.uint8)
    assert psnr(a, a + 1)[0] == pytest.approx(10 * np.log10(255 ** 2), rel=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 5, 5))


def test_ssim_identity_and_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g)
    assert ssim(x, x) == pytest.approx([1.0] * 3)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    s = ssim(x, noisy)
    assert (s < 0.95).all() and (s > -1).all()
    with pytest.raises(ValueError, match="3x3"):
        ssim(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    # the same numbers as scikit-image on (H, W, C) images: 7x7 uniform window, data range 1, channels averaged
    from skimage.metrics import structural_similarity

    for i in range(3):
        ref = structural_similarity(x[i].permute(1, 2, 0).numpy(), noisy[i].permute(1, 2, 0).numpy(), data_range=1.0,
                                    channel_axis=-1, win_size=7)
        assert s[i] == pytest.approx(ref, rel=1e-6)
    assert len(set(np.round(s, 6))) == 3  # one value per image pair


@pytest.mark.parametrize("a,b", [(0.2, 0.5), (0.5, 0.5), (0.9, 0.1), (0.0, 0.04)])
def test_ssim_of_constant_images_is_the_luminance_term(a, b):
    """Constant images have no variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * data range)^2."""
    c1 = 0.01 ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    got = ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    assert got == pytest.approx([expected], rel=1e-6)
    # channels are averaged: two channels identical (SSIM 1), one with means a and b
    x, y = torch.full((1, 3, 9, 9), a), torch.full((1, 3, 9, 9), a)
    y[:, 1] = b
    assert ssim(x, y) == pytest.approx([(2 + expected) / 3], rel=1e-6)
    # uint8 images are read as value / 255
    ua, ub = round(a * 255), round(b * 255)
    e8 = (2 * ua * ub / 255 ** 2 + c1) / ((ua * ua + ub * ub) / 255 ** 2 + c1)
    assert ssim(torch.full((1, 1, 8, 8), ua, dtype=torch.uint8),
                torch.full((1, 1, 8, 8), ub, dtype=torch.uint8)) == pytest.approx([e8], rel=1e-6)


@pytest.mark.parametrize("size,win", [(4, 3), (5, 5), (6, 5), (7, 7), (12, 7)])
def test_ssim_window_shrinks_to_the_largest_odd_size_that_fits(size, win):
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(size)
    x = torch.rand(2, 3, size, size + 3, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref = [structural_similarity(p.permute(1, 2, 0).numpy(), q.permute(1, 2, 0).numpy(), data_range=1.0,
                                 channel_axis=-1, win_size=win) for p, q in zip(x, y)]
    assert ssim(x, y) == pytest.approx(ref, rel=1e-6)


def test_bit_and_word_accuracy():
    truth = np.array([[1, 0, 1, 1], [0, 0, 0, 0]])
    dec = np.array([[1, 0, 1, 1], [0, 1, 0, 0]])
    assert bit_accuracy(dec, truth).tolist() == [1.0, 0.75]
    assert word_accuracy(dec, truth).tolist() == [1.0, 0.0]
    assert bit_accuracy([1, 0], [1, 1]).tolist() == [0.5]
    with pytest.raises(ValueError, match="only 0 and 1"):
        as_bits([0, 2])
    with pytest.raises(ValueError, match="differ in length"):
        bit_accuracy([1, 0], [1, 0, 1])


def test_float_images_outside_unit_range_are_refused_not_clipped():
    a = np.random.default_rng(0).uniform(0, 255, (2, 3, 8, 8))  # 0-255 as floats: a common slip
    with pytest.raises(ValueError, match=r"uint8 \(0-255\) or floats in \[0, 1\]; got float64 values in \[0"):
        psnr(a, a * 0.9)
    with pytest.raises(ValueError, match="floats in"):
        ssim(torch.full((1, 3, 16, 16), -0.5), torch.zeros(1, 3, 16, 16))
    x = torch.rand(1, 3, 8, 8)
    assert np.isfinite(psnr(x, (x + 5e-4).clamp(max=1 + 5e-4))).all()  # rounding error just above 1 is fine


def test_mean_psnr_counts_identical_images_at_the_cap():
    a = torch.zeros(3, 1, 4, 4)
    b = a.clone()
    b[0] += 0.1  # 20 dB; images 1 and 2 unchanged (+inf each)
    assert mean_psnr(a, b) == pytest.approx((20.0 + 2 * PSNR_CAP) / 3, rel=1e-6)
    assert mean_psnr(a, b, cap=50) == pytest.approx((20.0 + 100) / 3, rel=1e-6)
    assert mean_psnr(a, a) == PSNR_CAP


def test_integer_images_other_than_uint8_are_refused():
    """int16 0/1 images were read as [0, 1] floats (PSNR 0 dB between 0 and 1 images); int64 0-255 as out of range."""
    a, b = torch.zeros(1, 1, 8, 8, dtype=torch.int16), torch.ones(1, 1, 8, 8, dtype=torch.int16)
    for f in (psnr, ssim):
        with pytest.raises(ValueError, match=r"must be uint8 \(0-255\) or floats in \[0, 1\]; got dtype torch.int16"):
            f(a, b)
    with pytest.raises(ValueError, match="got dtype int64"):
        psnr(np.zeros((1, 1, 8, 8), np.int64), np.zeros((1, 1, 8, 8), np.int64))
    assert psnr(a.to(torch.uint8), b.to(torch.uint8)).shape == (1,)  # uint8 and floats still pass


def test_non_finite_pixels_are_refused_not_turned_into_a_nan_psnr():
    a = torch.rand(2, 3, 8, 8)
    b = a.clone()
    b[1, 0, 2, 3] = float("nan")  # NaN fails both range comparisons: it used to pass and give psnr NaN
    for fn in (psnr, mean_psnr, ssim):
        with pytest.raises(ValueError, match=r"floats in \[0, 1\]; got 1 non-finite \(NaN or inf\) of 384 values"):
            fn(a, b)
    b[1, 0, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        psnr(a, b)
    assert np.isfinite(psnr(a, (a + 0.01).clamp(0, 1))).all()


def test_mean_psnr_of_no_images_is_refused():
    with pytest.raises(ValueError, match=r"mean_psnr needs at least one image pair \(N >= 1\); got 0 images"):
        mean_psnr(torch.zeros(0, 3, 8, 8), torch.zeros(0, 3, 8, 8))
    assert psnr(torch.zeros(0, 3, 8, 8), torch.zeros(0, 3, 8, 8)).shape == (0,)  # per image: simply none


@pytest.mark.parametrize("fn", [bit_accuracy, word_accuracy])
def test_message_accuracy_needs_matching_n_by_l_bits(fn):
    with pytest.raises(ValueError, match=r"messages must hold L >= 1 bits; got shape \(2, 0\)"):
        fn(np.zeros((2, 0)), np.zeros((2, 0)))  # bit accuracy used to give nan, word accuracy 1.0
    with pytest.raises(ValueError, match=r"decoded and truth must have the same shape \(N, L\), or one of them one "
                                         r"message \(L,\); got \(2, 4\) and \(3, 4\)"):
        fn(np.zeros((2, 4)), np.zeros((3, 4)))  # not numpy's broadcast error
    # one true message stands for every decoded row (the same message in every image)
    one = fn(np.array([[1, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 0]]), np.array([1, 0, 1, 1]))
    assert one.tolist() == ([1.0, 0.75, 0.0] if fn is bit_accuracy else [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"decoded must be \(N, L\) bits.*got shape \(2, 2, 4\)"):
        fn(np.zeros((2, 2, 4)), np.zeros((2, 2, 4)))  # used to return a (2, 2) array
    assert fn([1, 0, 1], [1, 0, 1]).shape == (1,)  # one message of L bits
    assert fn(np.ones((2, 3)), np.ones((2, 3))).tolist() == [1.0, 1.0]


def test_a_3d_batch_is_refused_not_read_as_one_image():
    """(N, H, W) grey images used to be read as ONE image of N channels (one PSNR for 50 images)."""
    grey = torch.rand(50, 8, 8)
    for fn in (psnr, ssim, mean_psnr):
        with pytest.raises(ValueError, match=r"images must be a batch \(N, C, H, W\).*grey images: x\[:, None\]"):
            fn(grey, grey)
    assert psnr(grey[:, None], (grey[:, None] * 0.9)).shape == (50,)
    with pytest.raises(ValueError, match="got dtype torch.int64"):  # the dtype given, not the float64 it became
        psnr(torch.full((1, 1, 4, 4), 200), torch.zeros(1, 1, 4, 4, dtype=torch.long))


def test_check_image_values_is_one_rule_for_tensors_and_arrays():
    from dovlib.metrics import check_image_values

    for ok in (torch.rand(2, 3, 4, 4), np.random.default_rng(0).random((2, 3, 4, 4)),
               torch.full((1, 1, 2, 2), 255, dtype=torch.uint8), np.zeros((0, 3, 4, 4))):
        check_image_values(ok)  # uint8, [0, 1] floats and empty batches pass
    with pytest.raises(ValueError, match=r"^x must be uint8 \(0-255\) or floats in \[0, 1\]; got torch.float32 values "
                                         r"in \[0, 255\]"):
        check_image_values(torch.tensor([0.0, 255.0]), "x")
    with pytest.raises(ValueError, match=r"got float64 values in \[-2, 0\]"):
        check_image_values(np.array([-2.0, 0.0]))
    with pytest.raises(ValueError, match=r"got 2 non-finite \(NaN or inf\) of 3 values"):
        check_image_values(torch.tensor([0.5, float("nan"), float("inf")]))


def test_channel_last_and_other_channel_counts_are_refused_not_misread():
    """(N, H, W, 3) images used to be read as H channels of width 3: an SSIM over a 3-pixel window, no error."""
    x = torch.rand(2, 3, 16, 16)
    assert ssim(x, x * 0.9).shape == (2,)
    for bad in (x.permute(0, 2, 3, 1), torch.rand(2, 4, 16, 16), torch.rand(2, 2, 16, 16)):
        for fn in (psnr, ssim, mean_psnr):
            with pytest.raises(ValueError, match=r"images must be \(N, C, H, W\) with C = 1 \(grey\) or 3 \(RGB\)"):
                fn(bad, bad)
    with pytest.raises(ValueError, match=r"channel-last\? use x.permute\(0, 3, 1, 2\)"):
        psnr(x.permute(0, 2, 3, 1).numpy(), x.permute(0, 2, 3, 1).numpy())


def test_identical_images_give_inf_whether_tensor_or_array():
    x = torch.rand(2, 3, 8, 8)
    for a, b in ((x, x.numpy()), (x.numpy(), x), (x, x.clone())):
        assert np.isinf(psnr(a, b)).all()
    u = (x * 255).round().to(torch.uint8)
    assert np.isinf(psnr(u, u.numpy())).all()
    assert np.isfinite(psnr(x, x.numpy() * 0.99)).all()


def test_numpy_uint8_images_are_read_as_value_over_255_like_tensors():
    a = np.full((1, 1, 4, 4), 100, np.uint8)
    assert psnr(a, a + 1)[0] == pytest.approx(10 * np.log10(255 ** 2), rel=1e-6)
    assert psnr(a, a + 1) == pytest.approx(psnr(torch.from_numpy(a), torch.from_numpy(a + 1)), rel=1e-6)


def test_rounding_error_just_outside_unit_range_is_clipped_and_past_the_tolerance_refused():
    ones = torch.ones(1, 3, 8, 8)
    assert np.isinf(psnr(ones * (1 + 5e-4), ones)).all()  # clipped to 1: the same image
    zeros = torch.zeros(1, 3, 8, 8)
    assert np.isinf(psnr(zeros - 5e-4, zeros)).all()
    for bad in (1.005, -0.005):  # past the 1e-3 tolerance: refused, not clipped
        with pytest.raises(ValueError, match=r"floats in \[0, 1\]; got torch.float32 values"):
            psnr(torch.full((1, 3, 8, 8), bad), zeros)


def test_check_image_values_passes_an_empty_tensor():
    from dovlib.metrics import check_image_values

    check_image_values(torch.zeros(0, 3, 4, 4))


def test_identical_images_count_at_100_db():
    a = torch.rand(2, 3, 8, 8)
    assert PSNR_CAP == 100.0 and mean_psnr(a, a) == 100.0


def test_ssim_window_fits_the_narrower_side_when_it_is_the_width():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 12, 5, generator=g)  # W < H: a 5x5 window
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref = [structural_similarity(p.permute(1, 2, 0).numpy(), q.permute(1, 2, 0).numpy(), data_range=1.0,
                                 channel_axis=-1, win_size=5) for p, q in zip(x, y)]
    assert ssim(x, y) == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("fn", [bit_accuracy, word_accuracy])
def test_one_decoded_message_is_compared_with_every_true_row(fn):
    got = fn(np.array([1, 0, 1, 1]), np.array([[1, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 0]]))
    assert got.tolist() == ([1.0, 0.75, 0.0] if fn is bit_accuracy else [1.0, 0.0, 0.0])


def test_grey_channel_last_images_get_the_permute_hint_too():
    from dovlib.metrics import check_channels

    for shape in ((4, 32, 32, 1), (4, 32, 32, 3)):
        with pytest.raises(ValueError, match=r"channel-last\? use x.permute\(0, 3, 1, 2\)"):
            check_channels(shape)
    with pytest.raises(ValueError) as err:
        check_channels((4, 5, 32, 32))
    assert "channel-last" not in str(err.value)
