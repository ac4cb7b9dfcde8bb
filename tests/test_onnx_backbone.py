"""The frozen backbone through ONNX Runtime (models/nets/onnx_backbone.py, the [onnx] extra):
the same features as PyTorch's, exported once to the cache, checked before use."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from napari_nucleus_ai.models.nets import imagenet  # noqa: E402
from napari_nucleus_ai.models.nets import onnx_backbone as ob  # noqa: E402
from test_fast_inference import _backbone_with_statistics, assert_same_features  # noqa: E402

needs_onnx = pytest.mark.skipif(
    not ob.available(), reason="the [onnx] extra (onnxruntime, onnx) is not installed"
)


def _net(seed: int = 0):
    torch.manual_seed(seed)
    return imagenet.inference_copy(imagenet.build_backbone())


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("NAPARI_NUCLEUS_AI_ONNX", "0")
    assert not ob.available()
    assert ob.onnx_backbone(object(), 224) is None


@needs_onnx
def test_same_features_as_pytorch_and_exported_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    net = _net()
    fast = ob.onnx_backbone(net, imagenet.SIZE)
    assert isinstance(fast, ob.OnnxBackbone)
    files = list(ob.cache_dir().glob("*.onnx"))
    assert len(files) == 1 and ob.weights_digest(net) in files[0].name
    assert_same_features(net, fast)
    stamp = files[0].stat().st_mtime_ns
    again = ob.onnx_backbone(net, imagenet.SIZE)  # read from the cache, not exported again
    assert again is not None and files[0].stat().st_mtime_ns == stamp


@needs_onnx
def test_a_cached_graph_that_disagrees_or_is_broken_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a, b = _net(0), _net(1)
    assert ob.onnx_backbone(a, imagenet.SIZE) is not None
    src = ob.cache_dir() / f"efficientnet-lite0-f{ob.FORMAT}-{ob.weights_digest(a)}.onnx"
    dst = src.with_name(src.name.replace(ob.weights_digest(a), ob.weights_digest(b)))
    dst.write_bytes(src.read_bytes())  # another network's graph under b's name
    assert ob.onnx_backbone(b, imagenet.SIZE) is None
    dst.write_bytes(b"not an onnx file")
    assert ob.onnx_backbone(b, imagenet.SIZE) is None


@needs_onnx
def test_morph_predicts_the_same_with_onnx_runtime(tmp_path, monkeypatch):
    from napari_nucleus_ai.models.nets.morph import Morph

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    m = Morph(3, 2, cnn=False, imagenet="efficientnet-lite0").eval()
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        got = m.imagenet_features(x)
    assert isinstance(m._fast_img, ob.OnnxBackbone)
    with torch.no_grad():
        ref = imagenet.features(m.img, m.rgb(x), float(m.params["imagenet_view"]))
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-4, atol=1e-4)


@needs_onnx
def test_a_model_using_onnx_runtime_copies_and_pickles(tmp_path, monkeypatch):
    """Retraining deep-copies the loaded model: its ONNX Runtime backbone goes with it by file
    (a session does not pickle) and the copy computes the same features."""
    import copy
    import pickle

    from napari_nucleus_ai.models.nets.morph import Morph

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    m = Morph(3, 2, cnn=False, imagenet="efficientnet-lite0").eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        ref = m.imagenet_features(x)
    assert isinstance(m._fast_img, ob.OnnxBackbone)
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        fast = other._fast_img
        assert isinstance(fast, ob.OnnxBackbone) and fast.session is None  # opened when used
        other.__dict__["_memo"] = {}  # computed again, not remembered
        with torch.inference_mode():
            got = other.imagenet_features(x)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_morph_keeps_its_fast_backbone_while_the_weights_stay_and_follows_new_ones(
    tmp_path, monkeypatch
):
    """Refitting heads (``train`` / ``eval``, a state dict of the same weights) reuses the
    fast backbone (ONNX Runtime's session where installed) instead of making and checking it
    again; new backbone weights (a state dict, a write into ``img`` then ``clear_memo``) get
    a new one, and the features follow them."""
    from napari_nucleus_ai.models.nets.morph import Morph

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    made = []
    copy = imagenet.inference_copy
    monkeypatch.setattr(imagenet, "inference_copy", lambda net: made.append(1) or copy(net))
    m = Morph(3, 2, cnn=False, imagenet="efficientnet-lite0").eval()
    m.img.load_state_dict(_backbone_with_statistics(2).state_dict())
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))

    def features():
        with torch.inference_mode():
            got = m.imagenet_features(x)
        with torch.no_grad():
            ref = imagenet.features(m.img, m.rgb(x), float(m.params["imagenet_view"]))
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
        return got.numpy()

    first = features()
    fast = m._fast_img
    assert len(made) == 1 and fast is not None
    m.train()
    m.eval()
    m.load_state_dict(m.state_dict())  # the same weights
    np.testing.assert_array_equal(features(), first)
    assert len(made) == 1 and m._fast_img is fast

    state = m.state_dict()
    state["img._conv_head.weight"] = state["img._conv_head.weight"] * 1.5
    m.load_state_dict(state)
    second = features()
    assert len(made) == 2 and m._fast_img is not fast
    assert not np.allclose(second, first, rtol=0.01, atol=0)

    m.img._conv_head.weight.data.mul_(0.5)  # in place, unseen by torch's version counters
    m.clear_memo()
    third = features()
    assert len(made) == 3 and not np.allclose(third, second, rtol=0.01, atol=0)


@needs_onnx
def test_backbones_of_the_same_weights_share_one_session_and_run_in_small_batches(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    net = _net()
    a = ob.onnx_backbone(net, imagenet.SIZE)
    b = ob.onnx_backbone(_net(), imagenet.SIZE)  # another model's copy of the same weights
    assert a is not b and a.session is b.session  # one session, one memory arena
    assert ob.onnx_backbone(_net(1), imagenet.SIZE).session is not a.session

    session, runs = a.session, []

    class Spy:
        def run(self, names, feeds):
            runs.append(len(feeds["x"]))
            return session.run(names, feeds)

    monkeypatch.setattr(a, "session", Spy())
    n = 2 * ob.RUN_BATCH + 3
    x = torch.rand(n, 3, imagenet.SIZE, imagenet.SIZE, generator=torch.Generator().manual_seed(2))
    got = a.pooled(x)
    assert runs == [ob.RUN_BATCH, ob.RUN_BATCH, 3]
    whole = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])  # all n in one run
    torch.testing.assert_close(got, whole, rtol=1e-5, atol=1e-5 * float(whole.abs().max()))
