# bottle egress proxy sidecar: mitmproxy + the egress addon (bottle_tasks/sidecars/egress),
# which reuses parts of the firewall package. The first layers are the firewall image's
# (same base, same pinned requirements): Docker's build cache shares them.
#
# Build context (a temp dir made by the `build` step):
#   packages/egress/, packages/firewall/   copies of bottle_tasks/sidecars/<name>/
#   extra-ca.pem   extra CA bundle to trust, possibly empty
# Build arg BASE_IMAGE: mitmproxy >= 12 needs Python >= 3.12, hence trixie (3.13).
# Legacy builder compatible (no BuildKit syntax).
#
# Run (see entrypoint.sh): --user <uid>:<gid> --read-only --tmpfs /tmp --cap-drop ALL
#   --security-opt no-new-privileges -v <stage>/egress:/etc/bottle:ro ; listens on 8080.
ARG BASE_IMAGE=debian:trixie-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# apt talks plain http to the Debian mirror (signed indexes), so it needs no extra CA.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*

# pip does use TLS, possibly through an intercepting proxy: trust the system roots plus
# extra-ca.pem for this step only (the image's own bundle stays pristine; at run time the
# entrypoint adds the bottle's extra-ca.pem for upstream verification).
# Every dependency is pinned in requirements.txt, wheels only (no compiler in the image).
COPY extra-ca.pem /tmp/bottle-build/extra-ca.pem
COPY packages/firewall/requirements.txt /tmp/bottle-build/requirements.txt
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
    find /opt/bottle/egress /opt/bottle/firewall -name __pycache__ -prune -exec rm -rf {} +; \
    chmod -R a+rX,go-w /opt/bottle/egress /opt/bottle/firewall; \
    chmod 0755 /opt/bottle/egress/entrypoint.sh; \
    /opt/bottle/venv/bin/python -m compileall -q /opt/bottle/egress /opt/bottle/firewall; \
    cd /opt/bottle && /opt/bottle/venv/bin/python -c "import egress.addon, egress.main"

ENV PYTHONPATH=/opt/bottle
WORKDIR /tmp
USER 65534:65534
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/opt/bottle/venv/bin/python", "/opt/bottle/firewall/healthcheck.py", "8080"]
ENTRYPOINT ["/opt/bottle/egress/entrypoint.sh"]
