"""Localizations family (to be filled in by its issue): sniff / describe / read_layers."""

from __future__ import annotations


def sniff(path) -> bool:
    return False


def describe(path) -> dict:
    raise NotImplementedError


def read_layers(path, **options) -> list:
    raise NotImplementedError
