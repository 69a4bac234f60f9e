"""`--on HOST`: the host's key is checked against the known_hosts files ssh's config names,
never accepted whatever it is (Fabric's own default). The end to end refusals, against a
real sshd, are in tests/engine/test_remote.py."""
from __future__ import annotations

import shutil

import pytest
from helpers import missing

from bottle_tasks import sshconfig


def test_the_known_hosts_files_are_the_ones_ssh_names():
    host = sshconfig.parse("hostname h\nuserknownhostsfile /a/known_hosts ~/b\nglobalknownhostsfile none\n")
    assert host.known_hosts_files[0] == "/a/known_hosts" and len(host.known_hosts_files) == 2
    assert not host.known_hosts_files[1].startswith("~")


@pytest.mark.parametrize(("setting", "accepts"), [("ask", False), ("yes", False), ("accept-new", False),
                                                  ("no", True), ("off", True)])
def test_only_strict_host_key_checking_no_accepts_an_unknown_key(setting, accepts):
    assert sshconfig.parse(f"hostname h\nstricthostkeychecking {setting}\n").accepts_unknown_keys is accepts


def test_a_connection_refuses_an_unknown_host_and_knows_the_recorded_keys(tmp_path, monkeypatch):
    from paramiko import AutoAddPolicy

    if not shutil.which("ssh"):
        missing("needs the OpenSSH client (openssh-client, which openssh-server brings)")
    recorded = "[192.0.2.7]:2022 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKo3iFAUgOqIn0k7rwJ1WoG8W4BrC4zRUnPZ+S8fLyzH\n"
    (tmp_path / "known_hosts").write_text(recorded)
    (tmp_path / "config").write_text(f"Host box\n  HostName 192.0.2.7\n  Port 2022\n"
                                     f"  UserKnownHostsFile {tmp_path}/known_hosts\n  GlobalKnownHostsFile none\n")
    monkeypatch.setenv("BOTTLE_SSH_CONFIG", str(tmp_path / "config"))
    client = sshconfig.connection("box").client
    assert not isinstance(client._policy, AutoAddPolicy)
    assert client.get_host_keys().lookup("[192.0.2.7]:2022") is None  # nothing recorded by paramiko itself
    assert client._system_host_keys.lookup("[192.0.2.7]:2022") is not None


def test_without_an_openssh_client_every_proxyjump_hop_is_key_checked(tmp_path, monkeypatch):
    """Fabric reads ~/.ssh/config itself then, and makes each ProxyJump hop a Connection of its
    own, with its accept-anything policy: the jump host's key was never checked."""
    from paramiko import AutoAddPolicy

    monkeypatch.setattr(sshconfig.shutil, "which", lambda name: None)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host box\n  HostName 192.0.2.7\n  ProxyJump jump1\n"
                                              "Host jump1\n  HostName 192.0.2.8\n  ProxyJump jump2\n"
                                              "Host jump2\n  HostName 192.0.2.9\n")
    connection = sshconfig.connection("box")
    hops = []
    while connection is not None and not isinstance(connection, str):
        hops.append((connection.host, connection.client._policy))
        connection = connection.gateway
    assert [host for host, _ in hops] == ["192.0.2.7", "192.0.2.8", "192.0.2.9"]
    assert not any(isinstance(policy, AutoAddPolicy) for _, policy in hops), hops
