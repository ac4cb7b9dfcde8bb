"""bioimage.io model packages: export (validated offline by bioimageio.spec), TorchScript that
reproduces the package, import back without running code, refusals, CLI errors."""

from __future__ import annotations

import io
import json
import socket
import zipfile

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
# the tests load the exported TorchScript on purpose (torch >= 2.9 deprecates torch.jit)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

from napari_nucleus_ai.classify.predict import predict_items  # noqa: E402
from napari_nucleus_ai.classify.train import train  # noqa: E402
from napari_nucleus_ai.cli import main  # noqa: E402
from napari_nucleus_ai.core.errors import InputError  # noqa: E402
from napari_nucleus_ai.models import bioimageio as bio  # noqa: E402
from napari_nucleus_ai.models.package import load_model, read_package, save_model  # noqa: E402
from test_train_predict import TINY  # noqa: E402


@pytest.fixture
def spec():
    """bioimageio.spec, or a clean skip saying how to get it."""
    if not bio.have_bioimageio_spec():
        pytest.skip(
            "bioimageio.spec is not installed (pip install 'napari-nucleus-ai[bioimageio]')"
        )
    import bioimageio.spec

    return bioimageio.spec


@pytest.fixture
def offline(monkeypatch):
    """Any network connection fails the test: validation must not go online."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture(scope="module")
def trained(crop_folder, tmp_path_factory):
    """``trained(arch)``: a tiny package of ``arch``, trained once per module."""
    cache = {}

    def get(arch):
        if arch not in cache:
            out = tmp_path_factory.mktemp(f"bio_{arch}") / "model.zip"
            train(crop_folder, out, seed=1, arch=arch, **TINY)
            cache[arch] = out
        return cache[arch]

    return get


@pytest.fixture(scope="module", params=["smallcnn", "hybrid"])
def model(request, trained):
    return trained(request.param)


@pytest.fixture(scope="module")
def exported(model, crop_folder):
    out = model.parent / "model.bioimageio.zip"
    res = bio.export_bioimageio(
        model, out, sample=crop_folder / "disc" / "0.png", authors=["A. Tester"], validate=False
    )
    return model, out, res


def members(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def rewrite(src, dst, *, rdf=None, drop=(), replace=None):
    """A copy of package ``src`` with ``rdf(dict)`` applied, members dropped or replaced."""
    files = members(src)
    doc = yaml.safe_load(files["rdf.yaml"])
    if rdf is not None:
        rdf(doc)
    files["rdf.yaml"] = yaml.safe_dump(doc, sort_keys=False).encode()
    files.update(replace or {})
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in files.items():
            if name not in drop:
                zf.writestr(name, data)
    return dst


def npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def canonical(card: dict) -> str:
    return json.dumps(card, sort_keys=True)  # NaN metrics compare equal as text


# ---------------------------------------------------------------- export
def test_export_validates_with_bioimageio_spec_offline(exported, spec, offline):
    model, out, _ = exported
    descr = spec.load_description(out, perform_io_checks=True, known_files={})
    summary = descr.validation_summary
    assert summary.status in ("valid-format", "passed"), summary.format()
    assert not offline, "validation tried to open a network connection"
    status, line = bio.validate_bioimageio(out)
    assert status in ("valid-format", "passed") and "\n" not in line
    assert descr.type == "model" and str(descr.format_version).startswith("0.5")
    assert [str(t.id) for t in descr.inputs] == ["crop"]
    assert [str(t.id) for t in descr.outputs] == ["probabilities"]
    assert descr.weights.torchscript is not None
    assert descr.weights.pytorch_state_dict is not None


def test_export_runs_validation_itself_and_reports_it(model, tmp_path, spec, offline):
    res = bio.export_bioimageio(model, tmp_path / "v.zip")
    assert res["status"] in ("valid-format", "passed") and "bioimageio.spec" in res["validation"]
    assert not offline


def test_rdf_describes_the_card(exported):
    model, out, _ = exported
    package = load_model(model)
    files = members(out)
    rdf = yaml.safe_load(files["rdf.yaml"])
    card = package.card
    assert rdf["format_version"].startswith("0.5") and rdf["type"] == "model"
    inp, outp = rdf["inputs"][0], rdf["outputs"][0]
    assert [a["type"] for a in inp["axes"]] == ["batch", "channel", "space", "space"]
    assert [a.get("size") for a in inp["axes"][2:]] == [24, 24]
    assert outp["axes"][1]["channel_names"] == package.classes
    zmuv = inp["preprocessing"][-1]
    assert zmuv["id"] == "fixed_zero_mean_unit_variance"
    assert zmuv["kwargs"]["mean"] == card["input"]["normalisation"]["mean"]
    assert canonical(rdf["config"]["napari-nucleus-ai"]["card"]) == canonical(card)
    assert rdf["authors"] == [{"name": "A. Tester"}] and rdf["license"] == "CC-BY-4.0"
    assert rdf["cite"] and "napari-nucleus-ai" in rdf["tags"]
    assert "Validation" in files["README.md"].decode()
    assert npy(files["test_input.npy"]).shape == (1, 3, 24, 24)
    assert npy(files["test_output.npy"]).shape == (1, 2)


def test_test_output_is_the_packages_own_prediction(exported, crop_folder):
    model, out, _ = exported
    from PIL import Image

    files = members(out)
    pred = predict_items(
        load_model(model), [np.asarray(Image.open(crop_folder / "disc" / "0.png"))]
    )
    np.testing.assert_allclose(npy(files["test_output.npy"]), pred.probs, atol=1e-5)


def test_torchscript_reproduces_the_package(exported):
    """Loading TorchScript runs TorchScript: done here in the test, never by the importer."""
    model, out, _ = exported
    files = members(out)
    rdf = yaml.safe_load(files["rdf.yaml"])
    kw = rdf["inputs"][0]["preprocessing"][-1]["kwargs"]
    raw = npy(files["test_input.npy"])
    x = (raw - np.asarray(kw["mean"], np.float32)[None, :, None, None]) / np.asarray(
        kw["std"], np.float32
    )[None, :, None, None]
    net = torch.jit.load(io.BytesIO(files["weights_torchscript.pt"]))
    with torch.no_grad():
        got = net(torch.from_numpy(x.astype(np.float32))).numpy()
        batch = net(torch.from_numpy(np.repeat(x, 5, 0).astype(np.float32))).numpy()
    want = npy(files["test_output.npy"])
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(batch, np.repeat(want, 5, 0), atol=1e-5)
    # and the package on the same normalised input (its engine, with the card's TTA)
    from napari_nucleus_ai.models.engine import probability_samples

    package = load_model(model)
    ref = probability_samples(
        package.modules,
        x.astype(np.float32),
        device=torch.device("cpu"),
        temperature=package.temperature,
        tta=package.card["uncertainty"]["tta"],
    ).mean(0)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_state_dict_weights_reproduce_the_package(exported):
    model, out, _ = exported
    files = members(out)
    entry = yaml.safe_load(files["rdf.yaml"])["weights"]["pytorch_state_dict"]
    assert entry["architecture"]["import_from"] == "napari_nucleus_ai.models.bioimageio"
    net = bio.bioimageio_classifier(**entry["architecture"]["kwargs"])
    state = torch.load(io.BytesIO(files[entry["source"]]), weights_only=True)
    net.load_state_dict(state, strict=True)
    x = torch.from_numpy(npy(files["test_input.npy"]))
    kw = yaml.safe_load(files["rdf.yaml"])["inputs"][0]["preprocessing"][-1]["kwargs"]
    x = (x - torch.tensor(kw["mean"])[None, :, None, None]) / torch.tensor(kw["std"])[
        None, :, None, None
    ]
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), npy(files["test_output.npy"]), atol=1e-5)


def test_default_sample_is_deterministic(model, tmp_path):
    a = bio.export_bioimageio(model, tmp_path / "a.zip", validate=False)
    b = bio.export_bioimageio(model, tmp_path / "b.zip", validate=False)
    assert a["probabilities"] == b["probabilities"]
    ma, mb = members(tmp_path / "a.zip"), members(tmp_path / "b.zip")
    assert ma["test_input.npy"] == mb["test_input.npy"]


def test_torchscript_only_export(model, tmp_path):
    out = tmp_path / "ts.zip"
    res = bio.export_bioimageio(model, out, state_dict=False, validate=False)
    assert res["weights"] == ["torchscript"]
    assert "weights_state_dict.pt" not in members(out)


# ---------------------------------------------------------------- import
def assert_same_model(a_path, b_path, crop_folder):
    from PIL import Image

    a, b = load_model(a_path, cache=False), load_model(b_path, cache=False)
    assert canonical(a.card) == canonical(b.card)
    items = [
        np.asarray(Image.open(crop_folder / c / f"{i}.png"))
        for c in ("disc", "square")
        for i in (1, 7)
    ]
    pa, pb = predict_items(a, items), predict_items(b, items)
    np.testing.assert_array_equal(pa.probs, pb.probs)
    assert pa.labels == pb.labels
    ta, tb = read_package(a_path)[1], read_package(b_path)[1]
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_round_trip_gives_the_same_model(exported, tmp_path, crop_folder):
    model, out, _ = exported
    back = bio.import_bioimageio(out, tmp_path / "back.zip")
    assert_same_model(model, back, crop_folder)


def test_round_trip_from_unpacked_folder(exported, tmp_path, crop_folder):
    model, out, _ = exported
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(folder)
    back = bio.import_bioimageio(folder, tmp_path / "back_folder")
    assert_same_model(model, back, crop_folder)


def test_round_trip_from_the_state_dict_alone(exported, tmp_path, crop_folder):
    """Without the safetensors attachment the state dict is read with weights_only=True."""
    model, out, _ = exported

    def no_attachments(doc):
        doc["attachments"] = []

    slim = rewrite(
        out, tmp_path / "slim.zip", rdf=no_attachments, drop=("weights.safetensors", "card.json")
    )
    back = bio.import_bioimageio(slim, tmp_path / "back.zip")
    assert_same_model(model, back, crop_folder)


def test_import_refuses_a_foreign_package(exported, tmp_path):
    _, out, _ = exported

    def foreign(doc):
        doc["config"] = {"bioimageio": {}}
        del doc["weights"]["pytorch_state_dict"]
        doc["weights"]["torchscript"].pop("parent", None)

    bad = rewrite(out, tmp_path / "foreign.zip", rdf=foreign)
    with pytest.raises(InputError) as e:
        bio.import_bioimageio(bad, tmp_path / "x.zip")
    msg = str(e.value)
    assert str(bad) in msg and "not a napari-nucleus-ai export" in msg and "torchscript" in msg
    assert "\n" not in msg and not (tmp_path / "x.zip").exists()


def test_import_refuses_foreign_python_architecture(exported, tmp_path):
    _, out, _ = exported

    def theirs(doc):
        doc["attachments"] = []
        doc["weights"]["pytorch_state_dict"]["architecture"] = {
            "callable": "UNet",
            "source": "unet.py",
            "kwargs": {},
        }

    bad = rewrite(out, tmp_path / "theirs.zip", rdf=theirs, drop=("weights.safetensors",))
    with pytest.raises(InputError, match="another architecture"):
        bio.import_bioimageio(bad, tmp_path / "x.zip")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ("weights", "does not match the SHA-256"),
        ("classes", "output channel names"),
        ("card", "differs from the card stored with the weights"),
        ("arch", "not a napari-nucleus-ai export"),
        ("state_dict", "does not match the SHA-256"),
    ],
)
def test_import_refuses_a_modified_package(exported, tmp_path, edit, problem):
    _, out, _ = exported
    files = members(out)
    replace, drop = {}, ()

    def change(doc):
        card = doc["config"]["napari-nucleus-ai"]["card"]
        if edit == "classes":
            card["classes"][0]["name"] = "renamed"
        elif edit == "card":
            card["calibration"]["temperature"] = 3.5
        elif edit == "arch":
            card["architecture"]["name"] = "my_unet"
        elif edit == "state_dict":
            doc["attachments"] = []

    if edit == "weights":
        blob_ = bytearray(files["weights.safetensors"])
        blob_[-1] ^= 1
        replace = {"weights.safetensors": bytes(blob_)}
    if edit == "state_dict":
        drop = ("weights.safetensors",)
        sd = bytearray(files["weights_state_dict.pt"])
        sd[len(sd) // 2] ^= 1
        replace = {"weights_state_dict.pt": bytes(sd)}
    bad = rewrite(out, tmp_path / f"{edit}.zip", rdf=change, replace=replace, drop=drop)
    with pytest.raises(InputError) as e:
        bio.import_bioimageio(bad, tmp_path / "x.zip")
    assert problem in str(e.value) and str(bad) in str(e.value)
    assert not (tmp_path / "x.zip").exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "no such"), (b"", "file is empty"), (b"not a zip" * 20, "not a zip file")],
)
def test_import_bad_files(tmp_path, content, problem):
    path = tmp_path / "pkg.zip"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=problem):
        bio.import_bioimageio(path, tmp_path / "x.zip")


def test_import_refuses_a_plain_model_package(model, tmp_path):
    with pytest.raises(InputError, match="no rdf.yaml"):
        bio.import_bioimageio(model, tmp_path / "x.zip")


# ---------------------------------------------------------------- refusals at export
def test_export_needs_a_zip_name(model, tmp_path):
    with pytest.raises(InputError, match=r"\.zip"):
        bio.export_bioimageio(model, tmp_path / "folder")


# ---------------------------------------------------------------- CLI
def test_cli_export_and_import(model, tmp_path, capsys, crop_folder):
    out = tmp_path / "pkg.zip"
    argv = ["export-bioimageio", str(model), "--out", str(out), "--author", "A. Tester"]
    argv += ["--cite", "A paper|10.1234/abc.5678", "--no-validate"]
    assert main(argv) == 0
    assert "bioimage.io model, 2 classes" in capsys.readouterr().out
    rdf = yaml.safe_load(members(out)["rdf.yaml"])
    assert {"text": "A paper", "doi": "10.1234/abc.5678"} in rdf["cite"]
    assert main(["import-bioimageio", str(out), "--out", str(tmp_path / "back.zip")]) == 0
    assert_same_model(model, tmp_path / "back.zip", crop_folder)


@pytest.mark.parametrize("command", ["export-bioimageio", "import-bioimageio"])
def test_cli_errors_are_one_line(tmp_path, capsys, command):
    missing = tmp_path / "missing.zip"
    out = tmp_path / "out.zip"
    assert main([command, str(missing), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err
    assert list(tmp_path.iterdir()) == []


def test_cli_import_refusal_leaves_nothing(exported, tmp_path, capsys):
    _, out, _ = exported

    def foreign(doc):
        doc["config"] = {}

    bad = rewrite(out, tmp_path / "foreign.zip", rdf=foreign)
    assert main(["import-bioimageio", str(bad), "--out", str(tmp_path / "m.zip")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "not a napari-nucleus-ai" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.zip"]


# ---------------------------------------------------------------- timm backbones
@pytest.mark.parametrize("arch", ["efficientnet_b0", "densenet121"])
def test_backbone_exports_and_round_trips(trained, tmp_path, arch, crop_folder):
    """Runs where timm has a matching torchvision (.venv-backbones); skipped elsewhere."""
    try:
        import timm  # noqa: F401
    except ImportError as e:
        pytest.skip(f"timm with a matching torchvision is not installed ({e})")
    from napari_nucleus_ai.models.kinds import get_kind

    card, _ = read_package(trained("smallcnn"))
    card = json.loads(json.dumps(card))
    card["architecture"] = {"name": arch, "params": {}}
    card["input"]["crop_size"] = 32
    torch.manual_seed(0)
    src = save_model(card, get_kind("classifier").build(card), tmp_path / f"{arch}.zip")
    out = tmp_path / f"{arch}.bioimageio.zip"
    res = bio.export_bioimageio(src, out, sample=crop_folder / "square" / "3.png", validate=False)
    assert res["weights"] == ["pytorch_state_dict", "torchscript"]
    files = members(out)
    kw = yaml.safe_load(files["rdf.yaml"])["inputs"][0]["preprocessing"][-1]["kwargs"]
    x = (npy(files["test_input.npy"]) - np.asarray(kw["mean"], np.float32)[:, None, None]) / (
        np.asarray(kw["std"], np.float32)[:, None, None]
    )
    net = torch.jit.load(io.BytesIO(files["weights_torchscript.pt"]))
    with torch.no_grad():
        got = net(torch.from_numpy(x.astype(np.float32))).numpy()
    np.testing.assert_allclose(got, npy(files["test_output.npy"]), atol=1e-5)
    assert_same_model(src, bio.import_bioimageio(out, tmp_path / "back.zip"), crop_folder)


def test_invalid_export_is_an_error_and_writes_nothing(model, tmp_path, spec, offline):
    out = tmp_path / "bad.zip"
    with pytest.raises(InputError) as e:
        bio.export_bioimageio(model, out, license="not a license")
    assert str(out) in str(e.value) and "invalid" in str(e.value) and "license" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_cite_is_one_line(model, tmp_path, capsys):
    argv = ["export-bioimageio", str(model), "--out", str(tmp_path / "p.zip"), "--cite", "x"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "TEXT|DOI" in err and list(tmp_path.iterdir()) == []


def test_a_canonical_frame_model_is_refused_in_one_line(tmp_path):
    """The frame runs outside the network: an export would classify unframed crops."""
    from types import SimpleNamespace

    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.models.bioimageio.export import _refuse_unexportable

    card = {
        "kind": "classifier",
        "architecture": {"name": "smallcnn"},
        "input": {"frame": {"kind": "cell", "fill": 0.5}},
    }
    with pytest.raises(InputError, match="canonical cell frame"):
        _refuse_unexportable(SimpleNamespace(card=card), tmp_path / "m.zip")
    del card["input"]["frame"]
    _refuse_unexportable(SimpleNamespace(card=card), tmp_path / "m.zip")  # exportable
