// An @xmpp/client (xmpp.js) session over WebSocket, driven by chinwag's integration tests.
//
//   node --experimental-websocket ws_client.mjs SERVICE DOMAIN USERNAME PASSWORD MECHANISM [resume]
//
// xmpp.js enables stream management (XEP-0198) whenever the server offers it. With
// "resume", the client reconnects when its connection drops and resumes its session;
// without, a dropped connection ends it.
//
// stdout: one JSON object per line, as things happen:
//   {"event": "online", "jid": ...}   {"event": "presence", "from": ..., "type": ...}
//   {"event": "message", "from": ..., "body": ...}   {"event": "error", "message": ...}
//   {"event": "sm", "state": "enabled" | "resumed" | "failed", ...its attributes}
//   {"event": "disconnect", "clean": ...}   {"event": "offline"}
// stdin: one JSON command per line:
//   {"presence": true}   {"message": {"to": ..., "body": ...}}   {"stop": true}
// The process exits once offline; the test kills it if it does not.

import readline from "node:readline";
import { client, xml } from "@xmpp/client";

const [service, domain, username, password, mechanism, mode] = process.argv.slice(2);
const SM = "urn:xmpp:sm:3";
const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

const xmpp = client({
  service,
  domain,
  resource: "node",
  // Sign in with the mechanism the test names, not the library's favourite.
  credentials: async (authenticate, mechanisms) => {
    if (!mechanisms.includes(mechanism)) {
      throw new Error(`${mechanism} is not offered: ${mechanisms.join(" ")}`);
    }
    await authenticate({ username, password }, mechanism);
  },
});
if (mode !== "resume") {
  xmpp.reconnect.stop();
}

xmpp.on("error", (error) => emit({ event: "error", message: String(error) }));
xmpp.on("disconnect", ({ clean }) => emit({ event: "disconnect", clean }));
xmpp.on("nonza", (nonza) => {
  if (nonza.attrs.xmlns === SM && ["enabled", "resumed", "failed"].includes(nonza.name)) {
    emit({ event: "sm", ...nonza.attrs, state: nonza.name });
  }
});
xmpp.on("offline", () => {
  emit({ event: "offline" });
  process.exit(0);
});
xmpp.on("online", (address) => emit({ event: "online", jid: address.toString() }));
xmpp.on("stanza", (stanza) => {
  if (stanza.is("presence")) {
    emit({
      event: "presence",
      from: stanza.attrs.from,
      type: stanza.attrs.type ?? "available",
    });
  } else if (stanza.is("message") && stanza.getChild("body")) {
    emit({ event: "message", from: stanza.attrs.from, body: stanza.getChildText("body") });
  }
});

const commands = readline.createInterface({ input: process.stdin });
commands.on("line", async (line) => {
  const command = JSON.parse(line);
  try {
    if (command.presence) {
      await xmpp.send(xml("presence"));
    } else if (command.message) {
      const { to, body } = command.message;
      await xmpp.send(xml("message", { to, type: "chat" }, xml("body", {}, body)));
    } else if (command.stop) {
      await xmpp.stop();
    }
  } catch (error) {
    emit({ event: "error", message: String(error) });
  }
});
commands.on("close", () => xmpp.stop().catch(() => process.exit(1)));

xmpp.start().catch((error) => {
  emit({ event: "error", message: String(error) });
  process.exit(1);
});
