"""The networks a model card can name.

- :mod:`.registry`: :data:`ARCHS` and :func:`build_architecture`, the one builder.
- :mod:`.cnn`: ``smallcnn`` and ``hybrid`` (CNN + colour/texture descriptor), the
  classes :class:`~.cnn.SmallCNN` and :class:`~.cnn.Hybrid`.
- :mod:`.morph`: ``morph`` -- the morphology descriptor (:mod:`.morphology`) and frozen
  ImageNet features (:mod:`.imagenet`) with closed-form logistic heads, the class
  :class:`~.morph.Morph`; its defaults in :mod:`.morph_params`.

:mod:`.cnn` and :mod:`.morph` import torch at their top, so only the builders import
them (inside :func:`~.registry.build_architecture`); the rest stays cheap to import.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "registry": ["ARCHS", "DEFAULT_PARAMS", "build_architecture"],
    },
)
