"""`ca`: mint the bottle's CAs in-process; keys go to the stage dir (0600), never argv or an image."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from invoke import Collection, task

from ..selection import current
from ..stepping import step
from ..undo import record

if TYPE_CHECKING:
    from ..selection import Bottle

# The firewall CA signs what the firewall shows to its clients; the egress CA what
# the egress proxy shows to the agent. Each sidecar holds only its own key.
CAS = ("firewall", "egress")
RENEW_BEFORE = timedelta(days=2)


def fresh(cert_pem: str | None) -> bool:
    if not cert_pem:
        return False
    from cryptography import x509  # here, not at the top: only a launch needs it, not `down`

    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return cert.not_valid_after_utc - datetime.now(timezone.utc) > RENEW_BEFORE


def key_present(bottle: Bottle, path: str) -> bool:
    return bottle.dry or bottle.run(["test", "-s", path], check=False).ok


@task
@step("ca")
def ca(c):
    """Mint the bottle's firewall and egress CAs (in-process, keys 0600 in the stage dir)."""
    from .. import pki

    bottle = current(c)
    certs = dict(bottle.state.get("ca") or {})
    if not bottle.state.resource("stage"):
        # Registered first: the whole stage dir goes on `down`, keys included.
        record(bottle, "stage", bottle.target.stage_dir(bottle.slug), "stage", "ca")
    minted = []
    for name in CAS:
        key_path = bottle.stage(name, "mitmproxy-ca.pem")
        if fresh(certs.get(name)) and key_present(bottle, key_path):
            continue
        pair = pki.mint_ca(f"bottle {bottle.slug} {name} CA")
        # mitmproxy's confdir format: private key and certificate in one file.
        bottle.target.write(key_path, pair.combined_pem)
        certs[name] = pair.cert_pem.decode()
        minted.append(name)
    bottle.state.set("ca", certs)
    return f"minted {', '.join(minted)}" if minted else "CAs present and valid"


ns = Collection(ca)
