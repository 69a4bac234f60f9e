"""Start mitmproxy with the firewall addons: ``python -m firewall.main``.

A launcher of our own rather than ``mitmdump -s``: mitmdump prints its log to
stdout, and stdout is reserved for the audit log (one JSON object per line).
Here mitmproxy's own log goes to stderr at warning level, and there is no flow
dumper at all. The entrypoint prepares the writable files in /tmp first.

Exit codes: 0 clean stop, 1 mitmproxy failed, 78 bad configuration (policy, CA).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import warnings

EX_CONFIG = 78


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
    from mitmproxy.addons import termlog
    from mitmproxy.tools.dump import DumpMaster

    from .addon import Firewall

    logging.getLogger().setLevel(logging.DEBUG)
    for noisy in ("tornado", "asyncio", "hpack", "quic", "urwid"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    opts = options.Options()
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    master.addons.add(termlog.TermLog(out=sys.stderr))
    master.addons.add(Firewall())
    try:
        opts.update(
            mode=["regular"],
            listen_host=args.listen_host,
            listen_port=args.listen_port,
            confdir=args.confdir,
            ssl_verify_upstream_trusted_ca=args.upstream_ca,
            ssl_insecure=False,
            termlog_verbosity="warn",
            # mitm.it would be answered locally, and there is nothing to onboard.
            onboarding=False,
            # an explicit proxy never sees QUIC; keep the surface small.
            http3=False,
            # idle connections (long polls, SSE between events) are closed after this long
            tcp_timeout=pol.idle_timeout,
            bottle_policy=args.policy,
        )
    except exceptions.OptionsError as e:
        return _die(str(e))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    await master.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
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
