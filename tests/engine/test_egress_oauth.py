"""The second credential mode: a Claude subscription. The OAuth token is injected as
`Authorization: Bearer ...` by the egress proxy; the agent holds a placeholder in
CLAUDE_CODE_OAUTH_TOKEN. Real Claude Code runs against the stand-in Messages API."""
from __future__ import annotations

import secrets
import string

import pytest
from test_bottle_e2e import UPSTREAM, module_bottle, upstream_records
from test_egress import REPLY, api_bottle, header_values

pytestmark = pytest.mark.usefixtures("engine")

TOKEN = "sk-ant-oat01-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(95)) + "AA"

BODY = api_bottle("CLAUDE_CODE_OAUTH_TOKEN",
                  '{header: Authorization, secret: CLAUDE_CODE_OAUTH_TOKEN, format: "Bearer {secret}"}')


@pytest.fixture(scope="module")
def bottle(tmp_path_factory, test_ca, trust_bundle):
    yield from module_bottle(tmp_path_factory, test_ca, trust_bundle, prefix="oat", body=BODY,
                             env={"CLAUDE_CODE_OAUTH_TOKEN": TOKEN}, aliases=("api.anthropic.com", UPSTREAM))


def test_claude_code_with_a_subscription_token_it_never_holds(bottle):
    out = bottle.inv("claude", "-p", "Say hello.", check=False)
    calls = upstream_records(bottle, kind="http")
    print("Claude Code (subscription) sent:", sorted({(c["method"], c["path"]) for c in calls}))
    assert REPLY in out.stdout, out.stdout + out.stderr
    messages = [c for c in calls if c["path"].startswith("/v1/messages")]
    assert messages and all(header_values(c, "authorization") == [f"Bearer {TOKEN}"] for c in messages)
    assert TOKEN not in bottle.sh("env").stdout
