"""The one trainer every notebook uses (user models, surrogates, fine-tuning).

The speed recipe, in one place (after airbench / hlb-CIFAR10):

* the whole training set stays on the device as uint8 (N, C, H, W); batches are converted to float there;
* augmentation (random crop with padding, horizontal flip) is done on the device for the whole batch at once;
* on CUDA: bf16 autocast, channels_last memory format, fused SGD, optional ``torch.compile``;
* on CPU: fp32 by default, seeded and deterministic on one machine (same seed and thread count, same numbers, busy or
  idle); other kernels (another CPU model: AVX2 instead of AVX-512) or another thread count round differently, and
  the difference grows over training (a width-16 ResNet-18 over 15 epochs: test accuracy 0.510 to 0.571; measured by
  benchmarks/cpu_determinism.py, recorded by ``dovlib.report.env_info``); ``cpu_bf16=True`` (a profile's
  ``precision="bf16"``) trains under bf16 autocast there too, 1.8x the fp32 throughput on the build machine's CPU with
  native bf16 (AVX512-BF16; measured in docs/measured-sscl-cpu.md), still deterministic.

A checkpoint is written (atomically) after the last epoch and after any epoch that ends a minute or more after the
previous save; calling :func:`fit` again with the same checkpoint path resumes where the last run stopped, and
returns at once if it had finished. (Saving a width-64 ResNet-18 with its optimiser, 85 MiB, took 148-663 ms
with its fsync on the build machine, median 151 ms; an epoch of the CIFAR-10 subset takes about 130 ms at the
38,438 images/s measured on an H100 with cuDNN autotuning.)
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["TrainConfig", "TrainResult", "data_hash", "model_hash", "fit", "evaluate", "predict_proba",
           "predict_logits", "augment_batch", "resolve_device", "seed_everything", "to_float", "precision_options",
           "training_provenance", "reset_training_provenance", "note_training", "noted_provenance", "training_device",
           "joined_names", "restore_generator", "Checkpointer", "merges_last_batch", "train_steps", "load_state",
           "compute_ledger", "compute_ledger_mark", "reset_compute_ledger", "charging", "charge", "charge_result"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA if available, else CPU; otherwise ``torch.device(device)``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but CUDA is not available; use device='auto' or 'cpu'")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and torch's global RNGs; return a torch.Generator seeded the same."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]; float images pass through."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same device when 0 is the current one (a Generator reports ``cuda``)."""
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        if a.type != "cuda" or not torch.cuda.is_available():
            return True
    current = torch.cuda.current_device() if a.type == "cuda" and torch.cuda.is_available() else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def augment_batch(x: torch.Tensor, crop_padding: int = 4, flip: bool = True,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, for a whole batch at once, on x's device.
    Works on uint8 or float images (N, C, H, W)."""
    n, c, h, w = x.shape
    dev = x.device
    if generator is not None and not _same_device(generator.device, dev):
        raise ValueError(f"generator must live on the images' device ({dev}); got {generator.device}")
    from .params import check_int

    if check_int("crop_padding", crop_padding, 0) > 0:
        p = int(crop_padding)
        padded = F.pad(x, (p, p, p, p))
        di = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=dev)
        dj = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=dev)
        rows = (di[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        cols = (dj[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        x = padded[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                   rows, cols]
    if flip:
        mask = (torch.rand(n, generator=generator, device=dev) < 0.5)[:, None, None, None]
        x = torch.where(mask, x.flip(-1), x)
    return x


@dataclass
class TrainConfig:
    """Training settings. ``schedule``: "onecycle" (linear warm-up then anneal), "cosine" or "constant"."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    crop_padding: int = 4
    flip: bool = True
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA (on the CPU only with cpu_bf16)
    cpu_bf16: bool = False  # bf16 autocast for training on the CPU too (evaluation stays fp32); see precision_options
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile on CUDA
    seed: int = 0
    eval_batch_size: int = 1024
    progress: bool = True

    def __post_init__(self):
        from .params import check_bool, check_int, parse_fraction

        # integer fields are stored as ints (an int given stays as it was, so fingerprints do not move)
        for name, low in (("epochs", 0), ("batch_size", 1), ("crop_padding", 0), ("eval_batch_size", 1),
                          ("seed", 0)):
            setattr(self, name, check_int(name, getattr(self, name), low))
        for name in ("flip", "amp", "cpu_bf16", "channels_last", "compile", "progress"):  # "false" is truthy
            check_bool(name, getattr(self, name))
        # real fields are checked only: a valid number is kept as given (an int 0 must not become 0.0 in the
        # fingerprint); a string such as "1e-3" is stored as the float it reads as
        for name, low, high, low_inclusive in (("lr", 0.0, math.inf, False), ("weight_decay", 0.0, math.inf, True),
                                               ("momentum", 0.0, 1.0, True), ("label_smoothing", 0.0, 1.0, True)):
            value = getattr(self, name)
            parsed = parse_fraction(name, value, low, high, low_inclusive=low_inclusive, high_inclusive=False)
            if type(value) not in (int, float):  # a string, or a NumPy scalar the fingerprint's JSON cannot hold
                setattr(self, name, parsed)
        if self.schedule not in ("onecycle", "cosine", "constant"):
            raise ValueError(f"schedule must be one of ['onecycle', 'cosine', 'constant']; got {self.schedule!r}")

    @classmethod
    def for_profile(cls, profile, **fields) -> "TrainConfig":
        """A :class:`dovlib.params.Profile`'s budget (epochs, batch size, lr, device, precision) with ``fields``
        replacing any of them."""
        base = {"epochs": profile.epochs, "batch_size": profile.batch_size, "lr": profile.lr,
                "device": str(resolve_device(profile.device)), **precision_options(profile.precision)}
        return cls(**{**base, **fields})

    def fingerprint(self) -> str:
        keep = {k: v for k, v in asdict(self).items() if k not in ("progress", "eval_batch_size", "device")}
        if not self.cpu_bf16:  # keyed only when on, so models cached before it existed keep their keys
            keep.pop("cpu_bf16")
        return hashlib.sha1(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:12]


def data_hash(*tensors) -> str:
    """Short SHA-1 of tensors' bytes (identifies a training set in cache keys and manifests, and ties a checkpoint
    to its data or starting weights)."""
    h = hashlib.sha1()
    for t in tensors:
        t = torch.as_tensor(t).detach().cpu()
        t = t.float() if t.dtype == torch.bfloat16 else t  # numpy has no bf16 (its bytes as float32)
        h.update(np.ascontiguousarray(t.numpy()).tobytes())
    return h.hexdigest()[:16]


def model_hash(model: nn.Module) -> str:
    """Short SHA-1 of a model's parameters and buffers (identifies a surrogate in cache keys and crafting caches)."""
    return data_hash(*[v.detach().float() for _, v in sorted(model.state_dict().items()) if v.is_floating_point()])


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    wall_time: float = 0.0  # seconds spent training in this and earlier (resumed) runs
    # seconds fit spent on the model in this and earlier runs: training, per-epoch evaluation and callbacks; read back
    # finished from a checkpoint, what it cost then (checkpoints of older code: their wall_time), not the reading
    compute_time: float = 0.0
    checkpoint: str = ""  # the absolute path fit read and wrote it at ("" without one): its compute_ledger name
    device: str = "cpu"  # where this call put the model (and evaluated it)
    images_seen: int = 0
    resumed_from_epoch: int = 0
    trained_on: str = ""  # the device type(s) its epochs ran on, e.g. "cuda" for a model read back on the CPU
    # the device(s) by name (dovlib.report.device_name), "A + B" when resumed elsewhere, "unknown" (old checkpoint):
    # CPUs with other kernels (AVX2, AVX-512) or thread counts train the same seed to other weights
    trained_by: str = ""
    precision: str = ""  # what they ran in: "bf16", "fp32", "mixed" (resumed in another), "unknown" (old checkpoint)

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.wall_time if self.wall_time > 0 else float("nan")

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


# (device type, precision, device name) of every model :func:`fit` returned, and every generator and HiDDeN network the
# caches gave, in this process since the last reset (:func:`note_training`): a model read back from a checkpoint may
# have been trained elsewhere, and a record should say so (dovlib.report.write_record)
_PROVENANCE: set[tuple[str, str, str]] = set()


def training_provenance() -> dict:
    """How the models :func:`fit` returned (trained or read back from a checkpoint) since
    :func:`reset_training_provenance` were trained, with the SSCL-BW generators and HiDDeN networks trained or loaded
    (:func:`note_training`), all of them together (a notebook writing several records, as 04-06 do, names in each the
    models of the whole notebook so far): ``{"trained_on": "cpu" | "cuda" | "cpu+cuda", ..., "training_precision":
    "bf16" | "fp32" | "bf16+fp32" | "mixed" ..., "trained_by": "CPU (AMD EPYC, 2 cores, AVX512 kernels) +
    NVIDIA H100 80GB HBM3"}`` (device names, :func:`dovlib.report.device_name`; "unknown" for files of older code), or
    ``{}`` when there were none. A notebook's records carry it (:func:`dovlib.report.start_notebook` resets it), so a
    CPU run that read back a model trained in bf16 on a GPU, or on a CPU with other kernels, does not claim it."""
    if not _PROVENANCE:
        return {}
    devices = sorted({d for entry, _, _ in _PROVENANCE for d in entry.split("+")})
    return {"trained_on": "+".join(devices), "training_precision": "+".join(sorted({p for _, p, _ in _PROVENANCE})),
            "trained_by": joined_names(*(name for _, _, name in _PROVENANCE))}


def note_training(trained_on: str, precision: str, trained_by: str) -> None:
    """Count a model returned in this process (trained, or read back with what its file says) in
    :func:`training_provenance`: device type(s) ("cpu", "cuda", "cpu+cuda"), precision and device name(s)."""
    for what, value in (("trained_on", trained_on), ("precision", precision), ("trained_by", trained_by)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"note_training: {what} must be a non-empty string; got {value!r}")
    _PROVENANCE.add((trained_on, precision, trained_by))


def noted_provenance(recorded: dict, precision: str) -> dict:
    """``{"trained_on", "trained_by", "training_precision"}`` as a model's file (or its training run) ``recorded``
    them, "unknown" where it does not say (files of older code) and ``precision`` where it names none; counted in
    :func:`training_provenance` (:func:`note_training`). The generator's and HiDDeN's training and loading use it."""
    out = {"trained_on": recorded.get("trained_on") or "unknown", "trained_by": recorded.get("trained_by") or "unknown",
           "training_precision": recorded.get("training_precision") or precision}
    note_training(out["trained_on"], out["training_precision"], out["trained_by"])
    return out


def training_device(device, saved: dict | None = None) -> tuple[str, str]:
    """(device type(s), device name(s)) to record for a model trained on ``device``: ``("cpu", "CPU (AMD EPYC, 2
    cores, AVX512 kernels)")``; resuming a run whose checkpoint holds ``saved`` (its ``device_type`` and
    ``device_name``, "unknown" where a file of older code has none), both runs' joined: ``("cpu+cuda", "CPU (...) +
    NVIDIA H100 80GB HBM3")``. :func:`fit`, the generator's and HiDDeN's training record it."""
    from .report import device_name

    on, by = torch.device(device).type, device_name(device)
    if saved is None:
        return on, by
    was_on, was_by = saved.get("device_type") or "unknown", saved.get("device_name") or "unknown"
    return "+".join(sorted({*was_on.split("+"), on})), joined_names(was_by, by)


def joined_names(*names: str) -> str:
    """Device names as one string, each once, sorted: ``"A + B"`` (names already joined are split first)."""
    return " + ".join(sorted({part for name in names for part in name.split(" + ") if part}))


def reset_training_provenance() -> None:
    """Forget the models :func:`training_provenance` reports (a notebook's set-up calls it)."""
    _PROVENANCE.clear()


# What each cached or trained artefact (a fit checkpoint, a generator, a HiDDeN network) cost, as the code that obtained
# it in this process says: one entry per time it was obtained, numbered in order, so a timed cell
# (:func:`dovlib.report.timer`) can count what it used: its stored cost in place of the seconds spent reading it back
_LEDGER: list[dict] = []
_LEDGER_SEQ = [0]  # the next entry's number (never reset: a timer's mark stays valid across a reset)
_CHARGING: list[list] = []  # open scopes of :func:`charging` (the outermost one records)


def compute_ledger_mark() -> int:
    """The number the next :func:`compute_ledger` entry gets: ``compute_ledger(since=mark)`` lists what came after."""
    return _LEDGER_SEQ[0]


def compute_ledger(since: int = 0) -> list[dict]:
    """The artefacts obtained in this process (since :func:`reset_compute_ledger`, and from entry ``since`` on): one
    dict per time one was trained, resumed or read back, ``{"seq", "artifact", "cost", "spent", "reused"}``:
    ``artifact`` names it (its file's absolute path), ``cost`` is the seconds computing it took in this and earlier
    runs as stored with it (None: not stored, e.g. a file of older code), ``spent`` the seconds this call took (the
    training, or the reading back, waits for another job's lock included), ``reused`` whether it was read back
    finished rather than trained (or resumed) here. :func:`dovlib.report.run_times` turns them into a record's
    ``compute_time``."""
    return [dict(e) for e in _LEDGER if e["seq"] >= since]


def reset_compute_ledger() -> None:
    """Forget the entries :func:`compute_ledger` lists (:func:`dovlib.report.start_notebook` calls it)."""
    _LEDGER.clear()


@contextlib.contextmanager
def charging(started: float | None = None):
    """A scope whose time (from ``started``, a :func:`time.perf_counter` reading, default now) counts as obtaining
    the artefacts :func:`charge` names inside it (one ledger entry each; the scope's seconds go to the first): around
    a cache's lock and its load-or-train, so that waiting for another job is not counted as this cell's own work
    either. Scopes nest: only the outermost records, so an artefact read back inside another's training is not
    subtracted twice."""
    slot: list = []
    _CHARGING.append(slot)
    start = time.perf_counter() if started is None else started
    try:
        yield slot
    finally:
        _CHARGING.pop()
        if _CHARGING:  # an enclosing scope records them, with its own time
            _CHARGING[-1].extend(slot)
        else:
            spent = time.perf_counter() - start
            for i, (artifact, cost, reused) in enumerate(slot):
                _LEDGER.append({"seq": _LEDGER_SEQ[0], "artifact": artifact, "cost": cost,
                                "spent": spent if i == 0 else 0.0, "reused": reused})
                _LEDGER_SEQ[0] += 1


def charge_result(result: TrainResult) -> None:
    """Count a model :func:`fit` returned earlier (a surrogate handed from one step to the next) as used here: its
    ``compute_time`` enters the ledger with no seconds spent, so a timed cell that uses it without reading it back
    counts what it cost. A model fit trained without a checkpoint is part of the time of the cell that trained it."""
    if result.checkpoint:
        charge(result.checkpoint, result.compute_time, True)


def charge(artifact, cost, reused: bool, started: float | None = None) -> None:
    """Name an artefact obtained in the current :func:`charging` scope: ``cost`` the seconds computing it took (None:
    unknown), ``reused`` whether it was read back finished. Outside any scope it is recorded at once, as having
    taken the seconds since ``started`` (a :func:`time.perf_counter` reading; None: no time)."""
    cost = None if cost is None else float(cost)
    entry = (str(Path(artifact).resolve()) if isinstance(artifact, (str, Path)) else str(artifact), cost,
             bool(reused))
    if _CHARGING:
        _CHARGING[-1].append(entry)
        return
    _LEDGER.append({"seq": _LEDGER_SEQ[0], "artifact": entry[0], "cost": cost, "reused": entry[2],
                    "spent": time.perf_counter() - started if started is not None else 0.0})
    _LEDGER_SEQ[0] += 1


def restore_generator(gen: torch.Generator, saved, *, reseed: int, what: str, path) -> bool:
    """Set ``gen`` to a checkpoint's saved generator state; return whether it was.

    A generator on the device (augmentation, noise) saves a state that only its kind of device reads back: a CPU
    generator's is its Mersenne Twister state (5,056 bytes), a CUDA one's its Philox seed and offset (16 bytes).
    A run resumed on another kind of device cannot continue that stream: ``gen`` is seeded with ``reseed`` instead
    and a warning says that the rest of the run draws other random numbers than an uninterrupted run would."""
    saved = torch.as_tensor(saved).cpu()
    if saved.numel() == gen.get_state().numel():
        try:
            gen.set_state(saved)
            return True
        except RuntimeError:  # same size, other layout: reseeded as below
            pass
    gen.manual_seed(reseed)
    warnings.warn(f"checkpoint {path} holds the {what} random generator's state, which this {gen.device.type} "
                  f"generator cannot load (saved on another kind of device); that stream cannot continue here, so it "
                  f"is reseeded ({reseed}) and the rest of the run draws other {what} random numbers than an "
                  f"uninterrupted run", stacklevel=3)
    return False


def _checkpoint_provenance(state: dict) -> tuple[str, str]:
    """(device type(s), precision) a checkpoint's epochs ran on. Checkpoints written before these were recorded:
    the device from the saved config (resolved by :meth:`TrainConfig.for_profile`), the precision from it and the
    amp settings; "unknown" where the config cannot tell."""
    config = state.get("config") or {}
    device = state.get("device_type")
    if device is None:
        try:
            device = torch.device(config.get("device", "")).type
        except (RuntimeError, TypeError):  # "auto" or missing: unresolved when it was saved
            device = "unknown"
    precision = state.get("precision")
    if precision is None:
        precision = ("unknown" if device == "unknown" or "amp" not in config else
                     "bf16" if _bf16_on(device, config["amp"], config.get("cpu_bf16", False)) else "fp32")
    return device, precision


def precision_options(precision: str = "auto") -> dict:
    """:class:`TrainConfig` fields for a profile's ``precision`` (:data:`dovlib.params.PRECISIONS`): "auto" -> bf16
    autocast on CUDA only (the default), "bf16" -> also on the CPU, "fp32" -> none."""
    from .params import PRECISIONS, check_choice

    check_choice("precision", precision, PRECISIONS)
    return {"amp": precision != "fp32", "cpu_bf16": precision == "bf16"}


def _bf16_on(kind: str, amp: bool, cpu_bf16: bool = False) -> bool:
    """The one precision rule (of :func:`fit`, :func:`predict_logits` when asked and :func:`uses_bf16`): bf16 on CUDA
    when ``amp``, on the CPU only when ``cpu_bf16`` too, never on other devices."""
    return bool(amp) and (kind == "cuda" or (kind == "cpu" and bool(cpu_bf16)))


def uses_bf16(precision: str, device) -> bool:
    """Whether a profile's ``precision`` trains under bf16 autocast on ``device``: "auto" on CUDA only, "bf16" on
    any device, "fp32" never (the rule of :func:`precision_options` and :func:`fit`, for other training loops)."""
    return _bf16_on(torch.device(device).type, **precision_options(precision))


def _autocast(device: torch.device, amp: bool, cpu_bf16: bool = False):
    if _bf16_on(device.type, amp, cpu_bf16):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)  # also off inside a caller's autocast on that device


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, device=None,
                   amp: bool = False) -> torch.Tensor:
    """Logits (float32, on CPU) for uint8 or [0,1] float images, in eval mode, batched. Computed in fp32 whatever the
    profile's training precision, so BA, WSR and the verification probabilities do not depend on it; ``amp=True``
    runs under bf16 autocast on CUDA (faster for very large query sets; the numbers then move in the third digit)."""
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, max(len(x), 1), batch_size):  # zero images: one empty batch, so the shape is (0, classes)
        xb = to_float(x[i:i + batch_size].to(dev, non_blocking=True))
        if dev.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        with _autocast(dev, amp):
            outs.append(model(xb).float().cpu())
    model.train(was_training)
    return torch.cat(outs)


def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, device=None) -> torch.Tensor:
    """Softmax probabilities (float32, CPU), the black-box output a suspect model's API returns."""
    return predict_logits(model, x, batch_size, device).softmax(dim=1)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024, device=None) -> float:
    """Top-1 accuracy in [0, 1]."""
    if len(x) == 0:
        raise ValueError("evaluate() needs at least one image")
    y = torch.as_tensor(y).cpu()
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"evaluate() needs one label per image: x has {len(x)} images but y has "
                         f"{len(y) if y.ndim else 1} labels (shape {tuple(y.shape)})")
    pred = predict_logits(model, x, batch_size, device).argmax(1)
    return (pred == y).float().mean().item()


class SaveTimer:
    """When a long loop's resumable state is due to be saved: at most once per ``every`` seconds, and always when
    ``final`` (0: every time). Shared by :func:`fit`, the SSCL-BW generator, HiDDeN and the crafting loops."""

    def __init__(self, every: float, name: str = "checkpoint_every"):
        if isinstance(every, bool) or not isinstance(every, (int, float, np.integer, np.floating)) \
                or math.isnan(every) or every < 0:  # a string or NaN used to fail (or never save) mid-run
            raise ValueError(f"{name} must be a number of seconds >= 0 (0: at every chance; inf: only at the end); "
                             f"got {every!r}")
        self.every, self.last = float(every), time.perf_counter()

    def due(self, final: bool = False) -> bool:
        if final or time.perf_counter() - self.last >= self.every:
            self.last = time.perf_counter()
            return True
        return False


def _snapshot(obj):
    """A copy of a loop's state that the loop's later steps cannot change: tensors detached and cloned where they
    live (a callback's tensor with autograd history included, which ``copy.deepcopy`` refuses), the rest deep-copied."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if type(obj) is dict:
        return {k: _snapshot(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_snapshot(v) for v in obj)
    return copy.deepcopy(obj)


class Checkpointer:
    """A long loop's checkpoint file. After each finished unit of work (an epoch, a logged step, a batch) the loop
    calls ``offer(state)`` (``state`` a function returning the resumable state): written when due (:class:`SaveTimer`:
    at most once per ``every`` seconds, always when ``final``), otherwise kept as a copy (tensors cloned where they
    live, far cheaper than a write; ``copied=True``: ``state()`` already returns objects the loop no longer changes,
    kept as they are). Used as a context manager around the loop, it writes that copy when the loop is interrupted
    (Ctrl-C, a kernel interrupt, an error, also one during a due write), so only the unit in progress is lost; not
    after a diverged loss (``FloatingPointError``, raised by :func:`fit`), whose last good state would diverge again.
    A copy that cannot be written then (disk full, say) is reported in a warning, and the loop's own exception goes
    on. Without a path it does nothing.

    SIGTERM (``kill``, ``proc.terminate()``, a batch scheduler's time limit) ends a Python process at once by default,
    without unwinding, so that copy would be lost: inside the ``with`` block, and only while SIGTERM has its default
    action in the main thread, it raises ``SystemExit(143)`` instead, and the previous action is put back on leaving
    the block. A handler the caller installed (``dovlib.reproduce.exit_on_sigterm``, a framework's) is left alone."""

    def __init__(self, path, every: float):
        self.path = Path(path) if path is not None else None
        self.timer, self.unsaved = SaveTimer(every), None
        self._old_sigterm = None

    def offer(self, state: Callable[[], dict], final: bool = False, copied: bool = False) -> None:
        if self.path is None:
            return
        if self.timer.due(final=final):
            current = state()
            try:
                _save_atomic(current, self.path)
            except BaseException:  # interrupted while writing: this unit is finished (and the loop stops here)
                self.unsaved = current
                raise
            self.unsaved = None
        else:  # the loop goes on changing the originals
            self.unsaved = state() if copied else _snapshot(state())

    def __enter__(self) -> Checkpointer:
        if (self.path is not None and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_exit)
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        unsaved, self.unsaved = self.unsaved, None
        if exc is not None and unsaved is not None and not isinstance(exc, FloatingPointError):
            try:
                _save_atomic(unsaved, self.path)
            except Exception as err:  # never hide why the loop stopped
                warnings.warn(f"could not write the interrupted run's last finished state to {self.path} ({err!r}); "
                              f"a rerun starts from the last checkpoint written before", stacklevel=2)
        return False


def _sigterm_exit(signum, frame):
    raise SystemExit(128 + signum)


def _save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then renamed over it: readers see the old file or the new
    one, never a partial one; the temporary name is unique (two jobs saving the same path do not share it) and is
    removed if saving fails."""
    import uuid

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a power cut leaves the old file, not an empty new one
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _numpy_scalars() -> list:
    """What a pickled NumPy number (``np.float64(0.5)``, ``np.bool_(True)``: a :func:`fit` callback's) needs to load
    with ``weights_only=True``: NumPy's scalar constructor (a value from a dtype and its bytes; it builds no array),
    ``np.dtype`` and the dtype classes of booleans, integers and floats (torch's documented allowance for NumPy
    scalars, limited to those kinds)."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
    kinds = ["BoolDType", *(f"{k}{b}DType" for k in ("Int", "UInt") for b in (8, 16, 32, 64)),
             "Float16DType", "Float32DType", "Float64DType"]
    scalar = core.multiarray.scalar  # by both its names: a file written under numpy 1 names numpy.core's
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype,
            *(getattr(dtypes, k) for k in kinds if hasattr(dtypes, k))]


_REASONS = ("Trying to load unsupported GLOBAL", "Unsupported global", "Unsupported operand", "Can only build")


def _is_advice(line: str) -> bool:
    """A line of torch's ``weights_only`` refusal that gives advice (load with ``weights_only=False``, read the
    documentation), not the reason."""
    return "weights_only" in line or line.startswith(("Weights only load failed", "Check the documentation"))


def unsafe_load_reason(err: Exception) -> str:
    """The line of torch's ``weights_only`` refusal that says what the file needed (e.g. "Unsupported global: GLOBAL
    io.open was not an allowed global by default", or "Trying to load unsupported GLOBAL posix.system whose module
    posix is blocked"), never its advice to load with ``weights_only=False``: the text after "WeightsUnpickler
    error:", else the first line that starts as torch's reasons do, else the first line that is not advice (the
    error's type where every line is)."""
    text = str(err)
    after = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    candidates = ([line.strip() for line in after.splitlines() if line.strip()][:1]  # may start a line below
                  + [line for line in lines if line.startswith(_REASONS)] + lines)
    reason = next((line for line in candidates if not _is_advice(line)), None)
    return printable(reason.split(". Please use")[0].rstrip(".")) if reason else type(err).__name__


def load_state(path, what: str, map_location="cpu", *, remedy: str = "delete it or pass another path",
               numpy_scalars: bool = False) -> dict:
    """One of dovlib's own state files (a checkpoint, a cache), read with ``torch.load(weights_only=True)``: tensors,
    dicts, lists, tuples, numbers, strings (and NumPy scalars with ``numpy_scalars``). A file that needs anything
    else, such as one placed at the path by someone else (runs/ may be shared, a cache folder copied), could run code
    when unpickled: it is refused with a ``ValueError`` naming ``path``, ``what`` it should be, and the ``remedy``,
    as is a file that does not hold a dict, and an empty, truncated or damaged one (torch raised a bare
    ``EOFError`` or ``RuntimeError`` for those, which callers that fall back on a ``ValueError`` did not catch)."""
    state = safe_torch_load(path, what, remedy, map_location, _numpy_scalars() if numpy_scalars else ())
    if not isinstance(state, dict):
        raise TorchFileError(path, what, f"holds a {type(state).__name__}, not a dict of dovlib's state", remedy)
    return state


# torch's RuntimeErrors for a tensor the file's pickle describes beyond its stored data (sizes larger than the storage,
# a storage of another length than its entry)
_REBUILD_FAULTS = ("does not match expected size", "storage that is not resizable")
# torch's weights_only refusals of a pickle's shape rather than of a global it needs: a persistent id that names no
# storage (torch.save writes only ("storage", ...) ids), an opcode applied to a value of the wrong type (APPEND,
# SETITEM(S), and BUILD, REDUCE, NEWOBJ: torch refuses a global where the pickle reads it, so these three only meet
# values the pickle built, such as a number). Such a file is damaged or was not written by torch.save; it holds no
# code to refuse.
_SHAPE_FAULTS = ("Only persistent_load of storage is allowed", "persistent_load id must be",
                 "unsupported persistent id", "Can only append to lists", "Can only SETITEM", "Can only build",
                 "Trying to call reduce for unrecognized function", "Can only create new object")
_WHOLE = "torch.save writes a zip archive: the file is truncated, damaged or not torch's"


class TorchFileError(ValueError):
    """A torch file refused by :func:`safe_torch_load`: the message names ``path``, ``what`` it should be, the
    ``problem`` and the ``remedy``. ``problem`` alone follows the file's name ("is damaged: ...", "does not load
    safely ...", "is not a whole torch file ...", "is empty ..."), in printable words, for a caller that words its own
    message (:mod:`dovlib.perceptual` describes a user-placed LPIPS weights file with it)."""

    def __init__(self, path, what: str, problem: str, remedy: str):
        super().__init__(f"{path} ({what}) {problem}; {remedy}")
        self.path, self.what, self.problem, self.remedy = path, what, problem, remedy

    def __reduce__(self):  # rebuilt from its parts: a sweep's worker process sends its error back pickled
        return type(self), (self.path, self.what, self.problem, self.remedy)


def safe_torch_load(path, what: str, remedy: str, map_location="cpu", allowed=()):
    """``torch.load(path, weights_only=True)`` (with the extra ``allowed`` globals), every failure of the file a
    :class:`TorchFileError` (a ``ValueError``) naming ``path``, ``what`` it should be, why and the ``remedy``: a file
    that would need other globals (it could run code when unpickled: :func:`unsafe_load_reason` says which), an empty
    one, one that is no zip archive, one with a damaged entry (:func:`check_torch_file`, :func:`damaged_torch_file`),
    and a whole archive whose data.pkl is garbage (:func:`pickle_damage`; torch's unpickler raised a bare KeyError,
    IndexError, struct.error or UnicodeDecodeError, or reported the garbage as an unsupported global) or describes
    tensors its data does not hold, or storages torch.save never writes (torch's refusal of a persistent id that names
    no storage is the file's damage, not a global it needs). A failure that is not the file's is raised as it is: one
    this process may not open (a PermissionError), a map_location it cannot use (the file loads on the CPU), a device
    this machine lacks.
    What every dovlib loader of its own files goes through (:func:`load_state`, ``HiDDeN.load``,
    ``SSCLGenerator.load``, :func:`dovlib.report.cached_tensors`), and the check of a user-placed LPIPS weights file
    (:mod:`dovlib.perceptual`)."""
    import pickle
    import struct

    check_torch_file(path, what, remedy)
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a garbled data.pkl makes torch's unpickler raise almost anything (KeyError, IndexError..)
        damage = pickle_damage(path)
        if damage:
            raise TorchFileError(path, what, f"is damaged: its data.pkl is no readable pickle ({damage})",
                                 remedy) from None
        if isinstance(e, pickle.UnpicklingError) and unsafe_load_reason(e).startswith(_SHAPE_FAULTS):
            raise TorchFileError(path, what, f"is damaged: its data.pkl does not rebuild torch's objects "
                                 f"(UnpicklingError: {unsafe_load_reason(e)})", remedy) from None
        if isinstance(e, pickle.UnpicklingError):
            raise TorchFileError(path, what, f"does not load safely (weights_only=True: tensors and plain settings "
                                 f"only): {unsafe_load_reason(e)}", remedy) from None
        if isinstance(e, (TypeError, ValueError, LookupError, AssertionError, AttributeError, struct.error)) or (
                isinstance(e, RuntimeError) and any(m in str(e) for m in _REBUILD_FAULTS)):
            if not (isinstance(map_location, str) and map_location == "cpu") and _loads_on_cpu(path, allowed):
                raise  # the file is whole: the caller's map_location failed (a callable's bug, a list, ...)
            # a well-formed pickle whose values do not fit what they rebuild (a tensor's sizes, a storage's length)
            raise TorchFileError(path, what, f"is damaged: its data.pkl does not rebuild torch's objects "
                                 f"({printable(f'{type(e).__name__}: {e}'.splitlines()[0])})", remedy) from None
        if isinstance(e, (RuntimeError, EOFError)):  # a zip archive with a damaged or missing entry
            raise damaged_torch_file(e, path, what, remedy) from None
        raise


def _loads_on_cpu(path, allowed=()) -> bool:
    """Whether the file at ``path`` loads with ``map_location="cpu"``: where another map_location failed, the fault is
    that map_location's, not the file's."""
    try:
        with torch.serialization.safe_globals(list(allowed)):
            torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return True


def printable(text: str, limit: int = 300) -> str:
    """``text`` for a message: control characters, undecodable bytes (surrogates) and other unprintable characters
    escaped (``\\x1b``), at most ``limit`` characters (a garbled file's text can be long). A cut text ends with an
    ellipsis after its last whole escape, never inside one (a dangling ``\\x1`` reads as another byte). ``limit`` is at
    least 4, room for one character before that ellipsis: below it a cut text would keep nothing ("..." alone), and
    below 3 the ellipsis itself would run past the limit."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 4:
        raise ValueError(f"limit must be a whole number >= 4 (one character and the '...' of a cut text); "
                         f"got {limit!r}")
    pieces = [c if c.isprintable() else ascii(c)[1:-1] for c in text]
    if sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    kept, room = [], limit - 3
    for piece in pieces:
        if len(piece) > room:
            break
        kept.append(piece)
        room -= len(piece)
    return "".join(kept) + "..."


def pickle_damage(path) -> str | None:
    """Why the ``data.pkl`` of the torch zip archive at ``path`` is no readable pickle (printable, for a message), or
    ``None`` where it is one (or the archive has none: torch names that itself). Read without running it:
    ``pickletools.dis`` checks every opcode, its argument, the stack and the memo; a global must be a Python name
    (garbage can hold a "global" of control characters or non-UTF-8 bytes, which torch would report as a blocked
    global)."""
    import io
    import pickletools
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
            if not names:
                return None
            data = z.read(names[0])
    except Exception as e:  # e.g. a CRC mismatch: the entry's bytes changed after torch.save wrote it
        return printable(f"{type(e).__name__}: {e}")
    try:
        pickletools.dis(data, out=io.StringIO())
        for op, _, pos in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                module, name = (part.decode("ascii", "replace") for part in data[pos + 1:].split(b"\n", 2)[:2])
                if not all(p.isidentifier() for p in (*module.split("."), *name.split("."))):
                    return printable(f"a global at byte {pos} is no Python name: {module!r}, {name!r}")
            if op.name == "STOP":
                return None
    except Exception as e:
        return printable(f"{type(e).__name__}: {e}")
    return None


def check_torch_file(path, what: str, remedy: str) -> None:
    """A :class:`TorchFileError` naming ``path``, ``what`` it should be and the ``remedy`` when the file is empty or
    no zip archive (torch would read it as a legacy file and fail with a bare EOFError, KeyError or worse)."""
    import zipfile

    if Path(path).stat().st_size == 0:
        raise TorchFileError(path, what, "is empty (0 bytes), not a file torch.save finished", remedy)
    with open(path, "rb") as f:  # a file this process may not read raises here (is_zipfile answers False for it)
        whole = zipfile.is_zipfile(f)
    if not whole:
        raise TorchFileError(path, what, f"is not a whole torch file ({_WHOLE})", remedy)


def damaged_torch_file(e: BaseException, path, what: str, remedy: str) -> TorchFileError:
    """The :class:`TorchFileError` for torch.load's ``EOFError`` / ``RuntimeError`` on a zip archive with a damaged
    or missing entry; any other RuntimeError (not the file's fault, e.g. a map_location naming a device this machine
    lacks) is raised as it is."""
    if not isinstance(e, EOFError) and not any(m in str(e) for m in ("PytorchStreamReader", "inline_container")):
        raise e
    return TorchFileError(path, what, f"is not a whole torch file ({_WHOLE}: "
                          f"{printable(str(e).splitlines()[0]) if str(e) else type(e).__name__})", remedy)


def merges_last_batch(n: int, batch_size: int) -> bool:
    """Whether :func:`fit` adds a last batch of one image to the batch before it (``n % batch_size == 1``, ``n > 1``):
    alone it would train a full step on one image and move BatchNorm's running statistics towards it, or fail."""
    return n > 1 and n % batch_size == 1


def train_steps(n: int, batch_size: int, epochs: int = 1) -> int:
    """Optimiser steps :func:`fit` takes over ``n`` images in ``epochs`` epochs of ``batch_size``: ceil(n / batch_size)
    an epoch, one fewer where a last batch of one image joins the batch before it (:func:`merges_last_batch`)."""
    from .params import check_int

    n, epochs = check_int("n", n, 1), check_int("epochs", epochs, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    return epochs * (n // batch_size if merges_last_batch(n, batch_size) else math.ceil(n / batch_size))


def _one_image_batch(n: int, batch_size: int) -> ValueError:
    """A batch of one image left all the same: one training image, or ``batch_size`` 1."""
    if n < 2:
        return ValueError("x_train holds 1 image, which this model's BatchNorm cannot train on; fit() needs at least 2 "
                          "training images")
    return ValueError(f"batch_size must be at least 2 for this model (its BatchNorm cannot train on one image at a "
                      f"time); got {batch_size}")


def make_optimizer(model: nn.Module, cfg: TrainConfig, total_steps: int, device: torch.device | str = "cpu"):
    """The optimiser and per-step schedule of :func:`fit` (also used by ``benchmarks/`` so both loops train alike):
    SGD with Nesterov momentum, weight decay on weights but not on norm/bias parameters, and ``cfg.schedule``:
    "onecycle" (linear warm-up from lr/10 to lr over 20% of the steps, then linear decay to lr/1000), "cosine" or
    "constant". Call ``sched.step()`` after every optimiser step."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1; got {total_steps}")
    params_bn = [p for name, p in model.named_parameters() if p.ndim <= 1]
    params_w = [p for name, p in model.named_parameters() if p.ndim > 1]
    groups = [{"params": params_w, "weight_decay": cfg.weight_decay}, {"params": params_bn, "weight_decay": 0.0}]
    opt_kw = {"fused": True} if torch.device(device).type == "cuda" else {}
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, **opt_kw)
    warm = max(1, int(0.2 * total_steps))
    if cfg.schedule == "onecycle":
        factor = lambda s: float(np.interp(s, [0, warm, total_steps], [0.1, 1.0, 1e-3]))  # noqa: E731
    elif cfg.schedule == "cosine":
        factor = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))  # noqa: E731
    else:
        factor = lambda s: 1.0  # noqa: E731
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _history_value(key, value):
    """A :func:`fit` callback's ``value`` as its history (and checkpoint) keeps it: a NumPy boolean, integer, float
    or string (a 0-d array included) as the Python value (a checkpoint holding a 0-d array, an ``np.str_`` or an
    ``np.longdouble`` would not load with ``weights_only=True``: the next call refused fit's own file); Python numbers,
    strings, None and torch tensors as they are; anything else refused, naming ``key`` and the type."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]  # the 0-d array's scalar
    if isinstance(value, np.generic):  # before Python's types: np.float64 is a float, np.str_ a str
        convert = {"b": bool, "i": int, "u": int, "f": float, "U": str}.get(value.dtype.kind)
        if convert is not None:  # float() rather than .item(): an np.longdouble's .item() stays an np.longdouble
            return convert(value)
    elif value is None or type(value) in (bool, int, float, complex, str) or isinstance(value, torch.Tensor):
        return value
    raise TypeError(f"a fit callback returned {key!r}: {type(value).__name__}, which fit's checkpoint cannot hold; "
                    f"return Python numbers, strings, None or torch tensors (NumPy numbers are converted)")


def fit(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor | None = None,
        y_test: torch.Tensor | None = None, config: TrainConfig | None = None, *, checkpoint: str | Path | None = None,
        callbacks: list[Callable[[nn.Module, int], dict]] | None = None, checkpoint_every: float = 60.0,
        checkpoint_key: str | None = None, **overrides) -> TrainResult:
    """Train ``model`` with SGD (Nesterov) on uint8 images and return a :class:`TrainResult`.

    ``config`` (or keyword overrides of :class:`TrainConfig`) sets the budget. ``callbacks`` are called after every
    epoch as ``cb(model, epoch)`` and the dicts they return are merged into that epoch's history row (e.g. WSR
    during fine-tuning). With ``checkpoint``, the state is saved after the last epoch and after every epoch that
    ends ``checkpoint_every`` seconds or more after the previous save (0: every epoch); a later call resumes. Between
    saves the last finished epoch's state is kept as a copy on the device, and written when the run is interrupted
    (Ctrl-C, a kernel interrupt, any error but a diverged loss), so an interruption loses only the epoch in progress. A
    checkpoint written for other settings, other training data or another ``checkpoint_key`` (any string the caller
    ties the run to, e.g. the starting weights' :func:`data_hash`) is refused, never resumed. The history is saved
    with the checkpoint, so the callback columns of epochs read back from it (all of them for a finished one) are
    those of the run that wrote it, not of this call's ``callbacks``: tie the checkpoint to the callbacks with
    ``checkpoint_key`` (or key its path) when they may differ. Callbacks return Python numbers, strings, None or
    torch tensors: NumPy booleans, integers, floats and strings (0-d arrays too) enter the history as Python values,
    anything else is refused at the first epoch, naming its key. The checkpoint is read with ``weights_only=True``
    (:func:`load_state`: tensors, plain Python values and, as older checkpoints hold them, NumPy numbers): a file at
    the path that needs anything else to load, which could run code, is refused by name.
    """
    started = time.perf_counter()  # what the model costs (TrainResult.compute_time, dovlib.train.compute_ledger)
    cfg = config or TrainConfig()
    if overrides:
        cfg = TrainConfig(**{**asdict(cfg), **overrides})
    if len(x_train) != len(y_train) or len(x_train) == 0:
        raise ValueError("x_train and y_train must be non-empty and equally long; "
                         f"got {len(x_train)} and {len(y_train)}")
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if x is not None and getattr(x, "ndim", None) != 4:
            raise ValueError(f"{name} must be images (N, C, H, W) (grey images: x[:, None]); got shape "
                             f"{tuple(getattr(x, 'shape', ()))}")
    labels = torch.as_tensor(y_train)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool or labels.ndim != 1:
        raise ValueError(f"y_train must be integer class labels, one per image (shape (N,)); got dtype {labels.dtype} "
                         f"and shape {tuple(labels.shape)}")  # floats were truncated to classes without a word
    label_max = int(labels.max())
    if int(labels.min()) < 0:  # -100 was skipped by cross_entropy's ignore_index; other negatives crashed on CUDA
        raise ValueError(f"y_train must be class labels in [0, num_classes - 1]; got {int(labels.min())}")
    device = resolve_device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)  # shuffling (CPU: one permutation per epoch)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # augmentation, on the device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = model.to(device)
    if device.type == "cuda" and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)

    xs = x_train.to(device)
    ys = labels.long().to(device)
    n = len(xs)
    # a last batch of one image would train a full step on it alone and move BatchNorm's running statistics towards
    # it (or fail, over a 1x1 map): that image joins the batch before it
    steps_per_epoch = train_steps(n, cfg.batch_size)
    total_steps = max(1, cfg.epochs * steps_per_epoch)

    opt, sched = make_optimizer(model, cfg, total_steps, device)

    result = TrainResult(model=model, device=str(device))
    start_epoch, earlier = 0, 0.0
    ckpt_path = Path(checkpoint) if checkpoint else None
    # what a checkpoint must match besides the settings: the data, and ``checkpoint_key`` when given (finetune
    # passes its starting model's hash: a run resumed after that model changed would mix two runs' epochs).
    # Checkpoints written before the data hash was recorded lack it: resumed (the cache keys its data already), with a
    # warning that this run cannot confirm the data.
    origin = {"data_hash": data_hash(x_train, y_train)} if ckpt_path else {}
    here = "bf16" if _bf16_on(device.type, cfg.amp, cfg.cpu_bf16) else "fp32"  # what this run trains in
    precision = here  # recorded in checkpoints ("mixed" once a run resumes in another)
    # recorded too: a model read back elsewhere keeps saying where it was trained, by device type and by name (CPUs
    # with other kernels and threads round differently)
    trained_on, trained_by = training_device(device)
    if ckpt_path and checkpoint_key is not None:
        origin["checkpoint_key"] = str(checkpoint_key)
    if ckpt_path and merges_last_batch(len(x_train), cfg.batch_size):  # one step fewer per epoch than older code's
        origin["last_batch"] = "merged"
    if ckpt_path and ckpt_path.is_file():
        # weights_only: a foreign file at the path cannot run code (a callback's NumPy numbers still load)
        state = load_state(ckpt_path, "fit's checkpoint", device, numpy_scalars=True)
        if state.get("fingerprint") != cfg.fingerprint() or state.get("n_train") != n:
            raise ValueError(f"checkpoint {ckpt_path} was written with other training settings or data "
                             f"({state.get('fingerprint')} vs {cfg.fingerprint()}); delete it or pass another path")
        # e.g. an fp32 CPU run resumed on CUDA, where amp is bf16; a finished checkpoint only loads: no warning.
        # Checkpoints of older code hold no precision: inferred from their saved settings (_checkpoint_provenance)
        was_on, was_in = _checkpoint_provenance(state)
        was_by = state.get("device_name") or "unknown"  # checkpoints of older code name no device
        if was_in != precision and state["epoch"] < cfg.epochs:
            if was_in == "unknown":  # nothing to compare with: the model's precision cannot be named
                precision = "unknown"
            else:
                warnings.warn(f"checkpoint {ckpt_path} trained its {state['epoch']} epoch(s) in {was_in} "
                              f"precision; the rest run in {precision} on {device}: the model mixes precisions, unlike "
                              f"an uninterrupted run (resume on the same kind of device, or delete it to train in one)",
                              stacklevel=2)
                precision = "mixed"  # what later checkpoints of this run record
        if "data_hash" not in state:
            warnings.warn(f"checkpoint {ckpt_path} predates dovlib's data check (it holds no data hash): resumed, "
                          f"but this run cannot confirm it was trained on these {n} images; delete it to retrain",
                          stacklevel=2)
        stale = [k for k, v in origin.items() if state.get(k, v if k == "data_hash" else None) != v]
        if stale:
            what = {"data_hash": "other training data", "checkpoint_key": f"another checkpoint_key ({checkpoint_key})",
                    "last_batch": "older code, which trained a last batch of one image on its own (a step more per "
                                  "epoch)"}
            raise ValueError(f"checkpoint {ckpt_path} was written for {' and '.join(what[k] for k in stale)}; "
                             f"delete it or pass another path")
        if state["epoch"] >= cfg.epochs:  # finished: only loaded, so the model is what that run made
            trained_on, precision, trained_by = was_on, was_in, was_by
            if (was_on, was_in) != (device.type, here):
                warnings.warn(f"model read back from {ckpt_path} was trained on {was_on} in {was_in}, not as this run "
                              f"would train it ({device.type}, {here}): records give this run's device and the "
                              f"model's trained_on, training_precision and trained_by; delete the checkpoint to train "
                              f"it here",
                              stacklevel=2)
        else:
            trained_on, trained_by = training_device(device, {"device_type": was_on, "device_name": was_by})
        model.load_state_dict(state["model"])
        fused = [g.get("fused") for g in opt.param_groups]  # this device's choice (make_optimizer), not the saved one's
        opt.load_state_dict(state["optimizer"])
        for g, f in zip(opt.param_groups, fused):
            g["fused"] = f
        sched.load_state_dict(state["scheduler"])
        start_epoch = state["epoch"]
        if start_epoch < cfg.epochs:  # a finished run draws no more random numbers (and may come from another device)
            gen.set_state(state["generator"].cpu())  # shuffling: a CPU generator wherever the run trains
            restore_generator(aug_gen, state["aug_generator"], reseed=cfg.seed + 1 + start_epoch,
                              what="augmentation", path=ckpt_path)
        result.history = state["history"]
        result.wall_time = state["wall_time"]
        earlier = float(state.get("compute_time", state["wall_time"]))  # older checkpoints: their training time
        result.images_seen = state["images_seen"]
        result.resumed_from_epoch = start_epoch

    step_model = model
    if cfg.compile and device.type == "cuda":
        step_model = torch.compile(model)

    from tqdm.auto import tqdm

    bar = tqdm(range(start_epoch, cfg.epochs), desc="train", disable=not cfg.progress, leave=False,
               initial=start_epoch, total=cfg.epochs)
    saver = Checkpointer(ckpt_path, checkpoint_every)
    with saver, bar:
        for epoch in bar:
            model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=gen).to(device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device)
            for i in range(steps_per_epoch):
                idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size if i < steps_per_epoch - 1 else n]
                xb = augment_batch(xs[idx], cfg.crop_padding, cfg.flip, aug_gen)
                xb = to_float(xb)
                if device.type == "cuda" and cfg.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                yb = ys[idx]
                with _autocast(device, cfg.amp, cfg.cpu_bf16):
                    try:
                        out = step_model(xb)
                    except ValueError as exc:  # BatchNorm over a 1x1 map cannot train on a batch of one image
                        if len(idx) != 1 or "more than 1 value per channel" not in str(exc):
                            raise
                        raise _one_image_batch(n, cfg.batch_size) from exc
                    if label_max >= out.shape[-1]:  # before the loss: on CUDA a device-side assert would follow
                        raise ValueError(f"y_train holds label {label_max} but the model has {out.shape[-1]} "
                                         f"outputs: labels must be in [0, {out.shape[-1] - 1}]")
                    loss = F.cross_entropy(out.float(), yb, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                step_lr = opt.param_groups[0]["lr"]  # the rate this step used (sched.step sets the next one)
                opt.step()
                sched.step()
                loss_sum += loss.detach() * len(idx)
                correct += (out.detach().argmax(1) == yb).sum()
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            result.wall_time += dt
            result.images_seen += n
            row = {"epoch": epoch + 1, "train_loss": (loss_sum / n).item(), "train_acc": (correct / n).item(),
                   "lr": step_lr, "epoch_time": dt}
            if not math.isfinite(row["train_loss"]):  # diverged: never evaluated, cached or saved as a checkpoint
                raise FloatingPointError(f"training diverged: the train loss of epoch {epoch + 1}/{cfg.epochs} is "
                                         f"{row['train_loss']} (lr={cfg.lr:g}, now {row['lr']:g}); lower lr (e.g. "
                                         f"{cfg.lr / 10:g}) and train again")
            if x_test is not None and y_test is not None:
                row["test_acc"] = evaluate(model, x_test, y_test, cfg.eval_batch_size, device)
            model.eval()  # callbacks see the model as evaluation does (their own forward passes leave BatchNorm as is)
            for cb in callbacks or []:
                row.update({k: _history_value(k, v) for k, v in (cb(model, epoch + 1) or {}).items()})
            result.history.append(row)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row.get('test_acc', row['train_acc']):.3f}")
            saver.offer(lambda: {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                 "scheduler": sched.state_dict(), "generator": gen.get_state(),
                                 "aug_generator": aug_gen.get_state(), "epoch": epoch + 1, "history": result.history,
                                 "wall_time": result.wall_time, "images_seen": result.images_seen,
                                 "compute_time": earlier + time.perf_counter() - started,
                                 "fingerprint": cfg.fingerprint(), "n_train": n, "config": asdict(cfg),
                                 "precision": precision, "device_type": trained_on, "device_name": trained_by,
                                 **origin},
                        final=epoch + 1 == cfg.epochs)
    model.eval()
    result.trained_on, result.precision, result.trained_by = trained_on, precision, trained_by
    note_training(trained_on, precision, trained_by)
    reused = start_epoch > 0 and start_epoch >= cfg.epochs  # read back finished: its stored cost counts
    result.compute_time = earlier if reused else earlier + time.perf_counter() - started
    if ckpt_path:
        result.checkpoint = str(ckpt_path.resolve())
        charge(ckpt_path, result.compute_time, reused, started)
    return result
