"""SSCL-BW: sample-specific clean-label backdoor watermark for dataset ownership verification.

A U-Net generator G maps an image x in [0,1] to a watermarked image inside the L-inf ball of radius ``eps``
(``x + eps * tanh(U(x, K))``, clamped to [0,1]: guaranteed by construction). It is trained against a frozen
surrogate f with ``l1 * L_target + l2 * L_nontarget + l3 * L_perceptual``:

* L_target: target-class images, CE(f(G(x)), y_min), y_min = the class f finds least likely for x (erases the
  natural target features, so a model trained on the clean-label marked set leans on the watermark). As in the
  paper, y_min is the plain argmin over all classes, so for an image f gets badly wrong it can be t itself (2 of
  the 524 target-class images of ``cifar10-subset`` on a width-8 surrogate, 2026-12-05); kept, not special-cased;
* L_nontarget: other images, CE(f(G(x)), t): the watermark alone points to the target class t;
* L_perceptual: LPIPS(x, G(x)) or the named fallback (:mod:`dovlib.perceptual`).

Owner key: K is a fixed random pattern drawn from the owner's secret integer ``key`` and fed to the U-Net as extra
input channels, so two owners with the same data, surrogate and target still get different generators
(notebook 03 measures whether that is enough). The owner's private record and the notebooks' reports hold the key's
hash, never the key; the public manifest holds neither. The hash is a fast, unsalted SHA-256, so a key drawn from a
small space can be found from it by trying them all (2**32 keys: about an hour on one CPU core): draw real keys with
``secrets.randbits(128)``.

Pipeline (every step cached under ``runs/sscl/...``; an interrupted run resumes, a finished one is reused):
``train_classifier`` (surrogate, benign and suspect models) -> ``get_or_train_generator`` -> ``watermark_dataset``
-> ``train_classifier`` on the marked set -> :mod:`dovlib.verify`. Notebooks 01-03 explain each step.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import operator
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import ARCHS, UNet, build_model
from .params import (Profile, check_bool, check_choice, check_int, check_seed, parse_eps, parse_fraction,
                     parse_rate)
from .perceptual import check_perceptual, check_perceptual_size, perceptual_loss, require_perceptual
from .report import device_name, file_lock, run_dir
from .train import (Checkpointer, TrainConfig, _save_atomic, augment_batch, charge, charging, data_hash, evaluate, fit,
                    load_state, merges_last_batch, model_hash, noted_provenance, resolve_device, restore_generator,
                    safe_torch_load, to_float, training_device)
from .watermarks.base import select_indices

__all__ = ["SSCLGenerator", "GeneratorConfig", "check_key", "key_hash", "data_hash", "train_generator",
           "get_or_train_generator",
           "train_classifier", "WatermarkedSet", "watermark_dataset", "save_watermarked", "load_watermarked",
           "generator_width", "model_hash", "generator_hash",
           "SSCLRun", "run_sscl", "run_controls", "independent_key",
           "train_surrogate", "generator_config", "decoy_generator", "amplified_residual", "residual_label",
           "SURROGATE_SEED_OFFSET", "query_source",
           "key_targets", "class_recall", "hard_classes", "code_rate", "SSCLCodeRun", "mark_code", "run_code",
           "verify_code", "verify_code_tests", "run_code_controls",
           "attempt_seed", "check_proxy_seeds", "check_owner_queries", "owner_queries", "owner_query_count",
           "queries_apart",
           "self_check", "select_run", "select_code_run",
           "selection_summary",
           "check_redraw", "least_learnt_class", "select_code_draws", "check_code_draws"]

CACHE = "sscl"  # runs/sscl/<hash>/: surrogates, generators, suspect models
# Part of every runs/sscl cache key. Bump it when a change alters what a cached model or generator would be
# (losses, architectures, training loop), so entries written by older code are never reused silently.
CACHE_VERSION = 2
# Joined to a bf16 generator's cache key (and checked in its partial checkpoint): under bf16 autocast the residual
# eps * tanh(.) was bf16 (eps overshot 8/255 in the losses) until it was taken in fp32, so a bf16 generator cached or
# half trained by that older code is trained again. fp32 generators, which that change left as they were, keep their
# keys (hence no CACHE_VERSION bump).
BF16_GENERATOR_CODE = "fp32-residual"
CACHE_LOCK_TIMEOUT = 6 * 3600  # seconds a job waits for another job training the same cached model/generator
SURROGATE_SEED_OFFSET = 7919  # surrogate seed = seed + this
PROXY_SEED_OFFSET = 5000  # the owner's self-check models: seeds 5000, 5001, ... (check_proxy_seeds: never a control's)
ATTEMPT_SEED_STRIDE = 100_000  # generator seed of selection attempt j: seed + j * this
EVAL_VERIFY_SEED = 0  # the verification draw suspects are tested on (run_controls' and verify_code's default)


def check_key(key) -> int:
    """An owner key: a non-negative integer (e.g. ``secrets.randbits(128)``), or its decimal string as papermill may
    pass it. Never goes through float, which would round keys above 2**53 onto each other.

    Any size is accepted and hashed whole where the key is named (:func:`key_hash`, the cache keys), but the
    generator's key pattern (:meth:`SSCLGenerator.key_pattern`) is drawn by torch's CPU generator, which seeds its
    Mersenne Twister from the low 32 bits: keys equal modulo 2**32 give the same pattern, and so the same generator
    for the same data, surrogate and seed. Two owners' random keys share a pattern with probability 2**-32. Drawing
    the pattern from the whole key would change every generator trained so far (the measured results in docs/), so
    it is kept as it is; a longer key adds nothing to the pattern, but keeps :func:`key_hash` from revealing the key
    (a 32-bit key is found from its hash in about an hour on one CPU core)."""
    if isinstance(key, str) and key.strip().isdigit():
        key = int(key.strip())
    if isinstance(key, bool) or not hasattr(key, "__index__"):
        raise ValueError(f"key must be a non-negative integer (e.g. secrets.randbits(128)); got {key!r}")
    key = operator.index(key)
    if key < 0:
        raise ValueError(f"key must be a non-negative integer (e.g. secrets.randbits(128)); got {key}")
    return key


def key_hash(key: int) -> str:
    """Fingerprint of an owner key (what records hold instead of the key): a fast, unsalted SHA-256, so it hides only
    a key from a large space (``secrets.randbits(128)``); every 32-bit key can be tried in about an hour."""
    return hashlib.sha256(f"dovlib-sscl-key:{check_key(key)}".encode()).hexdigest()[:16]


class SSCLGenerator(nn.Module):
    """G(x) = clamp(x + eps * tanh(UNet([2x-1, K])), 0, 1) for images in [0,1], K the owner's key pattern.
    ``mark`` applies it to uint8 images and keeps the result within ``floor(eps*255)`` grey levels."""

    def __init__(self, in_channels: int = 3, eps=8 / 255, key: int = 0, key_channels: int = 2, depth: int = 3,
                 width: int = 32):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1, 4)
        self.eps = parse_eps(eps)
        self.key = check_key(key)
        self.key_channels = check_int("key_channels", key_channels, 0, 16)
        self.depth, self.width = check_int("depth", depth, 1, 6), check_int("width", width, 1, 1024)
        self.unet = UNet(in_channels + self.key_channels, in_channels, depth, width)
        self._patterns: dict = {}
        self.meta: dict = {}  # target, seed, data, training settings: set by train_generator, kept by save/load
        self.provenance: dict = {}  # set by load: where and in what precision the file says it was trained

    def settings(self) -> dict:
        return {"in_channels": self.in_channels, "eps": self.eps, "key_channels": self.key_channels,
                "depth": self.depth, "width": self.width}

    def key_pattern(self, h: int, w: int, device) -> torch.Tensor:
        """The owner's fixed random pattern (key_channels, h, w), standard normal, drawn from the key (its low 32
        bits: :func:`check_key`)."""
        k = (h, w, str(device))
        if k not in self._patterns:
            g = torch.Generator().manual_seed(self.key % 2 ** 63)  # torch reads the low 32 bits: see check_key
            self._patterns[k] = torch.randn(self.key_channels, h, w, generator=g).to(device)
        return self._patterns[k]

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        inp = x * 2 - 1
        if self.key_channels:
            pat = self.key_pattern(x.shape[-2], x.shape[-1], x.device).expand(len(x), -1, -1, -1)
            inp = torch.cat([inp, pat], 1)
        return self.eps * torch.tanh(self.unet(inp).float())  # fp32 under bf16 autocast: a bf16 eps overshoots 8/255

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.residual(x)).clamp(0, 1)

    @torch.no_grad()
    def mark(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Watermark uint8 images (N, C, H, W) -> uint8, in eval mode, on G's device; result on x's device. The same
        G and images give the same marks on one kind of device (batching aside); on a GPU, cuDNN's algorithms (and
        TF32) can move some pixels of a mark by a grey level against the CPU's, which verification does not notice
        but a byte-for-byte comparison of published images would (not measured here: no GPU)."""
        if x.dtype != torch.uint8:
            raise ValueError(f"x must be uint8 images (N, C, H, W); got {x.dtype}")
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        step = int(np.floor(self.eps * 255 + 1e-6))
        out = []
        try:
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size].to(dev)
                xw = self(to_float(xb))
                if not torch.isfinite(xw).all():  # NaN would become 0 in uint8: a black pixel, far outside the ball
                    raise FloatingPointError("the generator's output is not finite (a diverged generator): retrain it")
                xw = (xw * 255).round()
                xw = torch.minimum(torch.maximum(xw, xb.float() - step), xb.float() + step).clamp(0, 255)
                out.append(xw.to(torch.uint8).to(x.device))
        finally:
            self.train(was)
        return torch.cat(out) if out else x.clone()

    def save(self, path, **meta) -> Path:
        """Save weights and settings (eps, key, architecture) with ``G.meta`` updated by ``meta`` (target, seed, data
        hash and training settings, which :func:`train_generator` records, so a plain ``G.save(path)`` keeps them;
        ``meta`` adds or replaces entries). The file holds
        the owner's secret key (the generator needs it to mark and verify): keep it private, as the cache under
        ``runs/sscl`` is; what is published (:func:`save_watermarked`) holds only the key's hash."""
        path = Path(path)
        _save_atomic({"state": self.state_dict(), "settings": self.settings(), "key": self.key,
                      "key_hash": key_hash(self.key), "meta": {**self.meta, **meta},
                      "format": "dovlib-sscl-generator/1"}, path)
        return path

    @classmethod
    def load(cls, path, map_location="cpu") -> "SSCLGenerator":
        """Rebuild a saved generator; its ``meta`` dict is in ``G.meta``, as saved. Read with ``weights_only=True``
        (tensors and plain settings only: a file from elsewhere cannot run code on loading; torch's version string,
        which files before 2026-12-06 kept as torch's own ``TorchVersion``, is allowed). Where and in what precision
        it was trained (``G.provenance``: the meta's trained_on, trained_by and training_precision, the precision
        from its training config where the file names none, "unknown" where it says nothing, as a generator saved by
        hand before training or by older code) counts in :func:`dovlib.train.training_provenance`, as
        :meth:`dovlib.imwm.HiDDeN.load` does, so records written after loading one by hand name the machine that
        trained it."""

        from torch.torch_version import TorchVersion

        blob = safe_torch_load(path, "a dovlib SSCL-BW generator file", "SSCLGenerator.load reads files written by "
                               "SSCLGenerator.save", map_location, [TorchVersion])
        if not isinstance(blob, dict) or blob.get("format") != "dovlib-sscl-generator/1":
            raise ValueError(f"{path} is not a dovlib SSCL-BW generator file")
        g = cls(key=blob["key"], **blob["settings"])
        g.load_state_dict(blob["state"])
        if isinstance(map_location, (str, torch.device)):
            g = g.to(map_location)  # the module itself, not only the stored tensors (a GPU run marks on the GPU)
        g.meta = blob.get("meta", {})
        config = g.meta.get("config")
        g.provenance = noted_provenance(g.meta, "unknown" if not isinstance(config, dict) else (
            "bf16" if config.get("bf16") else "fp32"))  # a training config names bf16 only when on (as_dict)
        return g.eval()


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of one generator training run (all of them enter the cache key; ``augment`` and ``bf16`` only when
    on).

    ``augment`` (ours, not the paper's): take the losses on the watermarked images as a suspect's training sees
    them, randomly cropped (zero padding 4) and flipped (colour images) by the differentiable
    :func:`dovlib.train.augment_batch`, as clean-label poisoning crafts through the victim's augmentation
    (Sleeper Agent's and Witches' Brew's differentiable augmentation).

    ``bf16`` (a profile's ``precision="bf16"``): the generator and surrogate run under bf16 autocast (CUDA or CPU);
    the perceptual loss is taken in fp32 on the fp32 watermarked images, since 1 - SSIM of a mark is about 0.004 and
    bf16 resolves only about 0.004 near 1."""

    eps: float = 8 / 255
    target: int = 1
    key: int = 0
    iters: int = 1500
    batch: int = 128  # half target, half non-target images
    lr: float = 1e-3  # Adam
    l1: float = 1.0  # L_target weight
    l2: float = 1.0  # L_nontarget weight
    l3: float = 1.0  # L_perceptual weight
    perceptual: str = "lpips"
    depth: int = 3
    width: int = 32
    key_channels: int = 2
    seed: int = 0
    augment: bool = False  # ours: losses on the suspect's augmentation of G(x) (random crop, pad 4; flip if RGB)
    bf16: bool = False  # bf16 autocast for G and the surrogate (perceptual loss in fp32)

    def __post_init__(self):
        object.__setattr__(self, "eps", parse_eps(self.eps))
        object.__setattr__(self, "key", check_key(self.key))  # "7" and 7: one cache entry, one checkpoint's settings
        check_perceptual(self.perceptual)
        object.__setattr__(self, "target", check_int("target", self.target, 0))  # "1" from papermill -> 1
        for name, low in (("iters", 1), ("batch", 2), ("depth", 1), ("width", 1), ("key_channels", 0), ("seed", 0)):
            object.__setattr__(self, name, check_int(name, getattr(self, name), low))  # "128" -> 128, as target
        if self.batch % 2:
            raise ValueError(f"batch must be an even integer >= 2 (half target, half non-target images); "
                             f"got {self.batch}")
        # a loss weight: a number >= 0 ("0.5" or "1/2" from papermill too), stored as a float, since the settings
        # key cached generators: 1 (papermill's ``-p l1 1``) and 1.0 are one generator (their JSON differs)
        for name in ("l1", "l2", "l3"):
            object.__setattr__(self, name, float(parse_fraction(name, getattr(self, name), 0.0, 1e6,
                                                                low_inclusive=True)))
        if self.l1 + self.l2 == 0:  # one of them 0 is an ablation; both, no mark
            raise ValueError(f"l1 and l2 (the watermark's losses: target images to their least likely class, "
                             f"others to the target) must not both be 0: the generator would learn no watermark; got "
                             f"l1={self.l1!r}, l2={self.l2!r}")
        for name in ("augment", "bf16"):
            check_bool(name, getattr(self, name))
        # Adam's step size, in (0, 10]; "1e-3" from papermill too; a float, as the loss weights
        object.__setattr__(self, "lr", float(parse_fraction("lr", self.lr, 0.0, 10.0)))

    def as_dict(self) -> dict:
        """All settings; ``augment`` and ``bf16`` only when on, so generators cached before they existed keep their
        keys."""
        d = asdict(self)
        for name in ("augment", "bf16"):
            if not d[name]:
                del d[name]
        return d

    def public(self) -> dict:
        """Settings without the secret key (its hash instead)."""
        d = self.as_dict()
        d["key_hash"] = key_hash(d.pop("key"))
        return d


def generator_width(profile: Profile) -> int:
    """U-Net width used for a profile: half the classifier width, at least 8 (32 for quick/paper)."""
    return max(8, profile.width // 2)


def train_generator(surrogate: nn.Module, x: torch.Tensor, y: torch.Tensor, config: GeneratorConfig, *,
                    device="auto", checkpoint=None, progress: bool = True, log_every: int = 10,
                    checkpoint_every: float = 60.0):
    """Train an :class:`SSCLGenerator` against the frozen ``surrogate`` on uint8 images ``x`` with labels ``y``.
    Returns ``(G, history)``. With ``checkpoint`` the state is saved at the first log step (every ``log_every``
    iterations) after ``checkpoint_every`` seconds since the last save, and at the last log step when the run is
    interrupted (:class:`dovlib.train.Checkpointer`); an interrupted run resumes from it with the result of an
    uninterrupted one (the quick generator's 23 MB state took 30 ms to write on the build machine). The checkpoint
    is read with ``weights_only=True``: a foreign file at the path, which could run code, is refused by name."""
    cfg = config
    if getattr(x, "dtype", None) != torch.uint8 or getattr(x, "ndim", None) != 4:  # floats 0..255 trained nonsense
        raise ValueError(f"x must be uint8 images (N, C, H, W), as mark() takes; got dtype {getattr(x, 'dtype', None)} "
                         f"and shape {tuple(getattr(x, 'shape', ()))}")
    if len(torch.as_tensor(y)) != len(x):
        raise ValueError(f"x and y must be equally long (one label per image); got {len(x)} and {len(y)}")
    data = data_hash(x, y)  # of the labels as given, as get_or_train_generator's cache key hashes them
    y = torch.as_tensor(y).long()
    num_classes = int(y.max()) + 1
    if not 0 <= cfg.target < num_classes:
        raise ValueError(f"target must be a class index in [0, {num_classes - 1}]; got {cfg.target}")
    idx_t = torch.nonzero(y == cfg.target).flatten()
    idx_n = torch.nonzero(y != cfg.target).flatten()
    if len(idx_t) == 0 or len(idx_n) == 0:
        raise ValueError(f"target {cfg.target}: need images of the target class and of other classes")
    check_perceptual_size(cfg.perceptual, x.shape)
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    G = SSCLGenerator(x.shape[1], cfg.eps, cfg.key, cfg.key_channels, cfg.depth, cfg.width).to(dev)
    f = surrogate.to(dev)  # frozen while G trains (_frozen, below), its mode and flags given back however it ends
    dist = perceptual_loss(cfg.perceptual).to(dev)
    opt = torch.optim.Adam(G.parameters(), lr=cfg.lr)
    rng = torch.Generator().manual_seed(cfg.seed)
    aug_rng = torch.Generator(device=dev).manual_seed(cfg.seed + 1)  # the suspect-like augmentation, on the device
    flip = x.shape[1] == 3  # as train_classifier: flips for colour images only
    history, start, wall = [], 0, 0.0
    trained_on, trained_by = training_device(dev)  # what G.meta and the records say trained it
    ckpt = Path(checkpoint) if checkpoint else None
    # what a checkpoint must match besides the settings: the images and the surrogate (get_or_train_generator's
    # folder is keyed by both; a caller passing its own path is not), so a resumed run is never half another's
    origin = {"data": data, "surrogate": model_hash(f)} if ckpt else {}
    if ckpt and cfg.bf16:
        origin["generator_code"] = BF16_GENERATOR_CODE
    if ckpt and ckpt.is_file():
        st = load_state(ckpt, "train_generator's checkpoint", dev)  # weights_only: a foreign file runs no code
        if st["config"] != cfg.as_dict():
            raise ValueError(f"checkpoint {ckpt} was written with other generator settings; delete it")
        if cfg.bf16 and st.get("generator_code") != BF16_GENERATOR_CODE:  # older code: a bf16 residual, not resumed
            raise ValueError(f"checkpoint {ckpt} was written by older generator code (a bf16 residual under bf16); "
                             f"delete it")
        stale = [k for k in ("data", "surrogate") if st.get(k, origin[k]) != origin[k]]  # older ones hold neither
        if stale:
            what = {"data": "other training images", "surrogate": "another surrogate"}
            raise ValueError(f"checkpoint {ckpt} was written for {' and '.join(what[k] for k in stale)}; delete it "
                             f"or pass another path")
        G.load_state_dict(st["G"])
        opt.load_state_dict(st["opt"])
        history, start, wall = st["history"], st["iter"], st["wall"]
        trained_on, trained_by = training_device(dev, st)  # older checkpoints name no device: "unknown" joins
        rng.set_state(st["rng"].cpu())  # batches: a CPU generator wherever G trains (map_location moved the state)
        if "aug_rng" in st:  # on the device: a run saved on a GPU resumes on the CPU with this stream reseeded
            restore_generator(aug_rng, st["aug_rng"], reseed=cfg.seed + 1 + start, what="augmentation", path=ckpt)
    xs = x.to(dev)
    half = cfg.batch // 2
    from tqdm.auto import tqdm

    bar = tqdm(range(start, cfg.iters), desc="generator", disable=not progress, leave=False, initial=start,
               total=cfg.iters)
    G.train()
    acc = {"l_target": 0.0, "l_nontarget": 0.0, "l_perceptual": 0.0, "asr_surrogate": 0.0, "n": 0}
    t0, saver = time.perf_counter(), Checkpointer(ckpt, checkpoint_every)
    # an interruption keeps the last logged step (saver) and gives the surrogate back as it came
    with saver, bar, _frozen(f):
        for it in bar:
            bt = idx_t[torch.randint(len(idx_t), (half,), generator=rng)]
            bn = idx_n[torch.randint(len(idx_n), (half,), generator=rng)]
            xt, xn = to_float(xs[bt.to(dev)]), to_float(xs[bn.to(dev)])
            with torch.no_grad():
                y_min = f(xt).argmin(1)
            xb = torch.cat([xt, xn])
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                xw = G(xb)  # fp32: the residual eps * tanh(.) is taken in fp32 and added to the fp32 image
                logits = f(augment_batch(xw, TrainConfig.crop_padding, flip, aug_rng) if cfg.augment else xw).float()
            l_t = F.cross_entropy(logits[:half], y_min)
            l_n = F.cross_entropy(logits[half:], torch.full((half,), cfg.target, device=dev))
            l_p = dist(xb, xw.float()).mean()
            loss = cfg.l1 * l_t + cfg.l2 * l_n + cfg.l3 * l_p
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            acc["l_target"] += l_t.detach()  # summed on the device; synchronised only when logged
            acc["l_nontarget"] += l_n.detach()
            acc["l_perceptual"] += l_p.detach()
            acc["asr_surrogate"] += (logits[half:].argmax(1) == cfg.target).float().mean()
            acc["n"] += 1
            if (it + 1) % log_every == 0 or it + 1 == cfg.iters:
                n = acc.pop("n")
                history.append({"iter": it + 1, **{k: float(v) / n for k, v in acc.items()}})
                if not all(math.isfinite(v) for v in history[-1].values()):  # as fit: never save or cache it
                    raise FloatingPointError(f"generator training diverged at iteration {it + 1}/{cfg.iters}: "
                                             f"{history[-1]}; lower lr (now {cfg.lr}) or the loss weights")
                acc = {k: 0.0 for k in acc} | {"n": 0}
                bar.set_postfix(asr=f"{history[-1]['asr_surrogate']:.2f}", lp=f"{history[-1]['l_perceptual']:.3f}")
                if it + 1 < cfg.iters:  # the finished G is saved by the caller (get_or_train_generator)
                    saver.offer(lambda: {"G": G.state_dict(), "opt": opt.state_dict(), "rng": rng.get_state(),
                                         "aug_rng": aug_rng.get_state(), "iter": it + 1, "history": history,
                                         "wall": wall + time.perf_counter() - t0, "config": cfg.as_dict(),
                                         "device_type": trained_on, "device_name": trained_by, **origin})
    G.eval()
    G.history, G.wall_time = history, wall + time.perf_counter() - t0
    G.meta = {"target": cfg.target, "seed": cfg.seed, "config": cfg.public(), "data": data, **noted_provenance(
        {"trained_on": trained_on, "trained_by": trained_by}, "bf16" if cfg.bf16 else "fp32")}
    return G, history


@contextlib.contextmanager
def _frozen(model: nn.Module):
    """``model`` in eval mode without gradients inside the block; its training mode and requires_grad flags given
    back when the block ends, interrupted or not."""
    mode, grads = model.training, [q.requires_grad for q in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        yield model
    finally:
        model.train(mode)
        for q, g in zip(model.parameters(), grads):
            q.requires_grad_(g)


def train_classifier(x_train, y_train, x_test=None, y_test=None, *, arch: str = "resnet18", profile: Profile,
                     seed: int = 0, epochs: int | None = None, num_classes: int | None = None, progress: bool = True,
                     key_test: bool = False):
    """Train (or load from the cache) a classifier with :func:`dovlib.train.fit`: surrogate, benign or suspect model,
    and notebook 10's classifiers on clean and AMUSE-watermarked sets.
    The cache key is the data hash, architecture, budget and seed, so the same call twice trains once.
    A model read back keeps the history (per-epoch test accuracy) of the run that trained it, on that run's test set:
    callers evaluate the model on their own test set, or pass ``key_test=True`` to key the model by the test set too
    (another test set then trains another model), when they report the history.
    Returns the :class:`dovlib.train.TrainResult` (``.model`` in eval mode)."""
    y_train = torch.as_tensor(y_train).long()
    num_classes = num_classes or int(y_train.max()) + 1
    channels, size = x_train.shape[1], x_train.shape[-1]
    tc = TrainConfig.for_profile(profile, epochs=epochs if epochs is not None else profile.epochs, seed=seed,
                                 flip=channels == 3, progress=progress)
    key = {"what": "classifier", "version": CACHE_VERSION, "data": data_hash(x_train, y_train), "arch": arch,
           "width": profile.width, "num_classes": num_classes, "train": tc.fingerprint()}
    if merges_last_batch(len(x_train), tc.batch_size):  # models cached by older code trained that image alone
        key["last_batch"] = "merged"
    if check_bool("key_test", key_test):
        if x_test is None or y_test is None:
            raise ValueError("key_test=True needs x_test and y_test: the model is keyed by the test set")
        key["test"] = data_hash(x_test, torch.as_tensor(y_test).long())
    torch.manual_seed(seed)
    model = build_model(arch, num_classes, channels, width=profile.width, image_size=size)
    ckpt = run_dir(CACHE, key) / "model.pt"
    # concurrent jobs wanting the same model: one trains, the rest load (the wait is no cell's work: charging)
    with charging(), file_lock(ckpt, timeout=CACHE_LOCK_TIMEOUT):
        return fit(model, x_train, y_train, x_test, y_test, tc, checkpoint=ckpt)


def train_surrogate(ds, profile: Profile, arch: str = "resnet18", seed: int = 0, progress: bool = True,
                    width: int | None = None):
    """The owner's surrogate: ``arch`` trained on the clean set with seed ``seed + SURROGATE_SEED_OFFSET``, so it
    is never one of the benign (Ind-M) models it is compared with. Cached like every classifier. ``width``: the
    surrogate's base width (default: the profile's, i.e. the suspects'); see :func:`run_sscl`'s ``surrogate_width``."""
    if width is not None:
        profile = profile.with_overrides(width=check_int("surrogate_width", width, 1))
    return train_classifier(ds.x_train, ds.y_train, ds.x_test, ds.y_test, arch=arch, profile=profile,
                            seed=seed + SURROGATE_SEED_OFFSET, num_classes=ds.num_classes, progress=progress)


def generator_config(profile: Profile, *, eps=8 / 255, target: int = 1, key: int = 0, seed: int = 0,
                     perceptual: str = "lpips", **overrides) -> GeneratorConfig:
    """The :class:`GeneratorConfig` a profile implies (iterations, batch, U-Net width); notebooks 01-06 share it,
    so they share the cached generator."""
    base = dict(eps=eps, target=target, key=key, iters=profile.gen_iters, batch=profile.gen_batch,
                perceptual=perceptual, width=generator_width(profile), seed=seed, bf16=profile.precision == "bf16")
    return GeneratorConfig(**{**base, **overrides})


def loss_weights_label(l1=1.0, l2=1.0, l3=1.0) -> str:
    """The generator's loss weights in words for a caption, or "" at the defaults (1, 1, 1; every caption written
    before reads as it did): notebook 01's loss figure and notebook 02's Table I captions named eps, gamma and the
    perceptual measure but not the weights, so a generator trained with one loss switched off (l1 0) was captioned
    as the default one. Checked as :class:`GeneratorConfig` checks them ("1/2" reads 0.5)."""
    cfg = GeneratorConfig(l1=l1, l2=l2, l3=l3)
    if (cfg.l1, cfg.l2, cfg.l3) == (1.0, 1.0, 1.0):
        return ""
    return f"loss weights l1 {cfg.l1:g}, l2 {cfg.l2:g}, l3 {cfg.l3:g}"


def amplified_residual(x_clean: torch.Tensor, x_marked: torch.Tensor, gain: float | None = None) -> torch.Tensor:
    """(x_marked - x_clean) scaled to fill [0,1] around grey 0.5 for display (gain: 0.5 / max |residual|)."""
    r = x_marked.float() - x_clean.float()
    gain = gain if gain is not None else 0.5 / max(r.abs().max().item(), 1e-8)
    return (0.5 + gain * r).clamp(0, 1)


def residual_label(x_clean: torch.Tensor, x_marked: torch.Tensor) -> str:
    """The row label of :func:`amplified_residual`'s images in a figure: how much it amplified them and the largest
    change of any pixel, in grey levels of 255 (uint8 images, as :meth:`SSCLGenerator.mark` gives them, or floats in
    [0, 1]), e.g. "residual x16 around grey (largest change 8/255)". Notebook 01's grid said only "(amplified)", so a
    mark at its eps and one far inside it looked alike."""
    if x_clean.shape != x_marked.shape or x_clean.dtype != x_marked.dtype:
        raise ValueError(f"x_clean and x_marked must be images of one shape and dtype; got {tuple(x_clean.shape)} "
                         f"{x_clean.dtype} and {tuple(x_marked.shape)} {x_marked.dtype}")
    unit = 1.0 if x_clean.is_floating_point() else 255.0
    biggest = (x_marked.float() - x_clean.float()).abs().max().item() / unit if x_clean.numel() else 0.0
    if biggest == 0:
        return "residual (none: the images are equal)"
    return f"residual x{0.5 / biggest:.3g} around grey (largest change {biggest * 255:.3g}/255)"


def get_or_train_generator(surrogate: nn.Module, x: torch.Tensor, y: torch.Tensor, config: GeneratorConfig, *,
                           surrogate_id: str | None = None, device="auto", progress: bool = True) -> SSCLGenerator:
    """The generator for these settings from ``runs/sscl/<hash>/generator.pt``, training it (resumably) if absent.
    ``surrogate_id`` names the surrogate in the cache key (default: the hash of its weights)."""
    surrogate_id = surrogate_id or model_hash(surrogate)
    key = _generator_key(surrogate_id, x, y, config)
    d = run_dir(CACHE, key)
    final = d / "generator.pt"
    # concurrent jobs: one trains, the others wait and load; what it cost goes to dovlib.train.compute_ledger
    with charging(), file_lock(final, timeout=CACHE_LOCK_TIMEOUT):
        return _load_or_train_generator(surrogate, x, y, config, d, key, surrogate_id, device, progress)


def _generator_key(surrogate_id: str, x, y, config: GeneratorConfig) -> dict:
    """The cache key of a generator (its folder under runs/sscl): images, surrogate, settings (the owner key hashed)
    and, for bf16 generators only, :data:`BF16_GENERATOR_CODE`."""
    key = {"what": "generator", "version": CACHE_VERSION, "data": data_hash(x, y), "surrogate": surrogate_id,
           **config.as_dict()}
    key["key"] = key_hash(config.key)
    if config.bf16:
        key["generator_code"] = BF16_GENERATOR_CODE
    return key


def _load_or_train_generator(surrogate, x, y, config, d: Path, key: dict, surrogate_id: str, device,
                             progress: bool) -> SSCLGenerator:
    final = d / "generator.pt"
    if final.is_file():
        G = SSCLGenerator.load(final, map_location=resolve_device(device))
        G.cached = True
        G.meta.update(G.provenance)  # the machine that trained it, as its file says (older files: "unknown")
        charge(final, G.meta.get("wall_time"), reused=True)  # what training it took, not this reading
        return G
    G, history = train_generator(surrogate, x, y, config, device=device, checkpoint=d / "generator_ckpt.pt",
                                 progress=progress)
    G.save(final, target=config.target, config=config.public(), data=key["data"], surrogate=surrogate_id,
           history=history, wall_time=G.wall_time, torch=str(torch.__version__))  # str: loads with weights_only
    (d / "generator_ckpt.pt").unlink(missing_ok=True)  # the final file holds everything worth keeping
    G.meta = SSCLGenerator.load(final).meta
    G.cached = False
    charge(final, G.wall_time, reused=False)
    return G


def generator_hash(G: SSCLGenerator) -> str:
    """SHA-1 of the generator's weights and settings (recorded in the watermarked set's manifest). The owner key,
    which changes G's output through its pattern, is not part of it: it is named by :func:`key_hash`, so the pair
    (``generator_hash``, ``key_hash``) identifies the marking function."""
    h = hashlib.sha1(json.dumps(G.settings(), sort_keys=True).encode())
    for k, v in sorted(G.state_dict().items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v.detach().cpu().numpy()).tobytes())
    return h.hexdigest()[:16]


@dataclass
class WatermarkedSet:
    """A clean-label watermarked training set: labels untouched, ``marked`` indices from the target class and, with
    contrastive marking, ``decoys``: non-target images carrying the owner's decoy marks (also labels untouched)."""

    x: torch.Tensor
    y: torch.Tensor
    marked: torch.Tensor
    manifest: dict = field(default_factory=dict)
    decoys: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))


def _marking_device(G) -> str:
    """The name of the device G's tensors (parameters, else buffers) live on; "unknown" for a G that holds none."""
    t = next(iter([*G.parameters(), *G.buffers()]), None)
    return device_name(t.device) if t is not None else "unknown"


def watermark_dataset(G: SSCLGenerator, x: torch.Tensor, y: torch.Tensor, rate, target: int, seed: int = 0,
                      decoy: SSCLGenerator | None = None, decoy_rate=0.0, **manifest) -> WatermarkedSet:
    """Mark ``rate`` (gamma) of the WHOLE set, drawn from the target class (error names gamma and the maximum).
    The manifest records the indices, seed, G's hash and the key's hash (never the key), and ``marked_by``, the
    device that ran G (:func:`dovlib.report.device_name`; another kind may round a pixel one grey level apart, see
    :meth:`SSCLGenerator.mark`, so re-marking there can give another ``marked_hash``).

    Contrastive marking (ours, not the paper's; off by default): with ``decoy_rate`` > 0, that share of the whole
    set, drawn from the NON-target classes, also carries the marks of the owner's ``decoy`` generator, labels
    untouched. "Any perturbation means the target class" then no longer fits the training set, so a model trained
    on it can only learn the owner's own marks; :func:`run_controls`' decoy test checks exactly that."""
    y = torch.as_tensor(y).long()
    trained_for = getattr(G, "meta", {}).get("target")
    if trained_for is not None and int(trained_for) != int(target):  # its marks mean "class trained_for"
        raise ValueError(f"target must be the class G was trained towards, {trained_for}; got {target}")
    idx = select_indices(y, rate, target, clean_label=True, seed=seed)
    xw = x.clone()
    if len(idx):
        xw[idx] = G.mark(x[idx])
    decoys = torch.zeros(0, dtype=torch.long)
    if parse_fraction("decoy_rate", decoy_rate, 0.0, 1.0, low_inclusive=True) > 0:
        if decoy is None:
            raise ValueError("decoy_rate > 0 needs the owner's decoy generator (decoy=...; see decoy_generator)")
        decoys = select_indices(y, decoy_rate, target, clean_label=False, seed=seed + 1, name="decoy_rate")
        if len(decoys):
            xw[decoys] = decoy.mark(x[decoys])
    info = {"method": "sscl-bw", "rate": float(len(idx) / len(y)), "target": int(target), "seed": int(seed),
            "n_images": len(y), "n_marked": len(idx), "eps": G.eps, "generator_hash": generator_hash(G),
            "key_hash": key_hash(G.key), "data_hash": data_hash(x, y), "decoy_rate": float(len(decoys) / len(y)),
            "n_decoys": len(decoys), "decoy_generator_hash": generator_hash(decoy) if len(decoys) else None,
            "marked_hash": data_hash(xw, y), "marked_by": _marking_device(G), **manifest}
    return WatermarkedSet(xw, y.clone(), idx, info, decoys)


def save_watermarked(ws: WatermarkedSet, folder, classes=None) -> Path:
    """Write what the owner publishes and what the owner keeps, in two folders under ``folder``:

    * ``public/``: ``data.npz`` (x uint8 NHWC, y int64) and ``manifest.json`` (image count and shape, classes, the
      SHA-256 of each published array as stored, which anyone can recompute from ``data.npz``, and dovlib's
      ``data_hash`` of the same data, so the owner can later show what was released): nothing that says which
      images carry marks, since a user who knows them can simply drop them;
    * ``private/owner_record.json``: the full manifest (method, target, gamma, seed, hashes of G, of the key and of
      the clean data) with the marked and decoy indices. Keep it with the generator file; never publish it.

    The set is written whole or not at all: into a hidden folder beside ``folder``, then moved into its place (a set
    already there is moved aside first and removed once the new one is in), so an interruption never leaves a
    half-written set that looks complete under ``folder`` (new images beside the last run's manifest, say). ``folder``
    is the set's own: one that holds anything but ``public/`` and ``private/`` is refused. A save killed outright
    (SIGKILL, power loss) leaves a hidden ``.<name>.<tag>.tmp`` folder (a partial set), or, when killed between the
    two moves, the last set under a hidden ``.<name>.<tag>.old`` name with nothing under ``folder``
    (:func:`load_watermarked` then names it); the next save into ``folder`` that succeeds removes both. Two saves
    into the same folder at once are not supported.

    Returns ``folder``; :func:`load_watermarked` reads it back."""
    import shutil
    import uuid

    folder = Path(folder)
    if folder.exists():
        other = sorted(p.name for p in folder.iterdir() if p.name not in ("public", "private")) if folder.is_dir() \
            else [folder.name]
        if other:
            raise ValueError(f"folder must be a folder of its own for the published set (save_watermarked replaces it "
                             f"whole); {folder} holds {', '.join(other[:5])}{' ...' if len(other) > 5 else ''}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex  # unique across hosts (Slurm nodes share PIDs)
    tmp, old = folder.with_name(f".{folder.name}.{tag}.tmp"), folder.with_name(f".{folder.name}.{tag}.old")
    try:
        _write_watermarked(ws, tmp, classes)
        if folder.exists():
            os.replace(folder, old)  # from here until the new set is in, no set under folder, never half of one
        try:
            os.replace(tmp, folder)
        except BaseException:
            if old.exists() and not folder.exists():
                os.replace(old, folder)  # the last set back where it was
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if folder.exists():  # the new set is in (or the last one back): nothing else stays beside it
            shutil.rmtree(old, ignore_errors=True)
    for left in _save_leftovers(folder):  # saves killed before they could clean up (this one succeeded)
        shutil.rmtree(left, ignore_errors=True)
    return folder


def _save_leftovers(folder: Path) -> list:
    """The hidden folders that killed :func:`save_watermarked` runs left beside ``folder`` (``.<name>.<32 hex>.tmp``
    and ``.old``), oldest first."""
    import re

    pattern = re.compile(rf"\.{re.escape(folder.name)}\.[0-9a-f]{{32}}\.(tmp|old)")
    if not folder.parent.is_dir():
        return []
    found = [p for p in folder.parent.iterdir() if p.is_dir() and pattern.fullmatch(p.name)]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def _write_watermarked(ws: WatermarkedSet, folder: Path, classes) -> None:
    """:func:`save_watermarked`'s files, written into ``folder`` (a new, empty one)."""
    pub, priv = folder / "public", folder / "private"
    pub.mkdir(parents=True)
    priv.mkdir()
    x = np.ascontiguousarray(ws.x.permute(0, 2, 3, 1).cpu().numpy())
    y = ws.y.cpu().numpy().astype("<i8")
    np.savez_compressed(pub / "data.npz", x=x, y=y)
    public = {"format": "dovlib-published/1", "n_images": int(len(ws.y)), "image_shape": list(x.shape[1:]),
              "classes": list(classes) if classes else None,
              # recomputable from the released file alone: hashlib.sha256(np.load(f)["x"].tobytes()).hexdigest()
              "sha256": {"x": hashlib.sha256(x.tobytes()).hexdigest(), "y": hashlib.sha256(y.tobytes()).hexdigest()},
              "data_hash": data_hash(ws.x, ws.y),
              "files": {"data.npz": "x (N,H,W,C) uint8, y int64 little-endian"},
              "hashes": {"sha256": "SHA-256 of each array's bytes as stored in data.npz (C order)",
                         "data_hash": "dovlib.train.data_hash(x as (N,C,H,W), y): the owner record's marked_hash"}}
    (pub / "manifest.json").write_text(json.dumps(public, indent=2))
    record = {**ws.manifest, "format": "dovlib-owner-record/1", "marked_indices": ws.marked.tolist(),
              "decoy_indices": ws.decoys.tolist(), "classes": public["classes"], "published": public}
    (priv / "owner_record.json").write_text(json.dumps(record, indent=2))


def load_watermarked(folder) -> WatermarkedSet:
    """Read a :func:`save_watermarked` folder: the published images and labels, with the marked and decoy indices and
    the full manifest when ``private/owner_record.json`` is there (the owner's copy); a copy holding only ``public/``
    (what a user downloads) gives no marked indices and the public manifest."""
    folder = Path(folder)
    data = folder / "public" / "data.npz"
    if not data.is_file():
        kept = [p for p in _save_leftovers(folder) if p.name.endswith(".old") and (p / "public" / "data.npz").is_file()]
        hint = "" if folder.exists() or not kept else (
            f"; a save_watermarked into it was killed between moving the last set aside and the new one in: the last "
            f"whole set is {kept[-1]} (move it back to {folder} to use it)")
        raise FileNotFoundError(f"{data} not found: folder must be one written by dovlib.sscl.save_watermarked "
                                f"(public/data.npz, public/manifest.json and, for the owner, "
                                f"private/owner_record.json){hint}")
    import zipfile

    written = ("it is not a file written by dovlib.sscl.save_watermarked (x uint8 (N, H, W, C) with C 1 or 3, y "
               "integer labels (N,))")
    if not zipfile.is_zipfile(data):  # np.load would hand back a .npy's array, or call a text file pickled data
        raise ValueError(f"{data} is not an .npz archive; {written}")
    arrays = {}
    with np.load(data, allow_pickle=False) as z:  # often someone else's file: never unpickled (that could run code)
        for k in ("x", "y"):
            if k not in z.files:
                raise ValueError(f"{data} holds no {k} array; it is not a file written by dovlib.sscl.save_watermarked "
                                 f"(arrays x and y)")
            try:
                arrays[k] = z[k]
            except ValueError as e:
                if "allow_pickle" not in str(e):
                    raise
                raise ValueError(f"{data} holds pickled Python objects ({k}), which could run code when loaded; it is "
                                 f"not a file written by dovlib.sscl.save_watermarked (numbers only)") from None
            if not isinstance(arrays[k], np.ndarray):  # an entry that is not .npy: numpy hands back its bytes
                raise ValueError(f"{data}: {k} is not a NumPy array; it is not a file written by "
                                 f"dovlib.sscl.save_watermarked")
    x, y = arrays["x"], arrays["y"]
    problem = (f"x has shape {x.shape}" if x.ndim != 4 or x.shape[-1] not in (1, 3) else
               f"x has dtype {x.dtype}" if x.dtype != np.uint8 else
               f"y has shape {y.shape}" if y.ndim != 1 else
               f"y has dtype {y.dtype}" if y.dtype.kind not in "iu" else
               f"{len(y)} labels for {len(x)} images" if len(y) != len(x) else None)
    if problem:
        raise ValueError(f"{data}: {problem}; {written}")
    x, y = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y.astype(np.int64))
    record = folder / "private" / "owner_record.json"
    if record.is_file():
        man = json.loads(record.read_text())
        marked, decoys = man["marked_indices"], man["decoy_indices"]
    else:
        man = json.loads((folder / "public" / "manifest.json").read_text())
        marked, decoys = [], []
    return WatermarkedSet(x, y, torch.tensor(marked, dtype=torch.long), man, torch.tensor(decoys, dtype=torch.long))


@dataclass
class SSCLRun:
    """One SSCL-BW experiment: data, surrogate, generator, watermarked set and the suspect (Malicious) model."""

    ds: object
    profile: Profile
    params: dict
    surrogate: object  # TrainResult
    generator: SSCLGenerator
    marked: WatermarkedSet
    suspect: object = None  # TrainResult of the model trained on the watermarked set

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator.mark(x)


def independent_key(key: int, i: int) -> int:
    """The key of the i-th independent owner in the Ind-W control (never equal to ``key``)."""
    k = int(hashlib.sha256(f"independent:{check_key(key)}:{i}".encode()).hexdigest()[:15], 16)
    return k if k != key else k + 1


def run_sscl(ds, profile: Profile, *, arch: str = "resnet18", eps=8 / 255, rate=0.1, target: int = 1, key: int = 0,
             seed: int = 0, perceptual: str = "lpips", surrogate_arch: str | None = None, l1: float = 1.0,
             l2: float = 1.0, l3: float = 1.0, decoy_rate=0.0, train_suspect: bool = True, surrogate=None,
             surrogate_width: int | None = None, generator_seed: int | None = None,
             progress: bool = True) -> SSCLRun:
    """The whole owner-side pipeline in one call, every step cached: surrogate (``surrogate_arch``, default
    ``arch``) on the clean set -> key-conditioned generator -> gamma = ``rate`` of the set marked (target class
    only) -> a suspect ``arch`` model trained on it (the Malicious scenario). ``surrogate``: reuse a trained one.
    ``decoy_rate`` > 0: contrastive marking, that share of the set (non-target images) carries the owner's decoy
    marks (:func:`watermark_dataset`, :func:`decoy_generator`).

    ``surrogate_width`` (ours, not the paper's): base width of the surrogate the generator is trained against
    (default: the profile's width, the suspects' own). Measured on ``cifar10-subset`` at the reduced CPU scale,
    one generator per cell (docs/measured-sscl-cpu.md): width-32 suspects learnt the marks made against a width-16
    surrogate (WSR 0.96 and 0.78 for U-Nets of width 8 and 16) but not those made against a width-32 surrogate
    (0.19, 0.11) or a width-8 one (0.13), with width-32 benign models at 0.03-0.05. A given ``surrogate`` must
    have been trained with this width.

    ``generator_seed`` (default ``seed``) seeds only the generator's training (:func:`select_run` varies it);
    surrogate, marking and suspect keep ``seed``."""
    eps, rate = parse_eps(eps), parse_rate(rate, "rate (gamma)")
    generator_seed = seed if generator_seed is None else check_int("generator_seed", generator_seed, 0)
    decoy_rate = parse_fraction("decoy_rate", decoy_rate, 0.0, 1.0, low_inclusive=True)
    surrogate_arch = surrogate_arch or arch
    check_choice("arch", arch, list(ARCHS))  # the suspect's: built only after the surrogate and generator trained
    check_choice("surrogate_arch", surrogate_arch, list(ARCHS))
    check_bool("train_suspect", train_suspect)  # "False" would train one
    surrogate_width = profile.width if surrogate_width is None else check_int("surrogate_width", surrogate_width, 1)
    # Everything that can be refused is refused before the surrogate trains: key, perceptual measure (and LPIPS
    # weights), target and gamma against the target class's share (the same draw watermark_dataset makes later).
    key = check_key(key)
    require_perceptual(perceptual, image_shape=ds.x_train.shape)  # LPIPS: weights cached, images of at least 31 px
    select_indices(ds.y_train, rate, target, clean_label=True, seed=seed)
    if decoy_rate:
        select_indices(ds.y_train, decoy_rate, target, clean_label=False, seed=seed + 1, name="decoy_rate")
    gcfg = generator_config(profile, eps=eps, target=target, key=key, seed=generator_seed, perceptual=perceptual,
                            l1=l1, l2=l2, l3=l3)  # checks the loss weights too
    dev = resolve_device(profile.device)
    if surrogate is None:
        surrogate = train_surrogate(ds, profile, surrogate_arch, seed, progress=progress, width=surrogate_width)
    G = get_or_train_generator(surrogate.model, ds.x_train, ds.y_train, gcfg, device=dev, progress=progress)
    params = {"arch": arch, "eps": eps, "rate": rate, "target": target, "key_hash": key_hash(key), "seed": seed,
              "generator_seed": generator_seed, "perceptual": perceptual, "surrogate_arch": surrogate_arch,
              "surrogate_width": surrogate_width, "l1": l1, "l2": l2, "l3": l3,
              "decoy_rate": decoy_rate}
    Gd = _decoy(surrogate, ds, profile, params, key, progress) if decoy_rate else None
    ws = watermark_dataset(G, ds.x_train, ds.y_train, rate, target, seed=seed, decoy=Gd, decoy_rate=decoy_rate,
                           dataset=ds.name, surrogate_arch=surrogate_arch, generator_config=gcfg.public())
    run = SSCLRun(ds, profile, params, surrogate, G, ws)
    if train_suspect:
        run.suspect = train_classifier(ws.x, ws.y, ds.x_test, ds.y_test, arch=arch, profile=profile, seed=seed,
                                       num_classes=ds.num_classes, progress=progress)
    return run


def _decoy(surrogate, ds, profile: Profile, params: dict, key: int, progress: bool) -> SSCLGenerator:
    cfg = generator_config(profile, eps=params["eps"], target=params["target"], key=independent_key(key, -1),
                           seed=params["seed"] + 500, perceptual=params["perceptual"], l1=params["l1"],
                           l2=params["l2"], l3=params["l3"])
    return get_or_train_generator(surrogate.model, ds.x_train, ds.y_train, cfg,
                                  device=resolve_device(profile.device), progress=progress)


def decoy_generator(run: SSCLRun, progress: bool = True) -> SSCLGenerator:
    """The owner's unpublished decoy: a generator trained exactly like ours but with another secret key (derived
    from ours) and seed. Its marks are the placebo of the decoy-controlled test in :func:`run_controls` and, with
    ``decoy_rate`` > 0, the contrastive marks on non-target training images."""
    return _decoy(run.surrogate, run.ds, run.profile, run.params, run.generator.key, progress)


def _malicious_and_benign(run, i: int, kw: dict):
    """Seed and models of the i-th Malicious (trained on ``run.marked``; the run's own suspect for i = 0) and Ind-M
    (trained on the clean set) pair of a control study, both cached."""
    ds, s = run.ds, run.params["seed"] + i
    mal = run.suspect if i == 0 and run.suspect is not None else train_classifier(
        run.marked.x, run.marked.y, ds.x_test, ds.y_test, seed=s, **kw)
    return s, mal, train_classifier(ds.x_train, ds.y_train, ds.x_test, ds.y_test, seed=s, **kw)


def run_controls(run: SSCLRun, n_models: int | None = None, m: int | None = None, tau=0.25, alpha=0.01,
                 verify_seed: int = EVAL_VERIFY_SEED, own_surrogate: bool = False, decoy: bool = True,
                 select_attempts: int = 1,
                 n_proxies: int = 1, redraw_surrogate: bool = False, progress: bool = True, check_alpha=None,
                 check_test: str = "ttest"):
    """Table II with false-positive rates: ``n_models`` models per scenario (default ``profile.n_models``), all
    queried with OUR trigger on the same ``m`` non-target test images (default ``profile.verify_m``):

    * Malicious: trained on our watermarked set (seeds seed, seed+1, ...);
    * Ind-M: trained on the clean set (same seeds; seed 0 is the benign model of Table I);
    * Ind-W: trained on the set marked by an independent owner (other key and generator seed, same target, eps,
      rate and decoy_rate; the same surrogate unless ``own_surrogate``).

    With ``decoy``, each model is also tested against the owner's unpublished decoy generator instead of clean
    queries (``decoy_*`` columns: H0: P(t | G(x)) <= P(t | G_decoy(x)) + tau): a placebo-controlled test that an
    independent owner's model answers equally for both marks, while a model trained on OUR marks should not.

    ``select_attempts`` > 1: each independent owner selects their generator as a careful owner would
    (:func:`select_run` with ``n_proxies``; ``other_attempt``, ``other_self_check`` columns), the fair comparison
    when our run was selected too; with ``redraw_surrogate`` each of their attempts trains its own surrogate too
    (attempt 0's: their seed's, so they never share ours; ``other_surrogate_seed`` column); ``check_alpha``: the
    level their check needs (:func:`check_level`); ``check_test``: the test it decides with, "ttest" (default) or
    "bounded" (:func:`select_run`'s ``test``).

    Returns a pandas DataFrame, one row per model (scenario, model_seed, BA, WSR, delta_p, p_value, verified,
    label-only test, and the per-image probabilities ``p_b``/``p_w`` for :func:`dovlib.verify.tau_sweep`)."""
    import pandas as pd

    from .train import evaluate
    from .verify import _check_tau_alpha, attack_success, query_probs, ttest_verify, verification_set, verify_model

    ds, prof, p = run.ds, run.profile, run.params
    _check_tau_alpha(tau, alpha)  # before any model trains, not at the first verdict
    check_bool("own_surrogate", own_surrogate)  # "False" would give each Ind-W owner its own surrogate
    check_bool("decoy", decoy)
    n_models = check_int("n_models", n_models if n_models is not None else prof.n_models, 1)
    select_attempts, n_proxies = check_int("select_attempts", select_attempts, 1), check_int("n_proxies", n_proxies, 1)
    check_redraw(redraw_surrogate, select_attempts)
    check_selection_options(select_attempts, check_int("n_proxies", n_proxies, 1), check_alpha, alpha, check_test)
    check_level(check_alpha, alpha)
    _check_control_seeds(run, n_models, n_proxies, select_attempts)
    m = query_count(ds, p["target"], m, prof.verify_m)
    _warn_if_queries_meet_the_check(run, {p["target"]: m}, verify_seed)
    idx = verification_set(ds.x_test, ds.y_test, p["target"], m, seed=verify_seed)
    xq = ds.x_test[idx]
    rows = []
    G_decoy = decoy_generator(run, progress=progress) if decoy else None

    def add(scenario, res, model_seed, extra=None):
        pb, pw = query_probs(res.model, xq, run.trigger, p["target"])
        v = ttest_verify(pb, pw, tau, alpha)
        lv = verify_model(res.model, xq, run.trigger, p["target"], tau, alpha, labels_only=True)
        if G_decoy is not None:
            pd_ = query_probs(res.model, xq, G_decoy.mark, p["target"])[1]
            dv = ttest_verify(pd_, pw, tau, alpha)
            extra = {**(extra or {}), "decoy_delta_p": dv.delta_p, "decoy_p_value": dv.p_value,
                     "decoy_verified": dv.verified, "p_decoy": pd_.numpy()}
        rows.append({"scenario": scenario, "model_seed": model_seed, "BA": evaluate(res.model, ds.x_test, ds.y_test),
                     "WSR": attack_success(res.model, ds.x_test, ds.y_test, run.trigger, p["target"]),
                     "delta_p": v.delta_p, "p_value": v.p_value, "verified": v.verified,
                     "label_p_value": lv.p_value, "label_verified": lv.verified, "p_b": pb.numpy(), "p_w": pw.numpy(),
                     **(extra or {})})

    kw = dict(arch=p["arch"], profile=prof, num_classes=ds.num_classes, progress=progress)
    for i in range(n_models):
        s, mal, benign = _malicious_and_benign(run, i, kw)
        add("Malicious", mal, s)
        add("Ind-M", benign, s)
        okw = dict(arch=p["arch"], eps=p["eps"], rate=p["rate"], target=p["target"],
                   key=independent_key(int(p["key_hash"], 16), i), seed=s + 1000, perceptual=p["perceptual"],
                   surrogate_arch=p["surrogate_arch"], l1=p["l1"], l2=p["l2"], l3=p["l3"],
                   decoy_rate=p.get("decoy_rate", 0.0), train_suspect=False,
                   surrogate=None if own_surrogate or redraw_surrogate else run.surrogate,
                   surrogate_width=p.get("surrogate_width"), progress=progress)
        extra = {}
        if select_attempts > 1:
            other, _ = select_run(ds, prof, attempts=select_attempts, n_proxies=n_proxies, m=m, tau=tau, alpha=alpha,
                                  redraw_surrogate=redraw_surrogate, check_alpha=check_alpha, test=check_test,
                                  **okw)
            extra = _other_selection(other, redraw_surrogate)
        else:
            other = run_sscl(ds, prof, **okw)
        indw = train_classifier(other.marked.x, other.marked.y, ds.x_test, ds.y_test, seed=s, **kw)
        add("Ind-W", indw, s, {"own_WSR": attack_success(indw.model, ds.x_test, ds.y_test, other.trigger,
                                                        p["target"]), **extra})
    return pd.DataFrame(rows)


# --- Key-derived target code (ours, not the paper's; docs/owner-specificity.md) ---------------------------------
# Independent owners' SSCL-BW marks are interchangeable for a suspect model when they share the target class
# (Ind-W false claims), and not when they do not. A target code marks k classes, each with its own generator
# towards that class, and claims ownership only if the suspect answers every class's trigger (intersection-union
# test): a model trained on another owner's data is claimed only if that owner's classes include all of ours.


def key_targets(key: int, num_classes: int, n_targets: int, first: int | None = None,
                pool=None) -> tuple[int, ...]:
    """``n_targets`` distinct target classes drawn from the owner's ``key`` (a seeded permutation of the classes);
    ``first`` (e.g. the notebooks' ``target``) is kept as the first class and the others are drawn from the key.
    ``pool``: draw only among these classes (e.g. :func:`hard_classes`), in the key's order, so a key keeps its
    order of preference whatever the pool; fewer possible codes make two owners' codes coincide more often."""
    num_classes = check_int("num_classes", num_classes, 2)
    n_targets = check_int("n_targets", n_targets, 1, num_classes)
    if first is not None and not 0 <= int(first) < num_classes:
        raise ValueError(f"first (the target class) must be in [0, {num_classes - 1}]; got {first}")
    seed = int(hashlib.sha256(f"dovlib-sscl-targets:{check_key(key)}".encode()).hexdigest()[:15], 16)
    order = torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed)).tolist()
    if pool is not None:
        pool = {int(c) for c in pool}
        if not pool or not all(0 <= c < num_classes for c in pool):
            raise ValueError(f"pool must hold class indices in [0, {num_classes - 1}]; got {sorted(pool)}")
        order = [c for c in order if c in pool]
    if first is not None:
        order = [int(first)] + [c for c in order if c != int(first)]
    if n_targets > len(order):
        raise ValueError(f"n_targets must be at most {len(order)} (the pool's classes, with first); got {n_targets}")
    return tuple(order[:n_targets])


def class_recall(model, x: torch.Tensor, y, num_classes: int | None = None) -> np.ndarray:
    """Each class's clean recall (share of its images ``model`` classifies right; scikit-learn's ``recall_score``),
    0 for a class absent from ``y``."""
    from sklearn.metrics import recall_score

    from .train import predict_logits

    y = torch.as_tensor(y).long().numpy()
    if len(y) != len(x) or len(y) == 0:
        raise ValueError(f"x and y must be non-empty and of equal length; got {len(x)} images, {len(y)} labels")
    num_classes = check_int("num_classes", num_classes or int(y.max()) + 1, 2)
    pred = predict_logits(model, x).argmax(1).numpy()
    return recall_score(y, pred, labels=list(range(num_classes)), average=None, zero_division=0)


def pool_label(pool) -> str:
    """Where the key drew its classes from, in words for a caption (notebook 03): "" for every class (``pool`` None),
    else the ``hard_pool`` classes of lowest clean recall on the owners' surrogate (:func:`hard_classes`), named. The
    captions said "from the key" and named no pool, so a code drawn among the 3 hardest classes (whose codes coincide
    far more often, 1 / C(H, k - 1)) read like one drawn among all."""
    if pool is None:
        return ""
    pool = [int(c) for c in pool]
    if not pool:
        raise ValueError("pool must hold at least one class (None: every class)")
    return (f"key's classes drawn among the {len(pool)} of lowest clean recall on our surrogate "
            f"({', '.join(map(str, pool))})")


def hard_classes(model, x: torch.Tensor, y, n: int, num_classes: int | None = None) -> tuple[int, ...]:
    """The ``n`` classes with the lowest clean recall on ``model`` (the owner's surrogate on the images given; notebook
    03 passes the test set, which the evaluation queries come from too),
    hardest first, ties by class index. A clean-label mark leans on the trigger where natural features are weak:
    in a two-class code the class of lower recall was the one learnt in 9 of 11 one-class suspects, and codes drawn
    among the five hardest classes were learnt 3 of 8 times against 1 of 8 for the same owners' codes drawn from all
    classes (not significant), at about half the BA cost (paired, 8 of 8 owners; docs/owner-specificity.md, design
    5): a class marked whole loses most of its clean recall, and a hard class has less to lose.
    Owners' surrogates tend to find the same classes hard, so a pool of H classes makes two owners' codes coincide
    about 1 / C(H, k) of the time. Pass the result as :func:`key_targets`' ``pool``."""
    recall = class_recall(model, x, y, num_classes)
    n = check_int("n (hard classes)", n, 1, len(recall))
    return tuple(int(c) for c in np.argsort(recall, kind="stable")[:n])


def code_rate(y, rate, targets) -> float:
    """gamma per class for a target code: ``rate``, or the smallest code class's share of the set when that is
    smaller (that class is then marked whole). Callers say so when it is capped."""
    y = torch.as_tensor(y)
    rate = parse_rate(rate, "rate (gamma per target class)")
    return min([rate] + [int((y == int(t)).sum()) / len(y) for t in targets])  # exact shares, not float32 means


@dataclass
class SSCLCodeRun:
    """A target-code experiment: one generator per target class (same surrogate, key and eps), one marked set in
    which ``rate`` of the whole set is marked in EACH target class, and the suspect (Malicious) model."""

    ds: object
    profile: Profile
    params: dict
    surrogate: object
    generators: dict  # target class -> SSCLGenerator
    marked: WatermarkedSet
    suspect: object = None

    @property
    def targets(self) -> tuple[int, ...]:
        return tuple(self.generators)


def mark_code(generators: dict, x: torch.Tensor, y: torch.Tensor, rate, seed: int = 0, **manifest) -> WatermarkedSet:
    """Mark ``rate`` of the whole set in each target class with that class's generator (labels untouched)."""
    if not generators:
        raise ValueError("generators must map at least one target class to its SSCLGenerator")
    rate = parse_rate(rate, "rate (gamma per target class)")  # "1/20" from papermill: a number in the manifest
    xw, marked, per_target, marked_by = x.clone(), [], [], []
    for t, G in generators.items():
        ws = watermark_dataset(G, x, y, rate, t, seed=seed)
        xw[ws.marked] = ws.x[ws.marked]
        marked.append(ws.marked)
        marked_by.append(ws.manifest["marked_by"])  # each device once: "CPU (...); NVIDIA ..." if they differ
        per_target.append({k: ws.manifest[k] for k in ("target", "rate", "n_marked", "generator_hash")})
    idx = torch.cat(marked).sort().values
    info = {"method": "sscl-bw-code", "targets": [int(t) for t in generators], "rate_per_target": float(rate),
            "n_images": len(y), "n_marked": len(idx), "seed": int(seed), "per_target": per_target,
            "key_hash": key_hash(next(iter(generators.values())).key), "data_hash": data_hash(x, y),
            "marked_hash": data_hash(xw, y), "marked_by": "; ".join(dict.fromkeys(marked_by)), **manifest}
    return WatermarkedSet(xw, torch.as_tensor(y).long().clone(), idx, info)


def run_code(ds, profile: Profile, *, targets, arch: str = "resnet18", eps=8 / 255, rate=0.1, key: int = 0,
             seed: int = 0, perceptual: str = "lpips", train_suspect: bool = True, surrogate=None,
             generator_seed: int | None = None, surrogate_width: int | None = None,
             progress: bool = True) -> SSCLCodeRun:
    """:func:`run_sscl` for a target code (``targets``, e.g. from :func:`key_targets`): the cached generator of
    each class, ``rate`` of the set marked in each class, a suspect ``arch`` model trained on the result.
    ``generator_seed`` (default ``seed``) seeds only the generators' training (:func:`select_code_run` varies it);
    surrogate, marking and suspect keep ``seed``. ``surrogate_width`` as in :func:`run_sscl`."""
    targets = tuple(check_int("targets", t, 0) for t in targets)  # 1.5 was truncated to 1
    generator_seed = seed if generator_seed is None else check_int("generator_seed", generator_seed, 0)
    check_choice("arch", arch, list(ARCHS))
    check_bool("train_suspect", train_suspect)
    if not targets or len(set(targets)) != len(targets):
        raise ValueError(f"targets must be distinct class indices; got {targets}")
    eps, rate = parse_eps(eps), parse_rate(rate, "rate (gamma per target class)")
    surrogate_width = profile.width if surrogate_width is None else check_int("surrogate_width", surrogate_width, 1)
    key = check_key(key)
    require_perceptual(perceptual, image_shape=ds.x_train.shape)  # LPIPS: weights cached, images of at least 31 px
    for t in targets:  # refused before any training, as in run_sscl
        select_indices(ds.y_train, rate, t, clean_label=True, seed=seed, name="rate (gamma per target class)")
    configs = {t: generator_config(profile, eps=eps, target=t, key=key, seed=generator_seed, perceptual=perceptual)
               for t in targets}
    dev = resolve_device(profile.device)
    if surrogate is None:
        surrogate = train_surrogate(ds, profile, arch, seed, progress=progress, width=surrogate_width)
    gens = {t: get_or_train_generator(surrogate.model, ds.x_train, ds.y_train, c, device=dev, progress=progress)
            for t, c in configs.items()}
    ws = mark_code(gens, ds.x_train, ds.y_train, rate, seed=seed, dataset=ds.name)
    params = {"arch": arch, "eps": eps, "rate": rate, "targets": list(targets), "key_hash": key_hash(key),
              "seed": seed, "perceptual": perceptual, "generator_seed": generator_seed,
              "surrogate_width": surrogate_width}
    run = SSCLCodeRun(ds, profile, params, surrogate, gens, ws)
    if train_suspect:
        run.suspect = train_classifier(ws.x, ws.y, ds.x_test, ds.y_test, arch=arch, profile=profile, seed=seed,
                                       num_classes=ds.num_classes, progress=progress)
    return run


def query_count(ds, target: int, m: int | None, default: int) -> int:
    """How many verification images to draw for ``target``: ``m`` as given (``verification_set`` refuses more than the
    test set's non-target images, naming the range), or with ``m`` None the ``default`` (a profile's ``verify_m``)
    capped at those images, so a small test set still runs on its defaults. ``ds`` is a dataset with ``y_test`` or
    the test labels themselves."""
    if m is not None:
        return m
    y_test = ds.y_test if hasattr(ds, "y_test") else ds
    return min(default, int((torch.as_tensor(y_test) != target).sum()))



def query_source(ds, target: int, m: int | None, default: int) -> str:
    """Where :func:`query_count`'s number for ``target`` comes from, in words for a message: "m" when given, else
    "the profile's verify_m <default>", with " capped at the <n> test images outside class <target>" when the test
    set holds fewer (``ds`` a dataset with ``y_test`` or the test labels, as for :func:`query_count`). The refusals of
    :func:`check_owner_queries`, :func:`dovlib.studies.check_study_queries` and notebook 03's query check use it."""
    if m is not None:
        return "m"
    left = int((torch.as_tensor(ds.y_test if hasattr(ds, "y_test") else ds) != target).sum())
    return f"the profile's verify_m {default}" + (
        f" capped at the {left} test images outside class {target}" if left < default else "")


def _non_target_count(ds, target: int) -> int:
    return int((torch.as_tensor(ds.y_test) != target).sum())


def code_queries(ds, targets, m: int | None, default: int) -> str:
    """How many queries a target code's test draws per class, in words for a caption (notebook 03's code tables and
    figure): :func:`query_count` of each class, as :func:`verify_code` draws them (``m`` given: m for every class;
    None: ``default``, a profile's ``verify_m``, capped at each class's non-target test images, so classes may
    differ). Notebook 03 used to print the first class's count "per class", wrong for a class whose cap differs."""
    default = check_int("verify_m", default, 2)
    counts = [query_count(ds, int(t), m, default) for t in targets]
    if not counts:
        raise ValueError("targets must hold at least one class (a code's classes); got none")
    if len(set(counts)) == 1:
        return f"m {counts[0]} per class"
    return (f"m {', '.join(f'{c} for class {t}' for t, c in zip(targets, counts))} (the profile's verify_m {default}, "
            f"capped at each class's non-target test images)")


def queries_apart(ds, target: int, m: int) -> bool:
    """Whether the test set leaves at least 2 non-target images for ``target`` beside an evaluation draw of ``m``
    (:func:`owner_queries` then keeps the owner's check apart from it)."""
    return _non_target_count(ds, target) - m >= 2


def owner_query_count(ds, target: int, m: int) -> int:
    """How many images :func:`owner_queries` (ds, target, m) draws: ``m``, or those the evaluation's draw leaves
    when fewer (at least 2 of them; else ``m`` again, overlapping it)."""
    left = _non_target_count(ds, target) - m
    return m if left < 2 else min(m, left)


def owner_queries(ds, target: int, m: int, verify_seed: int = 1) -> torch.Tensor:
    """The owner's own check images for ``target`` (:func:`self_check`) when suspects are tested on ``m`` images:
    non-target test images drawn with ``verify_seed`` among those the evaluation's draw (seed
    :data:`EVAL_VERIFY_SEED`, ``m`` images) leaves out, so the selection never queries an image a suspect model is
    then tested on (a smaller evaluation draw is a prefix of that one: left out too); ``m`` of them, or all that are
    left when fewer are. A test set too small for that (fewer than 2 left: :func:`queries_apart`) gets ``m`` images
    drawn from all of them, overlapping the evaluation's, with a warning; :func:`self_check` records which."""
    from .verify import verification_set

    evaluation = verification_set(ds.x_test, ds.y_test, target, m, seed=EVAL_VERIFY_SEED)  # also checks m
    left = _non_target_count(ds, target) - len(evaluation)
    if left < 2:
        warnings.warn(f"the test set is too small for the owner's check to stay apart from the evaluation's m = {m} "
                      f"queries (target {target}): the check draws from the same images (a smaller m keeps them "
                      f"apart)", stacklevel=2)
        return verification_set(ds.x_test, ds.y_test, target, m, seed=verify_seed)
    return verification_set(ds.x_test, ds.y_test, target, min(m, left), seed=verify_seed, exclude=evaluation)


def verify_code(model, run: SSCLCodeRun, m: int | None = None, tau=0.25, alpha=0.01,
                verify_seed: int = EVAL_VERIFY_SEED, owner_check: bool = False, test: str = "ttest"):
    """Query ``model`` with each target class's trigger on ``m`` images of the other classes (default: the profile's
    ``verify_m``, capped at the test set's non-target images; :func:`query_count`); returns the intersection-union
    result and the per-class :class:`dovlib.verify.VerifyResult` list. ``owner_check``: the owner's check images
    (:func:`owner_queries`, disjoint from the evaluation's) instead of the evaluation's draw. ``test``: each class's
    test, as :func:`dovlib.verify.verify_model` takes it: "ttest" (the paper's, the default) or "bounded" (the
    betting test, valid at every bounded null; the intersection-union of such tests is too, its p-value the largest
    per-class one). :func:`verify_code_tests` runs several tests on one set of answers."""
    return verify_code_tests(model, run, m, tau, alpha, verify_seed, owner_check, tests=(test,))[test]


def verify_code_tests(model, run: SSCLCodeRun, m: int | None = None, tau=0.25, alpha=0.01,
                      verify_seed: int = EVAL_VERIFY_SEED, owner_check: bool = False, tests=("ttest", "bounded")):
    """:func:`verify_code` for each test in ``tests`` on the same answers: the model is queried once per class and
    every test reads those probabilities. Returns ``{test: (intersection-union result, per-class results)}``."""
    from .verify import PROB_TESTS, intersection_union, query_probs, verification_set

    tests = tuple(tests)
    bad = [t for t in tests if t not in PROB_TESTS]
    if bad or not tests:
        raise ValueError(f"test must be one of {', '.join(map(repr, PROB_TESTS))}; got {bad[0] if bad else tests!r}")
    ds, answers = run.ds, []
    for t, G in run.generators.items():
        mt = query_count(ds, t, m, run.profile.verify_m)
        idx = (owner_queries(ds, t, mt, verify_seed) if owner_check
               else verification_set(ds.x_test, ds.y_test, t, mt, seed=verify_seed))
        answers.append(query_probs(model, ds.x_test[idx], G.mark, t))
    out = {}
    for test in tests:
        per = [PROB_TESTS[test](pb, pw, tau, alpha) for pb, pw in answers]
        out[test] = (intersection_union(per), per)
    return out


def attempt_seed(seed: int, attempt: int) -> int:
    """Generator seed of selection attempt ``attempt`` (0: ``seed`` itself, so attempt 0 is the unselected run)."""
    return check_seed(seed) + check_int("attempt", attempt, 0) * ATTEMPT_SEED_STRIDE


def check_level(check_alpha, alpha) -> float:
    """The level the owner's check needs: ``alpha`` itself when ``check_alpha`` is None, else ``check_alpha`` in
    (0, alpha] (a margin: a proxy is one draw of the model a suspect would be). Measured, a margin on one proxy's p
    does not predict a fresh model: 1e-4, chosen from 23 (proxy, fresh model) pairs, did worse than alpha on 23
    held-out ones (18 against 20 agree; docs/measured-sscl-cpu.md, "A margin for the owner's check"); hence the
    default."""
    alpha = parse_fraction("alpha", alpha, 0.0, 1.0, high_inclusive=False)
    if check_alpha is None:
        return alpha
    return parse_fraction(f"check_alpha (the owner's check level, at most alpha = {alpha:g})", check_alpha, 0.0, alpha)


def check_proxy_seeds(seed: int, n_models: int, n_proxies: int) -> None:
    """The owner's proxy models (seeds ``PROXY_SEED_OFFSET + i``, i < ``n_proxies``) must never be models a study
    evaluates (seeds ``seed`` .. ``seed + n_models - 1``): the same marked set and seed train the same model, so the
    selection would have looked at a suspect. Such a ``seed`` is refused, naming the seeds allowed."""
    lo, hi = PROXY_SEED_OFFSET, PROXY_SEED_OFFSET + n_proxies - 1
    if n_proxies > 0 and seed <= hi and seed + n_models - 1 >= lo:
        span = f"seeds {seed}..{seed + n_models - 1}" if n_models > 1 else f"seed {seed}"
        below = f"at most {lo - n_models} or " if lo - n_models >= 0 else ""
        raise ValueError(f"seed {seed}: the evaluated models' {span} overlap the owner's proxy models' seeds "
                         f"{lo}..{hi} (PROXY_SEED_OFFSET + i for {n_proxies} proxies), so a proxy would be a suspect "
                         f"model; choose seed {below}at least {hi + 1}")


def _warn_if_queries_meet_the_check(run, counts: dict, verify_seed: int) -> None:
    """A selected run's owner check queried images apart from the evaluation draw it expected (seed
    :data:`EVAL_VERIFY_SEED`, ``check_m`` images per class: :func:`owner_queries`). Controls drawn with another seed,
    or with more images, may query images the check chose the generator on: said, since the suspects' p-values then
    lean towards the selected mark."""
    sel = run.params.get("selection")
    if not sel:
        return
    # a selection recorded before check_m existed reads as the profile's verify_m: right unless it passed its own m
    for t, m in counts.items():
        check_m = query_count(run.ds, t, sel.get("check_m"), run.profile.verify_m)
        if verify_seed != EVAL_VERIFY_SEED or m > check_m:
            warnings.warn(f"the owner's check of this selected run kept its queries apart from the evaluation draw "
                          f"of seed {EVAL_VERIFY_SEED} and {check_m} images per class; testing the suspects on seed "
                          f"{verify_seed} with {m} images (class {t}) may query images the check used", stacklevel=3)
            return


def _check_control_seeds(run, n_models: int, n_proxies: int, select_attempts: int) -> None:
    """:func:`check_proxy_seeds` for a control study: our own selection's proxies (when the run was selected) and
    the independent owners' (when they select), against the study's model seeds."""
    own = run.params.get("selection", {}).get("n_proxies", 0)
    check_proxy_seeds(run.params["seed"], n_models, max(own, n_proxies if select_attempts > 1 else 0))


def check_test(test, what: str = "test") -> str:
    """The owner's check test (:func:`self_check`): "ttest" (the paper's) or "bounded" (the betting test,
    :func:`dovlib.verify.bounded_verify`); anything else is refused, naming the two and ``what`` (the parameter:
    ``check_test`` in the notebooks)."""
    from .verify import PROB_TESTS

    if not isinstance(test, str) or test not in PROB_TESTS:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, PROB_TESTS))} (the owner's check test); "
                         f"got {test!r}")
    return test


def selection_caption(n_proxies, test: str, label: str) -> str:
    """The caption of a selection log's table (notebooks 02 and 03): one row per attempt of the owner's check, on
    how many proxy models, decided by which test (``test``, :func:`check_test`: the paper's t-test or the betting
    test), on queries apart from the evaluation's where the test set leaves enough (the log's ``queries_apart``);
    ``label`` (what was measured, and how) follows."""
    n_proxies = check_int("n_proxies", n_proxies, 1)
    name = "the paper's t-test" if check_test(test, "check_test") == "ttest" else "the betting test (bounded_verify)"
    return (f"Owner-side self-check of each selection attempt ({n_proxies} proxy model(s), decided by {name}; "
            f"queries apart from the evaluation's unless queries_apart is False): {label}")


def selection_label(selection: dict, alpha=0.01) -> str:
    """The words a caption gives a single-target selection (notebook 02's label): which attempt was published (or
    kept: FAILED), whether each attempt redrew its surrogate, and how the owner's check decided when not as the
    paper's test at ``alpha`` (the level the caption names for suspects) would: its level (``check_alpha``) whenever
    that is not ``alpha`` and the betting test (``check_test`` "bounded"). Before, notebook 02's Table I captions and
    figures said "passed" with no test under ``check_test`` bounded, while its printed summary and notebook 03's
    label named it; and a check at a level above the ``alpha`` given went unnamed, as if at ``alpha``."""
    alpha = parse_fraction("alpha", alpha, 0.0, 1.0, high_inclusive=False)
    redraw = " (surrogate redrawn per attempt)" if selection.get("redraw_surrogate") else ""
    level = selection.get("check_alpha")
    how = ([f"check at p < {level:g}"] if level is not None and float(level) != alpha else []) + (
        ["by the betting test (bounded_verify)"] if check_test(selection.get("check_test", "ttest"),
                                                            "check_test") == "bounded" else [])
    return (f"generator selected{redraw}: attempt {selection['attempt']}, "
            f"{'passed' if selection['passed'] else 'FAILED'}" + (f" ({', '.join(how)})" if how else ""))


def self_check(run, n_proxies: int = 1, m: int | None = None, tau=0.25, alpha=0.01, verify_seed: int = 1,
               progress: bool = True, check_alpha=None, test: str = "ttest"):
    """The owner's check before publishing: train ``n_proxies`` proxy models on the owner's OWN marked set (seeds
    ``PROXY_SEED_OFFSET + i``, never a control's seed; same architecture and budget as the run's suspects) and
    verify each with the owner's own test (the target-code intersection-union test for an :class:`SSCLCodeRun`,
    the paper's single-target test for an :class:`SSCLRun`), on verification images drawn with ``verify_seed``
    among those the evaluation's draw leaves out (:func:`owner_queries`; before 2026-12-05 the two draws shared
    about an eighth of their images; a test set too small for both shares them, with a warning and
    ``queries_apart`` False in the rows). A mark that the owner cannot verify on a model trained on
    exactly their data is unlikely to verify an unauthorised one (measured agreement with fresh models:
    docs/owner-specificity.md; one proxy can pass by chance, so use more than one). ``check_alpha`` (default
    ``alpha``): a proxy counts as verified only at p < check_alpha, a margin over the level a suspect is tested at
    (:func:`check_level`). ``test`` decides ``p_value`` and ``verified`` (and a code's ``p_<class>``): "ttest" (the
    paper's, the default) or "bounded" (the betting test, :func:`dovlib.verify.bounded_verify`, valid for every
    bounded null: for an owner who will test suspects with it; :func:`check_test`). Each proxy is queried once and
    both tests read those answers: every row also holds ``ttest_p_value`` and ``bounded_p_value`` (a code's
    per-class ``ttest_p_<class>`` and ``bounded_p_<class>`` too) and names its ``test``. Returns one row per proxy
    model (``verified`` at ``check_alpha``; with the per-class p-values ``p_<class>`` of a code, which show the
    class whose trigger was not learnt)."""
    import pandas as pd

    from .train import evaluate
    from .verify import PROB_TESTS, query_probs

    test = check_test(test)
    n_proxies = check_int("n_proxies", n_proxies, 1)
    level = check_level(check_alpha, alpha)
    ds, prof, p = run.ds, run.profile, run.params
    if getattr(run, "suspect", None) is not None:  # its suspect trained with p["seed"]: never one of the proxies
        check_proxy_seeds(p["seed"], 1, n_proxies)
    m = None if m is None else check_int("m", m, 2)  # None: the profile's verify_m (query_count)
    kw = dict(arch=p["arch"], profile=prof, num_classes=ds.num_classes, progress=progress)
    targets = run.targets if isinstance(run, SSCLCodeRun) else (p["target"],)
    apart = all(queries_apart(ds, t, query_count(ds, t, m, prof.verify_m)) for t in targets)
    rows = []
    for i in range(n_proxies):
        res = train_classifier(run.marked.x, run.marked.y, ds.x_test, ds.y_test, seed=PROXY_SEED_OFFSET + i, **kw)
        per_class = {}
        if isinstance(run, SSCLCodeRun):  # one set of answers per class, both tests on them
            both = verify_code_tests(res.model, run, m, tau, level, verify_seed, owner_check=True)
            v = both[test][0]
            per_class = {f"{pre}p_{t}": r.p_value for pre, k in (("", test), ("ttest_", "ttest"),
                                                                  ("bounded_", "bounded"))
                         for t, r in zip(run.targets, both[k][1])}
        else:  # as verify_model(test=...) does, the model queried once for both tests
            t = p["target"]
            idx = owner_queries(ds, t, query_count(ds, t, m, prof.verify_m), verify_seed)
            pb, pw = query_probs(res.model, ds.x_test[idx], run.trigger, t)
            both = {k: (PROB_TESTS[k](pb, pw, tau, level),) for k in ("ttest", "bounded")}
            v = both[test][0]
        rows.append({"proxy_seed": PROXY_SEED_OFFSET + i, "BA": evaluate(res.model, ds.x_test, ds.y_test),
                     "p_value": v.p_value, "delta_p_min": v.delta_p, "verified": v.verified, "check_alpha": level,
                     "queries_apart": apart, "test": test, "ttest_p_value": both["ttest"][0].p_value,
                     "bounded_p_value": both["bounded"][0].p_value, **per_class})
    return pd.DataFrame(rows)


def check_owner_queries(ds, profile: Profile, targets, m=None, tau=0.25, alpha=0.01, test: str = "ttest",
                        role: str | None = None) -> None:
    """Refuse, before any training, an owner's check (:func:`self_check` at level ``alpha``, decided by ``test``)
    that can never pass: for each class of ``targets`` the queries :func:`owner_queries` draws (the test images
    outside the class less the evaluation's: ``m``, or the profile's ``verify_m`` capped at the test set) must reach
    :func:`dovlib.verify.check_claim_queries` for that test (10 at tau 0.25 and alpha 0.01 for the t-test, 11 for
    the betting test). The message names the class, ``role`` (what the class is to the caller, e.g. "the target
    class") when given, and where the evaluation's count came from (``m``, or the profile's ``verify_m`` and its
    cap). Classes outside the dataset are left to the run's own checks. Notebooks 02 and 03 call it up front."""
    from .verify import check_claim_queries

    for t in targets:
        try:  # what run_sscl / run_code accept (a 0-d tensor, "1"), checked here too
            t = check_int("target", t, 0, ds.num_classes - 1)
        except (TypeError, ValueError):
            continue  # run_sscl / run_code refuse it, naming their parameter
        mt = query_count(ds, t, m, profile.verify_m)
        source = query_source(ds, t, m, profile.verify_m)
        drawn = (f"the test images left beside the evaluation's {mt} queries" if queries_apart(ds, t, mt) else
                 f"the evaluation's {mt} queries again, fewer than 2 being left apart")
        check_claim_queries(owner_query_count(ds, t, mt), tau, alpha, f"the owner's check for class {t} ("
                            + (f"{role}; " if role else "") + f"{drawn}, {source}, at check_alpha {alpha:g})",
                            test=test)


def _select(make_run, ds, profile: Profile, *, attempts, n_proxies, m, tau, alpha, seed, train_suspect, progress,
            redraw_surrogate, kw, check_alpha=None, test="ttest", targets=()) -> tuple:
    """The selection loop of :func:`select_run` and :func:`select_code_run`: checks the counts (and that the
    check's queries for ``targets`` can pass, :func:`check_owner_queries`), trains (cached) the
    surrogate once unless ``kw`` brings one (or, with ``redraw_surrogate``, one per attempt, with the attempt's
    seed), then ``make_run(generator_seed, kw)`` builds attempt j's run (never its suspect) and :func:`self_check`
    tests it (with ``test``); the first that passes is published."""
    import pandas as pd

    test = check_test(test)
    attempts, n_proxies = check_int("attempts", attempts, 1), check_int("n_proxies", n_proxies, 1)
    check_bool("redraw_surrogate", redraw_surrogate)
    level = check_level(check_alpha, alpha)
    check_owner_queries(ds, profile, targets, None if m is None else check_int("m", m, 2), tau, level, test)
    if train_suspect:  # the published run's suspect (seed ``seed``) is never one of its proxies
        check_proxy_seeds(seed, 1, n_proxies)
    if kw.get("generator_seed") is not None:
        raise TypeError("generator_seed is what the selection chooses (attempt_seed(seed, j)); pass seed instead")
    kw.pop("generator_seed", None)
    if redraw_surrogate and kw.get("surrogate") is not None:
        raise ValueError("redraw_surrogate=True trains a surrogate per attempt (seed attempt_seed(seed, j)); "
                         "do not also pass surrogate=")
    arch = kw.get("surrogate_arch") or kw.get("arch", "resnet18")

    def surrogate_for(s):
        return train_surrogate(ds, profile, arch, s, progress=progress, width=kw.get("surrogate_width"))

    given = kw.get("surrogate") is not None
    if not redraw_surrogate and not given:
        kw["surrogate"] = surrogate_for(seed)
    logs, best, surrogate_ba = [], None, None  # a fixed surrogate's accuracy is evaluated once
    other = "bounded_p_value" if test == "ttest" else "ttest_p_value"  # the tie-break (self_check logs both)
    for j in range(attempts):
        gseed = attempt_seed(seed, j)
        run = make_run(gseed, {**kw, "surrogate": surrogate_for(gseed)} if redraw_surrogate else kw)
        run.params["surrogate_seed"] = None if given else (gseed if redraw_surrogate else seed)
        chk = self_check(run, n_proxies, m=m, tau=tau, alpha=alpha, progress=progress, check_alpha=level, test=test)
        chk.insert(0, "attempt", j)
        chk.insert(1, "generator_seed", run.params["generator_seed"])
        chk.insert(2, "surrogate_seed", run.params["surrogate_seed"])
        if redraw_surrogate or surrogate_ba is None:
            surrogate_ba = evaluate(run.surrogate.model, ds.x_test, ds.y_test)
        chk.insert(3, "surrogate_BA", surrogate_ba)
        logs.append(chk)
        # the largest proxy p-value of the deciding test, ties (a test at p 1 on every attempt, say) broken by the
        # other test's on the same answers: the attempt kept when none passes is the closest to passing
        score = (float(chk["p_value"].max()), float(chk[other].max()) if other in chk.columns else 1.0)
        if best is None or score < best[0]:
            best = (score, j, run)
        if bool(chk["verified"].all()):
            break
    (worst, other_worst), j, run = best
    run.params["selection"] = {"attempt": j, "generator_seed": run.params["generator_seed"],
                               "surrogate_seed": run.params["surrogate_seed"], "redraw_surrogate": redraw_surrogate,
                               "attempts_tried": len(logs), "attempts_allowed": attempts, "n_proxies": n_proxies,
                               "proxy_p_max": worst, "other_test_p_max": other_worst, "check_alpha": level,
                               "check_test": test,
                               "check_m": m if m is not None else profile.verify_m,  # 02 and 03 record alike
                               "passed": bool(logs[j]["verified"].all())}
    if train_suspect:
        _train_suspect(run, profile, seed, progress)
    return run, pd.concat(logs, ignore_index=True)


def _train_suspect(run, profile: Profile, seed: int, progress: bool) -> None:
    """The published run's suspect: a fresh model trained on its marked set with the run's seed."""
    ds, p = run.ds, run.params
    run.suspect = train_classifier(run.marked.x, run.marked.y, ds.x_test, ds.y_test, arch=p["arch"], profile=profile,
                                   seed=seed, num_classes=ds.num_classes, progress=progress)


def check_redraw(redraw_surrogate, select_attempts: int) -> bool:
    """Validate the ``redraw_surrogate`` option (a bool, meaningful only with two or more selection attempts)."""
    if check_bool("redraw_surrogate", redraw_surrogate) and select_attempts < 2:
        raise ValueError("redraw_surrogate=True needs select_attempts >= 2 (it redraws the surrogate of each "
                         f"selection attempt); got select_attempts={select_attempts}")
    return redraw_surrogate


def check_selection_options(select_attempts: int, n_proxies: int, check_alpha, alpha=None,
                            test: str = "ttest") -> None:
    """``n_proxies``, ``check_alpha`` and ``check_test`` tune the owner's generator selection: refused, naming them,
    when there is none (``select_attempts`` < 2), as ``redraw_surrogate`` is, so a record never names a check that
    did not run. Given ``alpha``, a ``check_alpha`` at that level is no stricter check (what :func:`check_level`
    makes of None). ``test`` (``check_test`` to the notebooks and the controls, which name it so) must be one of
    :func:`check_test`'s, with or without a selection."""
    test = check_test(test, "check_test")
    if select_attempts >= 2:
        return
    stricter = check_alpha is not None and (
        alpha is None or check_level(check_alpha, alpha) != check_level(None, alpha))
    given = ([f"n_proxies={n_proxies}"] if n_proxies != 1 else []) + (
        [f"check_alpha={check_alpha}"] if stricter else []) + (
        [f"check_test={test!r}"] if test != "ttest" else [])
    if given:
        raise ValueError(f"{' and '.join(given)} tune{'s' * (len(given) == 1)} the owner's generator selection, which "
                         f"needs select_attempts >= 2; got select_attempts={select_attempts} (leave n_proxies 1, "
                         "check_alpha None and check_test 'ttest' without it)")


def _other_selection(other, redraw_surrogate: bool) -> dict:
    """The control columns that say how an independent owner's selection went."""
    sel = other.params["selection"]
    out = {"other_attempt": sel["attempt"], "other_self_check": sel["passed"]}
    return {**out, "other_surrogate_seed": sel["surrogate_seed"]} if redraw_surrogate else out


def selection_summary(selection: dict) -> str:
    """One line for a notebook: which attempt was published, out of how many, the level the check needed, whether it
    passed and, after :func:`select_code_draws`, which code and the classes dropped. When none passed the line leads
    with that, loudly, and names the attempt kept (the smallest largest proxy p-value) as kept, not published."""
    passed = selection["passed"]
    word = "published" if passed else "kept"
    redraw = (f", surrogate redrawn per attempt ({word}: surrogate seed {selection['surrogate_seed']})"
              if selection.get("redraw_surrogate") else "")
    bounded = ", betting test" if selection.get("check_test") == "bounded" else ""  # the t-test unnamed, as before
    level = f" (check at p < {selection['check_alpha']:g}{bounded})" if "check_alpha" in selection else ""
    tie = ", ties broken by the other test's" if "other_test_p_max" in selection else ""  # older records: first
    which = "" if passed else f"the smallest proxy p max{tie}; "
    body = (f"{word} attempt {selection['attempt']} ({which}counted from 0; {selection['attempts_tried']} tried, up to "
            f"{selection['attempts_allowed']}){redraw}, proxy p max {selection['proxy_p_max']:.3g}{level}")
    if "draws_tried" in selection:  # select_code_draws: which code, and the classes dropped on the way
        kept = selection["codes_tried"][selection["draw"]]
        code = ", ".join(map(str, kept))
        dropped = ", ".join(map(str, selection["excluded"])) or "none"
        still = [c for c in selection["excluded"] if c in kept]  # dropped after the kept draw, which holds them
        note = f"; the kept draw predates dropping {', '.join(map(str, still))}" if still else ""
        body = (f"code {{{code}}} (draw {selection['draw']} of {selection['draws_tried']} tried, up to "
                f"{selection['draws_allowed']}; classes dropped for later draws: {dropped}{note}), {body}")
    if passed:
        return f"selection: {body}, passed"
    return f"selection: NO ATTEMPT PASSED: this owner cannot expect to verify; {body}"


def select_run(ds, profile: Profile, *, attempts: int = 4, n_proxies: int = 1, m: int | None = None, tau=0.25,
               alpha=0.01, seed: int = 0, train_suspect: bool = True, redraw_surrogate: bool = False,
               progress: bool = True, check_alpha=None, test: str = "ttest", **kw):
    """Owner-side generator selection for the paper's single-target SSCL-BW (ours, not the paper's): attempt j
    trains the generator with seed :func:`attempt_seed` (seed, j) (attempt 0 is the unselected :func:`run_sscl`),
    marks the set and runs :func:`self_check` (the paper's test on ``n_proxies`` proxy models trained on the
    owner's own marked set, ``m`` queries); the first attempt whose proxies all pass is published, else the one
    with the smallest largest proxy p-value (ties broken by the other test's, ``other_test_p_max``), with ``passed``
    False (the caller must say so). ``kw`` goes to :func:`run_sscl` (key, eps, rate, target, arch, perceptual,
    surrogate, surrogate_width, ...).

    Why: at the reduced scales measured here, whether a suspect learns the mark is a draw per run; at width 16 on
    the CPU the owners whose check failed failed for both generator seeds, and their surrogate was what decided
    (docs/measured-sscl-cpu.md, "Owner-side selection"); the surrogate is kept across attempts, so such an owner
    is told, not rescued, unless ``redraw_surrogate``: then attempt j also trains a fresh surrogate with seed
    ``attempt_seed(seed, j)`` (attempt 0's is the usual one), and the log and ``selection`` name each attempt's
    surrogate seed (``surrogate_seed``, None for a surrogate passed in) and accuracy. Selection never looks at a
    suspect model. It does not make the single-target mark owner-specific: an independent owner's mark on the same
    target class is still claimed (Ind-W; the target code of :func:`select_code_run` is the remedy).
    ``check_alpha``: the level the proxies must reach (default ``alpha``; :func:`check_level`); ``test``: the
    test that decides it, "ttest" (default) or "bounded" (:func:`self_check`; recorded as ``check_test``; the log
    holds both tests' p-values either way). Returns (run, log) as :func:`select_code_run` does."""

    def make(gseed, kw):
        return run_sscl(ds, profile, seed=seed, generator_seed=gseed, train_suspect=False, progress=progress, **kw)

    return _select(make, ds, profile, attempts=attempts, n_proxies=n_proxies, m=m, tau=tau, alpha=alpha, seed=seed,
                   train_suspect=train_suspect, progress=progress, redraw_surrogate=redraw_surrogate, kw=kw,
                   check_alpha=check_alpha, test=test, targets=(kw.get("target", 1),))


def select_code_run(ds, profile: Profile, *, targets, attempts: int = 4, n_proxies: int = 1, m: int | None = None,
                    tau=0.25, alpha=0.01, seed: int = 0, train_suspect: bool = True, redraw_surrogate: bool = False,
                    progress: bool = True, check_alpha=None, test: str = "ttest", **kw):
    """Owner-side generator selection for a target code: attempt j trains the code's generators with seed
    :func:`attempt_seed` (seed, j) (attempt 0 is the unselected :func:`run_code`), marks the set and runs
    :func:`self_check` (``m`` queries per class, as in the evaluation); the first attempt whose ``n_proxies`` proxy
    models all pass is published. If none passes within ``attempts``, the attempt with the smallest largest proxy
    p-value (ties broken as in :func:`select_run`) is returned and ``passed`` is False (the caller must say so: that
    owner cannot expect to verify). ``kw`` goes to :func:`run_code` (key, eps,
    rate, arch, perceptual, surrogate). ``redraw_surrogate``: each attempt also trains its own surrogate, as in
    :func:`select_run`. The selection never looks at a suspect model, so it cannot tune the test
    to the suspects; it can favour marks that transfer to other owners' models (notebook 03 measures that with
    every other owner selecting too; docs/owner-specificity.md). ``check_alpha`` and ``test`` as in
    :func:`select_run`.

    Returns (run, log): ``run.params["selection"]`` holds the attempt, generator seed and ``passed``; ``log`` is
    one row per proxy model of every attempt tried."""

    def make(gseed, kw):
        return run_code(ds, profile, targets=targets, seed=seed, generator_seed=gseed, train_suspect=False,
                        progress=progress, **kw)

    return _select(make, ds, profile, attempts=attempts, n_proxies=n_proxies, m=m, tau=tau, alpha=alpha, seed=seed,
                   train_suspect=train_suspect, progress=progress, redraw_surrogate=redraw_surrogate, kw=kw,
                   check_alpha=check_alpha, test=test, targets=tuple(targets))


def least_learnt_class(log, targets, keep=None) -> int:
    """The class of a code whose trigger the owner's proxy models learnt least: the most proxies (of every attempt in
    the selection ``log``, :func:`self_check`'s rows with ``p_<class>`` and ``check_alpha``) on which its own
    p-value missed the check level, ties broken by the larger median p-value, then by the later place in the code.
    ``keep`` (a class the owner fixed, e.g. a chosen target) is never named. Only the owner's proxies are read."""
    targets = [int(t) for t in targets]
    cand = [t for t in targets if keep is None or t != int(keep)]
    missing = [f"p_{t}" for t in cand if f"p_{t}" not in log.columns]
    if not cand or missing or "check_alpha" not in log.columns or len(log) == 0:
        raise ValueError(f"log must hold self_check rows with check_alpha and p_<class> for each class of {targets} "
                         f"other than keep={keep}; missing {missing or 'rows or check_alpha'}")

    def score(t):
        p = log[f"p_{t}"].astype(float)
        return int((p >= log["check_alpha"].astype(float)).sum()), float(p.median()), targets.index(t)

    return max(cand, key=score)


def check_code_draws(code_draws, select_attempts: int, n_targets: int) -> int:
    """Validate ``code_draws`` (codes an owner may try, 1 = the key's first only): a count, and more than one needs
    the owner's check (``select_attempts`` >= 2) and a code (``n_targets`` >= 2)."""
    code_draws = check_int("code_draws", code_draws, 1)
    if code_draws > 1 and (select_attempts < 2 or n_targets < 2):
        raise ValueError(f"code_draws > 1 redraws a target code that failed the owner's check, so it needs n_targets "
                         f">= 2 and select_attempts >= 2; got code_draws={code_draws}, n_targets={n_targets}, "
                         f"select_attempts={select_attempts}")
    return code_draws


def select_code_draws(ds, profile: Profile, *, key: int, n_targets: int, first=None, pool=None, draws: int = 1,
                      rate=0.1, seed: int = 0, train_suspect: bool = True, progress: bool = True, **kw):
    """Owner-side choice of the code itself (ours, not the paper's): draw ``n_targets`` classes from ``key``
    (:func:`key_targets` with ``first`` and ``pool``), select its generators with :func:`select_code_run`
    (``kw``: attempts, n_proxies, m, tau, alpha, check_alpha, test, redraw_surrogate and :func:`run_code`'s arch, eps,
    perceptual, surrogate, ...) and, when no attempt passes, drop the class the proxies learnt least
    (:func:`least_learnt_class`; never ``first``) and draw again from the classes left, up to ``draws`` codes.
    Without it a pair the owner's check rejects can only be escaped by a new key, which may draw the same pair
    (docs/owner-specificity.md, design 5). Each code's gamma is :func:`code_rate` (``rate``, capped at its smallest
    class's share). The first code that passes is published; if none does, the one with the smallest largest
    proxy p-value is kept with ``passed`` False; the draws stop early when too few classes remain for another code.

    The key and the record decide the code: ``selection`` adds ``draw`` (counted from 0), ``draws_tried``,
    ``draws_allowed``, ``codes_tried`` and ``excluded`` (the classes dropped, in order), so the owner can redo it.
    Returns (run, log) as :func:`select_code_run`, the log with ``draw`` and ``targets`` columns first."""
    import pandas as pd

    draws = check_int("draws (code_draws)", draws, 1)
    if check_bool("train_suspect", train_suspect):  # the suspect trained below must not be one of the proxies
        check_proxy_seeds(check_int("seed", seed, 0), 1, check_int("n_proxies", kw.get("n_proxies", 1), 1))
    classes = list(range(ds.num_classes)) if pool is None else [int(c) for c in pool]
    excluded, logs, codes, best = [], [], [], None
    for d in range(draws):
        left = [c for c in classes if c not in excluded]
        if d and len([c for c in left if first is None or c != int(first)]) < n_targets - (first is not None):
            break  # too few classes left for another code: keep the best so far (said in the record)
        code = key_targets(key, ds.num_classes, n_targets, first=first, pool=left)
        run, log = select_code_run(ds, profile, targets=code, key=key, rate=code_rate(ds.y_train, rate, code),
                                   seed=seed, train_suspect=False, progress=progress, **kw)
        log.insert(0, "draw", d)
        log.insert(1, "targets", " ".join(map(str, code)))
        logs.append(log)
        codes.append(list(code))
        sel = run.params["selection"]
        score = (sel["proxy_p_max"], sel["other_test_p_max"])  # as select_code_run keeps an attempt
        if best is None or score < best[0]:
            best = (score, d, run)
        if run.params["selection"]["passed"]:
            break
        if d + 1 < draws:
            excluded.append(least_learnt_class(log, code, keep=first))
    _, d, run = best
    run.params["selection"].update(draw=d, draws_tried=len(logs), draws_allowed=draws, codes_tried=codes,
                                   excluded=excluded)
    if train_suspect:
        _train_suspect(run, profile, seed, progress)
    return run, pd.concat(logs, ignore_index=True)


def run_code_controls(run: SSCLCodeRun, n_models: int | None = None, m: int | None = None, tau=0.25, alpha=0.01,
                      same_code: bool = False, select_attempts: int = 1, n_proxies: int = 1,
                      redraw_surrogate: bool = False, progress: bool = True, check_alpha=None, pool=None,
                      code_draws: int = 1, check_test: str = "ttest"):
    """Table II for a target code, ``n_models`` models per scenario, all tested with :func:`verify_code`:
    Malicious (our marked set), Ind-M (clean set), Ind-W plain (an independent owner's plain SSCL-BW towards our
    first class: the scenario that fools the single-target test) and Ind-W code (an independent owner's code of
    the same size sharing our first class, the rest drawn from their key; ``collision`` says when it holds all of
    our classes; a class smaller than gamma of the set is marked whole, ``other_rate``). With ``same_code`` also
    Ind-W same code: the same independent owner marking exactly our classes (a full collision). One row per model
    with per-class p-values and WSRs; the code rows of other owners also hold ``own_p_value`` / ``own_verified``,
    their own code's test on their own model (whether that owner could have verified their data at all). Beside each
    paper's t-test column the betting test's (:func:`verify_code` with ``test="bounded"``, the same queries, valid
    at every bounded null): ``bounded_p_value`` / ``bounded_verified`` (the intersection-union of the per-class
    ``bounded_p_<class>``) and, on the other owners' rows, ``bounded_own_p_value`` / ``bounded_own_verified``.
    ``select_attempts`` > 1: every other code owner selects their generators as careful owners would
    (:func:`select_code_run` with ``n_proxies``; ``other_attempt``, ``other_self_check`` columns), the fair
    comparison when our run was selected too (the plain Ind-W owner does not select: the paper's owner; for model i
    it is the same owner, key and seed, as the code row's, so unselected both share the generator of our first
    class); ``redraw_surrogate`` as in :func:`run_controls` (for the code
    owners; the plain Ind-W owner keeps our surrogate, the paper's setting); ``check_alpha`` and ``check_test`` as in
    :func:`run_controls`. ``pool``: the classes every code owner draws its key classes from, as ours were
    (:func:`key_targets`' ``pool``, e.g. :func:`hard_classes` on the surrogate the other owners share with us);
    refused with ``redraw_surrogate``, where each owner would rank its own surrogate. ``code_draws`` > 1: each Ind-W
    code owner may redraw its code as :func:`select_code_draws` does (keeping our first class, which it shares by
    construction; ``other_draw`` column, ``other_targets`` its final code), as ours may."""
    import pandas as pd

    from .train import evaluate
    from .verify import _check_tau_alpha, attack_success

    ds, prof, p = run.ds, run.profile, run.params
    _check_tau_alpha(tau, alpha)
    check_bool("same_code", same_code)
    n_models = check_int("n_models", n_models if n_models is not None else prof.n_models, 1)
    select_attempts = check_int("select_attempts", select_attempts, 1)
    check_redraw(redraw_surrogate, select_attempts)
    check_selection_options(select_attempts, check_int("n_proxies", n_proxies, 1), check_alpha, alpha, check_test)
    check_level(check_alpha, alpha)
    code_draws = check_code_draws(code_draws, select_attempts, len(run.targets))
    _check_control_seeds(run, n_models, check_int("n_proxies", n_proxies, 1), select_attempts)
    if pool is not None and redraw_surrogate:
        raise ValueError("pool (the classes code owners draw from) needs redraw_surrogate=False: the other owners "
                         "share our surrogate and so its ranking; with their own surrogates they would rank their own")
    # m stays None for the profile's verify_m, capped per class by verify_code (query_count)
    _warn_if_queries_meet_the_check(run, {t: query_count(ds, t, m, prof.verify_m) for t in run.targets},
                                    EVAL_VERIFY_SEED)
    kw = dict(arch=p["arch"], profile=prof, num_classes=ds.num_classes, progress=progress)
    rows = []

    def add(scenario, res, seed, extra=None):
        both = verify_code_tests(res.model, run, m, tau, alpha)  # one set of answers, the betting test beside
        (v, per), (b, bounded) = both["ttest"], both["bounded"]
        row = {"scenario": scenario, "model_seed": seed, "BA": evaluate(res.model, ds.x_test, ds.y_test),
               "p_value": v.p_value, "verified": v.verified, "delta_p_min": v.delta_p, **(extra or {})}
        for t, r in zip(run.targets, per):
            row[f"WSR_{t}"] = attack_success(res.model, ds.x_test, ds.y_test, run.generators[t].mark, t)
            row[f"p_{t}"] = r.p_value
        row.update(bounded_p_value=b.p_value, bounded_verified=b.verified)
        row.update({f"bounded_p_{t}": r.p_value for t, r in zip(run.targets, bounded)})
        rows.append(row)

    first = run.targets[0]
    for i in range(n_models):
        s, mal, benign = _malicious_and_benign(run, i, kw)
        add("Malicious", mal, s)
        add("Ind-M", benign, s)
        other_key = independent_key(int(p["key_hash"], 16), i)
        plain = run_sscl(ds, prof, arch=p["arch"], eps=p["eps"], rate=p["rate"], target=first, key=other_key,
                         seed=s + 1000, perceptual=p["perceptual"], train_suspect=False,
                         surrogate=None if redraw_surrogate else run.surrogate,  # its own, as the code owners'
                         surrogate_width=p.get("surrogate_width"), progress=progress)
        add("Ind-W plain", train_classifier(plain.marked.x, plain.marked.y, ds.x_test, ds.y_test, seed=s, **kw), s)
        codes = [("Ind-W code", key_targets(other_key, ds.num_classes, len(run.targets), first=first, pool=pool))]
        if same_code:
            codes.append(("Ind-W same code", run.targets))
        for scenario, code in codes:
            okw = dict(arch=p["arch"], eps=p["eps"], key=other_key, seed=s + 1000, perceptual=p["perceptual"],
                       train_suspect=False, surrogate=None if redraw_surrogate else run.surrogate,
                       surrogate_width=p.get("surrogate_width"), progress=progress)
            sel_kw = dict(attempts=select_attempts, n_proxies=n_proxies, m=m, tau=tau, alpha=alpha,
                          redraw_surrogate=redraw_surrogate, check_alpha=check_alpha, test=check_test)
            extra = {}
            if code_draws > 1 and scenario == "Ind-W code":  # the same code stays ours: a full collision
                other, _ = select_code_draws(ds, prof, n_targets=len(run.targets), first=first, pool=pool,
                                             draws=code_draws, rate=p["rate"], **sel_kw, **okw)
                code = tuple(other.targets)
                extra = {**_other_selection(other, redraw_surrogate), "other_draw": other.params["selection"]["draw"]}
            elif select_attempts > 1:
                other, _ = select_code_run(ds, prof, targets=code, rate=code_rate(ds.y_train, p["rate"], code),
                                           **sel_kw, **okw)
                extra = _other_selection(other, redraw_surrogate)
            else:
                other = run_code(ds, prof, targets=code, rate=code_rate(ds.y_train, p["rate"], code), **okw)
            other_rate = other.params["rate"]
            res = train_classifier(other.marked.x, other.marked.y, ds.x_test, ds.y_test, seed=s, **kw)
            own_tests = verify_code_tests(res.model, other, m, tau, alpha)
            own, own_b = own_tests["ttest"][0], own_tests["bounded"][0]
            add(scenario, res, s, {"other_targets": list(code), "other_rate": other_rate,
                                   "collision": set(run.targets) <= set(code), "own_p_value": own.p_value,
                                   "own_verified": own.verified, **extra, "bounded_own_p_value": own_b.p_value,
                                   "bounded_own_verified": own_b.verified})
    return pd.DataFrame(rows)
