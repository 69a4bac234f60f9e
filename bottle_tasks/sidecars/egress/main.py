"""Start mitmproxy with the egress addon: ``python -m egress.main``.

Like the firewall's launcher (only the mitmproxy addons it needs, its log on stderr,
stdout for its JSON lines), with two differences: it never connects at CONNECT time
(``connection_strategy=lazy``: the tunnel's host is not reachable from here, and the
server it talks to is always the firewall), and it mints the agent-facing certificates
from the client's SNI alone (``upstream_cert=False``).

Exit codes: 0 clean stop, 1 mitmproxy failed, 74 stdout (its decision lines) cannot be
written, 78 bad configuration (routes, secrets, CA).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

EX_CONFIG = 78


def _args(argv):
    ap = argparse.ArgumentParser(prog="bottle-egress", description=__doc__.splitlines()[0])
    ap.add_argument("--routes", required=True, help="routes JSON file")
    ap.add_argument("--secrets", default="", help="secrets JSON file (name -> value)")
    ap.add_argument("--policy", default="", help="the firewall's policy JSON (tunnels it accepts are relayed)")
    ap.add_argument("--confdir", required=True, help="writable mitmproxy confdir holding mitmproxy-ca.pem")
    ap.add_argument("--firewall", default="firewall:3128", help="host:port of the bottle's firewall")
    ap.add_argument("--listen-port", type=int, default=8080)
    return ap.parse_args(argv)


async def _run(args) -> int:
    from firewall import main as firewall_main
    from mitmproxy import exceptions, options

    from . import addon

    opts = options.Options()
    master = firewall_main.sidecar_master(opts, addon.Egress())
    addon.LINES.batched = True
    try:
        opts.update(
            mode=["regular"], listen_port=args.listen_port, confdir=args.confdir,
            termlog_verbosity=firewall_main.LOG_LEVEL, http3=False, connection_strategy="lazy", upstream_cert=False,
            bottle_firewall=args.firewall, bottle_secrets=args.secrets, bottle_routes=args.routes,
            bottle_policy=args.policy,
        )
    except exceptions.OptionsError as e:
        print(f"bottle-egress: error: {e}", file=sys.stderr, flush=True)
        return EX_CONFIG
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    return await firewall_main.run_logged(master, addon.LINES, "bottle-egress", "the log of its decisions")


def main(argv=None) -> int:
    from firewall.main import import_addons_lazily

    args = _args(argv)
    import_addons_lazily()
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
