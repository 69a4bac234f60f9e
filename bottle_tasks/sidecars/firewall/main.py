"""Start mitmproxy with the firewall addons: ``python -m firewall.main``.

A launcher of our own rather than ``mitmdump -s``: mitmdump prints its log to
stdout, and stdout is reserved for the audit log (one JSON object per line).
Here mitmproxy's own log goes to stderr at warning level, and there is no flow
dumper at all. The entrypoint prepares the writable files in /tmp first.

Only the mitmproxy addons the firewall uses are loaded (``MITMPROXY_ADDONS``), not all
35 of mitmdump's: mitmproxy offers every hook of every request to every addon, so each
inert one (replay, save, map-local, sticky cookies, ...) costs time on every request.
And nothing below warning level is even created as a log record: with the root logger
at DEBUG (as mitmdump sets it) each of mitmproxy's per-connection debug messages is
formatted and re-dispatched to every addon as a (deprecated) ``add_log`` event.

Exit codes: 0 clean stop, 1 mitmproxy failed, 74 stdout (the audit log) cannot be written,
78 bad configuration (policy, CA).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import warnings

EX_CONFIG = 78
EX_IOERR = 74  # stdout, the audit log, cannot be written
# mitmproxy's log goes to stderr at this level and above; lower records are never created.
LOG_LEVEL = "warn"

# The mitmproxy addons the firewall runs with, in mitmdump's order (module, class).
MITMPROXY_ADDONS = (
    ("core", "Core"),  # option checks, the `set` command
    ("block", "Block"),  # block_global: only private clients are served
    ("strip_dns_https_records", "StripDnsHttpsRecords"),
    ("disable_h2c", "DisableH2C"),  # strips h2c upgrades, kills cleartext HTTP/2 prior knowledge
    ("proxyserver", "Proxyserver"),
    ("dns_resolver", "DnsResolver"),
    ("next_layer", "NextLayer"),
    ("tlsconfig", "TlsConfig"),  # interception certificates, upstream verification
    ("upstream_auth", "UpstreamAuth"),
    ("update_alt_svc", "UpdateAltSvc"),
    ("errorcheck", "ErrorCheck"),  # exit on errors logged during startup
)
# mitmdump's other addons. Each does nothing unless an option enables it, and the launcher
# sets none of those options (nor can anyone else: there is no --set), so they are left out.
# A mitmproxy upgrade that adds a default addon fails tests/firewall until it is sorted here.
LEFT_OUT = frozenset({
    "Browser", "BlockList", "AntiCache", "AntiComp", "ClientPlayback", "CommandHistory", "Comment",
    "Cut", "Export", "Onboarding", "ProxyAuth", "ScriptLoader", "ServerPlayback", "MapRemote", "MapLocal",
    "ModifyBody", "ModifyHeaders", "StickyAuth", "StickyCookie", "Save", "SaveHar",
    "Dumper", "KeepServing", "ReadFileStdin",
})  # fmt: skip


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bottle-firewall", description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="/etc/bottle/policy.json", help="policy JSON file")
    ap.add_argument("--confdir", required=True, help="writable mitmproxy confdir holding mitmproxy-ca.pem")
    ap.add_argument("--upstream-ca", required=True, help="CA bundle upstream certificates are verified against")
    ap.add_argument("--listen-host", default="", help="address to listen on (default: all)")
    ap.add_argument("--listen-port", type=int, default=3128, help="proxy port (default 3128)")
    return ap.parse_args(argv)


def _die(message: str, code: int = EX_CONFIG) -> int:
    print(f"bottle-firewall: error: {message}", file=sys.stderr, flush=True)
    return code


def _check_files(args: argparse.Namespace) -> str | None:
    """Fail fast, with a readable message, on what mitmproxy would report obscurely."""
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    ca = Path(args.confdir) / "mitmproxy-ca.pem"
    try:
        raw = ca.read_bytes()
    except OSError as e:
        return f"cannot read the firewall CA {ca}: {e.strerror or e}"
    try:
        load_pem_private_key(raw, None)
        x509.load_pem_x509_certificates(raw)
    except ValueError as e:
        return f"{ca} must hold the CA private key (unencrypted PEM) and certificate: {e}"
    try:
        bundle = Path(args.upstream_ca).read_bytes()
    except OSError as e:
        return f"cannot read the upstream CA bundle {args.upstream_ca}: {e.strerror or e}"
    try:
        if b"-----BEGIN" in bundle:
            with warnings.catch_warnings():  # some system roots carry quirks (negative serials)
                warnings.simplefilter("ignore")
                x509.load_pem_x509_certificates(bundle)
    except ValueError as e:
        return f"the upstream CA bundle {args.upstream_ca} (system roots + extra-ca.pem) is not valid PEM: {e}"
    return None


async def _run(args: argparse.Namespace, pol) -> int:
    from mitmproxy import exceptions, options

    from .audit import AuditLog

    opts = options.Options()
    audit = AuditLog(batched=True)
    master = make_master(opts, audit)
    try:
        opts.update(**launcher_options(args, pol))
    except exceptions.OptionsError as e:
        return _die(str(e))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    return await run_logged(master, audit.lines, "bottle-firewall")


async def run_logged(master, lines, prog: str, log: str = "the audit log") -> int:
    """Run `master` while its JSON lines (`jsonlines.JsonLines`; `log` names them to the
    operator) can be written; stop when they cannot (exit 74): a proxy that cannot log must
    not pass requests unlogged."""

    def stop(why: str) -> None:
        print(f"{prog}: error: stdout ({log}) cannot be written ({why}); stopping", file=sys.stderr, flush=True)
        master.shutdown()

    lines.on_broken = stop
    await master.run()
    try:
        lines.flush()  # the last turn's lines
    except (OSError, ValueError):
        pass  # said by `stop`
    return EX_IOERR if lines.broken else 0


def launcher_options(args: argparse.Namespace, pol) -> dict:
    """The mitmproxy options the firewall runs with (everything else keeps its default)."""
    return dict(
        mode=["regular"],
        listen_host=args.listen_host,
        listen_port=args.listen_port,
        confdir=args.confdir,
        ssl_verify_upstream_trusted_ca=args.upstream_ca,
        ssl_insecure=False,
        termlog_verbosity=LOG_LEVEL,
        # an explicit proxy never sees QUIC; keep the surface small.
        http3=False,
        # idle connections (long polls, SSE between events) are closed after this long
        tcp_timeout=pol.idle_timeout,
        bottle_policy=args.policy,
    )


def mitmproxy_addons() -> list:
    """Fresh instances of the mitmproxy addons in ``MITMPROXY_ADDONS``."""
    import importlib

    return [getattr(importlib.import_module(f"mitmproxy.addons.{mod}"), cls)() for mod, cls in MITMPROXY_ADDONS]


def import_addons_lazily() -> None:
    """Register the package ``mitmproxy.addons`` without running its ``__init__``, which
    imports all of mitmdump's addons (flask for the onboarding app, ldap3 for proxy auth, ...):
    about a third of mitmproxy's start-up, and a launch waits for the firewall to listen.
    The modules in ``MITMPROXY_ADDONS`` (and termlog) still import from the package's folder.
    Only in the sidecar's own process, before mitmproxy is imported (tests import it whole)."""
    if "mitmproxy.addons" in sys.modules:
        return
    import importlib.util

    spec = importlib.util.find_spec("mitmproxy.addons")
    if spec is not None:
        sys.modules["mitmproxy.addons"] = importlib.util.module_from_spec(spec)


def make_master(opts, audit=None):
    """A mitmproxy master with the addons above, the stderr log and the firewall (last),
    whose audit log is `audit` (an `AuditLog`; by default one on stdout)."""
    from .addon import Firewall

    return sidecar_master(opts, Firewall(audit=audit))


def sidecar_master(opts, proxy_addon):
    """A sidecar's mitmproxy master, the firewall's or the egress proxy's: its log on stderr at
    ``LOG_LEVEL``, the mitmproxy addons in ``MITMPROXY_ADDONS``, then `proxy_addon` (last), its
    hooks served from a ``hook_table`` and answered within the event that asked for them when
    they finish at once (``prompt_hooks``), and mitmproxy's per-message type check off
    (``debug_checks``)."""
    from mitmproxy.addons import termlog
    from mitmproxy.master import Master

    from . import debug_checks, hook_table, prompt_hooks

    logging.getLogger().setLevel(LOG_LEVEL.upper())  # as TermLog does: "WARN" is a stdlib level name
    for noisy in ("tornado", "asyncio", "hpack", "quic", "urwid"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    master = Master(opts, with_termlog=False)
    master.addons.add(termlog.TermLog(out=sys.stderr))
    master.addons.add(*mitmproxy_addons())
    master.addons.add(proxy_addon)
    hook_table.install(master.addons)
    prompt_hooks.install()
    debug_checks.install()
    return master


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    import_addons_lazily()
    from . import policy

    try:
        pol = policy.load(args.policy)
    except policy.PolicyError as e:
        return _die(f"invalid policy {args.policy}: {e}")
    problem = _check_files(args)
    if problem:
        return _die(problem)
    try:
        return asyncio.run(_run(args, pol))
    except KeyboardInterrupt:  # pragma: no cover
        return 0


if __name__ == "__main__":
    sys.exit(main())
