"""The demo models: trained by the project on its own simulated data, shipped with the plugin.

The demo's models are package data (``napari_nucleus_ai/demo/models/*.zip``, a few
hundred KB each), so the demo never trains:

``smear-wbc``
    7 white-cell classes (:data:`~napari_nucleus_ai.samples.smear.WBC_CLASSES`),
    trained on cells of simulated smear fields (0.2 um/px) cut at a 25.6 um field
    of view; it classifies the smear sample (0.1 um/px) through the physical pixel
    size in its card.
``storm-chromatin``
    somatic vs pluripotent STORM nuclei (the presets of the STORM sample:
    clutch size, nucleosomes per clutch, heterochromatin), 64 x 64 patches of
    10 nm renders.
``infection-hoechst``
    uninfected vs infected Hoechst nuclei of simulated time-lapses (the recipe is
    :data:`napari_nucleus_ai.infection.score.DEMO_RECIPE`).

They are for demonstration only: each card says so and what it was trained on.
The recipes are fixed (seeds, sizes, epochs); ``python scripts/train_demo_models.py
--write`` rebuilds the shipped files and ``--check`` retrains and compares with the
metrics recorded in the shipped cards. Without a shipped file (a trimmed install),
:func:`demo_model_gen` falls back to training on first use into the user cache
(``NAPARI_NUCLEUS_AI_CACHE_DIR`` or the user cache folder, under a name that includes
:data:`RECIPE_VERSION`); the cache is otherwise left to the user's own models.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_nucleus_ai.core.progress import Progress, run_sync

RECIPE_VERSION = 1
DEMO_MODELS = {
    "smear-wbc": "white-cell classes of the simulated smear (7 classes)",
    "storm-chromatin": "somatic vs pluripotent STORM nuclei (chromatin clutches)",
}


def cache_dir() -> Path:
    from napari_nucleus_ai.core.files import cache_dir as plugin_cache

    return plugin_cache()


#: The shipped demo packages (package data beside the demo; found by path, not imported).
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "demo" / "models"
#: Every shipped demo package: the Classifier dock's two and the Infection dock's one.
SHIPPED_MODELS = {
    **DEMO_MODELS,
    "infection-hoechst": "uninfected vs infected Hoechst nuclei of simulated time-lapses",
}


def shipped_path(name: str) -> Path:
    """The demo package ``name`` shipped with the plugin (it may be missing in a trimmed install)."""
    return SHIPPED_DIR / f"{name}.zip"


def cache_path(name: str) -> Path:
    """Where a demo model trained on first use is cached (only without a shipped package)."""
    return cache_dir() / "models" / f"{name}-v{RECIPE_VERSION}.zip"


def model_path(name: str) -> Path:
    """The demo package ``name``: the shipped one, else the cached one."""
    shipped = shipped_path(name)
    return shipped if shipped.exists() else cache_path(name)


def smear_trainset(n_fields: int = 12, seed: int = 0):
    """Cells of simulated smear fields as a class-labelled training set."""
    from napari_nucleus_ai.classify.trainset import TrainingSet, from_labelled_image
    from napari_nucleus_ai.samples.smear import WBC_CLASSES, simulate_smear

    parts = []
    for i in range(n_fields):
        sim = simulate_smear(seed=seed + i, shape=(700, 700), pixel_size_um=0.2, n_wbc=10)
        by_label = dict(zip(sim.table["label"], sim.table["class"], strict=True))
        parts.append(
            from_labelled_image(
                sim.image,
                sim.cells,
                by_label,
                scale=0.2,
                unit="um",
                window=25.6,
                size=64,
                classes=list(WBC_CLASSES),
                source=f"simulate_smear(seed={seed + i})",
            )
        )
        yield Progress(i + 1, n_fields, "simulating smear fields")
    return TrainingSet(
        [s for p in parts for s in p.samples],
        np.concatenate([p.labels for p in parts]),
        list(WBC_CLASSES),
        "brightfield_rgb",
        [s for p in parts for s in p.sources],
        0.4,
        "um",
    )


def storm_trainset(n_per_class: int = 16, seed: int = 0):
    from napari_nucleus_ai.classify.trainset import TrainingSet
    from napari_nucleus_ai.samples.storm import simulate_nucleus

    classes = ["somatic", "pluripotent"]
    samples, labels, sources = [], [], []
    for k, preset in enumerate(classes):
        for i in range(n_per_class):
            df = simulate_nucleus(preset, seed=seed + 1000 * k + i, n_localizations=60_000)
            samples.append(df[["x_nm", "y_nm"]].to_numpy(float))
            labels.append(k)
            sources.append(f"simulate_nucleus({preset!r}, seed={seed + 1000 * k + i})")
            yield Progress(len(samples), 2 * n_per_class, "simulating STORM nuclei")
    return TrainingSet(samples, labels, classes, "storm", sources, 1.0, "nm")


#: What each card says it was trained on (``training_data``) beside ``intended_use``.
TRAINING_DATA = {
    "smear-wbc": "cells of 12 simulated smear fields (samples.smear.simulate_smear, seeds 0-11, "
    "700 x 700 px at 0.2 um/px, 10 white cells each), no real images",
    "storm-chromatin": "32 simulated STORM nuclei (samples.storm.simulate_nucleus, presets "
    "'somatic' seeds 0-15 and 'pluripotent' seeds 1000-1015, 60,000 localizations each), "
    "no real localizations",
    "infection-hoechst": "nuclear crops of 2 simulated Hoechst time-lapses "
    "(samples.timelapse.simulate_timelapse, seeds 101 and 102, 36 frames of 320 x 320 px), "
    "no real images",
}
INTENDED_USE = (
    "For demonstration only: trained on the project's own simulated data to show the "
    "workflow; not validated on real samples and not for any diagnostic or research result."
)


def demo_card(card: dict, name: str) -> dict:
    """``card`` with what a shipped demo package says about itself."""
    return dict(
        card,
        description=SHIPPED_MODELS[name],
        intended_use=INTENDED_USE,
        training_data=TRAINING_DATA[name],
        demo_model=name,
        demo_recipe_version=RECIPE_VERSION,
    )


def build_demo_model_gen(name: str, out=None):
    """Train demo model ``name`` with its fixed recipe; yields progress, returns TrainResult."""
    from napari_nucleus_ai.classify.train import train_gen

    out = Path(out or cache_path(name))
    if name == "smear-wbc":
        from napari_nucleus_ai.samples.smear import class_colormap

        ts = yield from smear_trainset()
        colours = [class_colormap()[c] for c in ts.classes]
        return (
            yield from train_gen(
                ts,
                out,
                arch="smallcnn",
                name="demo: smear white cells (simulated)",
                epochs=25,
                patience=8,
                crop_size=64,
                seed=0,
                colours=colours,
                tta=2,
                device="cpu",
            )
        )
    if name == "storm-chromatin":
        ts = yield from storm_trainset()
        return (
            yield from train_gen(
                ts,
                out,
                arch="smallcnn",
                name="demo: STORM chromatin (simulated)",
                epochs=12,
                patience=5,
                crop_size=64,
                patches=12,
                patches_per_epoch=6,
                seed=0,
                colours=["#e6550d", "#3182bd"],
                tta=2,
                device="cpu",
            )
        )
    raise KeyError(f"unknown demo model {name!r}; one of {', '.join(DEMO_MODELS)}")


def demo_model_gen(name: str):
    """The shipped demo model ``name`` (else cached; trained first when missing); yields progress."""
    from napari_nucleus_ai.models.package import load_model

    path = model_path(name)
    if not path.exists():
        yield Progress(0, None, f"training demo model {name} (first run only)")
        yield from build_demo_model_gen(name, path)
    return load_model(path)


def demo_model(name: str):
    return run_sync(demo_model_gen(name))


DEMO_PREFIX = "demo: "


def resolve_model_gen(spec):
    """A package from ``"demo: <name>"``, a path, or a loaded package; yields progress."""
    from napari_nucleus_ai.models.package import ModelPackage, load_model

    if isinstance(spec, ModelPackage):
        return spec
    text = os.fspath(spec)
    if text.startswith(DEMO_PREFIX):
        return (yield from demo_model_gen(text[len(DEMO_PREFIX) :]))
    return load_model(text)
