"""Message codecs for watermark-based dataset ownership verification: AMUSE, an erasure-coded mode and the baseline.

AMUSE (*Adaptive Multi-Segment Encoding*): a long L-bit message is zero-padded to a multiple of ``n`` and split into
``n`` chunks; each image carries one *sub-message*: ``k`` of the chunks followed by the index of that combination of
``k`` chunks (``ordering_bits = ceil(log2 C(n, k))`` bits, the paper's layout and rule). Every combination is used
equally often, so a chunk is missing from a share ``rho = (n - k) / n`` of the images: any leaked share above ``rho``
still holds every chunk. That holds exactly when the number of images is a multiple of C(n, k); otherwise the images
left over get combinations that keep the chunks as even as a greedy choice can, and ``min_leak_count`` gives the exact
number of images any leak must hold (a few more than ``rho`` of them). :func:`choose_nk` is the paper's Algorithm 2
(the shortest sub-message for a given ``rho_max``). The authors' released code counts ordering bits as
``C(n, k).bit_length()``, one bit more when ``C(n, k)`` is a power of two ((2, 1) for L = 30 gives 17 bits there, 16
here); this module follows the paper's ``ceil`` rule.

Three codecs share one interface (``encode``/``decode``/``decode_partial``, ``sub_message_bits``, ``rho``,
``min_unique_sub_messages``, ``describe``), so notebooks 07-10 can treat them alike:

* :class:`RepeatCodec` (baseline): the whole message in every image, bitwise majority vote over images.
* :class:`AmuseCodec`: the paper's codec.
* :class:`ErasureCodec` (beyond the paper): Reed-Solomon fragments (``reedsolo``): any ``k`` distinct fragments of
  ``n`` recover the message, so the guaranteed leak ratio is ``(k - 1) / n`` instead of AMUSE's ``(n - k) / n``
  at a similar number of bits per image. Both ratios hold exactly when the images split evenly over the labels
  (fragments, combinations); for other counts ``min_leak_count`` is the exact guarantee, a little above the ratio.
  Notebook 09 compares the three.

Decoding votes each bit over all received copies, so it tolerates random bit errors (notebook 09 measures how many).
A corrupted index field (AMUSE's ordering bits, the fragment index) is the weak spot: an index outside the valid range
is dropped, but an in-range wrong index files the payload under the wrong chunks, where it is one wrong vote among the
honest copies, unless it is the only copy, in which case a chunk that was never leaked looks recovered (with random
bits). See notebooks/09_amuse_subset_attack.py.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .params import check_int, parse_fraction

__all__ = ["Codec", "RepeatCodec", "AmuseCodec", "ErasureCodec", "MissingChunksError", "PartialDecode", "choose_nk",
           "ceil_log2", "random_message", "random_messages", "flip_bits", "leak_subset_accuracy",
           "distinct_leak_shares", "leak_shares_note", "distinct_subsets", "recovery_share", "choose_erasure_k",
           "choose_erasure_n", "tradeoff_table", "PAPER_SUB_MESSAGE_BITS", "CODECS", "make_codec"]

# Sub-message lengths printed in the AMUSE paper: (message_bits, rho_max) -> ((n, k), sub_message_bits).
PAPER_SUB_MESSAGE_BITS = {
    (300, 0.8): ((5, 1), 63), (300, 0.6): ((5, 2), 124),
    (200, 0.8): ((5, 1), 43), (200, 0.6): ((5, 2), 84),
    (100, 0.8): ((5, 1), 23), (100, 0.6): ((5, 2), 44),
    (30, 0.5): ((2, 1), 16), (30, 0.8): ((5, 1), 9),
}


def ceil_log2(x: int) -> int:
    """Bits needed to number ``x`` items: ``ceil(log2 x)`` (0 for x = 1), the paper's rule for ordering bits."""
    x = check_int("x", x, 1)
    return (x - 1).bit_length()


class MissingChunksError(ValueError):
    """Raised by ``decode`` when the received sub-messages do not hold the whole message; ``missing`` names what,
    ``dropped`` counts the sub-messages dropped as invalid (an index field out of range: corrupted bits)."""

    def __init__(self, message: str, missing, dropped: int = 0):
        super().__init__(message)
        self.missing = list(missing)
        self.dropped = int(dropped)


class PartialDecode(NamedTuple):
    """``bits``: the L decoded bits; ``known``: True where a bit was actually received (elsewhere ``bits`` is 0 and
    means nothing); ``complete``: every bit known. Received is not certain: a bit whose copies split evenly (an even
    number of copies, half 0 and half 1: possible only with extraction errors) is a tie, which AMUSE and the baseline
    vote 0, reading like any other decoded bit; the codec's ``last_tied`` counts them after each decode. The erasure
    codec takes such a symbol as an erasure instead."""

    bits: np.ndarray
    known: np.ndarray
    complete: bool


def _check_message(message, message_bits: int) -> np.ndarray:
    arr = np.asarray(message)
    if arr.ndim != 1 or arr.shape[0] != message_bits:
        raise ValueError(f"message must be a 1-D array of message_bits = {message_bits} bits; got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError("message must contain only 0/1 bits")
    return arr.astype(np.uint8)


def _bits_to_int(bits: np.ndarray) -> np.ndarray:
    """Rows of big-endian bits (N, b) -> integers (N,) (b may be 0)."""
    if bits.shape[1] == 0:
        return np.zeros(bits.shape[0], dtype=np.int64)
    weights = 1 << np.arange(bits.shape[1] - 1, -1, -1, dtype=np.int64)
    return bits.astype(np.int64) @ weights


def _int_to_bits(values, width: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64)
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[..., None] >> shifts) & 1).astype(np.uint8)


def _vote(ones: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Majority vote from the number of ones and of copies (broadcast); ties (equal split) give 0."""
    return (2 * ones > counts).astype(np.uint8)


class Codec(ABC):
    """Common interface. ``rho``: any leaked share of images above it holds the whole message when every combination
    or fragment is used equally often and extraction is error-free; :meth:`min_leak_count` gives the exact count for a
    given number of images.

    Ties: a bit whose received copies split evenly is voted 0 (AMUSE, baseline). ``last_tied`` is the number of such
    bits in the last :meth:`decode` or :meth:`decode_partial` call (0 before any): of the L message bits for AMUSE and
    the baseline, so ``decode`` may return a message with ``last_tied`` of its bits set by the tie rule rather than a
    majority; of the fragment bits (parity included) for the erasure codec, each making its symbol an erasure."""

    name = "codec"
    n: int = 1
    k: int = 1

    def __init__(self, message_bits: int, seed: int = 0):
        self.message_bits = check_int("message_bits", message_bits, 1)
        self.seed = check_int("seed", seed, 0)
        self.last_tied = 0

    sub_message_bits: int
    rho: float
    min_unique_sub_messages: int

    @property
    def num_labels(self) -> int:
        """Distinct sub-messages: combinations (AMUSE), fragments (erasure) or 1 (baseline)."""
        return 1

    def assignment(self, num_samples: int, seed: int | None = None) -> np.ndarray:
        """Label (combination / fragment index) given to each of ``num_samples`` images: a seeded permutation of the
        labels, repeated, so each label is used ``floor`` or ``ceil`` of ``num_samples / num_labels`` times."""
        num_samples = check_int("num_samples", num_samples, 1)
        rng = np.random.default_rng(self.seed if seed is None else check_int("seed", seed, 0))
        total = self.num_labels
        if total <= max(num_samples, 1 << 20):
            order = rng.permutation(total)
            return np.resize(order, num_samples)
        return rng.choice(total, size=num_samples, replace=False)  # more labels than images: a random few

    def encode(self, message, num_samples: int, seed: int | None = None) -> np.ndarray:
        """(num_samples, sub_message_bits) uint8 sub-messages for ``message`` (L bits of 0/1)."""
        msg = _check_message(message, self.message_bits)
        return self._encode_labels(msg, self.assignment(num_samples, seed))

    @abstractmethod
    def _encode_labels(self, msg: np.ndarray, labels: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def decode_partial(self, sub_messages) -> PartialDecode:
        """Vote what the received sub-messages hold; bits never received are marked unknown, not guessed."""

    def decode(self, sub_messages) -> np.ndarray:
        """The L-bit message, or :class:`MissingChunksError` when the sub-messages do not cover it."""
        result = self.decode_partial(sub_messages)
        error = self.why_incomplete(result, len(np.atleast_2d(sub_messages)))
        if error is not None:
            raise error
        return result.bits

    def why_incomplete(self, result: PartialDecode, received: int) -> MissingChunksError | None:
        """The :class:`MissingChunksError` (returned, not raised) that :meth:`decode` would raise for ``result``, the
        last :meth:`decode_partial` of ``received`` sub-messages (call it right after that decode: the reason reads
        the codec's counts of it), or None when ``result`` is complete. Saves decoding twice for the bits and the
        reason."""
        if result.complete:
            return None
        missing = self._missing(result)
        dropped = getattr(self, "last_dropped", 0)
        why = f" ({dropped} of the {received} were dropped as invalid: {self._invalid_reason()})" if dropped else ""
        return MissingChunksError(f"{self.name}: the {received} sub-messages do not hold the whole message{why}; "
                                  f"missing {missing}. Use decode_partial() for the known bits", missing, dropped)

    def _missing(self, result: PartialDecode):
        return [f"{int((~result.known).sum())} of {self.message_bits} bits"]

    def _invalid_reason(self) -> str:
        """Why ``decode_partial`` drops a sub-message (codecs with an index field)."""
        return "corrupted bits"

    def min_leak_count(self, num_samples: int, seed: int | None = None) -> int | None:
        """Smallest m such that ANY m of the ``num_samples`` encoded images hold the message (error-free extraction);
        None if even all of them do not."""
        return 1

    def _start_decode(self, sub_messages) -> np.ndarray:
        """``decode_partial``'s first step: ``last_tied`` (and ``last_dropped``) reset before the input is checked,
        so a refused input never leaves the previous decode's counts, then the checked sub-messages."""
        self.last_tied = 0
        if hasattr(self, "last_dropped"):
            self.last_dropped = 0
        return self._check_sub_messages(sub_messages)

    def _check_sub_messages(self, sub_messages) -> np.ndarray:
        arr = np.asarray(sub_messages)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != self.sub_message_bits:
            raise ValueError(f"sub_messages must be (N, sub_message_bits) = (N, {self.sub_message_bits}); "
                             f"got shape {np.shape(sub_messages)}")
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError("sub_messages must contain only 0/1 bits")
        return arr.astype(np.uint8)

    def describe(self) -> dict:
        return {"codec": self.name, "message_bits": self.message_bits, "n": self.n, "k": self.k,
                "sub_message_bits": self.sub_message_bits, "rho": self.rho,
                "min_unique_sub_messages": self.min_unique_sub_messages}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(message_bits={self.message_bits}, n={self.n}, k={self.k}) -> "
                f"{self.sub_message_bits} bits per image, rho={self.rho:.3g}")


class RepeatCodec(Codec):
    """Baseline: the whole message in every image; decoding is a bitwise majority vote over images. ``rho = 0``."""

    name = "baseline"

    def __init__(self, message_bits: int, seed: int = 0):
        super().__init__(message_bits, seed)
        self.sub_message_bits = self.message_bits
        self.rho = 0.0
        self.min_unique_sub_messages = 1

    def _encode_labels(self, msg, labels):
        return np.tile(msg, (len(labels), 1))

    def decode_partial(self, sub_messages) -> PartialDecode:
        arr = self._start_decode(sub_messages)
        if len(arr) == 0:
            return PartialDecode(np.zeros(self.message_bits, np.uint8), np.zeros(self.message_bits, bool), False)
        ones = arr.sum(0, dtype=np.int64)
        self.last_tied = int((2 * ones == len(arr)).sum())
        return PartialDecode(_vote(ones, np.int64(len(arr))), np.ones(self.message_bits, bool), True)


@lru_cache(maxsize=1 << 16)
def _unrank(index: int, n: int, k: int) -> tuple[int, ...]:
    """The ``index``-th k-subset of range(n) in lexicographic order (combinatorial number system)."""
    out, c = [], 0
    for pos in range(k):
        while True:
            count = math.comb(n - c - 1, k - pos - 1)
            if index < count:
                break
            index -= count
            c += 1
        out.append(c)
        c += 1
    return tuple(out)


MAX_ORDERING_BITS = 62  # combination indices are packed into int64 (bits_to_int); C(n, k) <= 2**62


class AmuseCodec(Codec):
    """AMUSE (the paper's codec): ``n`` chunks, ``k`` per image plus ``ordering_bits`` of combination index.

    ``sub_message_bits = k * ceil(L / n) + ceil(log2 C(n, k))``; ``rho = (n - k) / n``;
    ``min_unique_sub_messages = C(n - 1, k) + 1`` (worst case: all combinations missing one chunk, plus one).
    ``decode`` pools every copy of a chunk across all combinations holding it and majority-votes each bit
    (ties give 0, counted in ``last_tied``); ordering indices ``>= C(n, k)`` (corrupted) are dropped and counted in
    ``last_dropped``; an in-range corrupted index is one wrong vote (see the module docstring). ``seed`` fixes which
    image gets which combination (:meth:`AmuseCodec.assignment`).
    """

    name = "amuse"

    def __init__(self, message_bits: int, n: int, k: int, seed: int = 0):
        super().__init__(message_bits, seed)
        self.n = check_int("n", n, 1, self.message_bits)  # n > L would leave empty chunks
        self.k = check_int("k", k, 1, self.n)
        self.chunk_bits = -(-self.message_bits // self.n)
        # chunks holding at least one message bit; the rest are zero padding (e.g. L = 10, n = 7: chunks 5 and 6),
        # which decoding never needs
        self.data_chunks = -(-self.message_bits // self.chunk_bits)
        self.combinations = math.comb(self.n, self.k)
        self.ordering_bits = ceil_log2(self.combinations)
        if self.ordering_bits > MAX_ORDERING_BITS:  # the index is packed in int64; choose_nk never comes close
            raise ValueError(f"(n, k) = ({self.n}, {self.k}) has C(n, k) = {self.combinations} combinations, "
                             f"{self.ordering_bits} ordering bits; at most {MAX_ORDERING_BITS} are supported: "
                             f"choose a smaller n or a k further from n / 2")
        self.sub_message_bits = self.k * self.chunk_bits + self.ordering_bits
        self.rho = (self.n - self.k) / self.n
        self.min_unique_sub_messages = math.comb(self.n - 1, self.k) + 1
        self.last_dropped = 0

    @classmethod
    def from_rho(cls, message_bits: int, rho_max, seed: int = 0) -> "AmuseCodec":
        """The codec :func:`choose_nk` picks for ``rho_max``."""
        n, k = choose_nk(message_bits, rho_max)
        return cls(message_bits, n, k, seed)

    @property
    def num_labels(self) -> int:
        return self.combinations

    # the leftover images' greedy choice below costs about (combinations x data chunks x leftover images); past this
    # the leftover is the permutation's first combinations, as for the other codecs
    BALANCE_BUDGET = 50_000_000

    def assignment(self, num_samples: int, seed: int | None = None) -> np.ndarray:
        """Combination of each image: the seeded permutation of all C(n, k) combinations, repeated (each chunk then
        in the same number of images), and for the ``num_samples mod C(n, k)`` images left over (or all of them when
        there are fewer images than combinations) distinct combinations chosen greedily to keep the chunks' counts
        even (the least-held chunks first, the permutation breaking ties). Taking the next combinations of the
        permutation instead, as before, left chunks uneven: (10, 3) at 1,000 images needed 705 leaked images (now
        701-702 over 20 seeds; 701 is the least possible), (10, 3) at 40 needed 33 (now 29-30), and (5, 2) at 3 images
        missed a chunk in most seeds (now never). :meth:`min_leak_count` gives the exact count for any assignment."""
        num_samples = check_int("num_samples", num_samples, 1)
        total = self.num_labels
        if total > max(num_samples, 1 << 20):  # far more combinations than images: a random few (the base rule)
            return super().assignment(num_samples, seed)
        rng = np.random.default_rng(self.seed if seed is None else check_int("seed", seed, 0))
        order = rng.permutation(total)
        full, left = divmod(num_samples, total)
        if left == 0 or total * self.data_chunks * left > self.BALANCE_BUDGET:
            return np.resize(order, num_samples)
        chunks = self._combos(order)  # (total, k): the chunks of each combination, in the permutation's order
        onehot = np.zeros((total, self.data_chunks), np.int64)
        rows = np.repeat(np.arange(total), self.k)
        keep = chunks.reshape(-1) < self.data_chunks  # all-padding chunks are never needed
        np.add.at(onehot, (rows[keep], chunks.reshape(-1)[keep]), 1)
        counts = np.zeros(self.data_chunks, np.int64)  # the full cycles hold every chunk equally: only this matters
        free = np.ones(total, bool)
        picks = []
        for _ in range(left):
            after = np.sort(counts + onehot, axis=1)  # each candidate's chunk counts, ascending
            after[~free] = -1  # used already: never above a free candidate
            best = np.lexsort(after.T[::-1])[-1]  # leximin: the largest smallest count, then the next ...
            ties = np.flatnonzero((after == after[best]).all(1))
            pick = int(ties[0])  # the first in the permutation's order
            free[pick] = False
            counts += onehot[pick]
            picks.append(order[pick])
        return np.concatenate([np.resize(order, full * total), np.asarray(picks, dtype=order.dtype)])

    def combination(self, index: int) -> tuple[int, ...]:
        """Chunks (ascending) of combination ``index`` in lexicographic order."""
        index = check_int("index", index, 0, self.combinations - 1)
        return _unrank(index, self.n, self.k)

    def _combos(self, labels: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(labels, return_inverse=True)
        table = np.array([_unrank(int(u), self.n, self.k) for u in uniq], dtype=np.int64).reshape(len(uniq), self.k)
        return table[inv.reshape(-1)]

    def _encode_labels(self, msg, labels):
        padded = np.zeros(self.n * self.chunk_bits, np.uint8)
        padded[: self.message_bits] = msg
        chunks = padded.reshape(self.n, self.chunk_bits)
        payload = chunks[self._combos(labels)].reshape(len(labels), -1)
        return np.concatenate([payload, _int_to_bits(labels, self.ordering_bits)], axis=1)

    def _votes(self, sub_messages):
        self.last_dropped = 0  # before the check: a refused input leaves no earlier count
        arr = self._check_sub_messages(sub_messages)
        index = _bits_to_int(arr[:, self.k * self.chunk_bits:])
        valid = index < self.combinations
        self.last_dropped = int((~valid).sum())
        arr, index = arr[valid], index[valid]
        ones = np.zeros((self.n, self.chunk_bits), np.int64)
        counts = np.zeros(self.n, np.int64)
        if len(arr):
            combos = self._combos(index).reshape(-1)
            np.add.at(ones, combos, arr[:, : self.k * self.chunk_bits].reshape(-1, self.chunk_bits))
            np.add.at(counts, combos, 1)
        return ones, counts

    def decode_partial(self, sub_messages) -> PartialDecode:
        self.last_tied = 0  # before _votes checks the input: a refused input leaves no earlier count
        ones, counts = self._votes(sub_messages)
        tied = (2 * ones == counts[:, None]) & (counts[:, None] > 0)
        self.last_tied = int(tied.reshape(-1)[: self.message_bits].sum())
        bits = _vote(ones, counts[:, None]).reshape(-1)[: self.message_bits]
        known = np.repeat(counts > 0, self.chunk_bits)[: self.message_bits]
        return PartialDecode(bits, known, bool(known.all()))

    def missing_chunks(self, sub_messages) -> list[int]:
        """Chunks holding message bits that no received sub-message holds (all-padding chunks are never missing)."""
        return np.flatnonzero(self._votes(sub_messages)[1][: self.data_chunks] == 0).tolist()

    def _missing(self, result):
        chunks = sorted({i // self.chunk_bits for i in np.flatnonzero(~result.known)})
        return [f"chunk {c}" for c in chunks]

    def _invalid_reason(self) -> str:
        return (f"their ordering index, the last {self.ordering_bits} bits, is >= C(n, k) = {self.combinations} and "
                f"names no combination of chunks: corrupted bits")

    def min_leak_count(self, num_samples: int, seed: int | None = None) -> int | None:
        labels = self.assignment(num_samples, seed)
        combos = self._combos(labels)
        holding = np.zeros(self.n, np.int64)
        np.add.at(holding, combos.reshape(-1), 1)
        holding = holding[: self.data_chunks]  # all-padding chunks are not needed to rebuild the message
        if (holding == 0).any():
            return None
        return int(num_samples - holding.min() + 1)  # every image lacking the rarest chunk, plus one

    def describe(self) -> dict:
        return {**super().describe(), "chunk_bits": self.chunk_bits, "ordering_bits": self.ordering_bits,
                "combinations": self.combinations}


def choose_nk(message_bits: int, rho_max) -> tuple[int, int]:
    """AMUSE's Algorithm 2: the (n, k) with the shortest sub-message subject to ``(n - k) / n <= rho_max``.

    Exact brute force over n = 1..L (n > L leaves empty chunks) and k = ceil(n (1 - rho_max))..n, with ties broken by
    the smallest n, then the smallest k. It stops early, without losing optimality: every admissible (n, k) with
    k < n needs at least ``L (1 - rho_max)`` chunk bits plus ``ceil(log2 n)`` ordering bits (C(n, k) >= n), so once
    that bound exceeds the best length found, no larger n can win (k = n never beats (1, 1)). Paper values:
    ``PAPER_SUB_MESSAGE_BITS``; e.g. L = 300, rho_max = 0.8 -> (5, 1), 63 bits.
    ``(n - k) / n <= rho_max`` is compared with a 1e-9 tolerance so that 0.3 admits 3/10.
    """
    message_bits = check_int("message_bits", message_bits, 1)
    rho_max = parse_fraction("rho_max", rho_max, 0.0, 1.0, high_inclusive=False)
    best, best_nk = message_bits, (1, 1)  # (1, 1): the whole message, 0 ordering bits
    floor_bits = math.ceil(message_bits * (1 - rho_max) - 1e-9)
    for n in range(2, message_bits + 1):
        if floor_bits + ceil_log2(n) > best:
            break
        chunk = -(-message_bits // n)
        k_min = max(1, math.ceil(n * (1 - rho_max) - 1e-9))
        for k in range(k_min, n + 1):
            if chunk * k > best:
                break
            bits = chunk * k + ceil_log2(math.comb(n, k))
            if bits < best:
                best, best_nk = bits, (n, k)
    return best_nk


class ErasureCodec(Codec):
    """Reed-Solomon erasure-coded sub-messages (beyond the paper): any ``k`` distinct fragments of ``n`` recover it.

    The message is zero-padded and cut into ``k`` data fragments of ``r`` symbols of ``s = max(3, bit_length(n))``
    bits (one GF(2^s) codeword per symbol row, ``n <= 255``; s >= 3 because reedsolo finds no GF(4) polynomial);
    ``reedsolo`` adds ``n - k`` parity fragments. A
    sub-message is one fragment (``r * s`` bits) followed by its index (``ceil(log2 n)`` bits). Fragments 0..k-1 are the
    message itself (systematic), so ``decode_partial`` still returns them when fewer than ``k`` fragments arrive.
    Decoding votes each fragment's bits over its copies (a symbol with an evenly split bit counts as an erasure), then
    corrects erasures and, with more than ``k`` fragments, errors: a row is accepted only within the code's bound
    ``2 * errors + erasures <= n - k`` (up to ``(present - k) / 2`` wrong symbols per row); any other row is marked
    unknown (its received systematic symbols are returned, so ``decode`` raises rather than return them). That
    refuses reedsolo's own miscorrections past the bound; more wrong symbols than the bound allows can still decode
    to another codeword within it (measured: (60, 7, 3), all 7 fragments, one bit wrong in each of 3: 1 of 500
    messages silently wrong, 10 refused). With few
    images each fragment (in ``1 / n`` of the images) has few copies to vote over, so bit errors hurt it more than
    AMUSE, whose chunks are each in ``k / n`` of the images (notebook 09). ``rho = (k - 1) / n``: any leaked share
    above it holds ``k`` distinct fragments. Decoding is pure Python (about 2 ms per symbol row for n = 31; slow for n
    near 255).
    """

    name = "erasure"

    def __init__(self, message_bits: int, n: int, k: int, seed: int = 0):
        super().__init__(message_bits, seed)
        self.n = check_int("n", n, 1, 255)
        self.k = check_int("k", k, 1, self.n)
        self.symbol_bits = max(3, self.n.bit_length())
        self.rows = -(-self.message_bits // (self.k * self.symbol_bits))
        self.fragment_bits = self.rows * self.symbol_bits
        self.index_bits = ceil_log2(self.n)
        self.sub_message_bits = self.fragment_bits + self.index_bits
        self.rho = (self.k - 1) / self.n
        self.min_unique_sub_messages = self.k
        self.last_dropped = 0
        self._last_present = 0
        self._rs = None

    @property
    def num_labels(self) -> int:
        return self.n

    def _codec(self):
        if self._rs is None:
            import reedsolo

            self._rs = reedsolo.RSCodec(self.n - self.k, nsize=self.n, c_exp=self.symbol_bits)
        return self._rs

    def fragments(self, message) -> np.ndarray:
        """(n, fragment_bits) uint8: the ``n`` fragments of ``message`` (the first ``k`` are the padded message)."""
        msg = _check_message(message, self.message_bits)
        padded = np.zeros(self.k * self.fragment_bits, np.uint8)
        padded[: self.message_bits] = msg
        data = _bits_to_int(padded.reshape(self.k * self.rows, self.symbol_bits)).reshape(self.k, self.rows)
        if self.n == self.k:
            code = data
        else:
            rs = self._codec()
            code = np.array([list(rs.encode(bytearray(int(v) for v in data[:, i]))) for i in range(self.rows)],
                            dtype=np.int64).T  # (n, rows)
        return _int_to_bits(code, self.symbol_bits).reshape(self.n, self.fragment_bits)

    def _encode_labels(self, msg, labels):
        return np.concatenate([self.fragments(msg)[labels], _int_to_bits(labels, self.index_bits)], axis=1)

    def decode_partial(self, sub_messages) -> PartialDecode:
        arr = self._start_decode(sub_messages)
        index = _bits_to_int(arr[:, self.fragment_bits:])
        valid = index < self.n
        self.last_dropped = int((~valid).sum())
        arr, index = arr[valid], index[valid]
        ones = np.zeros((self.n, self.fragment_bits), np.int64)
        counts = np.zeros(self.n, np.int64)
        np.add.at(ones, index, arr[:, : self.fragment_bits])
        np.add.at(counts, index, 1)
        voted = _vote(ones, counts[:, None])
        present = counts > 0
        self._last_present = int(present.sum())
        # a symbol with a bit whose copies split evenly is a guess: RS takes it as an erasure (one parity symbol)
        # rather than risk an error (two)
        tied = (2 * ones == counts[:, None]) & present[:, None]
        self.last_tied = int(tied.sum())  # fragment bits, parity included
        tied = tied.reshape(self.n, self.rows, self.symbol_bits).any(axis=2)
        # per symbol row: the RS-decoded data where decoding succeeded; with fewer than k fragments the systematic
        # ones that arrived; a row RS could not correct is unknown (errors were detected in it)
        data = voted[: self.k].reshape(self.k, self.rows, self.symbol_bits)
        known = np.repeat(present[: self.k, None], self.rows, axis=1)
        if present.sum() >= self.k:
            decoded, ok = self._rs_decode(voted, present, tied)
            data = np.where(ok[None, :, None], decoded, data)
            known = np.repeat(ok[None, :], self.k, axis=0)
        bits = data.reshape(-1)[: self.message_bits]
        known = np.repeat(known.reshape(-1), self.symbol_bits)[: self.message_bits]
        return PartialDecode(bits, known, bool(known.all()))

    def _rs_decode(self, voted: np.ndarray, present: np.ndarray, tied: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(k, rows, symbol_bits) decoded data and (rows,) success flags. ``tied``: (n, rows) symbols taken as
        erasures besides the missing fragments. A row succeeds only within the code's bound, 2 * errors + erasures
        <= n - k: reedsolo 1.7 checks a looser one when erasures are given and then returns another codeword without
        an error (measured: (60 bits, n 7, k 3), 4 fragments, one flipped bit: 73 of 200 messages silently wrong)."""
        if self.n == self.k:
            return voted.reshape(self.k, self.rows, self.symbol_bits), np.ones(self.rows, bool)
        import reedsolo

        symbols = _bits_to_int(voted.reshape(-1, self.symbol_bits)).reshape(self.n, self.rows)
        rs = self._codec()
        data = np.zeros((self.k, self.rows), np.int64)
        ok = np.zeros(self.rows, bool)
        for i in range(self.rows):
            erase = np.flatnonzero(~present | (tied[:, i] if tied is not None else False)).tolist()
            if len(erase) > self.n - self.k:
                continue
            try:
                dec, _, errata = rs.decode(bytearray(int(v) for v in symbols[:, i]), erase_pos=erase or None)
            except reedsolo.ReedSolomonError:
                continue
            errors = len(set(int(p) for p in errata) - set(erase))
            if 2 * errors + len(erase) <= self.n - self.k:
                data[:, i] = list(dec)
                ok[i] = True
        return _int_to_bits(data, self.symbol_bits), ok

    def _missing(self, result):
        got = self._last_present  # distinct fragments of the last decode_partial
        if got >= self.k:  # enough fragments: RS found more errors than it can correct
            return [f"Reed-Solomon could not correct every symbol row from the {got} distinct fragments received: too "
                    f"many bit errors"]
        return [f"needs {self.k} distinct fragments of {self.n}, received {got}"]

    def _invalid_reason(self) -> str:
        return (f"their fragment index, the last {self.index_bits} bits, is >= n = {self.n} and names no fragment: "
                f"corrupted bits")

    def min_leak_count(self, num_samples: int, seed: int | None = None) -> int | None:
        counts = np.bincount(self.assignment(num_samples, seed), minlength=self.n)
        if (counts > 0).sum() < self.k:
            return None
        return int(np.sort(counts)[::-1][: self.k - 1].sum() + 1)  # the k-1 commonest fragments, plus one

    def describe(self) -> dict:
        return {**super().describe(), "symbol_bits": self.symbol_bits, "fragment_bits": self.fragment_bits,
                "index_bits": self.index_bits}


CODECS = ("baseline", "amuse", "erasure")


def make_codec(name: str, message_bits: int, n: int = 1, k: int = 1, seed: int = 0) -> Codec:
    """``"baseline"`` (n, k ignored), ``"amuse"`` or ``"erasure"``."""
    if name == "baseline":
        return RepeatCodec(message_bits, seed)
    if name == "amuse":
        return AmuseCodec(message_bits, n, k, seed)
    if name == "erasure":
        return ErasureCodec(message_bits, n, k, seed)
    raise ValueError(f"codec must be one of {list(CODECS)}; got {name!r}")


def random_message(message_bits: int, seed: int = 0) -> np.ndarray:
    """A seeded random message of ``message_bits`` 0/1 bits (uint8)."""
    message_bits = check_int("message_bits", message_bits, 1)
    return np.random.default_rng(check_int("seed", seed, 0)).integers(0, 2, message_bits, dtype=np.uint8)


def random_messages(message_bits: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` seeded random messages of ``message_bits`` 0/1 bits, one per row (uint8, shape (n, message_bits)).

    One stream per (seed, message_bits): other seeds draw independent messages (``random_message(L, seed + i)``
    would give seeds 0 and 1 all but one message in common), and a run of n messages extends one of fewer."""
    message_bits = check_int("message_bits", message_bits, 1)
    n = check_int("n", n, 1)
    rng = np.random.default_rng([check_int("seed", seed, 0), message_bits, 0x6D7367])  # "msg": not random_message's
    return rng.integers(0, 2, (n, message_bits), dtype=np.uint8)


def flip_bits(bits, bit_error_rate, seed: int = 0) -> np.ndarray:
    """Simulated extraction: flip each bit independently with probability ``bit_error_rate`` in [0, 0.5]."""
    ber = parse_fraction("bit_error_rate", bit_error_rate, 0.0, 0.5, low_inclusive=True)
    arr = np.asarray(bits)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError("bits must contain only 0/1 bits")
    flips = np.random.default_rng(check_int("seed", seed, 0)).random(arr.shape) < ber
    return (arr.astype(np.uint8) ^ flips).astype(np.uint8)


def _leak_count(share: float, n_images: int) -> int:
    return max(1, int(round(share * n_images)))


def distinct_leak_shares(shares, n_images: int) -> tuple[list[float], dict[float, float]]:
    """The shares :func:`leak_subset_accuracy` runs for ``n_images`` images: each leaked count (``max(1, round(share
    * n_images))`` images) once, at the first share (in the order given) that leaks it. Returns (shares run, {dropped
    share: the share run in its place}); e.g. 0.01 and 0.02 of 40 images are both 1 image: 0.02 is dropped."""
    n_images = check_int("n_images", n_images, 1)
    kept, dropped, by_count = [], {}, {}
    for share in (parse_fraction("shares", s, 0.0, 1.0) for s in np.atleast_1d(shares)):
        m = _leak_count(share, n_images)
        if m in by_count:
            dropped[share] = by_count[m]
        else:
            by_count[m] = share
            kept.append(share)
    return kept, dropped


def leak_shares_note(shares, n_images: int) -> str:
    """In words, the shares :func:`leak_subset_accuracy` decodes for ``n_images`` images, as its ``share`` column
    gives them (``leaked / n_images``), each with the asked shares it stands for where they differ: "leaked shares
    0.05 (1 image; asked as 0.01, 0.02, 0.05), 0.1, 1 of the 20 images". Captions name these, not the shares as asked
    (0.01 of 20 images leaks 1 image, which tables and figures show as 0.05)."""
    n_images = check_int("n_images", n_images, 1)
    asked = {}  # leaked count -> the shares asked for it, in the order given
    for share in (parse_fraction("shares", s, 0.0, 1.0) for s in np.atleast_1d(shares)):
        asked.setdefault(_leak_count(share, n_images), []).append(share)
    parts = []
    for m in sorted(asked):
        leaked = f"{m / n_images:g}"
        if [f"{s:g}" for s in asked[m]] == [leaked]:
            parts.append(leaked)
        else:
            parts.append(f"{leaked} ({m} image{'s' * (m != 1)}; asked as {', '.join(f'{s:g}' for s in asked[m])})")
    return f"leaked shares {', '.join(parts)} of the {n_images} images"


def distinct_subsets(n_items: int, size: int, count: int,
                     rng: np.random.Generator | int) -> tuple[np.ndarray, bool]:
    """``count`` distinct random ``size``-subsets of range(``n_items``), one per row of an int array, and False; or,
    when there are no more than ``count`` of them (C(n_items, size) <= count), every subset once, in lexicographic
    order, and True (the rows are all subsets, not a sample). Independent draws repeat subsets when C(n_items, size)
    is small (10 draws of 1 image of 40 repeat one with chance 0.71), so an average over them would weight some twice.

    Subsets are drawn as ``rng.choice(n_items, size, replace=False)`` and a repeat (the same images in any order) is
    drawn again; where C(n_items, size) is at most twice ``count`` a random ``count`` of the C subsets' ranks is drawn
    instead (a bounded number of draws). A row's images are in the order drawn. ``rng`` is a NumPy ``Generator`` or
    an integer seed (``np.random.default_rng(seed)``)."""
    if not isinstance(rng, np.random.Generator):
        if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, (int, np.integer)):
            raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)) or an integer seed >= 0; "
                            f"got {type(rng).__name__} {rng!r}")
        if rng < 0:
            raise ValueError(f"rng must be a numpy Generator (np.random.default_rng(seed)) or an integer seed >= 0; "
                             f"got {rng}")
        rng = np.random.default_rng(int(rng))
    n_items = check_int("n_items", n_items, 1)
    size = check_int("size", size, 1, n_items)
    count = check_int("count", count, 1)
    total = math.comb(n_items, size)
    if total <= count:
        return np.array([_unrank(i, n_items, size) for i in range(total)], dtype=np.int64).reshape(total, size), True
    if total <= 2 * count:
        ranks = rng.choice(total, size=count, replace=False)
        return np.array([_unrank(int(i), n_items, size) for i in ranks], dtype=np.int64).reshape(count, size), False
    rows, seen = [], set()
    while len(rows) < count:
        idx = rng.choice(n_items, size=size, replace=False)
        key = tuple(sorted(idx.tolist()))
        if key not in seen:
            seen.add(key)
            rows.append(idx)
    return np.asarray(rows, dtype=np.int64).reshape(count, size), False


def leak_subset_accuracy(codec: Codec, message, extracted, shares, n_subsets: int = 100, seed: int = 0,
                         method: str | None = None):
    """Decode random leaked subsets of the extracted sub-messages; one row per (share, subset).

    For each share, ``n_subsets`` distinct random subsets of ``max(1, round(share * N))`` images are decoded with
    ``decode_partial``, or every subset once where there are no more than ``n_subsets`` of them (C(N, leaked): 1 of
    40 images has 40 subsets, all 40 images one); :func:`distinct_subsets`. Random draws used to repeat subsets there
    and average over the repeats. Shares that round to the same count of images are run once, at the first of them
    (e.g. 0.01 and 0.02 of 40 images are both 1 image: 0.02 is dropped, with a warning; :func:`distinct_leak_shares`
    says which run). Columns: share (the share actually leaked, ``leaked / N``: 1 of 40 images is 0.025),
    requested_share (as asked), method (default ``codec.name``), subset, leaked (images), all_subsets (True: the
    share's rows are every subset of that many images, fewer than ``n_subsets``), bit_acc (bits correct; bits never
    received count as wrong), known (share of bits received), word_acc (the whole message right), recovered (every
    bit received). Returns a pandas DataFrame (tidy, for seaborn).
    """
    import pandas as pd

    msg = _check_message(message, codec.message_bits)
    arr = codec._check_sub_messages(extracted)
    n_subsets = check_int("n_subsets", n_subsets, 1)
    shares, dropped = distinct_leak_shares(shares, len(arr))
    if dropped:
        warnings.warn("leak_subset_accuracy: " + "; ".join(
            f"share {s:g} leaks {_leak_count(s, len(arr))} of {len(arr)} images, as share {k:g}"
            for s, k in dropped.items()) + ": dropped (each count of leaked images is decoded once)", stacklevel=2)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    rows = []
    for share in shares:
        m = _leak_count(share, len(arr))
        subsets, every = distinct_subsets(len(arr), m, n_subsets, rng)
        for j, idx in enumerate(subsets):
            res = codec.decode_partial(arr[idx])
            correct = (res.bits == msg) & res.known
            rows.append({"share": m / len(arr), "requested_share": share, "method": method or codec.name,
                         "subset": j, "leaked": m, "all_subsets": every,
                         "bit_acc": float(correct.mean()), "known": float(res.known.mean()),
                         "word_acc": float(correct.all()), "recovered": bool(res.complete)})
    return pd.DataFrame(rows)


def choose_erasure_k(message_bits: int, n: int, max_sub_message_bits: int) -> int:
    """The smallest k (best guarantee, ``rho = (k - 1) / n``) whose :class:`ErasureCodec` sub-message fits in
    ``max_sub_message_bits`` bits; used to compare with AMUSE at (at most) the same bits per image."""
    message_bits = check_int("message_bits", message_bits, 1)
    n = check_int("n", n, 1, 255)
    max_bits = check_int("max_sub_message_bits", max_sub_message_bits, 1)
    for k in range(1, n + 1):
        if ErasureCodec(message_bits, n, k).sub_message_bits <= max_bits:
            return k
    smallest = ErasureCodec(message_bits, n, n).sub_message_bits
    raise ValueError(f"max_sub_message_bits must be >= {smallest} for an erasure code with n = {n} "
                     f"and {message_bits} message bits; got {max_bits}")


def choose_erasure_n(message_bits: int, max_sub_message_bits: int, n=None, preferred: int = 31) -> int:
    """The erasure code's fragment count for a comparison at (at most) ``max_sub_message_bits`` bits per image:
    ``n`` as given when some k fits it (:func:`choose_erasure_k`), refused otherwise naming the values that fit; with
    ``n`` None, ``preferred`` where it fits, else the largest n below it that fits, else the smallest that fits."""
    message_bits = check_int("message_bits", message_bits, 1)
    max_bits = check_int("max_sub_message_bits", max_sub_message_bits, 1)
    fits = [m for m in range(1, 256) if ErasureCodec(message_bits, m, m).sub_message_bits <= max_bits]
    if not fits:
        raise ValueError(f"no erasure code (n = 1-255) fits {max_bits} bits per image for {message_bits} message bits")
    span = f"{fits[0]}-{fits[-1]}" if fits == list(range(fits[0], fits[-1] + 1)) else str(fits)
    if n is not None:
        n = check_int("erasure_n", n, 1, 255)
        if n not in fits:
            raise ValueError(f"erasure_n = {n} cannot fit {max_bits} bits per image ({message_bits} message bits); "
                             f"erasure_n values that fit: {span}")
        return n
    below = [m for m in fits if m <= preferred]
    return below[-1] if below else fits[0]


def tradeoff_table(message_bits: int, n_max: int = 16):
    """Bits per image against guaranteed leak ratio ``rho`` for every AMUSE and erasure (n, k) with n <= n_max,
    plus the baseline; one row per codec (pandas DataFrame, columns of :meth:`Codec.describe`). AMUSE pairs whose
    combination index needs more than :data:`MAX_ORDERING_BITS` bits (from n = 66) are left out: never minimal."""
    import pandas as pd

    message_bits = check_int("message_bits", message_bits, 1)
    n_max = check_int("n_max", n_max, 1, 255)
    rows = [RepeatCodec(message_bits).describe()]
    rows += [AmuseCodec(message_bits, n, k).describe() for n in range(1, min(n_max, message_bits) + 1)
             for k in range(1, n + 1) if ceil_log2(math.comb(n, k)) <= MAX_ORDERING_BITS]
    rows += [ErasureCodec(message_bits, n, k).describe() for n in range(1, n_max + 1) for k in range(1, n + 1)]
    return pd.DataFrame(rows)


def recovery_share(df, by=("method",), column: str = "word_acc"):
    """From :func:`leak_subset_accuracy` rows: per group, the smallest leaked share from which every subset at that
    share and all larger ones has ``column`` = 1 (default ``word_acc``: the whole message decoded exactly;
    ``recovered``: every bit received, right or wrong). NaN if no share qualifies. Returns a DataFrame with the
    ``by`` columns and ``min_share_recovered``."""
    import pandas as pd

    by = list(by)
    if column not in df.columns:
        raise ValueError(f"column must be one of {list(df.columns)}; got {column!r}")
    rate = df.groupby(by + ["share"])[column].mean().reset_index().rename(columns={column: "recovered"})
    out = []
    for key, g in rate.groupby(by):
        g = g.sort_values("share")
        failing = g.loc[g["recovered"] < 1, "share"]
        ok = g.loc[g["share"] > failing.max(), "share"] if len(failing) else g["share"]
        out.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))),
                    "min_share_recovered": float(ok.min()) if len(ok) else float("nan")})
    return pd.DataFrame(out)
