import json
import math
import shutil
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dovlib import sscl
from dovlib.data import load_dataset
from dovlib.params import get_profile
from dovlib.perceptual import PerceptualWeightsMissing
from dovlib.sscl import (GeneratorConfig, SSCLGenerator, get_or_train_generator, key_hash, load_watermarked,
                         save_watermarked, train_generator, watermark_dataset)
from dovlib.train import data_hash, evaluate
from dovlib.watermarks import get_watermark


@pytest.fixture(autouse=True)
def _runs(tmp_path, monkeypatch):
    monkeypatch.setenv("DOVLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DOVLIB_REPORTS", str(tmp_path / "reports"))


def _saturated(g: SSCLGenerator) -> SSCLGenerator:
    with torch.no_grad():
        for p in g.unet.outc.parameters():
            p.mul_(1000)
    return g


@pytest.mark.parametrize("eps", [4 / 255, 8 / 255, 0.1])
def test_generator_stays_in_the_eps_ball_and_valid_range(eps):
    torch.manual_seed(0)
    g = _saturated(SSCLGenerator(3, eps, key=7, width=4, depth=2)).eval()
    x = torch.rand(6, 3, 20, 20)
    out = g(x)
    assert out.min() >= 0 and out.max() <= 1
    assert (out - x).abs().max() <= eps + 1e-6
    assert (out - x).abs().max() > 0.5 * eps  # saturated: the ball is used, not just respected
    xu = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8)
    mu = g.mark(xu)
    assert mu.dtype == torch.uint8 and (mu.int() - xu.int()).abs().max() <= int(eps * 255 + 1e-6)


def test_owner_key_changes_the_watermark_and_is_reproducible():
    x = torch.rand(4, 3, 16, 16)
    gens = []
    for key in (1, 1, 2):
        torch.manual_seed(0)
        gens.append(SSCLGenerator(3, 8 / 255, key=key, width=4, depth=2).eval())
    assert torch.equal(gens[0](x), gens[1](x))
    assert not torch.allclose(gens[0](x), gens[2](x))
    assert key_hash(1) != key_hash(2) and len(key_hash(1)) == 16
    import hashlib

    assert key_hash(1) == hashlib.sha256(b"dovlib-sscl-key:1").hexdigest()[:16]  # stable across versions: manifests
    # the pattern is torch's draw from the key's low 32 bits (check_key documents it); changing that would change
    # every generator trained so far, so this pins it
    pattern = SSCLGenerator(3, key=5, width=4, depth=2).key_pattern(8, 8, "cpu")
    assert torch.equal(pattern, torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(pattern, SSCLGenerator(3, key=5 + 2**32, width=4, depth=2).key_pattern(8, 8, "cpu"))
    assert not torch.equal(pattern, SSCLGenerator(3, key=6, width=4, depth=2).key_pattern(8, 8, "cpu"))
    assert key_hash(5) != key_hash(5 + 2**32)  # named apart all the same


def test_save_and_load_round_trip(tmp_path, check_damaged_copies):
    torch.manual_seed(0)
    g = SSCLGenerator(1, 16 / 255, key=99, width=4, depth=2, key_channels=1).eval()
    path = g.save(tmp_path / "g.pt", target=3, dataset="digits", seed=5)
    h = SSCLGenerator.load(path)
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(g.mark(x), h.mark(x))
    assert h.eps == g.eps and h.key == 99 and h.meta == {"target": 3, "dataset": "digits", "seed": 5}
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a dovlib SSCL-BW generator"):
        SSCLGenerator.load(tmp_path / "other.pt")
    # an empty or truncated file: named, not torch's bare EOFError / RuntimeError; a whole zip archive with a garbled
    # data.pkl: was torch's bare IndexError, or an "unsupported global" of garbage
    check_damaged_copies(path, SSCLGenerator.load, "a dovlib SSCL-BW generator file",
                         "SSCLGenerator.load reads files written by SSCLGenerator.save",
                         {"stop.pt": b"\x80\x02.", "global.pt": b"\x80\x02c\x1b[31m\xff\n\x07\n."})


def test_generator_load_reads_only_tensors_and_settings(tmp_path, check_planted_code_refused):
    """A generator file from elsewhere cannot run code on loading (weights_only=True); files that kept torch's
    TorchVersion in their meta (before 2026-12-06) still load."""
    from torch.torch_version import TorchVersion

    g = SSCLGenerator(1, 16 / 255, key=99, width=4, depth=2, key_channels=1).eval()
    blob = torch.load(g.save(tmp_path / "g.pt"), weights_only=False)
    torch.save({**blob, "meta": {"torch": TorchVersion("2.14.1")}}, tmp_path / "old.pt")
    assert SSCLGenerator.load(tmp_path / "old.pt").meta == {"torch": "2.14.1"}
    check_planted_code_refused(blob, SSCLGenerator.load, "a dovlib SSCL-BW generator file",
                               "SSCLGenerator.load reads files written by SSCLGenerator.save")


def test_a_generator_loaded_by_hand_counts_in_the_records_provenance(tmp_path):
    """SSCLGenerator.load, as HiDDeN.load, counts the model it reads in training_provenance (what records name), as
    its file says: a generator loaded by hand in a notebook is not left out of the records written after it."""
    from dovlib.train import reset_training_provenance, training_provenance

    g = SSCLGenerator(3, 8 / 255, key=5, width=4, depth=1)
    gpu = {"trained_on": "cuda", "trained_by": "NVIDIA H100 80GB HBM3", "training_precision": "bf16"}
    reset_training_provenance()
    h = SSCLGenerator.load(g.save(tmp_path / "gpu.pt", **gpu))
    assert h.provenance == gpu and training_provenance() == gpu and h.meta == gpu  # meta stays as saved
    # a file of older code: no device named ("unknown"), the precision its training config says (bf16 only when on)
    reset_training_provenance()
    assert SSCLGenerator.load(g.save(tmp_path / "old.pt", config={"bf16": True})).provenance == {
        "trained_on": "unknown", "trained_by": "unknown", "training_precision": "bf16"}
    SSCLGenerator.load(g.save(tmp_path / "old32.pt", config={"eps": 8 / 255}))
    unknown = {"trained_on": "unknown", "trained_by": "unknown"}
    assert training_provenance() == {**unknown, "training_precision": "bf16+fp32"}
    # saved by hand with no training at all: nothing known, and said so
    reset_training_provenance()
    assert SSCLGenerator.load(g.save(tmp_path / "bare.pt")).provenance == {
        "trained_on": "unknown", "trained_by": "unknown", "training_precision": "unknown"}
    assert training_provenance() == {"trained_on": "unknown", "trained_by": "unknown", "training_precision": "unknown"}
    reset_training_provenance()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_load_puts_the_generator_on_the_asked_device(tmp_path):
    g = SSCLGenerator(3, 8 / 255, key=5, width=4, depth=2)
    h = SSCLGenerator.load(g.save(tmp_path / "g.pt"), map_location="cuda")
    assert all(p.is_cuda for p in h.parameters())
    assert all(torch.equal(a.cpu(), b) for a, b in zip(h.state_dict().values(), g.state_dict().values()))


def test_config_errors_name_the_parameter():
    with pytest.raises(ValueError, match=r"eps must be a number in \[1/255, 1\]"):
        GeneratorConfig(eps="0")
    with pytest.raises(ValueError, match="perceptual"):
        GeneratorConfig(perceptual="l2")
    with pytest.raises(ValueError, match="l3"):
        GeneratorConfig(l3=-1)
    with pytest.raises(ValueError, match=r"l1 must be a number in \[0, 1e\+06\]"):
        GeneratorConfig(l1="heavy")
    assert GeneratorConfig(l2="1/2").l2 == 0.5 and GeneratorConfig(l2=1).l2 == 1  # numbers stay as given
    assert GeneratorConfig(eps="8/255").eps == pytest.approx(8 / 255)
    # half the batch is target images, half non-target: an odd batch would silently lose one image per step
    with pytest.raises(ValueError, match=r"batch must be an even integer >= 2 \(half target, half non-target"):
        GeneratorConfig(batch=9)
    with pytest.raises(ValueError, match="target must be an integer >= 0"):
        GeneratorConfig(target=1.5)
    assert GeneratorConfig(target="2").target == 2  # as papermill passes it
    # under one grey level the 8-bit marked set would equal the clean one
    with pytest.raises(ValueError, match=r"eps must be at least 1/255 \(one grey level"):
        GeneratorConfig(eps="0.5/255")
    with pytest.raises(ValueError, match=r"eps must be at least 1/255"):
        SSCLGenerator(3, eps=0.5 / 255)
    assert "key" not in GeneratorConfig(key=5).public() and GeneratorConfig(key=5).public()["key_hash"] == key_hash(5)


def _toy():
    ds = load_dataset("synthetic", num_classes=4, n_train=160, n_test=80, image_size=16)
    torch.manual_seed(0)
    surrogate = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    return ds, surrogate


def test_generator_residual_stays_in_the_ball_under_bf16_autocast():
    """eps rounded to bf16 is 8.03/255: the residual is taken in fp32 so the losses see images inside the ball."""
    torch.manual_seed(0)
    g = _saturated(SSCLGenerator(3, 8 / 255, key=7, width=4, depth=2)).eval()
    x = torch.rand(4, 3, 16, 16) * 0.8 + 0.1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = g(x)
    assert out.dtype == torch.float32
    assert 0.99 * 8 / 255 < (out - x).abs().max() <= 8 / 255 + 1e-6


def test_a_diverged_generator_is_refused_not_cached_or_used(tmp_path):
    """NaN weights: mark() raises (NaN became 0 in uint8, a black pixel); a non-finite loss stops training with
    FloatingPointError before anything is saved; lr is checked like the other settings."""
    torch.manual_seed(0)
    g = SSCLGenerator(3, 8 / 255, width=4, depth=2)
    with torch.no_grad():
        g.unet.outc.bias.fill_(float("nan"))
    g.train()
    with pytest.raises(FloatingPointError, match="not finite"):
        g.mark(torch.full((2, 3, 8, 8), 200, dtype=torch.uint8))
    assert g.training  # its mode is given back
    ds = load_dataset("synthetic", num_classes=4, n_train=80, n_test=40, image_size=8)
    f = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    cfg = GeneratorConfig(eps=8 / 255, target=1, iters=6, batch=8, lr=1e-3, perceptual="mse", width=4, depth=2)
    with torch.no_grad():
        f[1].weight.fill_(float("nan"))  # a surrogate answering NaN: every loss is NaN
    ckpt = tmp_path / "g.pt"
    with pytest.raises(FloatingPointError, match=r"generator training diverged at iteration 2/6"):
        train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2, checkpoint=ckpt,
                        checkpoint_every=0)
    assert not ckpt.exists()
    for bad in (0, -1, float("inf"), "fast"):
        with pytest.raises(ValueError, match=r"lr must be a number in \(0, 10\]"):
            GeneratorConfig(lr=bad, perceptual="mse")
    assert GeneratorConfig(lr="1e-3", perceptual="mse").lr == 1e-3 and GeneratorConfig(perceptual="mse").lr == 1e-3


def test_generator_training_lowers_both_attack_losses():
    ds = load_dataset("synthetic", num_classes=4, n_train=160, n_test=80, image_size=8)
    torch.manual_seed(0)
    f = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    cfg = GeneratorConfig(eps=32 / 255, target=1, iters=40, batch=16, lr=3e-3, perceptual="mse", width=4, depth=2)
    before = [q.detach().clone() for q in f.parameters()]
    f.train()
    g, hist = train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=10)
    assert len(hist) == 4
    assert hist[-1]["l_nontarget"] < hist[0]["l_nontarget"]
    assert hist[-1]["l_target"] < hist[0]["l_target"]
    assert hist[-1]["asr_surrogate"] > hist[0]["asr_surrogate"]
    # the surrogate stayed frozen (its weights unchanged) and comes back as the caller gave it: train mode, grads on
    assert all(torch.equal(a, b) for a, b in zip(before, f.parameters()))
    assert f.training and all(q.requires_grad for q in f.parameters())
    with pytest.raises(ValueError, match="target must be a class index in \\[0, 3\\]"):
        train_generator(f, ds.x_train, ds.y_train, GeneratorConfig(target=4, iters=1, batch=4), progress=False)


def test_generator_loss_is_the_weighted_sum_of_its_three_terms(monkeypatch):
    """loss = l1 * L_target + l2 * L_nontarget + l3 * L_perceptual, with L_perceptual the distance between each clean
    image and its watermarked version (never a zero term), for weights that tell the three apart."""
    from dovlib.perceptual import perceptual_loss

    ds = load_dataset("synthetic", num_classes=4, n_train=80, n_test=20, image_size=8)
    real_ce, real_dist = F.cross_entropy, perceptual_loss("mse")
    ces, dists, losses = [], [], []
    monkeypatch.setattr(sscl.F, "cross_entropy", lambda *a, **k: ces.append(real_ce(*a, **k)) or ces[-1])

    class Recording(nn.Module):
        def forward(self, a, b):
            dists.append((a.detach().clone(), b.detach().clone(), real_dist(a, b)))
            return dists[-1][2]

    monkeypatch.setattr(sscl, "perceptual_loss", lambda name: Recording())
    real_backward = torch.Tensor.backward
    monkeypatch.setattr(torch.Tensor, "backward", lambda self, *a, **k: losses.append(self.detach().clone()) or
                        real_backward(self, *a, **k))
    cfg = GeneratorConfig(eps=8 / 255, target=1, iters=3, batch=8, perceptual="mse", width=4, depth=2, l1=0.5, l2=2.0,
                          l3=300.0)
    torch.manual_seed(0)
    train_generator(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)), ds.x_train, ds.y_train, cfg, device="cpu",
                    progress=False)
    assert len(losses) == 3 and len(ces) == 6 and len(dists) == 3
    for step, loss in enumerate(losses):
        l_t, l_n = ces[2 * step], ces[2 * step + 1]
        clean, marked, d = dists[step]
        assert d.mean() > 0 and not torch.equal(clean, marked)  # clean vs watermarked, never an image with itself
        assert (marked - clean).abs().max() <= 8 / 255 + 1e-6 and clean.shape == (8, 3, 8, 8)
        assert loss.item() == pytest.approx(0.5 * l_t.item() + 2.0 * l_n.item() + 300.0 * d.mean().item(), rel=1e-5)


def test_generator_feeds_the_unet_images_in_minus_one_to_one_and_the_key_pattern():
    g = SSCLGenerator(3, 8 / 255, key=3, key_channels=2, width=4, depth=2)
    seen = []

    class Probe(nn.Module):
        def forward(self, inp):
            seen.append(inp.detach().clone())
            return torch.zeros(len(inp), 3, *inp.shape[-2:])

    g.unet = Probe()
    x = torch.cat([torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)])
    assert torch.equal(g(x), x)  # a zero residual leaves the images as they are
    inp = seen[0]
    assert inp.shape == (2, 5, 8, 8) and (inp[0, :3] == -1).all() and (inp[1, :3] == 1).all()
    assert torch.equal(inp[0, 3:], g.key_pattern(8, 8, "cpu")) and torch.equal(inp[1, 3:], inp[0, 3:])


class _FixedOrder(nn.Module):
    """A surrogate whose class ranking never changes: logits = bias + 0.01 * mean(x) (the same for every class), so
    the least-likely class is argmin(bias) for any image in [0, 1], and gradients still reach the generator."""

    def __init__(self, bias):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(bias, dtype=torch.float32))
        self.clean_inputs = []  # the batches it saw without grad: the clean images y_min is taken from

    def forward(self, x):
        if not torch.is_grad_enabled():
            self.clean_inputs.append(x.detach().clone())
        return self.bias + 0.01 * x.flatten(1).mean(1, keepdim=True)


@pytest.mark.parametrize("least", [3, 1])
def test_l_target_uses_the_surrogates_least_likely_class_and_l_nontarget_the_target(monkeypatch, least):
    """Each step's batch is half target-class, half other images; L_target's labels are argmin f(x) of the clean
    target images (the paper's plain argmin, so the target itself when f ranks it last), L_nontarget's are t."""
    ds = load_dataset("synthetic", num_classes=4, n_train=80, n_test=20, image_size=8)
    bias = [0.0, 0.0, 0.0, 0.0]
    bias[least] = -5.0
    calls, real = [], F.cross_entropy
    monkeypatch.setattr(sscl.F, "cross_entropy", lambda logits, y, *a, **k: calls.append(y.clone()) or real(
        logits, y, *a, **k))
    cfg = GeneratorConfig(eps=8 / 255, target=1, iters=2, batch=8, perceptual="mse", width=4, depth=2)
    f = _FixedOrder(bias)
    train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False)
    assert len(calls) == 4  # two per step: L_target, then L_nontarget
    targets = {bytes(im.numpy()) for im in (ds.x_train[ds.y_train == 1].float() / 255)}
    assert len(f.clean_inputs) == 2 and all(bytes(im.numpy()) in targets for b in f.clean_inputs for im in b)
    for y_t, y_n in zip(calls[0::2], calls[1::2]):
        assert y_t.tolist() == [least] * 4 and y_n.tolist() == [1] * 4


def test_a_trained_generator_saved_plainly_keeps_target_seed_and_data(tmp_path):
    ds = load_dataset("synthetic", num_classes=4, n_train=40, n_test=8, image_size=8)
    f = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    cfg = GeneratorConfig(eps=16 / 255, target=2, key=9, seed=4, iters=2, batch=4, perceptual="mse", width=4, depth=1)
    y = ds.y_train.to(torch.int32)  # labels as given are hashed (as the cache key does), not after .long()
    g, _ = train_generator(f, ds.x_train, y, cfg, device="cpu", progress=False)
    h = SSCLGenerator.load(g.save(tmp_path / "g.pt"))  # no meta given: the owner's settings are still there
    assert (h.meta["target"], h.meta["seed"], h.meta["data"]) == (2, 4, data_hash(ds.x_train, y))
    assert h.meta["config"]["key_hash"] == key_hash(9) and "key" not in h.meta["config"]
    assert SSCLGenerator.load(g.save(tmp_path / "g2.pt", dataset="toy")).meta["dataset"] == "toy"


def test_get_or_train_generator_caches_and_resumes():
    ds, f = _toy()
    cfg = GeneratorConfig(eps=16 / 255, target=1, key=3, iters=6, batch=8, perceptual="ssim", width=4, depth=2)
    g1 = get_or_train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False)
    g2 = get_or_train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False)
    assert not g1.cached and g2.cached
    assert torch.equal(g1.mark(ds.x_test), g2.mark(ds.x_test))
    assert g2.meta["config"]["key_hash"] == key_hash(3) and "key" not in g2.meta["config"]
    other = get_or_train_generator(f, ds.x_train, ds.y_train, GeneratorConfig(**{**cfg.__dict__, "key": 4}),
                                   device="cpu", progress=False)
    assert not other.cached and not torch.equal(other.mark(ds.x_test), g1.mark(ds.x_test))


def test_generators_name_the_device_that_trained_them_and_records_count_them(tmp_path):
    # a generator read back from runs/ may come from another machine (a GPU, a CPU with other kernels): its file
    # says which, and a notebook's records name it (trained_by), not the machine that only read it back
    from dovlib.report import device_name
    from dovlib.train import model_hash, reset_training_provenance, training_provenance

    ds, f = _toy()
    cfg = GeneratorConfig(eps=16 / 255, target=1, key=3, iters=4, batch=8, perceptual="mse", width=4, depth=1)
    here = {"trained_on": "cpu", "trained_by": device_name("cpu"), "training_precision": "fp32"}
    g = get_or_train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False)
    assert not g.cached and {k: g.meta[k] for k in here} == here and training_provenance() == here
    final = sscl.run_dir(sscl.CACHE, sscl._generator_key(model_hash(f), ds.x_train, ds.y_train, cfg)) / "generator.pt"
    blob = torch.load(final, weights_only=False)
    assert {k: blob["meta"][k] for k in here} == here  # kept in the cached file
    gpu = {"trained_on": "cuda", "trained_by": "NVIDIA H100 80GB HBM3", "training_precision": "fp32"}
    torch.save({**blob, "meta": {**blob["meta"], **gpu}}, final)
    reset_training_provenance()
    back = get_or_train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False)
    assert back.cached and {k: back.meta[k] for k in gpu} == gpu and training_provenance() == gpu
    # a file of older code names no device: "unknown", its precision from its settings
    torch.save({**blob, "meta": {k: v for k, v in blob["meta"].items() if k not in here}}, final)
    reset_training_provenance()
    get_or_train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False)
    assert training_provenance() == {"trained_on": "unknown", "trained_by": "unknown", "training_precision": "fp32"}

    # a run interrupted on a GPU and resumed here names both
    ckpt = tmp_path / "ck.pt"
    with pytest.raises(KeyboardInterrupt):
        train_generator(_StopAt(f, 2 * 3 + 1), ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2,
                        checkpoint=ckpt, checkpoint_every=0)
    st = torch.load(ckpt, weights_only=False)
    assert (st["device_type"], st["device_name"]) == ("cpu", device_name("cpu"))
    torch.save({**st, "device_type": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}, ckpt)
    resumed, _ = train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2,
                                 checkpoint=ckpt)
    assert resumed.meta["trained_on"] == "cpu+cuda"
    assert resumed.meta["trained_by"] == " + ".join(sorted([device_name("cpu"), "NVIDIA H100 80GB HBM3"]))


def test_cache_entries_of_older_code_versions_are_not_reused(monkeypatch):
    ds, f = _toy()
    cfg = GeneratorConfig(eps=16 / 255, target=1, key=3, iters=4, batch=8, perceptual="ssim", width=4, depth=2)
    assert not get_or_train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False).cached
    assert get_or_train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False).cached
    monkeypatch.setattr(sscl, "CACHE_VERSION", sscl.CACHE_VERSION + 1)
    assert not get_or_train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False).cached
    prof = get_profile("smoke:epochs=1,width=4,batch_size=32")
    a = sscl.train_classifier(ds.x_train, ds.y_train, profile=prof, progress=False)
    monkeypatch.setattr(sscl, "CACHE_VERSION", sscl.CACHE_VERSION + 1)
    b = sscl.train_classifier(ds.x_train, ds.y_train, profile=prof, progress=False)
    assert a.resumed_from_epoch == 0 and b.resumed_from_epoch == 0  # trained again, not loaded


def test_train_classifier_keys_the_test_set_only_when_asked():
    """A model read back keeps the history of the run that trained it; with key_test=True another test set trains
    another model (its history is then this test set's), and the same one loads."""
    ds, _ = _toy()
    prof = get_profile("smoke:epochs=1,width=4,batch_size=32")
    half = len(ds.x_test) // 2
    tests = [(ds.x_test[:half], ds.y_test[:half]), (ds.x_test[half:], ds.y_test[half:])]
    runs = [sscl.train_classifier(ds.x_train, ds.y_train, *t, profile=prof, seed=5, progress=False) for t in tests]
    assert runs[0].resumed_from_epoch == 0 and runs[1].resumed_from_epoch == 1  # loaded: the first run's history
    assert runs[1].history == runs[0].history
    keyed = [sscl.train_classifier(ds.x_train, ds.y_train, *t, profile=prof, seed=5, progress=False, key_test=True)
             for t in tests + tests[:1]]
    assert [r.resumed_from_epoch for r in keyed] == [0, 0, 1]
    for r, (x, y) in zip(keyed, tests + tests[:1]):
        assert r.history[-1]["test_acc"] == pytest.approx(evaluate(r.model, x, y), abs=1e-6)
    with pytest.raises(ValueError, match="key_test=True needs x_test and y_test"):
        sscl.train_classifier(ds.x_train, ds.y_train, profile=prof, seed=5, progress=False, key_test=True)
    with pytest.raises((TypeError, ValueError), match="key_test"):
        sscl.train_classifier(ds.x_train, ds.y_train, *tests[0], profile=prof, seed=5, key_test="True")


def test_watermark_dataset_is_clean_label_and_publishable(tmp_path):
    ds, _ = _toy()
    torch.manual_seed(0)
    g = _saturated(SSCLGenerator(3, 8 / 255, key=11, width=4, depth=2))
    ws = watermark_dataset(g, ds.x_train, ds.y_train, rate=0.1, target=2, seed=1)
    assert len(ws.marked) == 16 and (ds.y_train[ws.marked] == 2).all()
    assert torch.equal(ws.y, ds.y_train)
    changed = (ws.x != ds.x_train).flatten(1).any(1)
    assert set(torch.nonzero(changed).flatten().tolist()) <= set(ws.marked.tolist()) and changed.sum() > 0
    assert ws.manifest["key_hash"] == key_hash(11) and "key" not in ws.manifest
    # the seed draws the marked images: the same seed the same ones, another seed others (the manifest's seed is
    # the one that drew them)
    from dovlib.watermarks.base import select_indices

    assert torch.equal(ws.marked, select_indices(ds.y_train, 0.1, 2, clean_label=True, seed=1))
    again = watermark_dataset(g, ds.x_train, ds.y_train, rate=0.1, target=2, seed=1)
    assert torch.equal(again.marked, ws.marked) and torch.equal(again.x, ws.x) and ws.manifest["seed"] == 1
    others = [watermark_dataset(g, ds.x_train, ds.y_train, rate=0.1, target=2, seed=s) for s in (0, 2)]
    for o in others:
        assert len(o.marked) == 16 and (ds.y_train[o.marked] == 2).all()
        assert not torch.equal(o.marked, ws.marked) and not torch.equal(o.x, ws.x)
    assert not torch.equal(others[0].marked, others[1].marked)
    with pytest.raises(ValueError, match=r"gamma\) must be <= the target class 2's share of the training set, 0.25"):
        watermark_dataset(g, ds.x_train, ds.y_train, rate=0.3, target=2)
    g.meta = {"target": 1}  # trained towards class 1: its marks on class-2 images would mean nothing
    with pytest.raises(ValueError, match="target must be the class G was trained towards, 1; got 2"):
        watermark_dataset(g, ds.x_train, ds.y_train, rate=0.1, target=2)
    g.meta = {}
    folder = save_watermarked(ws, tmp_path / "pub", classes=ds.classes)
    back = load_watermarked(folder)
    assert torch.equal(back.x, ws.x) and torch.equal(back.y, ws.y) and torch.equal(back.marked, ws.marked)
    record = json.loads((folder / "private" / "owner_record.json").read_text())
    assert record["marked_indices"] == ws.marked.tolist() and "key" not in record and record["n_marked"] == 16
    # the device that ran G's forward pass: another kind may round a pixel of a mark one grey level apart, so the
    # owner who re-marks the set elsewhere and finds another marked_hash can tell why (kept private with the rest)
    from dovlib.report import device_name
    assert record["marked_by"] == ws.manifest["marked_by"] == device_name("cpu")
    # what is published says nothing about which images carry marks (a user could just drop them)
    public = folder / "public"
    assert sorted(p.name for p in public.iterdir()) == ["data.npz", "manifest.json"]
    assert sorted(np.load(public / "data.npz").files) == ["x", "y"]
    man = json.loads((public / "manifest.json").read_text())
    assert not {"marked_indices", "target", "rate", "n_marked", "seed", "generator_hash", "key_hash"} & set(man)
    assert man["n_images"] == len(ws.y) and man["data_hash"] == ws.manifest["marked_hash"]
    # a user recomputes the published hashes from the released file alone
    import hashlib
    with np.load(public / "data.npz") as z:
        assert man["sha256"] == {k: hashlib.sha256(z[k].tobytes()).hexdigest() for k in ("x", "y")}
        assert z["x"].shape[1:] == tuple(man["image_shape"]) and z["y"].dtype == np.dtype("<i8")
    downloaded = tmp_path / "user"
    shutil.copytree(public, downloaded / "public")  # a user's copy: the public folder only
    got = load_watermarked(downloaded)
    assert torch.equal(got.x, ws.x) and len(got.marked) == 0 and got.manifest == man
    with pytest.raises(FileNotFoundError, match="public/data.npz"):
        load_watermarked(tmp_path / "nowhere")


def _published_set(seed: int):
    """A small WatermarkedSet, its images and marked indices drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (12,), generator=g)
    marked = torch.randperm(12, generator=g)[:3]
    return sscl.WatermarkedSet(x, y, marked, {"method": "SSCL-BW", "seed": seed}, torch.tensor([], dtype=torch.long))


def _fail_on(monkeypatch, name: str):
    """Make the write of the file called ``name`` fail half-way: some bytes land in it, then the run is interrupted."""
    from pathlib import Path

    write_text, savez = Path.write_text, np.savez_compressed

    def text(path, data, *args, **kwargs):
        if Path(path).name == name:
            write_text(path, data[:10])
            raise KeyboardInterrupt(f"interrupted writing {name}")
        return write_text(path, data, *args, **kwargs)

    def arrays(file, *args, **kwargs):
        if Path(file).name == name:
            Path(file).write_bytes(b"PK\x03\x04 half")
            raise KeyboardInterrupt(f"interrupted writing {name}")
        return savez(file, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", text)
    monkeypatch.setattr(np, "savez_compressed", arrays)


@pytest.mark.parametrize("name", ["data.npz", "manifest.json", "owner_record.json"])
def test_save_watermarked_interrupted_leaves_no_set_or_the_last_whole_one(tmp_path, monkeypatch, name):
    """save_watermarked wrote data.npz, manifest.json and owner_record.json in place, one after the other: an
    interruption left a half-written set under the final name that looks complete (new images beside no manifest,
    or beside the last run's manifest and owner record, whose marked indices are then another set's). It is now
    written beside the folder and moved into place whole: an interrupted first write leaves nothing, an interrupted
    rewrite leaves the last set as it was, and neither leaves temporary files behind."""
    first, second = _published_set(0), _published_set(1)
    with monkeypatch.context() as m:
        _fail_on(m, name)
        with pytest.raises(KeyboardInterrupt, match=name):
            save_watermarked(first, tmp_path / "pub")
    assert list(tmp_path.iterdir()) == []  # no folder under the final name, no temporary one beside it
    save_watermarked(first, tmp_path / "pub")
    with monkeypatch.context() as m:
        _fail_on(m, name)
        with pytest.raises(KeyboardInterrupt, match=name):
            save_watermarked(second, tmp_path / "pub")
    assert [p.name for p in tmp_path.iterdir()] == ["pub"]
    back = load_watermarked(tmp_path / "pub")  # the last whole set, every file of it
    assert torch.equal(back.x, first.x) and torch.equal(back.marked, first.marked) and back.manifest["seed"] == 0
    assert json.loads((tmp_path / "pub" / "public" / "manifest.json").read_text())["data_hash"] == \
        data_hash(first.x, first.y)


def test_save_watermarked_replaces_a_set_whole_and_refuses_a_folder_of_other_files(tmp_path, monkeypatch):
    """A rewrite replaces every file of the last set, leaves no temporary folder, and is interrupted safely even
    between moving the last set aside and the new one in (the last set goes back). A folder that holds other files
    is refused before anything is written: the set replaces the folder whole."""
    import os

    first, second = _published_set(0), _published_set(1)
    save_watermarked(first, tmp_path / "pub")
    (tmp_path / "pub" / "public" / "stale.txt").write_text("from an older layout")
    save_watermarked(second, tmp_path / "pub")
    assert [p.name for p in tmp_path.iterdir()] == ["pub"]
    assert sorted(p.name for p in (tmp_path / "pub" / "public").iterdir()) == ["data.npz", "manifest.json"]
    back = load_watermarked(tmp_path / "pub")
    assert torch.equal(back.x, second.x) and torch.equal(back.marked, second.marked)
    replace = os.replace

    def interrupted(src, dst):  # the last set is moved aside, then the run stops before the new one is in
        if str(src).endswith(".tmp"):
            raise KeyboardInterrupt("interrupted between the moves")
        return replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            save_watermarked(first, tmp_path / "pub")
    assert [p.name for p in tmp_path.iterdir()] == ["pub"]
    assert torch.equal(load_watermarked(tmp_path / "pub").x, second.x)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the owner's own notes")
    with pytest.raises(ValueError, match=r"folder must be a folder of its own .*mine holds notes.txt"):
        save_watermarked(first, tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "pub"]


def test_a_save_killed_outright_is_named_by_load_and_cleaned_by_the_next_save(tmp_path):
    """SIGKILL runs no cleanup: killed while writing, a save leaves its hidden .tmp folder; killed between its two
    moves, it leaves nothing under the folder's name and the last set under a hidden .old name, which
    load_watermarked used to report only as 'not found'. It now names that set; the next successful save into the
    folder removes both leftovers (and only this folder's: another set's hidden folders stay)."""
    first, second = _published_set(0), _published_set(1)
    save_watermarked(first, tmp_path / "pub")
    old = tmp_path / f".pub.{'a' * 32}.old"
    (tmp_path / "pub").rename(old)  # killed after moving the last set aside
    partial = tmp_path / f".pub.{'b' * 32}.tmp"
    (partial / "public").mkdir(parents=True)  # killed while writing an earlier attempt
    other = tmp_path / f".pub2.{'c' * 32}.old"
    other.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"killed between moving the last set aside .*{old.name} \(move it "
                                                 rf"back to .*pub to use it\)"):
        load_watermarked(tmp_path / "pub")
    assert torch.equal(load_watermarked(old).x, first.x)  # that set is whole
    with pytest.raises(FileNotFoundError) as e:  # no leftovers: the plain message
        load_watermarked(tmp_path / "elsewhere")
    assert "move it back" not in str(e.value) and str(e.value).endswith("private/owner_record.json)")
    save_watermarked(second, tmp_path / "pub")
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "pub"]
    assert torch.equal(load_watermarked(tmp_path / "pub").x, second.x)


def test_contrastive_marking_puts_decoy_marks_on_non_target_images_only(tmp_path):
    ds, _ = _toy()
    torch.manual_seed(0)
    g = _saturated(SSCLGenerator(3, 8 / 255, key=11, width=4, depth=2))
    d = _saturated(SSCLGenerator(3, 8 / 255, key=12, width=4, depth=2))
    ws = watermark_dataset(g, ds.x_train, ds.y_train, rate=0.1, target=2, seed=1, decoy=d, decoy_rate=0.2)
    n = len(ds.y_train)
    assert len(ws.marked) == 16 and len(ws.decoys) == round(0.2 * n) and (ds.y_train[ws.decoys] != 2).all()
    assert torch.equal(ws.y, ds.y_train)  # labels untouched everywhere
    assert torch.equal(ws.x[ws.decoys], d.mark(ds.x_train[ws.decoys]))
    assert torch.equal(ws.x[ws.marked], g.mark(ds.x_train[ws.marked]))
    changed = set(torch.nonzero((ws.x != ds.x_train).flatten(1).any(1)).flatten().tolist())
    assert changed <= set(ws.marked.tolist()) | set(ws.decoys.tolist())
    assert ws.manifest["n_decoys"] == len(ws.decoys) and ws.manifest["decoy_generator_hash"] is not None
    back = load_watermarked(save_watermarked(ws, tmp_path / "pub"))
    assert torch.equal(back.decoys, ws.decoys)
    plain = watermark_dataset(g, ds.x_train, ds.y_train, rate=0.1, target=2, seed=1)
    assert len(plain.decoys) == 0 and plain.manifest["n_decoys"] == 0
    assert torch.equal(plain.x[plain.marked], ws.x[ws.marked])
    with pytest.raises(ValueError, match="decoy generator"):
        watermark_dataset(g, ds.x_train, ds.y_train, rate=0.1, target=2, decoy_rate=0.2)
    with pytest.raises(ValueError, match=r"decoy_rate must be <= the non-target share of the training set, 0.75"):
        watermark_dataset(g, ds.x_train, ds.y_train, rate=0.1, target=2, decoy=d, decoy_rate=0.8)
    with pytest.raises(ValueError, match="decoy_rate"):
        watermark_dataset(g, ds.x_train, ds.y_train, rate=0.1, target=2, decoy=d, decoy_rate=1.5)


def test_sscl_bw_adapter_follows_the_watermark_interface():
    ds, f = _toy()
    wm = get_watermark("sscl-bw", eps="16/255", target=1, key=5, iters=3, batch=8, perceptual="mse", width=4,
                       depth=2, device="cpu", progress=False)
    assert wm.kind == "clean-label" and wm.targeted
    with pytest.raises(RuntimeError, match="fit"):
        wm.trigger(ds.x_test)
    with pytest.raises(ValueError, match="surrogate"):
        wm.fit(ds.x_train, ds.y_train)
    wm.fit(ds.x_train, ds.y_train, f)
    x, y, idx = wm.apply(ds.x_train, ds.y_train, 0.1, target=1, seed=0)
    assert torch.equal(y, ds.y_train) and (ds.y_train[idx] == 1).all() and len(idx) == 16
    assert torch.equal(x[idx], wm.trigger(ds.x_train[idx]))
    with pytest.raises(ValueError, match="target must be the generator's target class 1"):
        wm.apply(ds.x_train, ds.y_train, 0.1, target=2)
    assert wm.describe()["key_hash"] == key_hash(5)
    # a trained generator passed in brings its own budget, key, architecture and target (they used to be the
    # constructor's defaults: 8/255, key 0, target 1, and its own target class was refused)
    G = wm.generator
    reuse = get_watermark("sscl-bw", generator=G)
    assert reuse.config.target == 1 and reuse.config.key == 5 and reuse.config.eps == G.eps == 16 / 255
    assert reuse.describe() == wm.describe()
    assert torch.equal(reuse.apply(ds.x_train, ds.y_train, 0.1, target=1, seed=0)[0], x)
    for bad, match in (({"eps": "8/255"}, "eps = '8/255' disagrees with the generator's eps 16/255"),
                       ({"target": 2}, "target = 2 disagrees with the generator's target class 1"),
                       ({"key": 6}, "key disagrees"),
                       ({"iters": 5}, r"training settings do not apply; got \['iters'\]")):
        with pytest.raises(ValueError, match=match):
            get_watermark("sscl-bw", generator=G, **bad)
    assert get_watermark("sscl-bw", generator=G, eps=16 / 255, target=1, key=5).config == reuse.config
    bare = SSCLGenerator(3, 4 / 255, key=7, width=4, depth=2)  # built by hand: no recorded target
    with pytest.raises(ValueError, match="records no target class"):
        get_watermark("sscl-bw", generator=bare)
    assert get_watermark("sscl-bw", generator=bare, target=3).config.target == 3


def test_surrogate_is_never_a_benign_control_model(monkeypatch):
    """The surrogate trains with seed + SURROGATE_SEED_OFFSET, so it is never one of the Ind-M models (seeds seed,
    seed + 1, ...) whose false-positive rate the controls measure; its width may differ from the suspects'."""
    seen = []
    monkeypatch.setattr(sscl, "train_classifier", lambda *a, **k: seen.append(k) or "model")
    ds = load_dataset("synthetic", num_classes=4, n_train=40, n_test=20, image_size=16)
    prof = get_profile("smoke", width=4)
    assert sscl.train_surrogate(ds, prof, "badnets_cnn", seed=3) == "model"
    sscl.train_surrogate(ds, prof, "badnets_cnn", seed=3, width=8)
    assert [k["seed"] for k in seen] == [3 + sscl.SURROGATE_SEED_OFFSET] * 2
    assert sscl.SURROGATE_SEED_OFFSET > 1000  # far above any control model's seed offset
    assert [k["profile"].width for k in seen] == [4, 8] and seen[0]["num_classes"] == 4


def test_run_sscl_and_controls_end_to_end_at_toy_size():
    ds = load_dataset("synthetic", num_classes=4, n_train=120, n_test=60, image_size=16)
    prof = get_profile("smoke", epochs=1, width=4, gen_iters=2, gen_batch=8, verify_m=20, n_models=1)
    run = sscl.run_sscl(ds, prof, eps="8/255", rate=0.05, target=1, key=1, perceptual="mse", progress=False)
    assert run.suspect is not None and len(run.marked.marked) == 6
    df = sscl.run_controls(run, progress=False)
    assert list(df.scenario) == ["Malicious", "Ind-M", "Ind-W"]
    assert df.p_value.between(0, 1).all() and df.WSR.between(0, 1).all()
    assert df.decoy_p_value.between(0, 1).all() and all(len(p) == 20 for p in df.p_decoy)
    # each row comes from its scenario's model, queried with OUR trigger on the verification set
    from dovlib.verify import attack_success, query_probs, verification_set, verify_model

    xq = ds.x_test[verification_set(ds.x_test, ds.y_test, 1, 20, seed=0)]
    benign = sscl.train_classifier(ds.x_train, ds.y_train, ds.x_test, ds.y_test, profile=prof, seed=0, num_classes=4,
                                   progress=False)  # the Ind-M model of seed 0, from the cache
    rows = df.set_index("scenario")
    for scenario, model in (("Malicious", run.suspect.model), ("Ind-M", benign.model)):
        row, (pb, pw) = rows.loc[scenario], query_probs(model, xq, run.trigger, 1)
        assert np.allclose(row.p_b, pb.numpy()) and np.allclose(row.p_w, pw.numpy()), scenario
        v = verify_model(model, xq, run.trigger, 1)
        assert row.p_value == pytest.approx(v.p_value, rel=1e-6, abs=1e-12) and row.verified == v.verified
        assert row.WSR == pytest.approx(attack_success(model, ds.x_test, ds.y_test, run.trigger, 1))
    assert not np.allclose(rows.loc["Malicious"].p_b, rows.loc["Ind-M"].p_b)  # two different models
    again = sscl.run_sscl(ds, prof, eps="8/255", rate=0.05, target=1, key=1, perceptual="mse", progress=False)
    assert again.generator.cached and torch.equal(again.marked.x, run.marked.x)


class _Responds(nn.Module):
    """A scripted suspect: the class coded in pixel (0, 2, 0), or ``target`` when its trigger pixel is white (a model
    that learnt that mark; ``pixel`` None: a benign model that learnt none)."""

    def __init__(self, pixel, target, num_classes):
        super().__init__()
        self.pixel, self.target, self.k = pixel, target, num_classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        cls = (x[:, 0, 2, 0] * 255).round().long().clamp(0, self.k - 1)
        if self.pixel is not None:
            cls = torch.where(x[:, 0, self.pixel[0], self.pixel[1]] > 0.99, torch.full_like(cls, self.target), cls)
        return nn.functional.one_hot(cls, self.k).float() * 10 + self.dummy


def _pixel_mark(r, c):
    def mark(x):
        x = x.clone()
        x[:, :, r, c] = 255
        return x
    return mark


def test_controls_give_each_scenario_its_own_model_and_test(monkeypatch):
    """run_controls with scripted models whose answers are known (the toy-size end-to-end run above leaves every
    model at chance, where any p-value is 1): the Malicious models learnt OUR mark, the Ind-M models none, the Ind-W
    models their own owner's mark (another pixel). Each row must come from its scenario's model and test."""
    from types import SimpleNamespace

    from dovlib.verify import query_probs, ttest_verify, verification_set

    k, target, n = 4, 1, 80
    y = torch.arange(n) % k
    x = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
    x[:, 0, 2, 0] = y.to(torch.uint8)  # each image shows its class
    ds = SimpleNamespace(x_train=x.clone(), y_train=y.clone(), x_test=x.clone(), y_test=y.clone(), num_classes=k)
    ours, theirs = _pixel_mark(0, 0), _pixel_mark(0, 1)

    def decoy(x):  # a placebo that moves every fourth query to the target class in ANY model (so p_decoy != p_b)
        x = x.clone()
        x[::4, 0, 2, 0] = target
        return x

    marked = SimpleNamespace(x=ours(x), y=y.clone())
    gen = SimpleNamespace(mark=ours, key=7)
    params = {"target": target, "seed": 3, "arch": "resnet18", "eps": 8 / 255, "rate": 0.05, "key_hash": key_hash(7),
              "perceptual": "mse", "surrogate_arch": None, "l1": 1.0, "l2": 1.0, "l3": 1.0}
    run = SimpleNamespace(ds=ds, profile=get_profile("smoke", verify_m=20, n_models=2), params=params,
                          surrogate=None, generator=gen, marked=marked, suspect=None, trigger=ours)
    others, trained = [], []

    def fake_run_sscl(ds_, prof, **kw):  # an independent owner: their own mark on the same images
        others.append(kw)
        return SimpleNamespace(marked=SimpleNamespace(x=theirs(x) + len(others) - 1, y=y.clone()), trigger=theirs)

    def fake_train(x_train, y_train, x_test, y_test, seed, **kw):
        if torch.equal(x_train, marked.x):
            which, model = "ours", _Responds((0, 0), target, k)
        elif torch.equal(x_train, ds.x_train):
            which, model = "clean", _Responds(None, target, k)
        else:
            which, model = "theirs", _Responds((0, 1), target, k)
        trained.append((which, seed))
        return SimpleNamespace(model=model.eval())

    monkeypatch.setattr(sscl, "run_sscl", fake_run_sscl)
    monkeypatch.setattr(sscl, "train_classifier", fake_train)
    monkeypatch.setattr(sscl, "decoy_generator", lambda run_, progress=True: SimpleNamespace(mark=decoy))
    df = sscl.run_controls(run, m=20, progress=False)
    assert list(df.scenario) == ["Malicious", "Ind-M", "Ind-W"] * 2 and list(df.model_seed) == [3] * 3 + [4] * 3
    assert trained == [("ours", 3), ("clean", 3), ("theirs", 3), ("ours", 4), ("clean", 4), ("theirs", 4)]
    # one independent owner per model, each with its own key (never ours) and generator seed
    keys = [o["key"] for o in others]
    assert keys == [sscl.independent_key(int(key_hash(7), 16), i) for i in range(2)] and len(set(keys)) == 2
    assert [o["seed"] for o in others] == [1003, 1004] and all(o["target"] == target for o in others)
    xq = x[verification_set(x, y, target, 20, seed=0)]
    for r in df.itertuples():
        # every column is its own test on that row's probabilities
        assert r.p_value == ttest_verify(r.p_b, r.p_w).p_value and r.verified == (r.p_value < 0.01)
        assert r.decoy_p_value == ttest_verify(r.p_decoy, r.p_w).p_value
        model = _Responds({"Malicious": (0, 0), "Ind-M": None, "Ind-W": (0, 1)}[r.scenario], target, k)
        pb, pw = query_probs(model, xq, ours, target)
        assert np.allclose(r.p_b, pb.numpy()) and np.allclose(r.p_w, pw.numpy())
        assert np.allclose(r.p_decoy, query_probs(model, xq, decoy, target)[1].numpy())
    rows = df.groupby("scenario")
    mal, indm, indw = (rows.get_group(s) for s in ("Malicious", "Ind-M", "Ind-W"))
    assert all(not np.allclose(r.p_decoy, r.p_b) for r in df.itertuples())  # the decoy test is not the clean one
    assert mal.verified.all() and mal.decoy_verified.all() and mal.label_verified.all() and (mal.WSR == 1).all()
    assert not indm.verified.any() and not indm.decoy_verified.any() and (indm.WSR == 0).all()
    assert not indw.verified.any() and (indw.WSR == 0).all() and (indw.own_WSR == 1).all()
    assert (df.BA == 1).all()
    # the owner's check trains its proxies on OUR marked set with seeds 5000, 5001 (never a suspect's seed) and
    # queries them on images apart from the evaluation's
    del trained[:]
    chk = sscl.self_check(run, n_proxies=2, m=20, progress=False)
    assert trained == [("ours", 5000), ("ours", 5001)] and list(chk.proxy_seed) == [5000, 5001]
    own = x[sscl.owner_queries(ds, target, 20)]
    assert not set(sscl.owner_queries(ds, target, 20).tolist()) & set(verification_set(x, y, target, 20).tolist())
    pb, pw = query_probs(_Responds((0, 0), target, k), own, ours, target)
    assert list(chk.p_value) == [ttest_verify(pb, pw).p_value] * 2 and chk.verified.all() and chk.queries_apart.all()


def test_surrogate_width_changes_only_the_surrogate_and_is_recorded():
    ds = load_dataset("synthetic", num_classes=4, n_train=120, n_test=60, image_size=16)
    prof = get_profile("smoke", epochs=1, width=4, gen_iters=2, gen_batch=8, verify_m=20, n_models=1)
    kw = dict(eps="8/255", rate=0.05, target=1, key=1, perceptual="mse", progress=False)
    narrow = sscl.run_sscl(ds, prof, surrogate_width=8, **kw)
    default = sscl.run_sscl(ds, prof, train_suspect=False, **kw)
    assert narrow.surrogate.model.conv1.out_channels == 8 and narrow.suspect.model.conv1.out_channels == 4
    assert default.surrogate.model.conv1.out_channels == 4
    assert narrow.params["surrogate_width"] == 8 and default.params["surrogate_width"] == 4
    assert narrow.marked.manifest["generator_hash"] != default.marked.manifest["generator_hash"]
    assert torch.equal(narrow.marked.marked, default.marked.marked)  # same images marked, other marks
    code = sscl.run_code(ds, prof, targets=(1, 3), surrogate_width=8, train_suspect=False,
                         **{k: v for k, v in kw.items() if k != "target"})
    assert code.surrogate.model.conv1.out_channels == 8 and code.params["surrogate_width"] == 8
    with pytest.raises(ValueError, match="surrogate_width"):
        sscl.run_sscl(ds, prof, surrogate_width=0, **kw)


def test_run_sscl_with_contrastive_marking_uses_the_decoy_and_controls_follow():
    ds = load_dataset("synthetic", num_classes=4, n_train=120, n_test=60, image_size=16)
    prof = get_profile("smoke", epochs=1, width=4, gen_iters=2, gen_batch=8, verify_m=20, n_models=1)
    run = sscl.run_sscl(ds, prof, eps="8/255", rate=0.05, target=1, key=1, perceptual="mse", decoy_rate="1/10",
                        progress=False)
    assert run.params["decoy_rate"] == 0.1 and len(run.marked.decoys) == 12
    decoy = sscl.decoy_generator(run, progress=False)
    assert decoy.cached and decoy.key != run.generator.key  # the same decoy marked the set and is the placebo
    assert torch.equal(run.marked.x[run.marked.decoys], decoy.mark(ds.x_train[run.marked.decoys]))
    df = sscl.run_controls(run, progress=False)
    assert list(df.scenario) == ["Malicious", "Ind-M", "Ind-W"] and df.decoy_p_value.between(0, 1).all()
    with pytest.raises(ValueError, match="decoy_rate"):
        sscl.run_sscl(ds, prof, eps="8/255", rate=0.05, target=1, key=1, perceptual="mse", decoy_rate=-0.1,
                      progress=False)


def test_concurrent_jobs_train_a_cached_classifier_once(tmp_path):
    """Sweep jobs that need the same surrogate wait for the one training it and load it (a lock per cache entry),
    instead of all training it at once and resuming from each other's half-written checkpoints."""
    import threading

    ds = load_dataset("synthetic", num_classes=3, n_train=96, n_test=24, image_size=12)
    prof = get_profile("smoke:epochs=2,width=4,batch_size=32")
    results, errors = [], []

    def job():
        try:
            results.append(sscl.train_classifier(ds.x_train, ds.y_train, arch="resnet18", profile=prof, seed=3,
                                                 progress=False))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=job) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r.resumed_from_epoch for r in results) == [0, 2, 2]  # one trained; two loaded the finished model
    for r in results[1:]:
        for pa, pb in zip(r.model.parameters(), results[0].model.parameters()):
            assert torch.equal(pa, pb)


def test_key_targets_are_distinct_reproducible_and_keep_the_first_class():
    a = sscl.key_targets(7, 10, 3)
    assert a == sscl.key_targets(7, 10, 3) and len(set(a)) == 3 and all(0 <= t < 10 for t in a)
    assert any(sscl.key_targets(k, 10, 3) != a for k in range(8, 20))  # the key decides
    b = sscl.key_targets(7, 10, 2, first=4)
    assert b[0] == 4 and b[1] != 4
    assert sorted(sscl.key_targets(3, 5, 5)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"n_targets must be an integer in \[1, 10\]"):
        sscl.key_targets(7, 10, 11)
    with pytest.raises(ValueError, match=r"first \(the target class\) must be in \[0, 9\]"):
        sscl.key_targets(7, 10, 2, first=10)


def test_code_rate_caps_gamma_at_the_smallest_code_class():
    y = torch.tensor([0] * 10 + [1] * 5 + [2] * 25)
    assert sscl.code_rate(y, 0.1, (0, 2)) == 0.1
    assert sscl.code_rate(y, 0.2, (0, 1)) == 0.125  # class 1 is 5 of 40: marked whole
    # the exact share (12 / 120 = 0.1), not a float32 mean (0.1000000015), which the share check would refuse
    y12 = torch.tensor([0] * 108 + [8] * 12)
    assert sscl.code_rate(y12, 0.5, (8,)) == 12 / 120
    from dovlib.watermarks.base import select_indices

    assert len(select_indices(y12, sscl.code_rate(y12, 0.5, (8,)), 8, clean_label=True)) == 12
    with pytest.raises(ValueError, match="gamma per target class"):
        sscl.code_rate(y, 0, (0,))


def test_mark_code_marks_each_target_class_with_its_own_generator():
    ds, _ = _toy()
    torch.manual_seed(0)
    gens = {2: _saturated(SSCLGenerator(3, 8 / 255, key=11, width=4, depth=2)),
            0: _saturated(SSCLGenerator(3, 8 / 255, key=11, width=4, depth=2))}
    ws = sscl.mark_code(gens, ds.x_train, ds.y_train, 0.1, seed=1)
    assert torch.equal(ws.y, ds.y_train) and len(ws.marked) == 32
    for t, G in gens.items():
        idx = ws.marked[ds.y_train[ws.marked] == t]
        assert len(idx) == 16 and torch.equal(ws.x[idx], G.mark(ds.x_train[idx]))
    changed = set(torch.nonzero((ws.x != ds.x_train).flatten(1).any(1)).flatten().tolist())
    assert changed <= set(ws.marked.tolist())
    assert ws.manifest["targets"] == [2, 0] and [d["target"] for d in ws.manifest["per_target"]] == [2, 0]
    # a code's order changes nothing but the manifest: the same images marked, the same marks (so a class's
    # position in a code cannot explain how often its trigger is learnt)
    rev = sscl.mark_code(dict(reversed(gens.items())), ds.x_train, ds.y_train, 0.1, seed=1)
    assert torch.equal(rev.marked, ws.marked) and torch.equal(rev.x, ws.x)
    assert rev.manifest["marked_hash"] == ws.manifest["marked_hash"] and rev.manifest["targets"] == [0, 2]
    from dovlib.report import device_name
    assert ws.manifest["marked_by"] == device_name("cpu")  # every generator of the code ran here
    # the seed draws each class's marked images: the same seed the same ones, another seed others
    from dovlib.watermarks.base import select_indices

    drawn = [select_indices(ds.y_train, 0.1, t, clean_label=True, seed=1) for t in gens]
    assert torch.equal(ws.marked, torch.cat(drawn).sort().values)
    again = sscl.mark_code(gens, ds.x_train, ds.y_train, 0.1, seed=1)
    assert torch.equal(again.marked, ws.marked) and torch.equal(again.x, ws.x) and ws.manifest["seed"] == 1
    others = [sscl.mark_code(gens, ds.x_train, ds.y_train, 0.1, seed=s) for s in (0, 2)]
    for o in others:
        assert len(o.marked) == 32 and not torch.equal(o.marked, ws.marked) and not torch.equal(o.x, ws.x)
        for t in gens:  # each class's own draw differs, not only their union
            assert not torch.equal(o.marked[ds.y_train[o.marked] == t], ws.marked[ds.y_train[ws.marked] == t])
    assert not torch.equal(others[0].marked, others[1].marked)
    with pytest.raises(ValueError, match="generators"):
        sscl.mark_code({}, ds.x_train, ds.y_train, 0.1)
    frac = sscl.mark_code(gens, ds.x_train, ds.y_train, "1/10", seed=1)  # as papermill passes it
    assert torch.equal(frac.x, ws.x) and frac.manifest["rate_per_target"] == 0.1


def test_bad_input_is_refused_before_any_training(monkeypatch, tmp_path):
    """A gamma above the target class's share, a bad target or key, or LPIPS without its weights must fail at once,
    not after the surrogate (and generator) have trained."""
    def no_training(*a, **k):
        raise AssertionError("trained before refusing bad input")

    monkeypatch.setattr(sscl, "train_surrogate", no_training)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))  # no LPIPS weights there
    ds = load_dataset("synthetic", num_classes=4, n_train=120, n_test=60, image_size=16)
    prof = get_profile("smoke", epochs=1, width=4, gen_iters=2, gen_batch=8)
    kw = dict(eps="8/255", rate=0.05, target=1, key=1, perceptual="mse", progress=False)
    share = (ds.y_train == 1).float().mean().item()
    cases = [(dict(rate=0.5),
              rf"rate \(gamma\) must be <= the target class 1's share of the training set, {share:.4f}"),
             (dict(target=4), r"target must be a class index \(an integer\) in \[0, 3\]"),
             (dict(target=1.5), r"target must be a class index \(an integer\) in \[0, 3\]; got 1\.5"),
             (dict(rate=0.001), r"rate \(gamma\) = 0\.001 marks no image"),
             (dict(key="abc"), "key must be a non-negative integer"),
             (dict(key=-3), "key must be a non-negative integer"),
             (dict(decoy_rate=0.99), "decoy_rate must be <= the non-target share"),
             (dict(l1="heavy"), "l1 must be a number"),
             # the suspect's architecture was first built after the surrogate and generator had trained
             (dict(arch="resnet-18", surrogate_arch="vgg16"), r"arch must be one of .*got 'resnet-18'"),
             (dict(surrogate_arch="vgg-16"), r"surrogate_arch must be one of .*got 'vgg-16'"),
             ]
    for bad, msg in cases:
        with pytest.raises(ValueError, match=msg):
            sscl.run_sscl(ds, prof, **{**kw, **bad})
    with pytest.raises(TypeError, match="train_suspect must be True or False; got 'False'"):
        sscl.run_sscl(ds, prof, **{**kw, "train_suspect": "False"})
    with pytest.raises(PerceptualWeightsMissing, match="perceptual='ssim'"):
        sscl.run_sscl(ds, prof, **{**kw, "perceptual": "lpips"})
    code_kw = dict(eps="8/255", key=1, perceptual="mse", progress=False)
    with pytest.raises(ValueError, match=r"rate \(gamma per target class\) must be <= the target class 1's share"):
        sscl.run_code(ds, prof, targets=(1, 2), rate=0.5, **code_kw)
    with pytest.raises(ValueError, match="key must be a non-negative integer"):
        sscl.run_code(ds, prof, targets=(1, 2), rate=0.05, **{**code_kw, "key": 1.5})
    with pytest.raises(ValueError, match=r"targets must be an integer >= 0; got 1.5"):  # was truncated to 1
        sscl.run_code(ds, prof, targets=(1.5, 2), rate=0.05, **code_kw)
    with pytest.raises(ValueError, match=r"arch must be one of"):
        sscl.run_code(ds, prof, targets=(1, 2), rate=0.05, arch="resnet-18", **code_kw)
    with pytest.raises(TypeError, match="train_suspect must be True or False; got 'False'"):
        sscl.run_code(ds, prof, targets=(1, 2), rate=0.05, train_suspect="False", **code_kw)
    # the controls check tau and their switches before the first model trains
    from types import SimpleNamespace

    run = SimpleNamespace(ds=None, profile=SimpleNamespace(n_models=1), targets=(1, 2), params={"seed": 0})
    for controls in (sscl.run_controls, sscl.run_code_controls):
        with pytest.raises(ValueError, match=r"tau must be"):
            controls(run, tau=2)
    with pytest.raises(TypeError, match="own_surrogate must be True or False"):
        sscl.run_controls(run, own_surrogate="False")
    with pytest.raises(TypeError, match="decoy must be True or False"):
        sscl.run_controls(run, decoy="no")
    with pytest.raises(TypeError, match="same_code must be True or False"):
        sscl.run_code_controls(run, same_code="False")


def test_generator_settings_are_checked_where_they_are_made():
    """key "7" and 7 are one generator (one cache entry: the checkpoint's settings must agree too); -3 is refused
    in the config, not later. train_generator takes uint8 images only (floats in 0..255 trained without a word)."""
    assert GeneratorConfig(key="7", perceptual="mse").as_dict() == GeneratorConfig(key=7, perceptual="mse").as_dict()
    with pytest.raises(ValueError, match="key must be a non-negative integer"):
        GeneratorConfig(key=-3, perceptual="mse")
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    y = torch.tensor([0, 1] * 4)
    cfg = GeneratorConfig(iters=1, batch=2, perceptual="mse", width=4, depth=1)
    sur = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    with pytest.raises(ValueError, match=r"x must be uint8 images \(N, C, H, W\).*torch.float32"):
        sscl.train_generator(sur, x.float(), y, cfg, device="cpu", progress=False)
    grey = torch.randint(0, 256, (8, 16, 16), dtype=torch.uint8)  # no channel axis: was "in_channels ... got 16"
    with pytest.raises(ValueError, match=r"x must be uint8 images \(N, C, H, W\).*shape \(8, 16, 16\)"):
        sscl.train_generator(sur, grey, y, cfg, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"x and y must be equally long \(one label per image\); got 8 and 6"):
        sscl.train_generator(sur, x, y[:6], cfg, device="cpu", progress=False)


def test_check_key_takes_big_integers_exactly_and_refuses_the_rest():
    big = 2**63 - 25  # float would round it onto its neighbours
    assert sscl.check_key(big) == big and sscl.check_key(str(big)) == big
    assert key_hash(big) != key_hash(big + 1) and key_hash("7") == key_hash(7)
    for bad in ("abc", 1.5, 7.0, -1, True, None, "1e3"):
        with pytest.raises(ValueError, match="key must be a non-negative integer"):
            sscl.check_key(bad)


def test_run_code_and_its_controls_end_to_end_at_toy_size():
    ds = load_dataset("synthetic", num_classes=4, n_train=120, n_test=60, image_size=16)
    prof = get_profile("smoke", epochs=1, width=4, gen_iters=2, gen_batch=8, verify_m=20, n_models=1)
    targets = sscl.key_targets(5, 4, 2, first=1)
    run = sscl.run_code(ds, prof, targets=targets, eps="8/255", rate=0.05, key=5, perceptual="mse", progress=False)
    assert run.targets == targets and len(run.marked.marked) == 12 and run.suspect is not None
    v, per = sscl.verify_code(run.suspect.model, run, m=20)
    assert v.p_value == max(r.p_value for r in per) and len(per) == 2 and all(r.n == 20 for r in per)
    # an explicit m is used as given: more than the 45 non-target test images is refused, not cut down silently;
    # the default (m None) is the profile's verify_m, capped at what the test set holds
    with pytest.raises(ValueError, match=r"m must be an integer in \[1, 45\]; got 100"):
        sscl.verify_code(run.suspect.model, run, m=100)
    assert [r.n for r in sscl.verify_code(run.suspect.model, run)[1]] == [20, 20]
    assert sscl.query_count(ds, 1, None, 100) == 45 and sscl.query_count(ds, 1, 30, 100) == 30
    df = sscl.run_code_controls(run, progress=False)
    assert list(df.scenario) == ["Malicious", "Ind-M", "Ind-W plain", "Ind-W code"]
    assert df.p_value.between(0, 1).all() and {f"p_{t}" for t in targets} <= set(df.columns)
    benign = sscl.train_classifier(ds.x_train, ds.y_train, ds.x_test, ds.y_test, profile=prof, seed=0, num_classes=4,
                                   progress=False)  # the Ind-M model, from the cache
    for scenario, model in (("Malicious", run.suspect.model), ("Ind-M", benign.model)):
        row = df[df.scenario == scenario].iloc[0]
        assert row.p_value == pytest.approx(sscl.verify_code(model, run, m=20)[0].p_value, rel=1e-6, abs=1e-12)
        b = sscl.verify_code(model, run, m=20, test="bounded")[0]  # the betting test's columns beside the t-test's
        assert (row.bounded_p_value, row.bounded_verified) == (pytest.approx(b.p_value, rel=1e-6, abs=1e-12),
                                                               b.verified)
    assert (df[[f"p_{t}" for t in targets]].max(axis=1) == df.p_value).all()
    assert (df[[f"bounded_p_{t}" for t in targets]].max(axis=1) == df.bounded_p_value).all()
    assert (df.bounded_verified == (df.bounded_p_value < 0.01)).all()
    code_row = df[df.scenario == "Ind-W code"].iloc[0]
    assert code_row.other_targets[0] == targets[0]
    assert code_row.collision == (set(targets) <= set(code_row.other_targets))
    assert 0 <= code_row.own_p_value <= 1 and df[df.scenario == "Malicious"].own_p_value.isna().all()
    assert 0 <= code_row.bounded_own_p_value <= 1 and df[df.scenario == "Malicious"].bounded_own_p_value.isna().all()
    # same_code adds a full collision: the same other owner marking exactly our classes; its own test is its code's
    full = sscl.run_code_controls(run, same_code=True, progress=False)
    assert list(full.scenario) == ["Malicious", "Ind-M", "Ind-W plain", "Ind-W code", "Ind-W same code"]
    same = full[full.scenario == "Ind-W same code"].iloc[0]
    assert tuple(same.other_targets) == targets and same.collision and 0 <= same.own_p_value <= 1
    own = ["own_p_value", "own_verified", "bounded_own_p_value", "bounded_own_verified"]
    assert full.iloc[:4].drop(columns=own).equals(df.drop(columns=own))
    # pool: the other code owner draws its key class from the pool as ours was (first class shared, the rest pooled)
    pooled = sscl.run_code_controls(run, pool=(1, 3), progress=False)
    assert list(df[df.scenario == "Ind-W code"].iloc[0].other_targets) == [1, 2]  # unpooled: class 2
    assert list(pooled[pooled.scenario == "Ind-W code"].iloc[0].other_targets) == [1, 3]
    with pytest.raises(ValueError, match="pool .* needs redraw_surrogate=False"):
        sscl.run_code_controls(run, pool=(1, 3), select_attempts=2, redraw_surrogate=True, progress=False)
    with pytest.raises(ValueError, match="distinct"):
        sscl.run_code(ds, prof, targets=(1, 1), key=5, perceptual="mse", progress=False)


def _toy_code_run(**kw):
    ds = load_dataset("synthetic", num_classes=4, n_train=120, n_test=60, image_size=16)
    prof = get_profile("smoke", epochs=1, width=4, gen_iters=2, gen_batch=8, verify_m=20, n_models=1)
    return ds, prof, dict(targets=(1, 3), eps="8/255", rate=0.05, key=5, perceptual="mse", progress=False, **kw)


def test_attempt_seed_keeps_attempt_zero_and_never_repeats():
    assert sscl.attempt_seed(7, 0) == 7
    seeds = {sscl.attempt_seed(s, j) for s in (0, 1, 1000, 1001) for j in range(5)}
    assert len(seeds) == 20  # owners' seeds 0, 1, 1000, 1001 never meet in their attempts
    with pytest.raises(ValueError, match="attempt"):
        sscl.attempt_seed(0, -1)


def test_run_code_generator_seed_changes_only_the_generators():
    ds, prof, kw = _toy_code_run(train_suspect=False)
    base = sscl.run_code(ds, prof, **kw)
    same = sscl.run_code(ds, prof, generator_seed=0, **kw)
    other = sscl.run_code(ds, prof, generator_seed=sscl.attempt_seed(0, 1), **kw)

    def hashes(r):
        return [t["generator_hash"] for t in r.marked.manifest["per_target"]]

    assert base.params["generator_seed"] == 0 and hashes(same) == hashes(base)
    assert other.params["generator_seed"] == 100_000 and hashes(other) != hashes(base)
    assert torch.equal(other.marked.marked, base.marked.marked) and not torch.equal(other.marked.x, base.marked.x)
    with pytest.raises(ValueError, match="generator_seed"):
        sscl.run_code(ds, prof, generator_seed=-1, **kw)


def test_self_check_verifies_proxy_models_with_the_owners_own_test():
    from dovlib.verify import verification_set, verify_model

    ds, prof, kw = _toy_code_run()
    run = sscl.run_code(ds, prof, **kw)
    chk = sscl.self_check(run, n_proxies=2, m=20, progress=False)
    assert list(chk.proxy_seed) == [5000, 5001] and chk.p_value.between(0, 1).all()
    # the proxies are new models (not the suspect, seed 0), trained on the owner's marked set, cached
    proxy = sscl.train_classifier(run.marked.x, run.marked.y, ds.x_test, ds.y_test, arch="resnet18", profile=prof,
                                  seed=5000, num_classes=4, progress=False)
    weights = zip(proxy.model.state_dict().values(), run.suspect.model.state_dict().values())
    assert any((a != b).any() for a, b in weights)
    v, per = sscl.verify_code(proxy.model, run, m=20, verify_seed=1, owner_check=True)
    assert chk.p_value[0] == v.p_value and chk.verified[0] == v.verified
    assert [chk.p_1[0], chk.p_3[0]] == [r.p_value for r in per]
    # a plain single-target run gets the paper's test
    plain = sscl.run_sscl(ds, prof, eps="8/255", rate=0.05, target=1, key=5, perceptual="mse", train_suspect=False,
                          progress=False)
    one = sscl.self_check(plain, m=20, progress=False)
    pm = sscl.train_classifier(plain.marked.x, plain.marked.y, ds.x_test, ds.y_test, arch="resnet18", profile=prof,
                               seed=5000, num_classes=4, progress=False)
    idx = verification_set(ds.x_test, ds.y_test, 1, 20, seed=1, exclude=verification_set(ds.x_test, ds.y_test, 1, 20))
    assert one.p_value[0] == verify_model(pm.model, ds.x_test[idx], plain.trigger, 1).p_value
    with pytest.raises(ValueError, match="n_proxies"):
        sscl.self_check(run, n_proxies=0)
    # a margin: the same proxies and p-values, verified only below check_alpha (recorded in every row)
    for level in (1e-6, 0.5):
        strict = sscl.self_check(run, n_proxies=2, m=20, alpha=0.9, check_alpha=level, progress=False)
        assert list(strict.p_value) == list(chk.p_value) and (strict.check_alpha == level).all()
        assert list(strict.verified) == [p < level for p in chk.p_value]
    assert (chk.check_alpha == 0.01).all()  # default: alpha itself
    with pytest.raises(ValueError, match="check_alpha .*at most alpha = 0.01"):
        sscl.self_check(run, check_alpha=0.05)


def test_self_check_logs_both_tests_and_decides_by_the_chosen_one():
    from dovlib.verify import bounded_verify, query_probs, ttest_verify, verification_set, verify_model

    ds, prof, kw = _toy_code_run()
    run = sscl.run_code(ds, prof, **kw)
    default = sscl.self_check(run, n_proxies=2, m=20, progress=False)
    bounded = sscl.self_check(run, n_proxies=2, m=20, test="bounded", progress=False)
    assert (default.test == "ttest").all() and (bounded.test == "bounded").all()
    for i, seed in enumerate((5000, 5001)):
        proxy = sscl.train_classifier(run.marked.x, run.marked.y, ds.x_test, ds.y_test, arch="resnet18",
                                      profile=prof, seed=seed, num_classes=4, progress=False)
        (tv, tper), (bv, bper) = (sscl.verify_code(proxy.model, run, m=20, verify_seed=1, owner_check=True, test=t)
                                  for t in ("ttest", "bounded"))
        for chk in (default, bounded):  # both rows carry both tests' p-values, from the same queries
            assert chk.ttest_p_value[i] == tv.p_value and chk.bounded_p_value[i] == bv.p_value
            assert [chk.ttest_p_1[i], chk.ttest_p_3[i]] == [r.p_value for r in tper]
            assert [chk.bounded_p_1[i], chk.bounded_p_3[i]] == [r.p_value for r in bper]
        # the default is the t-test, as before; test="bounded" decides p_value, verified and p_<class> by the bound
        assert default.p_value[i] == tv.p_value and default.verified[i] == tv.verified
        assert [default.p_1[i], default.p_3[i]] == [r.p_value for r in tper]
        assert bounded.p_value[i] == bv.p_value and bounded.verified[i] == bv.verified
        assert [bounded.p_1[i], bounded.p_3[i]] == [r.p_value for r in bper]
    # at a level between the two tests' p-values the chosen test alone decides (tau 0: these proxies' t-test p is
    # below 1 there, the bounded test's is not)
    zero = sscl.self_check(run, n_proxies=2, m=20, tau=0.0, alpha=0.99, progress=False)
    t1, b1 = zero.ttest_p_value[1], zero.bounded_p_value[1]
    assert t1 < b1
    level = (t1 + b1) / 2
    for test, p in (("ttest", t1), ("bounded", b1)):
        chk = sscl.self_check(run, n_proxies=2, m=20, tau=0.0, alpha=0.99, check_alpha=level, test=test,
                              progress=False)
        assert chk.p_value[1] == p and chk.verified[1] == (test == "ttest")
        assert chk.p_3[0] == zero[f"{test}_p_3"][0]  # the class p-values are the chosen test's too
    assert zero.ttest_p_3[0] != zero.bounded_p_3[0]
    # a single-target run: both tests on one set of answers, equal to verify_model's
    plain = sscl.run_sscl(ds, prof, eps="8/255", rate=0.05, target=1, key=5, perceptual="mse", train_suspect=False,
                          progress=False)
    one = sscl.self_check(plain, m=20, test="bounded", progress=False)
    pm = sscl.train_classifier(plain.marked.x, plain.marked.y, ds.x_test, ds.y_test, arch="resnet18", profile=prof,
                               seed=5000, num_classes=4, progress=False)
    idx = verification_set(ds.x_test, ds.y_test, 1, 20, seed=1, exclude=verification_set(ds.x_test, ds.y_test, 1, 20))
    x = ds.x_test[idx]
    b = verify_model(pm.model, x, plain.trigger, 1, test="bounded")
    assert one.p_value[0] == one.bounded_p_value[0] == b.p_value and one.verified[0] == b.verified
    assert one.ttest_p_value[0] == verify_model(pm.model, x, plain.trigger, 1).p_value
    pb, pw = query_probs(pm.model, x, plain.trigger, 1)
    assert one.bounded_p_value[0] == bounded_verify(pb, pw).p_value
    assert one.ttest_p_value[0] == ttest_verify(pb, pw).p_value
    for bad in ("t-test", "both", None):
        with pytest.raises(ValueError, match="test must be one of 'ttest', 'bounded'"):
            sscl.self_check(run, m=20, test=bad, progress=False)


def test_owner_queries_never_touch_the_evaluation_draw():
    from types import SimpleNamespace

    from dovlib.verify import verification_set

    y = torch.arange(100) % 5  # 80 non-target images for target 0
    ds = SimpleNamespace(x_test=torch.zeros(100, 1, 2, 2), y_test=y)
    evaluation = set(verification_set(ds.x_test, y, 0, 30).tolist())
    own = sscl.owner_queries(ds, 0, 30)
    assert len(own) == 30 and not set(own.tolist()) & evaluation and (y[own] != 0).all()
    # the overlap this replaces: two plain draws (seeds 0 and 1) share images
    assert set(verification_set(ds.x_test, y, 0, 30, seed=1).tolist()) & evaluation
    # a smaller evaluation draw is a prefix of the larger one: excluded too
    assert set(verification_set(ds.x_test, y, 0, 10).tolist()) <= evaluation
    assert len(sscl.owner_queries(ds, 0, 60)) == 20  # all that are left after 60 evaluation queries
    assert sscl.queries_apart(ds, 0, 78) and not sscl.queries_apart(ds, 0, 79)
    # a test set too small for two disjoint draws: the check shares the evaluation's images, and says so
    with pytest.warns(UserWarning, match="too small for the owner's check to stay apart from the evaluation's m = 79"):
        shared = sscl.owner_queries(ds, 0, 79)
    assert torch.equal(shared, verification_set(ds.x_test, y, 0, 79, seed=1))
    with pytest.raises(ValueError, match=r"m \(non-target test images left after excluding 30\) must be"):
        verification_set(ds.x_test, y, 0, 60, exclude=sorted(evaluation))


def test_check_level_is_alpha_or_a_stricter_level():
    assert sscl.check_level(None, 0.01) == 0.01 and sscl.check_level("1e-4", 0.01) == 1e-4
    assert sscl.check_level(0.01, 0.01) == 0.01
    for bad in (0.02, 0, -1e-4, "8/0"):
        with pytest.raises(ValueError, match="check_alpha"):
            sscl.check_level(bad, 0.01)
    with pytest.raises(TypeError, match="check_alpha"):
        sscl.check_level(True, 0.01)


def _scripted_self_check(monkeypatch, p_values):
    """Replace self_check by one returning the scripted p-values, attempt by attempt (recording the runs)."""
    import pandas as pd

    class Seen(list):
        """Each call's (run, m); ``levels`` and ``tests``: the check_alpha and test each call was given."""

    seen = Seen()
    seen.levels, seen.tests = [], []

    def fake(run, n_proxies=1, m=None, tau=0.25, alpha=0.01, check_alpha=None, test="ttest", **_):
        p = p_values[len(seen)]
        p, q = p if isinstance(p, tuple) else (p, p)  # (the deciding test's p, the other test's)
        seen.append((run, m))
        seen.levels.append(check_alpha)
        seen.tests.append(test)
        level = alpha if check_alpha is None else check_alpha
        ps = {"ttest_p_value": [p if test == "ttest" else q], "bounded_p_value": [p if test == "bounded" else q]}
        return pd.DataFrame({"proxy_seed": [5000], "BA": [0.5], "p_value": [p], "delta_p_min": [0.3],
                             "verified": [p < level], **ps})

    monkeypatch.setattr(sscl, "self_check", fake)
    return seen


def test_select_code_run_publishes_the_first_attempt_that_passes(monkeypatch):
    ds, prof, kw = _toy_code_run()
    seen = _scripted_self_check(monkeypatch, [0.3, 0.02, 0.001, 0.0])
    run, log = sscl.select_code_run(ds, prof, attempts=4, m=30, **kw)
    assert [m for _, m in seen] == [30, 30, 30]  # the evaluation's number of queries reaches the self-check
    assert list(log.attempt) == [0, 1, 2] and list(log.generator_seed) == [0, 100_000, 200_000]
    sel = run.params["selection"]
    assert sel["attempt"] == 2 and sel["passed"] and sel["attempts_tried"] == 3 and run is seen[2][0]
    assert run.params["generator_seed"] == 200_000 and run.suspect is not None
    # the suspect is trained on the published (selected) set
    again = sscl.train_classifier(run.marked.x, run.marked.y, ds.x_test, ds.y_test, arch="resnet18", profile=prof,
                                  seed=0, num_classes=4, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(),
                                                  run.suspect.model.state_dict().values()))


def test_select_code_run_says_when_no_attempt_passes(monkeypatch):
    ds, prof, kw = _toy_code_run(train_suspect=False)
    seen = _scripted_self_check(monkeypatch, [0.3, 0.04, 0.2])
    run, log = sscl.select_code_run(ds, prof, attempts=3, **kw)
    sel = run.params["selection"]
    assert not sel["passed"] and sel["attempt"] == 1 and sel["proxy_p_max"] == 0.04 and run is seen[1][0]
    assert len(log) == 3 and run.suspect is None
    with pytest.raises(ValueError, match="attempts"):
        sscl.select_code_run(ds, prof, attempts=0, **kw)


def test_code_controls_let_other_owners_select_too(monkeypatch):
    ds, prof, kw = _toy_code_run()
    run = sscl.run_code(ds, prof, **kw)
    seen = _scripted_self_check(monkeypatch, [0.5, 0.001] * 4)  # each other owner passes at its second attempt
    df = sscl.run_code_controls(run, select_attempts=2, same_code=True, progress=False)
    others = df[df.scenario.isin(["Ind-W code", "Ind-W same code"])]
    assert (others.other_attempt == 1).all() and others.other_self_check.all()
    assert seen.tests == ["ttest"] * 4  # the paper's test by default; the owner's named test reaches every owner
    seen = _scripted_self_check(monkeypatch, [0.5, 0.001] * 4)
    sscl.run_code_controls(run, select_attempts=2, same_code=True, progress=False, check_test="bounded")
    assert seen.tests == ["bounded"] * 4
    with pytest.raises(ValueError, match="check_test must be one of 'ttest', 'bounded'"):
        sscl.run_code_controls(run, select_attempts=2, check_test="both", progress=False)
    assert df[df.scenario == "Malicious"].other_attempt.isna().all()
    with pytest.raises(ValueError, match="select_attempts"):
        sscl.run_code_controls(run, select_attempts=0, progress=False)
    with pytest.raises(ValueError, match="redraw_surrogate"):
        sscl.run_code_controls(run, redraw_surrogate=True, progress=False)
    seen = _scripted_self_check(monkeypatch, [0.001])  # redrawing: the other code owner passes at once
    df = sscl.run_code_controls(run, select_attempts=2, redraw_surrogate=True, progress=False)
    code = df[df.scenario == "Ind-W code"]
    assert list(code.other_surrogate_seed) == [1000] and (code.other_attempt == 0).all()
    assert sscl.model_hash(seen[0][0].surrogate.model) != sscl.model_hash(run.surrogate.model)


def _scripted_class_check(monkeypatch, per_call):
    """Replace self_check by one returning, call by call, one proxy row with the scripted p-value of each class
    (classes not scripted: 0.5); the code's p-value is the largest (the intersection-union test); "other": the other
    test's p-value (default: the same)."""
    import pandas as pd

    seen = []

    def fake(run, n_proxies=1, m=None, tau=0.25, alpha=0.01, check_alpha=None, test="ttest", **_):
        level = alpha if check_alpha is None else check_alpha
        script = per_call[len(seen)]
        seen.append(run)
        ps = {f"p_{t}": script.get(t, 0.5) for t in run.targets}
        worst = max(ps.values())
        other = {"bounded_p_value" if test == "ttest" else "ttest_p_value": script.get("other", worst)}
        return pd.DataFrame([{"proxy_seed": 5000, "BA": 0.5, "p_value": worst, "delta_p_min": 0.3,
                              "verified": worst < level, "check_alpha": level, **ps, **other}])

    monkeypatch.setattr(sscl, "self_check", fake)
    return seen


def test_least_learnt_class_counts_failed_proxies_then_median_p():
    import pandas as pd

    log = pd.DataFrame({"check_alpha": [0.001] * 4, "p_5": [0.048, 0.18, 0.84, 0.073],
                        "p_3": [0.0037, 0.35, 1.5e-4, 0.082]})  # key 7's proxies on code {5, 3}
    assert sscl.least_learnt_class(log, (5, 3)) == 5  # class 5 missed on 4 proxies, class 3 on 3
    assert sscl.least_learnt_class(log, (5, 3), keep=5) == 3  # a fixed class is never dropped
    tie = pd.DataFrame({"check_alpha": [0.01, 0.01], "p_1": [0.2, 0.3], "p_2": [0.6, 0.02]})
    assert sscl.least_learnt_class(tie, [1, 2]) == 2  # both missed twice: the larger median p (0.31 vs 0.25)
    same = pd.DataFrame({"check_alpha": [0.01], "p_1": [0.5], "p_2": [0.5]})
    assert sscl.least_learnt_class(same, [1, 2]) == 2  # a full tie: the later class of the code
    with pytest.raises(ValueError, match="p_<class>"):
        sscl.least_learnt_class(log, (5, 4))
    with pytest.raises(ValueError, match="keep=5"):
        sscl.least_learnt_class(log[["check_alpha", "p_5"]], (5,), keep=5)


def test_check_code_draws_needs_a_code_and_the_owners_check():
    assert sscl.check_code_draws(1, 1, 1) == 1 and sscl.check_code_draws("3", 2, 2) == 3
    for bad in (0, -1):
        with pytest.raises(ValueError, match="code_draws"):
            sscl.check_code_draws(bad, 2, 2)
    with pytest.raises(TypeError, match="code_draws must be an integer >= 1; got '8/0'"):
        sscl.check_code_draws("8/0", 2, 2)
    for attempts, n in ((1, 2), (2, 1)):
        with pytest.raises(ValueError, match="code_draws > 1 .*n_targets >= 2 and select_attempts >= 2"):
            sscl.check_code_draws(2, attempts, n)


def test_select_code_draws_drops_the_class_the_proxies_did_not_learn(monkeypatch):
    ds, prof, kw = _toy_code_run(train_suspect=False)
    kw = {k: v for k, v in kw.items() if k not in ("targets", "key", "rate", "train_suspect")}
    first_code = sscl.key_targets(5, 4, 2)
    bad = first_code[0]  # the key's first class fails on both attempts of the first code
    seen = _scripted_class_check(monkeypatch, [{bad: 0.3, first_code[1]: 0.001}, {bad: 0.2, first_code[1]: 0.0},
                                               {c: 0.0 for c in range(4)}])
    run, log = sscl.select_code_draws(ds, prof, key=5, n_targets=2, draws=3, attempts=2, rate=0.05,
                                      train_suspect=False, **kw)
    sel = run.params["selection"]
    second = sscl.key_targets(5, 4, 2, pool=[c for c in range(4) if c != bad])
    assert sel["passed"] and sel["draw"] == 1 and sel["draws_tried"] == 2 and sel["draws_allowed"] == 3
    assert sel["excluded"] == [bad] and sel["codes_tried"] == [list(first_code), list(second)]
    assert run.targets == second and bad not in run.targets and run is seen[2] and run.suspect is None
    assert list(log.draw) == [0, 0, 1] and list(log.attempt) == [0, 1, 0]
    assert list(log.targets) == [" ".join(map(str, first_code))] * 2 + [" ".join(map(str, second))]
    line = sscl.selection_summary(sel)
    assert line.startswith(f"selection: code {{{second[0]}, {second[1]}}} (draw 1 of 2 tried, up to 3; classes "
                           f"dropped for later draws: {bad}), published attempt 0") and line.endswith("passed")
    # a fixed first class stays even when it is the less learnt (p 0.4 against 0.3); the partner is dropped
    # instead, and with none passing the best code is kept
    seen = _scripted_class_check(monkeypatch, [{1: 0.4, 3: 0.3}, {}])
    run, log = sscl.select_code_draws(ds, prof, key=5, n_targets=2, first=1, draws=2, attempts=1, rate=0.05,
                                      train_suspect=True, **kw)
    sel = run.params["selection"]
    assert sel["codes_tried"][0] == list(sscl.key_targets(5, 4, 2, first=1)) and sel["excluded"] == [3]
    assert all(c[0] == 1 for c in sel["codes_tried"]) and 3 not in sel["codes_tried"][1]
    assert not sel["passed"] and sel["draw"] == 0 and sel["proxy_p_max"] == 0.4 and run.suspect is not None
    assert "NO ATTEMPT PASSED" in sscl.selection_summary(sel)
    # the kept draw 0 still holds class 3, dropped only for draw 1: said, not left to look like a contradiction
    assert "classes dropped for later draws: 3; the kept draw predates dropping 3)" in sscl.selection_summary(sel)
    # a pool of two with a fixed first class leaves no second code: the draws stop early, said in the record
    _scripted_class_check(monkeypatch, [{1: 0.3, 2: 0.3}])
    run, _ = sscl.select_code_draws(ds, prof, key=5, n_targets=2, first=1, pool=(1, 2), draws=3, attempts=1,
                                    rate=0.05, **kw)
    assert run.params["selection"]["draws_tried"] == 1 and run.params["selection"]["excluded"] == [2]
    with pytest.raises(ValueError, match="code_draws"):
        sscl.select_code_draws(ds, prof, key=5, n_targets=2, draws=0, rate=0.05, **kw)


def test_code_controls_let_other_code_owners_redraw(monkeypatch):
    ds, prof, kw = _toy_code_run()
    run = sscl.run_code(ds, prof, **kw)
    other_code = sscl.key_targets(sscl.independent_key(5, 0), 4, 2, first=run.targets[0])
    # the other owner's first code fails on its partner class, its redrawn code passes; the same code passes at once
    _scripted_class_check(monkeypatch, [{other_code[1]: 0.5}, {other_code[1]: 0.5}, {c: 0.0 for c in range(4)},
                                        {c: 0.0 for c in range(4)}])
    df = sscl.run_code_controls(run, select_attempts=2, code_draws=2, same_code=True, progress=False)
    code = df[df.scenario == "Ind-W code"].iloc[0]
    assert code.other_draw == 1 and code.other_self_check and code.other_targets[0] == run.targets[0]
    assert other_code[1] not in code.other_targets and len(code.other_targets) == 2
    same = df[df.scenario == "Ind-W same code"].iloc[0]
    assert list(same.other_targets) == list(run.targets) and math.isnan(same.other_draw)  # no redraw
    with pytest.raises(ValueError, match="code_draws"):
        sscl.run_code_controls(run, code_draws=2, progress=False)


def _toy_plain_kw(**kw):
    return dict(eps="8/255", rate=0.05, target=1, key=5, perceptual="mse", progress=False, **kw)


def test_run_sscl_generator_seed_changes_only_the_generator():
    ds, prof, _ = _toy_code_run()
    kw = _toy_plain_kw(train_suspect=False)
    base = sscl.run_sscl(ds, prof, **kw)
    same = sscl.run_sscl(ds, prof, generator_seed=0, **kw)
    other = sscl.run_sscl(ds, prof, generator_seed=sscl.attempt_seed(0, 1), **kw)
    assert base.params["generator_seed"] == 0 and same.generator.cached
    assert same.marked.manifest["generator_hash"] == base.marked.manifest["generator_hash"]
    assert other.params["generator_seed"] == 100_000 and other.marked.manifest["generator_config"]["seed"] == 100_000
    assert other.marked.manifest["generator_hash"] != base.marked.manifest["generator_hash"]
    assert torch.equal(other.marked.marked, base.marked.marked) and not torch.equal(other.marked.x, base.marked.x)
    assert other.surrogate is not base.surrogate and sscl.model_hash(other.surrogate.model) == sscl.model_hash(
        base.surrogate.model)  # the surrogate keeps seed (cached), only the generator moves
    with pytest.raises(ValueError, match="generator_seed"):
        sscl.run_sscl(ds, prof, generator_seed=-1, **kw)


def test_select_run_publishes_the_first_single_target_attempt_that_passes(monkeypatch):
    ds, prof, _ = _toy_code_run()
    seen = _scripted_self_check(monkeypatch, [0.3, 0.002, 0.0])
    run, log = sscl.select_run(ds, prof, attempts=3, m=30, **_toy_plain_kw())
    assert isinstance(run, sscl.SSCLRun) and [m for _, m in seen] == [30, 30]
    assert list(log.attempt) == [0, 1] and list(log.generator_seed) == [0, 100_000]
    sel = run.params["selection"]
    assert sel["attempt"] == 1 and sel["passed"] and sel["attempts_tried"] == 2 and run is seen[1][0]
    assert sel["check_m"] == 30  # what the controls compare their queries with
    assert run.marked.manifest["generator_config"]["seed"] == 100_000 and run.params["target"] == 1
    # the suspect is the Malicious model of the published set, with the run's seed
    again = sscl.train_classifier(run.marked.x, run.marked.y, ds.x_test, ds.y_test, arch="resnet18", profile=prof,
                                  seed=0, num_classes=4, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(),
                                                  run.suspect.model.state_dict().values()))
    # attempts share one surrogate
    assert seen[0][0].surrogate is seen[1][0].surrogate
    assert sscl.selection_summary(sel) == ("selection: published attempt 1 (counted from 0; 2 tried, up to 3), "
                                           "proxy p max 0.002 (check at p < 0.01), passed")
    assert sel["check_alpha"] == 0.01 and seen.levels == [0.01, 0.01]
    # with check_alpha 1e-3 the same p-values send attempt 1 (p 0.002) back too; attempt 2 (p 0.0) is published
    seen = _scripted_self_check(monkeypatch, [0.3, 0.002, 0.0])
    run, log = sscl.select_run(ds, prof, attempts=3, train_suspect=False, check_alpha=1e-3, **_toy_plain_kw())
    sel = run.params["selection"]
    assert sel["attempt"] == 2 and sel["passed"] and sel["check_alpha"] == 1e-3 and seen.levels == [1e-3] * 3
    assert sel["check_m"] == prof.verify_m  # m None: the profile's, recorded as such (notebooks 02 and 03 agree)
    assert "proxy p max 0 (check at p < 0.001), passed" in sscl.selection_summary(sel)
    del sel["check_alpha"]  # a record from before check_alpha existed still reads
    assert sscl.selection_summary(sel).endswith("proxy p max 0, passed")



def test_selection_checks_with_the_test_the_owner_names(monkeypatch):
    ds, prof, kw = _toy_code_run(train_suspect=False)
    seen = _scripted_self_check(monkeypatch, [0.3, 0.002])
    run, _ = sscl.select_run(ds, prof, attempts=3, train_suspect=False, **_toy_plain_kw())
    assert seen.tests == ["ttest", "ttest"] and run.params["selection"]["check_test"] == "ttest"
    assert "(check at p < 0.01), passed" in sscl.selection_summary(run.params["selection"])
    seen = _scripted_self_check(monkeypatch, [0.3, 0.002])
    run, _ = sscl.select_run(ds, prof, attempts=3, train_suspect=False, test="bounded", **_toy_plain_kw())
    assert seen.tests == ["bounded", "bounded"] and run.params["selection"]["check_test"] == "bounded"
    assert "(check at p < 0.01, betting test), passed" in sscl.selection_summary(run.params["selection"])
    seen = _scripted_self_check(monkeypatch, [0.001])
    run, _ = sscl.select_code_run(ds, prof, attempts=2, test="bounded", **kw)
    assert seen.tests == ["bounded"] and run.params["selection"]["check_test"] == "bounded"
    seen = _scripted_self_check(monkeypatch, [0.001])  # select_code_draws hands it on
    run, _ = sscl.select_code_draws(ds, prof, key=5, n_targets=2, attempts=2, test="bounded", train_suspect=False,
                                    eps="8/255", perceptual="mse", progress=False)
    assert seen.tests == ["bounded"] and run.params["selection"]["check_test"] == "bounded"
    seen = _scripted_self_check(monkeypatch, [0.001])
    monkeypatch.setattr(sscl, "train_surrogate", lambda *a, **k: pytest.fail("trained before checking test"))
    for bad in ("both", "t-test"):  # refused before anything is trained
        with pytest.raises(ValueError, match="test must be one of 'ttest', 'bounded'"):
            sscl.select_code_run(ds, prof, attempts=2, test=bad, **kw)
        with pytest.raises(ValueError, match="test must be one of 'ttest', 'bounded'"):
            sscl.select_run(ds, prof, attempts=2, test=bad, **_toy_plain_kw())
    assert seen == []

def test_when_no_attempt_passes_ties_are_broken_by_the_other_tests_p_value(monkeypatch):
    """The betting test often gives p = 1 on every attempt of a mark that was not learnt (measured on a two-class
    code at width 16, 2026-12-06): the first attempt was kept though another was closer to passing by the t-test on
    the same answers. Ties in the deciding test's largest proxy p-value now go to the other test's; a real
    difference in the deciding test still decides, and select_code_draws keeps a draw by the same rule."""
    ds, prof, kw = _toy_code_run(train_suspect=False)
    seen = _scripted_self_check(monkeypatch, [(1.0, 0.63), (1.0, 0.99), (1.0, 0.36)])
    run, log = sscl.select_run(ds, prof, attempts=3, test="bounded", train_suspect=False, **_toy_plain_kw())
    sel = run.params["selection"]
    assert not sel["passed"] and sel["attempt"] == 2 and run is seen[2][0]
    assert (sel["proxy_p_max"], sel["other_test_p_max"]) == (1.0, 0.36)
    assert list(log.ttest_p_value) == [0.63, 0.99, 0.36]
    seen = _scripted_self_check(monkeypatch, [(0.5, 0.01), (0.4, 0.9)])  # the deciding test's 0.4 < 0.5 decides
    run, _ = sscl.select_run(ds, prof, attempts=2, train_suspect=False, **_toy_plain_kw())
    assert run.params["selection"]["attempt"] == 1 and run.params["selection"]["other_test_p_max"] == 0.9
    seen = _scripted_self_check(monkeypatch, [(1.0, 0.8), (1.0, 0.2)])
    run, _ = sscl.select_code_run(ds, prof, attempts=2, test="bounded", **kw)
    assert run.params["selection"]["attempt"] == 1
    seen = _scripted_class_check(monkeypatch, [{**dict.fromkeys(range(4), 1.0), "other": o} for o in (0.7, 0.3)])
    run, log = sscl.select_code_draws(ds, prof, key=5, n_targets=2, first=1, draws=2, attempts=1, test="bounded",
                                      train_suspect=False, eps="8/255", perceptual="mse", progress=False)
    assert len(seen) == 2 and run.params["selection"]["draw"] == 1 and run is seen[1]


def test_selection_refuses_an_owner_check_that_can_never_pass_before_training(monkeypatch):
    """The owner's check draws the queries the evaluation's m leaves: when those are 10, the t-test's check can pass
    (min_claim_queries) but the betting test's never can (11), so selection with test="bounded" is refused naming
    the class, before a surrogate is trained; a code is checked class by class."""
    ds, prof, kw = _toy_code_run(train_suspect=False)
    left = int((ds.y_test != 1).sum())
    m = left - 10  # the evaluation takes m, the owner's check the 10 left
    assert sscl.owner_query_count(ds, 1, m) == 10
    assert sscl.owner_query_count(ds, 3, m) == 10  # the same for class 3 (15 test images in each class)
    seen = _scripted_self_check(monkeypatch, [0.001])  # the t-test's check takes those 10
    run, _ = sscl.select_run(ds, prof, attempts=2, m=m, train_suspect=False, **_toy_plain_kw())
    assert seen.tests == ["ttest"] and run.params["selection"]["passed"]
    monkeypatch.setattr(sscl, "train_surrogate", lambda *a, **k: pytest.fail("trained before the query check"))
    with pytest.raises(ValueError, match=r"the owner's check for class 1 .*the betting test \(bounded_verify\) can "
                                         r"never claim from 10 queries.*at least 11"):
        sscl.select_run(ds, prof, attempts=2, m=m, test="bounded", **_toy_plain_kw())
    with pytest.raises(ValueError, match=r"the owner's check for class 1 .*can never claim ownership.*at least 10"):
        sscl.select_run(ds, prof, attempts=2, m=left - 9, **_toy_plain_kw())  # 9 left: no test can claim
    with pytest.raises(ValueError, match=r"the owner's check for class 3 .*never claim from 10 queries"):
        sscl.select_code_run(ds, prof, attempts=2, m=m, test="bounded", **{**kw, "targets": (3, 1)})
    seen = _scripted_self_check(monkeypatch, [0.001])
    with pytest.raises(ValueError, match=r"the owner's check for class 3 .*never claim from 10 queries"):
        sscl.select_code_draws(ds, prof, key=5, n_targets=2, first=3, attempts=2, m=m, test="bounded",
                               train_suspect=False, eps="8/255", perceptual="mse", progress=False)
    assert seen == []


def test_selection_caption_names_the_deciding_test_and_refuses_bad_options():
    """Notebook 03's plain-selection caption said "paper's test" even when the betting test decided (check_test
    bounded); the captions now come from one function that names the test that decided."""
    cap = sscl.selection_caption(3, "bounded", "cifar10-subset, resnet18")
    assert cap.startswith("Owner-side self-check of each selection attempt (3 proxy model(s), decided by the betting "
                          "test (bounded_verify);") and cap.endswith("): cifar10-subset, resnet18")
    assert "queries_apart is False" in cap and "t-test" not in cap
    assert "decided by the paper's t-test;" in sscl.selection_caption(1, "ttest", "x")
    with pytest.raises(ValueError, match=r"check_test must be one of 'ttest', 'bounded'.*got 'welch'"):
        sscl.selection_caption(1, "welch", "x")
    with pytest.raises(ValueError, match="n_proxies"):
        sscl.selection_caption(0, "ttest", "x")


def test_selection_label_names_the_check_s_level_and_test_when_not_the_paper_s():
    """Notebook 02's Table I captions and figures said "generator selected: attempt 1, passed" with check_test
    bounded, naming no test (its printed summary and notebook 03's label did): the label now says how the check
    decided whenever that is not the paper's t-test at alpha."""
    sel = {"attempt": 1, "passed": True, "redraw_surrogate": False, "check_alpha": 0.01, "check_test": "bounded"}
    assert sscl.selection_label(sel) == ("generator selected: attempt 1, passed (by the betting test "
                                         "(bounded_verify))")
    strict = {**sel, "check_alpha": 1e-3, "redraw_surrogate": True, "passed": False}
    assert sscl.selection_label(strict) == ("generator selected (surrogate redrawn per attempt): attempt 1, FAILED "
                                            "(check at p < 0.001, by the betting test (bounded_verify))")
    # the paper's test at alpha: as before, nothing added; a level stricter than the notebook's alpha is said
    assert sscl.selection_label({**sel, "check_test": "ttest"}) == "generator selected: attempt 1, passed"
    assert sscl.selection_label({**sel, "check_test": "ttest", "check_alpha": 1e-3}).endswith(
        "passed (check at p < 0.001)")
    assert sscl.selection_label({**sel, "check_test": "ttest"}, alpha=0.05).endswith("passed (check at p < 0.01)")
    with pytest.raises(ValueError, match="check_test must be one of 'ttest', 'bounded'"):
        sscl.selection_label({**sel, "check_test": "welch"})


def test_selection_label_names_any_check_level_other_than_alpha_and_reads_alpha_as_the_notebooks_do():
    """A check at 0.05 captioned against alpha 0.01 (the default) said nothing of its level, as if it had been at
    0.01; and alpha given as a string ("1/100", as parse_fraction reads it everywhere else) raised a TypeError."""
    sel = {"attempt": 2, "passed": True, "check_alpha": 0.05, "check_test": "ttest"}
    assert sscl.selection_label(sel) == "generator selected: attempt 2, passed (check at p < 0.05)"
    assert sscl.selection_label(sel, 0.05) == "generator selected: attempt 2, passed"  # at alpha: nothing added
    assert sscl.selection_label({**sel, "check_alpha": 0.001}, "1/100").endswith("passed (check at p < 0.001)")
    assert sscl.selection_label({**sel, "check_alpha": 0.01}, "0.01") == "generator selected: attempt 2, passed"
    with pytest.raises(ValueError, match="alpha"):
        sscl.selection_label(sel, 1.5)


def test_code_queries_names_each_class_s_count_as_verify_code_draws_it():
    """Notebook 03's target-code captions said "m <the first class's count> per class" with m None, though each class's
    count is the profile's verify_m capped at that class's own non-target test images (verify_code): with 40 test
    images, 4 of class 1 and 3 of class 5, class 1 is tested with 36 queries and class 5 with 37."""
    y = torch.tensor([1] * 4 + [5] * 3 + [0] * 33)
    assert sscl.code_queries(y, (1, 5), None, 40) == ("m 36 for class 1, 37 for class 5 (the profile's verify_m 40, "
                                                     "capped at each class's non-target test images)")
    assert [sscl.query_count(y, t, None, 40) for t in (1, 5)] == [36, 37]
    assert sscl.code_queries(y, (1, 5), None, 20) == "m 20 per class"  # no cap reached: one count
    assert sscl.code_queries(y, (1, 5), 12, 40) == "m 12 per class"  # m given: the same for every class
    with pytest.raises(ValueError, match="verify_m must be an integer >= 2"):
        sscl.code_queries(y, (1, 5), None, 1)
    with pytest.raises(ValueError, match="targets must hold at least one class"):
        sscl.code_queries(y, (), None, 40)  # was a garbled "m  (the profile's verify_m ...)"


def test_loss_weights_label_names_weights_only_when_not_the_defaults():
    """Notebook 01's loss figure and notebook 02's Table I captions named eps, gamma and the perceptual measure but
    not the loss weights: a generator with L_target switched off (l1 0) was captioned as the default one."""
    assert sscl.loss_weights_label() == "" and sscl.loss_weights_label(1, "1", 1.0) == ""
    assert sscl.loss_weights_label(0, 1, 1) == "loss weights l1 0, l2 1, l3 1"
    assert sscl.loss_weights_label("1/2", 2, 10) == "loss weights l1 0.5, l2 2, l3 10"
    with pytest.raises(ValueError, match="l3"):
        sscl.loss_weights_label(1, 1, -1)


def test_pool_label_names_the_hard_pool_the_key_drew_from():
    """Notebook 03's captions said a class came "from the key" and named no hard pool (hard_pool), so a code drawn
    among the 3 hardest classes read like one drawn among all ten."""
    assert sscl.pool_label(None) == ""
    assert sscl.pool_label((5, 3, 0)) == ("key's classes drawn among the 3 of lowest clean recall on our surrogate "
                                          "(5, 3, 0)")
    with pytest.raises(ValueError, match="pool must hold at least one class"):
        sscl.pool_label(())


def test_query_source_says_m_or_the_profile_s_verify_m_and_its_cap():
    y = torch.arange(60) % 4  # 45 test images outside class 1
    assert sscl.query_source(y, 1, 12, 40) == "m"
    assert sscl.query_source(y, 1, None, 40) == "the profile's verify_m 40"  # 40 of the 45: not capped
    assert sscl.query_source(y, 1, None, 100) == ("the profile's verify_m 100 capped at the 45 test images outside "
                                                  "class 1")
    assert sscl.query_count(y, 1, None, 100) == 45  # the count it describes


def test_check_owner_queries_names_where_the_evaluation_s_count_came_from():
    """The refusal names the class, the caller's role for it, and whether the evaluation's count was m or the
    profile's verify_m (and its cap): notebooks 02 and 03 call it instead of guards of their own."""
    ds, _, _ = _toy_code_run()  # 15 test images per class: 45 outside class 1
    prof = get_profile("smoke", verify_m=35)  # the evaluation takes 35, the owner's check the 10 left
    sscl.check_owner_queries(ds, prof, [1], test="ttest")  # 10 suffice for the t-test
    with pytest.raises(ValueError, match=r"the owner's check for class 1 \(the target class; the test images left "
                                         r"beside the evaluation's 35 queries, the profile's verify_m 35, at "
                                         r"check_alpha 0.01\).*betting test.*never claim from 10 queries"):
        sscl.check_owner_queries(ds, prof, [1], test="bounded", role="the target class")
    with pytest.raises(ValueError, match=r"evaluation's 36 queries, m, at check_alpha 0.001\).*never claim"):
        sscl.check_owner_queries(ds, prof, [3, 1], m=36, alpha=0.001)  # m given: the profile's is not named
    small = load_dataset("synthetic", num_classes=4, n_train=40, n_test=12, image_size=16)  # 9 outside each class
    with pytest.raises(ValueError, match=r"class 0 \(the evaluation's 9 queries again, fewer than 2 being left "
                                         r"apart, the profile's verify_m 35 capped at the 9 test images outside "
                                         r"class 0, at check_alpha 0.01\)"):
        sscl.check_owner_queries(small, prof, [0])
    sscl.check_owner_queries(ds, prof, [7, -1, True, 1.5], test="bounded")  # not a class: the run's to refuse
    for same in (torch.tensor(1), np.int64(1), "1"):  # what run_sscl accepts as target 1 is checked as 1
        with pytest.raises(ValueError, match=r"the owner's check for class 1 \(the test images left"):
            sscl.check_owner_queries(ds, prof, [same], test="bounded")


def test_select_run_says_when_no_attempt_passes_and_refuses_bad_counts(monkeypatch):
    ds, prof, _ = _toy_code_run()
    seen = _scripted_self_check(monkeypatch, [0.5, 0.2])
    evaluated = []
    monkeypatch.setattr(sscl, "evaluate", lambda model, x, y: evaluated.append(model) or 0.25)
    run, log = sscl.select_run(ds, prof, attempts=2, train_suspect=False, **_toy_plain_kw())
    # the fixed surrogate's accuracy is measured once and named in every attempt's rows
    assert evaluated == [run.surrogate.model] and list(log.surrogate_BA) == [0.25, 0.25]
    sel = run.params["selection"]
    assert not sel["passed"] and sel["attempt"] == 1 and sel["proxy_p_max"] == 0.2 and run.suspect is None
    # the warning leads, and the attempt kept is not called published
    assert sscl.selection_summary(sel) == ("selection: NO ATTEMPT PASSED: this owner cannot expect to verify; kept "
                                           "attempt 1 (the smallest proxy p max, ties broken by the other test's; "
                                           "counted from 0; 2 tried, up to 2), "
                                           "proxy p max 0.2 (check at p < 0.01)")
    assert "(kept: surrogate seed 7)" in sscl.selection_summary(dict(sel, redraw_surrogate=True, surrogate_seed=7))
    # a record written before ties went to the other test kept the first attempt on a tie: not said to be otherwise
    old = {k: v for k, v in sel.items() if k != "other_test_p_max"}
    assert "kept attempt 1 (the smallest proxy p max; counted from 0;" in sscl.selection_summary(old)
    assert len(seen) == 2 and len(log) == 2
    for bad in (dict(attempts=0), dict(n_proxies=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            sscl.select_run(ds, prof, **bad, **_toy_plain_kw())
    with pytest.raises(TypeError, match="generator_seed"):
        sscl.select_run(ds, prof, generator_seed=3, **_toy_plain_kw())
    assert len(seen) == 2  # refused before any training


def test_proxy_models_are_never_evaluated_models(monkeypatch):
    """A proxy trained with seed PROXY_SEED_OFFSET + i on the marked set IS the Malicious model of that seed (same
    cached training): a study whose model seeds reach the proxies' is refused by name, before any training."""
    from types import SimpleNamespace

    sscl.check_proxy_seeds(0, 5, 3)
    sscl.check_proxy_seeds(4995, 5, 1)  # 4995..4999: below the proxies
    sscl.check_proxy_seeds(5003, 4, 3)  # proxies 5000..5002
    with pytest.raises(ValueError, match=r"seed 5000: .*seed 5000 overlap .*5000\.\.5000.*at most 4999 or at least 50"):
        sscl.check_proxy_seeds(5000, 1, 1)
    with pytest.raises(ValueError, match=r"seeds 4998\.\.5002 overlap .*5000\.\.5001"):
        sscl.check_proxy_seeds(4998, 5, 2)
    ds, prof, _ = _toy_code_run()
    seen = _scripted_self_check(monkeypatch, [0.0])
    with pytest.raises(ValueError, match="proxy would be a suspect"):
        sscl.select_run(ds, prof, attempts=2, **{**_toy_plain_kw(), "seed": sscl.PROXY_SEED_OFFSET})
    assert not seen  # refused before any attempt
    # without a suspect of its own (an independent owner's selection) that seed is allowed
    sscl.select_run(ds, prof, attempts=2, train_suspect=False, **{**_toy_plain_kw(), "seed": sscl.PROXY_SEED_OFFSET})
    # a code chosen by select_code_draws trains its suspect itself: the same check, before any attempt
    seen.clear()
    code_kw = {k: v for k, v in _toy_plain_kw().items() if k not in ("target", "key")}
    with pytest.raises(ValueError, match="proxy would be a suspect"):
        sscl.select_code_draws(ds, prof, key=5, n_targets=2, attempts=2, seed=sscl.PROXY_SEED_OFFSET, **code_kw)
    with pytest.raises(ValueError, match="proxy would be a suspect"):  # every proxy counts: the second's seed
        sscl.select_code_draws(ds, prof, key=5, n_targets=2, attempts=2, n_proxies=2,
                               seed=sscl.PROXY_SEED_OFFSET + 1, **code_kw)
    assert not seen
    # controls: our selected run's proxies, and the other owners' when they select, against the study's seeds
    run = SimpleNamespace(ds=None, profile=SimpleNamespace(n_models=3), targets=(1, 2),
                          params={"seed": 4998, "selection": {"n_proxies": 1}})
    for controls in (sscl.run_controls, sscl.run_code_controls):
        with pytest.raises(ValueError, match=r"seeds 4998\.\.5000 overlap"):
            controls(run)
    run.params = {"seed": 4998}  # not selected: only the other owners' proxies count
    with pytest.raises(ValueError, match="overlap"):
        sscl.run_controls(run, select_attempts=2, n_proxies=1)


def test_self_check_refuses_proxies_that_would_be_the_runs_own_suspect(monkeypatch):
    """run_sscl(seed=5001) trains its suspect with seed 5001, which self_check's second proxy would train again on
    the same marked set: the owner's check would look at the suspect itself."""
    from types import SimpleNamespace

    monkeypatch.setattr(sscl, "train_classifier", lambda *a, **k: pytest.fail("trained before refusing"))
    ds, prof, _ = _toy_code_run()
    run = SimpleNamespace(ds=ds, profile=prof, suspect=object(), params={"seed": sscl.PROXY_SEED_OFFSET + 1})
    with pytest.raises(ValueError, match="proxy would be a suspect"):
        sscl.self_check(run, n_proxies=2)
    with pytest.raises(ValueError, match="proxy would be a suspect"):
        sscl.self_check(SimpleNamespace(**{**vars(run), "params": {"seed": sscl.PROXY_SEED_OFFSET}}))


def test_select_run_can_redraw_the_surrogate_each_attempt(monkeypatch):
    ds, prof, _ = _toy_code_run()
    seen = _scripted_self_check(monkeypatch, [0.3, 0.002])
    run, log = sscl.select_run(ds, prof, attempts=3, train_suspect=False, redraw_surrogate=True, **_toy_plain_kw())
    first, second = seen[0][0], seen[1][0]
    # attempt 0 is the unselected run (the usual surrogate); attempt 1 trains its own, seeded attempt_seed(0, 1)
    usual = sscl.train_surrogate(ds, prof, "resnet18", 0, progress=False)
    fresh = sscl.train_surrogate(ds, prof, "resnet18", 100_000, progress=False)
    assert sscl.model_hash(first.surrogate.model) == sscl.model_hash(usual.model)
    assert sscl.model_hash(second.surrogate.model) == sscl.model_hash(fresh.model) != sscl.model_hash(usual.model)
    assert list(log.surrogate_seed) == [0, 100_000] and list(log.generator_seed) == [0, 100_000]
    assert log.surrogate_BA.between(0, 1).all() and log.surrogate_BA.nunique() == 2
    sel = run.params["selection"]
    assert run is second and sel["passed"] and sel["surrogate_seed"] == 100_000 and sel["redraw_surrogate"]
    assert sscl.selection_summary(sel) == ("selection: published attempt 1 (counted from 0; 2 tried, up to 3), "
                                           "surrogate redrawn per attempt (published: surrogate seed 100000), "
                                           "proxy p max 0.002 "
                                           "(check at p < 0.01), passed")
    # the published generator was trained against the redrawn surrogate (its cache key names that surrogate)
    again = sscl.run_sscl(ds, prof, generator_seed=100_000, surrogate=fresh, train_suspect=False, **_toy_plain_kw())
    assert again.generator.cached and again.marked.manifest["generator_hash"] == run.marked.manifest["generator_hash"]
    with pytest.raises(ValueError, match="redraw_surrogate"):
        sscl.select_run(ds, prof, redraw_surrogate=True, surrogate=usual, **_toy_plain_kw())
    with pytest.raises(TypeError, match="redraw_surrogate"):
        sscl.select_run(ds, prof, redraw_surrogate="yes", **_toy_plain_kw())
    assert len(seen) == 2  # refused before any training
    # without redraw, a surrogate passed in is used by every attempt, and the log cannot name its seed
    seen = _scripted_self_check(monkeypatch, [0.5, 0.5])
    _, log = sscl.select_run(ds, prof, attempts=2, train_suspect=False, surrogate=fresh, **_toy_plain_kw())
    assert all(r.surrogate is fresh for r, _ in seen) and log.surrogate_seed.isna().all()


def test_controls_let_independent_owners_select_too(monkeypatch):
    ds, prof, _ = _toy_code_run()
    run = sscl.run_sscl(ds, prof, **_toy_plain_kw())
    _scripted_self_check(monkeypatch, [0.5, 0.001])  # the independent owner passes at its second attempt
    df = sscl.run_controls(run, select_attempts=2, decoy=False, progress=False)
    indw = df[df.scenario == "Ind-W"]
    assert (indw.other_attempt == 1).all() and indw.other_self_check.all()
    assert df[df.scenario == "Malicious"].other_attempt.isna().all()
    plain = sscl.run_controls(run, decoy=False, progress=False)
    assert "other_attempt" not in plain and "other_surrogate_seed" not in df
    assert list(plain.scenario) == list(df.scenario)
    with pytest.raises(ValueError, match="select_attempts"):
        sscl.run_controls(run, select_attempts=0, progress=False)
    # with a margin the independent owner's check needs p < check_alpha too: 0.001 no longer passes attempt 0
    seen = _scripted_self_check(monkeypatch, [0.001, 5e-5])
    strict = sscl.run_controls(run, select_attempts=2, decoy=False, progress=False, check_alpha=1e-4)
    assert seen.levels == [1e-4, 1e-4] and (strict[strict.scenario == "Ind-W"].other_attempt == 1).all()
    assert seen.tests == ["ttest", "ttest"]  # the paper's test by default
    # the test the owner names reaches the independent owner's check; an unknown one is refused before training
    seen = _scripted_self_check(monkeypatch, [0.5, 0.001])
    sscl.run_controls(run, select_attempts=2, decoy=False, progress=False, check_test="bounded")
    assert seen.tests == ["bounded", "bounded"]
    with pytest.raises(ValueError, match="check_test must be one of 'ttest', 'bounded'"):
        sscl.run_controls(run, select_attempts=2, check_test="both", progress=False)
    assert len(seen) == 2
    with pytest.raises(ValueError, match="check_alpha"):
        sscl.run_controls(run, select_attempts=2, check_alpha=0.05, progress=False)
    # redrawing: the independent owner (seed 1000) selects over its own surrogates, never ours
    seen = _scripted_self_check(monkeypatch, [0.5, 0.001])
    df = sscl.run_controls(run, select_attempts=2, redraw_surrogate=True, decoy=False, progress=False)
    indw = df[df.scenario == "Ind-W"]
    assert list(indw.other_surrogate_seed) == [sscl.attempt_seed(1000, 1)] and (indw.other_attempt == 1).all()
    ours = sscl.model_hash(run.surrogate.model)
    assert len(seen) == 2 and all(sscl.model_hash(r.surrogate.model) != ours for r, _ in seen)
    with pytest.raises(ValueError, match="select_attempts >= 2"):
        sscl.run_controls(run, redraw_surrogate=True, progress=False)


def test_hashes_identify_data_and_weights():
    x = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 2, 2)
    y = torch.tensor([0, 1])
    h = sscl.data_hash(x, y)
    assert len(h) == 16 and h == sscl.data_hash(x.clone(), y.clone())
    assert h != sscl.data_hash(x, torch.tensor([1, 0])) and h != sscl.data_hash(x)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert sscl.model_hash(a) == sscl.model_hash(b)
    with torch.no_grad():
        b.bias[0] += 1e-3
    assert sscl.model_hash(a) != sscl.model_hash(b)


def test_generator_width_and_independent_keys():
    assert sscl.generator_width(get_profile("quick")) == 32  # half of width 64
    assert sscl.generator_width(get_profile("quick:width=8")) == 8  # never below 8
    keys = [sscl.independent_key(20240607, i) for i in range(20)]
    assert len(set(keys)) == 20 and 20240607 not in keys
    assert keys == [sscl.independent_key(20240607, i) for i in range(20)]  # reproducible
    assert sscl.independent_key(1, 0) != sscl.independent_key(2, 0)


def test_residual_label_names_the_gain_and_the_largest_change():
    clean = torch.full((2, 3, 4, 4), 100, dtype=torch.uint8)
    marked = clean.clone()
    marked[1, 2, 3, 3] += 8  # 8 grey levels, as a mark at eps 8/255 at most
    marked[0, 0, 0, 0] -= 4
    assert sscl.residual_label(clean, marked) == "residual x15.9 around grey (largest change 8/255)"
    # amplified_residual of these images reaches white at that pixel: the label's gain is the one it applied
    assert sscl.amplified_residual(clean, marked)[1, 2, 3, 3].item() == pytest.approx(1.0)
    as_float = sscl.residual_label(clean.float() / 255, marked.float() / 255)  # floats in [0, 1]: the same words
    assert as_float == "residual x15.9 around grey (largest change 8/255)"
    assert sscl.residual_label(clean, clean) == "residual (none: the images are equal)"
    with pytest.raises(ValueError, match="one shape and dtype"):
        sscl.residual_label(clean, marked.float())


def test_amplified_residual_centres_the_residual_on_grey():
    clean = torch.full((1, 3, 4, 4), 0.5)
    marked = clean.clone()
    marked[0, 0, 0, 0] += 0.02
    marked[0, 1, 0, 0] -= 0.01
    r = sscl.amplified_residual(clean, marked)
    assert r[0, 0, 0, 0].item() == pytest.approx(1.0) and r[0, 1, 0, 0].item() == pytest.approx(0.25)
    assert (r[0, 2] == 0.5).all()  # unchanged pixels are grey
    assert sscl.amplified_residual(clean, clean).eq(0.5).all()  # no residual: no division by zero
    assert sscl.amplified_residual(clean, marked, gain=10)[0, 0, 0, 0].item() == pytest.approx(0.7)


class _StopAt(nn.Module):
    """A surrogate ``f`` that raises KeyboardInterrupt at its ``at``-th call (it runs twice per generator iteration):
    an interrupted generator training."""

    def __init__(self, f: nn.Module, at: int):
        super().__init__()
        self.f, self.at, self.calls = f, at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.f(x)


@pytest.mark.parametrize("augment", [False, True])
def test_generator_training_resumes_after_an_interruption_and_saves_by_time(tmp_path, monkeypatch, augment):
    """An interrupted run resumes from its checkpoint and ends with the weights of an uninterrupted one (with the
    suspect-like augmentation too: its random state is saved); by default the state is written at most once a
    minute, not at every log step."""
    import dovlib.train

    ds, f = _toy()
    cfg = GeneratorConfig(eps=16 / 255, target=1, key=3, iters=8, batch=8, perceptual="mse", width=4, depth=2,
                          augment=augment)
    straight, hist = train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2)
    saved, real_save = [], dovlib.train._save_atomic
    monkeypatch.setattr(dovlib.train, "_save_atomic",
                        lambda obj, path: (saved.append(obj["iter"]), real_save(obj, path)))
    ckpt = tmp_path / "g.pt"
    train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2, checkpoint=ckpt)
    assert saved == [] and not ckpt.exists()  # 8 fast iterations: no save due
    with pytest.raises(KeyboardInterrupt):  # stopped inside iteration 6
        train_generator(_StopAt(f, 2 * 5 + 1), ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2,
                        checkpoint=ckpt, checkpoint_every=0)
    assert saved == [2, 4] and torch.load(ckpt, weights_only=False)["iter"] == 4
    resumed, hist2 = train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2,
                                     checkpoint=ckpt, checkpoint_every=0)
    assert saved == [2, 4, 6] and [h["iter"] for h in hist2] == [2, 4, 6, 8]
    assert [h["l_target"] for h in hist2] == pytest.approx([h["l_target"] for h in hist])
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    # with the default interval nothing is due in 8 fast iterations, yet an interruption keeps the last logged step,
    # and the surrogate gets its mode and gradient flags back
    saved.clear()
    ckpt.unlink()
    stop = _StopAt(f, 2 * 5 + 1).train()
    with pytest.raises(KeyboardInterrupt):
        train_generator(stop, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2, checkpoint=ckpt)
    assert saved == [4] and stop.training and all(q.requires_grad for q in stop.parameters())
    resumed, hist3 = train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2,
                                     checkpoint=ckpt)
    assert [h["iter"] for h in hist3] == [2, 4, 6, 8]
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_generator_checkpoint_resumes_only_for_its_images_and_surrogate(tmp_path):
    ds, f = _toy()
    cfg = GeneratorConfig(eps=16 / 255, target=1, key=3, iters=4, batch=8, perceptual="mse", width=4, depth=2)
    ckpt = tmp_path / "g.pt"

    with pytest.raises(KeyboardInterrupt):  # stopped inside iteration 4, after the first checkpoint (iteration 2)
        train_generator(_StopAt(f, 2 * 3 + 1), ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2,
                        checkpoint=ckpt, checkpoint_every=0)
    assert torch.load(ckpt, weights_only=False)["iter"] == 2
    other_x = ds.x_train.flip(0)
    f.train()
    with pytest.raises(ValueError, match="written for other training images; delete it"):
        train_generator(f, other_x, ds.y_train, cfg, device="cpu", progress=False, checkpoint=ckpt)
    assert f.training and all(q.requires_grad for q in f.parameters())  # refused before it was frozen
    torch.manual_seed(1)
    other_f = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    with pytest.raises(ValueError, match="written for another surrogate; delete it"):
        train_generator(other_f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=False)
    del state["data"], state["surrogate"]  # a checkpoint of older code: resumed (its cache folder is keyed by both)
    torch.save(state, ckpt)
    _, hist = train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2,
                              checkpoint=ckpt)
    assert [h["iter"] for h in hist] == [2, 4]
    # saved by a run on a GPU (its augmentation generator's state is a CUDA one): resumed here, that stream reseeded
    torch.save({**state, "aug_rng": torch.tensor([7, 64], dtype=torch.int64).view(torch.uint8)}, ckpt)
    with pytest.warns(UserWarning, match="augmentation random generator's state, which this cpu generator cannot load"):
        _, hist = train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2,
                                  checkpoint=ckpt)
    assert [h["iter"] for h in hist] == [2, 4]


def test_selection_options_without_selection_are_refused_by_name():
    sscl.check_selection_options(1, 1, None)  # the defaults
    sscl.check_selection_options(3, 2, 0.001)
    with pytest.raises(ValueError, match=r"n_proxies=3 and check_alpha=0.001 tune the owner's generator selection, "
                                         r"which needs select_attempts >= 2; got select_attempts=1"):
        sscl.check_selection_options(1, 3, 0.001)
    with pytest.raises(ValueError, match=r"^check_alpha=0.005 tunes the owner"):
        sscl.check_selection_options(1, 1, 0.005)
    # given alpha, a check at alpha itself (what check_level makes of None) is no stricter check; a stricter one is
    sscl.check_selection_options(1, 1, 0.01, alpha="0.01")
    with pytest.raises(ValueError, match=r"^check_alpha=0.005 tunes the owner"):
        sscl.check_selection_options(1, 1, 0.005, alpha=0.01)
    # the owner's check test: any known one with a selection, only the default without; an unknown one never
    sscl.check_selection_options(1, 1, None, test="ttest")
    sscl.check_selection_options(2, 1, None, test="bounded")
    with pytest.raises(ValueError, match=r"^check_test='bounded' tunes the owner's generator selection, which needs "
                                         r"select_attempts >= 2; got select_attempts=1"):
        sscl.check_selection_options(1, 1, None, test="bounded")
    for attempts in (1, 2):
        with pytest.raises(ValueError, match=r"^check_test must be one of 'ttest', 'bounded'.*got 'both'"):
            sscl.check_selection_options(attempts, 1, None, test="both")


def test_generator_config_reads_integers_as_papermill_passes_them():
    cfg = GeneratorConfig(iters="10", batch="128", depth="2", width="8", key_channels="1", seed="3")
    assert (cfg.iters, cfg.batch, cfg.depth, cfg.width, cfg.key_channels, cfg.seed) == (10, 128, 2, 8, 1, 3)
    with pytest.raises(TypeError, match="batch must be an integer >= 2"):
        GeneratorConfig(batch="x")
    with pytest.raises(ValueError, match="batch must be an even integer"):
        GeneratorConfig(batch="7")


def _border_zero(x: torch.Tensor) -> torch.Tensor:
    """Per image: is a whole outer row or column exactly 0 (the zero padding a random crop shifts in)?"""
    return torch.stack([x[:, :, 0].flatten(1), x[:, :, -1].flatten(1), x[:, :, :, 0].flatten(1),
                        x[:, :, :, -1].flatten(1)]).eq(0).all(-1).any(0)


@pytest.mark.parametrize("augment", [False, True])
def test_augment_shows_the_surrogate_the_suspects_crops_and_flips(augment):
    """``augment=True``: the losses are taken on randomly cropped (zero padding 4) and flipped watermarked images, as
    a suspect's training sees them; off, the surrogate sees G(x) itself."""
    ds, f = _toy()
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.f, self.calls = f, 0

        def forward(self, x):
            self.calls += 1
            if self.calls % 2 == 0:  # the second call of an iteration: the watermarked batch
                seen.append(x.detach())
            return self.f(x)

    cfg = GeneratorConfig(eps=16 / 255, target=1, key=3, iters=5, batch=16, perceptual="mse", width=4, depth=2,
                          augment=augment)
    train_generator(Recorder(), ds.x_train.clamp(min=1), ds.y_train, cfg,  # no image of its own has a 0 border
                    device="cpu", progress=False)
    shifted = _border_zero(torch.cat(seen)).float().mean().item()
    if augment:
        assert 0.6 < shifted < 1.0  # 1 - (1/9)^2 of crops shift some border in; images themselves have no 0 border
    else:
        assert shifted == 0.0


@pytest.mark.parametrize("option", ["augment", "bf16"])
def test_option_is_keyed_only_when_on(option):
    """``augment`` / ``bf16`` join the cache key and the published settings only when on, so generators cached
    before the options existed are still found; on, it is another generator."""
    off, on = GeneratorConfig(), GeneratorConfig(**{option: True})
    assert option not in off.as_dict() and option not in off.public()
    assert on.as_dict()[option] is True and on.public()[option] is True
    with pytest.raises(TypeError, match=f"{option} must be True or False"):
        GeneratorConfig(**{option: "yes"})
    ds, f = _toy()
    kw = dict(eps=16 / 255, target=1, key=3, iters=4, batch=8, perceptual="mse", width=4, depth=2)
    g = get_or_train_generator(f, ds.x_train, ds.y_train, GeneratorConfig(**kw), device="cpu", progress=False)
    ga = get_or_train_generator(f, ds.x_train, ds.y_train, GeneratorConfig(**kw, **{option: True}), device="cpu",
                                progress=False)
    assert not ga.cached and ga.meta["config"][option] is True and option not in g.meta["config"]
    assert not torch.equal(g.mark(ds.x_test), ga.mark(ds.x_test))


@pytest.mark.parametrize("bf16", [False, True])
def test_bf16_runs_generator_and_surrogate_in_bf16_and_the_perceptual_loss_in_fp32(monkeypatch, bf16):
    """``bf16`` (``precision="bf16"``): G's U-Net and the surrogate compute in bf16 under autocast on the CPU, while
    the perceptual loss gets fp32 images outside autocast (bf16 cannot resolve 1 - SSIM of about 0.004)."""
    ds, f = _toy()
    conv_dtypes, loss_calls = set(), []

    class Recording(nn.Module):
        def forward(self, x, xw):
            loss_calls.append((x.dtype, xw.dtype, torch.is_autocast_enabled("cpu")))
            return ((x - xw) ** 2).flatten(1).mean(1)

    monkeypatch.setattr(sscl, "perceptual_loss", lambda name: Recording())
    cfg = GeneratorConfig(eps=16 / 255, target=1, key=3, iters=3, batch=8, perceptual="mse", width=4, depth=2,
                          bf16=bf16)
    torch.manual_seed(0)
    surrogate = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(4))
    surrogate(torch.zeros(1, 3, 16, 16))
    surrogate[0].register_forward_hook(lambda m, i, o: conv_dtypes.add(o.dtype))
    G, _ = train_generator(surrogate, ds.x_train, ds.y_train, cfg, device="cpu", progress=False)
    # y_min (the least-likely class of clean images) stays fp32; the watermarked batch is in bf16 when on
    assert conv_dtypes == ({torch.float32, torch.bfloat16} if bf16 else {torch.float32})
    assert loss_calls == [(torch.float32, torch.float32, False)] * 3
    assert all(p.dtype == torch.float32 for p in G.parameters())
    assert G.mark(ds.x_test).dtype == torch.uint8
    assert sscl.generator_config(get_profile("smoke:precision=bf16")).bf16
    assert not sscl.generator_config(get_profile("smoke")).bf16


def test_key_targets_pool_keeps_the_keys_order_within_the_pool():
    full = sscl.key_targets(7, 10, 10)
    pool = (9, 3, 5, 2, 4)
    drawn = sscl.key_targets(7, 10, 3, pool=pool)
    assert drawn == tuple(c for c in full if c in pool)[:3]  # the key's order of preference, restricted
    assert sscl.key_targets(7, 10, 2, first=1, pool=pool)[0] == 1  # first is kept even outside the pool
    assert set(sscl.key_targets(7, 10, 2, first=1, pool=pool)[1:]) <= set(pool)
    with pytest.raises(ValueError, match=r"n_targets must be at most 5 \(the pool's classes"):
        sscl.key_targets(7, 10, 6, pool=pool)
    with pytest.raises(ValueError, match=r"pool must hold class indices in \[0, 9\]"):
        sscl.key_targets(7, 10, 2, pool=(3, 10))
    with pytest.raises(ValueError, match=r"pool must hold class indices"):
        sscl.key_targets(7, 10, 1, pool=())


class _FixedPredictor(nn.Module):
    """Predicts a given label per image (its index in the batch's first pixel)."""

    def __init__(self, labels, num_classes):
        super().__init__()
        self.labels, self.num_classes = torch.as_tensor(labels), num_classes
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        idx = (x[:, 0, 0, 0] * 255).round().long()
        return F.one_hot(self.labels[idx], self.num_classes).float() + self.w


def test_class_recall_and_hard_classes_rank_classes_by_clean_recall():
    y = torch.tensor([0] * 4 + [1] * 4 + [2] * 4 + [3] * 4)
    pred = torch.tensor([0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 0, 1, 3, 3, 3, 0])  # recall 1, 0.25, 0.5, 0.75
    x = torch.zeros(16, 3, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(16, dtype=torch.uint8)
    model = _FixedPredictor(pred, 4)
    assert sscl.class_recall(model, x, y).tolist() == pytest.approx([1.0, 0.25, 0.5, 0.75])
    assert sscl.class_recall(model, x, y, num_classes=5).tolist()[-1] == 0.0  # a class without images: 0
    assert sscl.hard_classes(model, x, y, 2) == (1, 2)
    assert sscl.hard_classes(model, x, y, 4) == (1, 2, 3, 0)
    with pytest.raises(ValueError, match=r"n \(hard classes\) must be an integer in \[1, 4\]"):
        sscl.hard_classes(model, x, y, 5)
    with pytest.raises(ValueError, match="equal length"):
        sscl.class_recall(model, x, y[:3])


def test_controls_say_when_their_queries_may_meet_a_selected_runs_check():
    """The owner's check queries images apart from the evaluation draw (seed EVAL_VERIFY_SEED, check_m per class);
    controls drawn with another seed or more images may query the check's images (31 of 100 with seed 3): warned."""
    import inspect
    import types
    import warnings

    assert inspect.signature(sscl.run_controls).parameters["verify_seed"].default == sscl.EVAL_VERIFY_SEED
    ds = types.SimpleNamespace(y_test=torch.tensor([0, 1, 2, 3] * 50))
    prof = types.SimpleNamespace(verify_m=40)
    run = types.SimpleNamespace(ds=ds, profile=prof, params={"selection": {"check_m": 30}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sscl._warn_if_queries_meet_the_check(run, {1: 30}, sscl.EVAL_VERIFY_SEED)  # the draw the check avoided
        sscl._warn_if_queries_meet_the_check(run, {1: 20}, sscl.EVAL_VERIFY_SEED)  # a prefix of it
        unselected = types.SimpleNamespace(ds=ds, profile=prof, params={})
        sscl._warn_if_queries_meet_the_check(unselected, {1: 100}, 3)  # no check: nothing to meet
    for counts, seed in (({1: 31}, sscl.EVAL_VERIFY_SEED), ({1: 30}, 3)):
        with pytest.warns(UserWarning, match=r"may query images the check used"):
            sscl._warn_if_queries_meet_the_check(run, counts, seed)
    run.params["selection"] = {"check_m": None}  # the profile's verify_m, capped at the non-target count
    with pytest.warns(UserWarning, match=r"seed 0 and 40 images per class; testing the suspects on seed 0 with 41"):
        sscl._warn_if_queries_meet_the_check(run, {1: 41}, sscl.EVAL_VERIFY_SEED)


def test_both_watermark_losses_off_is_refused():
    """l1 = l2 = 0 trained a generator with no watermark objective, cached and published as SSCL-BW."""
    with pytest.raises(ValueError, match=r"l1 and l2 .* must not both be 0.*got l1=0.0, l2=0.0"):
        GeneratorConfig(l1=0, l2="0")
    assert GeneratorConfig(l1=0).l2 == 1.0 and GeneratorConfig(l2=0, l3=0).l1 == 1.0  # ablations of one loss


class _StopAfterWarning(Exception):
    pass


@pytest.mark.parametrize("which", ["plain", "code"])
def test_control_studies_warn_when_their_queries_may_meet_a_selected_runs_check(monkeypatch, which):
    """run_controls and run_code_controls both call the warning (the helper alone is tested above): a selected run
    whose check used 5 images per class, tested on more, is warned about before any control model is trained."""
    ds, prof, kw = _toy_code_run()
    if which == "plain":
        run = sscl.run_sscl(ds, prof, train_suspect=False, **_toy_plain_kw())
    else:
        run = sscl.run_code(ds, prof, train_suspect=False, **kw)
    run.params["selection"] = {"check_m": 5, "n_proxies": 1}

    def stop(*a, **k):
        raise _StopAfterWarning

    monkeypatch.setattr(sscl, "_malicious_and_benign", stop)
    with pytest.warns(UserWarning, match=r"may query images the check used"), pytest.raises(_StopAfterWarning):
        if which == "plain":
            sscl.run_controls(run, m=10, decoy=False, progress=False)
        else:
            sscl.run_code_controls(run, m=10, progress=False)


def test_bf16_generators_of_older_code_are_neither_reused_nor_resumed(tmp_path):
    """The residual eps * tanh(.) is taken in fp32 since it overshot 8/255 in bf16: a bf16 generator's cache key names
    that code, so a bf16 generator cached (or half trained) by older code is trained again; fp32 generators, which
    that change left as they were, keep their keys."""
    from dovlib.report import run_dir

    ds, f = _toy()
    kw = dict(eps=16 / 255, target=1, key=3, iters=2, batch=8, perceptual="mse", width=4, depth=1)
    fp32, bf16 = GeneratorConfig(**kw), GeneratorConfig(**kw, bf16=True)
    k32 = sscl._generator_key(sscl.model_hash(f), ds.x_train, ds.y_train, fp32)
    k16 = sscl._generator_key(sscl.model_hash(f), ds.x_train, ds.y_train, bf16)
    assert sorted(k32) == sorted(["what", "version", "data", "surrogate", *fp32.as_dict()])  # as before the fix
    assert "generator_code" not in k32 and k16["generator_code"] == sscl.BF16_GENERATOR_CODE
    assert {k: v for k, v in k16.items() if k not in ("generator_code", "bf16")} == k32
    # a bf16 generator the older code cached (its key had no marker) is not found
    old, _ = train_generator(f, ds.x_train, ds.y_train, bf16, device="cpu", progress=False)
    old.save(run_dir(sscl.CACHE, {k: v for k, v in k16.items() if k != "generator_code"}) / "generator.pt")
    assert not get_or_train_generator(f, ds.x_train, ds.y_train, bf16, device="cpu", progress=False).cached
    assert get_or_train_generator(f, ds.x_train, ds.y_train, bf16, device="cpu", progress=False).cached
    # nor is a partial checkpoint of the older code (no marker) resumed, at a path the caller passes either
    ck = tmp_path / "generator_ckpt.pt"
    torch.save({"config": bf16.as_dict(), "data": data_hash(ds.x_train, ds.y_train), "surrogate": sscl.model_hash(f)},
               ck)
    with pytest.raises(ValueError, match="older generator code"):
        train_generator(f, ds.x_train, ds.y_train, bf16, device="cpu", progress=False, checkpoint=ck)


def test_generator_loss_weights_and_lr_key_as_floats():
    """papermill's ``-p l1 1`` passes the int 1: it is the float 1.0 (one cache entry, not two)."""
    kw = dict(perceptual="mse")
    ints = GeneratorConfig(l1=1, l2=2, l3=0, lr=1, **kw)
    floats = GeneratorConfig(l1=1.0, l2=2.0, l3=0.0, lr=1.0, **kw)
    assert ints.as_dict() == floats.as_dict() and json.dumps(ints.as_dict()) == json.dumps(floats.as_dict())
    assert all(type(getattr(ints, k)) is float for k in ("l1", "l2", "l3", "lr"))
    assert GeneratorConfig(l1=np.int64(1), **kw).l1 == 1.0 and type(GeneratorConfig(l1=np.int64(1), **kw).l1) is float
    assert GeneratorConfig(l1="1/2", **kw).l1 == 0.5 and GeneratorConfig(lr="1e-3", **kw).lr == 1e-3
    assert GeneratorConfig().as_dict()["l1"] == 1.0  # defaults as before
    ds, f = _toy()
    base = dict(eps=16 / 255, target=1, key=3, iters=2, batch=8, width=4, depth=1, **kw)
    assert sscl._generator_key("s", ds.x_train, ds.y_train, GeneratorConfig(**base, l1=1)) == sscl._generator_key(
        "s", ds.x_train, ds.y_train, GeneratorConfig(**base, l1=1.0))
    for bad in ({"l1": -1}, {"lr": 0}, {"l1": 0, "l2": 0}, {"l3": True}):
        with pytest.raises((TypeError, ValueError)):
            GeneratorConfig(**bad, **kw)


def test_owner_query_count_is_what_owner_queries_draws():
    from types import SimpleNamespace

    y = torch.tensor([0] * 5 + [1] * 20)
    ds = SimpleNamespace(x_test=torch.zeros(25, 1, 2, 2), y_test=y)
    for m in (2, 5, 10, 17, 18, 19, 20):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert sscl.owner_query_count(ds, 0, m) == len(sscl.owner_queries(ds, 0, m))


def test_a_bf16_generators_partial_checkpoint_carries_its_code_and_resumes(tmp_path):
    """The code marker is written into a bf16 run's partial checkpoint, so an interrupted bf16 run of this code
    resumes (only checkpoints of the older code, without it, are refused)."""
    ds, f = _toy()
    cfg = GeneratorConfig(eps=16 / 255, target=1, key=3, iters=6, batch=8, perceptual="mse", width=4, depth=1,
                          bf16=True)
    ckpt = tmp_path / "g.pt"
    with pytest.raises(KeyboardInterrupt):  # stopped inside iteration 3: the checkpoint holds iteration 2
        train_generator(_StopAt(f, 2 * 2 + 1), ds.x_train, ds.y_train, cfg, device="cpu", progress=False,
                        log_every=2, checkpoint=ckpt, checkpoint_every=0)
    st = torch.load(ckpt, weights_only=False)
    assert st["iter"] == 2 and st["generator_code"] == sscl.BF16_GENERATOR_CODE
    _, hist = train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2,
                              checkpoint=ckpt)
    assert [h["iter"] for h in hist] == [2, 4, 6]


def test_cached_generator_files_load_without_any_allowance_and_non_dicts_are_named(tmp_path):
    """get_or_train_generator writes torch's version as a plain str, so its file loads with torch's own
    weights_only=True (no TorchVersion allowance needed); a file that is not a dict is named, not an AttributeError."""
    from dovlib.report import run_dir

    ds, f = _toy()
    cfg = GeneratorConfig(eps=16 / 255, target=1, key=3, iters=2, batch=8, perceptual="mse", width=4, depth=1)
    G = get_or_train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False)
    path = run_dir(sscl.CACHE, sscl._generator_key(sscl.model_hash(f), ds.x_train, ds.y_train, cfg)) / "generator.pt"
    blob = torch.load(path, weights_only=True)
    assert type(blob["meta"]["torch"]) is str and G.meta["torch"] == str(torch.__version__)
    for other in ([1, 2], torch.zeros(3)):
        torch.save(other, tmp_path / "other.pt")
        with pytest.raises(ValueError, match="not a dovlib SSCL-BW generator file"):
            SSCLGenerator.load(tmp_path / "other.pt")


def test_generator_checkpoint_that_would_run_code_is_refused_and_its_own_loads_safely(tmp_path, plant_code):
    """train_generator reads its checkpoint with weights_only=True: a foreign file at the path, or at
    get_or_train_generator's own one in its cache folder (runs/ may be shared), is refused by name, never unpickled
    with its code, and left where it is; the checkpoints it writes need nothing but torch's safe types."""
    from dovlib.report import run_dir

    ds, f = _toy()
    cfg = GeneratorConfig(eps=16 / 255, target=1, key=3, iters=4, batch=8, perceptual="mse", width=4, depth=1)
    ckpt = tmp_path / "g.pt"
    marker = plant_code(ckpt, iter=2)
    planted = ckpt.read_bytes()
    with pytest.raises(ValueError, match=r"g.pt \(train_generator's checkpoint\) does not load safely "
                                         r"\(weights_only=True: .*\): Unsupported global: .*; delete it or pass "
                                         r"another path"):
        train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, checkpoint=ckpt)
    assert not marker.exists() and ckpt.read_bytes() == planted
    cached = run_dir(sscl.CACHE, sscl._generator_key(sscl.model_hash(f), ds.x_train, ds.y_train, cfg))
    plant_code(cached / "generator_ckpt.pt", iter=2)
    with pytest.raises(ValueError, match=r"generator_ckpt.pt \(train_generator's checkpoint\) does not load safely"):
        get_or_train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False)
    assert not marker.exists() and not (cached / "generator.pt").exists()
    ckpt.unlink()
    with pytest.raises(KeyboardInterrupt):  # stopped inside iteration 3: the checkpoint holds iteration 2
        train_generator(_StopAt(f, 2 * 2 + 1), ds.x_train, ds.y_train, cfg, device="cpu", progress=False,
                        log_every=2, checkpoint=ckpt, checkpoint_every=0)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt) == []
    _, hist = train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False, log_every=2,
                              checkpoint=ckpt)
    assert [h["iter"] for h in hist] == [2, 4]


def test_load_watermarked_never_unpickles_a_downloaded_data_file(tmp_path, code_payload):
    """public/data.npz comes from someone else: read without pickle (allow_pickle=False), so an object array whose
    unpickling would run code is refused with an error naming the file, and the code does not run."""
    payload, marker = code_payload
    public = tmp_path / "user" / "public"
    public.mkdir(parents=True)
    x = np.empty(1, dtype=object)
    x[0] = payload
    np.savez(public / "data.npz", x=x, y=np.zeros(1, dtype=np.int64))
    (public / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match=r"data.npz holds pickled Python objects \(x\), which could run code when "
                                         r"loaded; it is not a file written by dovlib.sscl.save_watermarked"):
        load_watermarked(tmp_path / "user")
    assert not marker.exists()


def test_load_watermarked_names_pickled_labels_and_leaves_other_errors_as_they_are(tmp_path, code_payload):
    """An object array in y is refused like one in x (naming y) and runs no code; a data.npz whose x has a damaged
    array header fails with numpy's own error, not said to hold pickled objects."""
    import zipfile

    payload, marker = code_payload
    public = tmp_path / "user" / "public"
    public.mkdir(parents=True)
    (public / "manifest.json").write_text("{}")
    y = np.empty(1, dtype=object)
    y[0] = payload
    np.savez(public / "data.npz", x=np.zeros((1, 4, 4, 3), dtype=np.uint8), y=y)
    with pytest.raises(ValueError, match=r"data.npz holds pickled Python objects \(y\)"):
        load_watermarked(tmp_path / "user")
    assert not marker.exists()
    with zipfile.ZipFile(public / "data.npz", "w") as z:
        z.writestr("x.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}\n")  # an .npy magic, an unreadable header
        z.writestr("y.npy", b"")
    with pytest.raises(ValueError) as err:
        load_watermarked(tmp_path / "user")
    assert "pickled" not in str(err.value)


def test_load_watermarked_names_a_data_file_without_its_arrays(tmp_path):
    """public/data.npz is someone else's file: an entry that is not a NumPy array (numpy hands back its raw bytes)
    or a missing array is refused naming the file and the array, not a TypeError from torch.from_numpy."""
    import zipfile

    public = tmp_path / "user" / "public"
    public.mkdir(parents=True)
    (public / "manifest.json").write_text("{}")
    with zipfile.ZipFile(public / "data.npz", "w") as z:
        z.writestr("x.npy", b"not an array")
        z.writestr("y.npy", b"")
    with pytest.raises(ValueError, match=r"data.npz: x is not a NumPy array; it is not a file written by "
                                         r"dovlib.sscl.save_watermarked"):
        load_watermarked(tmp_path / "user")
    np.savez(public / "data.npz", x=np.zeros((1, 4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"data.npz holds no y array; it is not a file written by "
                                         r"dovlib.sscl.save_watermarked"):
        load_watermarked(tmp_path / "user")


def test_load_watermarked_names_a_data_file_that_is_not_an_archive_or_has_other_arrays(tmp_path):
    """A .npy renamed data.npz gave a TypeError (an array is no context manager), a text file was said to hold
    pickled data (numpy's advice to load unsafely), and x of 3 dimensions failed in torch's permute: each is refused
    naming the file and what save_watermarked writes."""
    public = tmp_path / "user" / "public"
    public.mkdir(parents=True)
    (public / "manifest.json").write_text("{}")
    data = public / "data.npz"
    what = r"it is not a file written by dovlib.sscl.save_watermarked \(x uint8 \(N, H, W, C\) with C 1 or 3, y "
    for content in (b"\x93NUMPY", b"just some text\n", b""):
        data.write_bytes(content)
        with pytest.raises(ValueError, match=r"data.npz is not an .npz archive; " + what):
            load_watermarked(tmp_path / "user")
    np.save(public / "x.npy", np.zeros((2, 4, 4, 3), dtype=np.uint8))
    (public / "x.npy").rename(data)
    with pytest.raises(ValueError, match=r"data.npz is not an .npz archive"):
        load_watermarked(tmp_path / "user")
    x, y = np.zeros((2, 4, 4, 3), dtype=np.uint8), np.zeros(2, dtype=np.int64)
    for bad, match in ((dict(x=x[0]), r"x has shape \(4, 4, 3\)"),
                       (dict(x=x.astype(np.float32)), r"x has dtype float32"),
                       (dict(x=np.zeros((2, 3, 4, 4), np.uint8)), r"x has shape \(2, 3, 4, 4\)"),
                       (dict(y=y[:, None]), r"y has shape \(2, 1\)"),
                       (dict(y=y.astype(np.float64)), "y has dtype float64"),
                       (dict(y=y.astype(bool)), "y has dtype bool"), (dict(y=y[:1]), r"1 labels for 2 images")):
        np.savez(data, **{"x": x, "y": y, **bad})
        with pytest.raises(ValueError, match=r"data.npz: " + match + "; " + what):
            load_watermarked(tmp_path / "user")
    np.savez(data, x=x[..., :1], y=y.astype(np.uint8))  # grey images, labels of another integer type: read
    ws = load_watermarked(tmp_path / "user")
    assert ws.x.shape == (2, 1, 4, 4) and ws.y.dtype == torch.long


def test_a_generator_read_back_counts_its_training_time_not_its_reading():
    from dovlib.train import compute_ledger, compute_ledger_mark

    ds, f = _toy()
    cfg = GeneratorConfig(eps=16 / 255, target=1, key=3, iters=4, batch=8, perceptual="mse", width=4, depth=1)
    mark = compute_ledger_mark()
    g1 = get_or_train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False)
    g2 = get_or_train_generator(f, ds.x_train, ds.y_train, cfg, device="cpu", progress=False)
    first, second = compute_ledger(since=mark)
    assert first["artifact"] == second["artifact"] and first["artifact"].endswith("generator.pt")
    assert (first["reused"], second["reused"]) == (False, True)
    assert first["cost"] == g1.wall_time == g2.meta["wall_time"] == second["cost"] > 0  # stored, not the reading
