"""Fail closed: an exception in a hook refuses the request instead of letting it through.

mitmproxy logs an addon exception and carries on with the flow, which for a
firewall means "allow". Every firewall hook is wrapped with ``fail_closed``; the
wrapper hands the exception to the owning addon's ``fw.fail(hook, obj, exc)``,
which refuses or kills whatever the hook was deciding about.
"""

from __future__ import annotations

import functools
import inspect


def fail_closed(fn):
    name = fn.__name__

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(self, *args):
            try:
                return await fn(self, *args)
            except Exception as exc:  # noqa: BLE001 - that is the point
                self.fw.fail(name, args[0] if args else None, exc)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(self, *args):
        try:
            return fn(self, *args)
        except Exception as exc:  # noqa: BLE001
            self.fw.fail(name, args[0] if args else None, exc)

    return wrapper
