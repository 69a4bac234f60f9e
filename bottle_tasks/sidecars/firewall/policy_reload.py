"""The policy: loaded from the ``bottle_policy`` option; SIGHUP re-reads it.

A reload that fails (unreadable, invalid) keeps the policy in force and says why in the
audit log; the controller waits for that ``policy-reload`` line to know the verdict. A
reload that succeeds closes the open connections the new policy no longer allows.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from mitmproxy import ctx, exceptions, version

from . import policy as policy_mod
from .flowstate import Concern

logger = logging.getLogger("bottle.firewall")
# How long after the ready line (or a reload) the scanner is prepared: after the line is
# written, so the controller waiting for it does not also wait for the ~25 ms this takes.
PREPARE_SCANNER_AFTER = 0.05


class PolicyAddon(Concern):
    """Loads the policy named by the ``bottle_policy`` option; reloads it on SIGHUP."""

    _loop: asyncio.AbstractEventLoop | None = None

    def load(self, loader):
        loader.add_option(
            "bottle_policy",
            str,
            "",
            "Path of the bottle firewall policy (JSON). Without a policy every request is refused.",
        )

    def configure(self, updated):
        if "bottle_policy" in updated and ctx.options.bottle_policy:
            path = ctx.options.bottle_policy
            try:
                self.fw.set_policy(policy_mod.load(path))
            except policy_mod.PolicyError as e:
                raise exceptions.OptionsError(f"invalid firewall policy {path}: {e}") from None

    def running(self):
        try:
            self._loop = asyncio.get_running_loop()
            self._loop.add_signal_handler(signal.SIGHUP, self.reload)
        except (NotImplementedError, RuntimeError, ValueError) as e:  # not the main thread, or no signals
            self._loop = None
            logger.warning("bottle firewall: cannot install the SIGHUP reload handler: %s", e)
        self._apply_timeouts()
        pol = self.fw.policy
        listen = []
        if (ps := ctx.master.addons.get("proxyserver")) is not None:
            try:
                listen = [f"{a[0]}:{a[1]}" for a in ps.listen_addrs()]
            except Exception:  # noqa: BLE001 - the ready line is informational; never fail on it
                listen = []
        self.fw.audit.event(
            "ready",
            bottle=pol.bottle if pol else None,
            listen=listen,
            mitmproxy=version.VERSION,
            allow=len(pol.allow) if pol else 0,
            policy=ctx.options.bottle_policy or None,
        )
        self._prepare_scanner_soon()

    def _prepare_scanner_soon(self) -> None:
        """The scanner's first body scan builds its prefilter; do it while nothing waits."""
        try:
            asyncio.get_running_loop().call_later(PREPARE_SCANNER_AFTER, self.fw.scanner.prepare)
        except RuntimeError:  # no loop (a test calling the hook): the first scan builds it
            pass

    def done(self):
        if self._loop is not None:
            try:
                self._loop.remove_signal_handler(signal.SIGHUP)
            except (ValueError, RuntimeError, NotImplementedError):  # the loop is closing already
                pass
            self._loop = None

    def _apply_timeouts(self) -> None:
        pol = self.fw.policy
        if pol is not None and ctx.options.tcp_timeout != pol.idle_timeout:
            ctx.options.update(tcp_timeout=pol.idle_timeout)

    def reload(self) -> bool:
        """Re-read the policy file. On any problem keep the current policy and say why."""
        path = ctx.options.bottle_policy
        try:
            if not path:
                raise policy_mod.PolicyError(["no policy file configured (option bottle_policy)"])
            new = policy_mod.load(path)
        except policy_mod.PolicyError as e:
            self.fw.audit.event("policy-reload", ok=False, policy=path, reason=f"{e}; kept the previous policy")
            return False
        except Exception as e:  # noqa: BLE001 - keep the old policy whatever went wrong
            self.fw.audit.event(
                "policy-reload", ok=False, policy=path, reason=f"{type(e).__name__}; kept the previous policy"
            )
            return False
        self.fw.set_policy(new)
        try:
            self._apply_timeouts()
        except Exception as e:  # noqa: BLE001
            logger.warning("bottle firewall: could not apply idle_timeout: %s", e)
        closed = self.fw.revoke()
        self.fw.audit.event(
            "policy-reload",
            ok=True,
            policy=path,
            bottle=new.bottle,
            allow=len(new.allow),
            passthrough=len(new.passthrough),
            closed=closed,
        )
        self._prepare_scanner_soon()
        return True
