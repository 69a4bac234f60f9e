# Test image: the firewall image plus pytest (and pytest-asyncio) and tests/firewall, to run the addon unit tests
# where mitmproxy lives. Built by tests/firewall/run_in_image.py; context:
#   tests/        copy of tests/firewall/
#   extra-ca.pem  extra CA bundle for pip (possibly empty)
ARG FIREWALL_IMAGE
FROM ${FIREWALL_IMAGE}
USER root
COPY extra-ca.pem /tmp/bottle-test/extra-ca.pem
RUN set -eu; \
    b=/tmp/bottle-test; \
    { cat /etc/ssl/certs/ca-certificates.crt; echo; cat "$b/extra-ca.pem"; } > "$b/ca.pem"; \
    PIP_CERT="$b/ca.pem" /opt/bottle/venv/bin/pip install --only-binary=:all: "pytest==9.2.0" "pytest-asyncio==1.5.0"; \
    rm -rf "$b"
COPY tests/ /opt/bottle/tests/firewall/
RUN find /opt/bottle/tests -name __pycache__ -prune -exec rm -rf {} +; chmod -R a+rX /opt/bottle/tests
WORKDIR /opt/bottle/tests/firewall
USER 65534:65534
ENV HOME=/tmp
ENTRYPOINT []
CMD ["/opt/bottle/venv/bin/python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", "/opt/bottle/tests/firewall"]
