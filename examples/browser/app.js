// chinwag browser chat: OAuth 2.0 in the browser, then XMPP over WebSocket.
//
// 1. A public OAuth client with PKCE (RFC 7636, S256 by WebCrypto) and a state:
//    the page sends you to chinwag's /oauth/authorize, and chinwag sends you
//    back here with a code, which the page exchanges at /oauth/token (same
//    origin: no CORS). The verifier, state and token live in sessionStorage,
//    the client ID in localStorage.
// 2. xmpp.js (@xmpp/client, its prebuilt browser bundle: the global XMPP)
//    connects to /xmpp-websocket (RFC 7395) and signs in with SASL OAUTHBEARER
//    (RFC 7628), taught to it below; then the roster, presence and chat.
"use strict";

const SCOPE = "wl.messenger";
const REDIRECT_URI = location.origin + location.pathname;
const CLIENT_ID_KEY = "chinwag-example:client-id";
const PENDING_KEY = "chinwag-example:pending"; // {state, verifier} of the request under way
const TOKEN_KEY = "chinwag-example:access-token";
const STATUS_LABELS = { online: "online", chat: "online", away: "away", xa: "away", dnd: "busy" };

const $ = (id) => document.getElementById(id);
const { client, xml } = window.XMPP;

// --- OAuth with PKCE ---------------------------------------------------------------------

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(size) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

async function startSignIn(clientId) {
  const verifier = randomString(48);
  const challenge = base64url(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)),
  );
  const state = randomString(16);
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({ state, verifier }));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  });
  location.assign(`/oauth/authorize?${query}`);
}

// The answer of the authorization server in this page's query, if any: the token.
async function finishSignIn(clientId, params) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
  sessionStorage.removeItem(PENDING_KEY);
  history.replaceState(null, "", REDIRECT_URI); // the code is used once: drop it from the URL
  if (!pending || params.get("state") !== pending.state) {
    throw new Error("This answer is not for a request of this page (state mismatch).");
  }
  if (params.has("error")) {
    throw new Error(`Not authorized: ${params.get("error")}`);
  }
  const response = await fetch("/oauth/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: REDIRECT_URI,
      client_id: clientId,
      code_verifier: pending.verifier,
    }),
  });
  const tokens = await response.json();
  if (!response.ok) {
    throw new Error(`The token endpoint said ${tokens.error}: ${tokens.error_description || ""}`);
  }
  sessionStorage.setItem(TOKEN_KEY, tokens.access_token);
  return tokens.access_token;
}

// --- SASL OAUTHBEARER for xmpp.js ----------------------------------------------------------

function OAuthBearer() {}
OAuthBearer.prototype.name = "OAUTHBEARER";
OAuthBearer.prototype.clientFirst = true;
OAuthBearer.prototype.response = function response(credentials) {
  if (this.failed) return "\x01"; // the server's JSON error challenge: end the exchange
  return `n,,\x01auth=Bearer ${credentials.accessToken}\x01\x01`;
};
OAuthBearer.prototype.challenge = function challenge() {
  this.failed = true;
  return this;
};

// --- the chat ----------------------------------------------------------------------------

const contacts = new Map(); // bare JID -> {name, resources: Map(resource -> show)}
let xmpp = null;
let me = null;
let selected = null;

function show(section) {
  for (const id of ["setup", "signin", "chat"]) $(id).hidden = id !== section;
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function showError(error) {
  $("error").textContent = String(error?.message || error);
  $("error").hidden = false;
}

function bare(address) {
  return String(address).split("/")[0];
}

function contactStatus(contact) {
  let best = "offline";
  for (const value of contact.resources.values()) {
    if (best === "offline" || value === "online") best = value;
  }
  return best;
}

function renderContacts() {
  const list = $("contacts");
  list.replaceChildren();
  for (const [jid, contact] of [...contacts].sort(([a], [b]) => a.localeCompare(b))) {
    const status = contactStatus(contact);
    const item = document.createElement("li");
    item.dataset.jid = jid;
    item.dataset.status = status;
    item.classList.toggle("selected", jid === selected);
    const dot = document.createElement("span");
    dot.className = "dot";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = contact.name || jid;
    name.title = jid;
    const presence = document.createElement("span");
    presence.className = "presence";
    presence.textContent = status;
    item.append(dot, name, presence);
    item.addEventListener("click", () => select(jid));
    list.append(item);
  }
}

function select(jid) {
  selected = jid;
  $("peer").textContent = contacts.get(jid)?.name || jid;
  $("peer").dataset.jid = jid;
  $("body").disabled = false;
  $("send").disabled = false;
  for (const item of $("messages").children) item.hidden = item.dataset.peer !== jid;
  renderContacts();
  $("body").focus();
}

function addMessage(peer, direction, text) {
  const item = document.createElement("li");
  item.className = direction;
  item.dataset.peer = peer;
  item.textContent = text;
  item.hidden = peer !== selected;
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
}

function onStanza(stanza) {
  if (stanza.is("presence")) {
    const from = stanza.attrs.from;
    if (!from) return;
    const jid = bare(from);
    const resource = String(from).slice(jid.length + 1);
    if (!contacts.has(jid) || from === String(me)) return;
    const resources = contacts.get(jid).resources;
    const type = stanza.attrs.type;
    if (type === "unavailable") resources.delete(resource);
    else if (!type) resources.set(resource, STATUS_LABELS[stanza.getChildText("show")] || "online");
    else return; // subscription requests and errors: not for this example
    renderContacts();
  } else if (stanza.is("message") && stanza.getChild("body")) {
    const peer = bare(stanza.attrs.from);
    if (!contacts.has(peer)) contacts.set(peer, { name: "", resources: new Map() });
    if (!selected) select(peer);
    addMessage(peer, "incoming", stanza.getChildText("body"));
  }
}

async function connect(config, accessToken) {
  setStatus("connecting", "Connecting…");
  xmpp = client({
    service: config.websocket,
    domain: config.domain,
    resource: "browser",
    // Sign in with the token, whatever else the server offers.
    credentials: async (authenticate, mechanisms) => {
      if (!mechanisms.includes("OAUTHBEARER")) {
        throw new Error(`The server does not take tokens (it offers ${mechanisms.join(", ")})`);
      }
      await authenticate({ accessToken }, "OAUTHBEARER");
    },
  });
  xmpp.reconnect.stop();
  xmpp.saslFactory.use(OAuthBearer);
  xmpp.on("error", (error) => {
    if (error?.condition === "not-authorized") {
      sessionStorage.removeItem(TOKEN_KEY); // expired or revoked: sign in again
      setStatus("signed-out", "Your sign-in has expired");
      show("signin");
    }
    showError(error);
  });
  xmpp.on("offline", () => setStatus("offline", "Disconnected"));
  xmpp.on("stanza", onStanza);
  xmpp.on("online", async (address) => {
    me = address;
    const roster = await xmpp.iqCaller.request(
      xml("iq", { type: "get" }, xml("query", { xmlns: "jabber:iq:roster" })),
    );
    for (const item of roster.getChild("query").getChildren("item")) {
      contacts.set(item.attrs.jid, { name: item.attrs.name || "", resources: new Map() });
    }
    renderContacts();
    await xmpp.send(xml("presence"));
    setStatus("online", `Connected as ${address}`);
    $("signout").hidden = false;
    show("chat");
  });
  await xmpp.start();
}

async function main() {
  const params = new URLSearchParams(location.search);
  const config = await (await fetch("config.json")).json();
  for (const element of document.querySelectorAll(".domain")) element.textContent = config.domain;
  if (params.has("client_id")) {
    localStorage.setItem(CLIENT_ID_KEY, params.get("client_id"));
    history.replaceState(null, "", REDIRECT_URI);
  }
  const clientId = localStorage.getItem(CLIENT_ID_KEY);
  if (!clientId) {
    $("register-command").textContent =
      `chinwag app register "Browser chat" --public --redirect-uri ${REDIRECT_URI}`;
    setStatus("setup", "Not set up");
    show("setup");
    return;
  }
  $("shown-client-id").textContent = clientId;
  let token = sessionStorage.getItem(TOKEN_KEY);
  if (params.has("code") || params.has("error")) {
    setStatus("authorizing", "Getting a token…");
    token = await finishSignIn(clientId, params);
  }
  if (!token) {
    setStatus("signed-out", "Not signed in");
    show("signin");
    return;
  }
  await connect(config, token);
}

$("setup-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(CLIENT_ID_KEY, $("client-id").value.trim());
  location.reload();
});
$("forget-client").addEventListener("click", (event) => {
  event.preventDefault();
  localStorage.removeItem(CLIENT_ID_KEY);
  location.reload();
});
$("signin-button").addEventListener("click", () =>
  startSignIn(localStorage.getItem(CLIENT_ID_KEY)).catch(showError),
);
$("signout").addEventListener("click", async () => {
  sessionStorage.removeItem(TOKEN_KEY);
  if (xmpp) await xmpp.stop().catch(() => {});
  location.reload();
});
$("compose").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("body").value.trim();
  if (!text || !selected || !xmpp) return;
  await xmpp.send(xml("message", { to: selected, type: "chat" }, xml("body", {}, text)));
  addMessage(selected, "outgoing", text);
  $("body").value = "";
});

main().catch((error) => {
  setStatus("error", "Something went wrong");
  showError(error);
});
