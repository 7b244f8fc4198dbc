"""The server's own capabilities, as slixmpp sees them: XEP-0115 caps in the stream
features, which slixmpp's xep_0115 checks against the server's disco#info (hash and
all), and the XEP-0157 contact addresses of ``[server_info]`` in that disco#info."""

from __future__ import annotations

import asyncio
from typing import Any

from .support import TIMEOUT, NewClient, sign_in

NS_DATA = "jabber:x:data"
SERVER_INFO = "http://jabber.org/network/serverinfo"


async def test_stream_features_carry_caps_that_check_out_and_list_contacts(
    start_server: Any, new_client: NewClient
) -> None:
    server = await start_server(
        server_info={
            "abuse": ["mailto:abuse@example.com", "xmpp:abuse@localhost"],
            "security": ["https://example.com/security"],
        }
    )
    client = new_client(server, "alice")
    for plugin in ("xep_0030", "xep_0004", "xep_0128", "xep_0115"):
        client.register_plugin(plugin)
    await sign_in(client, server.host, server.port)
    assert "caps" in client.features

    caps = client.plugin["xep_0115"]
    async with asyncio.timeout(TIMEOUT):
        while await caps.get_verstring(server.domain) is None:
            await asyncio.sleep(0.02)  # slixmpp asks for the caps node and checks the hash

    info = await client.plugin["xep_0030"].get_info(jid=server.domain, timeout=TIMEOUT)
    forms = info.xml.findall(f".//{{{NS_DATA}}}x")
    assert len(forms) == 1
    fields = {
        field.get("var"): [v.text for v in field.findall(f"{{{NS_DATA}}}value")]
        for field in forms[0].findall(f"{{{NS_DATA}}}field")
    }
    assert fields == {
        "FORM_TYPE": [SERVER_INFO],
        "abuse-addresses": ["mailto:abuse@example.com", "xmpp:abuse@localhost"],
        "security-addresses": ["https://example.com/security"],
    }
    assert "http://jabber.org/protocol/pubsub" not in info["disco_info"]["features"]
    assert "jabber:iq:private" in info["disco_info"]["features"]
