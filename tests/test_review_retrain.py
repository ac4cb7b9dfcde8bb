"""Fine-tuning from corrections: a new package version whose card holds metrics before and after."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import run_sync


def write_crops(root, n, seed, swap=False):
    """Two classes of 24 px crops: 'dark' has a dark disc, 'ring' a dark ring."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:24, :24]
    r = np.hypot(yy - 12 + rng.normal(0, 1, (n, 1, 1)), xx - 12)
    for i in range(n):
        for cls in ("dark", "ring"):
            disc = r[i] < 7 if cls == "dark" else (r[i] > 4) & (r[i] < 8)
            img = np.full((24, 24, 3), 200, np.uint8) + rng.integers(0, 30, (24, 24, 3)).astype(
                np.uint8
            )
            img[disc] = (60, 30, 120)
            name = ("ring" if cls == "dark" else "dark") if swap else cls
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / name / f"{seed}_{i}.png")


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    from napari_nucleus_ai.classify.train import train

    root = tmp_path_factory.mktemp("retrain")
    write_crops(root / "base", 10, 0)
    res = train(
        root / "base",
        root / "model-v1",
        epochs=3,
        crop_size=24,
        val_fraction=0.2,
        seed=0,
        threads=1,
        tta=1,
        patience=3,
    )
    return root, res.path


def test_retrain_makes_a_new_version_with_before_after(base_model):
    from napari_nucleus_ai.models.package import load_model
    from napari_nucleus_ai.review.retrain import retrain_gen

    root, path = base_model
    # annotators say the opposite of what the base model learnt: fine-tuning must follow them
    write_crops(root / "corr", 12, 5, swap=True)
    (root / "corr" / "artefact").mkdir()
    from PIL import Image

    for i in range(2):
        Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(
            root / "corr" / "artefact" / f"a{i}.png"
        )
    res = run_sync(
        retrain_gen(path, root / "corr", base_data=False, epochs=12, lr=3e-3, seed=0, threads=1)
    )
    assert res["out"].name == "model-v2" and res["version"] == 2
    assert res["skipped"] == {"artefact": 2}
    assert res["n_test"] == 6 and res["n_learn"] == 18
    assert res["metrics_before"]["n"] == 6
    assert res["after"] > res["before"]
    new = load_model(res["out"], cache=False)
    assert new.classes == load_model(path, cache=False).classes
    card = (
        json.loads((res["out"] / "card.json").read_text())
        if (res["out"] / "card.json").exists()
        else new.card
    )
    assert card["version"] == 2
    assert card["metrics"]["corrections_after"]["balanced_accuracy"] == pytest.approx(res["after"])
    assert card["provenance"]["fine_tuned_from"]["version"] == 1


def test_retrain_refuses_unusable_corrections(base_model, tmp_path):
    from napari_nucleus_ai.review.retrain import retrain_gen

    _, path = base_model
    (tmp_path / "artefact").mkdir()
    (tmp_path / "unidentified").mkdir()
    from PIL import Image

    for d in ("artefact", "unidentified"):
        for i in range(2):
            Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(tmp_path / d / f"{i}.png")
    with pytest.raises(InputError, match="fewer than 2"):
        run_sync(retrain_gen(path, tmp_path, base_data=False, epochs=1))


def disc_ring_field(n=8):
    """A field of ``n`` cells, dark discs and dark rings alternating, and their true classes."""
    img = np.full((40, n * 30, 3), 210, np.uint8)
    labels = np.zeros(img.shape[:2], np.int32)
    yy, xx = np.mgrid[:40, : n * 30]
    truth = {}
    for i in range(n):
        r = np.hypot(yy - 20, xx - (15 + 30 * i))
        disc = r < 7 if i % 2 == 0 else (r > 4) & (r < 8)
        img[disc] = (60, 30, 120)
        labels[r < 9] = i + 1
        truth[i + 1] = "dark" if i % 2 == 0 else "ring"
    return img, labels, truth


@pytest.mark.gui
def test_retrain_from_the_dock(base_model, make_napari_viewer, tmp_path):
    from napari_nucleus_ai.cells import measure_cells, to_features
    from napari_nucleus_ai.models.package import load_model
    from napari_nucleus_ai.widgets import _review_outputs as outs
    from napari_nucleus_ai.widgets.review import ReviewWidget

    _, path = base_model
    img, labels, truth = disc_ring_field()
    table = measure_cells(labels, img)
    table["class"] = "dark"  # the model says dark everywhere; the annotator corrects
    viewer = make_napari_viewer()
    viewer.add_image(img, rgb=True, name="field")
    viewer.add_labels(
        labels,
        features=to_features(table),
        name="cells",
        metadata={"model_path": str(path), "classes": ["dark", "ring"]},
    )
    w = ReviewWidget(viewer)
    w.open_outputs = False
    w.set_project(str(tmp_path / "proj"))
    while w.queue.unreviewed:
        w.set_class(truth[w.queue.current])
    res = outs.retrain_dialog(w, sync=True, epochs=2, threads=1, base_data=False)
    # the next version, in the project's models/ folder
    assert (
        res["out"].name == "model-v2" and res["out"].parent.parent == tmp_path / "proj" / "models"
    )
    assert res["version"] == 2 and res["n_test"] == 2 and res["n_learn"] == 6
    assert 0.0 <= res["before"] <= 1.0 and 0.0 <= res["after"] <= 1.0
    assert load_model(res["out"], cache=False).card["version"] == 2
    w.detach()


def test_retrain_cli_from_store(base_model, tmp_path, capsys, monkeypatch):
    """The CLI path: store -> exported crops -> fine-tuned v2 with before/after printed,
    progress as plain lines on a non-terminal stderr (none with --quiet)."""
    from napari_nucleus_ai.cli import _progress, main

    class Eager(_progress.ProgressPrinter):  # every update shown, however quick the work
        def __init__(self, label, **kw):
            super().__init__(label, **{**kw, "tty": False, "every": 0.0, "delay": 0.0})

    monkeypatch.setattr(_progress, "ProgressPrinter", Eager)
    from napari_nucleus_ai.review.session import save_session
    from napari_nucleus_ai.review.store import AnnotationStore

    root, path = base_model
    from PIL import Image

    img, labels, truth = disc_ring_field()
    Image.fromarray(img).save(tmp_path / "field.png")
    from napari_nucleus_ai.cells import measure_cells

    table = measure_cells(labels, img)
    table["class"] = "dark"
    store = AnnotationStore(tmp_path, author="ana")
    save_session(store, "field.png", labels, table, classes=["dark", "ring"], source="field.png")
    store.set_labels("field.png", truth)
    out = tmp_path / "m-v2"
    rc = main(
        [
            "retrain",
            str(path),
            str(tmp_path),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--no-replay",
            "--threads",
            "1",
        ]
    )
    captured = capsys.readouterr()
    text = captured.out
    assert rc == 0, text
    assert "new model version 2" in text and "balanced accuracy" in text
    assert "held-out cell" in text and "too few to tell" in text  # the toy field: few cells
    assert "retrain: fine-tuning epoch 2/2" in captured.err
    assert (out / "card.json").exists() or any(out.iterdir())
    args = ["retrain", str(path), str(tmp_path), "--out", str(tmp_path / "q"), "--quiet"]
    assert main([*args, "--epochs", "1", "--no-replay", "--threads", "1"]) == 0
    assert capsys.readouterr().err == ""


def test_retrain_summary_says_on_how_many_cells():
    from napari_nucleus_ai.review.retrain import FEW_HELD_OUT, summary

    res = {"before": 0.5, "after": 0.75, "n_test": 4, "n_learn": 16, "n_replay": 96}
    line = summary(res)
    assert "0.500 -> 0.750" in line and "measured on 4 held-out cells" in line
    assert "learnt from 16 corrected cells + 96 replayed" in line and "too few" in line
    assert "too few" not in summary({**res, "n_test": FEW_HELD_OUT})
    assert "1 held-out cell of" in summary({**res, "n_test": 1})
    assert "no corrected cell held out" in summary({**res, "n_test": 0})


def test_corrections_count_as_much_as_replay_in_every_class():
    from napari_nucleus_ai.review.retrain import _correction_weights

    # 2 corrections: 1 of class 0, 1 of class 1; replay: 12 of class 0, 3 of class 1, 5 of 2
    labels = np.array([0, 1] + [0] * 12 + [1] * 3 + [2] * 5)
    w = _correction_weights(labels, 2)
    assert w[0] == 12 and w[1] == 3 and set(w[2:]) == {1.0}


def _morph_base(tmp_path, out: str, n: int, **options):
    """A `morph` package trained on ``n`` written crops per class (seed 0, one thread)."""
    from napari_nucleus_ai.classify.train import train

    write_crops(tmp_path / "base", n, 0)
    return train(tmp_path / "base", tmp_path / out, arch="morph", seed=0, threads=1, tta=1,
                 **options)  # fmt: skip


def test_retrain_refits_the_closed_form_heads_of_morph(tmp_path):
    """A `morph` package without a CNN (the default beside ImageNet features) has nothing to
    train by gradient descent: retraining refits its logistic heads on the corrections and
    the replayed crops, and follows the annotators."""
    from napari_nucleus_ai.models.package import load_model
    from napari_nucleus_ai.review.retrain import retrain_gen

    base = _morph_base(tmp_path, "morph-v1", 10, crop_size=64, params={"cnn": False})
    write_crops(tmp_path / "corr", 12, 5, swap=True)
    res = run_sync(retrain_gen(base.path, tmp_path / "corr", base_data=False, epochs=3, seed=0))
    assert res["after"] > res["before"] and res["after"] >= 0.8
    card = load_model(res["out"], cache=False).card
    corr = card["provenance"]["corrections"]
    assert corr["epochs"] == 0 and len(corr["heads_refit"]) == 1
    assert corr["heads_refit"][0]["c"] in (0.03, 0.1, 0.3, 1.0)


def test_logistic_heads_fit_on_one_thread_to_the_same_weights(monkeypatch):
    """L-BFGS runs on one torch thread (two only wait for each other) and the thread count
    comes back after, also after an error; the weights are those of two threads. The one
    home of ``one_thread`` is the engine (inference threads): the logistic fit and retrain
    use it from there."""
    import contextlib

    import torch

    import napari_nucleus_ai.models.nets.morph as morph
    import napari_nucleus_ai.review.retrain as retrain
    from napari_nucleus_ai.models import engine

    assert not hasattr(morph, "one_thread")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with engine.one_thread():
            inside = torch.get_num_threads()
        with pytest.raises(ValueError), engine.one_thread():
            raise ValueError
        assert inside == 1 and torch.get_num_threads() == 2
        with retrain._sharing_cores(job=object()):  # a fallback fitting in another process
            assert torch.get_num_threads() == 1
        rng = np.random.default_rng(0)
        f, y = rng.normal(size=(300, 40)), rng.integers(0, 4, 300)
        f[:, :4] += 2 * np.eye(4)[y]
        w1, b1 = morph.fit_logistic(f, y, 4, 0.3)
        seen = []

        def spy():
            seen.append(torch.get_num_threads())
            return contextlib.nullcontext()

        monkeypatch.setattr(engine, "one_thread", spy)
        w2, b2 = morph.fit_logistic(f, y, 4, 0.3)
        assert seen == [2]  # the fit took the engine's (here: two threads)
        np.testing.assert_allclose(w1.numpy(), w2.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b1.numpy(), b2.numpy(), rtol=1e-4, atol=1e-5)
    finally:
        torch.set_num_threads(before)


def test_retrain_describes_each_crop_once(tmp_path, monkeypatch):
    """The refitted heads' features serve the domain score: a learnt crop is measured once,
    a held-out one once per model (before, after)."""
    from napari_nucleus_ai.models.nets.morph import Morph
    from napari_nucleus_ai.models.package import load_model
    from napari_nucleus_ai.review.retrain import retrain_gen

    base = _morph_base(
        tmp_path, "m.zip", 15, crop_size=48, params={"cnn": False, "imagenet": None},
        val_fraction=0.4, fallback="none",
    )  # fmt: skip
    assert base.package.card["trust"].get("domain")  # the score retraining refits
    write_crops(tmp_path / "corr", 12, 5, swap=True)
    described = []
    describe = Morph._describe
    monkeypatch.setattr(
        Morph, "_describe", staticmethod(lambda r: described.append(len(r)) or describe(r))
    )
    opts = dict(base_data=False, seed=0, holdout=0.5)  # 12 held out: the domain score refits
    res = run_sync(retrain_gen(base.path, tmp_path / "corr", **opts))
    assert res["n_learn"] == 12 and res["n_test"] == 12
    assert "refit" in load_model(res["out"], cache=False).card["trust"]["domain"]
    assert sum(described) <= res["n_learn"] + 2 * res["n_test"]
