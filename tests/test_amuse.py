import itertools
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from dovlib.amuse import (PAPER_SUB_MESSAGE_BITS, AmuseCodec, ErasureCodec, MissingChunksError, RepeatCodec,
                          ceil_log2, choose_erasure_k, choose_nk, distinct_leak_shares, flip_bits, leak_shares_note,
                          leak_subset_accuracy, make_codec, random_message, random_messages, recovery_share,
                          tradeoff_table)


def _brute_choose(L, rho):
    """Reference: every (n, k) with 1 <= k <= n <= L, no pruning."""
    best = None
    for n in range(1, L + 1):
        for k in range(1, n + 1):
            if (n - k) / n > rho + 1e-9:
                continue
            bits = k * math.ceil(L / n) + math.ceil(math.log2(math.comb(n, k)))
            if best is None or bits < best[0]:
                best = (bits, n, k)
    return best


@pytest.mark.parametrize("key", sorted(PAPER_SUB_MESSAGE_BITS))
def test_choose_nk_reproduces_paper(key):
    L, rho = key
    (n, k), bits = PAPER_SUB_MESSAGE_BITS[key]
    assert choose_nk(L, rho) == (n, k)
    codec = AmuseCodec.from_rho(L, rho)
    assert codec.sub_message_bits == bits
    assert codec.rho <= rho


@pytest.mark.parametrize("L,rho", [(30, 0.5), (57, 0.7), (100, 0.25), (64, 0.9), (13, 0.5), (40, "3/10")])
def test_choose_nk_matches_unpruned_search(L, rho):
    bits, n, k = _brute_choose(L, float(eval(str(rho))))
    got = choose_nk(L, rho)
    assert AmuseCodec(L, *got).sub_message_bits == bits
    assert got == (n, k)  # same tie-break: smallest n, then smallest k


def test_paper_special_cases():
    assert AmuseCodec(300, 3, 2).sub_message_bits == 202
    assert AmuseCodec(300, 5, 1).min_unique_sub_messages == 5
    assert AmuseCodec(300, 5, 2).min_unique_sub_messages == 7
    # paper rule ceil(log2 C): (2, 1) has C = 2 -> 1 ordering bit (the released code would give 2 -> 17 bits)
    assert AmuseCodec(30, 2, 1).ordering_bits == 1 and AmuseCodec(30, 2, 1).sub_message_bits == 16
    assert AmuseCodec(30, 3, 3).ordering_bits == 0
    assert [ceil_log2(x) for x in (1, 2, 3, 4, 5, 8, 9)] == [0, 1, 2, 2, 3, 3, 4]


def test_majority_vote_ties_give_zero_and_majorities_win():
    """Two copies of a chunk that disagree vote 0 (the documented tie rule); with a third copy the majority wins."""
    codec = AmuseCodec(4, 2, 1)  # two 2-bit chunks, one per image, plus 1 ordering bit
    message = np.array([1, 1, 1, 0], dtype=np.uint8)
    subs = codec.encode(message, 4)
    carries_0 = np.nonzero(subs[:, -1] == 0)[0]  # the ordering bit: combination 0 holds chunk 0
    assert len(carries_0) == 2 and (subs[carries_0, :2] == 1).all()
    tied = subs.copy()
    tied[carries_0[0], :2] = 0  # one copy says 00, the other 11
    assert codec.decode(tied).tolist() == [0, 0, 1, 0]
    third = np.vstack([tied, subs[carries_0[1]]])  # a third copy saying 11: two against one
    assert codec.decode(third).tolist() == [1, 1, 1, 0]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 3\]; got 4"):
        AmuseCodec(100, 3, 4)
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, 10\]; got 11"):  # n <= L
        AmuseCodec(10, 11, 1)
    with pytest.raises(ValueError, match="rho_max"):
        choose_nk(100, 1.0)
    with pytest.raises(ValueError, match="rho_max"):
        choose_nk(100, 0)
    with pytest.raises(ValueError, match="rho_max"):
        choose_nk(100, 1.5)
    codec = AmuseCodec(20, 4, 2)
    with pytest.raises(ValueError, match="0/1"):
        codec.encode(np.full(20, 2), 10)
    with pytest.raises(ValueError, match="message_bits = 20"):
        codec.encode(np.zeros(19), 10)
    with pytest.raises(ValueError, match="sub_messages"):
        codec.decode(np.zeros((3, codec.sub_message_bits + 1)))
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, 255\]; got 256"):
        ErasureCodec(100, 256, 2)
    with pytest.raises(ValueError, match="codec"):
        make_codec("zip", 10)
    with pytest.raises(ValueError, match="bit_error_rate"):
        flip_bits(np.zeros(4), 0.6)


def test_encode_layout_and_balance():
    L, n, k = 23, 4, 2
    codec = AmuseCodec(L, n, k, seed=3)
    msg = random_message(L, seed=1)
    subs = codec.encode(msg, 60)
    assert subs.shape == (60, codec.sub_message_bits) and subs.dtype == np.uint8
    padded = np.concatenate([msg, np.zeros(n * codec.chunk_bits - L, np.uint8)]).reshape(n, -1)
    combos = list(itertools.combinations(range(n), k))
    idx = subs[:, -codec.ordering_bits:] @ (1 << np.arange(codec.ordering_bits)[::-1])
    for row, i in zip(subs, idx):  # k chunks in ascending order, then the lexicographic combination index
        assert np.array_equal(row[: k * codec.chunk_bits], padded[list(combos[i])].reshape(-1))
    counts = np.bincount(idx, minlength=len(combos))
    assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("n,k", [(5, 1), (5, 2), (4, 3), (6, 3)])
def test_any_subset_above_rho_recovers(n, k):
    L, N = 100, 20 * math.comb(n, k)
    codec = AmuseCodec(L, n, k)
    msg = random_message(L, seed=n * 10 + k)
    subs = codec.encode(msg, N)
    need = codec.min_leak_count(N)
    assert need == int(round(codec.rho * N)) + 1  # N is a multiple of C(n, k): exactly rho * N + 1
    rng = np.random.default_rng(0)
    for _ in range(200):
        leaked = subs[rng.choice(N, size=need, replace=False)]
        assert np.array_equal(codec.decode(leaked), msg)
    # the worst subset of size need - 1: every image lacking chunk 0
    combos = [codec.combination(int(i)) for i in subs[:, -codec.ordering_bits:] @ (1 << np.arange(
        codec.ordering_bits)[::-1])] if codec.ordering_bits else [tuple(range(n))] * N
    lacking = np.array([0 not in c for c in combos])
    assert lacking.sum() == need - 1
    with pytest.raises(MissingChunksError) as err:
        codec.decode(subs[lacking])
    assert "chunk 0" in str(err.value)


def test_missing_chunks_are_explicit_in_partial_decode():
    codec = AmuseCodec(50, 5, 1)
    msg = np.ones(50, np.uint8)
    subs = codec.encode(msg, 10)
    idx = subs[:, -3:] @ np.array([4, 2, 1])
    part = codec.decode_partial(subs[idx != 2])  # combination 2 = chunk 2
    assert not part.complete
    assert np.array_equal(np.flatnonzero(~part.known), np.arange(20, 30))
    assert part.bits[part.known].all()
    assert codec.missing_chunks(subs[idx != 2]) == [2]


def test_all_padding_chunks_are_not_needed():
    # L = 10, n = 7: chunks of 2 bits, so chunks 5 and 6 hold only the zero padding (bits 10-13)
    codec = AmuseCodec(10, 7, 1)
    assert codec.chunk_bits == 2 and codec.data_chunks == 5
    msg = random_message(10, seed=4)
    subs = codec.encode(msg, 70)  # 10 images per chunk
    labels = subs[:, -codec.ordering_bits:] @ (1 << np.arange(codec.ordering_bits)[::-1])
    data_only = subs[labels < 5]
    assert np.array_equal(codec.decode(data_only), msg) and codec.missing_chunks(data_only) == []
    # the worst subset lacking a message-bearing chunk: the 60 images without chunk 0 (it counted the padding
    # chunks as the rarest before, which gives the same 61 here but overstated it when they were rarer)
    assert codec.min_leak_count(70) == 61
    assert codec.missing_chunks(subs[labels != 0]) == [0]
    # seed 4, 13 images: every message-bearing chunk is held twice and padding chunk 6 once; any 12 images
    # hold the message (counting chunk 6 as needed gave 13, i.e. all of them)
    codec = AmuseCodec(10, 7, 1, seed=4)
    assert np.bincount(codec.assignment(13), minlength=7).tolist() == [2, 2, 2, 2, 2, 2, 1]
    assert codec.min_leak_count(13) == 12


def test_corrupted_ordering_index_is_dropped():
    codec = AmuseCodec(30, 5, 2)  # C = 10, 4 ordering bits: 10..15 are invalid
    msg = random_message(30, seed=2)
    subs = codec.encode(msg, 40)
    bad = subs[:5].copy()
    bad[:, -4:] = 1  # index 15
    bad[:, : -4] ^= 1  # garbage payload
    out = codec.decode(np.concatenate([subs, bad]))
    assert np.array_equal(out, msg) and codec.last_dropped == 5


def test_missing_chunks_error_says_how_many_sub_messages_were_dropped_as_invalid_and_why():
    codec = AmuseCodec(10, 5, 2)  # C(5, 2) = 10 combinations, 4 ordering bits: indices 10..15 name none
    subs = codec.encode(random_message(10, seed=1), 20)
    subs[:, -4:] = 1  # index 15 in every sub-message
    with pytest.raises(MissingChunksError, match=r"20 of the 20 were dropped as invalid: their ordering index, the "
                                                 r"last 4 bits, is >= C\(n, k\) = 10") as err:
        codec.decode(subs)
    assert err.value.dropped == 20 and err.value.missing == [f"chunk {c}" for c in range(5)]
    some = codec.encode(random_message(10, seed=1), 20)[:2]  # 2 valid sub-messages hold only 4 of the 5 chunks
    with pytest.raises(MissingChunksError, match=r"do not hold the whole message; missing") as err:
        codec.decode(some)
    assert err.value.dropped == 0 and "invalid" not in str(err.value)
    erasure = ErasureCodec(20, 6, 3)  # 3 index bits: 6 and 7 name no fragment
    frags = erasure.encode(random_message(20), 12)
    frags[:, -3:] = 1
    with pytest.raises(MissingChunksError, match=r"12 of the 12 were dropped as invalid: their fragment index.* >= n "
                                                 r"= 6"):
        erasure.decode(frags)


def _tied_fragment(codec):
    """Fragments 0-2 of an (n, 3) erasure code plus a copy of fragment 2 with its first bit flipped (a tie)."""
    subs = codec.encode(random_message(codec.message_bits), codec.n)[[0, 1, 2, 2]]
    subs[3, 0] ^= 1
    return subs


@pytest.mark.parametrize("make, subs", [
    (lambda: AmuseCodec(10, 5, 2), lambda c: c.encode(random_message(10, seed=1), 20)[:2]),  # 4 of 5 chunks
    (lambda: ErasureCodec(20, 6, 3), lambda c: c.encode(random_message(20), 12)[:2]),  # too few fragments
    (lambda: ErasureCodec(60, 7, 3), lambda c: _tied_fragment(c))])  # k fragments, one bit tied: too many errors
def test_why_incomplete_gives_decodes_error_from_one_decode_partial(make, subs):
    """Notebook 09 decoded a failing codec twice, decode_partial for the bits and decode for the reason; the reason
    now comes from the partial result itself, word for word decode's error, and None when the message is whole."""
    codec = make()
    arr = subs(codec)
    with pytest.raises(MissingChunksError) as err:
        codec.decode(arr)
    res = codec.decode_partial(arr)
    exc = codec.why_incomplete(res, len(arr))
    assert isinstance(exc, MissingChunksError) and str(exc) == str(err.value)
    assert exc.missing == err.value.missing and exc.dropped == err.value.dropped
    whole = codec.encode(random_message(codec.message_bits, seed=2), 30)
    assert codec.why_incomplete(codec.decode_partial(whole), 30) is None


@pytest.mark.parametrize("make", [lambda: RepeatCodec(300), lambda: AmuseCodec(300, 5, 2),
                                  lambda: ErasureCodec(300, 15, 5)])
def test_majority_vote_survives_two_percent_bit_errors(make):
    codec = make()
    msg = random_message(300, seed=5)
    noisy = flip_bits(codec.encode(msg, 500), 0.02, seed=6)
    part = codec.decode_partial(noisy)
    assert part.complete
    # the issue asks for >= 99% of the bits; with 100-500 copies of each bit and 2% flips a vote is wrong with
    # probability far below 1e-9, so every bit must come back
    assert np.array_equal(part.bits, msg)


@pytest.mark.parametrize("n,k", [(7, 3), (15, 5), (31, 4), (4, 4), (1, 1)])
def test_erasure_any_k_fragments_recover(n, k):
    L = 97
    codec = ErasureCodec(L, n, k)
    msg = random_message(L, seed=n + k)
    frags = codec.fragments(msg)
    assert frags.shape == (n, codec.fragment_bits)
    # systematic: the first k fragments are the zero-padded message
    assert np.array_equal(frags[:k].reshape(-1)[:L], msg)
    index = np.array([[int(b) for b in format(i, f"0{codec.index_bits}b")] if codec.index_bits else []
                      for i in range(n)], dtype=np.uint8).reshape(n, codec.index_bits)
    rng = np.random.default_rng(0)
    for _ in range(30):
        pick = rng.choice(n, size=k, replace=False)
        subs = np.concatenate([frags[pick], index[pick]], axis=1)
        assert np.array_equal(codec.decode(subs), msg)
    if k > 1:
        pick = np.arange(1, k)  # k - 1 data fragments: fragment 0 missing, too few to decode
        part = codec.decode_partial(np.concatenate([frags[pick], index[pick]], axis=1))
        assert not part.complete and np.flatnonzero(~part.known).tolist() == list(range(codec.fragment_bits))
        assert np.array_equal(part.bits[part.known], msg[part.known])


def test_erasure_corrects_a_wrong_fragment_and_counts():
    codec = ErasureCodec(64, 15, 5)
    assert codec.rho == pytest.approx(4 / 15) and codec.min_unique_sub_messages == 5
    assert codec.sub_message_bits == codec.fragment_bits + 4
    msg = random_message(64, seed=9)
    subs = codec.encode(msg, 15)  # one copy of each fragment
    subs[0, :4] ^= 1  # one fragment wrong; 15 - 5 = 10 parity symbols correct it
    assert np.array_equal(codec.decode(subs), msg)
    assert codec.min_leak_count(150) == 4 * 10 + 1
    with pytest.raises(MissingChunksError, match="needs 5 distinct fragments of 15, received 4"):
        codec.decode(codec.encode(msg, 4))  # how many arrived: notebook 09's reading says why a decode failed


def test_erasure_rows_rs_cannot_correct_are_unknown_not_returned_as_right():
    """Beyond the correction bound RS detects the errors it cannot fix: those rows are unknown, so decode raises
    (it returned the corrupted systematic symbols, 30-60 wrong bits, as a complete message) and subset accuracy
    counts them as not recovered."""
    codec = ErasureCodec(100, 31, 10)  # 21 parity symbols: 10 wrong fragments corrected, 13 not
    msg = random_message(100, seed=0)
    subs = codec.encode(msg, 31)  # one copy of each fragment
    bad = subs.copy()
    bad[:13, : codec.fragment_bits] ^= 1  # 13 fragments, every payload bit wrong (systematic ones among them)
    part = codec.decode_partial(bad)
    assert not part.complete and not part.known.any()  # every row failed: nothing is claimed as known
    with pytest.raises(MissingChunksError):
        codec.decode(bad)
    fixable = subs.copy()
    fixable[:10, : codec.fragment_bits] ^= 1  # within the bound: corrected exactly
    assert np.array_equal(codec.decode(fixable), msg)
    acc = leak_subset_accuracy(codec, msg, bad, shares=[1.0], n_subsets=2)
    assert (~acc["recovered"]).all() and (acc["bit_acc"] == 0).all()


def test_erasure_never_returns_a_miscorrected_message_with_erasures_beyond_the_bound():
    """reedsolo 1.7 checks a looser bound when erasures are given and returned another codeword without an error:
    (60 bits, n 7, k 3), 4 fragments, one flipped bit (3 erasures + 1 error > 4 parity symbols) gave 73 of 200
    messages silently wrong. Every such decode is refused now, naming the errors, not missing fragments."""
    codec = ErasureCodec(60, 7, 3)
    g = np.random.default_rng(0)
    outcomes = {"right": 0, "wrong": 0, "refused": 0}
    for _ in range(60):
        msg = g.integers(0, 2, 60).astype(np.uint8)
        subs = codec.encode(msg, 7)[g.choice(7, 4, replace=False)]
        subs[g.integers(0, 4), g.integers(0, codec.fragment_bits)] ^= 1
        try:
            outcomes["right" if np.array_equal(codec.decode(subs), msg) else "wrong"] += 1
        except MissingChunksError as e:
            outcomes["refused"] += 1
            assert "could not correct every symbol row from the 4 distinct fragments received" in str(e)
    assert outcomes == {"right": 0, "wrong": 0, "refused": 60}
    # within the bound, 2 * errors + erasures <= n - k: all 7 fragments, two of them wrong, are corrected
    msg = random_message(60, seed=3)
    subs = codec.encode(msg, 7)
    subs[[1, 5], :3] ^= 1
    assert np.array_equal(codec.decode(subs), msg)


def test_erasure_takes_a_symbol_whose_copies_split_evenly_as_an_erasure():
    """Two copies of a fragment that disagree on a bit: a coin flip as an error costs two parity symbols, as an
    erasure one. (7, 3) from 4 fragments: 3 missing + 1 tied = 4 erasures <= 4 parity symbols, decoded; as a guess,
    a wrong one (3 + 2 = 5) could not be corrected."""
    codec = ErasureCodec(60, 7, 3)
    for seed in range(12):
        msg = random_message(60, seed=seed)
        good = codec.encode(msg, 7)[[0, 1, 2, 3]]
        other = good[2].copy()
        other[0] ^= 1  # a second copy of fragment 2, wrong in its first bit: that bit's vote is a tie
        part = codec.decode_partial(np.concatenate([good, other[None]]))
        assert part.complete and np.array_equal(part.bits, msg), seed


def test_repeat_codec():
    codec = RepeatCodec(40)
    assert codec.rho == 0 and codec.sub_message_bits == 40 and codec.min_unique_sub_messages == 1
    msg = random_message(40, seed=1)
    subs = codec.encode(msg, 5)
    subs[0] ^= 1
    subs[1, :20] ^= 1
    assert np.array_equal(codec.decode(subs), msg)
    with pytest.raises(MissingChunksError):
        codec.decode(np.zeros((0, 40), np.uint8))


def test_random_message_is_seeded_and_balanced():
    msg = random_message(1000, seed=7)
    assert msg.dtype == np.uint8 and msg.shape == (1000,) and set(np.unique(msg)) == {0, 1}
    assert np.array_equal(random_message(1000, seed=7), msg)  # the seed alone decides the message
    others = [random_message(1000, seed=s) for s in (0, 1, 8)]
    assert all(not np.array_equal(o, msg) for o in others)
    assert not np.array_equal(others[0], others[1])
    for m in [msg, *others]:  # fair bits: 500 of 1000 ones, give or take 3 standard deviations (16 bits)
        assert 450 < int(m.sum()) < 550


def test_random_messages_of_other_seeds_share_none():
    """Notebooks 07 and 08 draw n messages per seed: with random_message(L, seed + i), seeds 0 and 1 shared 9 of 10
    messages; each seed is its own stream, and a longer run extends a shorter one of the same seed."""
    L, n = 64, 10
    streams = {s: random_messages(L, n, seed=s) for s in range(5)}
    for s, msgs in streams.items():
        assert msgs.dtype == np.uint8 and msgs.shape == (n, L) and set(np.unique(msgs)) <= {0, 1}
        assert np.array_equal(random_messages(L, n, seed=s), msgs)  # seeded
        assert len({m.tobytes() for m in msgs}) == n  # distinct within a run
        assert np.array_equal(random_messages(L, 3, seed=s), msgs[:3])  # 3 messages are the first 3 of 10
    rows = [m.tobytes() for msgs in streams.values() for m in msgs]
    assert len(set(rows)) == len(rows)  # no message of one seed is a message of another
    # nor the single owner message of that seed or the next (notebooks 09 and 10 use random_message(L, seed))
    assert not any(np.array_equal(m, random_message(L, s)) for msgs in streams.values() for m in msgs for s in range(6))
    assert not np.array_equal(random_messages(32, 1, seed=0)[0], random_messages(33, 1, seed=0)[0, :32])
    with pytest.raises(ValueError, match="seed must be an integer"):
        random_messages(L, n, seed=-1)
    with pytest.raises(ValueError, match="n must be an integer"):
        random_messages(L, 0)
    with pytest.raises(ValueError, match="message_bits must be an integer"):
        random_messages(0, n)


def test_flip_bits_rate():
    bits = np.zeros((200, 100), np.uint8)
    flipped = flip_bits(bits, 0.1, seed=0)
    assert 0.09 < flipped.mean() < 0.11
    assert np.array_equal(flip_bits(bits, 0, seed=0), bits)
    # reproducible per seed, other seeds flip other bits, each at the rate
    assert np.array_equal(flip_bits(bits, 0.1, seed=0), flipped)
    for seed in (1, 2):
        other = flip_bits(bits, 0.1, seed=seed)
        assert not np.array_equal(other, flipped) and 0.09 < other.mean() < 0.11
        assert (other & flipped).mean() < 0.02  # independent draws share about 0.1 * 0.1 of the bits
    assert 0.29 < flip_bits(bits, 0.3, seed=0).mean() < 0.31
    # a flip, not a write: ones become zeros at the same positions, and the input is left as it was
    ones = np.ones_like(bits)
    assert np.array_equal(flip_bits(ones, 0.1, seed=0), 1 - flipped) and (ones == 1).all()
    assert (flip_bits(ones, 0.5, seed=3) == 0).mean() == pytest.approx(0.5, abs=0.01)


def test_leak_subset_accuracy_table():
    L = 60
    codec = AmuseCodec(L, 5, 1)
    msg = random_message(L, seed=0)
    subs = codec.encode(msg, 50)
    df = leak_subset_accuracy(codec, msg, subs, shares=[0.02, 0.5, 0.82], n_subsets=20, seed=1)
    assert isinstance(df, pd.DataFrame) and len(df) == 60
    assert set(df.columns) >= {"share", "method", "bit_acc", "word_acc", "recovered", "known"}
    assert (df["method"] == "amuse").all()
    by = df.groupby("share")
    assert by["recovered"].mean()[0.82] == 1.0 and by["bit_acc"].mean()[0.82] == 1.0  # 41 > rho * 50 images
    one = df[df.share == 0.02]  # a single image: one chunk of five
    assert np.allclose(one["known"], 12 / 60) and not one["recovered"].any()
    assert (df["bit_acc"] <= df["known"] + 1e-12).all()
    with pytest.raises(ValueError, match="shares"):
        leak_subset_accuracy(codec, msg, subs, shares=[1.5])
    # shares are recorded as leaked: 0.01 and 0.02 of 40 images are both 1 image, a share of 0.025
    few = leak_subset_accuracy(RepeatCodec(L), msg, RepeatCodec(L).encode(msg, 40), shares=[0.01, 0.05],
                               n_subsets=3)
    assert few["leaked"].tolist() == [1] * 3 + [2] * 3 and few["share"].tolist() == [0.025] * 3 + [0.05] * 3
    assert few["requested_share"].tolist() == [0.01] * 3 + [0.05] * 3
    assert recovery_share(few)["min_share_recovered"].tolist() == [0.025]  # not the requested 0.01


def test_leak_subset_accuracy_runs_each_leaked_count_once():
    """Shares that round to the same number of images are one experiment: run once, at the first share asked for
    that count, not n_subsets times per share (which gave that count twice the subsets); the dropped shares are
    named in a warning, and distinct_leak_shares says beforehand which shares run."""
    L = 60
    msg = random_message(L, seed=0)
    subs = RepeatCodec(L).encode(msg, 40)
    with pytest.warns(UserWarning, match=r"0\.02 .*1 of 40 images.* as share 0\.01"):
        few = leak_subset_accuracy(RepeatCodec(L), msg, subs, shares=[0.01, 0.02, 0.05], n_subsets=3)
    assert few["leaked"].tolist() == [1] * 3 + [2] * 3 and few["subset"].tolist() == [0, 1, 2] * 2
    assert few["requested_share"].tolist() == [0.01] * 3 + [0.05] * 3
    assert few.groupby("share").size().tolist() == [3, 3]  # n_subsets per leaked count
    # the same subsets as asking for the kept shares alone, so dropping changes nothing else
    pd.testing.assert_frame_equal(few, leak_subset_accuracy(RepeatCodec(L), msg, subs, [0.01, 0.05], n_subsets=3))
    kept, dropped = distinct_leak_shares([0.01, 0.02, 0.05, 0.06, 1.0], 40)
    assert kept == [0.01, 0.05, 1.0] and dropped == {0.02: 0.01, 0.06: 0.05}  # dropped -> the share run instead
    assert distinct_leak_shares([0.5, 0.25], 4) == ([0.5, 0.25], {})  # order as given
    assert distinct_leak_shares([0.001, 0.01], 40) == ([0.001], {0.01: 0.001})  # at least one image
    with pytest.raises(ValueError, match="shares"):
        distinct_leak_shares([0.0], 40)


def test_leak_shares_are_told_apart_by_rounded_image_counts_not_message_bits():
    """The leaked count is ``round(share * n_images)`` (at least 1): 0.29 and 0.3 of 10 images are both 3 (2.9 rounds
    up), and 0.05 and 0.06 of 40 images both 2, though of a 60-bit message they would be 3 and 4 bits."""
    assert distinct_leak_shares([0.29, 0.3], 10) == ([0.29], {0.3: 0.29})
    assert distinct_leak_shares([0.21, 0.3], 10) == ([0.21, 0.3], {})  # 2 and 3 images
    with pytest.raises(ValueError, match="n_images"):
        distinct_leak_shares([0.5], 0)
    L = 60
    msg = random_message(L, seed=0)
    subs = RepeatCodec(L).encode(msg, 40)
    with pytest.warns(UserWarning, match=r"share 0\.06 leaks 2 of 40 images, as share 0\.05"):
        df = leak_subset_accuracy(RepeatCodec(L), msg, subs, shares=[0.05, 0.06], n_subsets=2)
    assert df["requested_share"].tolist() == [0.05] * 2 and df["leaked"].tolist() == [2] * 2


def test_recovery_share_and_tradeoff():
    rows = [{"share": s, "method": "x", "word_acc": w, "recovered": True}
            for s, w in [(0.1, 0.0), (0.2, 1.0), (0.3, 0.0), (0.4, 1.0), (0.5, 1.0)]]
    df = pd.DataFrame(rows)
    assert recovery_share(df)["min_share_recovered"].tolist() == [0.4]  # 0.3 failed again
    assert recovery_share(df, column="recovered")["min_share_recovered"].tolist() == [0.1]
    with pytest.raises(ValueError, match="column"):
        recovery_share(df, column="nope")
    trade = tradeoff_table(30, n_max=4)
    assert len(trade) == 1 + 2 * 10
    amuse = trade[trade.codec == "amuse"]
    assert np.allclose(amuse["rho"], (amuse["n"] - amuse["k"]) / amuse["n"])
    wide = tradeoff_table(300, n_max=70)  # AMUSE pairs past 62 ordering bits left out, not a crash
    big = wide[(wide.codec == "amuse") & (wide.n > 65)]
    assert len(big) and (big.sub_message_bits - np.ceil(300 / big.n) * big.k <= 62).all()
    assert len(wide[wide.codec == "erasure"]) == 70 * 71 // 2
    k = choose_erasure_k(300, 31, 63)
    assert ErasureCodec(300, 31, k).sub_message_bits <= 63 < ErasureCodec(300, 31, k - 1).sub_message_bits
    with pytest.raises(ValueError, match="max_sub_message_bits"):
        choose_erasure_k(300, 31, 5)


def test_choose_erasure_n_prefers_31_and_otherwise_the_largest_that_fits():
    from dovlib.amuse import choose_erasure_n

    assert choose_erasure_n(300, 63) == 31  # the paper's L = 300 at rho 0.8: 31 fragments fit 63 bits
    # L = 30 at rho 0.8 (9 bits per image, a paper setting): 31 needs 10 bits (5 index bits + a 5-bit symbol)
    n = choose_erasure_n(30, 9)
    assert n == 16 and ErasureCodec(30, 16, 16).sub_message_bits <= 9 < ErasureCodec(30, 17, 17).sub_message_bits
    assert choose_erasure_n(30, 9, n=5) == 5
    # nothing fits at or below the preferred n (3,000 bits in 80 per image need 42 fragments): the smallest that fits
    assert choose_erasure_n(3000, 80) == 42 and ErasureCodec(3000, 41, 41).sub_message_bits > 80
    assert choose_erasure_n(3000, 120, preferred=10) == 27 and choose_erasure_n(3000, 120) == 31
    with pytest.raises(ValueError, match=r"erasure_n = 31 cannot fit 9 bits per image \(30 message bits\); "
                                         r"erasure_n values that fit: 5-16"):
        choose_erasure_n(30, 9, n=31)
    with pytest.raises(ValueError, match="no erasure code"):
        choose_erasure_n(300, 2)
    with pytest.raises(ValueError, match="erasure_n must be an integer in"):
        choose_erasure_n(30, 9, n=0)


def test_ordering_indices_up_to_62_bits_round_trip_and_larger_ones_are_refused():
    """Combination indices are packed into int64: 62 ordering bits work end to end, more are refused clearly
    (C(100, 50) used to overflow inside encode)."""
    codec = AmuseCodec(130, 65, 29)
    assert codec.ordering_bits == 62
    message = np.random.default_rng(0).integers(0, 2, 130).astype(np.uint8)
    assert np.array_equal(codec.decode(codec.encode(message, 600)), message)
    with pytest.raises(ValueError, match=r"\(n, k\) = \(100, 50\) has C\(n, k\) = .* 97 ordering bits; at most 62"):
        AmuseCodec(100, 100, 50)


@pytest.mark.parametrize("name,cls,n,k", [("baseline", RepeatCodec, 1, 1), ("amuse", AmuseCodec, 6, 2),
                                          ("erasure", ErasureCodec, 7, 3)])
def test_make_codec_builds_each_method_with_its_parameters(name, cls, n, k):
    L, seed, num = 40, 5, 42
    codec = make_codec(name, L, n=n, k=k, seed=seed)
    assert type(codec) is cls and codec.name == name
    assert (codec.message_bits, codec.n, codec.k, codec.seed) == (L, n, k, seed)
    direct = RepeatCodec(L, seed) if cls is RepeatCodec else cls(L, n, k, seed)
    assert codec.describe() == direct.describe()
    msg = random_message(L, seed=3)
    subs = codec.encode(msg, num)
    assert subs.shape == (num, direct.sub_message_bits)
    assert np.array_equal(subs, direct.encode(msg, num))  # same seed -> same assignment of labels to images
    assert np.array_equal(codec.decode(subs), msg)
    if cls is not RepeatCodec:  # the seed reaches the assignment: another seed gives another order
        assert not np.array_equal(codec.assignment(num), make_codec(name, L, n=n, k=k, seed=0).assignment(num))
        assert codec.sub_message_bits > 0 and codec.num_labels == (math.comb(n, k) if cls is AmuseCodec else n)


def test_make_codec_baseline_ignores_n_and_k():
    codec = make_codec("baseline", 12, n=4, k=2, seed=1)
    assert type(codec) is RepeatCodec and (codec.n, codec.k, codec.seed) == (1, 1, 1)
    assert codec.sub_message_bits == 12


def test_min_leak_count_on_unbalanced_assignments_is_the_worst_case():
    """With 7 images over C(4, 2) = 6 combinations one combination is drawn twice: the guarantee is the worst subset
    (checked by brute force), not the best. The erasure code's: the k - 1 commonest fragments can fill many images."""
    c = AmuseCodec(20, 4, 2, seed=0)
    combos = [c.combination(int(i)) for i in c.assignment(7)]
    covers = lambda s: set().union(*[combos[i] for i in s]) == {0, 1, 2, 3}  # noqa: E731
    brute = next(m for m in range(1, 8) if all(covers(s) for s in itertools.combinations(range(7), m)))
    assert c.min_leak_count(7) == brute == 5
    assert c.min_leak_count(1) is None  # one image holds 2 of 4 chunks
    e = ErasureCodec(64, 15, 5)
    assert e.min_leak_count(17) == 7  # two fragments twice: 2 + 2 + 1 + 1 images hold only 4 distinct
    assert e.min_leak_count(3) is None  # 3 images cannot hold 5 distinct fragments


def test_leak_subset_word_accuracy_never_counts_bits_not_received():
    """A missing chunk decodes as unknown, whatever its placeholder value: with an all-zero message a placeholder of 0
    would look right, yet the message was not recovered."""
    codec = AmuseCodec(20, 4, 1, seed=0)
    message = np.zeros(20, dtype=np.uint8)
    subs = codec.encode(message, 8)
    rows = leak_subset_accuracy(codec, message, subs, [1 / 8], n_subsets=5)  # one image: 1 chunk of 4
    assert (rows["known"] == 0.25).all() and not rows["recovered"].any()
    assert (rows["word_acc"] == 0).all() and (rows["bit_acc"] == 0.25).all()


def test_erasure_names_errors_not_missing_fragments_when_k_arrived():
    """Exactly k fragments, one holding a tied bit: that row cannot be decoded, and the reason is the errors, not
    "needs k distinct fragments" (all k arrived)."""
    codec = ErasureCodec(60, 7, 3)
    good = codec.encode(random_message(60, seed=0), 7)[[0, 1, 2]]
    other = good[2].copy()
    other[0] ^= 1
    with pytest.raises(MissingChunksError, match="from the 3 distinct fragments received: too many bit errors"):
        codec.decode(np.concatenate([good, other[None]]))


def test_leftover_images_keep_the_chunks_even():
    """Images beyond a multiple of C(n, k) used to take the permutation's next combinations, whatever chunks they held:
    (10, 3) at 1,000 images needed 705 leaked images (seed 0), and (5, 2) at 3 images missed a chunk in most seeds. Each
    combination is still used floor or ceil of N / C(n, k) times; a multiple of C(n, k) is assigned as before."""
    c = AmuseCodec(300, 10, 3)
    for seed in range(5):
        labels = c.assignment(1000, seed)
        counts = np.bincount(labels, minlength=c.num_labels)
        assert counts.min() == 8 and counts.max() == 9  # 1000 = 8 * 120 + 40
        assert c.min_leak_count(1000, seed) <= 702  # 701 is the least possible (rho * N + 1)
        chunk_counts = np.bincount(c._combos(labels).reshape(-1), minlength=10)
        assert chunk_counts.min() >= 299 and chunk_counts.max() - chunk_counts.min() <= 2  # 3000 chunk slots
    assert c.min_leak_count(40) <= 30  # 40 of 120 combinations, distinct: at least 29
    assert len(set(c.assignment(40).tolist())) == 40
    small = AmuseCodec(30, 5, 2)
    for seed in range(50):  # 3 combinations of 2 can cover all 5 chunks: every seed does
        assert small.min_leak_count(3, seed) == 3
    rng = np.random.default_rng(0)  # a multiple: the seeded permutation repeated, as before
    assert np.array_equal(AmuseCodec(30, 5, 2, seed=0).assignment(30), np.resize(rng.permutation(10), 30))


def test_leak_subsets_are_distinct_and_all_of_them_where_there_are_few():
    """Random leaked subsets were drawn independently, so where C(N, leaked) is small they repeated (1 image of 40 in
    10 draws: a repeat with chance 0.71; all 40 images: the same subset 10 times) and the average weighted some
    subsets twice. They are distinct now, and every subset once (said in all_subsets) where there are no more than
    asked."""
    from dovlib.amuse import distinct_subsets

    def keys(rows):
        return [tuple(sorted(r)) for r in rows.tolist()]

    rng = np.random.default_rng(3)
    old = [tuple(sorted(rng.choice(40, size=1, replace=False).tolist())) for _ in range(10)]
    assert len(set(old)) == 7  # what independent draws gave with this seed: images 3, 7 and 32 twice
    rows, every = distinct_subsets(40, 1, 10, np.random.default_rng(3))
    assert rows.shape == (10, 1) and len(set(keys(rows))) == 10 and not every
    assert keys(rows)[:4] == old[:4]  # the same draws until the first repeat, which is drawn again
    rows, every = distinct_subsets(4, 2, 10, np.random.default_rng(0))  # C(4, 2) = 6 <= 10: all of them, once
    assert every and keys(rows) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert distinct_subsets(40, 40, 100, np.random.default_rng(0))[0].tolist() == [list(range(40))]
    rows, every = distinct_subsets(5, 2, 6, np.random.default_rng(1))  # C = 10 <= 2 x 6: a sample of the ranks
    assert rows.shape == (6, 2) and len(set(keys(rows))) == 6 and not every and (rows[:, 0] < rows[:, 1]).all()
    rows, _ = distinct_subsets(12, 2, 60, np.random.default_rng(2))  # C = 66: drawn again on a repeat
    assert rows.shape == (60, 2) and len(set(keys(rows))) == 60
    # where draws never repeat, the subsets are the draws independent sampling made (records keep their numbers)
    rng, again = np.random.default_rng(3), np.random.default_rng(3)
    assert distinct_subsets(1000, 100, 5, rng)[0].tolist() == [again.choice(1000, size=100, replace=False).tolist()
                                                                for _ in range(5)]
    with pytest.raises(ValueError, match=r"size must be an integer in \[1, 4\]; got 5"):
        distinct_subsets(4, 5, 3, rng)
    with pytest.raises(ValueError, match="count must be an integer >= 1; got 0"):
        distinct_subsets(4, 2, 0, rng)

    # leak_subset_accuracy: 1 of 40 images with 100 subsets asked decodes each image exactly once
    L = 60
    msg = random_message(L, seed=0)
    codec = RepeatCodec(L)
    noisy = flip_bits(codec.encode(msg, 40), 0.3, seed=1)  # each image its own bit accuracy
    per_image = sorted(float((row == msg).mean()) for row in noisy)
    df = leak_subset_accuracy(codec, msg, noisy, shares=[0.025, 0.5, 1.0], n_subsets=100, seed=0)
    one = df[df.leaked == 1]
    assert len(one) == 40 and one["all_subsets"].all() and sorted(one["bit_acc"]) == per_image
    assert len(df[df.leaked == 40]) == 1 and df[df.leaked == 40]["all_subsets"].all()  # the whole set, once
    assert len(df[df.leaked == 20]) == 100 and not df[df.leaked == 20]["all_subsets"].any()
    assert df.groupby("leaked")["subset"].apply(lambda s: s.tolist() == list(range(len(s)))).all()


def test_decoders_count_the_bits_whose_copies_tie():
    """An even number of copies split half 0, half 1 is a tie: AMUSE and the baseline vote it 0 (the documented
    rule), which reads like any decoded bit. last_tied now says how many of the message's bits were such ties in the
    last decode (the erasure codec: how many fragment bits, each taken as an erasure instead); decode's return type
    is unchanged."""
    codec = AmuseCodec(4, 2, 1)  # two 2-bit chunks, one per image, plus 1 ordering bit
    message = np.array([1, 1, 1, 0], dtype=np.uint8)
    subs = codec.encode(message, 4)
    assert codec.last_tied == 0  # before any decode
    carries_0 = np.nonzero(subs[:, -1] == 0)[0]
    tied = subs.copy()
    tied[carries_0[0], :1] = 0  # chunk 0's copies: 11 and 01, so its first bit ties
    out = codec.decode(tied)
    assert isinstance(out, np.ndarray) and out.tolist() == [0, 1, 1, 0] and codec.last_tied == 1
    tied[carries_0[0], :2] = 0  # 11 and 00: both bits tie
    assert codec.decode_partial(tied).bits.tolist() == [0, 0, 1, 0] and codec.last_tied == 2
    assert codec.decode(np.vstack([tied, subs[carries_0[1]]])).tolist() == [1, 1, 1, 0] and codec.last_tied == 0
    assert codec.decode_partial(subs[carries_0[:1]]).complete is False and codec.last_tied == 0  # one copy: no tie

    base = RepeatCodec(6)
    msg = np.array([1, 0, 1, 1, 0, 1], dtype=np.uint8)
    two = base.encode(msg, 2)
    two[1, [0, 1, 2]] ^= 1  # the second copy disagrees on three bits
    assert base.decode(two).tolist() == [0, 0, 0, 1, 0, 1] and base.last_tied == 3  # bit 1 was 0: still a tie
    assert base.decode(np.vstack([two, base.encode(msg, 1)])).tolist() == msg.tolist() and base.last_tied == 0
    base.decode_partial(np.zeros((0, 6), np.uint8))
    assert base.last_tied == 0  # nothing received: nothing tied

    erasure = ErasureCodec(60, 7, 3)
    good = erasure.encode(random_message(60, seed=0), 7)[[0, 1, 2, 3]]
    other = good[2].copy()
    other[[0, 5]] ^= 1
    erasure.decode_partial(np.concatenate([good, other[None]]))
    assert erasure.last_tied == 2
    erasure.decode_partial(good)
    assert erasure.last_tied == 0


def test_every_subset_is_returned_once_where_there_are_exactly_as_many_as_asked():
    """C(n_items, size) == count: the rows are all of them, in lexicographic order, and said to be all (a sample of
    all the ranks would be the same set in a random order, not flagged as every subset)."""
    from dovlib.amuse import distinct_subsets

    rows, every = distinct_subsets(4, 2, 6, np.random.default_rng(5))  # C(4, 2) = 6
    assert every and rows.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    rows, every = distinct_subsets(5, 1, 5, np.random.default_rng(5))
    assert every and rows.tolist() == [[0], [1], [2], [3], [4]]


def test_distinct_subsets_are_distinct_as_sets_and_a_random_sample_of_the_ranks():
    """A subset drawn again in another order is a repeat (the same images), and where the ranks are sampled the
    sample is random: different seeds give different subsets and every subset can be drawn."""
    from dovlib.amuse import distinct_subsets

    for seed in range(5):  # C(10, 2) = 45 > 2 x 20: drawn one by one, repeats in any order drawn again
        rows, every = distinct_subsets(10, 2, 20, np.random.default_rng(seed))
        assert rows.shape == (20, 2) and not every and len({frozenset(r) for r in rows.tolist()}) == 20
    samples = [frozenset(map(tuple, distinct_subsets(5, 2, 6, np.random.default_rng(s))[0].tolist()))
               for s in range(20)]  # C(5, 2) = 10 <= 2 x 6: ranks sampled
    assert len(set(samples)) > 1 and len(frozenset().union(*samples)) == 10
    with pytest.raises(ValueError, match=r"n_items must be an integer >= 1; got 0"):
        distinct_subsets(0, 1, 3, np.random.default_rng(0))


def test_leaked_subsets_without_repeats_are_the_draws_of_one_stream_across_shares():
    """Shares whose subsets never repeat decode what independent sampling decoded before distinct_subsets (one
    generator, seeded once, drawn share after share): records of those shares keep their numbers."""
    L = 60
    msg = random_message(L, seed=0)
    codec = RepeatCodec(L)
    noisy = flip_bits(codec.encode(msg, 40), 0.3, seed=1)
    df = leak_subset_accuracy(codec, msg, noisy, shares=[0.25, 0.5], n_subsets=5, seed=7)
    rng = np.random.default_rng(7)
    expected = []
    for m in (10, 20):
        for _ in range(5):
            bits = codec.decode_partial(noisy[rng.choice(40, size=m, replace=False)]).bits
            expected.append(float((bits == msg).mean()))
    assert df["bit_acc"].tolist() == expected and not df["all_subsets"].any()


def test_last_tied_counts_message_bits_only_and_is_reset_by_every_decode():
    """A tie in a padding bit (the last chunk's bits beyond the message) is not a message bit: last_tied stays 0 and
    the message decodes. The baseline's count is reset by a decode that receives nothing, after one that tied."""
    codec = AmuseCodec(5, 2, 1)  # chunks of 3 bits: chunk 1 holds message bits 3, 4 and one padding bit
    message = np.array([1, 0, 1, 1, 0], dtype=np.uint8)
    subs = codec.encode(message, 4)
    chunk1 = np.nonzero(subs[:, -1] == 1)[0]
    assert len(chunk1) == 2
    padded = subs.copy()
    padded[chunk1[0], 2] ^= 1  # the copies of chunk 1 disagree on its padding bit only
    assert codec.decode(padded).tolist() == message.tolist() and codec.last_tied == 0
    padded[chunk1[0], 0] ^= 1  # and on message bit 3
    assert codec.decode(padded).tolist() == [1, 0, 1, 0, 0] and codec.last_tied == 1

    base = RepeatCodec(4)
    two = base.encode(np.array([1, 1, 0, 0], dtype=np.uint8), 2)
    two[1] ^= 1  # every bit ties
    base.decode(two)
    assert base.last_tied == 4
    base.decode_partial(np.zeros((0, 4), np.uint8))
    assert base.last_tied == 0


@pytest.mark.parametrize("make", [lambda: RepeatCodec(6), lambda: AmuseCodec(6, 3, 1), lambda: ErasureCodec(6, 3, 2)],
                         ids=["baseline", "amuse", "erasure"])
def test_a_refused_decode_resets_last_tied_and_last_dropped(make):
    """A decode that refuses its input (wrong shape, bits other than 0/1) left last_tied (and last_dropped) as the
    previous decode set them: read after the error they described input that was never decoded."""
    codec = make()
    subs = codec.encode(np.array([1, 0, 1, 1, 0, 1], dtype=np.uint8), 6)
    flipped = subs.copy()
    flipped[:, 0] ^= 1  # every received copy of the first payload bit is matched by one that disagrees: ties
    tied = np.vstack([subs, flipped])
    if hasattr(codec, "last_dropped"):  # a sub-message whose index is out of range (all ones: 3 of 3 chunks)
        tied = np.vstack([tied, np.ones((1, codec.sub_message_bits), np.uint8)])
    for bad in (np.zeros((2, codec.sub_message_bits + 1), np.uint8), np.full((1, codec.sub_message_bits), 2)):
        codec.decode_partial(tied)
        assert codec.last_tied > 0 and getattr(codec, "last_dropped", 1) == 1
        with pytest.raises(ValueError, match="sub_messages must"):
            codec.decode(bad)
        assert codec.last_tied == 0 and getattr(codec, "last_dropped", 0) == 0


def test_distinct_subsets_takes_a_seed_or_a_generator_and_names_anything_else():
    """rng=None raised AttributeError ('NoneType' object has no attribute 'choice'): an int seed draws as
    np.random.default_rng(seed) would, a Generator is used as given, anything else is refused naming rng."""
    from dovlib.amuse import distinct_subsets

    rows, every = distinct_subsets(12, 2, 5, 7)
    assert not every and rows.tolist() == distinct_subsets(12, 2, 5, np.random.default_rng(7))[0].tolist()
    assert distinct_subsets(12, 2, 5, np.int64(7))[0].tolist() == rows.tolist()
    for bad in (None, 1.5, "7", True, np.random.RandomState(0)):
        with pytest.raises(TypeError, match=r"rng must be a numpy Generator \(np.random.default_rng\(seed\)\) or an "
                                            r"integer seed >= 0; got "):
            distinct_subsets(12, 2, 5, bad)
    with pytest.raises(ValueError, match=r"rng must be .* seed >= 0; got -1"):
        distinct_subsets(12, 2, 5, -1)
    with pytest.raises(TypeError, match="rng must be"):
        distinct_subsets(4, 2, 10, None)  # refused where every subset is returned without a draw, too


def _exact_shortest(L, rho):
    """Reference for choose_nk with exact arithmetic: rho a Fraction, ceil(log2 C) as the least b with 2**b >= C;
    every (n, k) with 1 <= k <= n <= L in order, so the first shortest one has the smallest n, then k."""
    best = None
    for n in range(1, L + 1):
        for k in range(1, n + 1):
            if Fraction(n - k, n) > rho:
                continue
            combos, order = math.comb(n, k), 0
            while 2 ** order < combos:
                order += 1
            bits = k * -(-L // n) + order
            if best is None or bits < best[0]:
                best = (bits, (n, k))
    return best


@pytest.mark.parametrize("twentieths", range(1, 20))
def test_choose_nk_is_the_exact_shortest_for_every_short_message(twentieths):
    """choose_nk against an exact search for L = 1..40 at rho_max = 0.05, 0.1, ..., 0.95: the pruning, the float
    tolerance and the tie-break (smallest n, then k; the whole message (1, 1) where nothing is shorter) all agree."""
    rho = Fraction(twentieths, 20)
    for L in range(1, 41):
        bits, nk = _exact_shortest(L, rho)
        assert choose_nk(L, twentieths / 20) == nk, (L, float(rho))
        assert AmuseCodec(L, *nk).sub_message_bits == bits


def test_choose_nk_admits_a_ratio_equal_to_rho_max_despite_float_rounding():
    """(20, 1) has (n - k) / n = 0.95 exactly, but 20 * (1 - 0.95) is 1.0000000000000009 in floats: without the
    tolerance k would have to be 2 and L = 100 would get (15, 1), 11 bits instead of 10. Two bits of message (1, 1)
    and (2, 2) tie at 2 bits: the smallest n is kept."""
    assert choose_nk(100, 0.95) == (20, 1) and AmuseCodec(100, 20, 1).sub_message_bits == 10
    assert choose_nk(100, "19/20") == (20, 1)
    for rho in (0.1, 0.5, 0.9):
        assert choose_nk(2, rho) == (1, 1)


@pytest.mark.parametrize("n", [1, 3])
def test_amuse_with_every_chunk_in_every_image_has_no_ordering_bits_and_decodes(n):
    """k = n (what choose_nk returns for a small rho_max, as (1, 1)): 0 ordering bits, one combination; the payload
    is the whole padded message and one image decodes it. Reading the index from the last ordering_bits bits would
    read the whole sub-message there (x[-0:] is all of x) and drop every image as corrupted."""
    L = 30
    codec = AmuseCodec(L, n, n)
    assert codec.ordering_bits == 0 and codec.combinations == 1 and codec.rho == 0
    assert codec.sub_message_bits == L and codec.min_unique_sub_messages == 1
    msg = random_message(L, seed=n)
    subs = codec.encode(msg, 7)
    assert (subs == msg).all()  # every image holds the message, no index
    assert np.array_equal(codec.decode(subs[:1]), msg) and codec.last_dropped == 0
    noisy = flip_bits(subs, 0.1, seed=0)
    noisy[1:] = subs[1:]  # one wrong copy of 7 is outvoted
    assert np.array_equal(codec.decode(noisy), msg)
    assert choose_nk(L, 0.01) == (1, 1) and AmuseCodec.from_rho(L, 0.01).ordering_bits == 0


@pytest.mark.parametrize("make", [lambda s: AmuseCodec(60, 5, 2, seed=s), lambda s: ErasureCodec(60, 7, 3, seed=s)],
                         ids=["amuse", "erasure"])
def test_encode_seed_decides_the_assignment_per_call(make):
    """encode(..., seed=s) and assignment(N, seed=s) use s instead of the codec's seed: the same s gives the same
    sub-messages, other seeds other assignments (the multiset of labels stays balanced), no seed the codec's own.
    Full cycles of the permutation come first, the images left over last: N images begin with the assignment of the
    largest multiple of the labels below N."""
    codec = make(3)
    msg = random_message(60, seed=1)
    for N in (30, 37):
        per_seed = {s: codec.encode(msg, N, seed=s) for s in range(4)}
        assert np.array_equal(codec.encode(msg, N, seed=2), per_seed[2])
        assert np.array_equal(codec.encode(msg, N), per_seed[3]) and np.array_equal(make(2).encode(msg, N),
                                                                                    per_seed[2])
        assert len({subs.tobytes() for subs in per_seed.values()}) == 4
        labels = {s: codec.assignment(N, seed=s) for s in range(4)}
        assert len({lab.tobytes() for lab in labels.values()}) == 4
        for lab in labels.values():
            counts = np.bincount(lab, minlength=codec.num_labels)
            assert counts.max() - counts.min() <= 1
        for s, subs in per_seed.items():
            assert np.array_equal(codec.decode(subs), msg)
    full = 37 // codec.num_labels * codec.num_labels  # the largest multiple below N = 37: 30 and 35
    assert np.array_equal(codec.assignment(37)[:full], codec.assignment(full))


def test_leak_shares_note_names_the_shares_leaked_not_a_dropped_one_that_ran():
    """Notebook 09 on 20 images (a reduced paper profile) captioned 'shares 0.01, 0.1, ... (not run: 0.02, 0.05)'
    while its figure, table and metrics showed share 0.05: 0.01 of 20 images leaks 1 image, which is 0.05. The note
    says the shares leaked (leaked / N, as leak_subset_accuracy's `share` column) and which asked shares each one
    stands for."""
    shares = [0.01, 0.02, 0.05, 0.1, 0.5, 1.0]
    note = leak_shares_note(shares, 20)
    assert note == "leaked shares 0.05 (1 image; asked as 0.01, 0.02, 0.05), 0.1, 0.5, 1 of the 20 images"
    assert "not run" not in note
    # each leaked share it names is one leak_subset_accuracy decodes
    msg = random_message(30, seed=0)
    with pytest.warns(UserWarning):
        curves = leak_subset_accuracy(RepeatCodec(30), msg, RepeatCodec(30).encode(msg, 20), shares, n_subsets=1)
    assert sorted(curves["share"].unique()) == [0.05, 0.1, 0.5, 1.0]
    # where every asked share leaks exactly itself (the paper's 1000 images), just the shares
    assert leak_shares_note(shares, 1000) == "leaked shares 0.01, 0.02, 0.05, 0.1, 0.5, 1 of the 1000 images"
    assert leak_shares_note([0.29, 0.3], 10) == "leaked shares 0.3 (3 images; asked as 0.29, 0.3) of the 10 images"
    with pytest.raises(ValueError, match="n_images"):
        leak_shares_note([0.5], 0)
