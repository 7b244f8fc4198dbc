"""The developer portal: register apps, see their client IDs, edit them, rotate secrets,
delete them.

Any signed-in user is a developer of the apps they registered here (the app
records them as its owner); the ``[http] operators`` also see every app at
``/developers/admin`` and suspend or resume it. Plain forms, each with the
session's CSRF token; no script, no external resource.

A form that changes something answers with a redirect to the page that shows the
result (POST, redirect, GET), so reloading that page changes nothing again. What
the result page must say once, such as a new client secret, waits in the session
for that page's one GET, which takes it out: it is never put in a URL.
"""

from __future__ import annotations

from urllib.parse import urlencode

from cryptography.fernet import Fernet, InvalidToken
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from chinwag.oauth.service import AppInfo, InvalidRequest, NoSuchApp
from chinwag.store.oauth_models import MAX_APP_NAME
from chinwag.web.pages import (
    checked_form,
    form_text,
    is_operator,
    render,
    services,
    signed_in,
)

PORTAL_PATH = "/developers"
APPS_PATH = f"{PORTAL_PATH}/apps"
ADMIN_PATH = f"{PORTAL_PATH}/admin"
SIGNIN_PATH = "/account/signin"
CONFIDENTIAL, PUBLIC = "confidential", "public"
_SHOWN_ONCE = "portal.shown_once"
"""The session's key for what the page after a redirect says once: its path, a notice
and maybe a new client secret."""
_SHOWN_ONCE_SECONDS = 300
"""How long a new client secret waits, encrypted in the cookie, for the page to show it."""


async def portal(request: Request) -> Response:
    user = signed_in(request)
    if user is None:
        return _to_signin(PORTAL_PATH)
    notice, _ = _shown_once(request, PORTAL_PATH)
    return await _portal(request, user, notice=notice)


async def apps_list(request: Request) -> Response:
    """The apps are listed on the portal's page, where the registration form posts from."""
    return RedirectResponse(PORTAL_PATH, 303)


async def register(request: Request) -> Response:
    form = await checked_form(request)
    user = signed_in(request)
    if user is None:
        return _to_signin(PORTAL_PATH)
    name = form_text(form, "name")
    uris_text = form_text(form, "redirect_uris")
    client_type = form_text(form, "client_type")
    allow_implicit = form_text(form, "allow_implicit") == "yes"
    skip_pkce = form_text(form, "skip_pkce") == "yes"
    entered = {
        "name": name,
        "redirect_uris": uris_text,
        "client_type": client_type,
        "allow_implicit": allow_implicit,
        "skip_pkce": skip_pkce,
    }
    if client_type not in (CONFIDENTIAL, PUBLIC):
        return await _portal(request, user, 400, error="Choose public or confidential.", **entered)
    try:
        registered = await services(request).oauth.register_app(
            name,
            _lines(uris_text),
            public=client_type == PUBLIC,
            allow_implicit=allow_implicit,
            owner=user,
            require_pkce=not skip_pkce,
        )
    except InvalidRequest as error:
        return await _portal(
            request, user, 400, error=f"The app was not registered: {error}.", **entered
        )
    return _redirect_showing(
        request,
        _app_path(registered.app.client_id),
        "Your app is registered.",
        new_secret=registered.client_secret,
    )


async def app_page(request: Request) -> Response:
    user = signed_in(request)
    client_id = request.path_params["client_id"]
    if user is None:
        return _to_signin(_app_path(client_id))
    notice, new_secret = _shown_once(request, _app_path(client_id))
    app = await _visible_app(request, user, client_id)
    return _app_page(request, user, app, notice=notice, new_secret=new_secret)


async def edit_page(request: Request) -> Response:
    user = signed_in(request)
    client_id = request.path_params["client_id"]
    if user is None:
        return _to_signin(f"{_app_path(client_id)}/edit")
    app = await _owned_app(request, user, client_id)
    return _edit_page(
        request,
        app,
        name=app.name,
        redirect_uris="\n".join(app.redirect_uris),
        skip_pkce=not app.require_pkce,
    )


async def edit_app(request: Request) -> Response:
    form = await checked_form(request)
    user = signed_in(request)
    client_id = request.path_params["client_id"]
    if user is None:
        return _to_signin(f"{_app_path(client_id)}/edit")
    name = form_text(form, "name")
    uris_text = form_text(form, "redirect_uris")
    skip_pkce = form_text(form, "skip_pkce") == "yes"
    try:
        app = await services(request).oauth.update_app(
            client_id,
            name=name,
            redirect_uris=_lines(uris_text),
            require_pkce=not skip_pkce,
            owner=user,
        )
    except NoSuchApp:
        raise HTTPException(404, "There is no such app of yours.") from None
    except InvalidRequest as error:
        app = await _owned_app(request, user, client_id)
        return _edit_page(
            request,
            app,
            400,
            error=f"Nothing was changed: {error}.",
            name=name,
            redirect_uris=uris_text,
            skip_pkce=skip_pkce,
        )
    return _redirect_showing(request, _app_path(client_id), f"{app.name} is saved.")


async def rotate_secret(request: Request) -> Response:
    await checked_form(request)
    user = signed_in(request)
    client_id = request.path_params["client_id"]
    if user is None:
        return _to_signin(_app_path(client_id))
    oauth = services(request).oauth
    try:
        secret = await oauth.rotate_secret(client_id, owner=user)
    except NoSuchApp:
        raise HTTPException(404, "There is no such app of yours.") from None
    except InvalidRequest as error:
        app = await _owned_app(request, user, client_id)
        return _app_page(request, user, app, 400, error=f"{error}.")
    return _redirect_showing(
        request,
        _app_path(client_id),
        "The new client secret replaces the old one, which no longer works.",
        new_secret=secret,
    )


async def delete_page(request: Request) -> Response:
    user = signed_in(request)
    client_id = request.path_params["client_id"]
    if user is None:
        return _to_signin(_app_path(client_id))
    app = await _owned_app(request, user, client_id)
    return render(request, "developer_delete.html", app=app)


async def delete_app(request: Request) -> Response:
    await checked_form(request)
    user = signed_in(request)
    client_id = request.path_params["client_id"]
    if user is None:
        return _to_signin(_app_path(client_id))
    oauth = services(request).oauth
    try:
        app = await oauth.owned_app(client_id, user)
        await oauth.delete_app(client_id, owner=user)
    except NoSuchApp:
        raise HTTPException(404, "There is no such app of yours.") from None
    return _redirect_showing(request, PORTAL_PATH, f"{app.name} is deleted.")


# -- operators


async def admin_page(request: Request) -> Response:
    user = signed_in(request)
    if user is None:
        return _to_signin(ADMIN_PATH)
    _require_operator(request, user)
    return render(request, "developers_admin.html", apps=await services(request).oauth.list_apps())


async def suspend(request: Request) -> Response:
    return await _set_status(request, suspend=True)


async def resume(request: Request) -> Response:
    return await _set_status(request, suspend=False)


ROUTES = [
    Route(PORTAL_PATH, portal, methods=["GET"]),
    Route(APPS_PATH, apps_list, methods=["GET"]),
    Route(APPS_PATH, register, methods=["POST"]),
    Route(ADMIN_PATH, admin_page, methods=["GET"]),
    Route(f"{ADMIN_PATH}/suspend", suspend, methods=["POST"]),
    Route(f"{ADMIN_PATH}/resume", resume, methods=["POST"]),
    Route(APPS_PATH + "/{client_id}", app_page, methods=["GET"]),
    Route(APPS_PATH + "/{client_id}/edit", edit_page, methods=["GET"]),
    Route(APPS_PATH + "/{client_id}/edit", edit_app, methods=["POST"]),
    Route(APPS_PATH + "/{client_id}/rotate", rotate_secret, methods=["POST"]),
    Route(APPS_PATH + "/{client_id}/delete", delete_page, methods=["GET"]),
    Route(APPS_PATH + "/{client_id}/delete", delete_app, methods=["POST"]),
]


async def _set_status(request: Request, *, suspend: bool) -> Response:
    form = await checked_form(request)
    user = signed_in(request)
    if user is None:
        return _to_signin(ADMIN_PATH)
    _require_operator(request, user)
    oauth = services(request).oauth
    client_id = form_text(form, "client_id")
    try:
        await (
            oauth.suspend_app(client_id, by=user)
            if suspend
            else oauth.resume_app(client_id, by=user)
        )
    except NoSuchApp:
        raise HTTPException(404, "There is no such app.") from None
    return RedirectResponse(local_return(form_text(form, "next")), 303)


def local_return(target: str) -> str:
    """Where an operator's form goes back to: an app's page, else the operators' list."""
    if target.startswith(f"{APPS_PATH}/") and "/" not in target.removeprefix(f"{APPS_PATH}/"):
        return target
    return ADMIN_PATH


def _redirect_showing(
    request: Request, path: str, notice: str, new_secret: str | None = None
) -> Response:
    """A redirect to ``path``, whose next GET shows ``notice`` (and ``new_secret``) once.
    The secret travels encrypted: the session cookie is only signed."""
    sealed = None
    if new_secret is not None:
        sealed = _cipher(request).encrypt(new_secret.encode()).decode()
    request.session[_SHOWN_ONCE] = {"path": path, "notice": notice, "new_secret": sealed}
    return RedirectResponse(path, 303)


def _shown_once(request: Request, path: str) -> tuple[str | None, str | None]:
    """The notice and new client secret the page at ``path`` is to show once, taken out of
    the session (None if they were for another page: they are dropped all the same)."""
    shown = request.session.pop(_SHOWN_ONCE, None)
    if not isinstance(shown, dict) or shown.get("path") != path:
        return None, None
    sealed = shown.get("new_secret")
    if not isinstance(sealed, str):
        return shown.get("notice"), None
    try:
        secret = _cipher(request).decrypt(sealed.encode(), ttl=_SHOWN_ONCE_SECONDS).decode()
    except InvalidToken:
        secret = None  # too old, or not ours: the owner rotates it again
    return shown.get("notice"), secret


def _cipher(request: Request) -> Fernet:
    cipher: Fernet = request.app.state.cookie_cipher
    return cipher


def _app_path(client_id: str) -> str:
    return f"{APPS_PATH}/{client_id}"


def _lines(text: str) -> list[str]:
    """The non-blank lines of a text area, trimmed."""
    return [line.strip() for line in text.splitlines() if line.strip()]


async def _portal(request: Request, user: str, status: int = 200, **extra: object) -> Response:
    context: dict[str, object] = {
        "name": "",
        "redirect_uris": "",
        "client_type": CONFIDENTIAL,
        "allow_implicit": False,
        "skip_pkce": False,
        **extra,
    }
    return render(
        request,
        "developers.html",
        status,
        apps=await services(request).oauth.apps_of(user),
        max_name=MAX_APP_NAME,
        implicit_allowed=services(request).settings.oauth.allow_implicit,
        **context,
    )


def _app_page(
    request: Request, user: str, app: AppInfo, status: int = 200, **extra: object
) -> Response:
    return render(
        request,
        "developer_app.html",
        status,
        app=app,
        owned=app.owner == user,
        implicit_allowed=services(request).settings.oauth.allow_implicit,
        **extra,
    )


def _edit_page(request: Request, app: AppInfo, status: int = 200, **entered: object) -> Response:
    return render(request, "developer_edit.html", status, app=app, max_name=MAX_APP_NAME, **entered)


async def _owned_app(request: Request, user: str, client_id: str) -> AppInfo:
    try:
        return await services(request).oauth.owned_app(client_id, user)
    except NoSuchApp:
        raise HTTPException(404, "There is no such app of yours.") from None


async def _visible_app(request: Request, user: str, client_id: str) -> AppInfo:
    """The app if the user registered it, or any app for an operator; else 404."""
    owner = None if is_operator(request, user) else user
    try:
        return await services(request).oauth.owned_app(client_id, owner)
    except NoSuchApp:
        raise HTTPException(404, "There is no such app of yours.") from None


def _require_operator(request: Request, user: str) -> None:
    if not is_operator(request, user):
        raise HTTPException(403, "Only the network's operators can see this page.")


def _to_signin(target: str) -> Response:
    return RedirectResponse(f"{SIGNIN_PATH}?{urlencode({'next': target})}", 303)
