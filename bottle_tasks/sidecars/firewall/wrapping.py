"""The mitmproxy methods the sidecars replace (``mitm_limits``, ``h2_limits``, ``prompt_hooks``):
each replaced once per process, its original kept here for the replacement to call."""

from __future__ import annotations

_originals: dict[str, object] = {}


def wrap(cls, name: str, replacement) -> None:
    key = f"{cls.__name__}.{name}"
    _originals[key] = getattr(cls, name)
    setattr(cls, name, replacement)


def original(cls, name: str):
    return _originals[f"{cls.__name__}.{name}"]


def wrapped(cls, name: str) -> bool:
    """Whether `cls.name` is replaced already (each is replaced once: its replacement calls
    the original kept here)."""
    return f"{cls.__name__}.{name}" in _originals
