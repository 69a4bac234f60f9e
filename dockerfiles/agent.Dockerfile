# The agent image: Debian + git/curl/jq + Node.js + npm + Claude Code, run as
# the unprivileged user `agent` (uid 1000) in /workspace.
#
# Build contract (bottle_tasks `build` step; legacy builder, no BuildKit syntax):
#   context   = a temp dir holding only `extra-ca.pem` (an extra CA bundle for
#               TLS-intercepting proxies; may be an EMPTY file)
#   build arg = BASE_IMAGE (default debian:bookworm-slim)
#
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim \
#       -f dockerfiles/agent.Dockerfile <ctx>
#
# Pinned: Claude Code 2.1.332 (verified to install and run `claude --version`).
# Claude Code >= 2.1 ships a native binary (optional dependency
# @anthropic-ai/claude-code-linux-x64, copied over bin/claude.exe by the
# package's postinstall), so Node only has to run that postinstall; the
# package's `engines: node>=22` is advisory (npm warns EBADENGINE) and
# bookworm's Node 18 runs the installer and keeps npm/npx usable for the agent.
#
# npm: Debian's `npm` package drags in ~365 node-* packages (~125 MB installed,
# measured on bookworm with --no-install-recommends). npm itself is one
# self-contained tarball on the npm registry (npm 10.x supports Node
# ^18.17 || >=20.5), so it is fetched once and checked against its published
# sha512 instead.
#
# The extra CA bundle is trusted only by the build's own fetches (curl
# --cacert, NODE_EXTRA_CA_CERTS) and deleted in the same RUN; it never enters
# the image's trust store. At run time `provision` adds the bottle's own CA.

ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ARG CLAUDE_CODE_VERSION=2.1.332
ARG NPM_VERSION=10.9.9
# hex of the registry's dist.integrity for npm@10.9.9
ARG NPM_SHA512=d60fba8cb42f688b81e33c2f1cbef2ad7b977166700ec0ad057f1b6d60ea6ef2524abf673e20c35931cd8305d1dbb8887134d6eefdc0e7b8435bd458bf65b862

LABEL org.opencontainers.image.title="bottle agent" \
      bottle.claude-code.version="${CLAUDE_CODE_VERSION}" \
      bottle.npm.version="${NPM_VERSION}"

ARG DEBIAN_FRONTEND=noninteractive
ENV LANG=C.UTF-8

# OS packages first: this layer does not depend on the CA bundle, so changing
# the bundle does not re-run apt. Docs/man/locales are excluded the way the
# official -slim images do it (a debootstrap-built base lacks that dpkg config).
RUN set -eux; \
    printf '%s\n' \
        'path-exclude /usr/share/doc/*' \
        'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' \
        'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/locale/*' \
        'path-exclude /usr/share/lintian/*' \
        > /etc/dpkg/dpkg.cfg.d/bottle-slim; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        ca-certificates curl git jq less nodejs procps; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log; \
    node --version

# npm goes to /usr/local/lib/node_modules/npm with a builtin npmrc that sets
# prefix=/usr/local (as Debian's npm does), so global installs land there.
# The bundle's bytes stay in this COPY layer underneath (public certificates,
# nothing secret; the legacy builder has no RUN --mount), but /tmp is emptied
# below and no trust store, env var or npm config in the image refers to it.
COPY extra-ca.pem /tmp/extra-ca.pem

RUN set -eux; \
    cat /etc/ssl/certs/ca-certificates.crt /tmp/extra-ca.pem > /tmp/build-ca.pem; \
    curl -fsSL --retry 3 --cacert /tmp/build-ca.pem -o /tmp/npm.tgz \
        "https://registry.npmjs.org/npm/-/npm-${NPM_VERSION}.tgz"; \
    echo "${NPM_SHA512}  /tmp/npm.tgz" | sha512sum -c -; \
    mkdir -p /usr/local/lib/node_modules/npm; \
    tar -xzf /tmp/npm.tgz -C /usr/local/lib/node_modules/npm \
        --strip-components=1 --no-same-owner; \
    echo 'prefix=/usr/local' > /usr/local/lib/node_modules/npm/npmrc; \
    ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm; \
    ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx; \
    NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem \
    npm install --global --no-fund --no-audit --no-update-notifier \
        "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}"; \
    npm cache clean --force; \
    rm -rf /root/.npm /root/.config /tmp/* /tmp/.[!.]*; \
    claude --version

RUN set -eux; \
    useradd --create-home --home-dir /home/agent --uid 1000 --user-group \
        --shell /bin/bash agent; \
    install -d -o agent -g agent -m 0755 /workspace

ENV CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
    DISABLE_AUTOUPDATER=1 \
    NPM_CONFIG_UPDATE_NOTIFIER=false

USER agent
WORKDIR /workspace
CMD ["sleep", "infinity"]
