"""Models: device selection, model packages, architectures (torch is imported lazily)."""
