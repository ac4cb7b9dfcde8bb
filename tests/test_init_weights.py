"""Training from a local weights file: what is copied, what is adapted, what is refused."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from napari_nucleus_ai.classify.train import train  # noqa: E402
from napari_nucleus_ai.cli import main  # noqa: E402
from napari_nucleus_ai.core.errors import InputError  # noqa: E402
from napari_nucleus_ai.models.init_weights import load_init_weights  # noqa: E402
from napari_nucleus_ai.models.nets.registry import build_architecture  # noqa: E402
from test_train_predict import TINY  # noqa: E402

WIDTHS = {"widths": [8, 16]}


def _weights_file(tmp_path, in_channels=3, n_classes=7, name="w.safetensors"):
    from safetensors.torch import save_file

    torch.manual_seed(123)
    net = build_architecture("smallcnn", in_channels, n_classes, WIDTHS)
    for p in net.parameters():  # far from any fresh initialisation
        p.data.uniform_(0.5, 1.0)
    path = tmp_path / name
    save_file({f"module.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path, net.state_dict()


def test_matching_tensors_are_copied_and_the_head_is_left(tmp_path):
    path, src = _weights_file(tmp_path)
    net = build_architecture("smallcnn", 3, 2, WIDTHS)
    head_before = net.head.weight.detach().clone() if hasattr(net, "head") else None
    info = load_init_weights(net, path)
    own = net.state_dict()
    trunk = [k for k in src if own[k].shape == src[k].shape]
    assert trunk and all(torch.equal(own[k], src[k]) for k in trunk)
    mismatched = [k for k in src if own[k].shape != src[k].shape]  # the 7-class head
    assert info["skipped"] == len(mismatched) >= 1 and info["adapted"] == 0
    assert info["file"] == "w.safetensors" and len(info["sha256"]) == 16
    if head_before is not None:
        assert torch.equal(net.head.weight, head_before)


def test_rgb_first_convolution_is_adapted_for_grey_inputs(tmp_path):
    path, src = _weights_file(tmp_path)
    net = build_architecture("smallcnn", 1, 7, WIDTHS)
    info = load_init_weights(net, path)
    assert info["adapted"] == 1
    k = next(k for k, v in src.items() if v.ndim == 4)
    w = net.state_dict()[k]
    assert w.shape[1] == 1
    torch.testing.assert_close(w, src[k].mean(1, keepdim=True) * 3)


def test_unrelated_or_unsafe_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    net = build_architecture("smallcnn", 3, 2, WIDTHS)
    other = tmp_path / "other.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(4, 4)}, str(other))
    with pytest.raises(InputError, match="only 0 of the network's"):
        load_init_weights(net, other)
    text = tmp_path / "text.safetensors"
    text.write_text("not weights at all")
    with pytest.raises(InputError, match="not a readable weights file") as e:
        load_init_weights(net, text)
    assert "\n" not in str(e.value) and "text.safetensors" in str(e.value)

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(InputError, match="not a readable weights file"):
        load_init_weights(net, evil)
    assert not (tmp_path / "pwned").exists()  # the file's code never ran
    with pytest.raises(InputError, match="no such weights file"):
        load_init_weights(net, tmp_path / "missing.pth")


def test_training_starts_from_the_file_and_records_it(crop_folder, tmp_path):
    path, src = _weights_file(tmp_path, name="start.pth")
    torch.save(src, path)  # a plain torch state dict this time
    opts = dict(TINY, epochs=1, lr=0.0, weight_decay=0.0, params=WIDTHS)
    res = train(crop_folder, None, init_weights=path, **opts)
    own = res.package.modules[0].state_dict()
    conv = [k for k, v in src.items() if v.ndim == 4]
    assert conv and all(torch.equal(own[k], src[k]) for k in conv)  # lr 0: still the file's
    prov = res.card["provenance"]["init_weights"]
    assert prov["file"] == "start.pth" and prov["loaded"] >= len(conv)
    fresh = train(crop_folder, None, **opts).package.modules[0].state_dict()
    assert not torch.equal(fresh[conv[0]], src[conv[0]])


def test_cli_init_weights_errors_are_one_line(crop_folder, tmp_path, capsys):
    args = ["train", str(crop_folder), "--out", str(tmp_path / "m"), "--epochs", "1"]
    assert main([*args, "--init-weights", str(tmp_path / "nope.pth")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "nope.pth" in err[0] and "no such weights file" in err[0]
    assert not (tmp_path / "m").exists()
    weights, _ = _weights_file(tmp_path)
    assert main([*args, "--arch", "diffusion", "--init-weights", str(weights)]) == 1
    assert "not supported" in capsys.readouterr().err
