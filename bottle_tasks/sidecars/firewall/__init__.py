"""bottle's firewall sidecar: a mitmproxy addon that runs INSIDE the firewall image.

Modules, one concern each: ``hosts`` (names, allowlist patterns), ``policy`` (the
strict policy.json schema), ``ssrf`` (address checks, resolver), ``dlp`` (secret
rules, scanning, redaction), ``audit`` (JSON lines on stdout), ``failclosed``
(hook wrapper), ``addon`` (the mitmproxy addon classes), ``main`` (launcher).
In the image this directory is /opt/bottle/firewall, imported as ``firewall``.
"""
