"""When not to trust a prediction: conformal sets, the domain-shift score, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.models import trust


def _calibrated(n: int, classes: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them (a perfectly calibrated classifier)."""
    logits = rng.normal(0, 2.0, (n, classes))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return p, y


def test_conformal_sets_reach_their_coverage():
    rng = np.random.default_rng(0)
    covered, sizes = [], []
    for rep in range(40):
        p, y = _calibrated(400, 6, rng)
        conf = trust.fit_conformal(p[:200], y[:200], coverage=0.9, seed=rep)
        sets = trust.conformal_sets(p[200:], conf, seed=rep + 1)
        covered.append(trust.coverage_of(sets, y[200:]))
        sizes.append(np.mean([len(s) for s in sets]))
    assert abs(np.mean(covered) - 0.9) <= 0.03
    assert 1.0 < np.mean(sizes) < 6.0
    # a set lists its most probable class first, and never an empty set
    assert all(s and s[0] == int(np.argmax(row)) for s, row in zip(sets, p[200:], strict=True))


def test_conformal_set_columns_and_refusals():
    p = np.array([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25]])
    conf = {"method": "aps", "coverage": 0.9, "qhat": 0.9, "n_calibration": 50}
    cols = trust.set_columns(p, conf, ["a", "b", "c"])
    assert cols["set"][0] == "a" and cols["set_size"][0] == 1
    assert cols["set"][1].startswith("a|") and cols["set_size"][1] >= 2
    with pytest.raises(InputError, match="coverage"):
        trust.fit_conformal(p, [0, 1], coverage=1.5)


def test_domain_score_flags_shifted_features_and_passes_typical_ones():
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 3, (4, 40))

    def draw(n, shift=0.0):
        y = rng.integers(0, 4, n)
        f = centres[y] + rng.normal(0, 1, (n, 40)) + shift
        p = np.full((n, 4), 0.02)
        p[np.arange(n), y] = 0.94
        return f, y, p

    f_tr, y_tr, _ = draw(400)
    f_held, _, p_held = draw(200)
    dom = trust.fit_domain(f_tr, y_tr, f_held, p_held, components=16)
    f_in, _, p_in = draw(300)
    f_out, _, p_out = draw(300, shift=rng.normal(0, 3, 40))
    s_in = trust.domain_scores(f_in, p_in, dom)
    s_out = trust.domain_scores(f_out, p_out, dom)
    assert 0.85 <= (s_in <= dom["threshold"]).mean() <= 1.0
    assert (s_out > dom["threshold"]).mean() > 0.95
    trust.validate_trust({"domain": dom})
    assert trust.domain_warning(s_out > dom["threshold"], "field.png").startswith("field.png: ")
    assert trust.domain_warning(s_in > dom["threshold"]) is None


def test_modality_checks_name_the_file_and_both_modalities():
    card = {"name": "pbc", "modality": "brightfield_rgb"}
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 200
    trust.check_modality(rgb, card, "ok.png")
    grey = np.full((32, 32), 120, np.uint16)
    with pytest.raises(InputError, match=r"blob\.tif.*brightfield_rgb.*grey"):
        trust.check_modality(grey, card, "blob.tif")
    with pytest.raises(InputError, match="4-channel"):
        trust.check_modality(np.zeros((32, 32, 4), np.uint8), card, "four.tif")
    grey_rgb = np.repeat(grey[..., None], 3, -1)
    with pytest.raises(InputError, match="grey"):
        trust.check_modality(grey_rgb, card, "grey_as_rgb.png")
    storm = {"name": "ainu", "modality": "storm"}
    trust.check_modality(np.random.default_rng(0).normal(0, 1e3, (50, 2)), storm, "n.csv")


def test_a_big_image_is_judged_grey_or_colour_on_a_grid_of_its_pixels():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (3000, 2500), dtype=np.uint8)
    big_grey = np.repeat(grey[..., None], 3, -1)
    assert trust.image_modality(big_grey) == "grey"
    stained = big_grey.copy()
    stained[..., 2] //= 2  # a colour cast over the whole field
    assert trust.image_modality(stained) == "rgb"
    one_line = big_grey.copy()
    one_line[1, :, 0] = 255  # one coloured row off the grid: still a grey image
    assert trust.image_modality(one_line) == "grey"


@pytest.fixture(scope="module")
def trusted_model(tmp_path_factory):
    pytest.importorskip("torch")
    from PIL import Image

    from napari_nucleus_ai.classify.train import train
    from test_train_predict import blob

    root = tmp_path_factory.mktemp("trust_crops")
    for k, name in enumerate(["disc", "square"]):
        (root / name).mkdir()
        for i in range(30):
            Image.fromarray(blob(k, 1000 * k + i)).save(root / name / f"{i}.png")
    out = tmp_path_factory.mktemp("trust_model") / "m.zip"
    opts = {"epochs": 2, "crop_size": 24, "params": {"widths": [8, 16]}, "threads": 1, "tta": 1}
    train(root, out, val_fraction=0.4, seed=0, **opts)
    return out, root


def test_training_calibrates_sets_and_prediction_reports_them(trusted_model):
    from napari_nucleus_ai.classify.predict import predict_items
    from napari_nucleus_ai.models.package import load_model
    from test_train_predict import blob

    out, _ = trusted_model
    pkg = load_model(out)
    conf = pkg.card["trust"]["conformal"]
    assert conf["method"] == "aps" and conf["coverage"] == 0.9 and conf["n_calibration"] >= 20
    frame = predict_items(pkg, [blob(0, 5), blob(1, 6)]).to_frame()
    assert {"set", "set_size"} <= set(frame.columns)
    assert all(s.split("|")[0] in ("disc", "square") for s in frame["set"])


def test_an_rgb_model_refuses_grey_and_four_channel_files(trusted_model, tmp_path, capsys):
    import tifffile
    from PIL import Image

    from napari_nucleus_ai.cli import main

    out, root = trusted_model
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(grey)
    four = tmp_path / "four.tif"
    tifffile.imwrite(four, np.zeros((40, 40, 4), np.uint8))
    for bad, kind in ((grey, "grey"), (four, "4-channel")):
        code = main(["predict", str(out), str(bad), "--out", str(tmp_path / "p.csv")])
        err = [ln for ln in capsys.readouterr().err.splitlines() if ": error: " in ln]
        assert code != 0
        assert (
            len(err) == 1 and str(bad) in err[0] and "brightfield_rgb" in err[0] and kind in err[0]
        )


def _other_stain(k: int, seed: int) -> np.ndarray:
    """Blue-green cells on a dark background: a look no training cell had."""
    from test_morph import cell

    return 255 - cell(k, seed, cyto=(90, 200, 90))[..., ::-1]


@pytest.fixture(scope="module")
def morph_model(tmp_path_factory):
    pytest.importorskip("torch")
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import TrainingSet
    from test_morph import cell

    samples = [cell(k, 100 * k + i) for k in (1, 3) for i in range(30)]
    ts = TrainingSet(samples, [0] * 30 + [1] * 30, ["mono", "poly"], "brightfield_rgb")
    opts = dict(arch="morph", crop_size=48, epochs=1, threads=1, tta=1, val_fraction=0.4)
    out = tmp_path_factory.mktemp("morph_trust") / "m.zip"
    return train(ts, out, params={"cnn": False, "imagenet": None}, **opts)


def test_morph_models_flag_cells_unlike_their_training_cells(morph_model):
    """The domain-shift score: typical cells pass, cells of another look are unidentified."""
    from napari_nucleus_ai.classify.predict import predict_items
    from test_morph import cell

    res = morph_model
    dom = res.card["trust"]["domain"]
    conf = res.card["trust"]["conformal"]
    assert np.isfinite(dom["threshold"]) and conf["top"] and 0 <= conf["qhat"] <= 1
    # morph's embedding starts with its descriptor: the score uses the descriptor terms
    from napari_nucleus_ai.models.nets.morphology import N_FEATURES

    assert set(dom["standardise"]) == set(trust.TERMS)
    assert dom["descriptor"]["n"] == N_FEATURES
    typical = [cell(k, 500 + i) for k in (1, 3) for i in range(10)]
    other = [_other_stain(k, 700 + i) for k in (1, 3) for i in range(6)]
    seen = predict_items(res.package, typical)
    odd = predict_items(res.package, other)
    assert np.mean(seen.extra["out_of_domain"]) <= 0.3
    assert np.mean(odd.extra["out_of_domain"]) >= 0.9
    assert odd.labels.count("unidentified") >= 0.9 * len(other)
    assert np.median(odd.extra["ood"]) > np.median(seen.extra["ood"])


def test_the_cli_warns_once_when_most_cells_are_out_of_domain(morph_model, tmp_path, capsys):
    from PIL import Image

    from napari_nucleus_ai.cli import main

    paths = []
    for i in range(6):
        paths.append(tmp_path / f"odd{i}.png")
        Image.fromarray(_other_stain(1 + 2 * (i % 2), 900 + i)).save(paths[-1])
    out = tmp_path / "p.csv"
    code = main(["predict", morph_model.path, *map(str, paths), "--out", str(out), "--quiet"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert code == 0 and len(err) == 1
    assert "do not look like the model's training data" in err[0] and "retrain" in err[0]
    import pandas as pd

    table = pd.read_csv(out)
    assert {"set", "set_size", "ood", "out_of_domain"} <= set(table.columns)
    assert (table["label"] == "unidentified").mean() >= 0.8


def test_a_card_with_an_imagenet_sized_domain_score_saves_and_loads(morph_model, tmp_path):
    """The domain score of descriptor + ImageNet features (~1,400 numbers per cell) fits a card."""
    import copy
    import zipfile

    from napari_nucleus_ai.models.package import load_model, save_model

    rng = np.random.default_rng(0)
    f, y = rng.normal(size=(80, 1400)), rng.integers(0, 2, 80)
    held = rng.normal(size=(20, 1400))
    p = np.full((20, 2), 0.5)
    card = copy.deepcopy(morph_model.card)
    card["trust"]["domain"] = trust.fit_domain(f, y, held, p, components=32)
    out = save_model(card, morph_model.package.modules, tmp_path / "big.zip")
    size = zipfile.ZipFile(out).getinfo("card.json").file_size
    assert size < 2 << 20
    again = load_model(out, cache=False)
    assert again.card["trust"]["domain"]["threshold"] == card["trust"]["domain"]["threshold"]


def test_conformal_coverage_is_nominal_for_an_accurate_classifier():
    """The set always holds the top class; calibrating the plain APS score would count those
    items as possibly missed and over-cover a classifier that is mostly right."""
    rng = np.random.default_rng(3)
    covered, plain = [], []
    for rep in range(40):
        p, y = _calibrated(600, 6, rng)
        p = p**3 / (p**3).sum(1, keepdims=True)  # sharper: mostly right, still uncertain
        y = np.array([rng.choice(6, p=row) for row in p])
        conf = trust.fit_conformal(p[:300], y[:300], coverage=0.85, seed=rep)
        assert conf["top"] is True
        covered.append(trust.coverage_of(trust.conformal_sets(p[300:], conf, rep + 1), y[300:]))
        n = 300
        s = trust._aps_scores(p[:n], np.random.default_rng(rep).random(n))[np.arange(n), y[:n]]
        old = {**conf, "qhat": float(np.sort(s)[int(np.ceil((n + 1) * 0.85)) - 1])}
        plain.append(trust.coverage_of(trust.conformal_sets(p[300:], old, rep + 1), y[300:]))
    assert abs(np.mean(covered) - 0.85) <= 0.02
    assert np.mean(plain) - 0.85 > 0.03  # what the plain APS score gave


def test_train_refuses_a_bad_coverage_before_any_work(tmp_path, capsys):
    from napari_nucleus_ai.cli import main

    assert main(["train", str(tmp_path / "no-such-folder"), "--coverage", "1.5",
                 "--out", str(tmp_path / "m.zip")]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "coverage must be in [0.5, 1), got 1.5" in err[0]
    assert not (tmp_path / "m.zip").exists()
