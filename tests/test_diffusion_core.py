"""Diffusion classifier core: schedule, network, pruning logic, training, classification."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _diffusion_data import tiny_model, toy_crops  # noqa: E402
from napari_nucleus_ai.core.progress import Progress, run_sync  # noqa: E402
from napari_nucleus_ai.models.diffusion.classify import classify_crops, decide  # noqa: E402
from napari_nucleus_ai.models.diffusion.protocol import simulate  # noqa: E402
from napari_nucleus_ai.models.diffusion.schedule import alphas_cumprod, trial_timesteps  # noqa: E402


def test_schedules_decrease_from_one_to_zero():
    for kind in ("cosine", "linear"):
        a = alphas_cumprod(kind, 1000)
        assert a.shape == (1000,)
        assert np.all(np.diff(a) < 0)
        assert a[0] > 0.99 and a[-1] < 0.01
    with pytest.raises(ValueError):
        alphas_cumprod("quadratic")


def test_trial_timesteps_cover_the_range_in_every_prefix():
    t = trial_timesteps(64, 1000, 0.1, 0.7, seed=3)
    assert t.min() >= 100 and t.max() < 700
    for k in (4, 8, 16):
        # each prefix of k trials has one level in each of k equal strata (van der Corput)
        strata = np.floor((t[:k] - 100) / 600 * k).astype(int)
        assert sorted(strata) == list(range(k))
    assert np.array_equal(t, trial_timesteps(64, 1000, 0.1, 0.7, seed=3))


def test_unet_predicts_noise_shaped_output_per_class():
    from napari_nucleus_ai.models.diffusion.unet import ClassUNet

    net = ClassUNet(3, in_channels=3, base=8, mults=(1, 2), attention=True)
    x = torch.randn(5, 3, 16, 16)
    out = net(x, torch.randint(0, 1000, (5,)), torch.tensor([0, 1, 2, 3, 0]))
    assert out.shape == x.shape


def test_simulated_protocol_counts_evaluations():
    rng = np.random.default_rng(1)
    b, c, k = 6, 5, 32
    base = rng.normal(1, 0.3, (b, 1, k))
    gap = np.array([0.0, 0.5, 0.6, 0.8, 1.0])[None, :, None]
    full = base + gap + 0.02 * rng.normal(size=(b, c, k))
    naive = simulate(full, {"check_every": 4, "alpha": 0.0})
    assert naive.sum() == b * c * k
    ev = simulate(full, {"check_every": 4, "alpha": 0.01})
    assert ev.sum((1, 2)).max() <= 4 * c + 4 * 3  # all classes pruned after the first test or two
    out = decide(full, ev, tau=0.1)
    assert (out["index"] == 0).all()
    assert np.allclose(out["p"].sum(1), 1)
    assert (out["evaluations"] == ev.sum((1, 2))).all()


def test_a_prior_weighs_the_paired_gaps_as_log_likelihood_ratios():
    rng = np.random.default_rng(2)
    b, c, k = 5, 4, 6
    full = rng.normal(1, 0.05, (b, 1, k)) + np.array([0.0, 0.01, 0.5, 0.6])[None, :, None]
    ev = np.ones((b, c, k), bool)
    ev[:, 3] = False  # a class never evaluated (outside a proposer's short list)
    plain = decide(full, ev, tau=0.05)
    same = decide(full, ev, tau=0.05, prior=np.full((b, c), 0.25))
    np.testing.assert_allclose(same["p"], plain["p"])
    assert (same["index"] == plain["index"]).all()
    prior = np.tile([0.05, 0.9, 0.03, 0.02], (b, 1))
    out = decide(full, ev, tau=0.05, prior=prior)
    want = plain["p"] * prior
    np.testing.assert_allclose(out["p"], want / want.sum(1, keepdims=True))
    assert (out["index"] == 1).all() and (plain["index"] == 0).all()  # a small gap is outweighed
    assert (out["p"][:, 3] == 0).all()  # a class never evaluated stays impossible
    np.testing.assert_allclose(out["confidence"], out["p"][:, 1])


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_tiny_model_learns_to_classify_by_denoising_error(model):
    x, y, names = toy_crops(per_class=6, seed=11)
    res = run_sync(classify_crops(model, x))
    acc = (res["index"] == y).mean()
    assert acc >= 0.8, acc
    naive = run_sync(classify_crops(model, x, exhaustive=True))
    k, n_unc = model.protocol["max_trials"], model.protocol["anomaly_trials"]
    # every class at every trial, plus the unconditional (anomaly) evaluations
    assert (naive["evaluations"] == k * len(names) + min(n_unc, k)).all()
    assert res["evaluations"].mean() < naive["evaluations"].mean() / 2
    assert np.allclose(res["p"].sum(1), 1, atol=1e-5)
    assert ((res["confidence"] > 0) & (res["confidence"] <= 1)).all()


def test_live_protocol_matches_simulation_on_the_full_error_matrix(model):
    x, _, _ = toy_crops(per_class=3, seed=5)
    naive = run_sync(classify_crops(model, x, exhaustive=True))
    full = naive["errors"]
    proto = model.protocol
    ev = simulate(full, proto)
    live = run_sync(classify_crops(model, x, cells_per_chunk=4))  # chunking must not matter
    assert np.array_equal(~np.isnan(live["errors"]), ev)
    np.testing.assert_allclose(live["errors"][ev], full[ev], rtol=1e-5)
    cal = model.config["calibration"]
    sim = decide(full, ev, tau=cal["tau"], ref=cal["ref"], score=proto["score"])
    assert np.array_equal(sim["index"], live["index"])


def test_anomaly_is_higher_for_an_unseen_kind_of_cell(model):
    x, _, _ = toy_crops(per_class=4, seed=21)
    odd = np.random.default_rng(0).uniform(-1, 1, x[:4].shape).astype(np.float32)  # noise "cells"
    known = run_sync(classify_crops(model, x))["anomaly"]
    unknown = run_sync(classify_crops(model, odd))["anomaly"]
    assert np.median(unknown) > np.max(known)


def test_training_yields_progress_and_records_history():
    from napari_nucleus_ai.models.diffusion.train import train_diffusion

    x, y, names = toy_crops(per_class=2, seed=2)
    gen = train_diffusion(
        x,
        y,
        names,
        steps=6,
        batch_size=4,
        arch={"base": 8, "mults": [1, 2]},
        protocol={"max_trials": 4, "check_every": 2},
    )
    seen = []
    model = run_sync(gen, seen.append)
    assert all(isinstance(p, Progress) for p in seen) and seen[-1].done == seen[-1].total
    assert model.config["history"] and "calibration" in model.config
    assert len(model.config["calibration"]["ref"]) == 4
    with pytest.raises(ValueError):
        run_sync(train_diffusion(x[:, :, :15, :15], y, names, steps=1))


def test_unknown_backbone_is_refused_and_diffusers_backbone_trains():
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.models.diffusion.model import build_net
    from napari_nucleus_ai.models.diffusion.train import train_diffusion

    with pytest.raises(InputError):
        build_net({"class_names": ["a", "b"], "size": 16, "arch": {"backbone": "nope"}})
    pytest.importorskip("diffusers")
    x, y, names = toy_crops(per_class=2, seed=4)
    arch = {"backbone": "diffusers", "base": 8, "mults": [1, 2], "attention": False}
    model = run_sync(
        train_diffusion(x, y, names, steps=3, batch_size=4, arch=arch, protocol={"max_trials": 4})
    )
    assert type(model.net).__name__ == "DiffusersUNet"
    res = run_sync(classify_crops(model, x))
    assert res["p"].shape == (len(x), 3) and (res["evaluations"] > 0).all()


def test_live_top_k_log_score_and_unconditional_anomaly_match_the_simulation(model):
    from napari_nucleus_ai.models.diffusion.protocol import unconditional_mask

    x, _, _ = toy_crops(per_class=3, seed=8)
    proto = {
        "check_every": 2,
        "alpha": 0.05,
        "score": "log",
        "keep_top": [[2, 2]],
        "anomaly": "unconditional",
        "anomaly_trials": 3,
    }
    full = run_sync(classify_crops(model, x, exhaustive=True, **proto))["errors"]
    live = run_sync(classify_crops(model, x, cells_per_chunk=5, **proto))
    ev = simulate(full, {**model.protocol, **proto})
    assert np.array_equal(~np.isnan(live["errors"]), ev)
    unc = unconditional_mask(ev, 3)
    assert np.array_equal(~np.isnan(live["unconditional"]), unc)
    # every network evaluation is counted: classes + the unconditional trials
    assert np.array_equal(live["evaluations"], ev.sum(axis=(1, 2)) + unc.sum(axis=1))
    assert (live["evaluations"] <= 3 * 2 + 2 * (16 - 2) + 3).all()  # top-2 after 2 trials
    assert np.isfinite(live["anomaly"]).all()


def test_counterfactual_map_lies_on_the_deciding_pixels(model):
    from napari_nucleus_ai.models.diffusion.generate import counterfactual

    x, y, names = toy_crops(per_class=2, seed=4)
    for i in np.flatnonzero(y == 2):  # green bars, explained against the red blob
        bar = (x[i, 1] - x[i, 0]) > 0.5  # the bar's pixels: green well above red
        cf = run_sync(counterfactual(model, x[i], target=names[0], trials=16, steps=2))
        assert cf["source"] == names[2]
        # positive (looks like its own class) on the bar, about zero on the background
        off = np.abs(cf["map"][~bar]).mean()
        assert cf["map"][bar].mean() > 3 * off, (cf["map"][bar].mean(), off)
        # the same band turned by 90 degrees crosses the bar only at its middle
        assert cf["map"].T[bar].mean() < 0.6 * cf["map"][bar].mean()


def test_counterfactual_map_is_the_per_pixel_map_smoothed_on_the_network_grid(model):
    from scipy.ndimage import gaussian_filter

    from napari_nucleus_ai.models.diffusion.generate import MAP_SMOOTH, counterfactual

    x, _, names = toy_crops(per_class=1, seed=6)
    kw = {"source": names[0], "target": names[1], "trials": 8, "steps": 2}
    raw = run_sync(counterfactual(model, x[0], smooth=0, **kw))["map"]
    smooth = run_sync(counterfactual(model, x[0], **kw))["map"]
    assert MAP_SMOOTH > 0
    np.testing.assert_allclose(
        smooth, gaussian_filter(raw, MAP_SMOOTH, mode="nearest"), rtol=1e-5, atol=1e-7
    )
    # the total (the error gap between the two classes) is kept up to the border
    assert abs(smooth.sum() - raw.sum()) < 0.05 * np.abs(raw).sum()
