"""mitmproxy's type check of every request and response it makes, which only debugging needs.

``mitmproxy.http.MessageData`` checks, field by field, the type of everything a request or a
response is made with (``typecheck.check_option_type``, through ``typing`` introspection):
about 5 % of the firewall's samples under load (py-spy), as much as its DLP of the headers;
turned off, the firewall served 7-18 % more requests a second (A/B, interleaved rounds).
mitmproxy defines that check under ``if __debug__``: it is a debugging aid, left out when
Python runs optimised. The sidecars do not run optimised, because ``-O`` would also drop
every ``assert`` (mitmproxy's checks of its own invariants, and ours). So this one check is
turned off alone. What it checked is made by mitmproxy's own parsers and by
``Response.make``, not by the agent.
"""

from __future__ import annotations

from mitmproxy import http


def _unchecked(self) -> None:
    """The dataclass ``__init__`` calls ``__post_init__``; it now does nothing."""


def install() -> None:
    http.MessageData.__post_init__ = _unchecked
