import pytest
import torch

from dovlib.data import load_dataset
from dovlib.models import build_model
from dovlib.removal import PrunedModel, channel_activations, finetune, prune, pruning_curve
from dovlib.train import TrainConfig, data_hash, evaluate, fit, predict_logits


@pytest.fixture(scope="module")
def trained():
    ds = load_dataset("synthetic", num_classes=4, n_train=256, n_test=128, image_size=16)
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=4, width=4)
    res = fit(model, ds.x_train, ds.y_train, epochs=3, batch_size=32, lr=0.05, progress=False)
    return ds, res.model


@pytest.mark.parametrize("arch, channels", [("resnet18", 1), ("vgg16", 1), ("badnets_cnn", 1)])
def test_channel_activations_one_per_last_conv_channel(arch, channels):
    m = build_model(arch, num_classes=3, in_channels=channels, width=8, image_size=28).eval()
    x = torch.randint(0, 256, (5, channels, 28, 28), dtype=torch.uint8)
    acts = channel_activations(m, x, batch_size=2)  # three batches, the last one short
    assert acts.shape == (m.last_conv().out_channels,) and (acts >= 0).all()
    outs = []
    h = m.feature_layer().register_forward_hook(lambda _, __, out: outs.append(out.detach()))
    m(x.float() / 255)
    h.remove()
    # mean over images and positions of the ReLU'd feature map, computed in one pass here
    assert torch.allclose(acts, outs[0].clamp(min=0).mean(dim=(0, 2, 3)), atol=1e-6)
    # the map is the last conv layer's own (fine-pruning's), not one pooled after it (VGG ends in a max-pool)
    convs = []
    h = m.last_conv().register_forward_hook(lambda _, __, out: convs.append(out.shape))
    m(x.float() / 255)
    h.remove()
    assert outs[0].shape == convs[0]


def test_pruned_model_keeps_its_mask_on_the_models_device():
    """The mask must follow the model to its device (a CPU mask on a GPU model broke notebook 05 on CUDA); the meta
    device stands in for a GPU here: a CPU tensor in the hook fails there just as on CUDA."""
    m = build_model("resnet18", num_classes=3, width=4).to("meta").eval()
    pm = PrunedModel(m, torch.tensor([0, 2]))
    assert pm.mask.device.type == "meta"
    assert pm(torch.zeros(2, 3, 32, 32, device="meta")).shape == (2, 3)


def test_prune_masks_least_active_channels_and_leaves_model_untouched(trained):
    ds, model = trained
    before = predict_logits(model, ds.x_test)
    acts = channel_activations(model, ds.x_train)
    pm = prune(model, ds.x_train, 0.5)
    n = model.last_conv().out_channels
    assert len(pm.pruned) == n // 2
    assert set(pm.pruned.tolist()) == set(torch.argsort(acts)[: n // 2].tolist())
    feats = []
    h = pm.model.feature_layer().register_forward_hook(lambda _, __, out: feats.append(out))
    pm(ds.x_test[:4].float() / 255)
    h.remove()
    # the hook registered after the mask sees the masked output
    assert feats[0][:, pm.pruned].abs().sum() == 0 and feats[0].abs().sum() > 0
    assert torch.equal(predict_logits(model, ds.x_test), before)  # original model unchanged
    zero = prune(model, ds.x_train, 0)
    assert torch.allclose(predict_logits(zero, ds.x_test), before)
    pruned_out = predict_logits(pm, ds.x_test)
    assert not torch.allclose(pruned_out, before)  # half the channels gone changes the answers
    # evaluating leaves wrapper and copy in eval mode: a direct call or the removed model never trains BatchNorm
    assert not pm.training and not pm.model.training
    inner = pm.remove()  # the hook is gone: the copy answers like the original again
    assert inner is pm.model and torch.allclose(predict_logits(inner, ds.x_test), before, atol=1e-5)


def test_pruning_curve_hurts_accuracy_at_high_rates(trained):
    ds, model = trained
    df = pruning_curve(model, ds.x_train, [0.0, 0.5, 0.95], lambda m: {"ba": evaluate(m, ds.x_test, ds.y_test)})
    assert df["rate"].tolist() == [0.0, 0.5, 0.95]
    assert df["pruned_channels"].is_monotonic_increasing
    assert df["ba"].iloc[0] > 0.6 and df["ba"].iloc[-1] < df["ba"].iloc[0]


def test_finetune_evaluates_every_epoch(trained):
    ds, model = trained
    calls = []

    def ev(m):
        calls.append(m.training)
        return {"ba": evaluate(m, ds.x_test, ds.y_test)}

    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned, df = finetune(model, ds.x_train[:64], ds.y_train[:64],
                         TrainConfig(epochs=2, batch_size=32, lr=0.01, progress=False), ev)
    assert df["epoch"].tolist() == [0, 1, 2] and df["ba"].notna().all()
    assert calls == [False, False, False]  # evaluated in eval mode
    assert tuned is not model
    # the suspect is left as it was (a copy is tuned), epoch 0 is the suspect itself, and tuning moved the weights
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert df["ba"].iloc[0] == evaluate(model, ds.x_test, ds.y_test)
    assert any(not torch.equal(v, before[k]) for k, v in tuned.state_dict().items() if v.is_floating_point())


def test_finetune_trains_on_the_given_labels_as_fit_does(trained):
    """Fine-tuning is the one trainer run on a copy with the attacker's own (x, y): on the CPU, bit for bit what fit
    gives with the same data and settings (not, e.g., a model trained on shifted labels)."""
    import copy

    ds, model = trained
    x, y = ds.x_train[:64], ds.y_train[:64]
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.01, progress=False, device="cpu")
    tuned, df = finetune(model, x, y, cfg)
    ref = fit(copy.deepcopy(model), x, y, config=cfg)
    assert all(torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), ref.model.state_dict().values()))
    assert df["train_loss"].tolist() == [r["train_loss"] for r in ref.history]
    shifted = fit(copy.deepcopy(model), x, (y + 1) % 4, config=cfg).model  # the same run on other labels differs
    assert not all(torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), shifted.state_dict().values()))
    assert evaluate(tuned, x, y) >= evaluate(shifted, x, y)


def test_finetune_checkpoint_resumes_only_the_same_starting_model(trained, tmp_path):
    """A finished fine-tuning checkpoint is reused for the same suspect and refused for another one (notebook 05
    keys its checkpoint by parameters only: a changed suspect must not inherit the old run's epochs)."""
    ds, model = trained
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.01, progress=False)
    ckpt = tmp_path / "finetune.pt"
    first, _ = finetune(model, ds.x_train[:64], ds.y_train[:64], cfg, checkpoint=ckpt)
    again, _ = finetune(model, ds.x_train[:64], ds.y_train[:64], cfg, checkpoint=ckpt)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    other = build_model("resnet18", num_classes=4, width=4)
    with pytest.raises(ValueError, match="another checkpoint_key"):
        finetune(other, ds.x_train[:64], ds.y_train[:64], cfg, checkpoint=ckpt)
    with pytest.raises(ValueError, match="other training data"):
        finetune(model, ds.x_train[64:128], ds.y_train[64:128], cfg, checkpoint=ckpt)


def test_finetune_eval_key_refuses_a_checkpoint_of_another_evaluation(trained, tmp_path):
    """A finished checkpoint hands back its run's per-epoch evaluations, while epoch 0 is evaluated afresh: with
    ``eval_key`` naming the evaluation, another evaluation is refused (never a table mixing two), the same one is
    reused, and without it the checkpoint key is what it was (older checkpoints still load)."""
    ds, model = trained
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.01, progress=False, device="cpu")
    x, y = ds.x_train[:64], ds.y_train[:64]
    ckpt = tmp_path / "finetune.pt"
    _, a = finetune(model, x, y, cfg, lambda m: {"metric": "A"}, checkpoint=ckpt, eval_key="A")
    assert a["metric"].tolist() == ["A", "A"]
    with pytest.raises(ValueError, match="another checkpoint_key"):
        finetune(model, x, y, cfg, lambda m: {"metric": "B"}, checkpoint=ckpt, eval_key="B")
    _, again = finetune(model, x, y, cfg, lambda m: {"metric": "A"}, checkpoint=ckpt, eval_key="A")
    assert again["metric"].tolist() == ["A", "A"]
    plain = tmp_path / "plain.pt"
    finetune(model, x, y, cfg, checkpoint=plain)
    start = f"start:{data_hash(*model.state_dict().values())}"
    assert torch.load(plain, weights_only=False)["checkpoint_key"] == start  # as before eval_key existed
    assert torch.load(ckpt, weights_only=False)["checkpoint_key"] != start
    with pytest.raises((TypeError, ValueError), match="eval_key"):
        finetune(model, x, y, cfg, checkpoint=tmp_path / "bad.pt", eval_key=3)


def test_bad_prune_rate(trained):
    ds, model = trained
    with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
        prune(model, ds.x_train, 1.0)
    with pytest.raises(ValueError, match="at least one benign image"):
        channel_activations(model, ds.x_train[:0])


def test_deepcopy_of_a_pruned_model_uses_its_own_mask(trained):
    """finetune deep-copies the suspect: the copy's hook must read the copy's mask, not the original's."""
    import copy

    ds, model = trained
    x = ds.x_test[:16].float() / 255
    pm = prune(model, ds.x_train, 0.5)
    twin = copy.deepcopy(pm)
    with torch.no_grad():
        before = twin(x).clone()
        pm.mask.zero_()  # every channel of the original off: the copy must not notice
        assert torch.equal(twin(x), before)
        assert not torch.allclose(pm(x), before)
        twin.mask.fill_(1)  # the copy's own mask takes effect: no channel pruned any more
        assert torch.allclose(twin(x), pm.remove()(x), atol=1e-5)
    twin.remove()  # removes the copy's hook, not another model's
    assert not twin.model.feature_layer()._forward_hooks


def test_prune_keeps_at_least_one_channel_and_checks_activations(trained):
    ds, model = trained
    n = model.last_conv().out_channels
    acts = channel_activations(model, ds.x_train)
    rate = (n - 0.4) / n  # rounds to all n channels
    pm = prune(model, ds.x_train, rate, activations=acts)
    assert len(pm.pruned) == n - 1 and int(pm.mask.sum()) == 1
    assert pm.mask.view(-1)[torch.argmax(acts)] == 1  # the most active channel is the one kept
    # rounded to the nearest count, not truncated: 0.6 of a channel above a whole count is one more channel
    k = n // 4
    assert len(prune(model, ds.x_train, (k + 0.6) / n, activations=acts).pruned) == k + 1
    assert len(prune(model, ds.x_train, (k + 0.4) / n, activations=acts).pruned) == k
    with pytest.raises(ValueError, match=rf"per channel of the last conv layer \({n}\); got shape \({n - 1},\)"):
        prune(model, ds.x_train, 0.5, activations=acts[:-1])


def test_pruning_curve_reads_rates_as_prune_does(trained):
    ds, model = trained
    df = pruning_curve(model, ds.x_train, ["0", "1/2", 0.25], lambda m: {})
    n = model.last_conv().out_channels
    assert df["rate"].tolist() == [0.0, 0.5, 0.25]
    assert df["pruned_channels"].tolist() == [0, round(n / 2), round(n / 4)]
    with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
        pruning_curve(model, ds.x_train, ["1/2", "1"], lambda m: {})


def _curves(verified_by_rate, ba_by_rate, ft_wsr=(0.9, 0.8), ft_verified=(True, True)):
    ft = [{"epoch": e, "BA": 0.8, "WSR": w, "p_value": 0.001 if v else 0.5, "verified": v}
          for e, (w, v) in enumerate(zip(ft_wsr, ft_verified))]
    rates = [i / 10 for i in range(len(verified_by_rate))]
    pr = [{"rate": r, "BA": b, "WSR": 0.5, "p_value": 0.001 if v else 0.5, "verified": v}
          for r, v, b in zip(rates, verified_by_rate, ba_by_rate)]
    return ft, pr


def test_removal_claims_reads_the_unbroken_run_and_the_collapse():
    from dovlib.removal import removal_claims

    clean = {"verified": False}
    # verified at 0-20%, lost at 30%, verified again at 40% by chance: proved only up to 20%
    ft, pr = _curves([True, True, True, False, True, False, False, False, False, False],
                     [0.8, 0.8, 0.8, 0.8, 0.7, 0.6, 0.5, 0.3, 0.2, 0.1])
    c = removal_claims(ft, pr, clean)
    assert c["learnt"] and c["untestable"] is None and c["proved_up_to"] == 0.2 and c["first_lost"] == 0.3
    assert c["first_collapse"] == 0.7 and c["collapse"] and c["lowest_high_BA"] == 0.1  # 0.3 < 0.5 * 0.8
    assert c["removed_only_at_collapse"] is False and c["survives"] is True  # 0.8 >= 0.45 and still verified
    assert c["ft_lost_epochs"] == []
    # verified after the last epoch but lost at epochs 2 and 3 on the way: survives at the end, the dips are named
    ft = [{"epoch": e, "BA": 0.8, "WSR": w, "p_value": 0.5 if e in (2, 3) else 0.001, "verified": e not in (2, 3)}
          for e, w in enumerate([0.9, 0.8, 0.5, 0.5, 0.6])]
    c = removal_claims(ft, pr, clean)
    assert c["survives"] is True and c["ft_lost_epochs"] == [2, 3]
    # verified at every rate: proved up to the last, removal never happens, so "only at collapse" holds
    ft, pr = _curves([True] * 10, [0.8] * 7 + [0.3, 0.2, 0.1])
    c = removal_claims(ft, pr, clean)
    assert c["proved_up_to"] == 0.9 and c["first_lost"] is None and c["removed_only_at_collapse"] is True
    # fine-tuning halves WSR: not surviving even though verified
    ft, pr = _curves([True] * 10, [0.8] * 10, ft_wsr=(0.9, 0.4))
    c = removal_claims(ft, pr, clean)
    assert c["survives"] is False and c["collapse"] is False and c["first_collapse"] is None
    assert c["removed_only_at_collapse"] is None  # BA never collapses: not testable
    # no rate reaches 80%: the collapse claim is not run
    ft, pr = _curves([True] * 5, [0.8] * 5)
    assert removal_claims(ft, pr, clean)["collapse"] is None


def test_removal_claims_are_untestable_when_nothing_was_learnt():
    from dovlib.removal import removal_claims

    ft, pr = _curves([False, True, False], [0.8, 0.8, 0.8], ft_verified=(False, False))
    c = removal_claims(ft, pr, {"verified": False})
    assert not c["learnt"] and "not verified before any attack" in c["untestable"]
    assert c["proved_up_to"] is None and c["first_lost"] == 0.0 and c["survives"] is None
    # the suspect verified, but so is a model trained on the clean set: the marks are adversarial, not learnt
    ft, pr = _curves([True, True, False], [0.8, 0.8, 0.8])
    c = removal_claims(ft, pr, {"verified": True})
    assert not c["learnt"] and "clean set is verified too" in c["untestable"]
    assert c["survives"] is None and c["removed_only_at_collapse"] is None and c["proved_up_to"] is None
    # verified before fine-tuning but not at pruning rate 0 (another evaluation of the same model): nothing proved
    ft, pr = _curves([False, True, True], [0.8, 0.8, 0.8])
    c = removal_claims(ft, pr, {"verified": False})
    assert c["learnt"] and c["proved_up_to"] is None and c["first_lost"] == 0.0
    with pytest.raises(ValueError, match="pruning rows from rate 0"):
        removal_claims(ft, pr[1:], {"verified": False})
    with pytest.raises(ValueError, match="fine-tuning rows from epoch 0"):  # the suspect after the attack as its start
        removal_claims(ft[1:] + [{**ft[1], "epoch": 2}], pr, {"verified": False})
    with pytest.raises(ValueError, match="at least one epoch after it"):
        removal_claims(ft[:1], pr, {"verified": False})


def test_removal_at_the_collapse_rate_counts_as_only_at_collapse():
    from dovlib.removal import removal_claims

    ft = [{"epoch": e, "BA": 0.8, "WSR": 0.9, "p_value": 0.001, "verified": True} for e in (0, 1)]
    pr = [{"rate": i / 10, "BA": b, "WSR": 0.5, "p_value": 0.001 if v else 0.5, "verified": v}
          for i, (v, b) in enumerate(zip([True] * 7 + [False] * 3, [0.8] * 7 + [0.3, 0.2, 0.1]))]
    c = removal_claims(ft, pr, {"verified": False})
    assert c["first_lost"] == c["first_collapse"] == 0.7 and c["removed_only_at_collapse"] is True


def test_removal_claims_read_a_grid_ending_at_80_percent_and_never_list_epoch_zero():
    from dovlib.removal import removal_claims

    pr = [{"rate": r, "BA": b, "WSR": 0.5, "p_value": 0.001, "verified": True}
          for r, b in [(0.0, 0.8), (0.4, 0.2), (0.8, 0.3)]]  # a dip at 40% is not "at 80% or more"
    ft = [{"epoch": e, "BA": 0.8, "WSR": 0.9, "p_value": p, "verified": p < 0.01}
          for e, p in [(0, 0.5), (1, 0.02), (2, 0.001)]]
    c = removal_claims(ft, pr, {"verified": False})
    assert c["collapse"] is True and c["lowest_high_BA"] == 0.3 and c["first_collapse"] == 0.4
    assert c["ft_lost_epochs"] == [1] and not c["learnt"]  # epoch 0 is the suspect before the attack, not a loss
    assert removal_claims(ft, pr[:2], {"verified": False})["collapse"] is None  # no rate reaches 80%


def test_finetune_budget_names_the_learning_rate_beside_the_steps():
    """Notebook 05's captions and verdict named the thief's images, batch, steps and epochs but not ``finetune_lr``:
    runs at 0.01 and 0.1 read the same."""
    from dovlib.removal import finetune_budget

    assert finetune_budget(8, 16, 0.02, n_images=60, epochs=2) == ("60 benign images, batch 16, 8 optimizer steps in 2 "
                                                                   "epochs, lr 0.02 (cosine schedule)")
    assert finetune_budget(1, 60, "1/10", n_images=60, epochs=1) == ("60 benign images, batch 60, 1 optimizer step in "
                                                                     "1 epoch, lr 0.1 (cosine schedule)")
    assert finetune_budget(8, 16, 0.01) == "8 steps, batch 16, lr 0.01"  # a panel title's short form
    with pytest.raises(ValueError, match="lr"):
        finetune_budget(8, 16, 0)


def test_finetune_budget_takes_numpy_counts_and_refuses_bad_ones_by_name():
    """Counts read from a frame or array are numpy integers: ``'s' * (steps != 1)`` multiplied a string by a numpy
    bool and raised a TypeError. A negative count, or n_images without epochs (silently dropped), is refused."""
    import numpy as np

    from dovlib.removal import finetune_budget

    assert finetune_budget(np.int64(1), np.int64(60), np.float32(0.5), n_images=np.int64(60), epochs=np.int64(1)) == (
        "60 benign images, batch 60, 1 optimizer step in 1 epoch, lr 0.5 (cosine schedule)")
    assert finetune_budget(np.int64(8), np.int32(16), 0.01) == "8 steps, batch 16, lr 0.01"
    with pytest.raises(ValueError, match="steps must be an integer >= 0; got -1"):
        finetune_budget(-1, 16, 0.01)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
        finetune_budget(8, 0, 0.01)
    with pytest.raises(ValueError, match="n_images and epochs come together"):
        finetune_budget(8, 16, 0.01, n_images=60)
