"""What each toolchain in the agent reads to find the bottle's CA and proxy.

The agent's traffic is intercepted by the bottle's CA and leaves only through its proxy,
and nearly every toolchain has its own variable for one or the other (docs/toolchains.md
lists them with what was checked). Pure: the proxy URL in, environment variables out."""
from __future__ import annotations

from urllib.parse import urlsplit

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # the image's roots + the bottle's CA (provision.sh)
JAVA_TRUSTSTORE = "/etc/ssl/certs/java/cacerts"   # the same, for a JDK (provision.sh, when present)
NODE_PRELOAD = "/opt/bottle/node/proxy.cjs"      # in the agent image: fetch through the proxy

# Every variable that points a toolchain at a CA file: all get the full bundle.
CA_VARIABLES = (
    "SSL_CERT_FILE",        # OpenSSL-based tools, Python's ssl/urllib, httpx, uv, Go, Ruby
    "REQUESTS_CA_BUNDLE",   # requests (its own certifi bundle otherwise)
    "PIP_CERT",             # pip in a venv (vendored certifi otherwise)
    "CURL_CA_BUNDLE",       # curl, and libcurl users that read it
    "GIT_SSL_CAINFO",       # git over HTTPS
    "CARGO_HTTP_CAINFO",    # cargo
    "DENO_CERT",            # Deno
    "AWS_CA_BUNDLE",        # AWS CLI and SDKs
)


def java_options(proxy_url: str, no_proxy: list[str]) -> str:
    """JVM system properties (read by java.net, HttpClient, Gradle; not by Maven, which
    provisioning configures in /etc/maven/settings.xml)."""
    url = urlsplit(proxy_url)
    hosts = "|".join(no_proxy)
    props = [f"-D{scheme}.proxyHost={url.hostname}" for scheme in ("http", "https")]
    props += [f"-D{scheme}.proxyPort={url.port}" for scheme in ("http", "https")]
    props += [f"-Dhttp.nonProxyHosts={hosts}",
              f"-Djavax.net.ssl.trustStore={JAVA_TRUSTSTORE}", "-Djavax.net.ssl.trustStorePassword=changeit"]
    return " ".join(props)


def env(proxy_url: str, no_proxy: list[str], user_env) -> dict[str, str]:
    """The toolchain variables. NODE_OPTIONS and JAVA_TOOL_OPTIONS keep what the manifest's
    own `env` sets: the preload goes before it, the JVM properties before it (a later
    -D wins, so the manifest can override one)."""
    joined = ",".join(no_proxy)
    result = {"HTTP_PROXY": proxy_url, "HTTPS_PROXY": proxy_url, "http_proxy": proxy_url,
              "https_proxy": proxy_url, "NO_PROXY": joined, "no_proxy": joined,
              # Node >= 24.5 honours the proxy variables itself with this; older ones need the preload.
              "NODE_USE_ENV_PROXY": "1",
              "NODE_OPTIONS": " ".join(filter(None, (f"--require {NODE_PRELOAD}", user_env.get("NODE_OPTIONS")))),
              "JAVA_TOOL_OPTIONS": " ".join(filter(None, (java_options(proxy_url, no_proxy),
                                                          user_env.get("JAVA_TOOL_OPTIONS"))))}
    result.update({name: CA_BUNDLE for name in CA_VARIABLES})
    return result


def node_extra_ca(bottle_ca: str) -> dict[str, str]:
    """Node (and npm, and Claude Code) add this file to their built-in roots."""
    return {"NODE_EXTRA_CA_CERTS": bottle_ca}
