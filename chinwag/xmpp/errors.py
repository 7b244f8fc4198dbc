"""Stream and stanza error conditions (RFC 6120 4.9 and 8.3), named once."""

from __future__ import annotations

from enum import StrEnum

from . import ns
from .element import Element


class StreamCondition(StrEnum):
    BAD_FORMAT = "bad-format"
    BAD_NAMESPACE_PREFIX = "bad-namespace-prefix"
    CONFLICT = "conflict"
    CONNECTION_TIMEOUT = "connection-timeout"
    HOST_GONE = "host-gone"
    HOST_UNKNOWN = "host-unknown"
    IMPROPER_ADDRESSING = "improper-addressing"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    INVALID_FROM = "invalid-from"
    INVALID_NAMESPACE = "invalid-namespace"
    INVALID_XML = "invalid-xml"
    NOT_AUTHORIZED = "not-authorized"
    NOT_WELL_FORMED = "not-well-formed"
    POLICY_VIOLATION = "policy-violation"
    RESET = "reset"
    RESOURCE_CONSTRAINT = "resource-constraint"
    RESTRICTED_XML = "restricted-xml"
    SEE_OTHER_HOST = "see-other-host"
    SYSTEM_SHUTDOWN = "system-shutdown"
    UNDEFINED_CONDITION = "undefined-condition"
    UNSUPPORTED_ENCODING = "unsupported-encoding"
    UNSUPPORTED_FEATURE = "unsupported-feature"
    UNSUPPORTED_STANZA_TYPE = "unsupported-stanza-type"
    UNSUPPORTED_VERSION = "unsupported-version"


class StanzaCondition(StrEnum):
    BAD_REQUEST = "bad-request"
    CONFLICT = "conflict"
    FEATURE_NOT_IMPLEMENTED = "feature-not-implemented"
    FORBIDDEN = "forbidden"
    GONE = "gone"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    ITEM_NOT_FOUND = "item-not-found"
    JID_MALFORMED = "jid-malformed"
    NOT_ACCEPTABLE = "not-acceptable"
    NOT_ALLOWED = "not-allowed"
    NOT_AUTHORIZED = "not-authorized"
    POLICY_VIOLATION = "policy-violation"
    RECIPIENT_UNAVAILABLE = "recipient-unavailable"
    REDIRECT = "redirect"
    REGISTRATION_REQUIRED = "registration-required"
    REMOTE_SERVER_NOT_FOUND = "remote-server-not-found"
    REMOTE_SERVER_TIMEOUT = "remote-server-timeout"
    RESOURCE_CONSTRAINT = "resource-constraint"
    SERVICE_UNAVAILABLE = "service-unavailable"
    SUBSCRIPTION_REQUIRED = "subscription-required"
    UNDEFINED_CONDITION = "undefined-condition"
    UNEXPECTED_REQUEST = "unexpected-request"


# RFC 6120 8.3.2: the error type that goes with each condition.
_STANZA_ERROR_TYPES: dict[StanzaCondition, str] = {
    StanzaCondition.BAD_REQUEST: "modify",
    StanzaCondition.CONFLICT: "cancel",
    StanzaCondition.FEATURE_NOT_IMPLEMENTED: "cancel",
    StanzaCondition.FORBIDDEN: "auth",
    StanzaCondition.GONE: "cancel",
    StanzaCondition.INTERNAL_SERVER_ERROR: "cancel",
    StanzaCondition.ITEM_NOT_FOUND: "cancel",
    StanzaCondition.JID_MALFORMED: "modify",
    StanzaCondition.NOT_ACCEPTABLE: "modify",
    StanzaCondition.NOT_ALLOWED: "cancel",
    StanzaCondition.NOT_AUTHORIZED: "auth",
    StanzaCondition.POLICY_VIOLATION: "modify",
    StanzaCondition.RECIPIENT_UNAVAILABLE: "wait",
    StanzaCondition.REDIRECT: "modify",
    StanzaCondition.REGISTRATION_REQUIRED: "auth",
    StanzaCondition.REMOTE_SERVER_NOT_FOUND: "cancel",
    StanzaCondition.REMOTE_SERVER_TIMEOUT: "wait",
    StanzaCondition.RESOURCE_CONSTRAINT: "wait",
    StanzaCondition.SERVICE_UNAVAILABLE: "cancel",
    StanzaCondition.SUBSCRIPTION_REQUIRED: "auth",
    StanzaCondition.UNDEFINED_CONDITION: "cancel",
    StanzaCondition.UNEXPECTED_REQUEST: "wait",
}


class StreamError(Exception):
    """A condition that ends the stream (RFC 6120 4.9)."""

    def __init__(self, condition: StreamCondition, text: str = "", *, other_host: str = "") -> None:
        """``other_host``: where to connect instead, the content of <see-other-host/>
        (RFC 6120 4.9.3.19): a host, ``host:port`` or ``[IPv6]:port``."""
        super().__init__(f"{condition}: {text}" if text else str(condition))
        self.condition = condition
        self.text = text
        self.other_host = other_host

    def to_element(self) -> Element:
        error = Element("error", ns.STREAMS)
        content: list[Element | str] = [self.other_host] if self.other_host else []
        error.append(Element(self.condition.value, ns.STREAM_ERRORS, children=content))
        if self.text:
            error.append(Element("text", ns.STREAM_ERRORS, {"xml:lang": "en"}, [self.text]))
        return error


class StanzaError(Exception):
    """A condition returned to the sender of one stanza (RFC 6120 8.3), with an optional
    application-specific condition (8.3.4) such as XEP-0191's ``<blocked/>``."""

    def __init__(
        self, condition: StanzaCondition, text: str = "", application: Element | None = None
    ) -> None:
        super().__init__(f"{condition}: {text}" if text else str(condition))
        self.condition = condition
        self.text = text
        self.application = application

    def to_element(self) -> Element:
        error = Element("error", attrs={"type": _STANZA_ERROR_TYPES[self.condition]})
        error.append(Element(self.condition.value, ns.STANZA_ERRORS))
        if self.text:
            error.append(Element("text", ns.STANZA_ERRORS, {"xml:lang": "en"}, [self.text]))
        if self.application is not None:
            error.append(self.application)
        return error
