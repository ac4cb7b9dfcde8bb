"""The networks a model card can name.

- :mod:`.registry`: :data:`ARCHS` and :func:`build_architecture`, the one builder.
- :mod:`.cnn`: ``smallcnn`` and ``hybrid`` (CNN + colour/texture descriptor).
- :mod:`.morph`: ``morph`` -- the morphology descriptor (:mod:`.morphology`) and frozen
  ImageNet features (:mod:`.imagenet`) with closed-form logistic heads.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "registry": ["ARCHS", "DEFAULT_PARAMS", "build_architecture"],
    },
)
