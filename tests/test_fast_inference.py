"""The fast inference path of the default model (issue 24): the frozen backbone's inference
copy (batch norms folded, channels-last) and the memo keys of ``morph``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from napari_nucleus_ai.models import engine  # noqa: E402
from napari_nucleus_ai.models.nets import imagenet  # noqa: E402


def _backbone_with_statistics(seed: int = 0):
    """The backbone with random weights and random batch-norm statistics (so folding them
    into the convolutions is exercised; a fresh network has identity batch norms)."""
    g = torch.Generator().manual_seed(seed)
    net = imagenet.build_backbone()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return net.eval()


def assert_same_features(net, fast) -> None:
    """``fast`` (a faster form of the backbone ``net``) gives ``net``'s pooled features."""
    rgb = torch.rand(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = imagenet.features(net, rgb)
        got = imagenet.features(fast, rgb)
    assert got.shape == (3, imagenet.N_FEATURES)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_inference_copy_computes_the_same_features_and_leaves_the_network_alone():
    net = _backbone_with_statistics()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast = imagenet.inference_copy(net)
    assert_same_features(net, fast)
    # the original keeps its batch norms, weights and memory order
    assert set(net.state_dict()) == set(before)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert next(fast.parameters()).is_contiguous(memory_format=torch.channels_last)


def test_morph_uses_the_copy_only_for_inference_and_drops_it_when_weights_change():
    from napari_nucleus_ai.models.nets.morph import Morph

    m = Morph(3, 2, cnn=False, imagenet="efficientnet-lite0").eval()
    m.img.load_state_dict(_backbone_with_statistics(2).state_dict())
    m.clear_memo()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = imagenet.features(m.img, m.rgb(x), float(m.params["imagenet_view"]))
    with torch.inference_mode():
        got = m.imagenet_features(x)
        fast = m._backbone(x)
    assert fast is not m.img and fast is m._fast_img
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    with torch.enable_grad():  # gradients (saliency) go through the network itself
        assert m._backbone(x) is m.img
    m.train()  # training, as any change of weights, drops the copy
    assert m._fast_img is None
    assert m._backbone(x) is m.img
    m.eval()
    with torch.inference_mode():
        m.imagenet_features(x)
    assert m._fast_img is not None
    m.load_state_dict(m.state_dict())
    assert m._fast_img is None


def test_descriptor_memo_key_is_shared_by_the_eight_views_of_a_crop_only():
    from napari_nucleus_ai.models.nets.morph import Morph

    m = Morph(3, 2, cnn=False, imagenet=None).eval()
    m.shared_views = True
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((1, 3, 24, 24), dtype=np.float32))
    views = torch.cat([engine.dihedral(x, k, f) for k, f in engine._DIHEDRAL]).numpy()
    desc = {m._key("desc", v) for v in views}
    assert len(desc) == 1
    assert len({m._key("img", v) for v in views}) == 8  # the backbone sees each view
    other = views[0].copy()
    other[0, 3, 5] = 2.0  # a new orbit maximum: the key is the views' pixelwise max and min
    assert m._key("desc", other) not in desc
    m.shared_views = False
    assert len({m._key("desc", v) for v in views}) == 8
