"""The console script: fast --help, one-line errors."""

import json
import subprocess
import sys

import pytest

from napari_nucleus_ai.cli import COMMANDS, build_parser, main


def test_help_imports_neither_torch_nor_qt():
    code = (
        "import sys\n"
        "from napari_nucleus_ai.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'napari', 'qtpy', 'PyQt6', 'PySide6', 'vispy') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert command in capsys.readouterr().out


def test_subcommand_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from napari_nucleus_ai.cli import build_parser\n"
        "build_parser()\n"
        "print('HEAVY', [m for m in ('torch', 'napari', 'qtpy') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        (b"", "file is empty"),
        (b"\x00\x01\x02 not a format anybody knows \xff" * 10, "not a format"),
    ],
)
def test_info_bad_file_one_line(tmp_path, capsys, content, problem):
    path = tmp_path / "thing.dat"
    if content is not None:
        path.write_bytes(content)
    assert main(["info", str(path), "--json"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err and problem in err


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "napari_nucleus_ai", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "napari-nucleus-ai" in out.stdout


def test_parser_lists_commands():
    text = build_parser().format_help()
    for command in COMMANDS:
        assert command in text


def test_info_json_is_one_object(tmp_path, capsys):
    """A file some family reads gives one JSON object with a kind."""
    import numpy as np
    import tifffile

    from napari_nucleus_ai.io import FAMILIES, family_for

    path = tmp_path / "img.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    if family_for(path) is None:
        pytest.skip(f"no reader family ({FAMILIES}) takes TIFF yet")
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert isinstance(info, dict) and info["kind"] == "image"
