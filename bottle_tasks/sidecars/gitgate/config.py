"""The gate's files in /etc/bottle (the stage dir's gitgate/, read-only), and where it keeps
its mirrors. Read per request: small files, and a reload needs no signal."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .remotes import Remote

CONF_DIR = Path(os.environ.get("BOTTLE_GITGATE_CONF", "/etc/bottle"))
RUN_DIR = Path(os.environ.get("BOTTLE_GITGATE_RUN", "/tmp/gitgate"))
MIRRORS = RUN_DIR / "mirrors"
MAX_CONFIG_BYTES = 1 << 20


def _read_json(name: str) -> dict:
    with open(CONF_DIR / name, "rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ValueError(f"{name} is larger than {MAX_CONFIG_BYTES} bytes")
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError(f"{name} is not a JSON object")
    return doc


def remotes() -> dict[str, Remote]:
    doc = _read_json("gitgate.json")
    return {r["name"]: Remote.from_json(r) for r in doc["remotes"]}


def firewall() -> str:
    return str(_read_json("gitgate.json").get("firewall", "firewall:3128"))


def secret(name: str) -> str | None:
    value = _read_json("secrets.json").get(name)
    return value if isinstance(value, str) and value else None


def mirror(name: str) -> Path:
    return MIRRORS / f"{name}.git"
