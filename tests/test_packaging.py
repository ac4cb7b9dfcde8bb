"""The npe2 manifest is valid, found in the editable install and shipped in the wheel."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_validates_from_installed_plugin():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-nucleus-ai")
    assert pm.name == "napari-nucleus-ai"
    ids = {c.id for c in pm.contributions.commands}
    for w in pm.contributions.widgets or []:
        assert w.command in ids
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-nucleus-ai"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_manifest_commands_import():
    """Every python_name in the manifest resolves (catches typos before users do)."""
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-nucleus-ai")
    for cmd in pm.contributions.commands:
        if cmd.python_name:
            mod, _, attr = cmd.python_name.partition(":")
            module = __import__(mod, fromlist=[attr])
            assert hasattr(module, attr), cmd.python_name


def test_package_manifest_is_the_top_level_one():
    link = ROOT / "src" / "napari_nucleus_ai" / "napari.yaml"
    assert link.resolve() == (ROOT / "napari.yaml").resolve()


@pytest.mark.slow
def test_wheel_contains_manifest(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git needed to copy the tree")
    src = tmp_path / "src"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(src)], check=True)
    # copy the working tree's uncommitted manifest too, so the test checks what is here
    shutil.copy(ROOT / "napari.yaml", src / "napari.yaml")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("napari_nucleus_ai-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "napari_nucleus_ai/napari.yaml" in names
        text = zf.read("napari_nucleus_ai/napari.yaml").decode()
        assert "name: napari-nucleus-ai" in text
        eps = next(n for n in names if n.endswith("entry_points.txt"))
        assert "napari_nucleus_ai:napari.yaml" in zf.read(eps).decode()
