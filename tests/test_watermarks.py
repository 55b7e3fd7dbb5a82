"""The Table I baselines behind the DatasetWatermark interface (dovlib/watermarks/*.py)."""

import math
import sys
import warnings

import numpy as np
import pytest
import torch

from dovlib.data import load_dataset
from dovlib.models import build_model
from dovlib.train import evaluate, fit
from dovlib.verify import attack_success
from dovlib.watermarks import get_watermark
from dovlib.watermarks.common import gradient_matching, pgd_untargeted, published_patch, scaled, select_any

BASELINES = ["badnets", "blended", "wanet", "ubw-p", "label-consistent", "sleeper-agent", "ubw-c"]
SURROGATE = {"label-consistent", "sleeper-agent", "ubw-c"}
FAST = {"label-consistent": {"steps": 2}, "sleeper-agent": {"steps": 1, "n_source": 16},
        "ubw-c": {"steps": 1, "n_source": 16}}


def _data(size=16, channels=3, n=60):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    return x, torch.arange(n) % 10


def _surrogate(channels, size):
    torch.manual_seed(0)
    return build_model("badnets_cnn", 10, channels, width=16, image_size=size).eval()


def _make(name, x):
    wm = get_watermark(name, **FAST.get(name, {}))
    return wm.fit(x, None, _surrogate(x.shape[1], x.shape[-1]) if name in SURROGATE else None)


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3)])
def test_apply_shapes_range_labels(name, size, channels):
    x, y = _data(size, channels, 40 if size == 64 else 60)
    wm = _make(name, x)
    xo, yo, idx = wm.apply(x, y, 0.1, target=1, seed=0)
    assert xo.shape == x.shape and xo.dtype == torch.uint8 and yo.dtype == y.dtype
    assert len(idx) == round(0.1 * len(x))
    untouched = torch.ones(len(x), dtype=torch.bool)
    untouched[idx] = False
    if name == "wanet":
        untouched[wm.noise_indices] = False
        assert len(wm.noise_indices) == 2 * len(idx) and not set(wm.noise_indices.tolist()) & set(idx.tolist())
        assert torch.equal(yo[wm.noise_indices], y[wm.noise_indices])  # noise mode keeps labels
    assert torch.equal(xo[untouched], x[untouched]) and torch.equal(yo[untouched], y[untouched])
    assert not torch.equal(xo[idx], x[idx])
    if wm.kind == "clean-label":
        assert torch.equal(yo, y)
        if wm.targeted:
            assert (y[idx] == 1).all()
    elif wm.targeted:
        assert (yo[idx] == 1).all() and (y[idx] != 1).all()
    else:  # UBW-P: a random label in [0, K) for each marked sample, every class may be poisoned
        assert ((yo[idx] >= 0) & (yo[idx] < 10)).all()
    if name in ("sleeper-agent", "ubw-c"):  # poisons crafted within eps (16/255: 16 grey levels), never a trigger
        assert (xo[idx].int() - x[idx].int()).abs().max() <= round(wm.eps * 255) == 16
        assert not torch.equal(xo[idx], wm.trigger(x[idx]))
    t = wm.trigger(x[:5])
    assert t.shape == (5, channels, size, size) and t.dtype == torch.uint8 and not torch.equal(t, x[:5])


@pytest.mark.parametrize("name", BASELINES)
def test_deterministic_under_seed(name):
    x, y = _data(n=100)
    a = _make(name, x).apply(x, y, 0.05, 1, seed=3)
    b = _make(name, x).apply(x, y, 0.05, 1, seed=3)
    c = _make(name, x).apply(x, y, 0.05, 1, seed=4)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[2], c[2])
    assert torch.equal(_make(name, x).trigger(x), _make(name, x).trigger(x))


def test_trigger_scales_with_image_size():
    assert [scaled(3, s) for s in (28, 32, 64)] == [3, 3, 6]
    wm = get_watermark("badnets")
    for size, side in [(28, 3), (32, 3), (64, 6)]:
        x = torch.zeros(1, 3, size, size, dtype=torch.uint8)
        marked = wm.trigger(x)
        changed = (marked != x).any(1)[0]
        assert changed.sum() == side * side and changed[-side:, -side:].all()
        assert (marked[..., -side:, -side:] == 255).all()  # a white square in every channel
    grey = get_watermark("badnets", value=128).trigger(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))
    assert grey[0, 0, -3:, -3:].unique().tolist() == [128] and grey.sum() == 9 * 128
    # a non-square image scales by its shorter side, whichever it is: 64x32 and 32x64 both get the 32-px patch
    for shape in [(64, 32), (32, 64)]:
        x = torch.zeros(1, 3, *shape, dtype=torch.uint8)
        for name in ("badnets", "ubw-p", "ubw-c", "sleeper-agent"):  # on images of 1, black pixels change too
            wm = get_watermark(name)
            changed = (wm.trigger(x + 1) != x + 1).any(1)[0]
            rows, cols, side = *changed.nonzero().T, wm.patch_size  # its size at 32 px, the shorter side here
            assert rows.min() == shape[0] - side and cols.min() == shape[1] - side, (name, shape)
        lc = (get_watermark("label-consistent").trigger(x) != x).any(1)[0]  # four corners, 3 px each
        assert lc[:3, :3].any() and lc[-3:, -3:].any() and not lc[3:-3, :].any() and not lc[:, 3:-3].any()


def test_the_trigger_patch_is_the_ubw_authors_pattern():
    """UBW-P's, UBW-C's and Label-Consistent's trigger: the UBW authors' released 3x3 pattern (four white pixels, a
    black top-left; it used to be a checkerboard with a white top-left, one pixel away), the same in every channel,
    mirrored for Label-Consistent's left-hand corners (BackdoorBox's examples), each pixel repeated when scaled."""
    assert published_patch(1, 3)[0].tolist() == [[0, 0, 255], [0, 255, 0], [255, 0, 255]]
    assert published_patch(1, 3, mirrored=True)[0].tolist() == [[255, 0, 0], [0, 255, 0], [255, 0, 255]]
    big = published_patch(3, 6)
    assert big.dtype == torch.uint8 and big.shape == (3, 6, 6)
    assert all(torch.equal(big[c], big[0]) for c in range(3))
    assert torch.equal(big[0], published_patch(1, 3)[0].repeat_interleave(2, 0).repeat_interleave(2, 1))
    x = torch.full((1, 3, 32, 32), 7, dtype=torch.uint8)
    for name in ("ubw-p", "ubw-c"):
        assert get_watermark(name).trigger(x)[0, :, -3:, -3:].tolist() == published_patch(3, 3).tolist()
    lc = get_watermark("label-consistent").trigger(x)[0]
    for rows, cols, mirrored in ((slice(0, 3), slice(29, 32), False), (slice(29, 32), slice(29, 32), False),
                                 (slice(0, 3), slice(0, 3), True), (slice(29, 32), slice(0, 3), True)):
        assert torch.equal(lc[:, rows, cols], published_patch(3, 3, mirrored)), (rows, cols)
    assert (lc[:, 3:29, :] == 7).all() and (lc[:, :, 3:29] == 7).all()


def test_blended_is_a_convex_mix():
    x = torch.full((2, 3, 8, 8), 100, dtype=torch.uint8)
    wm = get_watermark("blended", alpha=0.2)
    p = wm.pattern(3, 8, 8).float()
    assert torch.allclose(wm.trigger(x).float(), (0.8 * 100 + 0.2 * p).round(), atol=1)
    with pytest.raises(ValueError, match="alpha"):
        get_watermark("blended", alpha=1.5)


def test_wanet_warp_is_small_and_smooth():
    x = torch.linspace(0, 255, 32).round().to(torch.uint8).expand(2, 3, 32, 32).clone()  # a smooth ramp
    out = get_watermark("wanet").trigger(x)
    assert 0 < (out.float() - x.float()).abs().mean() < 8  # about s/2 px of a ramp of 8 levels per pixel
    with pytest.raises(ValueError, match=r"k must be an integer in \[2, 32\]; got 1"):
        get_watermark("wanet", k=1)
    # grid_rescale scales the whole warping grid (identity + offset), as WaNet defines it: with almost no warp,
    # 0.5 zooms into the centre, so the left edge reads the ramp a quarter of the way in (about 64, not 0)
    zoom = get_watermark("wanet", s=1e-6, grid_rescale=0.5).trigger(x)
    assert zoom[0, 0, 0, 0].item() == pytest.approx(255 * 0.25, abs=2)
    # displacement in pixels along each axis does not depend on the image's shape (x was divided by the height, so
    # a 20x30 image moved 0.74 px along x and a 30x20 one 0.32 px)
    wn = get_watermark("wanet")
    for h, w in ((32, 32), (20, 30), (30, 20)):
        _, off = wn.grids(h, w)
        px = off[0, ..., 0].abs().max() * (w - 1) / 2, off[0, ..., 1].abs().max() * (h - 1) / 2
        assert all(0.45 < float(v) < 0.52 for v in px), (h, w, px)


def test_label_consistent_budget_outside_trigger():
    x, y = _data(32, 3)
    wm = _make("label-consistent", x)
    xo, _, idx = wm.apply(x, y, 0.1, 1)
    mask = torch.ones(32, 32, dtype=torch.bool)
    for r in (slice(0, 3), slice(29, 32)):
        for c in (slice(0, 3), slice(29, 32)):
            mask[r, c] = False
    d = (xo[idx].float() - x[idx].float()).abs()[:, :, mask]
    assert d.max() <= round(wm.eps * 255) == 16 and d.max() > 0  # the budget exactly, after rounding to uint8
    assert (xo[idx][:, :, :3, :3] == published_patch(3, 3, mirrored=True)).all()
    low = get_watermark("label-consistent", amplitude=32).trigger(torch.full((1, 3, 32, 32), 128, dtype=torch.uint8))
    assert (low.float() - 128).abs().max() == 32
    empty = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)  # used to raise IndexError at reduced amplitude
    assert get_watermark("label-consistent", amplitude=32).trigger(empty).shape == empty.shape
    # alpha is a PGD step (it may be under one grey level); eps is the marks' budget (at least one grey level)
    assert get_watermark("label-consistent", alpha="0.5/255").alpha == pytest.approx(0.5 / 255)
    with pytest.raises(ValueError, match=r"eps must be at least 1/255"):
        get_watermark("label-consistent", eps="0.5/255")


def test_pgd_raises_surrogate_loss_and_respects_eps():
    x, y = _data(16, 3, 20)
    m = _surrogate(3, 16)
    adv = pgd_untargeted(m, x, y, eps=8 / 255, steps=5, device="cpu")
    assert (adv.float() - x.float()).abs().max() <= 8
    loss = torch.nn.functional.cross_entropy
    assert loss(m(adv.float() / 255), y) > loss(m(x.float() / 255), y)


@pytest.mark.parametrize("every", [0, 60.0])
def test_pgd_resumes_from_its_checkpoint(tmp_path, every):
    """An interrupted PGD crafting with a checkpoint resumes after its last finished batch and returns what an
    uninterrupted run returns, whether that batch was written when due (every 0 s) or when the run was interrupted
    (the default minute had not passed); a checkpoint of other inputs is ignored."""
    x, y = _data(16, 3, 12)
    m = _surrogate(3, 16)
    kw = dict(eps=8 / 255, steps=3, batch_size=5, device="cpu", seed=4)
    straight = pgd_untargeted(m, x, y, **kw)

    calls = []  # outside the module: the crafting runs on a copy of it

    class Counted(torch.nn.Module):  # counts forward passes; dies at pass number `stop`
        def __init__(self, stop=None):
            super().__init__()
            self.m, self.stop = m, stop

        def forward(self, z):
            calls.append(1)
            if len(calls) == self.stop:
                raise KeyboardInterrupt
            return self.m(z)

    ckpt = tmp_path / "craft.partial"
    with pytest.raises(KeyboardInterrupt):  # 3 steps per batch: pass 7 is the third batch's first
        pgd_untargeted(Counted(stop=2 * 3 + 1), x, y, checkpoint=ckpt, checkpoint_every=every, **kw)
    assert torch.load(ckpt, weights_only=False)["next"] == 10
    calls.clear()
    resumed = pgd_untargeted(Counted(), x, y, checkpoint=ckpt, **kw)
    assert len(calls) == 3  # only the unfinished third batch was crafted again
    assert torch.equal(resumed, straight) and not ckpt.is_file()
    torch.save({"inputs": {}, "next": 10, "out": []}, ckpt)
    assert torch.equal(pgd_untargeted(m, x, y, checkpoint=ckpt, **kw), straight)


def test_gradient_matching_aligns_gradients():
    x, y = _data(16, 3, 20)
    m = _surrogate(3, 16)
    src = x[:10].float() / 255

    def target_loss(model):
        return torch.nn.functional.cross_entropy(model(src), torch.full((10,), 1))

    def cos(xp):
        ps = list(m.parameters())
        for p in ps:
            p.requires_grad_(True)
        gp = torch.autograd.grad(torch.nn.functional.cross_entropy(m(xp.float() / 255), y), ps)
        gt = torch.autograd.grad(target_loss(m), ps)
        return torch.nn.functional.cosine_similarity(torch.cat([g.flatten() for g in gp]),
                                                     torch.cat([g.flatten() for g in gt]), dim=0).item()

    out = gradient_matching(m, x, y, target_loss, eps=16 / 255, steps=15, device="cpu")
    assert (out.float() - x.float()).abs().max() <= 16
    assert cos(out) > cos(x)


@pytest.mark.parametrize("every", [0, 60.0])
def test_gradient_matching_resumes_after_an_interruption(tmp_path, monkeypatch, every):
    """An interrupted crafting resumes from its checkpoint (written when due, or, before the default minute has
    passed, when interrupted) and returns what an uninterrupted one returns."""
    import dovlib.watermarks.common as common

    x, y = _data(16, 3, 12)
    m = _surrogate(3, 16)
    src = x[:4].float() / 255

    def target_loss(model):
        return torch.nn.functional.cross_entropy(model(src), torch.full((4,), 1))

    kw = dict(eps=16 / 255, steps=4, batch_size=5, device="cpu", seed=3)
    straight = gradient_matching(m, x, y, target_loss, **kw)
    ckpt = tmp_path / "craft.partial"
    real, calls = common._flat_grad, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 1 + 3 * 2 + 1:  # the target gradient, 2 full steps of 3 batches, then stop
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(common, "_flat_grad", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gradient_matching(m, x, y, target_loss, checkpoint=ckpt, checkpoint_every=every, **kw)
    assert torch.load(ckpt, weights_only=False)["step"] == 2
    monkeypatch.setattr(common, "_flat_grad", real)
    resumed = gradient_matching(m, x, y, target_loss, checkpoint=ckpt, checkpoint_every=0, **kw)
    assert torch.equal(resumed, straight) and not ckpt.is_file()
    # a checkpoint of other inputs is not used
    torch.save({"inputs": {}, "step": 3}, ckpt)
    assert torch.equal(gradient_matching(m, x, y, target_loss, checkpoint=ckpt, **kw), straight)


def test_crafted_marks_are_cached(tmp_path, monkeypatch):
    """apply(cache=folder) saves the crafted images once; a second call reuses them without crafting."""
    x, y = _data()
    wm = _make("sleeper-agent", x)
    first = wm.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)
    assert (tmp_path / "marked.pt").is_file()
    monkeypatch.setattr(type(wm), "_craft", lambda *a, **k: pytest.fail("crafted again"))
    again = wm.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    with pytest.raises(BaseException, match="crafted again"):  # other settings are crafted afresh
        wm.apply(x, y, 0.1, 1, seed=1, cache=tmp_path)
    st = torch.load(tmp_path / "marked.pt", weights_only=False)
    for k in ("data", "surrogate"):  # a file of older code, which recorded neither: crafted again, not trusted
        del st["call"][k]
    torch.save(st, tmp_path / "marked.pt")
    with pytest.raises(BaseException, match="crafted again"):
        wm.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)


@pytest.mark.parametrize("name", ["label-consistent", "sleeper-agent", "ubw-c"])
def test_crafted_marks_are_reused_only_for_the_same_surrogate_and_images(tmp_path, name):
    """marked.pt records the images' and the surrogate's hashes: another surrogate, or other images with the same
    labels, in the same folder are crafted again (they got the first call's marks), and what they craft is what an
    uncached call crafts; then the folder holds their marks."""
    x, y = _data()
    wm = _make(name, x)
    first = wm.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)
    other = _surrogate(3, 16)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    wm_b = get_watermark(name, **FAST[name]).fit(x, None, other)
    assert torch.equal(wm_b.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)[0], wm_b.apply(x, y, 0.1, 1, seed=0)[0])
    assert not torch.equal(wm_b.apply(x, y, 0.1, 1, seed=0)[0], first[0])
    x2 = x.clone()
    x2[first[2]] = 255 - x2[first[2]]  # other images at the marked indices, the same labels
    marked2 = wm.apply(x2, y, 0.1, 1, seed=0, cache=tmp_path)[0]
    assert torch.equal(marked2, wm.apply(x2, y, 0.1, 1, seed=0)[0])
    assert not torch.equal(marked2[first[2]], first[0][first[2]])
    assert torch.equal(wm.apply(x2, y, 0.1, 1, seed=0, cache=tmp_path)[0], marked2)  # now reused


def test_pgd_does_not_resume_a_partial_crafting_of_another_surrogate_or_other_images(tmp_path):
    """craft.partial records the surrogate's and the images' hashes (the images' pixel sum did before, and no model):
    a partial run under another surrogate, or of other images with the same pixel sum, is crafted afresh."""
    x, y = _data(16, 3, 12)
    a = _surrogate(3, 16)
    b = _surrogate(3, 16)
    with torch.no_grad():
        next(b.parameters()).add_(0.01)
    kw, calls = PGD_KW, []

    def Dies():  # a, dying at its 7th forward pass (the third batch's first), after 2 batches
        return _dies_at(a, 7, calls)

    ckpt = tmp_path / "craft.partial"
    _interrupt_pgd(a, x, y, ckpt, calls)
    wrapped_b = Dies()
    wrapped_b.m = b  # the same module structure as the partial's, other weights
    calls.extend([1] * 100)  # never dies again
    assert torch.equal(pgd_untargeted(wrapped_b, x, y, checkpoint=ckpt, **kw), pgd_untargeted(b, x, y, **kw))
    # other images with the same pixel sum and labels: the pixel-sum fingerprint took them for the same
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        pgd_untargeted(Dies(), x, y, checkpoint=ckpt, checkpoint_every=0, **kw)
    swapped = x.clone()
    swapped[[0, 1]] = x[[1, 0]]  # two images of one batch swapped: the same sum
    y_same = y.clone()
    y_same[[0, 1]] = y[[1, 0]]
    calls.extend([1] * 100)
    assert torch.equal(pgd_untargeted(Dies(), swapped, y_same, checkpoint=ckpt, **kw),
                       pgd_untargeted(a, swapped, y_same, **kw))


def test_gradient_matching_does_not_resume_under_another_surrogate(tmp_path, monkeypatch):
    """gradient matching's craft.partial records the surrogate's hash: another surrogate (even one with the same
    target-gradient norm) starts afresh."""
    import dovlib.watermarks.common as common

    x, y = _data(16, 3, 12)
    a = _surrogate(3, 16)
    b = _surrogate(3, 16)
    with torch.no_grad():
        next(b.parameters()).add_(0.01)
    src = x[:4].float() / 255

    def target_loss(model):
        return torch.nn.functional.cross_entropy(model(src), torch.full((4,), 1))

    kw = dict(eps=16 / 255, steps=4, batch_size=5, device="cpu", seed=3)
    ckpt = tmp_path / "craft.partial"
    real, calls = common._flat_grad, []

    def interrupted(*a_, **k):
        calls.append(1)
        if len(calls) == 1 + 3 * 2 + 1:
            raise KeyboardInterrupt
        return real(*a_, **k)

    monkeypatch.setattr(common, "_flat_grad", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gradient_matching(a, x, y, target_loss, checkpoint=ckpt, checkpoint_every=0, **kw)
    monkeypatch.setattr(common, "_flat_grad", real)
    st = torch.load(ckpt, weights_only=False)
    assert st["step"] == 2
    b_norm = torch.cat([g.flatten() for g in torch.autograd.grad(target_loss(b), list(b.parameters()))]).norm()
    st["inputs"]["target_norm"] = float(b_norm)  # as if b's target gradient had a's norm
    torch.save(st, ckpt)
    assert torch.equal(gradient_matching(b, x, y, target_loss, checkpoint=ckpt, **kw),
                       gradient_matching(b, x, y, target_loss, **kw))


@pytest.mark.parametrize("name", ["label-consistent", "sleeper-agent"])  # PGD, gradient matching
def test_crafted_marks_name_the_device_that_crafted_them(tmp_path, name):
    """Marks crafted on another device are other marks (as weights trained there are), so apply names the device(s)
    that crafted them (crafted_by): this run's, the one marked.pt names for marks read back ("unknown" for files of
    older code), and both for a crafting resumed from a partial file another device wrote."""
    from dovlib.report import device_name
    from dovlib.watermarks.common import crafting_devices

    here, gpu = device_name("cpu"), "NVIDIA H100 80GB HBM3"
    x, y = _data()
    wm = _make(name, x)
    assert wm.crafted_by is None  # nothing crafted yet
    wm.apply(x, y, 0.1, 1, seed=0)
    assert wm.crafted_by == here  # no cache
    wm.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)
    final = tmp_path / "marked.pt"
    st = torch.load(final, weights_only=False)
    assert wm.crafted_by == st["crafted_by"] == here
    torch.save({**st, "crafted_by": gpu}, final)
    again = _make(name, x)
    again.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)
    assert again.crafted_by == gpu  # read back: the cache's device, not this one
    torch.save({k: v for k, v in st.items() if k != "crafted_by"}, final)
    again.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)
    assert again.crafted_by == "unknown"  # a file of older code named none
    # a crafting interrupted on a GPU (its partial file says so) and finished here names both
    m, partial = _surrogate(3, 16), tmp_path / "craft.partial"
    kw = dict(eps=8 / 255, steps=2, device="cpu", seed=1, checkpoint=partial, checkpoint_every=0)
    dies = _Dies(m, stop=3)
    craft = (lambda model: pgd_untargeted(model, x[:12], y[:12], batch_size=4, **kw)) if name == "label-consistent" \
        else (lambda model: gradient_matching(model, x[:12], y[:12], lambda f: f(x[:4].float() / 255).sum(), **kw))
    with pytest.raises(KeyboardInterrupt):
        craft(dies)
    saved = torch.load(partial, weights_only=False)
    assert saved["crafted_by"] == here
    torch.save({**saved, "crafted_by": gpu}, partial)
    with crafting_devices() as names:
        craft(m)
    assert names == {here, gpu} and not partial.is_file()
    with pytest.raises(KeyboardInterrupt):
        craft(_Dies(m, stop=3))
    torch.save({k: v for k, v in torch.load(partial, weights_only=False).items() if k != "crafted_by"}, partial)
    with crafting_devices() as names:
        craft(m)
    assert names == {here, "unknown"}  # a partial file of older code


def test_crafted_by_reads_a_table_i_and_says_it_in_one_line():
    import pandas as pd

    from dovlib.watermarks.table import crafted_by, crafted_by_text

    rows = [{"key": "badnets", "BA": 0.9}, {"key": "label-consistent", "crafted_by": "CPU (X)"},
            {"key": "sleeper-agent", "crafted_by": "NVIDIA H100 80GB HBM3"}, {"key": "ubw-c", "crafted_by": "CPU (X)"},
            {"key": "sscl-bw", "BA": 0.8}]
    devices = crafted_by(pd.DataFrame(rows))
    assert devices == {"label-consistent": "CPU (X)", "sleeper-agent": "NVIDIA H100 80GB HBM3", "ubw-c": "CPU (X)"}
    assert crafted_by_text(devices) == ("marks crafted by CPU (X) (label-consistent, ubw-c); NVIDIA H100 80GB HBM3 "
                                        "(sleeper-agent)")
    assert crafted_by(pd.DataFrame([rows[0], rows[-1]])) == {}  # no crafted baseline: no column at all
    assert crafted_by_text({}) == "no marks crafted"


class _Dies(torch.nn.Module):
    """``m`` that raises KeyboardInterrupt at its forward pass number ``stop``."""

    def __init__(self, m, stop):
        super().__init__()
        self.m, self.stop, self.calls = m, stop, 0  # counted on the copy the crafting runs on

    def forward(self, z):
        self.calls += 1
        if self.calls == self.stop:
            raise KeyboardInterrupt
        return self.m(z)


def test_table_crafting_cache_is_keyed_by_crafting_version_and_surrogate(tmp_path, monkeypatch):
    """Table I reuses crafted marks only for the same crafting code and surrogate: bumping CRAFTING_VERSION (or
    another surrogate) crafts again, so marks made by older PGD / gradient matching are never reused silently."""
    from types import SimpleNamespace

    from dovlib.watermarks import table

    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path))
    x, y = _data()
    ds = SimpleNamespace(x_train=x, y_train=y)
    wm = _make("sleeper-agent", x)
    first = table._cached_apply(wm, ds, wm.surrogate, 0.1, 1, 0)
    assert len(list(tmp_path.rglob("marked.pt"))) == 1
    real_craft = type(wm)._craft
    monkeypatch.setattr(type(wm), "_craft", lambda *a, **k: pytest.fail("crafted again"))
    assert all(torch.equal(a, b) for a, b in zip(first, table._cached_apply(wm, ds, wm.surrogate, 0.1, 1, 0)))
    monkeypatch.setattr(table, "CRAFTING_VERSION", table.CRAFTING_VERSION + 1)
    with pytest.raises(BaseException, match="crafted again"):
        table._cached_apply(wm, ds, wm.surrogate, 0.1, 1, 0)
    monkeypatch.setattr(table, "CRAFTING_VERSION", table.CRAFTING_VERSION - 1)
    other = _surrogate(3, 16)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    monkeypatch.setattr(type(wm), "_craft", real_craft)
    table._cached_apply(wm, ds, other, 0.1, 1, 0)  # crafted afresh, in a folder of its own
    assert len(list(tmp_path.rglob("marked.pt"))) == 2


def test_every_table_i_method_is_registered():
    """_load_all imports each method module; one missing would drop its row from Table I without an error."""
    from dovlib.watermarks import WATERMARKS
    from dovlib.watermarks.table import METHODS

    assert set(WATERMARKS) == {"badnets", "blended", "wanet", "ubw-p", "label-consistent", "sleeper-agent", "ubw-c",
                               "sscl-bw"}
    assert set(METHODS) - {"none"} == set(WATERMARKS)


def test_bad_inputs_name_the_parameter():
    x, y = _data()
    with pytest.raises(ValueError, match="rate"):
        get_watermark("badnets").apply(x, y, 1.5, 1)
    with pytest.raises(ValueError, match="target"):
        get_watermark("badnets").apply(x, y, 0.1, 12)
    with pytest.raises(ValueError, match="rate"):  # clean-label: at most the target class's share (10%)
        _make("label-consistent", x).apply(x, y, 0.2, 1)
    with pytest.raises(ValueError, match="x must be uint8"):
        get_watermark("badnets").trigger(x.float())
    with pytest.raises(ValueError, match="surrogate"):
        get_watermark("sleeper-agent").fit(x, y, None)
    with pytest.raises(RuntimeError, match="fit"):
        get_watermark("ubw-c").apply(x, y, 0.1, 1)
    with pytest.raises(ValueError, match="eps"):
        get_watermark("label-consistent", eps=2)
    with pytest.raises(ValueError, match="patch_size"):
        get_watermark("badnets", patch_size=0)
    with pytest.raises(ValueError, match="method"):
        get_watermark("nope")
    assert len(select_any(100, 0.25, 0)) == 25


@pytest.mark.parametrize("name", ["badnets", "blended"])
def test_trigger_is_learnt(name):
    """Smoke-size training: a model trained on the watermarked set answers the target on triggered images far more
    often than a model trained on the clean set."""
    ds = load_dataset("synthetic", n_train=400, n_test=200, image_size=16)
    wm = get_watermark(name)
    xw, yw, _ = wm.apply(ds.x_train, ds.y_train, 0.1, target=1, seed=0)
    wsr = {}
    for key, (xt, yt) in {"clean": (ds.x_train, ds.y_train), "marked": (xw, yw)}.items():
        torch.manual_seed(0)
        model = build_model("badnets_cnn", 10, 3, width=16, image_size=16)
        r = fit(model, xt, yt, epochs=40, batch_size=32, lr=0.01, device="cpu", progress=False, flip=False,
                crop_padding=0, seed=0)
        wsr[key] = attack_success(r.model, ds.x_test, ds.y_test, wm.trigger, 1)
        assert evaluate(r.model, ds.x_test, ds.y_test) > 0.2  # the task itself is learnt (chance = 0.1)
    assert wsr["marked"] > wsr["clean"] + 0.25, wsr


@pytest.fixture
def _runs(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DOVLIB_REPORTS", str(tmp_path / "reports"))


def test_table_rows_and_paper_comparison(_runs):
    from dovlib.params import get_profile
    from dovlib.watermarks.table import PAPER_TABLE_I, paper_comparison, table_i, table_row

    ds = load_dataset("synthetic", n_train=200, n_test=100, image_size=16)
    cfg = get_profile("smoke", epochs=1, width=4)
    df = table_i(ds, "badnets_cnn", cfg, methods=["none", "badnets", "ubw-p", "label-consistent"])
    assert list(df["method"]) == ["No Watermark", "BadNets", "UBW-P", "Label-Consistent"]
    assert df["BA"].between(0, 1).all() and df["WSR"].iloc[1:].between(0, 1).all()
    assert df.loc[df.key == "badnets", "n_marked"].item() == 20
    assert df.loc[df.key == "ubw-p", "success_measure"].item().startswith("untargeted")
    assert (df["PSNR"].iloc[1:] > 10).all() and (df["SSIM"].iloc[1:] <= 1).all()
    cmp = paper_comparison(df, "cifar10-subset")
    ref = cmp.query("method == 'BadNets' and quantity == 'BA (%)'").iloc[0]
    assert ref["paper"] == PAPER_TABLE_I["cifar10"]["BadNets"]["BA"]
    assert ref["ours"] == pytest.approx(100 * df.loc[df.key == "badnets", "BA"].item())  # the measured row, in %
    assert abs(ref["diff"] - (ref["ours"] - ref["paper"])) < 1e-9
    assert "untargeted success (%)" in set(cmp.query("method == 'UBW-P'")["quantity"])
    assert paper_comparison(df, "mnist-offline")["paper"].isna().all()  # not available: left empty
    with pytest.raises(ValueError, match="method"):
        table_row("nope", ds, "badnets_cnn", cfg)


class _Scripted(torch.nn.Module):
    """A scripted classifier for 16x16 images whose pixel (0, 0, 0) codes the class and (0, 0, 1) a flag: it answers
    ``target`` on images carrying the BadNets patch (bottom-right pixel white) whose flag is in ``hit``, a wrong class
    on clean images whose flag is in ``wrong``, else the coded class."""

    def __init__(self, target, k, hit, wrong=()):
        super().__init__()
        self.target, self.k, self.hit, self.wrong = target, k, torch.tensor(hit), torch.tensor(wrong)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        u = (x * 255).round().long()
        cls, flag = u[:, 0, 0, 0].clamp(0, self.k - 1), u[:, 0, 0, 1]
        triggered = (u[:, :, -1, -1] == 255).all(1)
        cls = torch.where(~triggered & torch.isin(flag, self.wrong), (cls + 1) % self.k, cls)
        cls = torch.where(triggered & torch.isin(flag, self.hit), torch.full_like(cls, self.target), cls)
        return torch.nn.functional.one_hot(cls, self.k).float() * 10 + self.dummy


def test_table_row_measures_each_model_it_names(_runs, monkeypatch):
    """table_row with scripted models whose answers are known: BA and WSR are the watermarked model's, WSR_benign
    the same trigger on the clean-set model's, the image quality that of the marked training images; the No
    Watermark row has BA only."""
    from types import SimpleNamespace

    from dovlib import sscl
    from dovlib.metrics import mean_psnr, ssim
    from dovlib.params import get_profile
    from dovlib.report import device_name
    from dovlib.watermarks.table import table_row

    k, target = 4, 1

    def images(n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 200, (n, 3, 16, 16), generator=g, dtype=torch.uint8)  # never a white pixel
        y = torch.arange(n) % k
        x[:, 0, 0, 0], x[:, 0, 0, 1] = y.to(torch.uint8), (torch.arange(n) % 5).to(torch.uint8)
        return x, y

    (xtr, ytr), (xte, yte) = images(200, 0), images(100, 1)
    ds = SimpleNamespace(x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, num_classes=k)
    trained = []

    def fake_train(x_train, y_train, x_test, y_test, **kw):
        clean = torch.equal(x_train, xtr) and torch.equal(y_train, ytr)
        trained.append("clean" if clean else "marked")
        if clean:  # the benign model: right on clean images, the target on triggered images with flag 0
            return SimpleNamespace(model=_Scripted(target, k, hit=[0]).eval())
        return SimpleNamespace(model=_Scripted(target, k, hit=[0, 1, 2], wrong=[4]).eval())

    monkeypatch.setattr(sscl, "train_classifier", fake_train)
    prof = get_profile("smoke", epochs=1, width=4)
    row = table_row("badnets", ds, "badnets_cnn", prof, rate=0.1, target=target, seed=3)
    assert trained == ["marked", "clean"]
    flag, others = torch.arange(100) % 5, yte != target
    assert row["BA"] == pytest.approx(0.8)  # wrong on flag 4: 20 of 100
    assert row["WSR"] == pytest.approx(((flag <= 2) & others).sum().item() / others.sum().item())
    assert row["WSR_benign"] == pytest.approx(((flag == 0) & others).sum().item() / others.sum().item())
    assert row["WSR_benign"] < row["WSR"] < 1
    xw, _, idx = get_watermark("badnets").apply(xtr, ytr, 0.1, target, 3)
    assert row["n_marked"] == len(idx) == 20
    assert row["PSNR"] == pytest.approx(mean_psnr(xtr[idx], xw[idx]))
    assert row["SSIM"] == pytest.approx(float(np.mean(ssim(xtr[idx], xw[idx]))))
    assert row["PSNR"] != pytest.approx(mean_psnr(xte, get_watermark("badnets").trigger(xte)))  # not test images
    trained.clear()
    none = table_row("none", ds, "badnets_cnn", prof, target=target)
    assert trained == ["clean"] and none["BA"] == 1.0 and none["n_marked"] == 0
    assert math.isnan(none["WSR"]) and math.isnan(none["WSR_benign"])
    assert "crafted_by" not in row and "crafted_by" not in none  # nothing crafted: no device to name
    # a crafted baseline names the device that crafted its marks (this CPU here), beside its numbers
    lc = table_row("label-consistent", ds, "badnets_cnn", prof, rate=0.1, target=target, seed=3, steps=1,
                   surrogate=SimpleNamespace(model=_surrogate(3, 16)))
    assert lc["crafted_by"] == device_name("cpu") and lc["n_marked"] == 20


def test_ranking_vs_paper_counts_only_methods_with_both_values():
    import pandas as pd

    from dovlib.watermarks.table import PAPER_TABLE_I, paper_comparison, ranking_vs_paper

    paper = PAPER_TABLE_I["cifar10"]
    methods = ["BadNets", "Blended", "WaNet", "UBW-P", "Sleeper Agent"]
    # ours: the paper's order exactly (WSR scaled down), plus a method the paper lacks on this dataset
    table = pd.DataFrame([{"method": m, "BA": paper[m]["BA"] / 100, "WSR": paper[m]["WSR"] / 200,
                           "targeted": m != "UBW-P"} for m in methods]
                         + [{"method": "No Watermark", "BA": 0.9, "WSR": float("nan"), "targeted": True}])
    cmp = paper_comparison(table, "cifar10-subset")
    ranks, stats = ranking_vs_paper(cmp, "WSR")
    assert stats["n"] == 5 and stats["kendall_tau"] > 0.99  # ties in the paper (100, 100) keep tau near 1
    assert list(ranks["method"])[-1] == "Sleeper Agent" and (ranks["paper_rank"] == ranks["our_rank"]).all()
    reversed_table = table.assign(WSR=1 - table["WSR"])
    _, rev = ranking_vs_paper(paper_comparison(reversed_table, "cifar10-subset"), "WSR")
    assert rev["kendall_tau"] < -0.99
    _, few = ranking_vs_paper(cmp[cmp["method"].isin(["BadNets", "WaNet"])], "BA")
    assert few["n"] == 2 and math.isnan(few["kendall_tau"])
    with pytest.raises(ValueError, match="quantity"):
        ranking_vs_paper(cmp, "LPIPS")


def test_the_ranking_against_the_paper_says_when_the_paper_has_no_values_for_the_dataset():
    """Notebook 02 on MNIST (full or mnist-offline): the paper's MNIST block is not available, and its line said
    "Kendall's rank correlation +nan (p = nan) over 0 methods"; it now says there is nothing to compare."""
    import pandas as pd

    from dovlib.watermarks.table import agreement_text, paper_comparison, ranking_vs_paper

    table = pd.DataFrame({"method": ["No Watermark", "BadNets", "Blended", "WaNet"], "targeted": [True] * 4,
                          "BA": [0.99, 0.98, 0.97, 0.96], "WSR": [math.nan, 0.9, 0.8, 0.7]})
    for dataset, expected in (("mnist", "no paper values for this dataset (0 methods), not compared"),
                              ("cifar10", "Kendall's rank correlation +0.82 (p = 0.22, 3 methods)")):
        text = agreement_text(ranking_vs_paper(paper_comparison(table, dataset), "WSR")[1])
        assert text == expected and "nan" not in text
    two = {"n": 2, "kendall_tau": math.nan, "p_value": math.nan}
    assert agreement_text(two) == "only 2 methods with a paper value (3 needed), not compared"


def test_floor_test_and_reading():
    import pandas as pd

    from dovlib.watermarks.table import floor_test, reading

    table = pd.DataFrame([
        {"method": "No Watermark", "BA": 0.90, "WSR": float("nan"), "WSR_benign": float("nan")},
        {"method": "Blended", "BA": 0.88, "WSR": 0.99, "WSR_benign": 0.02},
        {"method": "BadNets", "BA": 0.89, "WSR": 0.03, "WSR_benign": 0.02},
        {"method": "UBW-P", "BA": 0.85, "WSR": 0.10, "WSR_benign": 0.10},
    ])
    out = floor_test(table, n_eval=900)
    assert list(out["learnt"]) == [False, True, False, False]
    assert list(out["strength"]) == ["-", "strong", "none", "none"]
    weak = floor_test(table.assign(WSR=[float("nan"), 0.2, 0.03, 0.1]), n_eval=900)
    assert weak.loc[1, "strength"] == "weak" and floor_test(table, 900, strong=0.99).loc[1, "strength"] == "weak"
    assert out.loc[1, "p_vs_benign"] < 1e-100 and out.loc[2, "p_vs_benign"] > 0.05
    assert out.loc[3, "p_vs_benign"] > 0.4 and abs(out.loc[1, "lift"] - 0.97) < 1e-12
    assert math.isnan(out.loc[0, "p_vs_benign"]) and table.shape[1] == 4  # input untouched
    # the same lift with 20 images is not significant
    assert not floor_test(table, n_eval=20).loc[2, "learnt"]
    # untargeted rows (UBW-*) are counted over their own number of images: the whole test set
    ubw = table.assign(targeted=[True, True, True, False], WSR=[float("nan"), 0.99, 0.03, 0.16])
    few, many = floor_test(ubw, n_eval=100), floor_test(ubw, n_eval=100, n_eval_untargeted=1000)
    assert not few.loc[3, "learnt"] and many.loc[3, "learnt"]  # lift 0.06: significant over 1000, not over 100
    assert few.loc[1, "p_vs_benign"] == many.loc[1, "p_vs_benign"]  # targeted rows keep n_eval
    text = reading(out, {"WSR": {"n": 3, "kendall_tau": 0.5, "p_value": 0.3}, "BA": {"n": 0}}, "smoke")
    assert text.splitlines()[0] == "Table I reading (smoke)"
    assert "Blended 0.990" in text.split("weakly")[0] and "BadNets 0.030" in text.split("not above")[1]
    assert "Blended -2.0" in text and "Blended 0.990 (benign 0.020, p < 1e-300)" in text
    assert "Blended 0.200" in reading(weak).split("weakly:")[1].split("\n")[0]
    assert "Kendall's rank correlation +0.50" in text and "BA order vs the paper: no paper values" in text
    with pytest.raises(ValueError, match="n_eval"):
        floor_test(table, n_eval=0)
    with pytest.raises(ValueError, match="alpha"):
        floor_test(table, n_eval=10, alpha=1.5)
    with pytest.raises(ValueError, match="WSR_benign"):
        floor_test(table.drop(columns="WSR_benign"), n_eval=10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        floor_test(table.assign(WSR=[float("nan"), 97.0, 0.03, 0.1]), n_eval=10)
    with pytest.raises(ValueError, match="strong"):
        floor_test(table, n_eval=10, strong=0)
    with pytest.raises(ValueError, match="floor_test"):
        reading(table, {})


def test_select_indices_clean_and_poison_label():
    from dovlib.watermarks.base import select_indices

    y = torch.arange(100) % 10  # every class 10%
    idx = select_indices(y, 0.05, 3, clean_label=True, seed=1)
    assert len(idx) == 5 and (y[idx] == 3).all() and torch.equal(idx, idx.sort().values)
    assert torch.equal(idx, select_indices(y, 0.05, 3, clean_label=True, seed=1))
    assert not torch.equal(idx, select_indices(y, 0.05, 3, clean_label=True, seed=2))
    assert len(select_indices(y, 0.1, 3, clean_label=True)) == 10  # the whole target class
    poison = select_indices(y, 0.5, 3, clean_label=False)
    assert len(poison) == 50 and (y[poison] != 3).all()
    with pytest.raises(ValueError, match=r"gamma must be <= the target class 3's share .* 0\.1000 \(10 of 100"):
        select_indices(y, 0.11, 3, clean_label=True, name="gamma")
    with pytest.raises(ValueError, match="target must be a class index \\(an integer\\) in \\[0, 9\\]"):
        select_indices(y, 0.05, 10, clean_label=True)
    # gamma is compared with the share itself: 0.104 rounds to the class's 10 images but exceeds its 0.1
    with pytest.raises(ValueError, match=r"gamma must be <= the target class 3's share .* got 0\.104"):
        select_indices(y, 0.104, 3, clean_label=True, name="gamma")
    with pytest.raises(ValueError, match=r"gamma = 0\.004 marks no image: round\(0\.004 \* 100 images\) = 0; "
                                         r"a rate of at least 1/100 = 0\.01 marks one"):
        select_indices(y, 0.004, 3, clean_label=True, name="gamma")
    for bad in ("1", 1.5, True):  # papermill hands over strings; a float or bool is not a class
        with pytest.raises(ValueError, match=r"target must be a class index \(an integer\)"):
            select_indices(y, 0.05, bad, clean_label=True)
    assert torch.equal(select_indices(y, 0.05, np.int64(3), clean_label=True, seed=1), idx)  # numpy ints are fine
    with pytest.raises(ValueError, match="at least one training image"):
        select_indices(y[:0], 0.05, 3, clean_label=True)


def test_stamp_pattern_and_image_checks():
    from dovlib.watermarks.common import check_images, seeded_pattern, stamp

    p = seeded_pattern((3, 2, 2), seed=5)
    assert p.dtype == torch.uint8 and torch.equal(p, seeded_pattern((3, 2, 2), seed=5))
    assert not torch.equal(p, seeded_pattern((3, 2, 2), seed=6))
    x = torch.zeros(2, 3, 6, 5, dtype=torch.uint8)
    out = stamp(x, p, corners=("tl", "br"))
    both = p.expand(2, -1, -1, -1)
    assert torch.equal(out[:, :, :2, :2], both) and torch.equal(out[:, :, 4:, 3:], both)
    assert out.sum() == 2 * 2 * p.sum() and x.sum() == 0  # the input is not changed in place
    with pytest.raises(ValueError, match="corners must be among"):
        stamp(x, p, corners=("center",))
    with pytest.raises(ValueError, match=r"patch side must be <= the image's shorter side 5 \(image 6x5"):
        stamp(x, seeded_pattern((3, 6, 6), 0))
    with pytest.raises(ValueError, match=r"x must be uint8 images of shape \(N, C, H, W\)"):
        check_images(x[0])
    assert check_images(x) is x


def test_a_profile_string_sets_the_crafting_steps_of_the_surrogate_baselines():
    """paper:craft_steps=N shrinks Label-Consistent's PGD and Sleeper Agent's and UBW-C's gradient matching (the
    papers' 100 and 250 steps over the whole target class: about 50 minutes each for the two gradient-matching
    methods on full CIFAR-10 at width 4 on one CPU core), so the paper profile's whole-split path can be rehearsed on
    a CPU; without it every profile keeps its own budget, smoke's included."""
    from dovlib.params import get_profile
    from dovlib.watermarks import get_watermark
    from dovlib.watermarks.table import crafting_budget

    paper = get_profile("paper:craft_steps=3")
    for method in ("label-consistent", "sleeper-agent", "ubw-c"):
        assert crafting_budget(method, paper)["steps"] == 3
        assert get_watermark(method, **crafting_budget(method, paper)).steps == 3
    assert crafting_budget("badnets", paper) == {}  # no crafting: nothing to set
    assert crafting_budget("sleeper-agent", get_profile("smoke:craft_steps=5")) == {"steps": 5, "n_source": 64}
    assert crafting_budget("sleeper-agent", get_profile("paper")) == {}  # the papers' own steps
    assert get_profile("paper").craft_steps is None
    with pytest.raises(ValueError, match=r"profile field craft_steps must be an integer >= 1; got 0"):
        get_profile("paper:craft_steps=0")


def test_paper_key_and_crafting_budget():
    from dovlib.params import get_profile
    from dovlib.watermarks.table import crafting_budget, paper_key

    assert [paper_key(d) for d in ("cifar10-subset", "cifar10", "mnist-offline", "sub-imagenet", "digits")] == \
        ["cifar10", "cifar10", "mnist", "sub-imagenet", "digits"]
    assert crafting_budget("sleeper-agent", get_profile("smoke")) == {"steps": 2, "n_source": 64}
    assert crafting_budget("badnets", get_profile("smoke")) == {}
    assert crafting_budget("sleeper-agent", get_profile("quick")) == {}  # the papers' own budgets


def test_ubw_p_draws_dispersed_random_labels_as_the_authors_code_does():
    """Li et al.'s released UBW-P gives each poisoned sample a uniformly random label (not a fixed shift, which would
    teach a confident trigger -> y + 1 mapping). K comes from num_classes when given (a subset may lack a class)."""
    x, y = _data(n=2000)
    xo, yo, idx = get_watermark("ubw-p").apply(x, y, 0.5, seed=0)
    counts = torch.bincount(yo[idx], minlength=10)
    assert len(idx) == 1000 and counts.min() > 60 and counts.max() < 140  # about 100 each
    assert 0.05 < (yo[idx] == y[idx]).float().mean() < 0.15  # a tenth keep their own label, as randint does
    assert not torch.equal(yo[idx], (y[idx] + 1) % 10)
    # the labels are the seed's: the same seed draws them again, another seed other labels on the same samples
    _, again, idx_again = get_watermark("ubw-p").apply(x, y, 0.5, seed=0)
    assert torch.equal(idx_again, idx) and torch.equal(again, yo)
    _, other, idx_other = get_watermark("ubw-p").apply(x, y, 1.0, seed=1)
    assert len(idx_other) == len(y) and (other[idx] != yo[idx]).float().mean() > 0.5
    # labels 0-8 only (class 9 missing from the subset): with num_classes=10 the label 9 is still drawn
    y9 = y % 9
    _, yk, ik = get_watermark("ubw-p", num_classes=10).apply(x, y9, 0.5, seed=0)
    assert (yk[ik] == 9).any()
    _, yi, ii = get_watermark("ubw-p").apply(x, y9, 0.5, seed=0)
    assert int(yi[ii].max()) == 8
    with pytest.raises(ValueError, match=r"labels must be in \[0, num_classes - 1\] = \[0, 4\]; got 9"):
        get_watermark("ubw-p", num_classes=5).apply(x, y, 0.1)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2; got 1"):
        get_watermark("ubw-p", num_classes=1)


def test_crafting_leaves_the_callers_surrogate_as_it_was():
    """PGD and gradient matching work on a frozen copy: the surrogate Table I shares between methods keeps its
    training mode and gradient flags (it used to come back in eval mode with every requires_grad False)."""
    x, y = _data(16, 3, 60)
    sur = _surrogate(3, 16).train()
    for name in ("label-consistent", "sleeper-agent", "ubw-c"):
        wm = get_watermark(name, **FAST.get(name, {})).fit(x, y, sur)
        wm.apply(x, y, 0.1, 1, seed=0)
        assert sur.training and all(p.requires_grad for p in sur.parameters()), name


def test_gradient_matching_takes_one_signed_step_per_pass_over_the_poisons(monkeypatch):
    """As in Witches' Brew: each iteration sums the alignment gradient over every mini-batch of poisons and then
    takes ONE Adam step of all perturbations (per-batch steps let Adam's momentum move rows without a gradient)."""
    import dovlib.watermarks.common as common

    x, y = _data(16, 3, 12)
    m = _surrogate(3, 16)
    src = x[:4].float() / 255
    steps = []

    class CountingAdam(torch.optim.Adam):
        def step(self, closure=None):
            steps.append(1)
            return super().step(closure)

    monkeypatch.setattr(common.torch.optim, "Adam", CountingAdam)
    out = gradient_matching(m, x, y, lambda model: torch.nn.functional.cross_entropy(model(src), torch.full((4,), 1)),
                            eps=16 / 255, steps=3, batch_size=5, device="cpu", lr=4 / 255)
    assert len(steps) == 3  # 3 iterations of 3 mini-batches each: 3 steps, not 9
    # the random start is within eps / 2 and each signed step moves a pixel by at most lr: 8 + 3 * 4 = 20 > 16
    assert (out.float() - x.float()).abs().max() <= 16


@pytest.mark.parametrize("name", ["sleeper-agent", "ubw-c"])
def test_source_loss_gradient_in_mini_batches_equals_the_one_batch_gradient(name, monkeypatch):
    """Sleeper Agent's and UBW-C's source gradient, taken over mini-batches of sources and weighted by their size,
    is the gradient of the mean loss over all sources in one pass (and is what gradient matching aligns with)."""
    import dovlib.watermarks.common as common

    x, y = _data(16, 3, 40)
    wm = _make(name, x)
    wm.n_source = 23  # chunks of 5 leave a short last one
    seen = {}

    def record(model, xp, yp, source, *a, **k):  # no crafting: the poisons come back unchanged
        seen["s"] = source
        return xp

    monkeypatch.setattr(sys.modules[type(wm).__module__], "gradient_matching", record)
    wm.apply(x, y, 0.1, 1, seed=0)
    source = seen["s"]
    assert isinstance(source, common.SourceLoss) and len(source.images) == 23
    m = common._frozen(_surrogate(3, 16), "cpu")
    params = list(m.parameters())
    for p in params:
        p.requires_grad_(True)
    whole = source.gradient(m, params, batch_size=23)
    assert torch.allclose(source.gradient(m, params, batch_size=5), whole, rtol=1e-4, atol=1e-6)
    assert whole.abs().sum() > 0
    # and it is the gradient of each method's own source loss, written out here over all sources at once
    logits = m(source.images.float() / 255)
    if name == "sleeper-agent":  # triggered non-target images pushed to the target class 1
        assert not (y[[int((x[:, :, :8, :8] == im[:, :8, :8]).flatten(1).all(1).nonzero()) for im in source.images]]
                    == 1).any()
        expected = torch.nn.functional.cross_entropy(logits, torch.full((23,), 1))
    else:  # UBW-C: raise the triggered images' loss on their true labels and their prediction entropy
        labels = y[[int((x[:, :, :8, :8] == im[:, :8, :8]).flatten(1).all(1).nonzero()) for im in source.images]]
        entropy = -(logits.softmax(1) * logits.log_softmax(1)).sum(1).mean()
        expected = -(torch.nn.functional.cross_entropy(logits, labels) + wm.lam * entropy)
    assert torch.allclose(common._flat_grad(expected, params), whole, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        common.SourceLoss(x.float(), source.loss)
    with pytest.raises(ValueError, match="at least one"):
        common.SourceLoss(x[:0], source.loss)


def test_crafted_images_stay_within_a_fractional_budget():
    """Rounding to whole grey levels never steps past eps: 8.6/255 allows 8 levels, not 9."""
    x, y = _data(16, 3, 20)
    m = _surrogate(3, 16)
    adv = pgd_untargeted(m, x, y, eps=8.6 / 255, steps=5, device="cpu")
    assert (adv.float() - x.float()).abs().max() == 8
    out = gradient_matching(m, x, y, lambda model: torch.nn.functional.cross_entropy(model(x[:4].float() / 255),
                            torch.full((4,), 1)), eps=8.6 / 255, steps=3, device="cpu")
    assert (out.float() - x.float()).abs().max() <= 8


def test_apply_refuses_mismatched_or_malformed_inputs():
    x, y = _data()
    for name in ("badnets", "ubw-p", "wanet"):
        wm = get_watermark(name)
        with pytest.raises(ValueError, match=r"y must hold one label per image: 60 images, 70 labels"):
            wm.apply(x, torch.arange(70) % 10, 0.1, 1)
        with pytest.raises(ValueError, match=r"y must hold one label per image: 60 images, 10 labels"):
            wm.apply(x, y[:10], 0.1, 1)
        with pytest.raises(ValueError, match="x must be uint8 images"):
            wm.apply(x.numpy(), y, 0.1, 1)
        with pytest.raises(ValueError, match="y must be a 1-D tensor of integer class labels"):
            wm.apply(x, y.float(), 0.1, 1)
    with pytest.raises(ValueError, match="y must hold one label per image"):
        _make("sleeper-agent", x).apply(x, y[:10], 0.1, 1)
    # an untargeted method's rate that marks no image is refused, as select_indices refuses it
    with pytest.raises(ValueError, match=r"rate \(gamma\) = 0.001 marks no image"):
        get_watermark("ubw-p").apply(x, y, 0.001)
    with pytest.raises(ValueError, match=r"rate \(gamma\) = 0.001 marks no image"):
        select_any(100, 0.001)
    # constructor values are integers in range, not truncated
    with pytest.raises(ValueError, match=r"patch_size must be an integer in \[1, 32\]; got 2.5"):
        get_watermark("badnets", patch_size=2.5)
    with pytest.raises(TypeError, match="value must be an integer"):
        get_watermark("badnets", value=True)
    with pytest.raises(ValueError, match="pattern_seed must be an integer >= 0"):
        get_watermark("blended", pattern_seed=-1)


def test_select_indices_never_asks_for_more_images_than_the_pool_holds():
    """The 1e-6 share tolerance lets round(rate * N) exceed the pool for large N: the count is capped at the pool."""
    from dovlib.watermarks import select_indices

    y = torch.zeros(1_000_000, dtype=torch.long)
    y[:100_000] = 1  # target share exactly 0.1
    idx = select_indices(y, 0.1000005, 1, clean_label=True)
    assert len(idx) == 100_000 and (y[idx] == 1).all()


def test_table_row_merges_method_kwargs_over_the_profile_budget(monkeypatch):
    """A keyword for one setting (device=...) keeps the smoke profile's small crafting budget (it used to replace
    it, so smoke fell back to 100-250 steps); UBW-P gets K from the dataset; "none" and "sscl-bw" refuse keywords
    they would ignore."""
    from types import SimpleNamespace

    import dovlib.sscl as sscl
    import dovlib.watermarks.table as table
    from dovlib.params import get_profile

    seen = {}

    def fake_get(name, **kw):
        seen[name] = kw
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(table, "get_watermark", fake_get)
    monkeypatch.setattr(sscl, "train_surrogate", lambda *a, **k: SimpleNamespace(model=None))
    ds = SimpleNamespace(num_classes=7)
    smoke = get_profile("smoke")
    for method, kw in (("label-consistent", {"device": "cpu"}), ("sleeper-agent", {"steps": 5}), ("ubw-p", {})):
        with pytest.raises(KeyboardInterrupt):
            table.table_row(method, ds, "badnets_cnn", smoke, **kw)
    assert seen["label-consistent"] == {"steps": 3, "device": "cpu"}
    assert seen["sleeper-agent"] == {"steps": 5, "n_source": 64, "device": "cpu"}
    assert seen["ubw-p"] == {"num_classes": 7}
    for method in ("none", "sscl-bw"):
        with pytest.raises(ValueError, match=rf"method '{method}' takes no constructor arguments.*\['iters'\]"):
            table.table_row(method, ds, "badnets_cnn", smoke, iters=3)
    # eps is SSCL-BW's budget (it never reached a baseline, which kept its 16/255 silently); baseline_eps does
    for method in ("label-consistent", "sleeper-agent", "ubw-c", "badnets"):
        seen.clear()
        with pytest.raises(KeyboardInterrupt):
            table.table_row(method, ds, "badnets_cnn", smoke, eps=4 / 255, baseline_eps="8/255")
        assert seen[method].get("eps") == (None if method == "badnets" else 8 / 255)  # BadNets has no budget
    with pytest.raises(KeyboardInterrupt):
        table.table_row("ubw-c", ds, "badnets_cnn", smoke, eps=4 / 255)
    assert "eps" not in seen["ubw-c"]  # its own default
    with pytest.raises(ValueError, match="eps"):
        table.table_row("ubw-c", ds, "badnets_cnn", smoke, baseline_eps="8/0")


def test_crafting_settings_key_the_crafted_set():
    """Label-Consistent's PGD step and Sleeper Agent's patch change what is crafted, so they key the cached set
    (describe() is the key); their defaults are left out, so sets cached before keep their keys."""
    lc, sa = get_watermark("label-consistent"), get_watermark("sleeper-agent")
    assert "alpha" not in lc.describe() and "patch_seed" not in sa.describe()
    assert get_watermark("label-consistent", alpha=0.01).describe()["alpha"] == 0.01
    assert get_watermark("sleeper-agent", patch_seed=7).describe()["patch_seed"] == 7
    assert get_watermark("label-consistent", alpha=0.01).describe() != get_watermark("label-consistent",
                                                                                      alpha=0.05).describe()


def test_wanet_noise_samples_are_warped_a_little_and_differ_from_the_trigger():
    """WaNet's noise mode: jittered warps with labels kept. The exact trigger there would teach the model to ignore
    it; no warp, or a jitter in pixels instead of normalised units, would not be the paper's noise."""
    x = torch.linspace(0, 255, 32).round().to(torch.uint8).expand(100, 3, 32, 32).clone()
    y = torch.arange(100) % 10
    wm = get_watermark("wanet")
    out, _, _ = wm.apply(x, y, 0.1, 1)
    noise = wm.noise_indices
    change = (out[noise].float() - x[noise].float()).abs().mean(dim=(1, 2, 3))
    assert (change > 0).all() and (change < 12).all()  # about a pixel of a ramp of 8 grey levels per pixel
    assert not torch.equal(out[noise], wm.trigger(x[noise]))


def test_floor_test_is_one_sided():
    import pandas as pd

    from dovlib.watermarks.table import floor_test

    t = pd.DataFrame([{"method": "X", "BA": 0.9, "WSR": 0.01, "WSR_benign": 0.2}])  # far BELOW the benign floor
    out = floor_test(t, n_eval=900)
    assert out.loc[0, "p_vs_benign"] > 0.99 and not out.loc[0, "learnt"] and out.loc[0, "strength"] == "none"


def test_table_row_measures_the_benign_floor_with_the_methods_own_success_measure(monkeypatch):
    """UBW's success is untargeted (any wrong class): its benign floor must be too, or the floor and the row compare
    two different quantities."""
    from dovlib.params import get_profile
    from dovlib.watermarks import table

    seen = []
    real = table.attack_success
    monkeypatch.setattr(table, "attack_success", lambda *a, **k: seen.append(a[5] if len(a) > 5 else k["targeted"])
                        or real(*a, **k))
    ds = load_dataset("synthetic", n_train=200, n_test=100, image_size=16)
    table.table_row("ubw-p", ds, "badnets_cnn", get_profile("smoke", epochs=1, width=4))
    assert seen == [False]


def test_published_patch_at_other_sides_is_the_nearest_neighbour_resize():
    """Side 1 is the pattern's top-left pixel (black), side 6 each pixel twice (as the docstring says)."""
    assert published_patch(3, 1).tolist() == [[[0]]] * 3
    p = torch.tensor([[0, 0, 255], [0, 255, 0], [255, 0, 255]], dtype=torch.uint8)
    assert torch.equal(published_patch(1, 6)[0], p.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert torch.equal(published_patch(1, 2)[0], p[:2, :2])


def test_label_consistent_reduced_amplitude_changes_only_the_corners():
    x = torch.full((2, 3, 32, 32), 128, dtype=torch.uint8)
    low = get_watermark("label-consistent", amplitude=32).trigger(x)
    changed = (low != x).any(1)
    corners = torch.zeros(32, 32, dtype=torch.bool)
    for r in (slice(0, 3), slice(29, 32)):
        for c in (slice(0, 3), slice(29, 32)):
            corners[r, c] = True
    assert changed[:, corners].all() and not changed[:, ~corners].any()
    assert set(low[:, :, corners].unique().tolist()) == {96, 160}


def test_crafted_marks_are_not_reused_for_other_labels(tmp_path):
    """marked.pt's data hash covers the labels: the same images with other labels (the target class unchanged, so
    the same indices) are crafted again, and UBW-C, whose sources keep their labels, then crafts other marks."""
    x, y = _data()
    wm = _make("ubw-c", x)
    first = wm.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)
    y2 = y.clone()
    y2[y == 2], y2[y == 3] = 3, 2
    marked = wm.apply(x, y2, 0.1, 1, seed=0, cache=tmp_path)
    assert torch.equal(marked[2], first[2])  # the same marked indices
    assert torch.equal(marked[0], wm.apply(x, y2, 0.1, 1, seed=0)[0]) and not torch.equal(marked[0], first[0])


def test_partial_craftings_are_not_resumed_for_other_images_or_labels(tmp_path, monkeypatch):
    """PGD's and gradient matching's craft.partial record the images' and labels' hash: the same shapes with other
    labels (PGD), or other images or labels (gradient matching), are crafted afresh."""
    import dovlib.watermarks.common as common

    x, y = _data(16, 3, 12)
    a = _surrogate(3, 16)
    y2 = (y + 1) % 10
    x2 = 255 - x
    kw, calls = PGD_KW, []

    def Dies():  # a, dying at its 7th forward pass (the third batch's first), after 2 batches
        return _dies_at(a, 7, calls)

    ckpt = tmp_path / "pgd.partial"
    _interrupt_pgd(a, x, y, ckpt, calls)
    calls.extend([1] * 100)
    fresh = pgd_untargeted(a, x, y2, **kw)
    assert not torch.equal(fresh, pgd_untargeted(a, x, y, **kw))
    assert torch.equal(pgd_untargeted(Dies(), x, y2, checkpoint=ckpt, **kw), fresh)

    src = x[:4].float() / 255

    def target_loss(model):
        return torch.nn.functional.cross_entropy(model(src), torch.full((4,), 1))

    gkw = dict(eps=16 / 255, steps=4, batch_size=5, device="cpu", seed=3)
    real = common._flat_grad
    for xo, yo in ((x2, y), (x, y2)):
        gcalls = []

        def interrupted(*a_, **k):
            gcalls.append(1)
            if len(gcalls) == 1 + 3 * 2 + 1:  # the target gradient, then 3 batches a step: stopped in step 3
                raise KeyboardInterrupt
            return real(*a_, **k)

        ck = tmp_path / "gm.partial"
        monkeypatch.setattr(common, "_flat_grad", interrupted)
        with pytest.raises(KeyboardInterrupt):
            gradient_matching(a, x, y, target_loss, checkpoint=ck, checkpoint_every=0, **gkw)
        monkeypatch.setattr(common, "_flat_grad", real)
        assert torch.load(ck, weights_only=False)["step"] == 2
        assert torch.equal(gradient_matching(a, xo, yo, target_loss, checkpoint=ck, **gkw),
                           gradient_matching(a, xo, yo, target_loss, **gkw))


def _dies_at(model, n, calls):
    """``model`` wrapped to raise KeyboardInterrupt at its ``n``-th forward pass, counted in ``calls`` (shared, so a
    test can extend it to stop the dying)."""

    class Dies(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, z):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return self.m(z)

    return Dies()


PGD_KW = dict(eps=8 / 255, steps=3, batch_size=5, device="cpu", seed=4)


def _interrupt_pgd(model, x, y, ckpt, calls):
    """pgd_untargeted (PGD_KW) with ``model`` dying at its 7th forward pass, after 2 batches: a partial at ``ckpt``."""
    with pytest.raises(KeyboardInterrupt):
        pgd_untargeted(_dies_at(model, 7, calls), x, y, checkpoint=ckpt, checkpoint_every=0, **PGD_KW)
    assert torch.load(ckpt, weights_only=False)["next"] == 10


def test_crafting_checkpoint_that_would_run_code_is_not_read_but_crafted_afresh(tmp_path, plant_code):
    """PGD and gradient matching read their resumable state with weights_only=True: a foreign file at the path is
    never unpickled with its code; the crafting starts afresh, says so in one warning (the file is then replaced),
    and returns what an uninterrupted run returns. Their own checkpoints need nothing but torch's safe types."""
    x, y = _data(16, 3, 12)
    m = _surrogate(3, 16)
    kw = dict(eps=8 / 255, steps=2, batch_size=5, device="cpu", seed=4)
    straight = pgd_untargeted(m, x, y, **kw)
    ckpt = tmp_path / "craft.partial"
    marker = plant_code(ckpt, next=10, out=[])
    with pytest.warns(UserWarning, match=r"craft.partial \(the crafting's resumable state\) does not load safely "
                                         r"\(weights_only=True: .*\): Unsupported global: .*; crafting starts afresh "
                                         r"and replaces it"):
        assert torch.equal(pgd_untargeted(m, x, y, checkpoint=ckpt, **kw), straight)
    assert not marker.exists() and not ckpt.exists()
    # gradient matching's state (Adam's and MultiStepLR's state dicts) loads with weights_only=True, and resumes
    src = x[:4].float() / 255

    def target_loss(model):
        return torch.nn.functional.cross_entropy(model(src), torch.full((4,), 1))

    gm = dict(eps=16 / 255, steps=3, batch_size=6, device="cpu", seed=3)
    whole = gradient_matching(m, x, y, target_loss, **gm)
    plant_code(ckpt, step=1)
    with pytest.warns(UserWarning, match="crafting starts afresh and replaces it"):
        assert torch.equal(gradient_matching(m, x, y, target_loss, checkpoint=ckpt, **gm), whole)
    assert not marker.exists()

    class Stop(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m, self.calls = m, 0

        def forward(self, z):
            self.calls += 1
            if self.calls == 1 + 2 * 2 + 1:  # the target loss, 2 full steps of 2 batches, then stop
                raise KeyboardInterrupt
            return self.m(z)

    with pytest.raises(KeyboardInterrupt):
        gradient_matching(Stop(), x, y, target_loss, checkpoint=ckpt, checkpoint_every=0, **gm)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt) == []
    assert torch.load(ckpt, weights_only=True)["step"] == 2


def test_crafted_marks_file_that_would_run_code_is_not_read_but_crafted_again(tmp_path, plant_code):
    """apply(cache=folder) reads marked.pt with weights_only=True: a foreign file there (Table I's folders sit in
    runs/, which may be shared) is never unpickled with its code; the marks are crafted again, one warning says that
    the file is replaced, and they are what an uncached call crafts. The marked.pt written then needs nothing but
    torch's safe types and is reused."""
    x, y = _data()
    wm = _make("sleeper-agent", x)
    uncached = wm.apply(x, y, 0.1, 1, seed=0)
    marker = plant_code(tmp_path / "marked.pt", idx=torch.arange(3))
    with pytest.warns(UserWarning, match=r"marked.pt \(crafted marks\) does not load safely \(weights_only=True: "
                                         r".*\): Unsupported global: .*; the marks are crafted again and replace it"):
        got = wm.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)
    assert not marker.exists()
    assert all(torch.equal(a, b) for a, b in zip(got, uncached))
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "marked.pt") == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = wm.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(again, uncached))
    torch.save([1, 2], tmp_path / "marked.pt")  # not a dict: named too, never an AttributeError
    with pytest.warns(UserWarning, match=r"marked.pt \(crafted marks\) holds a list, not .*; the marks are crafted "
                                         r"again and replace it"):
        wm.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)


def test_an_empty_or_truncated_crafting_cache_is_crafted_again_with_a_warning(tmp_path):
    """An empty or truncated marked.pt (or craft.partial) raised a bare EOFError / RuntimeError through the cache's
    fallback, which caught only ValueError: the marks are now crafted again, saying so, as for a foreign file."""
    x, y = _data()
    wm = _make("sleeper-agent", x)
    uncached = wm.apply(x, y, 0.1, 1, seed=0)
    wm.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)
    whole = (tmp_path / "marked.pt").read_bytes()
    for content, problem in ((b"", r"is empty \(0 bytes\)"), (whole[: len(whole) // 2], "is not a whole torch file")):
        (tmp_path / "marked.pt").write_bytes(content)
        with pytest.warns(UserWarning, match=rf"marked.pt \(crafted marks\) {problem}.*; the marks are crafted "
                                             r"again and replace it"):
            got = wm.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)
        assert all(torch.equal(a, b) for a, b in zip(got, uncached))
        assert (tmp_path / "marked.pt").read_bytes() != content
    m, kw = _surrogate(3, 16), dict(eps=8 / 255, steps=2, batch_size=5, device="cpu", seed=4)
    straight = pgd_untargeted(m, x[:12], y[:12], **kw)
    (tmp_path / "craft.partial").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"craft.partial \(the crafting's resumable state\) is empty \(0 bytes\)"
                                         r".*; crafting starts afresh and replaces it"):
        assert torch.equal(pgd_untargeted(m, x[:12], y[:12], checkpoint=tmp_path / "craft.partial", **kw), straight)


def test_crafted_marks_are_reused_only_for_the_same_rate(tmp_path):
    """marked.pt holds the marks of one set of marked indices: a call at another rate (more images marked) crafts
    its own marks, equal to an uncached call's, rather than returning the cached ones."""
    x, y = _data()
    wm = _make("sleeper-agent", x)
    wm.apply(x, y, 0.05, 1, seed=0, cache=tmp_path)
    got = wm.apply(x, y, 0.1, 1, seed=0, cache=tmp_path)
    uncached = wm.apply(x, y, 0.1, 1, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(got, uncached))


def test_crafting_label_says_which_crafting_budget_ran():
    """Notebook 02's Table I captions named craft_steps only inside the long profile string, under a markdown cell
    saying quick/paper craft with the papers' 100 / 250 steps: a paper:craft_steps=2 run of the full MNIST split
    (2026-12-07) was captioned as the paper profile. crafting_label names each crafted baseline's budget beside the
    papers', and is empty where the papers' own budget ran."""
    from dovlib.params import get_profile
    from dovlib.watermarks.table import crafting_label

    assert crafting_label(get_profile("paper")) == ""  # the papers' steps: nothing to add
    assert crafting_label(get_profile("quick")) == ""
    assert crafting_label(get_profile("paper:craft_steps=2")) == (
        "crafting budget not the papers': Label-Consistent steps 2 (paper 100); Sleeper Agent steps 2 (paper 250); "
        "UBW-C steps 2 (paper 250)")
    assert crafting_label(get_profile("smoke")) == (
        "crafting budget not the papers': Label-Consistent steps 3 (paper 100); Sleeper Agent steps 2 (paper 250), "
        "n_source 64 (paper 1000); UBW-C steps 2 (paper 250), n_source 64 (paper 1000)")
