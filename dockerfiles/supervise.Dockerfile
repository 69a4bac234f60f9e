# bottle supervise sidecar: the MCP server the agent asks through (bottle_tasks/sidecars/
# supervise), with the firewall package for its host grammar. It makes no outbound calls.
#
# Build context (a temp dir made by the `build` step):
#   packages/supervise/, packages/firewall/   copies of bottle_tasks/sidecars/<name>/
#   extra-ca.pem   extra CA bundle to trust (pip through an intercepting proxy), possibly empty
# Legacy builder compatible (no BuildKit syntax).
#
# Run: --user <uid>:<gid> --read-only --tmpfs /tmp --cap-drop ALL --security-opt
#   no-new-privileges -v <stage>/supervise:/etc/bottle:ro ; listens on 9100 (the agent's
#   network only); the operator's control socket is /tmp/bottle-supervise/control.sock.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*

COPY extra-ca.pem /tmp/bottle-build/extra-ca.pem
COPY packages/supervise/requirements.txt /tmp/bottle-build/requirements.txt
RUN set -eu; \
    b=/tmp/bottle-build; \
    { cat /etc/ssl/certs/ca-certificates.crt; echo; cat "$b/extra-ca.pem"; } > "$b/ca.pem"; \
    python3 -m venv /opt/bottle/venv; \
    PIP_CERT="$b/ca.pem" /opt/bottle/venv/bin/pip install --only-binary=:all: -r "$b/requirements.txt" \
      || { echo "pip install failed. Behind a TLS-intercepting proxy? Its CA must be in extra-ca.pem" \
                "(the manifest's trust.extra_ca_bundle)." >&2; exit 1; }; \
    /opt/bottle/venv/bin/pip check; \
    rm -rf "$b"

COPY packages/ /opt/bottle/
RUN set -eu; \
    find /opt/bottle/supervise /opt/bottle/firewall -name __pycache__ -prune -exec rm -rf {} +; \
    chmod -R a+rX,go-w /opt/bottle/supervise /opt/bottle/firewall; \
    /opt/bottle/venv/bin/python -m compileall -q /opt/bottle/supervise /opt/bottle/firewall/hosts.py; \
    cd /opt/bottle && /opt/bottle/venv/bin/python -c "import supervise.main, supervise.server"

ENV PYTHONPATH=/opt/bottle
WORKDIR /tmp
USER 65534:65534
EXPOSE 9100
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/opt/bottle/venv/bin/python", "-m", "supervise.health"]
ENTRYPOINT ["/opt/bottle/venv/bin/python", "-m", "supervise.main", "--config", "/etc/bottle"]
