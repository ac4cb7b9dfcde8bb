"""napari-nucleus-ai: published cell-AI methods at the microscope.

Importing the package is cheap on purpose: no torch, no Qt, no napari.

The package is laid out by workflow (see ``docs/architecture.md``). Modules that
lived at other paths in earlier releases stay importable under their old names
(``napari_nucleus_ai.annotations`` is :mod:`napari_nucleus_ai.review.store`, ...):
:data:`MOVED` maps each old name to its home, and importing an old name gives the
same module object with a ``DeprecationWarning``. Old names that are now
subpackages (``classify``, ``review``, ``infection``, ``demo``) export their former
public functions from the subpackage itself.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.1.0"

#: Old module path (below the package) -> where it lives now.
MOVED = {
    "errors": "core.errors",
    "progress": "core.progress",
    "utils": "core.files",
    "settings": "core.settings",
    "models.device": "core.device",
    "io.localizations": "localizations",
    "render": "localizations.render",
    "io.images": "images",
    "crops": "models.crops",
    "framing": "models.framing",
    "uncertainty": "models.uncertainty",
    "models.architectures": "models.nets.registry",
    "models.morph_net": "models.nets.morph",
    "models.morphology": "models.nets.morphology",
    "models.imagenet": "models.nets.imagenet",
    "models.demo_models": "classify.demo_models",
    "trainset": "classify.trainset",
    "train": "classify.train",
    "predict": "classify.predict",
    "annotations": "review.store",
    "session": "review.session",
    "report": "review.report",
    "trainexport": "review.export",
    "retrain": "review.retrain",
    "track": "infection.track",
    "lytic": "infection.lytic",
    "infection_eval": "infection.evaluate",
    "io.localizations.binary": "localizations.binary",
    "io.localizations.csvread": "localizations.csvread",
    "io.localizations.detect": "localizations.detect",
    "io.localizations.drift": "localizations.drift",
    "io.localizations.filters": "localizations.filters",
    "io.localizations.generic": "localizations.generic",
    "io.localizations.layers": "localizations.layers",
    "io.localizations.nstorm": "localizations.nstorm",
    "io.localizations.pipeline": "localizations.pipeline",
    "io.localizations.table": "localizations.table",
    "io.localizations.thunderstorm": "localizations.thunderstorm",
    "io.localizations.vendors": "localizations.vendors",
    "io.localizations.writers": "localizations.writers",
    "io.images.base": "images.base",
    "io.images.fields": "images.fields",
    "io.images.regions": "images.regions",
    "io.images.slides": "images.slides",
    "io.images.stacks": "images.stacks",
    "io.images.tiff": "images.tiff",
    "io.images.writers": "images.writers",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve an old module path to the module at its new path (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        prefix = __name__ + "."
        if not fullname.startswith(prefix) or fullname[len(prefix) :] not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = f"{__name__}.{MOVED[spec.name[len(__name__) + 1 :]]}"
        warnings.warn(
            f"{spec.name} moved to {new}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(new)
        module.__dict__.setdefault("_spec_at_home", module.__spec__)
        return module

    def exec_module(self, module):
        # already executed at its new path; importlib set the old name's spec on it
        module.__spec__ = module._spec_at_home


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())
