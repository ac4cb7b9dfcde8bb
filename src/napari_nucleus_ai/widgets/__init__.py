"""Thin napari docks. Each gathers parameters, runs a core generator through
``_worker.start_work`` and turns the result into layers. No science here."""
