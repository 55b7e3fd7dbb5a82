import pytest
import torch

from dovlib.models import ARCHS, BadNetsCNN, UNet, build_model


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "vgg16", "vgg19"])
@pytest.mark.parametrize("size", [28, 32, 64])
def test_classifiers_all_sizes(arch, size):
    m = build_model(arch, num_classes=7, in_channels=3, width=4, image_size=size).eval()
    out = m(torch.rand(2, 3, size, size))
    assert out.shape == (2, 7)
    assert isinstance(m.last_conv(), torch.nn.Conv2d)
    assert m.features(torch.rand(1, 3, size, size)).shape[1] == m.last_conv().out_channels


def test_standard_widths_have_the_known_sizes():
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 11.1e6 < n(build_model("resnet18")) < 11.2e6  # CIFAR ResNet-18: 11.17M
    assert 21.2e6 < n(build_model("resnet34")) < 21.4e6  # 21.28M
    assert 14.7e6 < n(build_model("vgg16")) < 14.8e6  # VGG-16-BN (CIFAR head): 14.73M


def test_badnets_cnn_mnist():
    m = build_model("badnets_cnn", in_channels=1, image_size=28)
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match="image_size"):
        build_model("badnets_cnn", image_size=8)
    for side in (8, 15):  # built directly too: no Linear(0, 512) or negative size deep inside torch
        with pytest.raises(ValueError, match=r"image_size \(badnets_cnn\) must be an integer >= 16; got " + str(side)):
            BadNetsCNN(image_size=side)
    assert BadNetsCNN(image_size=16)(torch.rand(1, 1, 16, 16)).shape == (1, 10)  # one pixel a side is left
    # MNIST's 28x28 by default; another size is refused with the fix named, not a matmul shape error
    m = build_model("badnets_cnn", in_channels=1).eval()
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"built for 28x28 images .*build it with image_size=32"):
        m(torch.rand(2, 1, 32, 32))


def test_model_normalises_inside():
    m = build_model("resnet18", width=4)
    assert torch.allclose(m.normalize(torch.full((1, 3, 2, 2), 0.5)), torch.zeros(1, 3, 2, 2))
    assert torch.allclose(m.normalize(torch.ones(1, 3, 2, 2)), torch.full((1, 3, 2, 2), 2.0))  # (1 - 0.5) / 0.25
    with pytest.raises(TypeError, match="float images"):
        m.normalize(torch.ones(1, 3, 2, 2, dtype=torch.uint8))


def test_bad_arch_and_width():
    with pytest.raises(ValueError, match=r"arch must be one of .*resnet18"):
        build_model("resnet50")
    with pytest.raises(ValueError, match="width"):
        build_model("resnet18", width=0)
    # each integer argument is checked by name before torch sees it (num_classes=0 used to fail only in the loss)
    for kwargs, message in [({"num_classes": 0}, r"num_classes must be an integer >= 1; got 0"),
                            ({"in_channels": 0}, r"in_channels must be an integer >= 1; got 0"),
                            ({"width": 2.5}, r"width must be an integer >= 1; got 2.5")]:
        with pytest.raises((ValueError, TypeError), match=message):
            build_model("vgg16", **kwargs)
    with pytest.raises((ValueError, TypeError), match=r"image_size \(badnets_cnn\) must be an integer >= 16"):
        build_model("badnets_cnn", image_size="x")
    assert build_model("resnet18", num_classes="4", width="4")(torch.rand(2, 3, 16, 16)).shape == (2, 4)
    assert set(ARCHS) == {"resnet18", "resnet34", "vgg16", "vgg19", "badnets_cnn"}


@pytest.mark.parametrize("size", [28, 32, 64, 30])
@pytest.mark.parametrize("depth", [2, 3, 4])
def test_unet_any_size_and_depth(size, depth):
    u = UNet(in_channels=4, out_channels=3, depth=depth, width=4)
    x = torch.rand(2, 4, size, size)
    y = u(x)
    assert y.shape == (2, 3, size, size)
    y.sum().backward()  # differentiable end to end
    assert u.inc[0].weight.grad is not None


def test_unet_validates():
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)


@pytest.mark.parametrize("arch", ["resnet18", "vgg16", "badnets_cnn"])
def test_uint8_images_are_refused_clearly(arch):
    model = build_model(arch, 10, 3, width=4, image_size=32).eval()
    with pytest.raises(TypeError, match=r"float images in \[0, 1\]; got torch.uint8 .*to_float"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_a_model_refuses_images_with_another_channel_count():
    """(N, 1, H, W) images used to broadcast against a 3-channel model's normalisation and run silently."""
    model = build_model("resnet18", 10, 3, width=4)
    with pytest.raises(ValueError, match=r"built for in_channels=3 images \(N, C, H, W\); got shape \(2, 1, 28, 28\)"):
        model(torch.rand(2, 1, 28, 28))


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "vgg16", "vgg19"])
def test_misspelled_arguments_are_refused_not_swallowed(arch):
    """``**_`` used to swallow them: resnet18(widht=16) built a width-64 network."""
    with pytest.raises(TypeError, match="widht"):
        ARCHS[arch](widht=16)
    assert ARCHS[arch](width=4).last_conv().out_channels in (32, 64)  # 8 * width (ResNet) or 16 * width ... (VGG)


def test_badnets_cnn_width_has_a_floor_that_its_docstring_names():
    sizes = {w: sum(p.numel() for p in build_model("badnets_cnn", in_channels=1, width=w).parameters())
             for w in (1, 8, 16, 32, 64)}
    assert sizes[1] == sizes[8] == sizes[16] < sizes[32] < sizes[64]
    assert "up to 16 builds the same network" in " ".join(BadNetsCNN.__doc__.split())


def test_min_train_batch_finds_the_archs_that_one_image_cannot_train():
    """A BatchNorm over a 1x1 map cannot train on one image: fit() refused batch_size 1 for such a model only at its
    first step, which in notebook 05 came after the suspect's whole training and named batch_size, not the notebook's
    finetune_batch_size. min_train_batch finds such shapes up front, and check_train_batch refuses by name."""
    from dovlib.models import check_train_batch, min_train_batch
    from dovlib.train import fit

    # a VGG's last conv block runs after four 2x2 poolings (ceil), a ResNet's layer4 after three stride-2 stages
    assert [min_train_batch("vgg16", (3, s, s)) for s in (8, 16, 17, 32)] == [2, 2, 1, 1]
    assert [min_train_batch("resnet18", (3, s, s)) for s in (8, 9, 32)] == [2, 1, 1]
    assert min_train_batch("vgg19", (1, 28, 28)) == 1 and min_train_batch("badnets_cnn", (1, 28, 28)) == 1
    # what it predicts is what fit does: a VGG on 16-pixel images fails on one image a batch, trains on two
    x, y = torch.zeros(4, 3, 16, 16, dtype=torch.uint8), torch.arange(4) % 2
    kw = dict(epochs=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="batch_size must be at least 2 for this model"):
        fit(build_model("vgg16", 2, 3, 4), x, y, batch_size=1, **kw)
    assert fit(build_model("vgg16", 2, 3, 4), x, y, batch_size=2, **kw).history
    assert fit(build_model("vgg16", 2, 3, 4), torch.zeros(4, 3, 17, 17, dtype=torch.uint8), y, batch_size=1,
               **kw).history
    with pytest.raises(ValueError, match=r"finetune_batch_size must be an integer >= 2; got 1 \(vgg16 on 16x16 "
                                         r"images: one image gives a BatchNorm layer a 1x1 map"):
        check_train_batch("finetune_batch_size", 1, "vgg16", (3, 16, 16))
    assert check_train_batch("finetune_batch_size", "2", "vgg16", (3, 16, 16)) == 2
    assert check_train_batch("finetune_batch_size", 1.0, "resnet18", (3, 32, 32)) == 1
    with pytest.raises(ValueError, match=r"finetune_batch_size must be an integer >= 1; got 0$"):
        check_train_batch("finetune_batch_size", 0, "resnet18", (3, 32, 32))
    with pytest.raises(ValueError, match="arch must be one of"):
        check_train_batch("finetune_batch_size", 8, "vgg11", (3, 32, 32))


def test_min_train_batch_takes_non_square_and_two_dimensional_shapes():
    """Height and width are each pooled on their own: a VGG on 16x32 images ends on a 1x2 map (two values per
    channel: one image trains, as fit shows) while 16x16 ends on 1x1. An (H, W) shape is a greyscale image for the
    BadNets CNN; any other length is refused naming image_shape."""
    from dovlib.models import check_train_batch, min_train_batch
    from dovlib.train import fit

    assert min_train_batch("vgg16", (3, 16, 32)) == 1 and min_train_batch("vgg16", (3, 32, 16)) == 1
    y = torch.arange(4) % 2
    kw = dict(epochs=1, device="cpu", progress=False, batch_size=1)
    assert fit(build_model("vgg16", 2, 3, 4), torch.zeros(4, 3, 16, 32, dtype=torch.uint8), y, **kw).history
    assert min_train_batch("vgg16", (3, 16, 8)) == 2
    with pytest.raises(ValueError, match="batch_size must be at least 2 for this model"):
        fit(build_model("vgg16", 2, 3, 4), torch.zeros(4, 3, 16, 8, dtype=torch.uint8), y, **kw)
    with pytest.raises(ValueError, match=r"\(vgg16 on 16x8 images"):  # height x width, as given
        check_train_batch("finetune_batch_size", 1, "vgg16", (3, 16, 8))
    assert min_train_batch("badnets_cnn", (28, 28)) == 1 and min_train_batch("vgg16", (8, 8)) == 2
    for bad in ((28,), (1, 3, 28, 28)):
        with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\) or \(H, W\)"):
            min_train_batch("vgg16", bad)
