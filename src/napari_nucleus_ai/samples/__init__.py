"""Deterministic simulators for sample data, demos and tests (no downloads)."""
