"""What a model is and how it computes: cards, packages, kinds, crop geometry, inference, trust.

- :mod:`.card`, :mod:`.package`, :mod:`.kinds`: card JSON + safetensors, folder/zip, model kinds.
- :mod:`.framing`: the one crop geometry; :mod:`.crops`, :mod:`.inputs`: crops and network inputs.
- :mod:`.engine`, :mod:`.uncertainty`, :mod:`.trust`: forward passes; uncertainty; conformal
  sets, the domain-shift score and input checks.
- :mod:`.nets`, :mod:`.diffusion`, :mod:`.bioimageio`: networks, the generative classifier,
  bioimage.io export and import.

torch is imported only where a network is built or run.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "card": ["validate_card"],
        "package": ["ModelPackage", "as_package", "load_model", "save_model"],
        "kinds": ["Kind", "get_kind", "register_kind"],
    },
)
