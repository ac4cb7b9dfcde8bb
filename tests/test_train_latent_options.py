"""``train --arch latent-diffusion`` with the autoencoder's options (``--ae-*``, ``--latent-channels``)
the UNet's (``--unet-base``, ``--unet-mults``, ``--unet-attention``) and its training arithmetic
(``--precision``).

The options reach :func:`~napari_nucleus_ai.models.diffusion.latent.train_autoencoder` (the
function ``benchmarks/diffusion_latent.py`` trains with) and the UNet, the card records them
(and ``info`` shows them), a bad value or another ``--arch`` is one line, and ``--ae-init``
continues from a saved autoencoder and refuses one of other settings.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from _diffusion_data import toy_crops  # noqa: E402
from test_diffusion_package import _write_class_folders  # noqa: E402

#: Tiny settings: 16-px crops, 2x down-sampling to 8 x 8 x 2 latents, 3 autoencoder steps.
AE_ARGS = [
    "--ae-width", "8",
    "--latent-channels", "2",
    "--ae-factor", "2",
    "--ae-steps", "3",
    "--ae-lr", "0.005",
    "--ae-perceptual", "0",
    "--ae-colour", "0.5",
    "--ae-latent-noise", "0.1",
]  # fmt: skip
LATENT = {"channels": 2, "factor": 2, "width": 8}
UNET_BASE = 8  # --unet-base of the trained package (the default is 16)
UNET_MULTS = [1, 3]  # --unet-mults of the trained package (the default is 1,2,2)


def _train_args(data, out, *extra):
    return [
        "train",
        str(data),
        "--out",
        str(out),
        "--arch",
        "latent-diffusion",
        "--crop-size",
        "16",
        "--epochs",
        "1",
        "--val-fraction",
        "0.34",
        "--threads",
        "1",
        "--quiet",
        *extra,
    ]


def _spy_autoencoder(mp, calls: list) -> None:
    """Record every call of ``latent.train_autoencoder`` (the benchmark's function too)."""
    from napari_nucleus_ai.models.diffusion import latent

    real = latent.train_autoencoder

    def spy(x, **kwargs):
        calls.append(kwargs)
        return (yield from real(x, **kwargs))

    mp.setattr(latent, "train_autoencoder", spy)


def _spy_latent_bank(mp, calls: list) -> None:
    """Record the keyword arguments of every ``latent.latent_bank`` call."""
    from napari_nucleus_ai.models.diffusion import latent

    real = latent.latent_bank

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    mp.setattr(latent, "latent_bank", spy)


def _card(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("card.json"))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A latent package trained through the command line with every ``--ae-*`` option."""
    from napari_nucleus_ai.cli import main

    root = tmp_path_factory.mktemp("latentopts")
    _write_class_folders(root / "data", per_class=4)
    out = root / "model.zip"
    calls: list = []
    with pytest.MonkeyPatch.context() as mp:
        _spy_autoencoder(mp, calls)
        _spy_latent_bank(mp, BANK_CALLS)
        extra = [*AE_ARGS, "--unet-base", str(UNET_BASE), "--unet-attention", "on"]
        extra += ["--unet-mults", ",".join(map(str, UNET_MULTS)), "--latent-std", "0.5"]
        extra += ["--precision", "bfloat16", "--latent-jitter", "off"]
        assert main(_train_args(root / "data", out, *extra)) == 0
    return root, out, calls


BANK_CALLS: list = []  # the keyword arguments of the trained fixture's latent_bank calls


def test_the_options_reach_the_autoencoder_training(trained):
    from napari_nucleus_ai.models.package import clear_cache, load_model

    _, out, calls = trained
    assert len(calls) == 1
    kw = calls[0]
    assert kw["latent"] == LATENT
    assert (kw["steps"], kw["lr"], kw["perceptual"]) == (3, 0.005, 0.0)
    assert (kw["colour"], kw["latent_noise"]) == (0.5, 0.1)
    assert kw["init"] is None and kw["precision"] == "bfloat16"
    clear_cache()
    ae = load_model(out).modules[0].ae  # the stored autoencoder has the asked shape
    assert tuple(ae.state_dict()["encoder.layers.0.weight"].shape) == (8, 3, 3, 3)
    assert ae.config.latent_channels == 2


def test_the_card_records_the_settings_used(trained):
    _, out, _ = trained
    card = _card(out)
    assert card["architecture"]["params"]["latent"] == LATENT
    rec = card["diffusion"]["autoencoder"]
    assert rec == {
        "steps": 3,
        "batch_size": 8,
        "lr": 0.005,
        "seed": 0,
        "perceptual": 0.0,
        "colour": 0.5,
        "latent_noise": 0.1,
    }


def test_defaults_are_filled_in_where_no_option_is_given():
    from napari_nucleus_ai.models.diffusion.kind import autoencoder_training
    from napari_nucleus_ai.models.diffusion.latent import AE_TRAIN_DEFAULTS

    got = autoencoder_training({"ae_steps": 0, "ae_perceptual": 0.0, "seed": 4}, 3)
    assert got == {**AE_TRAIN_DEFAULTS, "steps": 0, "perceptual": 0.0, "seed": 4}


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--ae-width", "2"),
        ("--latent-channels", "0"),
        ("--ae-factor", "3"),
        ("--ae-steps", "-1"),
        ("--ae-lr", "0"),
        ("--ae-perceptual", "-0.5"),
        ("--ae-colour", "nan"),
        ("--ae-latent-noise", "11"),
        ("--unet-base", "3"),
        ("--unet-base", "513"),
        ("--latent-std", "0"),
        ("--latent-std", "5"),
        ("--unet-mults", "1,x"),
        ("--unet-mults", "0,2"),
        ("--unet-mults", "1,2,2,2,2,2"),
        ("--unet-mults", "17"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_option(tmp_path, capsys, option, value):
    from napari_nucleus_ai.cli import main

    args = _train_args(tmp_path / "no-data", tmp_path / "m.zip", option, value)
    assert main(args) == 2
    line = _one_error_line(capsys)
    assert f"{option} {value}: must be" in line
    assert not (tmp_path / "m.zip").exists()


@pytest.mark.parametrize("arch", ["smallcnn", "diffusion", "auto"])
def test_autoencoder_options_with_another_arch_are_one_line(tmp_path, capsys, arch):
    from napari_nucleus_ai.cli import main

    args = _train_args(tmp_path / "no-data", tmp_path / "m.zip", "--ae-steps", "5")
    args += ["--latent-channels", "8", "--arch", arch]  # the last --arch wins
    assert main(args) == 2
    line = _one_error_line(capsys)
    assert "--ae-steps, --latent-channels: for --arch latent-diffusion only" in line
    assert f"not --arch {arch}" in line


def test_the_unet_base_reaches_the_network_and_the_card(trained):
    from napari_nucleus_ai.models.package import clear_cache, load_model

    _, out, _ = trained
    params = _card(out)["architecture"]["params"]
    assert params["base"] == UNET_BASE and params["attention"] is True
    assert params["mults"] == UNET_MULTS
    clear_cache()
    unet = load_model(out).modules[0].unet
    assert unet.base == UNET_BASE and unet.inp.weight.shape[0] == UNET_BASE
    widths = {p.shape[0] for n, p in unet.named_parameters() if p.ndim == 4}
    assert UNET_BASE * UNET_MULTS[-1] in widths  # the last level is 3x as wide
    assert UNET_BASE * 2 not in widths  # no level of the default 1,2,2
    assert type(unet.attn).__name__ == "Attention"  # not the Identity of attention off


@pytest.mark.parametrize("arch", ["diffusion", "latent-diffusion"])
def test_the_unet_base_goes_to_the_params_of_either_diffusion_arch(tmp_path, arch):
    from napari_nucleus_ai.cli import build_parser
    from napari_nucleus_ai.cli.train import _diffusion_options

    args = build_parser().parse_args(
        ["train", str(tmp_path), "--out", "m.zip", "--arch", arch, "--unet-base", "32"]
    )
    assert _diffusion_options(args) == ({"base": 32}, None)
    args = build_parser().parse_args(
        ["train", str(tmp_path), "--out", "m.zip", "--arch", arch, "--ae-width", "8"]
        + ["--unet-base", "24"]
    )
    if arch == "latent-diffusion":
        assert _diffusion_options(args) == ({"latent": {"width": 8}, "base": 24}, None)
    args = build_parser().parse_args(
        ["train", str(tmp_path), "--out", "m.zip", "--arch", arch, "--unet-mults", "1,2,4,4"]
    )
    assert _diffusion_options(args) == ({"mults": [1, 2, 4, 4]}, None)
    for value, flag in (("on", True), ("off", False)):
        args = build_parser().parse_args(
            ["train", str(tmp_path), "--out", "m.zip", "--arch", arch, "--unet-attention", value]
        )
        assert _diffusion_options(args) == ({"attention": flag}, None)


def test_the_precision_reaches_the_training_and_the_card(trained):
    """``--precision bfloat16`` on any processor: the card says what the UNet trained in."""
    _, out, _ = trained
    assert _card(out)["diffusion"]["precision"] == "bfloat16"


@pytest.mark.parametrize("arch", ["diffusion", "latent-diffusion"])
def test_the_precision_goes_to_the_kind_options_of_either_diffusion_arch(tmp_path, arch):
    from napari_nucleus_ai.cli import build_parser
    from napari_nucleus_ai.cli.train import _diffusion_options

    base = ["train", str(tmp_path), "--out", "m.zip", "--arch", arch]
    for value in ("auto", "float32", "bfloat16"):
        args = build_parser().parse_args([*base, "--precision", value])
        assert _diffusion_options(args) == (None, {"precision": value})
    assert _diffusion_options(build_parser().parse_args(base)) == (None, None)


def test_the_precision_with_another_arch_is_one_line(tmp_path, capsys):
    from napari_nucleus_ai.cli import main

    args = _train_args(tmp_path / "no-data", tmp_path / "m.zip", "--precision", "float32")
    assert main([*args, "--arch", "morph"]) == 2
    line = _one_error_line(capsys)
    assert "--precision: for --arch diffusion or latent-diffusion only, not --arch morph" in line
    assert not (tmp_path / "m.zip").exists()


@pytest.mark.parametrize("arch", ["smallcnn", "morph", "auto"])
def test_the_unet_base_with_another_arch_is_one_line(tmp_path, capsys, arch):
    from napari_nucleus_ai.cli import main

    args = _train_args(tmp_path / "no-data", tmp_path / "m.zip", "--unet-base", "32")
    args += ["--arch", arch]
    assert main(args) == 2
    line = _one_error_line(capsys)
    assert f"--unet-base: for --arch diffusion or latent-diffusion only, not --arch {arch}" in line
    assert not (tmp_path / "m.zip").exists()
    args = _train_args(tmp_path / "no-data", tmp_path / "m.zip", "--unet-mults", "1,2")
    assert main([*args, "--arch", arch]) == 2
    line = _one_error_line(capsys)
    assert f"--unet-mults: for --arch diffusion or latent-diffusion only, not --arch {arch}" in line
    args = _train_args(tmp_path / "no-data", tmp_path / "m.zip", "--unet-attention", "on")
    assert main([*args, "--arch", arch]) == 2
    line = _one_error_line(capsys)
    assert (
        f"--unet-attention: for --arch diffusion or latent-diffusion only, not --arch {arch}"
        in line
    )


def test_info_shows_the_unet_and_the_autoencoder_the_card_records(trained, capsys):
    from napari_nucleus_ai.cli import main

    _, out, _ = trained
    card = _card(out)
    assert main(["info", str(out), "--json"]) == 0
    arch = json.loads(capsys.readouterr().out)["architecture"]
    assert arch["name"] == "latent-diffusion"
    assert arch["params"]["latent"] == LATENT and arch["params"]["base"] == UNET_BASE
    assert arch["autoencoder_training"] == card["diffusion"]["autoencoder"]
    assert arch["training_precision"] == "bfloat16"
    assert main(["info", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("  autoencoder_training")
    assert lines[at + 1].split() == ["steps", "3"] and ["colour", "0.5"] in [
        line.split() for line in lines[at:]
    ]


def test_ae_init_continues_from_a_package_s_autoencoder(trained, tmp_path):
    """``--ae-steps 0``: the new package's autoencoder is the file's, tensor for tensor."""
    import torch

    from napari_nucleus_ai.cli import main
    from napari_nucleus_ai.models.diffusion.latent import read_autoencoder
    from napari_nucleus_ai.models.package import clear_cache, load_model

    root, src, _ = trained
    out = tmp_path / "again.zip"
    calls: list = []
    with pytest.MonkeyPatch.context() as mp:
        _spy_autoencoder(mp, calls)
        extra = [*AE_ARGS, "--ae-steps", "0", "--ae-init", str(src)]
        assert main(_train_args(root / "data", out, *extra)) == 0
    assert calls[0]["steps"] == 0 and calls[0]["init"] is not None
    clear_cache()
    first, _ = read_autoencoder(src)
    again = load_model(out).modules[0].ae.state_dict()
    assert set(again) == set(first)
    for k, v in first.items():
        assert torch.equal(again[k], v), k
    rec = _card(out)["diffusion"]["autoencoder"]
    assert rec["init"] == str(src) and rec["steps"] == 0
    assert len(rec["init_sha256"]) == 16


@pytest.mark.parametrize(
    ("extra", "mismatch"),
    [
        (["--ae-width", "16"], "width 8 (not 16)"),
        (["--latent-channels", "4", "--ae-factor", "4"], "latent channels 2 (not 4)"),
        (["--ae-factor", "4"], "down-sampling factor 2 (not 4)"),
        (["--crop-size", "32"], "crop size 16 px (not 32)"),
    ],
)
def test_ae_init_of_other_settings_is_one_line(trained, tmp_path, capsys, extra, mismatch):
    from napari_nucleus_ai.cli import main

    root, src, _ = trained
    calls: list = []
    out = tmp_path / "m.zip"
    with pytest.MonkeyPatch.context() as mp:
        _spy_autoencoder(mp, calls)
        args = _train_args(root / "data", out, *AE_ARGS, "--ae-init", str(src), *extra)
        assert main(args) == 1
    line = _one_error_line(capsys)
    assert str(src) in line and mismatch in line
    assert not calls and not out.exists()  # refused before any training


def test_a_bare_autoencoder_file_continues_and_is_checked(tmp_path):
    """``ae.safetensors`` as the benchmark writes it, and a whole denoiser's ``ae.*`` keys."""
    import torch
    from safetensors.torch import save_file

    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion import latent

    x, _, _ = toy_crops(per_class=2)
    first = run_sync(latent.train_autoencoder(x, latent=LATENT, steps=2, seed=3))
    state = {k: v.contiguous() for k, v in first.state_dict().items()}
    bare, whole = tmp_path / "ae.safetensors", tmp_path / "denoiser.safetensors"
    save_file(state, bare)
    save_file({**{f"ae.{k}": v for k, v in state.items()}, "scale": torch.ones(2)}, whole)
    for path in (bare, whole):
        again = run_sync(latent.train_autoencoder(x, latent=LATENT, steps=0, init=str(path)))
        for k, v in state.items():
            assert torch.equal(again.state_dict()[k], v), (path, k)
    with pytest.raises(InputError, match=r"ae\.safetensors: .*width 8 \(not 4\)"):
        run_sync(latent.train_autoencoder(x, latent={**LATENT, "width": 4}, steps=0, init=bare))
    grey = x[:, :1]
    with pytest.raises(InputError, match=r"image channels 3 \(not 1\)"):
        run_sync(latent.train_autoencoder(grey, latent=LATENT, steps=0, init=bare))
    junk = tmp_path / "junk.safetensors"
    save_file({"weight": torch.zeros(2)}, junk)
    with pytest.raises(InputError, match="junk.safetensors: holds no autoencoder"):
        latent.read_autoencoder(junk)


def test_a_card_s_latent_settings_share_the_option_ranges():
    """The card check takes its ranges from the ``train`` options' schema (one home)."""
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.core.params import command_param
    from napari_nucleus_ai.models.diffusion.kind import _check_latent

    high = int(command_param("train", "--ae-width").high)
    assert _check_latent({"width": high})["width"] == high
    for bad in ({"width": high + 1}, {"channels": 0}, {"factor": 3}, {"width": 8.0}, {"x": 1}):
        with pytest.raises(InputError, match="'latent' must be"):
            _check_latent(bad)
    assert np.isfinite(command_param("train", "--ae-latent-noise").high)


def test_a_card_s_unet_base_shares_the_option_range():
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.core.params import command_param
    from napari_nucleus_ai.models.diffusion.kind import _check_unet

    p = command_param("train", "--unet-base")
    _check_unet({"base": int(p.high)})
    _check_unet({})  # the default
    for bad in (int(p.low) - 1, int(p.high) + 1, 16.0, True, "16"):
        with pytest.raises(InputError, match=r"diffusion 'base' must be an integer in \[4, 512\]"):
            _check_unet({"base": bad})


@pytest.mark.parametrize("bad", [1, "true", None, [True]])
def test_a_card_s_attention_must_be_a_boolean(trained, bad):
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.models.diffusion.kind import validate

    _, out, _ = trained
    card = _card(out)
    validate(card)  # as trained: attention true
    card["architecture"]["params"]["attention"] = bad
    with pytest.raises(InputError, match="diffusion 'attention' must be true or false"):
        validate(card)


def test_the_latent_std_reaches_the_stats_and_the_card(trained):
    """``--latent-std 0.5``: the UNet learnt latents of standard deviation 0.5 (the package's
    ``scale`` is half of unit variance's), and the card says so."""
    import torch

    from napari_nucleus_ai.models.diffusion.latent import latent_bank, latent_stats
    from napari_nucleus_ai.models.package import clear_cache, load_model

    root, out, _ = trained
    assert _card(out)["diffusion"]["latent_std"] == 0.5
    clear_cache()
    net = load_model(out).modules[0]
    card = _card(out)
    from napari_nucleus_ai.classify.trainset import load_class_folders
    from napari_nucleus_ai.models.inputs import prepare

    ts = load_class_folders(root / "data")
    x, _ = prepare(ts.samples, card)
    z, _ = latent_bank(net.ae, x, np.asarray(ts.labels), copies=2, seed=0, jitter=False)
    std_scale = latent_stats(z)[1]
    got = net.scale.detach().numpy().ravel()
    # the package's latents were drawn with other augmentations: the same order of size
    assert np.all(got < 0.75 * std_scale) and np.all(got > 0.3 * std_scale)
    with torch.no_grad():
        zs = net.encode(torch.as_tensor(x[:4]))
    assert float(zs.std()) < 0.8


def test_latent_stats_scale_to_the_asked_std():
    from napari_nucleus_ai.models.diffusion.latent import latent_stats

    rng = np.random.default_rng(0)
    z = rng.normal(3.0, 2.0, (50, 4, 8, 8)).astype(np.float32)
    for std in (1.0, 0.5):
        shift, scale = latent_stats(z, std=std)
        zs = (z - shift[:, None, None]) * scale[:, None, None]
        assert np.allclose(zs.std(axis=(0, 2, 3)), std, atol=1e-3)
        assert np.allclose(zs.mean(axis=(0, 2, 3)), 0, atol=1e-3)
    with pytest.raises(ValueError, match="latent std"):
        latent_stats(z, std=0.0)


def test_latent_jitter_off_reaches_the_bank_and_the_card(trained):
    """``--latent-jitter off``: the UNet's latents come from copies without stain or light
    jitter, and the card says so."""
    assert [kw["jitter"] for kw in BANK_CALLS] == [False]
    assert _card(trained[1])["diffusion"]["latent_jitter"] is False


class _IdentityAE:
    """An "autoencoder" whose latents are the crops themselves."""

    def encode(self, x):
        from types import SimpleNamespace

        return SimpleNamespace(latents=x)


def _is_dihedral_copy(copy, crop) -> bool:
    from napari_nucleus_ai.models.diffusion.latent import dihedral

    return any(np.allclose(copy, dihedral(crop, k), atol=1e-6) for k in range(8))


@pytest.mark.parametrize("jitter", [False, True])
def test_the_latent_bank_jitters_only_when_asked(jitter):
    """Without jitter every copy of a crop is one of its 8 dihedral transforms and the copies
    cover several; with it, the copies after the first are colours no transform gives."""
    from napari_nucleus_ai.models.diffusion.latent import latent_bank

    rng = np.random.default_rng(1)
    x = (rng.uniform(0.2, 0.9, (3, 3, 8, 8)) * 2 - 1).astype(np.float32)
    copies = 6
    z, y = latent_bank(_IdentityAE(), x, np.arange(3), copies=copies, seed=0, jitter=jitter)
    assert z.shape == (3 * copies, 3, 8, 8) and list(y) == [0, 1, 2] * copies
    same = [_is_dihedral_copy(z[k * 3 + i], x[i]) for k in range(copies) for i in range(3)]
    assert all(same[:3])  # the first copy is the crop itself
    if jitter:
        assert not any(same[3:])
    else:
        assert all(same)
        from napari_nucleus_ai.models.diffusion.latent import dihedral

        kinds = {
            next(k for k in range(8) if np.allclose(z[c * 3], dihedral(x[0], k)))
            for c in range(copies)
        }
        assert len(kinds) > 2


def test_latent_jitter_goes_to_the_kind_options_and_only_for_latent_diffusion(tmp_path, capsys):
    from napari_nucleus_ai.cli import build_parser, main
    from napari_nucleus_ai.cli.train import _diffusion_options

    args = build_parser().parse_args(
        ["train", str(tmp_path), "--out", "m.zip", "--arch", "latent-diffusion"]
        + ["--latent-jitter", "off"]
    )
    assert _diffusion_options(args) == (None, {"latent_jitter": "off"})
    args = _train_args(tmp_path / "no-data", tmp_path / "m.zip", "--latent-jitter", "off")
    assert main([*args, "--arch", "diffusion"]) == 2
    line = _one_error_line(capsys)
    assert "--latent-jitter: for --arch latent-diffusion only" in line


@pytest.mark.parametrize("value", [False, "off"])
def test_latent_jitter_off_from_python_as_a_bool_or_off(tmp_path, value):
    """``train(..., kind_options={"latent_jitter": False})`` is ``--latent-jitter off``."""
    from napari_nucleus_ai.classify.train import train

    _write_class_folders(tmp_path / "data", per_class=3)
    calls: list = []
    with pytest.MonkeyPatch.context() as mp:
        _spy_latent_bank(mp, calls)
        train(
            tmp_path / "data",
            tmp_path / "m.zip",
            arch="latent-diffusion",
            crop_size=16,
            val_fraction=0.34,
            threads=1,
            params={"base": 8, "mults": [1, 2], "latent": LATENT},
            kind_options={"steps": 2, "ae_steps": 1, "ae_perceptual": 0.0, "latent_jitter": value},
        )
    assert [kw["jitter"] for kw in calls] == [False]
    assert _card(tmp_path / "m.zip")["diffusion"]["latent_jitter"] is False
