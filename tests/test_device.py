"""Device selection shared by every model user."""

import pytest

from napari_nucleus_ai.core import device
from napari_nucleus_ai.core.errors import DeviceError


def test_auto_order(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_mps_available", lambda t: False)
    assert device.select_device("auto").type == "cpu"
    monkeypatch.setattr(device, "_mps_available", lambda t: True)
    assert device.select_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.select_device("auto").type == "cuda"


def test_unavailable_explicit_choice_is_a_clear_error(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_mps_available", lambda t: False)
    with pytest.raises(DeviceError, match="CUDA is not available.*available: cpu"):
        device.select_device("cuda")
    with pytest.raises(DeviceError, match="MPS is not available"):
        device.select_device("mps")
    with pytest.raises(DeviceError, match="unknown device"):
        device.select_device("tpu")


def test_setting_is_used_when_no_choice(monkeypatch):
    from napari_nucleus_ai.core import settings

    monkeypatch.delenv("NAPARI_NUCLEUS_AI_DEVICE", raising=False)
    settings.set_setting("device", "cpu")
    assert settings.get_setting("device") == "cpu"
    assert device.select_device(None).type == "cpu"
    assert device.describe_device("cpu").startswith("cpu (")
    monkeypatch.setenv("NAPARI_NUCLEUS_AI_DEVICE", "mps")
    assert settings.get_setting("device") == "mps"  # the environment overrides the file
    with pytest.raises(KeyError):
        settings.set_setting("colour", "red")
