"""A package with a fallback model: trained, saved, loaded, routed by the domain-shift score,
retrained; bad packages refused in one line."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from napari_nucleus_ai.core.errors import InputError
from test_cellframe import FAST

PAIR = {**{k: v for k, v in FAST.items() if k != "frame"}, "val_fraction": 0.4}
NAMES = ["lymphocyte", "neutrophil"]


def _cells(n: int, first_seed: int = 0, size: int = 160) -> tuple[list, list]:
    from napari_nucleus_ai.samples.smear import simulate_wbc_crop

    items = [simulate_wbc_crop(c, seed=first_seed + i, size=size) for c in NAMES for i in range(n)]
    return items, [0] * n + [1] * n


def _foreign(items: list) -> list:
    """Another microscope, harshly: half the magnification, a blue cast, lower contrast."""
    out = []
    for x in items:
        small = x[::2, ::2].astype(float)
        pad = np.full_like(x, 235, dtype=float)
        h, w = small.shape[:2]
        y0, x0 = (x.shape[0] - h) // 2, (x.shape[1] - w) // 2
        pad[y0 : y0 + h, x0 : x0 + w] = small
        pad = 0.6 * pad + 0.4 * 200 + np.array([-30.0, -10.0, 25.0])
        out.append(np.clip(pad, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import TrainingSet

    items, labels = _cells(16)
    ts = TrainingSet(items, labels, NAMES, "brightfield_rgb")
    out = tmp_path_factory.mktemp("pair") / "pair.zip"
    return train(ts, out, **PAIR), out


def _alone(package):
    """The first model of a pair on its own (the same modules, the card without a fallback)."""
    from napari_nucleus_ai.models.package import ModelPackage

    card = {k: v for k, v in package.card.items() if k != "fallback"}
    return ModelPackage(card, package.modules, None)


def test_train_makes_a_pair_and_it_round_trips(pair):
    from napari_nucleus_ai.classify.predict import predict_items
    from napari_nucleus_ai.models.package import load_model

    res, out = pair
    fb = res.package.fallback
    assert fb is not None and "frame" in fb.card["input"] and "frame" not in res.card["input"]
    assert fb.classes == res.package.classes and fb.card["trust"]["domain"]
    with zipfile.ZipFile(out) as zf:
        card = json.loads(zf.read("card.json"))
    assert card["fallback"]["name"].endswith("(frame)") and "fallback" not in card["fallback"]
    loaded = load_model(out, cache=False)
    assert loaded.fallback is not None and "fallback model" in repr(loaded)
    items = _cells(3, first_seed=500)[0]
    items += _foreign(items)
    a = predict_items(res.package, items, workers=1)
    b = predict_items(loaded, items, workers=1)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
    assert list(a.extra["routed"]) == list(b.extra["routed"])


def test_the_fallback_reads_bounded_features_and_the_first_model_does_not(pair):
    """``train`` gives the canonical-frame fallback ``z_clip`` (its heads read standardised
    features clipped to +-5, in training and prediction) and leaves the first model, which
    classifies the training microscope's cells and whose domain score routes, unclipped.
    A cell of another microscope whose descriptor is far outside the training spread then
    moves the fallback's logits by a bounded amount."""
    import torch

    from napari_nucleus_ai.models.inputs import prepare
    from napari_nucleus_ai.models.nets.morph import standardise
    from napari_nucleus_ai.models.nets.morph_params import Z_CLIP
    from napari_nucleus_ai.models.package import load_model

    res, out = pair
    fb = load_model(out, cache=False).fallback
    assert fb.card["architecture"]["params"]["z_clip"] == Z_CLIP == 5.0
    assert "z_clip" not in res.card["architecture"]["params"]
    assert res.package.modules[0].params["z_clip"] is None
    z = np.array([[0.0, 50.0, -120.0]])
    np.testing.assert_array_equal(standardise(z, 0.0, 1.0, 5.0), [[0.0, 5.0, -5.0]])
    np.testing.assert_array_equal(standardise(z, 0.0, 1.0), z)
    assert torch.equal(
        standardise(torch.tensor(z), 0.0, 1.0, 5.0), torch.tensor([[0.0, 5.0, -5.0]])
    )
    m = fb.modules[0].eval()
    x, _ = prepare(_foreign(_cells(4, first_seed=800)[0]), fb.card)
    x = torch.as_tensor(np.asarray(x))
    with torch.inference_mode():
        e = m.embed(x).numpy()
        raw = ((m.descriptors(x) - m.desc_mean) / m.desc_std).numpy()
        logits = m(x).numpy()
    assert np.abs(e).max() <= 5.0 + 1e-6
    assert np.abs(raw).max() > 5.0  # these cells do leave the training spread
    w, b = m.linear_head()
    np.testing.assert_allclose(logits, e @ w.T + b, atol=1e-3)


def test_out_of_domain_cells_go_to_the_fallback(pair):
    from napari_nucleus_ai.classify.predict import predict_items

    package = pair[0].package
    home = _cells(4, first_seed=900)[0]
    items = home + _foreign(home)
    both = predict_items(package, items, workers=1)
    first = predict_items(_alone(package), items, workers=1)
    routed = np.asarray(both.extra["routed"], bool)
    # routed exactly where the first model's own score says out of domain; both branches run
    assert (routed == np.asarray(first.extra["out_of_domain"], bool)).all()
    assert routed[len(home) :].mean() > routed[: len(home)].mean()
    assert 0 < routed.sum() < len(items)
    kept = ~routed
    np.testing.assert_allclose(both.probs[kept], first.probs[kept], atol=1e-6)
    np.testing.assert_allclose(both.extra["ood"][kept], first.extra["ood"][kept], atol=1e-5)
    idx = np.flatnonzero(routed)
    fb = predict_items(package.fallback, [items[i] for i in idx], workers=1)
    np.testing.assert_allclose(both.probs[idx], fb.probs, atol=1e-6)
    np.testing.assert_allclose(both.extra["ood"][idx], fb.extra["ood"], atol=1e-5)
    assert list(both.extra["out_of_domain"][idx]) == list(fb.extra["out_of_domain"])
    # the fallback's sets (their randomised APS draw depends on the chunk, so not compared)
    tops = [str(both.extra["set"][i]).split("|")[0] for i in idx]
    assert tops == [package.classes[k] for k in fb.probs.argmax(1)]


def test_fallback_choices():
    from napari_nucleus_ai.classify.train import resolve_fallback
    from napari_nucleus_ai.classify.trainset import TrainingSet

    rgb = TrainingSet(*_cells(2), NAMES, "brightfield_rgb")
    grey = TrainingSet([x[..., 0] for x in rgb.samples], rgb.labels, NAMES, "fluorescence")
    assert resolve_fallback("auto", "morph", rgb, False)
    assert not resolve_fallback("auto", "morph", rgb, True)  # the first model is framed
    assert not resolve_fallback("auto", "smallcnn", rgb, False)
    assert not resolve_fallback("none", "morph", rgb, False)
    assert not resolve_fallback("auto", "morph", grey, False)
    with pytest.raises(InputError, match="needs a 'morph' model of RGB"):
        resolve_fallback("frame", "morph", grey, False)
    with pytest.raises(InputError, match="must be one of"):
        resolve_fallback("yes", "morph", rgb, False)


def test_bad_fallbacks_are_refused(pair, tmp_path):
    from napari_nucleus_ai.models.card import validate_card
    from napari_nucleus_ai.models.package import read_package, save_model

    res, out = pair
    card = res.package.card
    other = json.loads(json.dumps(card))
    other["fallback"]["classes"] = other["fallback"]["classes"][::-1]
    with pytest.raises(InputError, match="same classes"):
        validate_card(other)
    nested = json.loads(json.dumps(card))
    nested["fallback"]["fallback"] = dict(nested["fallback"])
    with pytest.raises(InputError, match="fallback of its own"):
        validate_card(nested)
    blind = json.loads(json.dumps(card))
    del blind["trust"]["domain"]
    with pytest.raises(InputError, match="domain-shift score"):
        validate_card(blind)
    # a card naming a fallback whose weights are not there
    lone = save_model(card, res.package.modules, tmp_path / "lone.zip")  # fallback dropped
    with zipfile.ZipFile(lone) as zf:
        weights = zf.read("weights.safetensors")
    with zipfile.ZipFile(tmp_path / "broken.zip", "w") as zf:
        zf.writestr("card.json", json.dumps(card))
        zf.writestr("weights.safetensors", weights)
    with pytest.raises(InputError, match="weights hold none") as e:
        from napari_nucleus_ai.models.package import load_model

        load_model(tmp_path / "broken.zip", cache=False)
    assert "broken.zip" in str(e.value)
    assert "fallback" not in read_package(lone)[0]


def _retrain_folders(tmp_path, n_replay: int = 30):
    """Corrections (foreign cells, 12 per class) and replay (``n_replay`` per class) folders."""
    from PIL import Image

    root, replay = tmp_path / "corrections", tmp_path / "replay"
    items, labels = _cells(12, first_seed=2000)
    base_items, base_labels = _cells(n_replay)
    for folder, xs, ys in ((root, _foreign(items), labels), (replay, base_items, base_labels)):
        for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
            (folder / NAMES[y]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(folder / NAMES[y] / f"{k}.png")
    return root, replay


def test_retrain_keeps_routing_cells_like_the_corrections(pair, tmp_path):
    from napari_nucleus_ai.classify.predict import predict_items
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.package import load_model
    from napari_nucleus_ai.review.retrain import retrain_gen

    res, out = pair
    root, replay = _retrain_folders(tmp_path)  # 20 % of the replay calibrates
    base_items = _cells(30)[0]
    got = run_sync(
        retrain_gen(out, root, tmp_path / "v2.zip", base_data=replay, epochs=1, threads=1)
    )
    new = load_model(got["out"], cache=False)
    assert new.fallback is not None
    refit = new.card["trust"]["domain"]["refit"]
    assert refit["n_reference"] < len(base_items)  # the replayed crops only, no correction
    fresh = _foreign(_cells(4, first_seed=3000)[0])
    pred = predict_items(new, fresh, workers=1)
    assert np.asarray(pred.extra["routed"], bool).mean() >= 0.75


def test_predict_cli_says_which_cells_the_fallback_classified(pair, tmp_path, capsys):
    import pandas as pd
    from PIL import Image

    from napari_nucleus_ai.cli import main
    from napari_nucleus_ai.models.trust import routing_note

    paths = []
    for k, x in enumerate(_foreign(_cells(3, first_seed=4000)[0])):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(x).save(paths[-1])
    out = tmp_path / "pred.csv"
    assert main(["predict", str(pair[1]), *map(str, paths), "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out)
    routed = table["routed"].astype(bool)
    err = capsys.readouterr().err
    assert routed.mean() >= 0.5 and "canonical-frame fallback model classified them" in err
    assert f"{int(routed.sum())} of {len(table)} cells" in err
    assert routing_note([True, False, False]) is None


def test_the_fallback_retrained_in_a_forked_process_is_the_one_retrained_here(
    pair, tmp_path, monkeypatch
):
    """Retrain fine-tunes the fallback in a forked process beside the first model: the
    package is the one that fine-tuning both here, one after the other, makes. The forked
    run is a fresh single-threaded process (a command line), where forking is allowed."""
    import json
    import subprocess
    import sys

    import napari_nucleus_ai.review.retrain as retrain
    from napari_nucleus_ai.classify.predict import cpu_cores
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.package import load_model

    if sys.platform != "linux" or cpu_cores() < 2:
        pytest.skip("the fallback is fine-tuned in another process only on Linux with 2+ cores")
    _, out = pair
    root, replay = _retrain_folders(tmp_path, n_replay=12)
    opts = dict(base_data=str(replay), epochs=1, threads=1)
    code = (
        "import json, sys\n"
        "import napari_nucleus_ai.review.retrain as r\n"
        "from napari_nucleus_ai.core.progress import run_sync\n"
        "started, start = [], r._start_fallback\n"
        "def spy(*a):\n"
        "    job = start(*a)\n"
        "    started.append(job is not None)\n"
        "    return job\n"
        "r._start_fallback = spy\n"
        "got = run_sync(r.retrain_gen(*sys.argv[1:4], **json.loads(sys.argv[4])))\n"
        "print('STARTED', json.dumps(started), json.dumps(got['metrics_after'], default=float))\n"
    )
    argv = [str(out), str(root), str(tmp_path / "forked.zip"), json.dumps(opts)]
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True
    )
    started, metrics = done.stdout.split("STARTED", 1)[1].split(None, 1)
    assert json.loads(started) == [True]  # the fallback was fine-tuned in another process
    forked = load_model(tmp_path / "forked.zip", cache=False)
    res_forked = {"metrics_after": json.loads(metrics)}

    def packages():
        got = run_sync(retrain.retrain_gen(out, root, tmp_path / "here.zip", **opts))
        return load_model(got["out"], cache=False), got

    monkeypatch.setattr(retrain, "_start_fallback", lambda *a: None)
    here, res_here = packages()
    assert res_forked["metrics_after"] == res_here["metrics_after"]
    for a, b in ((forked, here), (forked.fallback, here.fallback)):
        trust_a, trust_b = a.card["trust"], b.card["trust"]
        assert trust_a["domain"]["refit"] == trust_b["domain"]["refit"]
        assert trust_a["domain"]["threshold"] == pytest.approx(trust_b["domain"]["threshold"])
        for ma, mb in zip(a.modules, b.modules, strict=True):
            sa, sb = ma.state_dict(), mb.state_dict()
            assert sa.keys() == sb.keys()
            for k in sa:
                np.testing.assert_allclose(sa[k].numpy(), sb[k].numpy(), rtol=1e-4, atol=1e-5)


def test_cells_surely_routed_skip_the_first_models_extra_views_and_nothing_changes(
    pair, monkeypatch
):
    from napari_nucleus_ai.classify import predict as predict_module
    from napari_nucleus_ai.models import engine

    package = pair[0].package
    assert package.card["uncertainty"].get("tta_mode") == "adaptive"
    # the fixture trains with one view; every cell of its easy two-class set is certain: 4
    # views and a gate of 0 give every cell the extra views
    monkeypatch.setitem(package.card["uncertainty"], "tta", 4)
    monkeypatch.setitem(package.card["uncertainty"], "tta_gate", 0.0)
    home = _cells(4, first_seed=900)[0]
    items = home + _foreign(home)
    extra_views = []  # inputs given the extra views, per call of the engine
    real = engine.probability_samples

    def spy(modules, x, **kw):
        info = {}
        out = real(modules, x, **{**kw, "info": info})
        extra_views.append((len(x), info.get("n_extra", 0), kw.get("settled") is not None))
        return out

    monkeypatch.setattr(engine, "probability_samples", spy)
    monkeypatch.setattr(predict_module, "ROUTE_FIRST_SHARE", 2.0)  # the first model's views first
    fast = predict_module.predict_items(package, items, workers=1)
    assert any(c[2] for c in extra_views), "the first model's calls get the settled mask"
    n_first_fast = sum(c[1] for c in extra_views if c[2])
    extra_views.clear()
    monkeypatch.setattr(
        predict_module, "surely_routed", lambda p, x, held=None: np.zeros(len(x), bool)
    )
    package.modules[0].clear_memo()
    slow = predict_module.predict_items(package, items, workers=1)
    n_first_slow = sum(c[1] for c in extra_views if c[2])
    assert n_first_slow == len(items)
    assert n_first_fast < n_first_slow  # some cells were spared the views...
    # ...and the outputs are the same
    np.testing.assert_allclose(fast.probs, slow.probs, atol=1e-6)
    for key in ("routed", "out_of_domain", "set", "set_size"):
        assert list(fast.extra[key]) == list(slow.extra[key]), key
    np.testing.assert_allclose(fast.extra["ood"], slow.extra["ood"], atol=1e-5)


def test_cells_routed_before_the_first_model_sees_them_give_the_same_output(pair, monkeypatch):
    from napari_nucleus_ai.classify import predict as predict_module
    from napari_nucleus_ai.models import engine

    package = pair[0].package
    monkeypatch.setitem(package.card["uncertainty"], "tta", 4)
    monkeypatch.setitem(package.card["uncertainty"], "tta_gate", 0.0)
    home = _cells(4, first_seed=900)[0]
    items = _foreign(home) + home  # two chunks of 8: the foreign cells first
    seen = []  # rows of each forward pass of the first model's module
    real = engine.logits_batched

    def spy(module, x, *args, **kw):
        if module is package.modules[0]:
            seen.append(len(x))
        return real(module, x, *args, **kw)

    monkeypatch.setattr(engine, "logits_batched", spy)
    outputs = {}
    for share in (1.0, 0.0):  # the order a chunk takes follows the last chunk's routed share
        monkeypatch.setattr(package, "settled_share", share)
        package.modules[0].clear_memo()
        seen.clear()
        outputs[share] = (predict_module.predict_items(package, items, workers=1), list(seen))
    (first, seen_first), (other, seen_other) = outputs[1.0], outputs[0.0]
    routed = np.asarray(first.extra["routed"], bool)
    assert routed[: len(home)].all(), "the foreign cells go to the fallback"
    # the foreign chunk: its first views in the other order, none of them in this one
    assert 0 < sum(seen_other) - sum(seen_first) <= len(home)
    np.testing.assert_array_equal(first.probs, other.probs)
    assert list(first.labels) == list(other.labels)
    for key in ("routed", "out_of_domain", "set", "set_size"):
        assert list(first.extra[key]) == list(other.extra[key]), key
    np.testing.assert_array_equal(first.extra["ood"], other.extra["ood"])
    # the share the next chunk reads: the last chunk's (cells of the training microscope)
    assert package.settled_share < 0.5


def test_the_routing_order_needs_a_descriptor_score_and_a_fallback_that_replaces_its_columns(
    pair, monkeypatch
):
    from napari_nucleus_ai.classify.predict import _routes_first

    package = pair[0].package
    monkeypatch.setattr(package, "settled_share", 1.0)
    assert _routes_first(package)
    monkeypatch.setattr(package, "settled_share", 0.2)
    assert not _routes_first(package)
    monkeypatch.setattr(package, "settled_share", 1.0)
    domain = package.card["trust"]["domain"]
    monkeypatch.setitem(domain, "standardise", {**domain["standardise"], "mahalanobis": {}})
    assert not _routes_first(package)  # the score reads every feature
    monkeypatch.undo()
    monkeypatch.setattr(package, "settled_share", 1.0)
    monkeypatch.delitem(package.fallback.card["trust"], "conformal")
    assert not _routes_first(package)  # the first model's sets would stay on routed cells
