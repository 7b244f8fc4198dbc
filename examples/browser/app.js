// chinwag browser chat: OAuth 2.0 in the browser, then XMPP over WebSocket.
//
// 1. A public OAuth client with PKCE (RFC 7636, S256 by WebCrypto) and a state:
//    the page sends you to chinwag's /oauth/authorize, and chinwag sends you
//    back here with a code, which the page exchanges at /oauth/token (same
//    origin: no CORS). It asks for wl.offline_access too, so it also gets a
//    refresh token: when the access token has expired, or chinwag refuses it,
//    the page trades the refresh token for a new pair (RFC 6749 section 6)
//    instead of sending you to sign in again. Signing out revokes them
//    (RFC 7009). The verifier, state and tokens live in sessionStorage, the
//    client ID in localStorage.
// 2. xmpp.js (@xmpp/client, its prebuilt browser bundle: the global XMPP)
//    connects to /xmpp-websocket (RFC 7395) and signs in with SASL OAUTHBEARER
//    (RFC 7628), taught to it below; then the roster, presence and chat.
"use strict";

const SCOPE = "wl.messenger wl.offline_access";
const REDIRECT_URI = location.origin + location.pathname;
const CLIENT_ID_KEY = "chinwag-example:client-id";
const PENDING_KEY = "chinwag-example:pending"; // {state, verifier} of the request under way
const TOKENS_KEY = "chinwag-example:tokens"; // {accessToken, refreshToken, expiresAt}
const EXPIRY_MARGIN_MS = 30_000; // an access token this close to its end is refreshed first
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

// The token endpoint said no (RFC 6749 section 5.2), as opposed to being out of reach.
class TokenError extends Error {}

// Asks the token endpoint for tokens, and keeps them.
async function requestTokens(params) {
  const response = await fetch("/oauth/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(params),
  });
  const answer = await response.json();
  if (!response.ok) {
    const description = answer.error_description || "";
    throw new TokenError(`The token endpoint said ${answer.error}: ${description}`);
  }
  const tokens = {
    accessToken: answer.access_token,
    // chinwag rotates refresh tokens: a new one replaces the old, now used up. A server
    // that does not rotate sends none, and the old one stays good.
    refreshToken: answer.refresh_token ?? params.refresh_token,
    expiresAt: Date.now() + answer.expires_in * 1000,
  };
  sessionStorage.setItem(TOKENS_KEY, JSON.stringify(tokens));
  return tokens;
}

function storedTokens() {
  return JSON.parse(sessionStorage.getItem(TOKENS_KEY) || "null");
}

// An access token to sign in with: the stored one while it lives (unless chinwag has
// just refused it), else a new one for the refresh token. Null if there is none to be had.
async function liveAccessToken(clientId, refused = false) {
  const tokens = storedTokens();
  if (tokens && !refused && Date.now() < tokens.expiresAt - EXPIRY_MARGIN_MS) {
    return tokens.accessToken;
  }
  if (tokens?.refreshToken) {
    try {
      const refreshed = await requestTokens({
        grant_type: "refresh_token",
        refresh_token: tokens.refreshToken,
        client_id: clientId,
      });
      return refreshed.accessToken;
    } catch (error) {
      if (!(error instanceof TokenError)) throw error; // chinwag out of reach: keep the tokens
    }
  }
  // No refresh token, or chinwag refused it (invalid_grant: expired, revoked or used
  // already): only signing in again helps.
  sessionStorage.removeItem(TOKENS_KEY);
  return null;
}

// The answer of the authorization server in this page's query: exchange its code for tokens.
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
  await requestTokens({
    grant_type: "authorization_code",
    code: params.get("code"),
    redirect_uri: REDIRECT_URI,
    client_id: clientId,
    code_verifier: pending.verifier,
  });
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

async function connect(config, clientId, token) {
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
      try {
        await authenticate({ accessToken: token }, "OAUTHBEARER");
      } catch (error) {
        if (error?.condition !== "not-authorized") throw error;
        // Expired or revoked sooner than we knew: refresh once, and try again on this
        // stream (RFC 6120 section 6.4.5 allows a retry). A second refusal is final.
        const refreshed = await liveAccessToken(clientId, true);
        if (!refreshed) throw error;
        await authenticate({ accessToken: refreshed }, "OAUTHBEARER");
      }
    },
  });
  xmpp.reconnect.stop();
  xmpp.saslFactory.use(OAuthBearer);
  xmpp.on("error", (error) => {
    if (error?.condition === "not-authorized") {
      sessionStorage.removeItem(TOKENS_KEY); // refused even after a refresh, or revoked
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
  // A refusal is the "error" listener's to show: it asks to sign in again.
  await xmpp.start().catch((error) => {
    if (error?.condition !== "not-authorized") throw error;
  });
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
  if (params.has("code") || params.has("error")) {
    setStatus("authorizing", "Getting a token…");
    await finishSignIn(clientId, params);
  }
  const token = await liveAccessToken(clientId);
  if (!token) {
    setStatus("signed-out", "Not signed in");
    show("signin");
    return;
  }
  await connect(config, clientId, token);
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
  const tokens = storedTokens();
  sessionStorage.removeItem(TOKENS_KEY);
  if (xmpp) await xmpp.stop().catch(() => {});
  // Forgetting is not enough: the refresh token stays valid for weeks. Revoking it ends
  // the whole grant, access token included (RFC 7009 section 2.1).
  if (tokens) {
    await fetch("/oauth/revoke", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        token: tokens.refreshToken || tokens.accessToken,
        client_id: localStorage.getItem(CLIENT_ID_KEY),
      }),
    }).catch(() => {});
  }
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
