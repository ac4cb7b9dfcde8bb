"""``napari-nucleus-ai info MODEL``: a model package described from its card, without torch.

A real package with a fallback model (trained here, as ``train`` writes it) as a zip, a
folder and one safetensors file; its text and JSON hold what the card says; a broken
package is the package reader's one line.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile

import pytest

pytest.importorskip("torch")

from napari_nucleus_ai.cli import main  # noqa: E402
from test_fallback import NAMES, PAIR, _cells  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A two-model package (morph + canonical-frame fallback), trained in a few seconds."""
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import TrainingSet

    items, labels = _cells(16)
    out = tmp_path_factory.mktemp("info") / "pair.zip"
    train(TrainingSet(items, labels, NAMES, "brightfield_rgb"), out, **PAIR)
    with zipfile.ZipFile(out) as zf:
        card = json.loads(zf.read("card.json"))
    return out, card


def _info_json(path, capsys) -> dict:
    assert main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_json_holds_what_the_card_says(pair, capsys):
    import torch

    from napari_nucleus_ai.models.package import read_package

    out, card = pair
    info = _info_json(out, capsys)
    assert info["kind"] == "model package" and info["format"].endswith("(zip)")
    assert info["name"] == card["name"] and info["model_kind"] == card["kind"] == "classifier"
    assert info["architecture"] == card["architecture"]
    assert info["members"] == card["members"]
    assert info["classes"] == card["classes"]
    spec = card["input"]
    assert info["input"]["channels"] == spec["channels"] == 3
    assert info["input"]["modality"] == card["modality"]
    assert info["input"]["crop_size_px"] == spec["crop_size"]
    assert (info["input"]["pixel_size"], info["input"]["pixel_unit"]) == (spec["pixel_size"], "px")
    assert "pixel_size_um" not in info["input"]  # a pixel size in px has no length
    assert info["input"]["canonical_frame"] is False
    unc = info["uncertainty"]
    assert (unc["tta"], unc["threshold"]) == (card["uncertainty"]["tta"], 0.5)
    assert unc["temperature"] == card["calibration"]["temperature"]
    assert info["trust"] == {
        "conformal_coverage": card["trust"]["conformal"]["coverage"],
        "domain_shift_alarm": True,
        "domain_threshold": card["trust"]["domain"]["threshold"],
        "adaptation": False,
    }
    training = info["training"]
    prov = card["provenance"]
    assert training["n_crops"] == prov["n_train"] + prov["n_val"] == 32
    assert training["data"] == prov["data"] and training["date"] == prov["date"]
    assert training["metrics"]["val_accuracy"] == card["metrics"]["val_accuracy"]
    assert training["metrics"]["val_uncertainty_auroc"] is None  # NaN in the card
    assert "val_confusion" not in training["metrics"]
    # the parameters counted from the weights' header are those the package loads
    _, tensors = read_package(out)
    own = sum(t.numel() for k, t in tensors.items() if not k.startswith("fallback."))
    fb = sum(t.numel() for k, t in tensors.items() if k.startswith("fallback."))
    assert (info["parameters"], info["fallback"]["parameters"]) == (own, fb)
    assert own > 0 and fb > 0 and isinstance(tensors[next(iter(tensors))], torch.Tensor)
    assert info["size_bytes"] == out.stat().st_size
    assert info["files"] == [
        {"name": out.name, "bytes": out.stat().st_size, "sha256": _sha256(out)}
    ]


def test_the_fallback_is_summarised_the_same_way(pair, capsys):
    out, card = pair
    fb = _info_json(out, capsys)["fallback"]
    assert fb["name"] == card["fallback"]["name"] and fb["name"].endswith("(frame)")
    assert fb["classes"] == card["classes"]
    assert fb["input"]["canonical_frame"] is True
    assert fb["trust"]["domain_threshold"] == card["fallback"]["trust"]["domain"]["threshold"]
    assert fb["uncertainty"]["temperature"] == card["fallback"]["calibration"]["temperature"]
    assert "fallback" not in fb and "files" not in fb


def test_text_lists_the_model_its_classes_and_its_fallback(pair, capsys):
    out, card = pair
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split() == ["kind", "model", "package"]
    for c in card["classes"]:
        assert any(line.split() == [c["name"], c["colour"]] for line in lines), c
    assert "  canonical_frame  no" in text and "    canonical_frame  yes" in text  # fallback
    fallback = lines.index("fallback")
    assert lines[fallback + 1].split() == ["name", *card["fallback"]["name"].split()]
    assert any(line.split() == ["domain_shift_alarm", "yes"] for line in lines)
    assert lines[-1].split() == [out.name, str(out.stat().st_size), _sha256(out)]


def test_a_folder_and_a_single_safetensors_file_describe_the_same_model(pair, tmp_path, capsys):
    out, _ = pair
    folder = tmp_path / "pair"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(folder)
    one = tmp_path / "pair.safetensors"
    shutil.copy(folder / "weights.safetensors", one)  # the card is in its metadata too
    first = _info_json(out, capsys)
    for path, layout in ((folder, "folder"), (one, "safetensors")):
        info = _info_json(path, capsys)
        assert info["format"].endswith(f"({layout})")
        for key in ("name", "classes", "input", "trust", "training", "parameters", "fallback"):
            assert info[key] == first[key], (layout, key)
    files = _info_json(folder, capsys)["files"]
    assert [f["name"] for f in files] == ["card.json", "weights.safetensors"]
    assert files[1]["sha256"] == _sha256(folder / "weights.safetensors")


def test_a_physical_pixel_size_is_also_given_in_um(pair, tmp_path, capsys):
    out, card = pair
    folder = tmp_path / "nm"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(folder)
    card = json.loads(json.dumps(card))
    card["input"].update(pixel_size=250.0, unit="nm")
    (folder / "card.json").write_text(json.dumps(card))
    info = _info_json(folder, capsys)["input"]
    assert (info["pixel_size"], info["pixel_unit"], info["pixel_size_um"]) == (250.0, "nm", 0.25)


def _zip(path, **members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name.replace("_", "."), data)
    return path


def _broken(kind: str, tmp_path, pair):
    out, card = pair
    with zipfile.ZipFile(out) as zf:
        weights = zf.read("weights.safetensors")
    text = json.dumps(card)
    if kind == "no card":
        return _zip(tmp_path / "m.zip", weights_safetensors=weights)
    if kind == "card not JSON":
        return _zip(tmp_path / "m.zip", card_json="{not json", weights_safetensors=weights)
    if kind == "weights not safetensors":
        return _zip(tmp_path / "m.zip", card_json=text, weights_safetensors=b"\x00" * 64)
    if kind == "pickle inside":
        return _zip(tmp_path / "m.zip", card_json=text, model_pt=b"\x80\x04pickle")
    if kind == "truncated zip":
        data = out.read_bytes()
        (tmp_path / "m.zip").write_bytes(data[: len(data) // 2])
        return tmp_path / "m.zip"
    if kind == "pickle checkpoint":
        (tmp_path / "m.pt").write_bytes(b"\x80\x04pickle")
        return tmp_path / "m.pt"
    if kind == "folder without weights":
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "card.json").write_text(text)
        return tmp_path / "m"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("no card", "zip holds 0 'card.json' files, expected 1"),
        ("card not JSON", "model card is not valid JSON"),
        ("weights not safetensors", "weights are not valid safetensors"),
        ("pickle inside", "zip holds 0 'weights.safetensors' files, expected 1"),
        ("truncated zip", "damaged zip"),
        ("pickle checkpoint", "pickle-based checkpoints are refused"),
        ("folder without weights", "model package has no weights.safetensors"),
    ],
)
def test_a_broken_package_is_one_line(pair, tmp_path, capsys, kind, problem):
    path = _broken(kind, tmp_path, pair)
    assert main(["info", str(path), "--json"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1, err
    assert str(path) in err[0] and problem in err[0] and "Traceback" not in err[0]


def test_the_package_reader_refuses_the_same_packages(pair, tmp_path):
    """``info`` and loading agree on what is broken (the same one-line problems)."""
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.models.describe import read_card
    from napari_nucleus_ai.models.package import read_package

    for kind in ("no card", "card not JSON", "weights not safetensors", "pickle checkpoint"):
        sub = tmp_path / kind.replace(" ", "-")
        sub.mkdir()
        path = _broken(kind, sub, pair)
        with pytest.raises(InputError) as loading:
            read_package(path)
        with pytest.raises(InputError) as describing:
            read_card(path)
        assert describing.value.problem == loading.value.problem, kind


def test_info_on_a_package_imports_neither_torch_nor_napari(pair):
    out, _ = pair
    code = (
        "import sys, contextlib, io\n"
        "from napari_nucleus_ai.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    rc = main(['info', {str(out)!r}, '--json'])\n"
        "print('RC', rc, 'HEAVY', [m for m in ('torch', 'napari', 'qtpy') if m in sys.modules])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "RC 0 HEAVY []" in run.stdout, run.stdout + run.stderr


def test_a_bin_file_no_reader_takes_is_left_to_the_data_readers(tmp_path, capsys):
    """``.bin`` is also Insight3 localizations: not answered with the pickle refusal."""
    path = tmp_path / "molecules.bin"
    path.write_bytes(b"\x01\x02junk" * 8)
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "pickle" not in err
