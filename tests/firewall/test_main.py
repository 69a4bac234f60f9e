"""The launcher's mitmproxy setup (firewall.main): which mitmproxy addons run, and at which
log level. The live tests (test_live.py) run the launcher itself; these pin down the choices."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from firewall import debug_checks, main, policy
from firewall.addon import Firewall
from fwtest import policy_doc
from mitmproxy import options
from mitmproxy.addons import default_addons, dumper, errorcheck, keepserving, readfile

# What the firewall cannot do without: if one of these went missing, traffic would still
# flow, with a check fewer.
REQUIRED = {"Core", "Block", "DisableH2C", "Proxyserver", "NextLayer", "TlsConfig", "ErrorCheck"}


def build_master():
    async def make():
        opts = options.Options()
        return opts, main.make_master(opts)

    return asyncio.run(make())


def names(addons) -> set[str]:
    return {type(a).__name__ for a in addons}


def test_every_mitmdump_addon_is_kept_or_knowingly_left_out(root_logger):
    mitmdump = names(default_addons()) | names(
        [dumper.Dumper(), keepserving.KeepServing(), readfile.ReadFileStdin(), errorcheck.ErrorCheck()]
    )
    kept = {cls for _, cls in main.MITMPROXY_ADDONS}
    assert not kept & main.LEFT_OUT
    # a new mitmproxy that adds (or renames) a default addon lands here: decide, then list it
    assert kept | main.LEFT_OUT == mitmdump
    assert REQUIRED <= kept


def test_master_runs_the_kept_addons_and_the_firewall_last(root_logger):
    _, master = build_master()
    chain = master.addons.chain
    running = names(chain)
    assert REQUIRED <= running
    assert {cls for _, cls in main.MITMPROXY_ADDONS} <= running
    assert not running & main.LEFT_OUT
    assert isinstance(chain[-1], Firewall), "the firewall's hooks run after mitmproxy's own"
    assert len([a for a in chain if isinstance(a, Firewall)]) == 1


def test_every_option_the_launcher_sets_exists(root_logger, tmp_path):
    opts, _ = build_master()
    (tmp_path / "policy.json").write_text(json.dumps(policy_doc()))
    args = main._args(["--policy", str(tmp_path / "policy.json"), "--confdir", str(tmp_path), "--upstream-ca", "x"])
    wanted = main.launcher_options(args, policy.load(tmp_path / "policy.json"))
    missing = [k for k in wanted if k not in opts]
    assert not missing, f"options no loaded addon defines: {missing}"
    assert wanted["termlog_verbosity"] == main.LOG_LEVEL and wanted["ssl_insecure"] is False


def test_no_log_record_below_the_printed_level_is_made(root_logger):
    """mitmproxy logs several debug/info lines per connection; below the level TermLog prints,
    they must not even become records (each would be re-dispatched to every addon)."""
    build_master()
    server_log = logging.getLogger("mitmproxy.proxy.server")
    assert main.LOG_LEVEL == "warn"
    assert not server_log.isEnabledFor(logging.INFO)
    assert not server_log.isEnabledFor(logging.DEBUG)
    assert server_log.isEnabledFor(logging.WARNING)
    assert logging.getLogger("bottle.firewall").isEnabledFor(logging.WARNING)


def test_the_launcher_imports_only_the_addons_it_runs():
    """A fresh interpreter, as the sidecar starts: the master is built without the addons left
    out ever being imported (flask, ldap3), and every addon it runs is there."""
    import subprocess
    import sys

    script = (
        "import asyncio, json, sys\n"
        "from firewall import main\n"
        "main.import_addons_lazily()\n"
        "from mitmproxy import options\n"
        "async def make():\n"
        "    return main.make_master(options.Options())\n"
        "master = asyncio.run(make())\n"
        "print(json.dumps([type(a).__name__ for a in master.addons.chain]))\n"
        "print('flask' in sys.modules, 'ldap3' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    running, imported = out.splitlines()
    assert set(json.loads(running)) >= REQUIRED | {"Firewall", "TermLog"}
    assert imported == "False False"


@pytest.mark.parametrize("added, refused", [(b"", False), ("valid", False), (b"-----BEGIN CERTIFICATE-----\nnot base64\n"
                                                                             b"-----END CERTIFICATE-----\n", True)])
def test_a_broken_extra_ca_in_the_upstream_bundle_is_named_before_mitmproxy_starts(tmp_path, added, refused):
    """The image's roots plus what extra-ca.pem adds: a broken addition stops the firewall with
    a message naming the bundle (exit 78), not mitmproxy's own obscure failure."""
    from argparse import Namespace
    from pathlib import Path

    from test_live import make_ca, pem_cert, pem_key

    key, cert = make_ca("bottle test firewall CA")
    (tmp_path / "mitmproxy-ca.pem").write_bytes(pem_key(key) + pem_cert(cert))
    extra = pem_cert(make_ca("extra CA")[1]) if added == "valid" else added
    bundle = tmp_path / "upstream-ca.pem"
    bundle.write_bytes(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes() + b"\n" + extra)
    problem = main._check_files(Namespace(confdir=str(tmp_path), upstream_ca=str(bundle)))
    assert (problem is not None and "not valid PEM" in problem and str(bundle) in problem) == refused, problem


def test_only_mitmproxys_message_type_check_is_off_and_asserts_still_run(root_logger):
    """The launcher drops mitmproxy's per-message type check (a debugging aid under
    ``__debug__``, about 5 % of the firewall's time), not the interpreter's asserts."""
    from mitmproxy import http

    build_master()
    assert __debug__, "the sidecars run without -O: mitmproxy's asserts and ours stay"
    assert http.MessageData.__post_init__ is debug_checks._unchecked
    request = http.Request.make("GET", "https://example.test/x", b"", {"a": "b"})
    assert request.headers["a"] == "b" and request.raw_content == b""
