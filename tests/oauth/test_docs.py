"""docs/oauth.md: every example runs, in order, against a live server.

``sh`` blocks: each line starting with ``chinwag`` runs as a command on the
server's store (``$CLIENT_ID`` is the app the first one registered). ``python``
blocks run in one namespace, with the server's address and the client_id put in
for the placeholders; after the block that builds ``authorize_url``, the test
plays the user (sign in, allow) and leaves the redirect in ``callback_url``.
``json`` blocks must parse, and ``xml`` blocks must be well-formed. The XMPP
examples (``python`` blocks that use slixmpp) need an XMPP listener: they run
against a whole server in ``tests/integration/test_oauth_signin.py``.
"""

import asyncio
import json
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from oauth.support import commands, shared_loop, sign_in_and_consent

pytestmark = shared_loop

DOC = Path(__file__).resolve().parents[2] / "docs" / "oauth.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
DOC_SERVER = '"http://127.0.0.1:5280"'
DOC_CLIENT_ID = '"the client_id that chinwag app register printed"'


def is_xmpp_example(body: str) -> bool:
    return "slixmpp" in body


def run_command(line: str, config: Path, client_id: str | None) -> dict[str, Any] | None:
    args = shlex.split(line.replace("$CLIENT_ID", client_id or ""))[1:]
    result = CliRunner().invoke(commands, [*args, "--config", str(config)])
    assert result.exit_code == 0, (line, result.output)
    return json.loads(result.stdout) if "--json" in args else None


async def test_every_example_of_the_developer_guide_runs(platform, browser, tmp_path):
    text = DOC.read_text()
    assert DOC_SERVER in text and DOC_CLIENT_ID in text
    config = tmp_path / "docs.toml"
    config.write_text(f"data_dir = '{platform.settings.data_dir}'\n")
    namespace: dict[str, Any] = {}
    client_id = None
    ran = []

    for kind, body in FENCE.findall(text):
        ran.append(kind)
        if kind == "json":
            json.loads(body)
        elif kind == "xml":
            ET.fromstring(f"<wire>{body}</wire>")
        elif kind == "python" and is_xmpp_example(body):
            continue
        elif kind == "sh":
            for line in body.splitlines():
                if line.startswith("chinwag "):
                    output = await asyncio.to_thread(run_command, line, config, client_id)
                    client_id = client_id or output["client_id"]
        elif kind == "python":
            source = body.replace(DOC_SERVER, repr(platform.base)).replace(
                DOC_CLIENT_ID, repr(client_id)
            )
            await asyncio.to_thread(exec, compile(source, str(DOC), "exec"), namespace)
            if "authorize_url" in namespace and "callback_url" not in namespace:
                redirect = await sign_in_and_consent(browser, namespace["authorize_url"])
                namespace["callback_url"] = redirect.headers["location"]
        else:
            raise AssertionError(f"a {kind} block that no test runs")

    assert ran.count("python") >= 6
    assert namespace["metadata"]["issuer"] == platform.base
    # Step 7 revoked the grant: the latest access token no longer signs in.
    assert await platform.oauth.check_token(namespace["access_token"]) is None
    [app_password] = await platform.oauth.list_app_passwords("alice")
    assert app_password.label == "Gajim on my laptop"
