"""Run profiles and validation of notebook parameters.

Every notebook has a ``profile`` parameter. A profile is one small table of budgets:

* ``smoke``: CPU, seconds, offline. What nbval runs in CI. Numbers are meaningless.
* ``quick``: one GPU, minutes (also runs on CPU, slowly). Real but reduced settings.
* ``paper``: the papers' settings (full datasets, full training).

Papermill passes ``-p eps 8/255`` as the *string* ``"8/255"``; :func:`parse_eps` and friends accept
what papermill, YAML parameter files and Python give, and refuse everything else with a message that
names the parameter and the allowed range.
"""

from __future__ import annotations

import argparse
import math
import numbers
import re
from dataclasses import asdict, dataclass, replace
from fractions import Fraction

import numpy as np

__all__ = [
    "budget_note",
    "Profile",
    "PROFILES",
    "PRECISIONS",
    "parse_overrides",
    "get_profile",
    "canonical_profile",
    "profile_key",
    "parse_fraction",
    "parse_eps",
    "parse_rate",
    "check_choice",
    "check_int",
    "check_seed",
    "MAX_SEED",
    "check_bool",
    "parse_list",
]


PRECISIONS = ("auto", "fp32", "bf16")  # Profile.precision


def check_choice(name: str, value, choices) -> None:
    """Raise ValueError naming ``name`` and the valid choices if ``value`` is not one of them."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


class ArgumentValueError(ValueError, argparse.ArgumentTypeError):
    """A ValueError that argparse reports with its own message when the parser is an argument's ``type``."""


def parse_precisions(text: str) -> list[str]:
    """A comma-separated list of precisions (benchmarks' ``--precision auto,bf16``, as an argparse ``type``), each
    one of :data:`PRECISIONS`."""
    out = [p.strip() for p in str(text).split(",") if p.strip()]
    if not out or any(p not in PRECISIONS for p in out):
        raise ArgumentValueError(f"precision must be a comma-separated list of {list(PRECISIONS)}; got {text!r}")
    twice = sorted({p for p in out if out.count(p) > 1})
    if twice:  # the benchmarks keep one row per precision: a second run would be paired with the first's row
        raise ArgumentValueError(f"precision names {', '.join(twice)} more than once; got {text!r} (use --seeds to "
                                 "repeat a run)")
    return out


# Smallest value of each integer field: a t-test needs 2 queries (verify_m), a generator batch half target and half
# non-target images (gen_batch); every loop runs at least once (an epoch count of 0 would record untrained models).
_PROFILE_MINIMA = {"n_train": 1, "n_test": 1, "epochs": 1, "batch_size": 1, "width": 1, "gen_iters": 1,
                   "gen_batch": 2, "finetune_epochs": 1, "verify_m": 2, "n_models": 1, "amuse_images": 1,
                   "amuse_subsets": 1, "hidden_steps": 1, "craft_steps": 1}
_WHOLE_OR_NONE = ("n_train", "n_test", "craft_steps")  # fields whose None means "the whole split" / "the papers' own"


@dataclass(frozen=True)
class Profile:
    """Budgets shared by all notebooks. ``None`` for ``n_train``/``n_test`` means the whole split."""

    name: str
    device: str  # "cpu" or "auto" (CUDA when available)
    n_train: int | None  # training images kept (stratified subsample)
    n_test: int | None  # test images kept
    epochs: int  # classifier training epochs (user models, surrogates)
    batch_size: int
    lr: float
    width: int  # base width of ResNet/VGG (64 = the standard models)
    gen_iters: int  # generator (SSCL-BW U-Net) training iterations
    gen_batch: int  # images per generator batch (half target, half non-target)
    finetune_epochs: int
    verify_m: int  # verification images (paper: m = 100)
    n_models: int  # independent models per control when estimating false-positive rates
    amuse_images: int  # images watermarked in AMUSE notebooks
    amuse_subsets: int  # random leaked subsets per share (paper: 100)
    hidden_steps: int  # HiDDeN training steps
    # "auto": bf16 autocast for classifier and HiDDeN training on CUDA, fp32 on the CPU and for the SSCL-BW generator;
    # "bf16": bf16 autocast for classifier, generator and HiDDeN training on CUDA and on the CPU (ours; measured in
    # docs/measured-sscl-cpu.md); "fp32": no autocast anywhere. Evaluation is always fp32 (train.predict_logits).
    precision: str = "auto"
    # crafting steps of the surrogate-based baselines of Table I (Label-Consistent's PGD, Sleeper Agent's and UBW-C's
    # gradient matching); None: the papers' (100, 250) in quick and paper, a few in smoke (watermarks.crafting_budget)
    craft_steps: int | None = None

    def __post_init__(self):
        check_choice("precision", self.precision, PRECISIONS)
        if not (isinstance(self.device, str) and re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", self.device)):
            raise ValueError(f"profile field device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; "
                             f"got {self.device!r}")
        for field_name, low in _PROFILE_MINIMA.items():
            value = getattr(self, field_name)
            if value is None and field_name in _WHOLE_OR_NONE:
                continue  # the whole split, or the papers' crafting steps
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"profile field {field_name} must be an integer >= {low}; got {value!r}")
        if self.gen_batch % 2:  # half target, half non-target images: refused here under the name the user typed
            raise ValueError(f"profile field gen_batch must be an even integer >= 2 (half target, half non-target "
                             f"images); got {self.gen_batch}")
        if isinstance(self.lr, (bool, np.bool_)) or not (isinstance(self.lr, numbers.Real) and math.isfinite(self.lr)
                                                        and self.lr > 0):
            raise ValueError(f"profile field lr must be a finite number > 0; got {self.lr!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **overrides) -> "Profile":
        """Return a copy with the given fields replaced; ``None`` values are ignored."""
        unknown = set(overrides) - set(self.to_dict())
        if unknown:
            raise ValueError(f"unknown profile field(s) {sorted(unknown)}; known: {sorted(self.to_dict())}")
        if "name" in overrides and overrides["name"] is not None:
            raise ValueError("a profile's name cannot be overridden (its budget would carry another profile's name); "
                             "start from get_profile(name) instead")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", device="cpu", n_train=600, n_test=300, epochs=2, batch_size=64, lr=0.05, width=8,
        gen_iters=30, gen_batch=32, finetune_epochs=1, verify_m=40, n_models=2, amuse_images=40,
        amuse_subsets=10, hidden_steps=30,
    ),
    "quick": Profile(
        name="quick", device="auto", n_train=None, n_test=None, epochs=40, batch_size=512, lr=0.2, width=64,
        gen_iters=1500, gen_batch=128, finetune_epochs=10, verify_m=100, n_models=3, amuse_images=500,
        amuse_subsets=100, hidden_steps=3000,
    ),
    "paper": Profile(
        name="paper", device="auto", n_train=None, n_test=None, epochs=200, batch_size=128, lr=0.1, width=64,
        gen_iters=10000, gen_batch=128, finetune_epochs=20, verify_m=100, n_models=5, amuse_images=1000,
        amuse_subsets=100, hidden_steps=20000,
    ),
}


def get_profile(name: str, **overrides) -> Profile:
    """Look up a profile by name (``smoke``, ``quick``, ``paper``), optionally overriding fields.

    ``name`` may carry overrides itself, so a notebook run can shrink or grow a budget without new parameters:
    ``papermill ... -p profile "quick:device=cpu,epochs=10,width=16"``. The profile keeps its base name (``quick``)
    and every record stores the full string, so a report always says which budget produced a number.
    """
    if not isinstance(name, str):
        raise TypeError(f"profile must be a string such as 'smoke' or 'quick:epochs=10'; got {type(name).__name__}")
    base, _, spec = name.partition(":")
    check_choice("profile", base.strip(), PROFILES)
    profile = replace(PROFILES[base.strip()], **parse_overrides(spec, PROFILES[base.strip()]))
    return profile.with_overrides(**overrides)


def canonical_profile(name: str) -> str:
    """The one spelling of a profile string: spaces dropped, overrides sorted by field, values as parsed, and
    overrides equal to the profile's own value left out (``"quick: lr=5e-2, epochs=10"`` ->
    ``"quick:epochs=10,lr=0.05"``; ``"quick:epochs=40"`` -> ``"quick"``). Records and run tags are keyed by it, so
    two spellings of one budget find the same results. Invalid strings raise as :func:`get_profile` does."""
    get_profile(name)  # validates base and overrides, with get_profile's messages
    base, _, spec = name.partition(":")
    own = PROFILES[base.strip()].to_dict()
    overrides = {k: v for k, v in parse_overrides(spec, PROFILES[base.strip()]).items() if own[k] != v}
    if not overrides:
        return base.strip()
    return base.strip() + ":" + ",".join(f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in sorted(overrides.items()))


def profile_key(name):
    """What records are keyed by: :func:`canonical_profile` of a profile string, or ``name`` as given when this dovlib
    cannot read it as a profile (an old record's string, or not a string). Comparing two records' profiles by it
    matches exactly what a record lookup matches."""
    if not isinstance(name, str):
        return name
    try:
        return canonical_profile(name)
    except ValueError:
        return name


def budget_note(settings: dict) -> str:
    """A caption's words for the settings that are not the paper's, each beside the paper's: ``settings`` maps a name
    to (used, paper); lists compare as lists and read "36, 30" ("budget not the paper's: training steps 2 (paper
    20000), channels 16 (paper 64)"); empty where every setting is the paper's. The profile string alone does not
    say which of its values, or a notebook parameter's, differ from the paper."""
    def words(v):
        return ", ".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)

    def same(a, b):
        return list(a) == list(b) if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) else a == b

    if not isinstance(settings, dict):
        raise TypeError(f"budget_note: settings must be a dict of name -> (used, paper); got {type(settings).__name__}")
    for name, pair in settings.items():
        if not isinstance(name, str):
            raise TypeError(f"budget_note: settings maps a string name to (used, paper); the name {name!r} is not "
                            "a string")
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"budget_note: setting {name!r} must be a (used, paper) pair; got {pair!r}")
    parts = [f"{name} {words(used)} (paper {words(paper)})" for name, (used, paper) in settings.items()
             if not same(used, paper)]
    return "budget not the paper's: " + ", ".join(parts) if parts else ""


def parse_overrides(spec: str, profile: Profile) -> dict:
    """``"epochs=10,width=16,device=cpu,n_train=None"`` -> typed field values of ``profile`` (errors name the field
    and the known fields; a field given twice is refused, since which value counts would be a guess)."""
    out: dict = {}
    known = profile.to_dict()
    for item in filter(None, (p.strip() for p in spec.split(","))):
        key, eq, text = (t.strip() for t in item.partition("="))
        if not eq or key not in known or key == "name":
            raise ValueError(f"profile override {item!r} must be field=value with field one of "
                             f"{sorted(k for k in known if k != 'name')}")
        if key in out:
            raise ValueError(f"profile override {key} is given twice in {spec!r}: give each field once")
        if (text in ("None", "none", "all") and key in ("n_train", "n_test")) or (text in ("None", "none")
                                                                                and key == "craft_steps"):
            out[key] = None
            continue
        kind = type(known[key]) if known[key] is not None else int
        try:
            out[key] = kind(text)
        except ValueError:
            what = {int: "an integer", float: "a number"}.get(kind, kind.__name__)
            raise ValueError(f"profile override {key} must be {what}; got {text!r}") from None
    return out


def _example(low: float, high: float) -> str:
    """", e.g. 0.25 or 1/4": one value a quarter into the range (the next integer above ``low`` in a wide one), as a
    decimal and (where short) as the fraction papermill may pass; nothing for an unbounded range."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return ""
    v = float(f"{low + (high - low) / 4:.2g}") if high - low <= 10 else math.floor(low) + 1  # e.g. a loss weight
    if not low < v < high:
        return ""
    frac = Fraction(v).limit_denominator(1000)
    fraction = f" or {frac.numerator}/{frac.denominator}" if frac.denominator > 1 and float(frac) == v else ""
    return f", e.g. {v:g}{fraction}"


_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_MAX_EXPONENT = 1000  # a float holds 1e308 at most and 5e-324 at least; Fraction("1e10000000") would take seconds


def parse_fraction(name: str, value, low: float = 0.0, high: float = 1.0, *, low_inclusive: bool = False,
                   high_inclusive: bool = True, allowed: str | None = None) -> float:
    """Parse ``value`` (a number, or a string such as ``"8/255"``, ``"0.03"``, ``"1e-3"``) into a float in
    the interval (low, high] (bounds configurable). Errors name ``name`` and the allowed range (``allowed``: its
    wording, where the caller narrows the interval further)."""
    lo_br = "[" if low_inclusive else "("
    hi_br = "]" if high_inclusive else ")"
    if allowed is None:
        allowed = f"a number in {lo_br}{low:g}, {high:g}{hi_br}" + _example(low, high)
    if value is None or isinstance(value, bool):
        raise TypeError(f"{name} must be {allowed}; got {value!r}")
    if isinstance(value, numbers.Real):
        try:
            result = float(value)
        except OverflowError:  # an int past float's range, e.g. 10**400
            raise ValueError(f"{name} must be {allowed}; got a number too large for a float") from None
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError(f"{name} must be {allowed}; got an empty string")
        parts = text.split("/")
        matches = [_NUMBER.match(p) for p in parts]
        if len(parts) > 2 or not all(matches):
            raise ValueError(f"{name} must be {allowed}; could not read {value!r}")
        if any(m.group(3) and (len(m.group(3)) > 8 or abs(int(m.group(3)[1:])) > _MAX_EXPONENT) for m in matches):
            raise ValueError(f"{name} must be {allowed}; {value!r} has an exponent beyond +-{_MAX_EXPONENT}, far "
                             f"outside a float's range")
        try:
            frac = Fraction(parts[0].strip())
            if len(parts) == 2:
                frac = frac / Fraction(parts[1].strip())
        except ZeroDivisionError:
            raise ValueError(f"{name} must be {allowed}; {value!r} divides by zero") from None
        try:
            result = float(frac)
        except OverflowError:  # e.g. "1e400" or "1/1e-400": exact as a Fraction, too large as a float
            raise ValueError(f"{name} must be {allowed}; {value!r} is too large for a float") from None
    else:
        raise TypeError(f"{name} must be {allowed}; got {type(value).__name__} {value!r}")
    if not math.isfinite(result):
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    too_low = result < low if low_inclusive else result <= low
    too_high = result > high if high_inclusive else result >= high
    if too_low or too_high:
        shown = f"{result:g}"
        if float(shown) in (low, high):  # 1.0000001 must not print as the bound 1 it exceeds
            shown = repr(result)
        raise ValueError(f"{name} must be {allowed}; got {value!r} = {shown}")
    return result


def parse_eps(value, name: str = "eps") -> float:
    """L-inf budget of a watermark in [0, 1] pixel units: ``"8/255"``, ``8/255``, ``"0.03"`` -> float in [1/255, 1].
    The images dovlib marks are 8-bit, so a budget under one grey level would round every mark away (the marked set
    would equal the clean one while its manifest says otherwise): refused, naming ``name``."""
    eps = parse_fraction(name, value, 0.0, 1.0, allowed="a number in [1/255, 1], e.g. 8/255 or 0.03")
    if eps * 255 < 1 - 1e-6:
        raise ValueError(f"{name} must be at least 1/255 (one grey level: the marked images are 8-bit, so a smaller "
                         f"budget rounds every mark away); got {value!r} = {eps:g} = {eps * 255:.3g}/255")
    return eps


def parse_rate(value, name: str = "rate") -> float:
    """Watermarking rate gamma: share of the whole training set that is marked, in (0, 1]."""
    return parse_fraction(name, value, 0.0, 1.0)


def _exact(text: str) -> Fraction | None:
    """A decimal string's exact value ("9007199254740993.0", "1e3"), or None where it is not one ("nan", "abc", and
    "4/2": integer parameters are not fractions)."""
    exponent = re.search(r"[eE]\s*([+-]?\d+)", text)
    if "/" in text or (exponent and abs(int(exponent.group(1))) > 1000):  # "1e5000": a 5,000-digit integer
        return None
    try:
        return Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        return None


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """Accept ints (and integral strings/floats papermill may pass); enforce low <= value <= high."""
    rng = f"in [{low}, {high}]" if high is not None else f">= {low}"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer {rng}; got {value!r}")
    if isinstance(value, numbers.Integral) or (isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value)):
        result = int(value)  # exactly: 9007199254740993 must not become its float neighbour
    elif isinstance(value, str) and (exact := _exact(value)) is not None:  # "3.0" or "1e3", exactly (not via a float)
        if exact.denominator != 1:
            raise ValueError(f"{name} must be an integer {rng}; got {value!r}")
        result = int(exact)
    else:
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be an integer {rng}; got {value!r}") from None
        underflow = as_float == 0 and isinstance(value, str) and re.search(r"[1-9]", re.split(r"[eE]", value)[0])
        if not math.isfinite(as_float) or as_float != int(as_float) or underflow:  # "1e-2000" is not the integer 0
            raise ValueError(f"{name} must be an integer {rng}; got {value!r}")
        result = int(as_float)
    if result < low or (high is not None and result > high):  # a string as given: "1e400" is not 401 digits here
        raise ValueError(f"{name} must be an integer {rng}; got {value if isinstance(value, str) else result}")
    return result


MAX_SEED = 2 ** 31 - 1  # offset seeds (seed + 1, seed * 1000 + i, seed + attempt * 100_000) stay in torch's range


def check_seed(value, name: str = "seed") -> int:
    """A random seed: an integer in [0, 2**31 - 1] (``check_int``). Larger ones used to pass and then overflow inside
    torch or numpy without naming the parameter."""
    return check_int(name, value, 0, MAX_SEED)


def parse_target(value, name: str = "target") -> int | None:
    """A target class index (``check_int``, >= 0; the class count is checked once the data is known), or ``"key"``
    (any case): the class is drawn from the owner's secret key (``sscl.key_targets``), returned as None."""
    if isinstance(value, str) and value.strip().lower() == "key":
        return None
    try:
        return check_int(name, value, 0)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a class index >= 0 or 'key' (drawn from the owner's key); "
                         f"got {value!r}") from None


def parse_list(name: str, value, parse=None) -> list:
    """A list parameter as papermill or a user may give it: a list or tuple, a single value, or a comma-separated
    string (``"0.1,0.5"``, ``"[0.1, 0.5]"``, what ``-p shares 0.1,0.5`` passes). Each item goes through ``parse``
    (e.g. ``lambda v: check_int(name, v, 1)``, whose errors name the parameter); an empty list is refused."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        items = [t.strip() for t in value.strip().strip("[]()").split(",") if t.strip()]
    else:
        items = [value]
    if not items:
        raise ValueError(f"{name} needs at least one value (a list or comma-separated values); got {value!r}")
    return [parse(v) for v in items] if parse is not None else items


def check_bool(name: str, value) -> bool:
    """Accept True or False only (papermill's ``-p name True`` and YAML's ``true`` arrive as bools); a string such
    as ``"False"`` would be truthy, so it is refused with the parameter named."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value
