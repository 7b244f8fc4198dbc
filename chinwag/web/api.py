"""The REST API under ``/api/v1/``, described by the OpenAPI document of ``openapi.py``.

Apps read the user's profile and contacts with an OAuth 2.0 bearer token of scope
``wl.basic`` (RFC 6750), and list, add and remove the JIDs the user blocks with one of
scope ``wl.blocking``, and read the user's message archive with one of scope
``wl.archive``; operators change contacts and profiles with the admin token
(``admin_token.py``). Those changes go through the network domain with an origin of
their own, so the XMPP server's event pump turns them into roster and block list
pushes exactly as it does for the command line's.

The API is a Starlette application of its own, mounted by ``build_web_app``, so
that every error under ``/api/v1/``, an unknown path included, is a JSON
``{"error": ..., "message": ...}``. Request bodies are limited to 64 KiB (413).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from chinwag.network.accounts import InvalidUsername, NoSuchAccount, normalize_username
from chinwag.network.blocking import (
    BlockingService,
    InvalidBlockedJID,
    TooManyBlocked,
    prepare_jid,
)
from chinwag.network.contacts import Contact, ContactService, SameAccount
from chinwag.network.profiles import InvalidProfile, Profile, ProfileService
from chinwag.oauth.scopes import ARCHIVE, BASIC, BLOCKING
from chinwag.oauth.service import TokenGrant
from chinwag.store.archive import ArchivedItem, ArchiveQuery, ArchiveRepository, UnknownArchiveId
from chinwag.web.admin_token import bearer_credential, check_admin
from chinwag.web.openapi import API_PREFIX, OPENAPI
from chinwag.web.pages import Services
from chinwag.web.presence import PresenceSource, summary
from chinwag.xmpp.jid import JID, InvalidJID
from chinwag.xmpp.times import parse_datetime
from chinwag.xmpp.xml import parse_stanza

REALM = "chinwag"
MAX_BODY_BYTES = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store"}
"""Every answer but the OpenAPI document is about someone, for someone."""
PROFILE_CHANGES = ("fn", "nickname", "email")
_PRESENCE_SUBSCRIPTIONS = ("to", "both")
"""The user sees a contact's presence when subscribed to it (RFC 6121 3)."""
_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}


class ApiError(Exception):
    """An error response: ``{"error": code, "message": message}`` with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def api_mount(services: Services, admin_token: str) -> Mount:
    """The API application, mounted at ``/api/v1``."""
    api = Starlette(
        routes=ROUTES,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
    )
    api.state.services = services
    api.state.admin_token = admin_token
    mount = Mount(API_PREFIX, app=api)
    # Every path under the prefix is the API's, even one with a (percent-encoded) line
    # break, which Starlette's pattern would leave to the HTML pages' 404.
    mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
    return mount


# -- reading, with an access token


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


async def me(request: Request) -> Response:
    grant = await _user_grant(request)
    profile = await _profiles(request).get(grant.username)
    if profile is None:  # deleted since the token was checked
        raise _invalid_token("The access token's account no longer exists.")
    return _ok(_profile_json(grant.username, profile, _domain(request)))


async def my_contacts(request: Request) -> Response:
    grant = await _user_grant(request)
    try:
        contacts = await _contacts(request).list_contacts(grant.username)
    except NoSuchAccount:
        raise _invalid_token("The access token's account no longer exists.") from None
    presence = _services(request).presence
    domain = _domain(request)
    return _ok({"contacts": [_contact_json(contact, domain, presence) for contact in contacts]})


# -- the user's block list, with an access token of scope wl.blocking


async def my_blocked(request: Request) -> Response:
    grant = await _user_grant(request, BLOCKING)
    try:
        blocked = await _blocking(request).blocked(grant.username)
    except NoSuchAccount:
        raise _invalid_token("The access token's account no longer exists.") from None
    return _ok({"blocked": blocked})


async def blocked_jid(request: Request) -> Response:
    if request.method == "PUT":
        return await block_jid(request)
    return await unblock_jid(request)


async def block_jid(request: Request) -> Response:
    grant = await _user_grant(request, BLOCKING)
    jid = _jid(request)
    try:
        await _blocking(request).block(grant.username, [jid])
    except NoSuchAccount:
        raise _invalid_token("The access token's account no longer exists.") from None
    except TooManyBlocked as error:
        raise ApiError(
            409, "block_list_full", f"The block list holds at most {error.limit} JIDs."
        ) from None
    return _ok({"jid": jid, "blocked": True})


async def unblock_jid(request: Request) -> Response:
    grant = await _user_grant(request, BLOCKING)
    jid = _jid(request)
    try:
        removed = await _blocking(request).unblock(grant.username, [jid])
    except NoSuchAccount:
        raise _invalid_token("The access token's account no longer exists.") from None
    if not removed:
        raise ApiError(404, "not_blocked", f"'{jid}' is not blocked.")
    return _ok({"jid": jid, "blocked": False})


# -- operators' changes, with the admin token


async def contact_pair(request: Request) -> Response:
    if request.method == "PUT":
        return await add_contacts(request)
    return await remove_contacts(request)


async def add_contacts(request: Request) -> Response:
    _check_admin(request)
    a, b = _pair(request)
    try:
        await _contacts(request).add_mutual(a, b)
    except NoSuchAccount as error:
        raise _no_such_user(error) from None
    return _ok({"users": [a, b], "contacts": True})


async def remove_contacts(request: Request) -> Response:
    _check_admin(request)
    a, b = _pair(request)
    try:
        removed = await _contacts(request).remove_mutual(a, b)
    except NoSuchAccount as error:
        raise _no_such_user(error) from None
    if not removed:
        raise ApiError(404, "not_contacts", f"'{a}' and '{b}' are not contacts.")
    return _ok({"users": [a, b], "contacts": False})


async def update_profile(request: Request) -> Response:
    _check_admin(request)
    name = _username(request.path_params["name"])
    changes = _profile_changes(await _body(request))
    profiles = _profiles(request)
    try:
        if changes:
            profile = await profiles.set_fields(name, **changes)
        else:
            found = await profiles.get(name)
            if found is None:
                raise NoSuchAccount(name)
            profile = found
    except NoSuchAccount as error:
        raise _no_such_user(error) from None
    except InvalidProfile as error:
        raise ApiError(400, "invalid_profile", f"{error}.") from None
    return _ok(_profile_json(name, profile, _domain(request)))


# -- the user's message archive, with an access token of scope wl.archive

DEFAULT_ARCHIVE_PAGE = 50


async def my_archive(request: Request) -> Response:
    grant = await _user_grant(request, ARCHIVE)
    archive = _archive(request)
    query = _archive_query(request)
    try:
        page = await archive.query(grant.username, query)
    except UnknownArchiveId as error:
        raise ApiError(404, "unknown_id", str(error).capitalize() + ".") from None
    items = page.items
    return _ok(
        {
            "messages": [_archived_json(item) for item in items],
            "first": items[0].archive_id if items else None,
            "last": items[-1].archive_id if items else None,
            "count": page.count,
            "complete": page.complete,
        }
    )


def _archive_query(request: Request) -> ArchiveQuery:
    """The filters and the page the query string asks for: with neither ``before`` nor
    ``after``, the newest messages."""
    params = request.query_params
    peer = resource = None
    if "with" in params:
        try:
            jid = JID.parse(params["with"])
        except InvalidJID:
            raise ApiError(400, "bad_request", "'with' must be a JID.") from None
        peer, resource = jid.bare.text, jid.resource
    page_max = _page_max(params.get("max"), _services(request).settings.archive.max_page)
    after, before = params.get("after") or None, params.get("before") or None
    return ArchiveQuery(
        peer=peer,
        peer_resource=resource,
        start=_when(params.get("start"), "start"),
        end=_when(params.get("end"), "end"),
        page_after=after,
        page_before=before,
        last_page=after is None,
        max=page_max,
    )


def _page_max(text: str | None, cap: int) -> int:
    """``max``, cut to ``cap`` as XEP-0059 lets a server do."""
    if text is None:
        return min(DEFAULT_ARCHIVE_PAGE, cap)
    if not text.isdecimal() or int(text) < 1:
        raise ApiError(400, "bad_request", "'max' must be a whole number from 1.")
    return min(int(text), cap)


def _when(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    when = parse_datetime(text)
    if when is None:
        raise ApiError(
            400, "bad_request", f"'{name}' must be an ISO 8601 date and time with a zone."
        )
    return when


def _archived_json(item: ArchivedItem) -> dict[str, Any]:
    message = parse_stanza(item.stanza)
    body = message.find("body")
    peer = item.peer if item.peer_resource is None else f"{item.peer}/{item.peer_resource}"
    return {
        "id": item.archive_id,
        "at": item.archived_at.isoformat().replace("+00:00", "Z"),
        "with": peer,
        "direction": "out" if item.outgoing else "in",
        "type": message.attrs.get("type", "normal"),
        "body": body.text if body is not None else None,
    }


def _any_text(route: Route) -> Route:
    """``route`` with its path parameter taking line breaks too, so that such a value is
    answered by the route (a 400) rather than as an unknown path."""
    route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
    return route


ROUTES = [
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/me", me, methods=["GET"]),
    Route("/me/contacts", my_contacts, methods=["GET"]),
    Route("/me/blocked", my_blocked, methods=["GET"]),
    Route("/me/archive", my_archive, methods=["GET"]),
    _any_text(Route("/me/blocked/{jid:path}", blocked_jid, methods=["PUT", "DELETE"])),
    Route("/admin/contacts/{a}/{b}", contact_pair, methods=["PUT", "DELETE"]),
    Route("/admin/users/{name}/profile", update_profile, methods=["PATCH"]),
]


# -- authentication


async def _user_grant(request: Request, scope: str = BASIC) -> TokenGrant:
    """The grant of the request's bearer token if it has ``scope``; else 401/403."""
    token = bearer_credential(request)
    if token is None:
        raise ApiError(
            401,
            "unauthorized",
            f"Send an OAuth 2.0 access token with the {scope} scope as a bearer token.",
            {"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )
    grant = await _services(request).oauth.check_token(token) if token else None
    if grant is None:
        raise _invalid_token("The access token is invalid, expired or revoked.")
    if scope not in grant.scopes:
        raise ApiError(
            403,
            "insufficient_scope",
            f"The access token lacks the {scope} scope.",
            {
                "WWW-Authenticate": (
                    f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
                )
            },
        )
    return grant


def _invalid_token(message: str) -> ApiError:
    return ApiError(
        401,
        "invalid_token",
        message,
        {"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'},
    )


def _check_admin(request: Request) -> None:
    try:
        check_admin(request)
    except HTTPException as error:
        code = "unauthorized" if bearer_credential(request) is None else "invalid_token"
        raise ApiError(error.status_code, code, error.detail, dict(error.headers or {})) from None


# -- input


def _username(name: str) -> str:
    """The normalised username of a path; a name no account can have is a 404."""
    try:
        return normalize_username(name)
    except InvalidUsername as error:
        raise ApiError(404, "no_such_user", f"There is no such user: {error}.") from None


def _jid(request: Request) -> str:
    """The prepared JID of the path; one that is not a JID is a 400."""
    try:
        return prepare_jid(request.path_params["jid"])
    except InvalidBlockedJID as error:
        raise ApiError(400, "invalid_jid", f"{error}.") from None


def _pair(request: Request) -> tuple[str, str]:
    a, b = _username(request.path_params["a"]), _username(request.path_params["b"])
    if a == b:
        raise ApiError(409, "same_account", f"{SameAccount(a)}.")
    return a, b


async def _body(request: Request) -> bytes:
    """The request's body, if it is no larger than MAX_BODY_BYTES; else 413."""
    too_large = ApiError(413, "too_large", f"The body is larger than {MAX_BODY_BYTES} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _profile_changes(body: bytes) -> dict[str, str | None]:
    try:
        changes = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "The request body is not JSON.") from None
    if not isinstance(changes, dict):
        raise ApiError(400, "invalid_profile", "The request body is not a JSON object.")
    unknown = sorted(set(changes) - set(PROFILE_CHANGES))
    if unknown:
        raise ApiError(
            400,
            "invalid_profile",
            f"Not profile fields: {', '.join(unknown)}; the fields are "
            f"{', '.join(PROFILE_CHANGES)}.",
        )
    for field, value in changes.items():
        if value is not None and not isinstance(value, str):
            raise ApiError(400, "invalid_profile", f"{field} must be a string or null.")
    return changes


# -- output


def _profile_json(username: str, profile: Profile, domain: str) -> dict[str, Any]:
    photo = None
    if profile.photo is not None:
        photo = {"type": profile.photo_type, "data": base64.b64encode(profile.photo).decode()}
    return {
        "username": username,
        "jid": f"{username}@{domain}",
        "fn": profile.fn,
        "nickname": profile.nickname,
        "email": profile.email,
        "photo": photo,
    }


def _contact_json(contact: Contact, domain: str, presence: PresenceSource) -> dict[str, Any]:
    shown = contact.subscription in _PRESENCE_SUBSCRIPTIONS
    return {
        "username": contact.username,
        "jid": f"{contact.username}@{domain}",
        "name": contact.name,
        "subscription": contact.subscription,
        "groups": list(contact.groups),
        "presence": summary(presence(contact.username)) if shown else None,
    }


# -- plumbing


def _services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def _domain(request: Request) -> str:
    return _services(request).settings.domain


def _contacts(request: Request) -> ContactService:
    contacts = _services(request).contacts
    if contacts is None:
        raise ApiError(503, "unavailable", "Contacts are not served here.")
    return contacts


def _profiles(request: Request) -> ProfileService:
    profiles = _services(request).profiles
    if profiles is None:
        raise ApiError(503, "unavailable", "Profiles are not served here.")
    return profiles


def _blocking(request: Request) -> BlockingService:
    blocking = _services(request).blocking
    if blocking is None:
        raise ApiError(503, "unavailable", "Block lists are not served here.")
    return blocking


def _archive(request: Request) -> ArchiveRepository:
    archive = _services(request).archive
    if archive is None:
        raise ApiError(503, "unavailable", "The message archive is not served here.")
    return archive


def _no_such_user(error: NoSuchAccount) -> ApiError:
    return ApiError(404, "no_such_user", f"There is no user '{error.username}'.")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error_response(exc.status, exc.code, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _ERROR_CODES.get(exc.status_code, "error")
    return _error_response(exc.status_code, code, exc.detail, exc.headers)


def _ok(body: dict[str, Any]) -> Response:
    return JSONResponse(body, headers=_NO_STORE)


def _error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None
) -> Response:
    return JSONResponse(
        {"error": code, "message": message},
        status,
        headers={**(headers or {}), **_NO_STORE},
    )
