"""bioimage.io export of the default ``morph`` model: ``pytorch_state_dict`` weights only, whose
architecture measures the numpy descriptor in ``forward``; its test output is the package's own
``predict``; it reads back to the same model; and the adaptive test-time views of the export."""

from __future__ import annotations

import importlib
import io

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
# one test loads the exported TorchScript on purpose (torch >= 2.9 deprecates torch.jit)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

import test_bioimageio as tb  # noqa: E402
from conftest import SHARED_DATA  # noqa: E402
from napari_nucleus_ai.classify.predict import predict_items  # noqa: E402
from napari_nucleus_ai.classify.train import train  # noqa: E402
from napari_nucleus_ai.core.errors import InputError  # noqa: E402
from napari_nucleus_ai.models import bioimageio as bio  # noqa: E402
from napari_nucleus_ai.models.package import load_model  # noqa: E402
from test_bioimageio import assert_same_model, members, npy, rewrite  # noqa: E402

spec, offline = tb.spec, tb.offline  # the fixtures: bioimageio.spec or a skip; no network

PBC = SHARED_DATA / "smear" / "pbc"
PBC_CLASSES = ("lymphocyte", "monocyte", "neutrophil")


def _read(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _crops(root) -> list:
    """Every crop of the class folders under ``root`` as RGB arrays, class by class."""
    return [
        _read(f)
        for d in sorted(p for p in root.iterdir() if p.is_dir())
        for f in sorted(d.iterdir())
    ]


@pytest.fixture(scope="module")
def data(crop_folder, tmp_path_factory):
    """4 real PBC crops of 3 classes (links into the shared data), else the synthetic crops."""
    if not PBC.is_dir():
        return crop_folder
    root = tmp_path_factory.mktemp("pbc")
    for name in PBC_CLASSES:
        (root / name).mkdir()
        for f in sorted((PBC / name).iterdir())[:4]:
            (root / name / f.name).symlink_to(f)
    return root


@pytest.fixture(scope="module")
def morph(data, tmp_path_factory):
    """The default model ``train`` makes (``morph``, ImageNet features where installed,
    adaptive test-time views), its bioimage.io export and the export's result."""
    out = tmp_path_factory.mktemp("morph") / "model.zip"
    size = {"crop_size": 96 if data.name.startswith("pbc") else 48}  # small: seconds
    train(data, out, seed=1, arch="auto", threads=1, **size)  # as the CLI's defaults
    sample = sorted(next(p for p in sorted(data.iterdir()) if p.is_dir()).iterdir())[0]
    pkg = out.parent / "model.bioimageio.zip"
    res = bio.export_bioimageio(out, pkg, sample=sample, authors=["A. Tester"], validate=False)
    return out, pkg, res, sample


def bioimageio_network(files: dict):
    """The ``pytorch_state_dict`` network as bioimage.io tools build it from rdf.yaml:
    import the callable, call it with the kwargs, load the weights strictly."""
    entry = yaml.safe_load(files["rdf.yaml"])["weights"]["pytorch_state_dict"]
    arch = entry["architecture"]
    net = getattr(importlib.import_module(arch["import_from"]), arch["callable"])(**arch["kwargs"])
    state = torch.load(io.BytesIO(files[entry["source"]]), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


def preprocess(files: dict, raw: np.ndarray) -> torch.Tensor:
    """The input preprocessing rdf.yaml declares (fixed zero mean, unit variance per channel)."""
    kw = yaml.safe_load(files["rdf.yaml"])["inputs"][0]["preprocessing"][-1]["kwargs"]
    mean = np.asarray(kw["mean"], np.float32)[None, :, None, None]
    std = np.asarray(kw["std"], np.float32)[None, :, None, None]
    return torch.from_numpy(((raw - mean) / std).astype(np.float32))


def test_default_model_is_morph_with_adaptive_views(morph):
    card = load_model(morph[0]).card
    assert card["architecture"]["name"] == "morph"
    assert card["uncertainty"]["tta_mode"] == "adaptive" and card["uncertainty"]["tta"] > 1


def test_morph_exports_state_dict_weights_only_and_says_why(morph):
    _, pkg, res, _ = morph
    files = members(pkg)
    rdf = yaml.safe_load(files["rdf.yaml"])
    assert res["weights"] == ["pytorch_state_dict"] and list(rdf["weights"]) == res["weights"]
    assert "weights_torchscript.pt" not in files
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert arch["import_from"] == "napari_nucleus_ai.models.bioimageio"
    assert arch["callable"] == "bioimageio_classifier" and arch["kwargs"]["architecture"] == "morph"
    assert arch["kwargs"]["adaptive"] == pytest.approx(0.25)  # tta_gate x threshold
    readme = files["README.md"].decode()
    assert "no `torchscript`" in readme and "scikit-image" in readme and "adaptive" in readme
    env = files["environment.yaml"].decode()
    card = load_model(morph[0]).card
    assert ("napari-nucleus-ai[pretrained]" in env) == bool(
        card["architecture"]["params"]["imagenet"]
    )
    tol = rdf["config"]["bioimageio"]["reproducibility_tolerance"][0]
    assert tol["absolute_tolerance"] == 1e-4 and tol["relative_tolerance"] == 0


def test_morph_export_validates_with_bioimageio_spec_offline(morph, spec, offline):
    _, pkg, _, _ = morph
    descr = spec.load_description(pkg, perform_io_checks=True, known_files={})
    assert descr.validation_summary.status in ("valid-format", "passed"), (
        descr.validation_summary.format()
    )
    assert descr.weights.torchscript is None and descr.weights.pytorch_state_dict is not None
    assert not offline


def test_morph_test_output_is_the_packages_own_predict(morph):
    model, pkg, res, sample = morph
    files = members(pkg)
    pred = predict_items(load_model(model, cache=False), [_read(sample)])
    np.testing.assert_allclose(npy(files["test_output.npy"]), pred.probs, atol=1e-4, rtol=0)
    with torch.no_grad():  # bioimage.io tools run eval mode without gradients
        got = bioimageio_network(files)(preprocess(files, npy(files["test_input.npy"]))).numpy()
    np.testing.assert_allclose(got, pred.probs, atol=1e-4, rtol=0)


def test_morph_state_dict_network_is_predict_on_every_crop(morph, data):
    """A batch of crops through the bioimage.io network against ``predict`` on the same crops;
    the card's adaptive views make some crops take one view and others all of them."""
    from napari_nucleus_ai.models.inputs import raw_inputs

    model, pkg, _, _ = morph
    files = members(pkg)
    package = load_model(model, cache=False)
    items = _crops(data)
    pred = predict_items(package, items)
    raw, _ = raw_inputs(items, package.card)
    net = bioimageio_network(files)
    with torch.no_grad():
        got = net(preprocess(files, raw)).numpy()
    np.testing.assert_allclose(got, pred.probs, atol=1e-4, rtol=0)
    assert len(items) >= 12


def test_morph_round_trip_gives_the_same_model(morph, tmp_path, crop_folder):
    model, pkg, _, _ = morph
    assert_same_model(model, bio.import_bioimageio(pkg, tmp_path / "back.zip"), crop_folder)


def test_morph_round_trip_from_the_state_dict_alone(morph, tmp_path, crop_folder):
    model, pkg, _, _ = morph

    def no_attachments(doc):
        doc["attachments"] = []

    slim = rewrite(
        pkg, tmp_path / "slim.zip", rdf=no_attachments, drop=("weights.safetensors", "card.json")
    )
    assert_same_model(model, bio.import_bioimageio(slim, tmp_path / "back.zip"), crop_folder)


def test_morph_import_refuses_a_state_dict_for_another_architecture(morph, tmp_path):
    _, pkg, _, _ = morph

    def theirs(doc):
        doc["attachments"] = []
        doc["weights"]["pytorch_state_dict"]["architecture"]["import_from"] = "evil.module"

    bad = rewrite(pkg, tmp_path / "theirs.zip", rdf=theirs, drop=("weights.safetensors",))
    with pytest.raises(InputError, match="another architecture"):
        bio.import_bioimageio(bad, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def test_a_fallback_model_travels_in_the_attachments(morph, data, tmp_path, crop_folder):
    """A package with a fallback model: the network is the first model, the attachments the
    whole package, which import gives back; without them import says why in one line."""
    from napari_nucleus_ai.classify.train import embed_items
    from napari_nucleus_ai.models.package import read_package, save_model
    from napari_nucleus_ai.models.trust import fit_domain

    model = morph[0]
    package = load_model(model, cache=False)
    items = _crops(data)  # the first model routes by a domain-shift score (fitted here)
    f = embed_items(package.modules[0], items, package.card)
    labels = np.repeat(np.arange(len(package.classes)), len(items) // len(package.classes))
    probs = np.full((len(items), len(package.classes)), 1 / len(package.classes))
    card = dict(package.card, trust={"domain": fit_domain(f, labels, f, probs, components=4)})
    fallback = load_model(model, cache=False)  # its own tensors (a copy serves here)
    pair = save_model(card, package.modules, tmp_path / "pair.zip", fallback=fallback)
    pkg = tmp_path / "pair.bioimageio.zip"
    res = bio.export_bioimageio(pair, pkg, sample=morph[3], validate=False)
    assert res["probabilities"] == morph[2]["probabilities"]  # the first model's
    assert "Fallback model" in members(pkg)["README.md"].decode()
    back = bio.import_bioimageio(pkg, tmp_path / "back.zip")
    assert_same_model(pair, back, crop_folder)
    assert any(k.startswith("fallback.") for k in read_package(back)[1])

    def no_attachments(doc):
        doc["attachments"] = []

    slim = rewrite(pkg, tmp_path / "slim.zip", rdf=no_attachments, drop=("weights.safetensors",))
    with pytest.raises(InputError) as e:
        bio.import_bioimageio(slim, tmp_path / "x.zip")
    assert "fallback" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x.zip").exists()


def test_morph_torchscript_alone_is_refused_in_one_line(morph, tmp_path):
    model = morph[0]
    out = tmp_path / "ts.zip"
    with pytest.raises(InputError) as e:
        bio.export_bioimageio(model, out, state_dict=False, validate=False)
    msg = str(e.value)
    assert str(model) in msg and "pytorch_state_dict" in msg and "\n" not in msg
    assert not out.exists()


def test_morph_passes_bioimageio_core_test_model(morph):
    """bioimage.io's own test (format, then the test output reproduced from the weights)."""
    core = pytest.importorskip("bioimageio.core", reason="bioimageio.core is not installed")
    summary = core.test_model(morph[1])
    assert summary.status == "passed", summary.format()
    names = [d.name for d in summary.details if d.status == "passed"]
    assert any("Reproduce test outputs" in n for n in names)


# ---------------------------------------------------------------- adaptive views, any network
def test_adaptive_wrapper_is_predict_with_adaptive_views():
    """The wrapper's adaptive views against the engine's, with a gate that splits the crops:
    the certain ones keep their first view, the others average every view."""
    from napari_nucleus_ai.models.bioimageio.network import ensemble
    from napari_nucleus_ai.models.bioimageio.wrapper import normalised_entropy
    from napari_nucleus_ai.models.engine import normalised_entropy as np_entropy
    from napari_nucleus_ai.models.engine import probability_samples

    torch.manual_seed(0)  # linear members: their views disagree (no rotation invariance)
    nets = [
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 24 * 24, 3)).eval()
        for _ in range(2)
    ]
    x = np.random.default_rng(0).standard_normal((16, 3, 24, 24)).astype(np.float32)
    kw = {"device": torch.device("cpu"), "temperature": 1.5}
    first = probability_samples(nets, x, tta=1, **kw).mean(0)
    ent = np_entropy(first)
    np.testing.assert_allclose(normalised_entropy(torch.from_numpy(first)).numpy(), ent, atol=1e-6)
    gate = float(np.median(ent))
    want = probability_samples(nets, x, tta=4, adaptive=gate, **kw).mean(0)
    every = probability_samples(nets, x, tta=4, **kw).mean(0)
    with torch.no_grad():
        got = ensemble(nets, 1.5, 4, gate)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    unsure = ent > gate
    assert 0 < unsure.sum() < len(x)
    np.testing.assert_allclose(got[~unsure], first[~unsure], atol=1e-6)
    np.testing.assert_allclose(got[unsure], every[unsure], atol=1e-6)
    assert np.abs(every - first).max() > 1e-2  # the views matter: the test can tell them apart


def test_adaptive_card_traces_to_torchscript_like_predict(tmp_path, crop_folder):
    """A traceable network with an adaptive card (its gate between the crops' first-view
    entropies): its TorchScript gates the views in torch, as ``predict`` does."""
    import json

    from napari_nucleus_ai.models.inputs import raw_inputs
    from napari_nucleus_ai.models.package import read_package, save_model
    from test_train_predict import TINY

    src = train(crop_folder, tmp_path / "cnn.zip", seed=1, arch="smallcnn", **{**TINY, "tta": 4})
    package = load_model(src.path, cache=False)
    items = _crops(crop_folder)
    first = predict_items(package, items, tta=1)
    every = predict_items(package, items, tta=4)
    card, _ = read_package(src.path)
    card = json.loads(json.dumps(card))
    gate = float(np.median(first.entropy))
    card["uncertainty"].update(tta_mode="adaptive", tta_gate=1.0, threshold=gate)
    model = save_model(card, package.modules, tmp_path / "adaptive.zip")
    pkg = tmp_path / "adaptive.bioimageio.zip"
    bio.export_bioimageio(model, pkg, validate=False)
    files = members(pkg)
    pred = predict_items(load_model(model, cache=False), items)
    raw, _ = raw_inputs(items, card)
    net = torch.jit.load(io.BytesIO(files["weights_torchscript.pt"]))
    with torch.no_grad():
        got = net(preprocess(files, raw)).numpy()
    np.testing.assert_allclose(got, pred.probs, atol=1e-4, rtol=0)
    unsure = first.entropy > gate  # these took every view, the others their first
    assert 0 < unsure.sum() < len(items)
    np.testing.assert_allclose(got[unsure], every.probs[unsure], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got[~unsure], first.probs[~unsure], atol=1e-4, rtol=0)
    assert np.abs(every.probs - first.probs)[unsure].max() > 1e-3  # the views differ there


def test_a_trace_that_freezes_numpy_code_is_refused(tmp_path):
    """A network computing part of its output in numpy traces to a constant for that part:
    the export's check on another input catches it (the reason ``morph`` is not traced)."""
    from napari_nucleus_ai.models.bioimageio.network import ensemble
    from napari_nucleus_ai.models.bioimageio.trace import trace_checked

    class NumpyMean(torch.nn.Module):
        def forward(self, x):
            m = torch.from_numpy(x.detach().numpy()[0, :2, 0, 0].copy())  # frozen by the tracer
            return x.mean((2, 3))[:, :2] * 0 + m * 5

    wrapper = ensemble([NumpyMean()], 1.0, 1)
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = wrapper(torch.from_numpy(np.repeat(x, 3, 0))).numpy()
    with pytest.raises(InputError, match="does not reproduce"):
        trace_checked(wrapper, x, expected, tmp_path / "m.zip")
