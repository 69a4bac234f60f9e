"""A state.json of any JSON loads: the parts of the shape bottle writes are kept, the others
left out with one warning naming the file and the fields; and a state the disk will not take
fails as an error that says so, except where a removal is only being forgotten."""
from __future__ import annotations

import errno
import json

import pytest

from bottle_tasks import state as state_module
from bottle_tasks.errors import BottleError
from bottle_tasks.state import State, UndoAction

NETWORK = {"kind": "network", "name": "bottle-demo-net-internal", "step": "net"}


def load(state_home, content: str) -> State:
    path = state_home / "bottle" / "demo" / "state.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    state_module._WARNED.clear()
    return State.load("demo")


@pytest.mark.parametrize("content", ["[]", "null", "7", '"x"'])
def test_a_file_that_is_not_an_object_is_ignored_whole(state_home, capsys, content):
    state = load(state_home, content)
    assert state.data == {"slug": "demo", "resources": {}, "undo": []}
    assert f"{state.path}: ignored the whole file: not a JSON object" in capsys.readouterr().err


def test_only_the_parts_of_the_wrong_shape_are_left_out(state_home, capsys):
    document = {"host": 5, "agent": "demo", "cidr": {"net-internal": "10.0.0.0/24"},
                "resources": {"net-internal": "bottle-demo-net-internal", "agent": ["x"]},
                "undo": [NETWORK, {"kind": "network"}, 7, {**NETWORK, "name": 5}]}
    state = load(state_home, json.dumps(document))
    assert state.data["resources"] == {"net-internal": "bottle-demo-net-internal"}
    assert state.undo_actions() == [UndoAction(**NETWORK)]
    assert "host" not in state.data and state.data["agent"] == "demo" and state.data["cidr"] == document["cidr"]
    err = capsys.readouterr().err
    assert f"{state.path}: ignored fields host, resources, undo: not of the shape bottle writes" in err, err


def test_a_well_formed_file_loads_without_a_word(state_home, capsys):
    state = load(state_home, json.dumps({"host": "local", "resources": {"a": "b"}, "undo": [NETWORK]}))
    assert state.undo_actions() == [UndoAction(**NETWORK)]
    assert capsys.readouterr().err == ""


def full_disk(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_state_the_disk_refuses_is_an_error_naming_the_file(state_home, monkeypatch):
    state = load(state_home, json.dumps({"resources": {}, "undo": []}))
    monkeypatch.setattr(state_module, "write_private", full_disk)
    with pytest.raises(BottleError) as raised:
        state.record("network", "bottle-demo-net-internal", "net-internal", "net")
    assert str(raised.value).startswith(f"could not write {state.path}: No space left on device\n    free space")


def test_forgetting_a_removed_resource_goes_on_when_the_disk_refuses(state_home, monkeypatch):
    state = load(state_home, json.dumps({"resources": {"net-internal": NETWORK["name"]}, "undo": [NETWORK]}))
    monkeypatch.setattr(state_module, "write_private", full_disk)
    state.forget(UndoAction(**NETWORK))  # a rollback goes on to the next removal
    assert state.undo_actions() == [] and state.data["resources"] == {}


def test_a_full_disk_under_a_stage_file_is_said_as_such_not_as_an_internal_error(state_home):
    """A stage file's write (`write_private`: os.write names no file) failing on a full disk."""
    from bottle_tasks.executor import unexpected

    message, code = unexpected(OSError(errno.ENOSPC, "No space left on device"))
    assert code == 1 and "internal error" not in message
    assert message == ("the controller could not write its files: No space left on device\n"
                       f"    free space on that disk (bottle keeps its state and stage files below {state_home}/bottle), "
                       "then run the command again")
    assert unexpected(ValueError("a bug"))[1] == 70


def test_an_internal_errors_traceback_is_kept_for_its_owner_alone(state_home):
    """last-error.log: its message may quote what the operator keeps to themselves."""
    from bottle_tasks.executor import unexpected

    try:
        raise ValueError("a bug, quoting some-private-value")
    except ValueError as exc:
        message, code = unexpected(exc)
    log = state_home / "bottle" / "last-error.log"
    assert code == 70 and str(log) in message
    assert "some-private-value" in log.read_text() and log.stat().st_mode & 0o777 == 0o600


ROUTE = {"host": "api.example.com", "paths": ["/v1/"], "methods": ["POST"],
         "inject": [{"header": "x-api-key", "secret": "API_KEY"}]}
WELL_FORMED = {"policy_changes": {"allow": ["a.example"], "deny": ["b.example"]},
               "route_changes": {"added": [ROUTE], "removed": ["old.example"]},
               "ca": {"firewall": "PEM", "egress": "PEM"}, "cidr": {"net-internal": "10.0.0.0/24"},
               "work_base": {"container": "abc", "commit": "0" * 40}}


def test_recorded_fields_of_the_shape_bottle_writes_read_as_they_are(state_home, capsys):
    state = load(state_home, json.dumps(WELL_FORMED))
    assert all(state.get(key) == value for key, value in WELL_FORMED.items())
    assert state.malformed == {} and capsys.readouterr().err == ""


@pytest.mark.parametrize(("key", "value", "why"), [
    ("policy_changes", "evil.example", "not an object"),
    ("policy_changes", {"deny": "evil.example"}, "deny is not a list of names"),
    ("policy_changes", {"allow": [], "block": []}, "unknown key 'block'"),
    ("route_changes", {"added": [{"host": 5}]}, "added[0].host"),
    ("route_changes", {"added": [{**ROUTE, "inject": [{"header": "x", "secret": "lower case"}]}]}, "secret"),
    ("route_changes", {"removed": "api.example.com"}, "removed is not a list of names"),
    ("ca", ["PEM"], "not an object of names and texts"),
    ("cidr", 7, "not an object of names and texts"),
    ("work_base", {"container": "abc"}, "not {"),
])
def test_a_recorded_field_of_another_shape_is_refused_where_read_naming_file_field_and_fix(
        state_home, key, value, why):
    state = load(state_home, json.dumps({**WELL_FORMED, key: value}))
    with pytest.raises(BottleError) as raised:
        state.get(key)
    assert f"{state.path}: field {key} is not of the shape bottle writes" in raised.value.message
    assert why in raised.value.message and state_module.RECORDED[key][1] in raised.value.detail
    others = [other for other in WELL_FORMED if other != key]
    assert all(state.get(other) == WELL_FORMED[other] for other in others)  # the rest reads as ever


def test_a_misshapen_field_is_never_forgotten_by_a_save_and_a_new_value_mends_it(state_home):
    # Dropped on the way, a `deny` the operator made would be gone from the file at the
    # next save, and the host open again at the next render.
    state = load(state_home, json.dumps({**WELL_FORMED, "policy_changes": {"deny": "evil.example"}}))
    state.record("network", "bottle-demo-net-internal", "net-internal", "net")
    assert json.loads(state.path.read_text())["policy_changes"] == {"deny": "evil.example"}
    assert State.load("demo").malformed == {"policy_changes": "deny is not a list of names"}
    state.set("policy_changes", {"deny": ["evil.example"]})
    assert State.load("demo").get("policy_changes") == {"deny": ["evil.example"]}
