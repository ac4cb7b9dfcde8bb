"""The network classes: importable and subclassable, the factories thin wrappers around them."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_nucleus_ai.core.errors import InputError  # noqa: E402
from napari_nucleus_ai.models.bioimageio.network import bioimageio_classifier, ensemble  # noqa: E402
from napari_nucleus_ai.models.bioimageio.wrapper import NucleusAIClassifier  # noqa: E402
from napari_nucleus_ai.models.diffusion.unet import ClassUNet  # noqa: E402
from napari_nucleus_ai.models.nets.cnn import (  # noqa: E402
    Hybrid,
    SmallCNN,
    build_hybrid,
    build_smallcnn,
    hybrid_feature_count,
)
from napari_nucleus_ai.models.nets.morph import DEFAULTS, Morph, build_morph  # noqa: E402
from napari_nucleus_ai.models.nets.registry import DEFAULT_PARAMS, build_architecture  # noqa: E402

SMALL = {"widths": [8, 16], "dropout": 0.1}


class TwoHeadCNN(SmallCNN):
    """A subclass: an extra head beside the inherited trunk and head."""

    def __init__(self, in_channels, n_classes, **kw):
        super().__init__(in_channels, n_classes, **kw)
        self.aux = torch.nn.Linear(self.head.in_features, 1)

    def forward(self, x):
        return super().forward(x), self.aux(self.trunk(x))


def _same_init(make_a, make_b):
    torch.manual_seed(11)
    a = make_a()
    after_a = torch.rand(3)
    torch.manual_seed(11)
    b = make_b()
    after_b = torch.rand(3)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(after_a, after_b)  # the same random numbers were drawn
    return a, b


@pytest.mark.parametrize(
    ("cls", "factory", "arch", "channels"),
    [
        (SmallCNN, build_smallcnn, "smallcnn", 1),
        (SmallCNN, build_smallcnn, "smallcnn", 3),
        (Hybrid, build_hybrid, "hybrid", 2),
        (Hybrid, build_hybrid, "hybrid", 3),
    ],
)
def test_cnn_class_factory_and_registry_agree(cls, factory, arch, channels):
    a, b = _same_init(lambda: cls(channels, 4, **SMALL), lambda: factory(channels, 4, **SMALL))
    _, c = _same_init(
        lambda: cls(channels, 4, **SMALL), lambda: build_architecture(arch, channels, 4, SMALL)
    )
    assert type(b) is cls and type(c) is cls
    x = torch.randn(2, channels, 24, 24)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))
    assert a(x).shape == (2, 4)


def test_defaults_match_the_registry():
    keys = list(SmallCNN(3, 2).state_dict())
    assert keys == list(build_architecture("smallcnn", 3, 2).state_dict())
    assert [k for k in keys if k.startswith("trunk.")][-1] == "trunk.3.4.num_batches_tracked"
    hybrid = Hybrid(3, 2)
    assert list(hybrid.state_dict())[:2] == ["feat_mean", "feat_std"]
    assert hybrid.feat_mean.shape == (hybrid_feature_count(3),)
    assert hybrid.head.in_features == 128 + hybrid_feature_count(3)
    assert DEFAULT_PARAMS["morph"] is DEFAULTS


def test_subclass_keeps_the_parent_keys_and_loads_its_weights():
    torch.manual_seed(0)
    parent = SmallCNN(3, 5, **SMALL)
    child = TwoHeadCNN(3, 5, **SMALL)
    assert isinstance(child, SmallCNN)
    extra = set(child.state_dict()) - set(parent.state_dict())
    assert extra == {"aux.weight", "aux.bias"}
    missing, unexpected = child.load_state_dict(parent.state_dict(), strict=False)
    assert sorted(missing) == ["aux.bias", "aux.weight"] and unexpected == []
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        logits, aux = child.eval()(x)
        assert torch.equal(logits, parent.eval()(x))
    assert aux.shape == (2, 1)


def test_training_capabilities_are_class_attributes():
    """What training must do for a network is declared on its class (models.training)."""
    assert Hybrid.fits_feature_stats is True and Morph.closed_form_heads is True
    for cls in (SmallCNN, Morph):
        assert not getattr(cls, "fits_feature_stats", False)
    for cls in (SmallCNN, Hybrid):
        assert not getattr(cls, "closed_form_heads", False)


@pytest.mark.parametrize("params", [{"cnn": False}, {"cnn": True, "widths": [8], "cnn_size": 32}])
def test_morph_class_and_factory_agree(params):
    a, b = _same_init(lambda: Morph(3, 3, **params), lambda: build_morph(3, 3, **params))
    _, c = _same_init(
        lambda: Morph(3, 3, **params), lambda: build_architecture("morph", 3, 3, params)
    )
    assert type(b) is Morph and type(c) is Morph
    assert a.params == {**DEFAULTS, **params} and a.n_classes == 3
    assert (a.cnn is None) == (not params["cnn"])
    keys = list(a.state_dict())
    assert keys[:4] == ["in_mean", "in_std", "desc_mean", "desc_std"]
    assert keys[4:6] == ["desc_head.weight", "desc_head.bias"]
    assert all(k.startswith("cnn.") for k in keys[6:])
    assert not a.desc_head.weight.requires_grad


def test_morph_subclass_and_grey_refused():
    class Tagged(Morph):
        def forward(self, x):
            return super().forward(x) * 0.0

    m = Tagged(3, 2, cnn=False)
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(m.eval()(x), torch.zeros(2, 2))
    with pytest.raises(InputError, match="RGB"):
        Morph(1, 2)
    with pytest.raises(InputError, match="RGB"):
        build_morph(1, 2)


def test_ensemble_wrapper_class():
    torch.manual_seed(3)
    nets = [SmallCNN(3, 4, **SMALL), SmallCNN(3, 4, **SMALL)]
    w = ensemble(nets, 1.5, 4)
    assert type(w) is NucleusAIClassifier and not w.training
    direct = NucleusAIClassifier(nets, 1.5, 4).eval()
    assert list(w.state_dict()) == list(direct.state_dict())
    assert all(k.startswith(("members.0.", "members.1.")) for k in w.state_dict())
    assert len(w.transforms) == 4 and len(NucleusAIClassifier(nets, 1.0, 99).transforms) == 8
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        p = w(x)
        assert torch.equal(p, direct(x))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch >= 2.9 marks TorchScript deprecated
            traced = torch.jit.trace(w, x, check_trace=False)
        assert torch.allclose(traced(x), p)
    assert torch.allclose(p.sum(1), torch.ones(2))
    _same_init(
        lambda: bioimageio_classifier("hybrid", 3, 4, SMALL, members=2, tta=2),
        lambda: NucleusAIClassifier([Hybrid(3, 4, **SMALL), Hybrid(3, 4, **SMALL)], 1.0, 2),
    )


def test_ensemble_class_from_the_network_module():
    from napari_nucleus_ai.models.bioimageio import network

    assert network.NucleusAIClassifier is NucleusAIClassifier
    with pytest.raises(AttributeError):
        network.NoSuchThing  # noqa: B018


def test_diffusion_unet_subclass():
    class Quiet(ClassUNet):
        pass

    _same_init(
        lambda: ClassUNet(2, 3, base=8, mults=(1, 2)), lambda: Quiet(2, 3, base=8, mults=(1, 2))
    )


def test_cheap_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import napari_nucleus_ai.models.nets.registry, napari_nucleus_ai.models.nets.morph_params\n"
        "import napari_nucleus_ai.models.bioimageio.network, napari_nucleus_ai.models.bioimageio\n"
        "import napari_nucleus_ai.models.nets.imagenet, napari_nucleus_ai.models.classifier_kind\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_morph_fits_through_its_module_functions(monkeypatch):
    """``Morph`` looks its head fitting up in :mod:`.morph`, so it can be patched there."""
    from napari_nucleus_ai.models.nets import morph as morph_module

    seen = []

    def fake(f, y, n_classes, *a, **k):
        seen.append((f.shape, n_classes))
        return {
            "c": 1.0,
            "mean": np.zeros(f.shape[1]),
            "std": np.ones(f.shape[1]),
            "weight": torch.zeros(n_classes, f.shape[1]),
            "bias": torch.zeros(n_classes),
        }

    monkeypatch.setattr(morph_module, "fit_head", fake)
    m = Morph(3, 2, cnn=False)
    n = m.desc_mean.shape[0]
    monkeypatch.setattr(m, "descriptors", lambda x: torch.ones(len(x), n))
    assert m.refit_heads(torch.zeros(4, 3, 8, 8), [0, 1, 0, 1]) == {"c": 1.0}
    assert seen == [((4, n), 2)]
