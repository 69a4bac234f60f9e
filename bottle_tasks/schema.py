"""Strict reading of YAML documents: a loader that refuses ambiguity, and typed
getters that name the exact field and say how to fix it.

Nothing here knows what a bottle is; `manifest.py` holds the rules.
"""
from __future__ import annotations

import difflib
import re
from types import MappingProxyType
from typing import Any

import yaml


class Invalid(Exception):
    """One wrong field. `manifest.load` adds the file path and turns it into a ManifestError."""

    def __init__(self, field: str, problem: str, fix: str):
        super().__init__(f"{field}: {problem} — {fix}")
        self.field = field
        self.message = f"{problem} — {fix}"


# --- YAML -------------------------------------------------------------------

_BOOL = "tag:yaml.org,2002:bool"


# Manifests are a few KiB; this bounds the work a hostile one can cause before validation.
MAX_MANIFEST_BYTES = 1024 * 1024
# How deep a manifest may nest: real ones stay under 10; Python's own recursion ends near 1000.
MAX_DEPTH = 50


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with the traps removed.

    YAML 1.1 reads `off`/`no`/`on`/`yes` as booleans, so `action: off` would
    arrive as False; only true/false are booleans here. A repeated key would
    silently replace the first one (a second `network:` dropping the first), so
    duplicate keys are an error. Aliases (`*name`) are refused: a few lines of them
    expand to billions of nodes (the "billion laughs"), and a manifest needs none.
    Nesting is capped at MAX_DEPTH, before Python's recursion limit is.
    """

    _depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML alias *{event.anchor} (aliases are not accepted in a manifest)", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class DuplicateKey(yaml.constructor.ConstructorError):
    pass


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # with no aliases, a merge can only hide a key
            raise yaml.constructor.ConstructorError(
                None, None, "a merge key `<<:` (not accepted: its fields would silently give way to the "
                "mapping's own)", key_node.start_mark)
        if not isinstance(key_node, yaml.ScalarNode):  # `{[a]: 1}`, `{{}: 1}`: unhashable, and never meant
            raise yaml.constructor.ConstructorError(None, None, "a key must be a plain name, not a list or a mapping",
                                                    key_node.start_mark)
        key = key_node.value
        if key in seen:
            raise DuplicateKey(
                None, None, f"duplicate key {key!r} (the second would silently replace the first)",
                key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def has_control(text: str, allowed: str = "") -> bool:
    """Does `text` hold a C0 control character (a line break among them) or DEL, but those in `allowed`?"""
    return any((ord(ch) < 32 or ord(ch) == 127) and ch not in allowed for ch in text)


def parse_yaml(text: str, line_offset: int = 0) -> Any:
    """Parse one YAML document; syntax errors become Invalid naming the line."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader
    except DuplicateKey as e:
        line = e.problem_mark.line + 1 + line_offset if e.problem_mark else "?"
        raise Invalid(f"line {line}", e.problem or "duplicate key",
                      "keep one of the two, with the fields of both merged into it") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1 + line_offset}" if mark else "(yaml)"
        problem = e.problem or "invalid YAML"
        if e.context and e.context_mark:  # e.g. "while parsing a flow sequence" that began earlier
            problem += f" ({e.context} started at line {e.context_mark.line + 1 + line_offset})"
        raise Invalid(where, f"YAML syntax error: {problem}",
                      "fix the YAML at that line (indentation, a missing ':' or an unquoted special character)") from None
    except yaml.YAMLError as e:
        raise Invalid("(yaml)", f"YAML error: {e}", "fix the YAML syntax") from None
    except ValueError as e:  # an integer of more digits than Python converts
        raise Invalid("(yaml)", f"a value YAML cannot read: {e}", "quote it, or shorten it") from None


# --- field paths ------------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_path(at: str, key: Any) -> str:
    """`agents.demo` + `network` -> `agents.demo.network`; keys with dots get brackets."""
    text = str(key)
    part = text if _PLAIN_KEY.fullmatch(text) else f"[{text!r}]"
    if not at:
        return part
    return f"{at}{part}" if part.startswith("[") else f"{at}.{part}"


def index_path(at: str, i: int) -> str:
    return f"{at}[{i}]"


# --- typed getters ------------------------------------------------------------

def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def mapping(value: Any, at: str, allowed: tuple[str, ...] | None = None) -> dict:
    """A mapping (null reads as empty) whose keys, if `allowed` is given, are all known."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(at, f"expected a mapping (key: value lines), got {_kind(value)}",
                      "write `key: value` lines here, indented under the key")
    for key in value:
        if not isinstance(key, str):
            raise Invalid(key_path(at, key), f"keys must be strings, got {_kind(key)}", "quote the key")
        if allowed is not None and key not in allowed:
            raise unknown_key(at, key, allowed)
    return value


def unknown_key(at: str, key: str, allowed: tuple[str, ...]) -> Invalid:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return Invalid(key_path(at, key), f"unknown key '{key}' (a typo must never silently weaken a policy)",
                   f"{hint}allowed keys here: {', '.join(allowed)}")


def string(value: Any, at: str, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise Invalid(at, f"expected a string, got {_kind(value)}", 'quote the value, e.g. "…"')
    if not empty_ok and not value.strip():
        raise Invalid(at, "must not be empty", "give a value or remove the key")
    return value


def optional_string(value: Any, at: str) -> str | None:
    return None if value is None else string(value, at)


def boolean(value: Any, at: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(at, f"expected true or false, got {_kind(value)}", "write true or false")
    return value


def integer(value: Any, at: str, minimum: int, maximum: int | None = None) -> int:
    # bool is an int in Python; `pids: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(at, f"expected a whole number, got {_kind(value)}", f"write a number >= {minimum}")
    if value < minimum:
        raise Invalid(at, f"must be at least {minimum}, got {value}", f"write a number >= {minimum}")
    if maximum is not None and value > maximum:
        raise Invalid(at, f"must be at most {maximum}, got {value}", f"write a number from {minimum} to {maximum}")
    return value


def number(value: Any, at: str, maximum: float = 1e6) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(at, f"expected a number, got {_kind(value)}", "write a number such as 1.5")
    if not 0 < value <= maximum:  # also refuses .inf and .nan
        raise Invalid(at, f"must be greater than 0 and at most {maximum:g}, got {value}",
                      "write a positive number such as 1.5")
    return float(value)


LIST_FIX = "write a list, e.g. [a, b] or one '- item' per line"


def string_list(value: Any, at: str) -> tuple[str, ...]:
    """A list of strings (null reads as empty); a lone string is a mistake, not a list of one."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Invalid(at, f"expected a list, got {_kind(value)}", LIST_FIX)
    return tuple(string(item, index_path(at, i)) for i, item in enumerate(value))


def items(value: Any, at: str) -> list[tuple[str, Any]]:
    """(field path, item) for each entry of a list (null reads as empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(at, f"expected a list, got {_kind(value)}", LIST_FIX)
    return [(index_path(at, i), item) for i, item in enumerate(value)]


def one_of(value: Any, at: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise Invalid(at, f"must be one of {' | '.join(choices)}, got {_kind(value)}",
                      f"write one of: {', '.join(choices)}")
    return value


def freeze(value: Any) -> Any:
    """Deep read-only copy: dicts become mappingproxies, lists become tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain dicts and lists again, e.g. for json.dumps of mcp_servers."""
    if isinstance(value, MappingProxyType | dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value
