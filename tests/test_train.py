import re
import warnings

import pytest
import torch

from dovlib.data import load_dataset
from dovlib.models import build_model
from dovlib.params import get_profile
from dovlib.report import device_name
from dovlib.train import (TrainConfig, _autocast, _same_device, augment_batch, evaluate, fit, joined_names,
                          make_optimizer, note_training, noted_provenance, precision_options, predict_logits,
                          predict_proba, reset_training_provenance, resolve_device, restore_generator, seed_everything,
                          to_float, train_steps, training_provenance, uses_bf16)


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", num_classes=4, n_train=256, n_test=64, image_size=16)


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("resnet18", num_classes=4, width=4)


def _stop_at(epoch):
    """A fit callback that interrupts training at the end of ``epoch``, before that epoch is saved."""
    def callback(model, e):
        if e == epoch:
            raise KeyboardInterrupt
    return callback


def cuda_rng_state(seed=7, offset=64):
    """What a CUDA generator's ``get_state()`` saves (its Philox seed and offset, 16 bytes), made without a GPU."""
    return torch.tensor([seed, offset], dtype=torch.int64).view(torch.uint8)


def test_restore_generator_continues_a_stream_or_reseeds_one_saved_on_another_device(tmp_path):
    a = torch.Generator().manual_seed(5)
    torch.rand(3, generator=a)
    b = torch.Generator()
    assert restore_generator(b, a.get_state(), reseed=9, what="augmentation", path=tmp_path / "c.pt")
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))  # the same stream goes on
    with pytest.warns(UserWarning, match=r"c.pt holds the augmentation random generator's state, which this "
                                         r"cpu generator cannot load.*reseeded \(9\)"):
        assert not restore_generator(b, cuda_rng_state(), reseed=9, what="augmentation", path=tmp_path / "c.pt")
    assert torch.equal(torch.rand(4, generator=b), torch.rand(4, generator=torch.Generator().manual_seed(9)))


def test_fit_learns_synthetic_classes(ds):
    res = fit(_model(), ds.x_train, ds.y_train, ds.x_test, ds.y_test, epochs=4, batch_size=32, lr=0.05,
              progress=False)
    assert len(res.history) == 4 and res.device == "cpu"
    assert res.final["test_acc"] > 0.6  # chance is 0.25
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.images_seen == 4 * 256 and res.images_per_second > 0
    assert all(r["lr"] >= 0 for r in res.history)
    # each row's lr is the rate of the epoch's last step (one-cycle, 8 steps an epoch), not the next step's: the last
    # row used to show lr / 1000, a rate never trained with
    import numpy as np

    total, warm = 4 * 8, max(1, int(0.2 * 4 * 8))
    for e, row in enumerate(res.history):
        step = (e + 1) * 8 - 1
        assert row["lr"] == pytest.approx(0.05 * float(np.interp(step, [0, warm, total], [0.1, 1.0, 1e-3])))


def test_fit_is_deterministic_on_cpu(ds):
    kw = dict(epochs=1, batch_size=32, lr=0.05, progress=False)
    a = fit(_model(1), ds.x_train, ds.y_train, config=TrainConfig(**kw))
    b = fit(_model(1), ds.x_train, ds.y_train, config=TrainConfig(**kw))
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_checkpoint_resume_equals_uninterrupted(ds, tmp_path):
    kw = dict(batch_size=64, lr=0.05, progress=False, schedule="cosine")
    full = fit(_model(2), ds.x_train, ds.y_train, epochs=3, **kw)

    ckpt = tmp_path / "ck.pt"

    class Interrupt(Exception):
        pass

    def stop_after_2(model, epoch):
        if epoch == 2:
            raise Interrupt
        return {}

    # interrupted during epoch 2's callback: the checkpoint holds epoch 1
    with pytest.raises(Interrupt):
        fit(_model(2), ds.x_train, ds.y_train, epochs=3, checkpoint=ckpt, callbacks=[stop_after_2],
            checkpoint_every=0, **kw)
    resumed = fit(_model(99), ds.x_train, ds.y_train, epochs=3, checkpoint=ckpt, **kw)
    assert resumed.resumed_from_epoch == 1
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.history[-1]["train_loss"] == pytest.approx(full.history[-1]["train_loss"], rel=1e-5)
    # CPU training is bit-deterministic (test above), and a resume restores weights, optimiser, schedule and both
    # RNGs: the resumed model is the uninterrupted one exactly
    for name, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[name]), name
    # a finished checkpoint returns at once with the trained weights
    again = fit(_model(5), ds.x_train, ds.y_train, epochs=3, checkpoint=ckpt, **kw)
    assert again.resumed_from_epoch == 3
    for pa, pb in zip(again.model.parameters(), resumed.model.parameters()):
        assert torch.equal(pa, pb)
    with pytest.raises(ValueError, match="other training settings"):
        fit(_model(), ds.x_train, ds.y_train, epochs=3, checkpoint=ckpt, batch_size=32, progress=False)


def test_checkpoint_without_data_hash_is_resumed_with_a_warning(ds, tmp_path):
    # a checkpoint written before the data hash was recorded: resumed (same weights), but never silently
    kw = dict(epochs=1, batch_size=64, lr=0.05, progress=False)
    ckpt = tmp_path / "old.pt"
    first = fit(_model(3), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    state = torch.load(ckpt, weights_only=False)
    assert "data_hash" in state
    del state["data_hash"]
    torch.save(state, ckpt)
    with pytest.warns(UserWarning, match=r"predates dovlib's data check .* cannot confirm it was trained on these "
                                         r"256 images; delete it to retrain"):
        old = fit(_model(4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    assert old.resumed_from_epoch == 1
    assert all(torch.equal(a, b) for a, b in zip(old.model.parameters(), first.model.parameters()))


def test_a_checkpoint_resumed_in_another_precision_warns(ds, tmp_path):
    # the device is not part of the settings' fingerprint (a run may move), so an fp32 CPU checkpoint resumes on
    # CUDA, where amp trains in bf16: never silently. Here the checkpoint says bf16 and the CPU resumes in fp32.
    kw = dict(epochs=2, batch_size=64, lr=0.05, progress=False, device="cpu", checkpoint_every=0)
    ckpt = tmp_path / "ck.pt"

    with pytest.raises(KeyboardInterrupt):  # after epoch 1's checkpoint
        fit(_model(3), ds.x_train, ds.y_train, checkpoint=ckpt, callbacks=[_stop_at(2)], **kw)
    state = torch.load(ckpt, weights_only=False)
    assert (state["epoch"], state["precision"]) == (1, "fp32")
    torch.save({**state, "precision": "bf16"}, ckpt)
    with pytest.warns(UserWarning, match=r"trained its 1 epoch\(s\) in bf16 precision; the rest run in fp32 on cpu: "
                                         r"the model mixes precisions"):
        assert fit(_model(4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw).resumed_from_epoch == 1
    assert torch.load(ckpt, weights_only=False)["precision"] == "mixed"  # and says so from then on
    # a finished checkpoint only loads (no epoch runs): no mixing warning, but it says how the model was trained
    with pytest.warns(UserWarning, match=r"was trained on cpu in mixed, not as this run would train it \(cpu, fp32\)"):
        done = fit(_model(4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    assert (done.resumed_from_epoch, done.trained_on, done.precision) == (2, "cpu", "mixed")


def test_fit_says_where_and_in_what_precision_a_model_was_trained(ds, tmp_path):
    kw = dict(epochs=1, batch_size=64, lr=0.05, progress=False, device="cpu")
    assert training_provenance() == {}
    res = fit(_model(3), ds.x_train, ds.y_train, **kw)
    here = device_name("cpu")  # "CPU (AMD EPYC, 2 cores, AVX512 kernels)" on the build machine
    assert (res.trained_on, res.precision, res.device, res.trained_by) == ("cpu", "fp32", "cpu", here)
    assert training_provenance() == {"trained_on": "cpu", "training_precision": "fp32", "trained_by": here}
    reset_training_provenance()
    assert training_provenance() == {}

    # a finished model trained on a GPU in bf16, read back by a CPU run: the result and the provenance say so
    ckpt = tmp_path / "gpu.pt"
    fit(_model(3), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    state = torch.load(ckpt, weights_only=False)
    assert (state["device_type"], state["precision"], state["device_name"]) == ("cpu", "fp32", here)
    # as a GPU run saves it: the augmentation generator's state is a CUDA one (it crashed set_state on the CPU)
    torch.save({**state, "device_type": "cuda", "precision": "bf16", "device_name": "NVIDIA H100 80GB HBM3",
                "aug_generator": cuda_rng_state()}, ckpt)
    reset_training_provenance()
    with pytest.warns(UserWarning, match=r"read back from .*gpu.pt was trained on cuda in bf16, not as this run would "
                                         r"train it \(cpu, fp32\)"):
        back = fit(_model(4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    assert (back.trained_on, back.precision, back.device) == ("cuda", "bf16", "cpu")
    assert back.trained_by == "NVIDIA H100 80GB HBM3"
    fit(_model(3), ds.x_train, ds.y_train, **kw)  # and one trained here
    assert training_provenance() == {"trained_on": "cpu+cuda", "training_precision": "bf16+fp32",
                                     "trained_by": f"{here} + NVIDIA H100 80GB HBM3"}

    # a model trained on a CPU with other kernels, read back here: the same type and precision (no warning), but
    # records name that machine (its rounding gives the same seed other weights)
    torch.save({**state, "device_name": "CPU (Intel Xeon, 8 cores, AVX2 kernels)"}, ckpt)
    reset_training_provenance()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other = fit(_model(4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    assert (other.trained_on, other.trained_by) == ("cpu", "CPU (Intel Xeon, 8 cores, AVX2 kernels)")
    assert training_provenance()["trained_by"] == "CPU (Intel Xeon, 8 cores, AVX2 kernels)"

    # checkpoints written before these were recorded: the device from the saved config, "unknown" if it cannot tell
    del state["device_type"], state["precision"], state["device_name"]
    torch.save(state, ckpt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # config says cpu with amp: fp32 on the CPU, as this run: nothing to say
        older = fit(_model(4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    assert (older.precision, older.trained_by) == ("fp32", "unknown")  # no device name: not this machine's
    torch.save({**state, "config": {**state["config"], "device": "auto"}}, ckpt)
    with pytest.warns(UserWarning, match="trained on unknown in unknown"):
        old = fit(_model(4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    assert (old.trained_on, old.precision) == ("unknown", "unknown")


def test_note_training_counts_models_read_back_and_names_each_device_once():
    assert joined_names("B", "A + B", "A") == "A + B" and joined_names() == ""
    note_training("cuda", "bf16", "NVIDIA H100 80GB HBM3")
    note_training("cpu", "fp32", "CPU (AMD EPYC, 2 cores, AVX512 kernels) + NVIDIA H100 80GB HBM3")  # resumed
    assert training_provenance() == {"trained_on": "cpu+cuda", "training_precision": "bf16+fp32",
                                     "trained_by": "CPU (AMD EPYC, 2 cores, AVX512 kernels) + NVIDIA H100 80GB HBM3"}
    for bad in [("", "fp32", "x"), ("cpu", None, "x"), ("cpu", "fp32", "")]:
        with pytest.raises(ValueError, match="note_training: .* must be a non-empty string"):
            note_training(*bad)
    reset_training_provenance()
    # what a cached file says, "unknown" where it says nothing (older code), the precision given where it names none
    assert noted_provenance({"trained_on": "cuda", "trained_by": "NVIDIA H100 80GB HBM3"}, "bf16") == {
        "trained_on": "cuda", "trained_by": "NVIDIA H100 80GB HBM3", "training_precision": "bf16"}
    assert noted_provenance({}, "fp32") == {"trained_on": "unknown", "trained_by": "unknown",
                                            "training_precision": "fp32"}
    assert training_provenance() == {"trained_on": "cuda+unknown", "training_precision": "bf16+fp32",
                                     "trained_by": "NVIDIA H100 80GB HBM3 + unknown"}


def test_a_run_resumed_on_another_device_names_both(ds, tmp_path):
    kw = dict(epochs=2, batch_size=64, lr=0.05, progress=False, device="cpu", checkpoint_every=0)
    ckpt = tmp_path / "ck.pt"

    with pytest.raises(KeyboardInterrupt):
        fit(_model(3), ds.x_train, ds.y_train, checkpoint=ckpt, callbacks=[_stop_at(2)], **kw)
    state = torch.load(ckpt, weights_only=False)
    assert state["device_name"] == device_name("cpu")
    # its first epoch ran on a GPU (in fp32: no mixing warning)
    torch.save({**state, "device_type": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}, ckpt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit(_model(4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    assert (res.resumed_from_epoch, res.trained_on, res.precision) == (1, "cpu+cuda", "fp32")
    both = " + ".join(sorted([device_name("cpu"), "NVIDIA H100 80GB HBM3"]))
    assert res.trained_by == both
    assert tuple(torch.load(ckpt, weights_only=False)[k] for k in ("device_type", "device_name")) == ("cpu+cuda", both)
    # as a GPU run really saves it, with a CUDA augmentation generator: resumed with a reseeded stream, the same
    # stream for every resume of that checkpoint
    torch.save({**state, "device_type": "cuda", "aug_generator": cuda_rng_state()}, ckpt)
    runs = []
    for _ in range(2):
        with pytest.warns(UserWarning, match="augmentation random generator's state, which this cpu generator"):
            runs.append(fit(_model(4), ds.x_train, ds.y_train, checkpoint=str(ckpt), **kw))
        torch.save({**state, "device_type": "cuda", "aug_generator": cuda_rng_state()}, ckpt)
    assert runs[0].trained_on == "cpu+cuda" and runs[0].history[1]["epoch"] == 2
    for pa, pb in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(pa, pb)
    # a checkpoint of older code (no device or precision recorded) from a GPU run, where amp meant bf16: inferred
    old = {k: v for k, v in state.items() if k not in ("device_type", "precision")}
    torch.save({**old, "config": {**old["config"], "device": "cuda"}}, ckpt)
    with pytest.warns(UserWarning, match=r"trained its 1 epoch\(s\) in bf16 precision; the rest run in fp32"):
        res = fit(_model(4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    assert (res.trained_on, res.precision) == ("cpu+cuda", "mixed")
    torch.save({**old, "config": {**old["config"], "device": "auto"}}, ckpt)  # unresolved: cannot be named
    res = fit(_model(4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    assert (res.trained_on, res.precision) == ("cpu+unknown", "unknown")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_checkpoint_resume_on_cuda(ds, tmp_path):
    """On CUDA, torch.load(map_location='cuda') moves the saved RNG states too; resume must still work
    (found on an H100: 'RNG state must be a torch.ByteTensor')."""
    kw = dict(batch_size=64, lr=0.05, progress=False, device="cuda")
    ckpt = tmp_path / "ck.pt"
    first = fit(_model(2), ds.x_train, ds.y_train, epochs=1, checkpoint=ckpt, **kw)
    again = fit(_model(3), ds.x_train, ds.y_train, epochs=1, checkpoint=ckpt, **kw)  # loads model, optimiser, RNGs
    assert again.resumed_from_epoch == 1
    for pa, pb in zip(again.model.parameters(), first.model.parameters()):
        assert torch.equal(pa, pb)


def test_same_device_treats_an_unindexed_device_as_the_current_one():
    cpu = torch.device("cpu")
    assert _same_device(cpu, torch.device("cpu"))
    assert not _same_device(torch.device("cuda"), cpu) and not _same_device(cpu, torch.device("cuda:0"))
    assert _same_device(torch.device("cuda"), torch.device("cuda:0")) == (
        not torch.cuda.is_available() or torch.cuda.current_device() == 0)
    g = torch.Generator()  # a CPU generator with CPU images: accepted
    assert augment_batch(torch.zeros(2, 3, 8, 8), 2, True, g).shape == (2, 3, 8, 8)


def test_callbacks_add_columns(ds):
    res = fit(_model(), ds.x_train[:64], ds.y_train[:64], epochs=2, batch_size=32, progress=False,
              callbacks=[lambda m, e: {"probe": e * 10}])
    assert [r["probe"] for r in res.history] == [10, 20]


def test_callback_numpy_values_enter_the_history_as_python_numbers_and_others_are_refused(ds, tmp_path):
    """A callback's 0-d array, np.str_ or np.longdouble was saved as is, and the next call refused fit's own
    checkpoint as foreign (weights_only=True cannot read them): they enter the history as Python numbers and strings,
    so the run resumes; a value the checkpoint cannot hold (np.complex64, a list) is refused at the first epoch,
    naming the key and its type."""
    import numpy as np

    kw = dict(epochs=2, batch_size=32, progress=False, checkpoint_every=0)
    x, y = ds.x_train[:64], ds.y_train[:64]
    ckpt = tmp_path / "ck.pt"

    def numpy_values(model, epoch):
        return {"score": np.array(0.5), "name": np.str_("a"), "wide": np.longdouble(0.25), "n": np.array(epoch),
                "flag": np.bool_(True), "t": torch.tensor(1.5), "none": None, "text": "b"}

    with pytest.raises(KeyboardInterrupt):  # after epoch 1's checkpoint
        fit(_model(3), x, y, checkpoint=ckpt, callbacks=[numpy_values, _stop_at(2)], **kw)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt) == []
    resumed = fit(_model(4), x, y, checkpoint=ckpt, callbacks=[numpy_values], **kw)
    assert resumed.resumed_from_epoch == 1
    row = resumed.history[0]
    assert {k: type(row[k]) for k in ("score", "name", "wide", "n", "flag")} == {
        "score": float, "name": str, "wide": float, "n": int, "flag": bool}
    assert (row["score"], row["name"], row["wide"], row["n"]) == (0.5, "a", 0.25, 1)
    assert fit(_model(4), x, y, checkpoint=ckpt, callbacks=[numpy_values], **kw).history == resumed.history  # cached
    for value, kind in ((np.complex64(1), "complex64"), ([0.5], "list"), (np.zeros(2), "ndarray")):
        seen = []

        def bad(model, epoch, value=value):
            seen.append(epoch)
            return {"probe": value}

        with pytest.raises(TypeError, match=rf"a fit callback returned 'probe': {kind}, which fit's checkpoint cannot "
                                            rf"hold; return Python numbers, strings, None or torch tensors"):
            fit(_model(5), x, y, checkpoint=tmp_path / f"{kind}.pt", callbacks=[bad], **kw)
        assert seen == [1] and not (tmp_path / f"{kind}.pt").exists()


def test_augment_batch_crop_and_flip():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    y = augment_batch(x, crop_padding=0, flip=True, generator=torch.Generator().manual_seed(3))
    for i in range(2):  # each image is either itself or its mirror
        assert torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].flip(-1))
    z = augment_batch(x.to(torch.uint8), crop_padding=2, flip=False, generator=g)
    assert z.shape == x.shape and z.dtype == torch.uint8
    # a crop is a shifted window of the zero-padded image: every non-zero value comes from the original
    assert set(z.unique().tolist()) <= set(x.unique().int().tolist()) | {0}
    assert torch.equal(augment_batch(x, 0, False), x)
    with pytest.raises(ValueError, match="crop_padding must be an integer >= 0; got -1"):  # was: no crop, silently
        augment_batch(x, -1, False)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="generator must live"):
            augment_batch(x.cuda(), 2, True, generator=torch.Generator())
    # flips: exactly the images whose uniform draw is < 0.5 are mirrored (left-right asymmetric images, so a flip is
    # visible); seed 3 draws flip for the first six of eight images and not for the last two
    xs = torch.arange(1, 8 * 2 * 3 * 5 + 1, dtype=torch.float32).view(8, 2, 3, 5)
    flips = torch.rand(8, generator=torch.Generator().manual_seed(3)) < 0.5
    assert flips.tolist() == [True] * 6 + [False] * 2
    y = augment_batch(xs, crop_padding=0, flip=True, generator=torch.Generator().manual_seed(3))
    for i in range(8):
        assert torch.equal(y[i], xs[i].flip(-1) if flips[i] else xs[i]), i
    # crops: image i is the window at offset (di, dj) of the image zero-padded by 2 (values start at 1, so every 0
    # is padding); seed 0 draws di = [4, 4, 3, 0, 3, 4], dj = [2, 3, 2, 3, 1, 1]
    xs = xs[:6]
    g = torch.Generator().manual_seed(0)
    di, dj = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 5, (6,), generator=g)
    assert (di.tolist(), dj.tolist()) == ([4, 4, 3, 0, 3, 4], [2, 3, 2, 3, 1, 1])
    z = augment_batch(xs, crop_padding=2, flip=False, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(xs, (2, 2, 2, 2))
    for i in range(6):
        assert torch.equal(z[i], padded[i, :, di[i]:di[i] + 3, dj[i]:dj[i] + 5]), i
    assert torch.equal(z[0, :, 1:], torch.zeros(2, 2, 5))  # shifted down by 2 of 3 rows: one image row is left
    assert torch.equal(z[0, :, 0], xs[0, :, 2])
    assert torch.equal(z[3, :, :2], torch.zeros(2, 2, 5)) and torch.equal(z[3, :, 2, :4], xs[3, :, 0, 1:])
    assert (z == 0).any(dim=(1, 2, 3)).all()  # no draw is the centre (2, 2): every crop brings in padding


def test_evaluate_predict_and_helpers(ds):
    m = _model().eval()
    p = predict_proba(m, ds.x_test)
    assert p.shape == (64, 4) and torch.allclose(p.sum(1), torch.ones(64), atol=1e-5)
    acc = evaluate(m, ds.x_test, ds.y_test)
    assert 0 <= acc <= 1
    assert acc == pytest.approx((p.argmax(1) == ds.y_test).float().mean().item())
    with pytest.raises(ValueError, match="at least one image"):
        evaluate(m, ds.x_test[:0], ds.y_test[:0])
    assert to_float(torch.tensor([255], dtype=torch.uint8)).item() == 1.0
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")
    g = seed_everything(3)
    assert isinstance(g, torch.Generator)
    assert g.initial_seed() == 3 and torch.initial_seed() == 3
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=torch.Generator().manual_seed(3)))
    import random

    import numpy as np

    assert random.random() == random.Random(3).random()
    assert np.random.rand() == np.random.RandomState(3).rand()
    assert seed_everything(2 ** 32 + 5).initial_seed() == 2 ** 32 + 5 and np.random.rand() == np.random.RandomState(
        5).rand()  # NumPy takes the seed modulo 2^32


def test_evaluate_counts_exact_top1_hits_over_batches():
    """A linear model whose logits are the four pixels of a 2x2 image: the prediction is the brightest pixel."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 4, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(4))
    brightest = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    x = torch.full((8, 1, 2, 2), 10, dtype=torch.uint8)
    x.view(8, 4)[torch.arange(8), brightest] = 200
    y = torch.tensor([0, 1, 2, 0, 0, 1, 2, 1])  # right for images 0, 1 and 2 only
    assert evaluate(model, x, y) == 0.375
    assert evaluate(model, x, y, batch_size=3) == 0.375  # the same over 3 + 3 + 2 images
    assert evaluate(model, x[:3], y[:3]) == 1.0 and evaluate(model, x[3:6], y[3:6]) == 0.0
    assert evaluate(model, x, brightest.tolist()) == 1.0  # labels as a list


def test_bad_training_settings():
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="equally long"):
        fit(_model(), torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(3), epochs=1, progress=False)


def test_make_optimizer_schedules_and_weight_decay_groups():
    model = _model()
    opt, sched = make_optimizer(model, TrainConfig(lr=0.2, weight_decay=5e-4), total_steps=100)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 5e-4 and plain["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim <= 1 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.02) and max(lrs) == pytest.approx(0.2) and lrs.index(max(lrs)) == 20
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2e-3)  # one-cycle ends at lr/1000
    opt, sched = make_optimizer(model, TrainConfig(lr=0.1, schedule="cosine"), total_steps=10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="total_steps"):
        make_optimizer(model, TrainConfig(), total_steps=0)


def test_checkpoint_is_written_by_time_and_always_at_the_end(ds, tmp_path, monkeypatch):
    """Saving every epoch can cost as much as the epoch on a GPU: by default the state is written after the last
    epoch and at most once a minute before it; ``checkpoint_every=0`` writes every epoch."""
    import dovlib.train as tr

    saved, real = [], tr._save_atomic
    monkeypatch.setattr(tr, "_save_atomic", lambda obj, path: (saved.append(obj["epoch"]), real(obj, path)))
    now = [100.0]  # a frozen clock, moved only by the callbacks below: a slow machine cannot change the result
    monkeypatch.setattr(tr.time, "perf_counter", lambda: now[0])
    kw = dict(epochs=3, batch_size=64, lr=0.05, progress=False)
    fit(_model(2), ds.x_train, ds.y_train, checkpoint=tmp_path / "a.pt", **kw)
    assert saved == [3]
    saved.clear()
    fit(_model(2), ds.x_train, ds.y_train, checkpoint=tmp_path / "b.pt", checkpoint_every=0, **kw)
    assert saved == [1, 2, 3]

    def tick(seconds):
        def callback(model, epoch):
            now[0] += seconds
            return {}
        return callback

    saved.clear()  # 30 s per epoch: the 60 s default interval has passed after epoch 2; the end is always saved
    fit(_model(2), ds.x_train, ds.y_train, checkpoint=tmp_path / "c.pt", callbacks=[tick(30)], **kw)
    assert saved == [2, 3]
    saved.clear()  # 61 s per epoch: every epoch
    fit(_model(2), ds.x_train, ds.y_train, checkpoint=tmp_path / "d.pt", callbacks=[tick(61)], **kw)
    assert saved == [1, 2, 3]


def test_an_interruption_between_saves_loses_only_the_epoch_in_progress(ds, tmp_path):
    """With the default interval nothing is written before a minute has passed; an interruption (here inside epoch 3's
    callback, after epoch 2 ended unsaved) writes the last finished epoch's copy, and resuming gives the weights of an
    uninterrupted run. A diverged loss writes nothing (test below)."""
    kw = dict(epochs=4, batch_size=64, lr=0.05, progress=False)
    straight = fit(_model(5), ds.x_train, ds.y_train, **kw)
    ckpt = tmp_path / "i.pt"

    with pytest.raises(KeyboardInterrupt):
        fit(_model(5), ds.x_train, ds.y_train, checkpoint=ckpt, callbacks=[_stop_at(3)], **kw)
    state = torch.load(ckpt, weights_only=False)
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    resumed = fit(_model(6), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    assert resumed.resumed_from_epoch == 2 and [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    # the copy is the state at that epoch's end, not a view the next epoch went on changing
    again = tmp_path / "j.pt"
    at_two = {}

    def keep(model, epoch):
        if epoch == 2:
            at_two.update({k: v.clone() for k, v in model.state_dict().items()})

    with pytest.raises(KeyboardInterrupt):
        fit(_model(5), ds.x_train, ds.y_train, checkpoint=again, callbacks=[keep, _stop_at(3)], **kw)
    saved = torch.load(again, weights_only=False)["model"]
    assert saved.keys() == at_two.keys() and all(torch.equal(saved[k], v) for k, v in at_two.items())


def test_checkpointer_keeps_the_loops_exception_and_a_unit_interrupted_while_written(tmp_path, monkeypatch):
    import dovlib.train as tr

    # a copy that cannot be written when the loop stops: a warning, and the loop's own exception goes on
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning, match="could not write the interrupted run"):
        with tr.Checkpointer(blocked / "ck.pt", 3600) as saver:
            saver.offer(lambda: {"unit": 1})
            raise KeyboardInterrupt
    # interrupted during a due write: that finished unit is written on the way out, not lost with the kept copy
    real, calls = tr._save_atomic, []

    def flaky(obj, path):
        calls.append(obj["unit"])
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C while torch.save runs
        real(obj, path)

    monkeypatch.setattr(tr, "_save_atomic", flaky)
    path = tmp_path / "ck.pt"
    with pytest.raises(KeyboardInterrupt):
        with tr.Checkpointer(path, 0) as saver:
            saver.offer(lambda: {"unit": 2})
    assert calls == [2, 2] and torch.load(path, weights_only=False) == {"unit": 2}
    # a diverged loss writes nothing; the copy is independent of the loop's tensors, autograd history included
    monkeypatch.setattr(tr, "_save_atomic", real)
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(FloatingPointError):
        with tr.Checkpointer(tmp_path / "nan.pt", 3600) as saver:
            saver.offer(lambda: {"w": w * 2, "rows": [{"x": torch.zeros(1)}]})
            raise FloatingPointError
    assert not (tmp_path / "nan.pt").exists()
    keep = tmp_path / "keep.pt"
    with pytest.raises(RuntimeError):
        with tr.Checkpointer(keep, 3600) as saver:
            t = torch.zeros(2)
            saver.offer(lambda: {"w": w * 2, "t": t})
            t += 5  # the loop goes on changing its tensor
            raise RuntimeError
    kept = torch.load(keep, weights_only=False)
    assert torch.equal(kept["w"], torch.full((2,), 2.0)) and not kept["w"].requires_grad
    assert torch.equal(kept["t"], torch.zeros(2))


def test_sigterm_during_fit_writes_the_last_finished_epoch(tmp_path):
    """SIGTERM (a scheduler's time limit, ``proc.terminate()``) would end the process without unwinding; inside a
    training loop it raises SystemExit(143), so the kept copy of the last finished epoch is written. A real signal, in
    a child process: here the process sends it to itself during epoch 2's callback, before that epoch is saved."""
    import subprocess
    import sys

    ckpt = tmp_path / "term.pt"
    script = tmp_path / "child.py"
    script.write_text(
        "import os, signal, sys, torch\n"
        "from dovlib.data import load_dataset\n"
        "from dovlib.models import build_model\n"
        "from dovlib.train import fit\n"
        "ds = load_dataset('synthetic', num_classes=4, n_train=64, n_test=16, image_size=16)\n"
        "torch.manual_seed(0)\n"
        "def term(model, epoch):\n"
        "    if epoch == 2:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return {}\n"
        "fit(build_model('resnet18', num_classes=4, width=4), ds.x_train, ds.y_train, epochs=4, batch_size=32,\n"
        "    progress=False, checkpoint=sys.argv[1], callbacks=[term])\n"
        "print('not reached')\n")
    out = subprocess.run([sys.executable, str(script), str(ckpt)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 143, out.stderr[-2000:]
    assert "not reached" not in out.stdout
    assert torch.load(ckpt, weights_only=False)["epoch"] == 1


def test_checkpointer_takes_sigterm_only_inside_its_loop_and_only_when_unhandled(tmp_path):
    import signal

    import dovlib.train as tr

    before = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with pytest.raises(SystemExit) as stop:
            with tr.Checkpointer(tmp_path / "t.pt", 3600) as saver:
                saver.offer(lambda: {"unit": 1})
                handler = signal.getsignal(signal.SIGTERM)
                assert callable(handler)
                handler(signal.SIGTERM, None)  # what the interpreter calls when the signal arrives
        assert stop.value.code == 143 and torch.load(tmp_path / "t.pt", weights_only=False) == {"unit": 1}
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back on leaving the block
        with tr.Checkpointer(None, 3600):  # no file, nothing to protect: the process's signals are untouched
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

        def mine(signum, frame):
            pass

        signal.signal(signal.SIGTERM, mine)  # the caller's own handler (e.g. reproduce.exit_on_sigterm) stays
        with tr.Checkpointer(tmp_path / "u.pt", 3600):
            assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_fit_refuses_a_single_training_image_by_name():
    # 8x8 pixels: a 1x1 map at the last stage, so BatchNorm sees one value per channel (it used to be StopIteration)
    x = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError, match="x_train holds 1 image.*at least 2"):
        fit(_model(), x, torch.zeros(1, dtype=torch.long), epochs=1, batch_size=64, progress=False)


def test_save_timer_is_due_once_per_interval_and_always_at_the_end(monkeypatch):
    import dovlib.train as tr

    now = [100.0]
    monkeypatch.setattr(tr.time, "perf_counter", lambda: now[0])
    t = tr.SaveTimer(60)
    assert not t.due() and t.due(final=True)
    now[0] += 59
    assert not t.due()  # 59 s after the last (final) save
    now[0] += 1
    assert t.due() and not t.due()  # the clock restarts at each save
    assert tr.SaveTimer(0).due()


def test_save_timer_takes_numpy_numbers_and_refuses_booleans():
    """checkpoint_every from a numpy computation (np.float32, np.int64) is a number of seconds, stored as a float;
    True is not one (it would be 1 s), nor is NaN."""
    import numpy as np

    import dovlib.train as tr

    for every in (np.float32(1.5), np.int64(2), 3, float("inf")):
        timer = tr.SaveTimer(every)
        assert type(timer.every) is float and timer.every == float(every)
    for bad in (True, False, float("nan"), "60", None, -0.5):
        with pytest.raises(ValueError, match=r"checkpoint_every must be a number of seconds >= 0"):
            tr.SaveTimer(bad)
    with pytest.raises(ValueError, match=r"every must be a number"):
        tr.SaveTimer(True, name="every")


def test_train_steps_counts_zero_epochs_and_refuses_zero_images():
    assert train_steps(10, 4, 0) == 0 and train_steps(10, 4) == 3 and train_steps(9, 4) == 2  # 9 = 4 + 5 (merged)
    with pytest.raises(ValueError, match="n must be an integer"):
        train_steps(0, 4)
    with pytest.raises(ValueError, match="epochs must be an integer"):
        train_steps(10, 4, -1)


def test_precision_options_and_for_profile():
    assert precision_options() == {"amp": True, "cpu_bf16": False}
    assert precision_options("bf16") == {"amp": True, "cpu_bf16": True}
    assert precision_options("fp32") == {"amp": False, "cpu_bf16": False}
    with pytest.raises(ValueError, match="precision must be one of"):
        precision_options("fp16")
    tc = TrainConfig.for_profile(get_profile("quick:device=cpu,epochs=7,precision=bf16"), seed=3, lr=0.01)
    assert (tc.epochs, tc.batch_size, tc.lr, tc.device, tc.seed) == (7, 512, 0.01, "cpu", 3)
    assert tc.amp and tc.cpu_bf16
    assert not TrainConfig.for_profile(get_profile("smoke")).cpu_bf16
    # the same rule for other training loops (HiDDeN): auto is bf16 on CUDA only
    assert [uses_bf16(p, "cuda") for p in ("auto", "bf16", "fp32")] == [True, True, False]
    assert [uses_bf16(p, "cpu") for p in ("auto", "bf16", "fp32")] == [False, True, False]
    with pytest.raises(ValueError, match="precision"):
        uses_bf16("half", "cpu")
    # fit's autocast follows the same rule (one function states it); other devices never autocast
    for p in ("auto", "bf16", "fp32"):
        with _autocast(torch.device("cpu"), **precision_options(p)):
            assert torch.is_autocast_enabled("cpu") == uses_bf16(p, "cpu")
        assert not uses_bf16(p, "mps")
    # off means off on the model's own device, also inside a caller's autocast there (it was always the CPU's, so a
    # CUDA autocast around predict_logits went on: not the fp32 its docstring promises)
    off = _autocast(torch.device("cuda"), amp=False)
    assert (off.device, off._enabled) == ("cuda", False)
    with torch.autocast("cpu", dtype=torch.bfloat16), _autocast(torch.device("cpu"), amp=False):
        assert not torch.is_autocast_enabled("cpu")


def test_cpu_bf16_is_keyed_only_when_on():
    # golden values: TrainConfig.fingerprint() before cpu_bf16 existed (commit a0dda7a): cached models keep their keys
    assert TrainConfig().fingerprint() == "8a75065a38f0"
    assert TrainConfig(epochs=10, batch_size=128, lr=0.05, seed=3, flip=False).fingerprint() == "54512a14a550"
    assert TrainConfig(cpu_bf16=True).fingerprint() != TrainConfig().fingerprint()


def test_cpu_bf16_trains_under_bf16_autocast_and_evaluates_in_fp32(ds):
    def conv_dtypes(cpu_bf16):
        model, seen = _model(2), set()
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        hook = conv.register_forward_hook(lambda m, i, o: seen.add((m.training, o.dtype)))
        res = fit(model, ds.x_train, ds.y_train, epochs=1, batch_size=64, lr=0.05, progress=False, cpu_bf16=cpu_bf16)
        seen_train = {d for t, d in seen if t}
        seen.clear()
        logits = predict_logits(res.model, ds.x_test)
        hook.remove()
        return res, seen_train, {d for t, d in seen if not t}, logits

    res, train_dtypes, eval_dtypes, logits = conv_dtypes(True)
    assert train_dtypes == {torch.bfloat16} and eval_dtypes == {torch.float32} and logits.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # weights stay fp32 (autocast, not .half())
    assert _model(2).state_dict().keys() == res.model.state_dict().keys()
    again = conv_dtypes(True)[0]
    assert all(torch.equal(a, b) for a, b in zip(res.model.parameters(), again.model.parameters()))  # deterministic
    assert conv_dtypes(False)[1] == {torch.float32}  # the default stays fp32 on the CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_evaluation_runs_in_fp32_on_cuda_unless_asked(ds):
    """Training under bf16 autocast on CUDA must not carry into evaluation: BA, WSR and the verification
    probabilities are computed in fp32 (``amp=True`` opts in to bf16)."""
    model, seen = _model(2).cuda(), []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    hook = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    predict_logits(model, ds.x_test[:8])
    predict_logits(model, ds.x_test[:8], amp=True)
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16]


def test_fit_refuses_a_diverged_loss_and_never_checkpoints_it(ds, tmp_path):
    """lr=1e6 turns the loss into NaN within the first epoch: fit raises, naming the epoch, the loss and the lr, and
    the NaN state is not written as a checkpoint (it would be resumed, cached and verified later)."""
    ckpt = tmp_path / "nan.pt"
    with pytest.raises(FloatingPointError, match=r"train loss of epoch 1/2 is nan \(lr=1e\+06.*lower lr"):
        fit(_model(), ds.x_train, ds.y_train, epochs=2, batch_size=32, lr=1e6, progress=False, checkpoint=ckpt,
            checkpoint_every=0)
    assert not ckpt.exists()


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 1.5, "epochs must be an integer >= 0; got 1.5"),
    ("epochs", -1, "epochs must be an integer >= 0; got -1"),
    ("batch_size", 0, "batch_size must be an integer >= 1; got 0"),
    ("crop_padding", -1, "crop_padding must be an integer >= 0; got -1"),
    ("eval_batch_size", 0, "eval_batch_size must be an integer >= 1; got 0"),
    ("lr", 0, "lr must be a number in (0, inf)"),
    ("lr", float("nan"), "lr must be a number in (0, inf)"),
    ("weight_decay", -1e-4, "weight_decay must be a number in [0, inf)"),
    ("weight_decay", float("inf"), "weight_decay must be a number in [0, inf)"),
    ("momentum", 1.0, "momentum must be a number in [0, 1)"),
    ("momentum", -0.1, "momentum must be a number in [0, 1)"),
    ("label_smoothing", 1.0, "label_smoothing must be a number in [0, 1)"),
])
def test_train_config_refuses_out_of_range_fields(field, value, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**{field: value})
    assert str(err.value).startswith(message)


def test_train_config_keeps_valid_values_and_fingerprints():
    base = TrainConfig()
    assert TrainConfig(epochs=10.0).epochs == 10 and type(TrainConfig(epochs="3").epochs) is int
    assert TrainConfig(epochs=0).epochs == 0  # a no-op run stays allowed
    assert TrainConfig(momentum=0, weight_decay=0, label_smoothing=0.1, crop_padding=0).momentum == 0
    assert TrainConfig(lr="1e-3").lr == 0.001
    assert TrainConfig(epochs=10).fingerprint() == base.fingerprint()  # ints given stay as they were
    # a NumPy scalar is stored as the float it is (json, which the fingerprint uses, cannot hold np.float32)
    import numpy as np

    cfg = TrainConfig(lr=np.float32(0.5))
    assert type(cfg.lr) is float and cfg.fingerprint() == TrainConfig(lr=0.5).fingerprint()
    assert TrainConfig(seed="3").seed == 3 and TrainConfig(seed="3").fingerprint() == TrainConfig(seed=3).fingerprint()


@pytest.mark.parametrize("field", ["flip", "amp", "cpu_bf16", "channels_last", "compile", "progress"])
def test_train_config_switches_must_be_booleans(field):
    """The string "false" is truthy: it used to turn bf16 on for a CPU run asked to keep it off."""
    with pytest.raises(TypeError, match=f"{field} must be True or False; got 'false'"):
        TrainConfig(**{field: "false"})


def test_train_config_seed_is_a_non_negative_integer():
    with pytest.raises(ValueError, match="seed must be an integer >= 0; got 0.5"):
        TrainConfig(seed=0.5)


def test_evaluate_refuses_labels_of_another_length():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 4))
    x = torch.zeros(8, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="x has 8 images but y has 1 labels"):
        evaluate(model, x, torch.tensor([0]))  # was broadcast against all 8 predictions
    with pytest.raises(ValueError, match="x has 8 images but y has 7 labels"):
        evaluate(model, x, list(range(7)))


def test_predictions_on_zero_images_keep_the_class_axis(ds):
    model = _model(3)
    assert predict_logits(model, ds.x_test[:0]).shape == (0, 4)  # was (0, 0)
    assert predict_proba(model, ds.x_test[:0]).shape == (0, 4)
    assert torch.allclose(predict_logits(model, ds.x_test[:5], batch_size=2), predict_logits(model, ds.x_test[:5]),
                          atol=1e-5)


def test_fit_refuses_images_without_a_channel_axis():
    model = build_model("badnets_cnn", 10, 1, width=4)
    x = torch.zeros(8, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"x_train must be images \(N, C, H, W\) \(grey images: x\[:, None\]\); got "
                                         r"shape \(8, 28, 28\)"):
        fit(model, x, torch.zeros(8, dtype=torch.long), epochs=1, device="cpu", progress=False)


def test_fit_refuses_labels_that_are_not_class_indices():
    """Float labels were truncated to classes, -100 skipped by cross_entropy's ignore_index (all -100: a NaN loss
    blamed on the learning rate), a label past the outputs crashed on CUDA: each is refused by name."""
    model = build_model("badnets_cnn", 3, 1, width=4)
    x = torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
    kw = {"epochs": 1, "device": "cpu", "progress": False}
    with pytest.raises(ValueError, match=r"y_train must be integer class labels, one per image \(shape \(N,\)\); "
                                         r"got dtype torch.float32 and shape \(8,\)"):
        fit(model, x, torch.full((8,), 1.7), **kw)
    with pytest.raises(ValueError, match=r"y_train must be integer class labels.*dtype torch.bool"):
        fit(model, x, torch.ones(8, dtype=torch.bool), **kw)
    with pytest.raises(ValueError, match=r"shape \(8, 1\)"):
        fit(model, x, torch.zeros(8, 1, dtype=torch.long), **kw)
    with pytest.raises(ValueError, match=r"y_train must be class labels in \[0, num_classes - 1\]; got -100"):
        fit(model, x, torch.full((8,), -100), **kw)
    with pytest.raises(ValueError, match=r"in \[0, num_classes - 1\]; got -1"):
        fit(model, x, torch.tensor([0, 1, 2, -1, 0, 1, 2, 0]), **kw)
    with pytest.raises(ValueError, match=r"integer class labels.*complex64"):
        fit(model, x, torch.ones(8, dtype=torch.complex64), **kw)
    with pytest.raises(ValueError, match=r"y_train holds label 3 but the model has 3 outputs: labels must be in "
                                         r"\[0, 2\]"):
        fit(model, x, torch.tensor([0, 1, 2, 3, 0, 1, 2, 0]), **kw)
    import numpy as np

    assert fit(model, x, np.array([0, 1, 2, 0, 1, 2, 0, 1], dtype=np.uint8), **kw).history  # uint8 labels train


def test_a_last_batch_of_one_image_joins_the_batch_before_it():
    """9 images in batches of 4 used to end each epoch with a step on one image alone: a BatchNorm over a 1x1 map
    failed there, and over larger maps it trained a full step on that image and moved the running statistics towards
    it. The image now joins the batch before it (4 + 5); a training set of one image is still refused by name."""
    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.BatchNorm2d(4),
                                   torch.nn.Flatten(), torch.nn.Linear(4, 2))

    def batches(n, batch_size):
        m, sizes = model(), []
        m.register_forward_pre_hook(lambda mod, inp: sizes.append(len(inp[0])) if mod.training else None)
        x, y = torch.zeros(n, 1, 8, 8, dtype=torch.uint8), torch.arange(n) % 2
        res = fit(m, x, y, batch_size=batch_size, epochs=2, device="cpu", progress=False, flip=False, crop_padding=0)
        assert len(res.history) == 2
        return sizes

    assert batches(9, 4) == [4, 5] * 2
    assert batches(21, 4) == [4, 4, 4, 4, 5] * 2
    assert batches(9, 5) == [5, 4] * 2  # other remainders stay their own batch
    assert batches(8, 4) == [4, 4] * 2
    for n, batch_size in ((9, 4), (21, 4), (9, 5), (8, 4), (3, 8)):  # train_steps counts the steps fit takes
        assert train_steps(n, batch_size, 2) == len(batches(n, batch_size)), (n, batch_size)
    # notebook 05's thief on the quick profile: 508 images in the classifier's batch of 512 took one step an epoch
    assert train_steps(508, 512, 10) == 10 and train_steps(508, 128, 10) == 40 and train_steps(513, 128, 1) == 4
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
        train_steps(8, 0)
    with pytest.raises(ValueError, match=r"x_train holds 1 image, which this model's BatchNorm cannot train on"):
        batches(1, 4)
    with pytest.raises(ValueError, match=r"batch_size must be at least 2 for this model .*got 1"):
        batches(4, 1)


def test_a_checkpoint_from_before_the_merged_last_batch_is_refused(tmp_path, monkeypatch):
    """Older code trained a last batch of one on its own: one step more per epoch, so its schedule does not fit a run
    resumed now. Such a checkpoint (no "last_batch") is refused by name; other sizes' checkpoints are unaffected. The
    classifier cache keys such runs apart too."""
    from dovlib import sscl
    from dovlib.params import get_profile
    from dovlib.train import merges_last_batch

    assert merges_last_batch(9, 4) and not merges_last_batch(8, 4) and not merges_last_batch(1, 4)
    x, y = torch.zeros(9, 1, 8, 8, dtype=torch.uint8), torch.arange(9) % 2
    kw = dict(batch_size=4, epochs=2, device="cpu", progress=False, flip=False, crop_padding=0)
    path = tmp_path / "c.pt"
    fit(_tiny_bn_model(), x, y, checkpoint=path, checkpoint_every=0, **kw)
    state = torch.load(path, weights_only=False)
    assert state["last_batch"] == "merged"
    state.pop("last_batch")
    state["epoch"] = 1  # an unfinished run of the older code
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"was written for older code, which trained a last batch of one image"):
        fit(_tiny_bn_model(), x, y, checkpoint=path, **kw)
    keys = []

    class Stop(Exception):
        pass

    def record(cache, key):
        keys.append(key)
        raise Stop

    monkeypatch.setattr(sscl, "run_dir", record)
    prof = get_profile("smoke:batch_size=4,epochs=1")
    for n in (9, 8):
        with pytest.raises(Stop):
            sscl.train_classifier(torch.zeros(n, 1, 28, 28, dtype=torch.uint8), torch.arange(n) % 2, arch="badnets_cnn",
                                  profile=prof, num_classes=2, progress=False)
    assert keys[0].get("last_batch") == "merged" and "last_batch" not in keys[1]


def _tiny_bn_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 2))


def test_callbacks_see_the_model_in_eval_mode():
    """``evaluate`` leaves the model in train mode; a callback's own forward pass then used batch statistics and moved
    the running ones of the model being trained."""
    seen = []
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1),
                            torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.zeros(8, 1, 8, 8, dtype=torch.uint8), torch.arange(8) % 2
    fit(m, x, y, x_test=x, y_test=y, batch_size=4, epochs=2, device="cpu", progress=False,
        callbacks=[lambda model, epoch: seen.append(model.training)])
    assert seen == [False, False]


class _PixelModel(torch.nn.Module):
    """Predicts the class coded in each image's top-left pixel (grey level = class), whatever it is trained to do:
    its one parameter shifts every logit alike, so training never changes a prediction. No BatchNorm."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.k = num_classes
        self.shift = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        cls = (x[:, 0, 0, 0] * 255).round().long().clamp(0, self.k - 1)
        return torch.nn.functional.one_hot(cls, self.k).float() * 3 + self.shift


def _coded_images(pred):
    x = torch.zeros(len(pred), 3, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.as_tensor(pred, dtype=torch.uint8)
    return x


def test_fit_train_loss_uses_label_smoothing():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (12, 3, 4, 4), dtype=torch.uint8)
    y = torch.arange(12) % 4
    losses = {}
    for s in (0.0, 0.3):
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 4))
        with torch.no_grad():
            logits = model(to_float(x))
        res = fit(model, x, y, epochs=1, batch_size=12, lr=1e-6, label_smoothing=s, crop_padding=0, flip=False,
                  device="cpu", progress=False)
        want = torch.nn.functional.cross_entropy(logits, y, label_smoothing=s).item()
        losses[s] = res.history[0]["train_loss"]
        assert losses[s] == pytest.approx(want, rel=1e-5)  # one step: the loss of the starting model
    assert abs(losses[0.3] - losses[0.0]) > 1e-3


def test_fit_train_acc_is_the_share_of_training_images_classified_right():
    y = torch.arange(20) % 4
    pred = y.clone()
    pred[:7] = (y[:7] + 1) % 4  # 7 of 20 wrong
    x = _coded_images(pred)
    res = fit(_PixelModel(), x, y, epochs=2, batch_size=8, lr=0.01, crop_padding=0, flip=False, device="cpu",
              progress=False)  # 3 steps per epoch
    assert [r["train_acc"] for r in res.history] == [pytest.approx(13 / 20)] * 2
    assert evaluate(res.model, x, y) == pytest.approx(13 / 20)


def test_fit_measures_test_acc_on_the_test_set_not_the_training_set():
    y_train = torch.arange(20) % 4
    x_train = _coded_images(y_train)  # all right
    y_test = torch.arange(16) % 4
    pred = y_test.clone()
    pred[:12] = (y_test[:12] + 1) % 4  # labels the model cannot match: 4 of 16 right
    x_test = _coded_images(pred)
    res = fit(_PixelModel(), x_train, y_train, x_test, y_test, epochs=1, batch_size=10, lr=0.01, crop_padding=0,
              flip=False, device="cpu", progress=False)
    assert evaluate(res.model, x_train, y_train) == 1.0
    assert res.final["test_acc"] == pytest.approx(0.25) == evaluate(res.model, x_test, y_test)


def test_make_optimizer_uses_nesterov_momentum_when_there_is_momentum():
    model = _model()
    opt, _ = make_optimizer(model, TrainConfig(momentum=0.9), total_steps=10)
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in opt.param_groups)
    opt, _ = make_optimizer(model, TrainConfig(momentum=0.0), total_steps=10)  # SGD refuses nesterov without it
    assert all(not g["nesterov"] and g["momentum"] == 0.0 for g in opt.param_groups)


def test_a_resumed_optimizer_keeps_this_devices_fused_choice(ds, tmp_path, monkeypatch):
    """A checkpoint from a GPU run saves fused=True in the optimizer's param groups; resumed on the CPU the optimizer
    keeps make_optimizer's choice for the CPU (not fused), not the saved one."""
    import dovlib.train as train

    kw = dict(epochs=2, batch_size=64, lr=0.05, progress=False, device="cpu", checkpoint_every=0)
    ckpt = tmp_path / "ck.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(_model(3), ds.x_train, ds.y_train, checkpoint=ckpt, callbacks=[_stop_at(2)], **kw)
    state = torch.load(ckpt, weights_only=False)
    for g in state["optimizer"]["param_groups"]:
        g["fused"] = True  # as a CUDA run's make_optimizer set it
    torch.save({**state, "device_type": "cuda"}, ckpt)
    made = []

    def recording(*a, **k):
        made.append(make_optimizer(*a, **k))
        return made[-1]

    monkeypatch.setattr(train, "make_optimizer", recording)
    res = fit(_model(4), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    assert res.resumed_from_epoch == 1
    assert [g.get("fused") for g in made[0][0].param_groups] == [None, None]


def test_fit_refuses_a_checkpoint_that_would_run_code_and_reads_its_own_safely(ds, tmp_path, plant_code):
    """fit reads its checkpoint with weights_only=True: a foreign file at the path (runs/ may be shared, a cache
    folder copied from someone else) is refused by name, never unpickled with its code, and left where it is. fit's
    own checkpoints load that way, a callback's NumPy numbers in the history included (numpy scalars only), and
    resume."""
    import numpy as np

    kw = dict(epochs=2, batch_size=64, lr=0.05, progress=False, checkpoint_every=0)
    x, y = ds.x_train[:128], ds.y_train[:128]
    ckpt = tmp_path / "ck.pt"
    marker = plant_code(ckpt, epoch=1, fingerprint="?")
    planted = ckpt.read_bytes()
    with pytest.raises(ValueError, match=r"ck.pt \(fit's checkpoint\) does not load safely \(weights_only=True: "
                                         r"tensors and plain settings only\): Unsupported global: GLOBAL \S*open.*; "
                                         r"delete it or pass another path"):
        fit(_model(), x, y, checkpoint=ckpt, **kw)
    assert not marker.exists() and ckpt.read_bytes() == planted
    ckpt.unlink()

    def numpy_numbers(model, epoch):
        return {"score": np.float64(0.5), "flag": np.bool_(True), "count": np.int64(epoch)}

    with pytest.raises(KeyboardInterrupt):  # after epoch 1's checkpoint
        fit(_model(3), x, y, checkpoint=ckpt, callbacks=[numpy_numbers, _stop_at(2)], **kw)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt) == []  # saved as Python numbers now
    state = torch.load(ckpt, weights_only=True)  # as older code saved them: NumPy numbers in the history
    state["history"][0].update(numpy_numbers(None, 1))
    torch.save(state, ckpt)
    assert sorted(torch.serialization.get_unsafe_globals_in_checkpoint(ckpt)) == [
        "numpy._core.multiarray.scalar", "numpy.dtype"]  # what a callback's np.float64 needs, and nothing else
    resumed = fit(_model(4), x, y, checkpoint=ckpt, callbacks=[numpy_numbers], **kw)
    assert resumed.resumed_from_epoch == 1 and [r["count"] for r in resumed.history] == [1, 2]
    assert resumed.history[0]["score"] == 0.5 and resumed.history[0]["flag"]
    fit(_model(5), x, y, checkpoint=tmp_path / "plain.pt", **kw)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "plain.pt") == []


def test_load_state_names_the_global_a_blocked_module_needs_not_torchs_advice(tmp_path, plant_code):
    """For a function of a module torch's weights_only loader blocks outright (os.remove, os.system: posix; sys.exit)
    torch's message starts with its advice to load with weights_only=False; the reason kept is the line naming the
    global, and the code never runs."""
    from dovlib.train import load_state, unsafe_load_reason

    marker = plant_code(tmp_path / "blocked.pt", remove_marker=True, epoch=1)
    with pytest.raises(ValueError, match=r"blocked.pt \(test\) does not load safely \(weights_only=True: tensors and "
                                         r"plain settings only\): Trying to load unsupported GLOBAL (posix|nt)\.remove "
                                         r"whose module (posix|nt) is blocked; delete it or pass another path$") as err:
        load_state(tmp_path / "blocked.pt", "test")
    assert marker.exists() and "weights_only" not in str(err.value).split("only):", 1)[1]
    advice = ("Weights only load failed. In PyTorch 2.6, we changed the default value of the `weights_only` argument "
              "in `torch.load` from `False` to `True`. Re-running `torch.load` with `weights_only` set to `False` "
              "will likely succeed, but it can result in arbitrary code execution.")
    docs = "Check the documentation of torch.load to learn more about types accepted by default with weights_only"
    assert unsafe_load_reason(RuntimeError(f"{advice}\n\n\nTrying to load unsupported GLOBAL sys.exit whose module sys "
                                           f"is blocked.\n\n{docs}")) == ("Trying to load unsupported GLOBAL sys.exit "
                                                                           "whose module sys is blocked")
    assert unsafe_load_reason(RuntimeError(f"{advice}\n Please file an issue with the following so that we can make "
                                           f"`weights_only=True` compatible with your use case: WeightsUnpickler "
                                           f"error: Unsupported operand 149\n\n{docs}")) == "Unsupported operand 149"
    assert unsafe_load_reason(RuntimeError(f"{advice}\n\n{docs}")) == "RuntimeError"  # nothing but advice


def test_load_state_names_an_empty_or_truncated_file(ds, tmp_path):
    """An empty (0-byte) or truncated file raised a bare EOFError or torch's RuntimeError ("PytorchStreamReader
    failed reading zip archive"), which the crafting caches' fallback (ValueError only) did not catch: load_state
    names the file, what it should be and the remedy in a ValueError; fit refuses its checkpoint so."""
    import zipfile

    from dovlib.train import load_state

    whole = tmp_path / "whole.pt"
    torch.save({"a": torch.zeros(1000)}, whole)
    data = whole.read_bytes()
    for name, content, problem in (("empty.pt", b"", r"is empty \(0 bytes\)"),
                                   ("half.pt", data[: len(data) // 2], "is not a whole torch file"),
                                   ("end.pt", data[:-10], "is not a whole torch file"),
                                   ("text.pt", b"some text\n", "is not a whole torch file")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name} \(test\) {problem}.*; delete it or pass another path$"):
            load_state(tmp_path / name, "test")
    with zipfile.ZipFile(tmp_path / "zip.pt", "w") as z:  # a zip archive, not torch's
        z.writestr("a.txt", "hi")
    with pytest.raises(ValueError, match=r"zip.pt \(test\) is not a whole torch file \(.*inline_container.*\); "
                                         r"delete it or pass another path$"):
        load_state(tmp_path / "zip.pt", "test")
    ckpt = tmp_path / "ck.pt"
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError, match=r"ck.pt \(fit's checkpoint\) is empty \(0 bytes\).*; delete it or pass "
                                         r"another path$"):
        fit(_model(), ds.x_train[:64], ds.y_train[:64], epochs=1, batch_size=32, progress=False, checkpoint=ckpt)
    assert ckpt.read_bytes() == b""  # left where it is


# data.pkl contents of a zip archive torch.save wrote, garbled: torch's weights_only unpickler raised a bare KeyError,
# IndexError, struct.error or UnicodeDecodeError for most, and load_state called the others unsafe globals or
# operands, with the garbage's control characters and undecodable bytes in its message
GARBLED_PICKLES = {
    "random": bytes(torch.randint(0, 256, (64,), generator=torch.Generator().manual_seed(0)).tolist()),
    "text": b"some text\n",  # a memo lookup of a key never stored: KeyError
    "empty": b"",
    "stop": b"\x80\x02.",  # a valid first opcode, then STOP on an empty stack: IndexError
    "cut_int": b"\x80\x02J\x01",  # a 4-byte integer cut short: struct.error
    "utf8": b"\x80\x02X\x02\x00\x00\x00\xff\xfe.",  # a string of bytes that are no UTF-8: UnicodeDecodeError
    "operand": b"\x80\x02\xfe\xfe\xfe",  # was "Unsupported operand 254", as for a pickle torch cannot read
    "bytes_global": b"\x80\x02c\xff\xfe\n\x80\n.",  # a global of bytes that are no UTF-8: UnicodeDecodeError
    "control_global": b"\x80\x02c\x1b[31m\n\x07\x00x\n.",  # well-formed, but a global of control characters: was
    # "Unsupported global: GLOBAL \x1b[31m.\x07\x00x ...", the escape sequence and bell in the message as they were
    "control_name": b"\x80\x02cbuiltins\n\x1b[2J\x07\n.",  # a module's name, then a name of control characters
}


@pytest.mark.parametrize("name", GARBLED_PICKLES)
def test_load_state_names_a_file_with_a_garbled_pickle_as_damaged(tmp_path, rewrite_pickle, name):
    """A whole zip archive whose data.pkl is garbage is named damaged (the file, what it should be, the remedy) in a
    message of printable text only; never torch's bare error or a "global" made of the garbage."""
    from dovlib.train import TorchFileError, load_state

    path = tmp_path / f"{name}.pt"
    torch.save({"a": torch.zeros(3)}, path)
    rewrite_pickle(path, GARBLED_PICKLES[name])
    with pytest.raises(ValueError, match=rf"{name}.pt \(test\) is damaged: its data.pkl is no readable pickle "
                                         r"\(.+\); delete it or pass another path$") as err:
        load_state(path, "test")
    assert type(err.value) is TorchFileError and str(err.value).isprintable()  # not a bare UnicodeDecodeError
    assert "Unsupported" not in str(err.value) and "\\x1b" not in str(err.value).split("(", 1)[0]


def test_load_state_names_a_pickle_changed_in_place_as_damaged_by_its_checksum(tmp_path):
    """One byte of data.pkl changed inside the archive (a bit flipped on a disk): its CRC-32 no longer matches.
    torch read the changed bytes anyway and refused a global "torch._utils.Xrebuild_tensor_v2" as unsafe, as if the
    file held code; the archive's own checksum says it is damaged."""
    from dovlib.train import TorchFileError, load_state

    path = tmp_path / "flipped.pt"
    torch.save({"a": torch.zeros(3)}, path)
    data = bytearray(path.read_bytes())
    data[data.index(b"_rebuild_tensor_v2")] = ord("X")
    path.write_bytes(bytes(data))
    with pytest.raises(TorchFileError, match=r"flipped.pt \(test\) is damaged: its data.pkl is no readable pickle "
                                             r"\(BadZipFile: Bad CRC-32 for file 'flipped/data.pkl'\); delete it"):
        load_state(path, "test")


def test_printable_escapes_control_characters_and_cuts_long_text_to_its_limit():
    """A garbled file's text is quoted in a message: escaped, and at most ``limit`` characters in all (an ellipsis
    ends a cut one)."""
    from dovlib.train import printable

    assert printable("a\x1b[2Jb\x07\udcff") == "a\\x1b[2Jb\\x07\\udcff"
    assert printable("x" * 300) == "x" * 300 and printable("x" * 10, limit=10) == "x" * 10
    assert printable("x" * 301) == "x" * 297 + "..." and len(printable("y" * 5000)) == 300
    cut = printable("\x00" * 200, limit=20)  # the limit counts the escaped text; no fifth escape cut to "\\"
    assert cut == "\\x00" * 4 + "..." and cut.isprintable()


@pytest.mark.parametrize("limit", [-1, 0, 1, 2, 3, 2.5, 10.0, "300", None, True])
def test_printable_refuses_a_limit_with_no_room_for_text(limit):
    """Below 3 every text longer than the limit came back as "...", longer than the limit it was meant to keep to
    ("abc" at limit 2, "a" at 0); at 3 a cut text kept nothing but its ellipsis. Such a limit (or one that is no
    whole number) is refused, naming the parameter and the range."""
    from dovlib.train import printable

    with pytest.raises(ValueError, match=r"limit must be a whole number >= 4 .*; got " + re.escape(repr(limit))):
        printable("abcdef", limit)
    assert printable("abcdef", 4) == "a..." and printable("abc", 4) == "abc"  # the least limit keeps a character


@pytest.mark.parametrize("char", ["\x1b", "\udcff", "\U000e0001", "\x85"])
def test_printable_cuts_only_between_whole_escapes(char):
    """A cut text ends on a whole escape: the cut fell at ``limit - 3`` escaped characters, often inside an escape,
    which left a dangling ``\\x1``, ``\\udc`` or ``\\U000e00`` before the ellipsis (a reader cannot tell what the
    byte was, and it reads as a different escape)."""
    from dovlib.train import printable

    escape = ascii(char)[1:-1]
    for lead in range(12):
        escaped = "a" * lead + escape * 50  # the whole text, escaped
        whole = {*range(lead + 1), *(lead + k * len(escape) for k in range(51))}  # lengths ending on a whole escape
        for limit in range(4, 40):
            cut = printable("a" * lead + char * 50, limit)
            body = cut[:-3]
            assert cut.endswith("...") and escaped.startswith(body) and len(body) in whole, (lead, limit, cut)
            assert limit - len(escape) < len(cut) <= limit, (lead, limit, cut)  # less than one escape dropped
    # the cut is one place: text after an escape that did not fit is never kept (it would read as following the
    # text before that escape)
    assert printable("a" * 5 + char + "b" * 20, limit=10) == "aaaaa..."


def test_load_state_names_a_pickle_that_rebuilds_no_tensor_as_damaged(tmp_path, rewrite_pickle):
    """A well-formed data.pkl whose values do not fit the tensor they rebuild (sizes beyond the stored data, a storage
    of another length, torch's rebuild function given no arguments, a storage's persistent id that is no storage's)
    raised torch's bare RuntimeError, TypeError, IndexError, ValueError or AttributeError."""
    from dovlib.train import TorchFileError, load_state

    torch.save({"a": torch.zeros(3)}, tmp_path / "whole.pt")
    good = (tmp_path / "whole.pt").read_bytes()
    for name, old, new, why in (("size", b"K\x03\x85", b"K\x09\x85", "RuntimeError"),  # 9 values from 3
                                ("storage", b"K\x03t", b"K\x09t", "RuntimeError"),  # a storage of 9 values
                                ("call", None, b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)R.", "TypeError"),
                                # a storage's persistent id empty, cut short or naming no storage type; a dict's
                                # SETITEMS of one value (well-formed opcodes all: pickletools reads them)
                                ("persid", None, b"\x80\x02)Q.", "IndexError"),
                                ("unpack", None, b"\x80\x02X\x07\x00\x00\x00storage\x85Q.", "ValueError"),
                                ("storage_type", None, b"\x80\x02(X\x07\x00\x00\x00storageK\x05X\x01\x00\x00\x000"
                                 b"X\x03\x00\x00\x00cpuK\x03tQ.", "AttributeError"),
                                ("setitems", None, b"\x80\x02}(K\x01u.", "IndexError"),
                                # a negative storage size: torch's TypeError of many lines, the first quoted
                                ("numel", b"K\x03t", b"J\xfd\xff\xff\xfft", "TypeError")):
        path = tmp_path / f"{name}.pt"
        path.write_bytes(good)
        original = rewrite_pickle(path, new)
        if old is not None:
            assert original.count(old) == 1
            rewrite_pickle(path, original.replace(old, new))
        with pytest.raises(ValueError, match=rf"{name}.pt \(test\) is damaged: its data.pkl does not rebuild torch's "
                                             rf"objects \({why}: .+\); delete it or pass another path$") as err:
            load_state(path, "test")
        assert type(err.value) is TorchFileError  # dovlib's refusal, not torch's error
        assert str(err.value).isprintable(), str(err.value)  # one line


# well-formed data.pkl contents torch.save never writes whose refusal by torch's weights_only unpickler is about the
# pickle's shape, not a global: a persistent id that names no storage (a junk tag, an int, a string) or an opcode
# applied to a value of the wrong type. load_state called these "does not load safely", as if the file held code.
FOREIGN_SHAPES = {
    "storage_tag": (b"X\x07\x00\x00\x00storage", b"X\x07\x00\x00\x00stXrage",
                    "Only persistent_load of storage is allowed, but got <class 'str'>"),
    "tuple_int": (None, b"\x80\x02K\x05\x85Q.", "Only persistent_load of storage is allowed, but got <class 'int'>"),
    "string_id": (None, b"\x80\x02X\x03\x00\x00\x00abcQ.",
                  "persistent_load id must be tuple or int, but got <class 'str'>"),
    "append": (None, b"\x80\x02K\x01K\x02a.", "Can only append to lists, but got <class 'int'>"),
    "setitem": (None, b"\x80\x02K\x01K\x02K\x03s.",
                "Can only SETITEM for dict, collections.OrderedDict, collections.Counter, but got <class 'int'>"),
    # BUILD, REDUCE and NEWOBJ on a value the pickle built itself: a global is refused where it is read, so these
    # can only meet a number, a string, a container or an allowed global's value
    "build": (None, b"\x80\x02K\x01K\x02b.", "Can only build Tensor, Parameter, OrderedDict or types allowlisted via "
              "`add_safe_globals`, but got <class 'int'>"),
    "reduce": (None, b"\x80\x02K\x01)R.", "Trying to call reduce for unrecognized function 1"),
    "newobj": (None, b"\x80\x02K\x01)\x81.",
               "Can only create new object for nn.Parameter or classes allowlisted via `add_safe_globals` but got 1"),
}


@pytest.mark.parametrize("name", FOREIGN_SHAPES)
def test_load_state_names_a_pickle_with_a_junk_storage_id_as_damaged(tmp_path, rewrite_pickle, name):
    """A data.pkl whose persistent id names no storage (a damaged or foreign file) was reported as "does not load
    safely: Only persistent_load of storage is allowed ...", which reads as a code problem; it is named damaged, as
    other pickles that do not rebuild torch's objects are, with torch's own words kept as the detail."""
    from dovlib.train import TorchFileError, load_state

    old, new, words = FOREIGN_SHAPES[name]
    path = tmp_path / f"{name}.pt"
    torch.save({"a": torch.zeros(3)}, path)
    original = rewrite_pickle(path, new)
    if old is not None:
        assert original.count(old) == 1
        rewrite_pickle(path, original.replace(old, new))
    with pytest.raises(TorchFileError) as err:
        load_state(path, "test")
    assert str(err.value) == (f"{path} (test) is damaged: its data.pkl does not rebuild torch's objects "
                              f"(UnpicklingError: {words}); delete it or pass another path")
    assert err.value.problem.startswith("is damaged: ") and "load safely" not in str(err.value)


def test_unsafe_load_reason_keeps_no_control_characters():
    """The reason is quoted in a message: a control character or undecodable byte (a surrogate) torch's message
    carried is escaped, never passed on raw."""
    import pickle

    from dovlib.train import unsafe_load_reason

    reason = unsafe_load_reason(pickle.UnpicklingError("Weights only load failed. WeightsUnpickler error: Unsupported "
                                                       "global: GLOBAL a\x1b[2J.b\udcff\x07 was not an allowed global"))
    assert reason == r"Unsupported global: GLOBAL a\x1b[2J.b\udcff\x07 was not an allowed global"
    assert reason.isprintable()


def test_safe_torch_load_refusal_carries_its_problem_and_survives_pickling(tmp_path, rewrite_pickle):
    """The refusal is a ValueError whose ``problem`` is the phrase between the file's name and the remedy (what
    dovlib.perceptual words its own message with); a sweep's worker process sends it back pickled, so it must come
    back whole."""
    import pickle

    from dovlib.train import TorchFileError, load_state, safe_torch_load

    path = tmp_path / "x.pt"
    path.write_bytes(b"")
    torch.save([1], tmp_path / "list.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "garbled.pt")
    rewrite_pickle(tmp_path / "garbled.pt", b"\x80\x02\xf0.")
    for refuse, problem in [(lambda: safe_torch_load(path, "a test file", "write it again"),
                             "is empty (0 bytes), not a file torch.save finished"),
                            (lambda: load_state(tmp_path / "list.pt", "a test file", remedy="write it again"),
                             "holds a list, not a dict of dovlib's state"),
                            (lambda: safe_torch_load(tmp_path / "garbled.pt", "a test file", "write it again"),
                             "is damaged: its data.pkl is no readable pickle (ValueError: at position 2, opcode "
                             "b'\\xf0' unknown)")]:
        with pytest.raises(TorchFileError) as err:
            refuse()
        e = err.value
        assert isinstance(e, ValueError) and e.problem == problem and e.remedy == "write it again"
        assert str(e) == f"{e.path} (a test file) {problem}; write it again"
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is TorchFileError and str(back) == str(e) and back.problem == problem


def test_load_state_raises_a_map_location_mistake_as_it_is_never_as_a_damaged_file(tmp_path, rewrite_pickle):
    """A map_location torch.load cannot use (a callable of the wrong arity or one that fails, a list) raised a
    TypeError while storages were rebuilt, which was named "is damaged: its data.pkl does not rebuild torch's objects
    ...; delete it": a good checkpoint, and advice to delete it. The file is the fault only where it fails on the CPU
    too."""
    from dovlib.train import TorchFileError, load_state

    good = tmp_path / "good.pt"
    torch.save({"a": torch.zeros(3)}, good)

    def broken(storage, location):
        raise TypeError("a bug in the caller's map_location")

    for map_location, match in ((lambda storage: storage, "positional argument"), (broken, "a bug in the caller"),
                                (["cpu"], "not callable")):
        with pytest.raises(TypeError, match=match):
            load_state(good, "test", map_location=map_location)
    assert torch.equal(load_state(good, "test", map_location=lambda storage, location: storage)["a"], torch.zeros(3))
    # a file that does not rebuild is damaged whatever map_location the caller passes
    torch.save({"a": torch.zeros(3)}, tmp_path / "call.pt")
    rewrite_pickle(tmp_path / "call.pt", b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)R.")
    for map_location in ("cpu", torch.device("cpu"), lambda storage, location: storage, {"cpu": "cpu"}):
        with pytest.raises(TorchFileError, match=r"is damaged: its data.pkl does not rebuild torch's objects"):
            load_state(tmp_path / "call.pt", "test", map_location=map_location)


def test_load_state_raises_a_file_it_may_not_read_as_it_is_never_as_a_damaged_one(tmp_path, refuse_opening):
    """A whole checkpoint this process may not read was named "is not a whole torch file (... truncated, damaged or
    not torch's); delete it" (check_torch_file asked zipfile.is_zipfile, which answers False for any OSError): torch's
    own PermissionError says what is wrong."""
    from dovlib.train import load_state

    path = tmp_path / "ckpt.pt"
    torch.save({"a": torch.zeros(3)}, path)
    refuse_opening(path, PermissionError(13, "Permission denied", str(path)))
    with pytest.raises(PermissionError, match="Permission denied"):
        load_state(path, "fit's checkpoint")


def test_load_state_reads_numpy_numbers_under_either_numpy_name(tmp_path):
    """A checkpoint written under numpy 1 names numpy.core.multiarray.scalar, one under numpy 2 numpy._core's: fit's
    allowance takes both; an array (which NumPy rebuilds by _reconstruct) is still refused."""
    import io
    import zipfile

    import numpy as np

    from dovlib.train import load_state

    buf = io.BytesIO()
    torch.save({"score": np.float64(0.5), "flag": np.bool_(True)}, buf)
    for name in (b"numpy.core.multiarray", b"numpy._core.multiarray"):
        path = tmp_path / f"{name.decode()}.pt"
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(path, "w") as zout:
            for item in zin.infolist():
                data = zin.read(item.filename)
                if item.filename.endswith("data.pkl"):
                    data = data.replace(b"numpy._core.multiarray", name).replace(b"numpy.core.multiarray", name)
                zout.writestr(item, data)
        assert name.decode() + ".scalar" in torch.serialization.get_unsafe_globals_in_checkpoint(path)
        assert load_state(path, "test", numpy_scalars=True) == {"score": 0.5, "flag": True}
        with pytest.raises(ValueError, match=r"\(test\) does not load safely"):
            load_state(path, "test")  # only where asked
    torch.save({"a": np.zeros(2)}, tmp_path / "array.pt")
    with pytest.raises(ValueError, match=r"array.pt \(test\) does not load safely .*_reconstruct"):
        load_state(tmp_path / "array.pt", "test", numpy_scalars=True)


def test_load_state_reads_a_file_written_on_a_gpu_onto_the_cpu(tmp_path):
    """dovlib's caches (crafted marks, train_hidden's files) may be written on a GPU machine and read on a CPU one
    (runs/ copied): load_state maps their tensors to the CPU unless told otherwise, as torch.load did with
    map_location="cpu" before. A file whose tensors are stored as CUDA tensors is made here by renaming the
    storage location in a CPU file."""
    import io
    import zipfile

    from dovlib.train import load_state

    buf = io.BytesIO()
    torch.save({"x": torch.arange(3.0)}, buf)
    path = tmp_path / "gpu.pt"
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert data.count(b"X\x03\x00\x00\x00cpu") == 1  # the string naming the storage's location
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            zout.writestr(item, data)
    state = load_state(path, "test")
    assert state["x"].device.type == "cpu" and state["x"].tolist() == [0.0, 1.0, 2.0]


def test_a_model_read_back_counts_its_stored_training_time_not_its_reading(ds, tmp_path):
    from dovlib.train import compute_ledger, compute_ledger_mark

    ckpt, kw = tmp_path / "m.pt", dict(epochs=2, batch_size=64, progress=False)
    mark = compute_ledger_mark()
    trained = fit(_model(), ds.x_train, ds.y_train, ds.x_test, ds.y_test, checkpoint=ckpt, **kw)
    stored = torch.load(ckpt, weights_only=False)["compute_time"]  # what fit spent on it, evaluation included
    read = fit(_model(), ds.x_train, ds.y_train, ds.x_test, ds.y_test, checkpoint=ckpt, **kw)
    first, second = compute_ledger(since=mark)
    assert first["artifact"] == second["artifact"] == str(ckpt.resolve()) == read.checkpoint
    assert not first["reused"] and first["cost"] == trained.compute_time >= trained.wall_time
    # read back: its cost is the stored time, not the seconds reading it took (those are its "spent")
    assert second["reused"] and second["cost"] == read.compute_time == stored >= trained.wall_time
    assert read.wall_time == trained.wall_time and second["spent"] >= 0
    fit(_model(), ds.x_train, ds.y_train, epochs=1, batch_size=64, progress=False)  # no checkpoint: no artefact
    assert len(compute_ledger(since=mark)) == 2


def test_a_checkpoint_of_older_code_costs_its_training_time(ds, tmp_path):
    from dovlib.train import compute_ledger, compute_ledger_mark

    ckpt, kw = tmp_path / "m.pt", dict(epochs=1, batch_size=64, progress=False)
    fit(_model(), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    state = torch.load(ckpt, weights_only=False)
    del state["compute_time"]  # written before dovlib stored it
    torch.save(state, ckpt)
    mark = compute_ledger_mark()
    read = fit(_model(), ds.x_train, ds.y_train, checkpoint=ckpt, **kw)
    (entry,) = compute_ledger(since=mark)
    assert entry["reused"] and entry["cost"] == read.compute_time == state["wall_time"] > 0


def test_nested_charging_scopes_record_each_artefact_once_with_the_outer_time():
    from dovlib.train import charge, charging, compute_ledger, compute_ledger_mark

    mark = compute_ledger_mark()
    with charging():
        charge("/x/a.pt", 5.0, True)
        with charging():
            charge("/x/b.pt", None, False)
    a, b = compute_ledger(since=mark)
    assert (a["artifact"], a["cost"], a["reused"], b["artifact"], b["cost"], b["reused"]) == (
        "/x/a.pt", 5.0, True, "/x/b.pt", None, False)
    assert a["spent"] >= 0 and b["spent"] == 0.0  # the outer scope's time, once
