"""The developer portal: register apps, see their client IDs, rotate secrets, delete them.

Any signed-in user is a developer of the apps they registered here (the app
records them as its owner); the ``[http] operators`` also see every app at
``/developers/admin`` and suspend or resume it. Plain forms, each with the
session's CSRF token; no script, no external resource.
"""

from __future__ import annotations

from urllib.parse import urlencode

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
ADMIN_PATH = f"{PORTAL_PATH}/admin"
SIGNIN_PATH = "/account/signin"
CONFIDENTIAL, PUBLIC = "confidential", "public"


async def portal(request: Request) -> Response:
    user = signed_in(request)
    if user is None:
        return _to_signin(PORTAL_PATH)
    return await _portal(request, user)


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
            [line.strip() for line in uris_text.splitlines() if line.strip()],
            public=client_type == PUBLIC,
            allow_implicit=allow_implicit,
            owner=user,
            require_pkce=not skip_pkce,
        )
    except InvalidRequest as error:
        return await _portal(
            request, user, 400, error=f"The app was not registered: {error}.", **entered
        )
    return _app_page(request, user, registered.app, new_secret=registered.client_secret, new=True)


async def app_page(request: Request) -> Response:
    user = signed_in(request)
    client_id = request.path_params["client_id"]
    if user is None:
        return _to_signin(f"{PORTAL_PATH}/apps/{client_id}")
    return _app_page(request, user, await _visible_app(request, user, client_id))


async def rotate_secret(request: Request) -> Response:
    await checked_form(request)
    user = signed_in(request)
    client_id = request.path_params["client_id"]
    if user is None:
        return _to_signin(f"{PORTAL_PATH}/apps/{client_id}")
    oauth = services(request).oauth
    try:
        secret = await oauth.rotate_secret(client_id, owner=user)
    except NoSuchApp:
        raise HTTPException(404, "There is no such app of yours.") from None
    except InvalidRequest as error:
        app = await _owned_app(request, user, client_id)
        return _app_page(request, user, app, 400, error=f"{error}.")
    app = await _owned_app(request, user, client_id)
    return _app_page(request, user, app, new_secret=secret)


async def delete_page(request: Request) -> Response:
    user = signed_in(request)
    client_id = request.path_params["client_id"]
    if user is None:
        return _to_signin(f"{PORTAL_PATH}/apps/{client_id}")
    app = await _owned_app(request, user, client_id)
    return render(request, "developer_delete.html", app=app)


async def delete_app(request: Request) -> Response:
    await checked_form(request)
    user = signed_in(request)
    client_id = request.path_params["client_id"]
    if user is None:
        return _to_signin(f"{PORTAL_PATH}/apps/{client_id}")
    try:
        await services(request).oauth.delete_app(client_id, owner=user)
    except NoSuchApp:
        raise HTTPException(404, "There is no such app of yours.") from None
    return RedirectResponse(PORTAL_PATH, 303)


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
    Route(f"{PORTAL_PATH}/apps", register, methods=["POST"]),
    Route(ADMIN_PATH, admin_page, methods=["GET"]),
    Route(f"{ADMIN_PATH}/suspend", suspend, methods=["POST"]),
    Route(f"{ADMIN_PATH}/resume", resume, methods=["POST"]),
    Route(PORTAL_PATH + "/apps/{client_id}", app_page, methods=["GET"]),
    Route(PORTAL_PATH + "/apps/{client_id}/rotate", rotate_secret, methods=["POST"]),
    Route(PORTAL_PATH + "/apps/{client_id}/delete", delete_page, methods=["GET"]),
    Route(PORTAL_PATH + "/apps/{client_id}/delete", delete_app, methods=["POST"]),
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
        await (oauth.suspend_app(client_id) if suspend else oauth.resume_app(client_id))
    except NoSuchApp:
        raise HTTPException(404, "There is no such app.") from None
    return RedirectResponse(local_return(form_text(form, "next")), 303)


def local_return(target: str) -> str:
    """Where an operator's form goes back to: an app's page, else the operators' list."""
    if target.startswith(f"{PORTAL_PATH}/apps/") and "/" not in target.removeprefix(
        f"{PORTAL_PATH}/apps/"
    ):
        return target
    return ADMIN_PATH


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
