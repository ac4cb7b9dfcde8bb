"""napari-nucleus-ai: published cell-AI methods at the microscope.

Importing the package is cheap on purpose: no torch, no Qt, no napari.
"""

__version__ = "0.1.0"
