# The agent image: Debian + git/curl/jq + Node.js + npm + Python 3 (pip, venv) +
# the everyday tools (less, procps, unzip, make, build-essential) + Claude Code,
# run as the unprivileged user `agent` (uid 1000) in /workspace.
#
# build-essential (gcc, g++, make, libc headers; ~200 MB) is in because an agent
# that builds projects meets sdists with C extensions and node-gyp modules, and
# a missing compiler is a confusing failure far from its cause.
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
# undici for the fetch preload below (6.x: the last line that supports Node 18)
ARG UNDICI_VERSION=6.29.1
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
        build-essential ca-certificates curl git jq less make nodejs procps \
        python3 python3-pip python3-venv unzip; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log; \
    node --version; python3 --version

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
    NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem \
    npm install --prefix /opt/bottle/node --no-fund --no-audit --no-update-notifier \
        --no-package-lock "undici@${UNDICI_VERSION}"; \
    npm cache clean --force; \
    rm -rf /root/.npm /root/.config /tmp/* /tmp/.[!.]*; \
    claude --version

# Node's built-in fetch (undici inside Node) ignores HTTPS_PROXY, so behind the
# bottle it would try to connect directly and fail. NODE_OPTIONS (set by the
# `agent` step) preloads this file, which wraps fetch: its first call makes the
# global dispatcher an undici EnvHttpProxyAgent (honours HTTP(S)_PROXY and
# NO_PROXY). Lazily: loading undici up front costs every node process ~80 ms.
# undici's "experimental" warning for that class is dropped (it would print on
# every fetch-using run). Node >= 24.5 does this itself with NODE_USE_ENV_PROXY=1
# (also set); the preload then steps aside. In the image, not provisioned: a
# --require of a missing file would stop every node process.
RUN set -eux; \
    printf '%s\n' \
        "'use strict';" \
        "// bottle: Node's built-in fetch through HTTP(S)_PROXY (see dockerfiles/agent.Dockerfile)." \
        "(() => {" \
        "  const [major, minor] = process.versions.node.split('.').map(Number);" \
        "  if (major > 24 || (major === 24 && minor >= 5)) return;" \
        "  const env = process.env;" \
        "  if (!(env.HTTPS_PROXY || env.https_proxy || env.HTTP_PROXY || env.http_proxy)) return;" \
        "  const original = globalThis.fetch;" \
        "  if (typeof original !== 'function') return;" \
        "  let installed = false;" \
        "  const install = () => {" \
        "    installed = true;" \
        "    const emit = process.emitWarning;" \
        "    process.emitWarning = function (warning, ...rest) {" \
        "      const code = rest[0] && typeof rest[0] === 'object' ? rest[0].code : rest[1];" \
        "      if (code === 'UNDICI-EHPA') return;" \
        "      return emit.call(this, warning, ...rest);" \
        "    };" \
        "    try {" \
        "      const undici = require('/opt/bottle/node/node_modules/undici');" \
        "      undici.setGlobalDispatcher(new undici.EnvHttpProxyAgent());" \
        "    } catch (error) {" \
        "      emit.call(process, 'bottle: fetch does not use the proxy: ' + error.message);" \
        "    } finally {" \
        "      process.emitWarning = emit;" \
        "    }" \
        "  };" \
        "  globalThis.fetch = function fetch(input, init) {" \
        "    if (!installed) install();" \
        "    return original.call(this, input, init);" \
        "  };" \
        "})();" \
        > /opt/bottle/node/proxy.cjs; \
    NODE_OPTIONS='--require /opt/bottle/node/proxy.cjs' HTTPS_PROXY=http://127.0.0.1:9 \
        node -e 'process.exit(typeof fetch === "function" ? 0 : 1)'

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
