"""The OpenAPI 3.1 document of the REST API, written by hand to match ``api.py`` exactly.

Served at ``/api/v1/openapi.json``; the property tests (schemathesis) hold the
responses of the live API to it.
"""

from __future__ import annotations

from typing import Any

from chinwag.network.blocking import MAX_BLOCKED
from chinwag.network.profiles import MAX_TEXT_LENGTH
from chinwag.oauth.scopes import ARCHIVE, BASIC, BLOCKING, SCOPES
from chinwag.web.presence import OFFLINE, ONLINE, SHOWS

API_PREFIX = "/api/v1"

_NULLABLE_TEXT = {"type": ["string", "null"]}
# What a profile field may hold: XML 1.0 characters (surrogates never reach JSON text).
_PROFILE_TEXT = {
    "type": ["string", "null"],
    "maxLength": MAX_TEXT_LENGTH,
    "pattern": "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\ufffe\\uffff]*$",
}
_USERNAME_PARAM = {
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
    "description": "A username (RFC 7622 localpart; compared case-insensitively).",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _challenged(description: str) -> dict[str, Any]:
    """An error response with an RFC 6750 ``WWW-Authenticate`` challenge."""
    return {
        **_error(description),
        "headers": {
            "WWW-Authenticate": {
                "description": 'The RFC 6750 challenge, e.g. `Bearer realm="chinwag"`.',
                "required": True,
                "schema": {"type": "string", "pattern": "^Bearer realm="},
            }
        },
    }


def _user_auth(scope: str) -> dict[str, Any]:
    return {
        "401": _challenged(
            "No access token, or one that is invalid, expired, revoked or of a suspended app."
        ),
        "403": _challenged(f"The access token lacks the `{scope}` scope."),
    }


_USER_AUTH = _user_auth("wl.basic")
_BLOCKING_AUTH = _user_auth("wl.blocking")
_ARCHIVE_AUTH = _user_auth("wl.archive")
_ARCHIVE_PARAMS = [
    {
        "name": "with",
        "in": "query",
        "description": "Only messages exchanged with this JID: a bare JID, or a full one for "
        "that resource only.",
        "schema": {"type": "string", "minLength": 1},
    },
    {
        "name": "start",
        "in": "query",
        "description": "Only messages archived at or after this time (with a zone).",
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "end",
        "in": "query",
        "description": "Only messages archived at or before this time (with a zone).",
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "after",
        "in": "query",
        "description": "The page after this message id, oldest first.",
        "schema": {"type": "string"},
    },
    {
        "name": "before",
        "in": "query",
        "description": "The page before this message id; without `after` or `before`, the "
        "newest messages.",
        "schema": {"type": "string"},
    },
    {
        "name": "max",
        "in": "query",
        "description": "Messages in the page, at most `[archive] max_page` (default 250; "
        "more is cut to it); default 50.",
        "schema": {"type": "integer", "minimum": 1},
    },
]
_JID_PARAM = {
    "name": "jid",
    "in": "path",
    "required": True,
    # RFC 7622 3.1: 3071 bytes at most; whether a string is a JID is PRECIS's to say.
    "schema": {"type": "string", "minLength": 1, "maxLength": 3071},
    "description": (
        "A JID (RFC 7622): a full or bare JID, a domain, or a domain with a resource; "
        "compared in its prepared form. One that is not a JID is a 400."
    ),
}
_ADMIN_AUTH = {"401": _challenged("No admin token, or a wrong one.")}
_CONTACT_PAIR = {
    "parameters": [
        {**_USERNAME_PARAM, "name": "a"},
        {**_USERNAME_PARAM, "name": "b"},
    ]
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "chinwag REST API",
        "version": "1.0.0",
        "description": (
            "Read a user's profile and contacts with an OAuth 2.0 access token (scope "
            "`wl.basic`), the JIDs the user blocks with one of scope `wl.blocking`, and "
            "their message archive with one of scope `wl.archive`; "
            "operators change contacts and profiles with the admin token kept in "
            "`{data_dir}/admin-token`. Changes reach online XMPP clients as roster and "
            "block list pushes. Every error is a JSON `Error`."
        ),
    },
    "servers": [{"url": API_PREFIX}],
    "paths": {
        "/me": {
            "get": {
                "operationId": "getMe",
                "summary": "The signed-in user's profile.",
                "security": [{"bearer": ["wl.basic"]}],
                "responses": {"200": _json(_ref("Profile"), "The profile."), **_USER_AUTH},
            }
        },
        "/me/contacts": {
            "get": {
                "operationId": "getMyContacts",
                "summary": "The signed-in user's contacts, with their current presence.",
                "security": [{"bearer": ["wl.basic"]}],
                "responses": {
                    "200": _json(_ref("ContactList"), "The contacts, by username."),
                    **_USER_AUTH,
                },
            }
        },
        "/me/blocked": {
            "get": {
                "operationId": "getMyBlocked",
                "summary": "The JIDs the signed-in user blocks (XEP-0191).",
                "security": [{"bearer": ["wl.blocking"]}],
                "responses": {
                    "200": _json(_ref("BlockList"), "The blocked JIDs, sorted."),
                    **_BLOCKING_AUTH,
                },
            }
        },
        "/me/blocked/{jid}": {
            "parameters": [_JID_PARAM],
            "put": {
                "operationId": "blockJid",
                "summary": "Block a JID (idempotent).",
                "description": (
                    "Nothing from the JID reaches the user and nothing from the user reaches "
                    "it, online sessions included; presence stops both ways."
                ),
                "security": [{"bearer": ["wl.blocking"]}],
                "responses": {
                    "200": _json(_ref("Block"), "The JID is blocked."),
                    "400": _error("Not a JID."),
                    **_BLOCKING_AUTH,
                    "409": _error(f"The block list already holds {MAX_BLOCKED} JIDs."),
                },
            },
            "delete": {
                "operationId": "unblockJid",
                "summary": "Unblock a JID.",
                "security": [{"bearer": ["wl.blocking"]}],
                "responses": {
                    "200": _json(_ref("Block"), "The JID is no longer blocked."),
                    "400": _error("Not a JID."),
                    **_BLOCKING_AUTH,
                    "404": _error("The JID was not blocked."),
                },
            },
        },
        "/me/archive": {
            "get": {
                "operationId": "getMyArchive",
                "summary": "A page of the signed-in user's message archive (XEP-0313).",
                "description": (
                    "Messages with a body the user sent and received, oldest first within "
                    "the page. `first` and `last` are the ids to page on with `before` and "
                    "`after`; `complete` says the page reaches the end of the results in "
                    "the direction read; `count` is the number of all results."
                ),
                "security": [{"bearer": ["wl.archive"]}],
                "parameters": _ARCHIVE_PARAMS,
                "responses": {
                    "200": _json(_ref("ArchivePage"), "The page."),
                    "400": _error("A parameter that cannot be read."),
                    **_ARCHIVE_AUTH,
                    "404": _error("`after` or `before` names no message of the archive."),
                },
            }
        },
        "/admin/contacts/{a}/{b}": {
            **_CONTACT_PAIR,
            "put": {
                "operationId": "addContacts",
                "summary": "Make two users contacts of each other (idempotent).",
                "security": [{"admin": []}],
                "responses": {
                    "200": _json(_ref("ContactLink"), "They are contacts."),
                    **_ADMIN_AUTH,
                    "404": _error("No such user (or a name no user can have)."),
                    "409": _error("Both names are the same account."),
                },
            },
            "delete": {
                "operationId": "removeContacts",
                "summary": "Take two users off each other's contact lists.",
                "security": [{"admin": []}],
                "responses": {
                    "200": _json(_ref("ContactLink"), "They are no longer contacts."),
                    **_ADMIN_AUTH,
                    "404": _error("No such user, or they were not contacts."),
                    "409": _error("Both names are the same account."),
                },
            },
        },
        "/admin/users/{name}/profile": {
            "parameters": [{**_USERNAME_PARAM, "name": "name"}],
            "patch": {
                "operationId": "updateProfile",
                "summary": "Change some fields of a user's profile.",
                "description": (
                    "Fields left out keep their value; null or an empty string clears one. "
                    "Surrounding spaces are trimmed."
                ),
                "security": [{"admin": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ProfileChange")}},
                },
                "responses": {
                    "200": _json(_ref("Profile"), "The whole profile after the change."),
                    "400": _error("The body is not a JSON ProfileChange."),
                    **_ADMIN_AUTH,
                    "404": _error("No such user (or a name no user can have)."),
                    "413": _error("The body is larger than 64 KiB."),
                },
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "oauth2",
                "description": "An OAuth 2.0 access token (RFC 6750 bearer).",
                "flows": {
                    "authorizationCode": {
                        "authorizationUrl": "/oauth/authorize",
                        "tokenUrl": "/oauth/token",
                        "refreshUrl": "/oauth/token",
                        "scopes": {scope: SCOPES[scope] for scope in (BASIC, BLOCKING, ARCHIVE)},
                    }
                },
            },
            "admin": {
                "type": "http",
                "scheme": "bearer",
                "description": "The operator's admin token, from `{data_dir}/admin-token`.",
            },
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "message"],
                "additionalProperties": False,
                "properties": {
                    "error": {"type": "string", "description": "A code, e.g. `invalid_token`."},
                    "message": {"type": "string", "description": "What went wrong, in words."},
                },
            },
            "Photo": {
                "type": "object",
                "required": ["type", "data"],
                "additionalProperties": False,
                "properties": {
                    "type": {**_NULLABLE_TEXT, "description": "Media type, e.g. image/png."},
                    "data": {"type": "string", "contentEncoding": "base64"},
                },
            },
            "Profile": {
                "type": "object",
                "required": ["username", "jid", "fn", "nickname", "email", "photo"],
                "additionalProperties": False,
                "properties": {
                    "username": {"type": "string"},
                    "jid": {"type": "string", "description": "The bare JID: username@domain."},
                    "fn": {**_NULLABLE_TEXT, "description": "Full name."},
                    "nickname": _NULLABLE_TEXT,
                    "email": _NULLABLE_TEXT,
                    "photo": {"oneOf": [_ref("Photo"), {"type": "null"}]},
                },
            },
            "ProfileChange": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "fn": _PROFILE_TEXT,
                    "nickname": _PROFILE_TEXT,
                    "email": _PROFILE_TEXT,
                },
            },
            "ResourcePresence": {
                "type": "object",
                "required": ["resource", "show", "status", "priority"],
                "additionalProperties": False,
                "properties": {
                    "resource": {"type": "string"},
                    "show": {"enum": [ONLINE, *SHOWS]},
                    "status": _NULLABLE_TEXT,
                    "priority": {"type": "integer", "minimum": -128, "maximum": 127},
                },
            },
            "Presence": {
                "type": "object",
                "description": (
                    "The account's presence: its highest-priority available resource "
                    "speaks for it; `offline` with no resource available."
                ),
                "required": ["available", "show", "status", "resources"],
                "additionalProperties": False,
                "properties": {
                    "available": {"type": "boolean"},
                    "show": {"enum": [ONLINE, *SHOWS, OFFLINE]},
                    "status": _NULLABLE_TEXT,
                    "resources": {"type": "array", "items": _ref("ResourcePresence")},
                },
            },
            "Contact": {
                "type": "object",
                "required": ["username", "jid", "name", "subscription", "groups", "presence"],
                "additionalProperties": False,
                "properties": {
                    "username": {"type": "string"},
                    "jid": {"type": "string"},
                    "name": {
                        **_NULLABLE_TEXT,
                        "description": "The roster item's name, else the contact's full name.",
                    },
                    "subscription": {
                        "enum": ["to", "from", "both"],
                        "description": "RFC 6121 subscription state, seen from the user.",
                    },
                    "groups": {"type": "array", "items": {"type": "string"}},
                    "presence": {
                        "description": (
                            "Null unless the user is subscribed to the contact's presence "
                            "(subscription `to` or `both`)."
                        ),
                        "oneOf": [_ref("Presence"), {"type": "null"}],
                    },
                },
            },
            "ContactList": {
                "type": "object",
                "required": ["contacts"],
                "additionalProperties": False,
                "properties": {"contacts": {"type": "array", "items": _ref("Contact")}},
            },
            "BlockList": {
                "type": "object",
                "required": ["blocked"],
                "additionalProperties": False,
                "properties": {
                    "blocked": {
                        "type": "array",
                        "items": {"type": "string"},
                        "maxItems": MAX_BLOCKED,
                        "description": "Prepared JIDs.",
                    }
                },
            },
            "Block": {
                "type": "object",
                "required": ["jid", "blocked"],
                "additionalProperties": False,
                "properties": {
                    "jid": {"type": "string", "description": "The JID, prepared."},
                    "blocked": {"type": "boolean", "description": "Whether it now is."},
                },
            },
            "ArchivePage": {
                "type": "object",
                "required": ["messages", "first", "last", "count", "complete"],
                "additionalProperties": False,
                "properties": {
                    "messages": {"type": "array", "items": _ref("ArchivedMessage")},
                    "first": {**_NULLABLE_TEXT, "description": "The first message's id."},
                    "last": {**_NULLABLE_TEXT, "description": "The last message's id."},
                    "count": {
                        "type": ["integer", "null"],
                        "minimum": 0,
                        "description": "The number of all results; null when more than 1,000.",
                    },
                    "complete": {"type": "boolean"},
                },
            },
            "ArchivedMessage": {
                "type": "object",
                "required": ["id", "at", "with", "direction", "type", "body"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "description": "The XEP-0359 stanza id."},
                    "at": {"type": "string", "format": "date-time"},
                    "with": {"type": "string", "description": "The other party's JID."},
                    "direction": {"enum": ["in", "out"]},
                    "type": {"enum": ["chat", "normal"]},
                    "body": _NULLABLE_TEXT,
                },
            },
            "ContactLink": {
                "type": "object",
                "required": ["users", "contacts"],
                "additionalProperties": False,
                "properties": {
                    "users": {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 2,
                        "maxItems": 2,
                        "description": "The two usernames, normalised.",
                    },
                    "contacts": {"type": "boolean", "description": "Whether they now are."},
                },
            },
        },
    },
}
"""The document, as served."""
