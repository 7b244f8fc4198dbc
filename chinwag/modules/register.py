"""XEP-0077 In-Band Registration, for one use case only: a signed-in user changes their
own password (§3.3), where ``[auth] account_passwords`` is on.

Accounts are not registered in-band: the stream features offer no <register/>, and a
stream that sends a stanza before it signs in ends with <not-authorized/> (RFC 6120
§4.3.1; XEP-0077 §3.1.1 allows it). Operators add users, or hand out invitations for
the web's sign-up page. Cancelling a registration (<remove/>) gets <not-allowed/>.

Only a session signed in with the account's password may change it: one of a
third-party app (an app password, an OAuth token) gets <not-authorized/>. The change
replaces the SCRAM verifiers through ``AccountService.change_password``; the account's
web sessions, and the streams signed in with the old password, end with it, but the
stream that asked for the change (``XMPPServer._on_password_changed``). That stream
reads nothing more until the new verifiers are stored, so a client changes one
password at a time. Errors carry XEP-0086's legacy ``code`` too, as §9 asks, and never
the request, which holds the password (§3.3).
"""

from __future__ import annotations

import logging

from chinwag.network.accounts import (
    InvalidPassword,
    InvalidUsername,
    NoSuchAccount,
    check_chosen_password,
    normalize_username,
)
from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.session import Session
from chinwag.store.models import MAX_USERNAME_BYTES
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.jid import JID, InvalidJID
from chinwag.xmpp.stanza import make_reply

log = logging.getLogger(__name__)

SPEC = Spec(
    "XEP-0077",
    "In-Band Registration",
    "password change only",
    "see [Password change](#xep-0077-password-change); with `auth.account_passwords = true` "
    "(the default); accounts are made by operators or through invitations",
)

LEGACY_CODES = {
    StanzaCondition.BAD_REQUEST: "400",
    StanzaCondition.NOT_AUTHORIZED: "401",
    StanzaCondition.NOT_ALLOWED: "405",
    StanzaCondition.NOT_ACCEPTABLE: "406",
    StanzaCondition.INTERNAL_SERVER_ERROR: "500",
    StanzaCondition.SERVICE_UNAVAILABLE: "503",
}
"""XEP-0086's codes of the conditions this module answers with."""


class RegisterError(StanzaError):
    """A stanza error with the legacy ``code`` attribute that XEP-0077 §9 requires."""

    def to_element(self) -> Element:
        error = super().to_element()
        error.attrs["code"] = LEGACY_CODES[self.condition]
        return error


class PasswordChange:
    """Answers ``jabber:iq:register`` queries to the server or to the sender's own account."""

    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.allowed = api.settings.auth.account_passwords

    def on_get(self, iq: Element) -> Element:
        """§3.1: the requester is registered already, as ``username`` (the password is
        never sent back)."""
        session = self.requester(iq)
        reply = make_reply(iq)
        query = reply.add("query", ns.REGISTER)
        query.add("registered")
        query.add("username").append(session.username)
        query.add("password")
        return reply

    def on_set(self, iq: Element) -> None:
        """§3.3: checked here, then stored while the client's stream waits."""
        session = self.requester(iq)
        query = iq.first_element()
        assert query is not None
        if query.find("remove", ns.REGISTER) is not None:
            raise RegisterError(
                StanzaCondition.NOT_ALLOWED, "accounts are not cancelled in-band here"
            )
        password = self.new_password(session, query)
        session.connection.hold(self.change(iq, session, password))

    def requester(self, iq: Element) -> Session:
        """The session that sent ``iq`` to the server or to its own account; the answer
        when it may not change the account's password over XMPP."""
        sender = JID.parse(iq.attrs["from"])
        to = iq.attrs.get("to")
        if to is not None and JID.parse(to) not in (sender.bare, self.api.domain):
            raise RegisterError(StanzaCondition.SERVICE_UNAVAILABLE)  # another's account
        if not self.allowed:
            raise RegisterError(
                StanzaCondition.NOT_ALLOWED, "the account's password is changed on the web only"
            )
        session = self.api.sessions.get(sender)
        if session is None:
            raise RegisterError(StanzaCondition.SERVICE_UNAVAILABLE)
        if session.app is not None:
            raise RegisterError(
                StanzaCondition.NOT_AUTHORIZED,
                "an app's session cannot change the account's password: "
                "sign in with the password itself",
            )
        return session

    def new_password(self, session: Session, query: Element) -> str:
        username = query.find("username", ns.REGISTER)
        password = query.find("password", ns.REGISTER)
        if username is None or password is None or not password.text:
            raise RegisterError(
                StanzaCondition.BAD_REQUEST, "send both <username/> and a new <password/>"
            )
        if _localpart(username.text, self.api.domain.domain) != session.username:
            raise RegisterError(
                StanzaCondition.NOT_ALLOWED,
                "only the signed-in account's own password can be changed; "
                "new accounts are not registered in-band",
            )
        try:
            check_chosen_password(password.text)
        except InvalidPassword as error:
            raise RegisterError(StanzaCondition.NOT_ACCEPTABLE, f"{error}") from None
        return password.text

    async def change(self, iq: Element, session: Session, password: str) -> None:
        user = session.username
        try:
            await self.api.services.accounts.change_password(
                user, password, kept_resource=session.jid.resource
            )
        except InvalidPassword as error:
            self.api.bounce(iq, RegisterError(StanzaCondition.NOT_ACCEPTABLE, f"{error}"))
            return
        except NoSuchAccount:  # deleted meanwhile: its sessions are ending
            self.api.bounce(iq, RegisterError(StanzaCondition.SERVICE_UNAVAILABLE))
            return
        except Exception:
            log.exception("changing the password of %s failed", user)
            self.api.bounce(iq, RegisterError(StanzaCondition.INTERNAL_SERVER_ERROR))
            return
        log.info("%s changed their password over XMPP (%s)", user, session.jid)
        self.api.deliver(make_reply(iq), session.jid)


def _localpart(text: str, domain: str) -> str | None:
    """The username ``text`` names: a bare username, or a bare JID of this domain."""
    try:
        if "@" not in text:
            # Longer can be no username; PRECIS would spend microseconds a character on it.
            return normalize_username(text) if len(text) <= MAX_USERNAME_BYTES else None
        jid = JID.parse(text)
    except (InvalidUsername, InvalidJID):
        return None
    return jid.local if jid.domain == domain and jid.resource is None else None


def setup(api: ModuleAPI) -> None:
    change = PasswordChange(api)
    if change.allowed:
        api.add_feature(ns.REGISTER)
    for scope in ("host", "account"):
        api.iq_handler("get", ns.REGISTER, "query", change.on_get, scope=scope)
        api.iq_handler("set", ns.REGISTER, "query", change.on_set, scope=scope)
