"""Hosts allowed for one source only (`allow_for`, the git gate's network): the policy
schema, and the firewall's host gate and dial check deciding by the client's address."""
import base64

import pytest
from firewall import policy as P
from fwtest import CLIENT, SAMPLES, Harness, connect_flow, make_policy, policy_doc, request_flow
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.test import tflow

GATE_NET = "172.30.7.0/24"
GATE = ("172.30.7.3", 40000)
GIT_HOST = "api.upstream.test"  # in the fake DNS, in allowed_cidrs


def gate_policy(**dlp):
    allow = [h for h in policy_doc()["allow"] if not h.startswith(GIT_HOST)]
    return make_policy(allow=allow, allow_for={GATE_NET: [GIT_HOST]},
                       dlp={"hosts": {}, "delegated": {GATE_NET: ["authorization"]}, **dlp})


def client(address):
    c = tflow.tclient_conn()
    c.peername = address
    return c


def test_allow_for_parses_and_matches_by_source():
    pol = gate_policy()
    assert pol.allow.match(GIT_HOST) is None
    assert pol.allow_for_client(GIT_HOST, 443, GATE[0]) is not None
    assert pol.allow_for_client(GIT_HOST, 443, CLIENT[0]) is None
    assert pol.allow_for_client(GIT_HOST, 22, GATE[0]) is None   # web ports only, as in allow
    assert pol.allow_for_client(GIT_HOST, 443, None) is None


@pytest.mark.parametrize("value, problem", [
    ({"not-a-cidr": ["x.example"]}, "allow_for.not-a-cidr"),
    ({GATE_NET: "x.example"}, "must be a list"),
    ({GATE_NET: ["bad host!"]}, f"allow_for.{GATE_NET}[0]"),
    (["x.example"], "must be an object"),
])
def test_bad_allow_for_is_refused(value, problem):
    with pytest.raises(P.PolicyError) as ei:
        P.parse(policy_doc(allow_for=value))
    assert any(problem in p for p in ei.value.problems), ei.value.problems


async def test_connect_from_the_gate_is_allowed_and_from_the_agent_refused():
    with Harness(gate_policy()) as h:
        f = connect_flow(GIT_HOST, client=client(GATE))
        await h.hook(http_layer.HttpConnectHook(f))
        assert f.response is None  # not refused: the tunnel opens
        agent = await h.connect(GIT_HOST)  # the harness's default client: the agent's address
        assert agent.response.status_code == 403
        assert h.last()["rule"] == "not-allowlisted"


async def test_dial_check_follows_the_source():
    with Harness(gate_policy()) as h:
        ok = await h.server_connect(GIT_HOST, 443, client=client(GATE))
        assert not ok.server.error
        refused = await h.server_connect(GIT_HOST, 443, client=client(CLIENT))
        assert refused.server.error and "not on the allowlist" in refused.server.error


def test_reload_keeps_the_gates_connections():
    with Harness(gate_policy()) as h:
        assert h.fw.still_allowed(GIT_HOST, 443, False, client=GATE[0])
        assert not h.fw.still_allowed(GIT_HOST, 443, False, client=CLIENT[0])


def from_gate(f):
    f.client_conn.peername = GATE
    return f


async def test_the_gates_own_credential_and_body_are_its_own():
    """The gate's token (basic auth holding a GitHub token) and its push bodies, which the
    gate scans itself, pass; the same from the agent's address, or to another host, does not."""
    token = SAMPLES["github-token"]
    auth = {"authorization": "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()}
    with Harness(gate_policy(max_body_bytes=1024)) as h:
        f = await h.request(from_gate(request_flow("POST", f"https://{GIT_HOST}/org/repo.git/git-receive-pack",
                                                   b"x" * 4096, auth)))
        assert f.response.status_code == 200, f.response.text  # token exempt, body over the limit unscanned
        f = await h.request(request_flow("POST", f"https://{GIT_HOST}/x", b"{}", auth))  # the agent
        assert f.response.status_code == 403
        f = await h.request(from_gate(request_flow("POST", "https://registry.npmjs.org/x", b"{}", auth)))
        assert f.response.status_code == 403, "only the hosts allow_for gives the gate"
        f = await h.request(from_gate(request_flow("POST", f"https://{GIT_HOST}/x", b"{}",
                                                   {"x-other": token})))
        assert f.response.status_code == 403, "only the delegated headers"


def test_delegated_needs_an_allow_for_network():
    with pytest.raises(P.PolicyError) as ei:
        P.parse(policy_doc(dlp={"delegated": {"10.9.9.0/24": ["authorization"]}}))
    assert any("allow_for" in p for p in ei.value.problems), ei.value.problems
