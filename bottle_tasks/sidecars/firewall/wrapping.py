"""The mitmproxy methods the firewall's bounds replace (``mitm_limits``, ``h2_limits``): each
replaced once per process, its original kept here for the replacement to call."""

from __future__ import annotations

_originals: dict[str, object] = {}


def wrap(cls, name: str, replacement) -> None:
    key = f"{cls.__name__}.{name}"
    _originals[key] = getattr(cls, name)
    setattr(cls, name, replacement)


def original(cls, name: str):
    return _originals[f"{cls.__name__}.{name}"]


def done() -> bool:
    """Whether the bounds are installed already."""
    return bool(_originals)
