"""The user's own pages: sign-in, sign-out, connected apps with app passwords, and the
password.

A password change needs the current password (a failure counts against the address,
as a failed sign-in does) and the new one twice. It replaces the account's SCRAM
verifiers, which ends every web session of the account: this browser gets a new one,
the others are signed out. The XMPP streams signed in with the old password end too
(``account.password_changed``); app passwords and OAuth tokens are credentials of
their own and keep working, as do the sessions signed in with them.
"""

from __future__ import annotations

import contextlib
import logging
from urllib.parse import parse_qs, urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from chinwag.network.accounts import (
    MAX_CHOSEN_PASSWORD,
    MIN_CHOSEN_PASSWORD,
    InvalidPassword,
    NoSuchAccount,
    check_chosen_password,
    normalize_username,
)
from chinwag.oauth.server import AUTHORIZE_PATH, AuthorizationRefused, HttpRequest
from chinwag.oauth.service import AppSuspended, InvalidRequest, NoSuchApp
from chinwag.server.auth_failures import refusal
from chinwag.web.pages import (
    checked_form,
    form_text,
    local_path,
    render,
    services,
    sign_in,
    sign_out,
    signed_in,
)

log = logging.getLogger(__name__)

APPS_PATH = "/account/apps"
SIGNIN_PATH = "/account/signin"
PASSWORD_PATH = "/account/password"
WELCOME_PATH = "/account/welcome"


async def home(request: Request) -> Response:
    return RedirectResponse(APPS_PATH, 303)


async def signin_page(request: Request) -> Response:
    target = local_path(request.query_params.get("next", ""), APPS_PATH)
    return await _signin_page(request, target)


async def signin(request: Request) -> Response:
    form = await checked_form(request)
    name, password = form_text(form, "username"), form_text(form, "password")
    target = local_path(form_text(form, "next"), APPS_PATH)
    address = request.client.host if request.client else None
    found = services(request)
    if (refused_for := await found.auth_failures.refused_for(address)) is not None:
        error = refusal(refused_for).capitalize() + "."
        return await _signin_page(request, target, 429, username=name, error=error)
    if not await found.accounts.verify_password(name, password):
        await found.auth_failures.failed(address)
        failed = {"user": name, "transport": "web", "address": address}
        log.info(
            "sign-in failed", extra={"fields": failed | {"reason": "wrong username or password"}}
        )
        return await _signin_page(
            request, target, username=name, error="Wrong username or password."
        )
    user = normalize_username(name)
    await sign_in(request, user)
    log.info("signed in on the web", extra={"fields": {"user": user, "address": address}})
    return RedirectResponse(target, 303)


async def signout(request: Request) -> Response:
    await checked_form(request)
    await sign_out(request)
    return RedirectResponse(SIGNIN_PATH, 303)


async def apps_page(request: Request) -> Response:
    user = signed_in(request)
    if user is None:
        return _to_signin()
    return await _apps(request, user)


async def revoke_app(request: Request) -> Response:
    form = await checked_form(request)
    user = signed_in(request)
    if user is None:
        return _to_signin()
    with contextlib.suppress(NoSuchApp):  # deleted meanwhile: nothing is left to revoke
        await services(request).oauth.revoke_app_for_user(user, form_text(form, "client_id"))
    return RedirectResponse(APPS_PATH, 303)


async def create_app_password(request: Request) -> Response:
    form = await checked_form(request)
    user = signed_in(request)
    if user is None:
        return _to_signin()
    oauth = services(request).oauth
    client_id = form_text(form, "client_id")
    try:
        _, password = await oauth.create_app_password(user, client_id, form_text(form, "label"))
    except (NoSuchApp, AppSuspended, InvalidRequest) as error:
        return await _apps(request, user, 400, error=f"No app password was made: {error}.")
    app = await oauth.get_app(client_id)
    return await _apps(request, user, new_password=password, new_password_app=app and app.name)


async def revoke_app_password(request: Request) -> Response:
    form = await checked_form(request)
    user = signed_in(request)
    if user is None:
        return _to_signin()
    password_id = form_text(form, "id")
    if password_id.isdigit():
        await services(request).oauth.revoke_app_password(user, int(password_id))
    return RedirectResponse(APPS_PATH, 303)


async def password_page(request: Request) -> Response:
    user = signed_in(request)
    if user is None:
        return _to_signin(PASSWORD_PATH)
    return _password_page(request, changed=request.query_params.get("changed") == "1")


async def change_password(request: Request) -> Response:
    form = await checked_form(request)
    user = signed_in(request)
    if user is None:
        return _to_signin(PASSWORD_PATH)
    refused = await _password_change_refused(request, user, form)
    if refused is not None:
        status, error = refused
        return _password_page(request, status, error=error)
    try:
        await services(request).accounts.change_password(user, form_text(form, "new_password"))
    except InvalidPassword as error:
        return _password_page(request, 400, error=f"Choose another password: {error}.")
    except NoSuchAccount:  # deleted meanwhile
        await sign_out(request)
        return _to_signin(PASSWORD_PATH)
    await sign_in(request, user)  # the change ended every web session of the account
    log.info("%s changed their password on the web", user)
    return RedirectResponse(f"{PASSWORD_PATH}?changed=1", 303)


async def welcome_page(request: Request) -> Response:
    if signed_in(request) is None:
        return _to_signin(WELCOME_PATH)
    return render(request, "welcome.html")


ROUTES = [
    Route("/", home),
    Route(SIGNIN_PATH, signin_page, methods=["GET"]),
    Route(SIGNIN_PATH, signin, methods=["POST"]),
    Route("/account/signout", signout, methods=["POST"]),
    Route(APPS_PATH, apps_page, methods=["GET"]),
    Route(f"{APPS_PATH}/revoke", revoke_app, methods=["POST"]),
    Route("/account/app-passwords", create_app_password, methods=["POST"]),
    Route("/account/app-passwords/revoke", revoke_app_password, methods=["POST"]),
    Route(PASSWORD_PATH, password_page, methods=["GET"]),
    Route(PASSWORD_PATH, change_password, methods=["POST"]),
    Route(WELCOME_PATH, welcome_page, methods=["GET"]),
]


async def _password_change_refused(
    request: Request, user: str, form: FormData
) -> tuple[int, str] | None:
    """Why the form cannot change the password, with the status to answer; None if it can.
    A wrong current password counts as a failed sign-in from the address."""
    failures = services(request).auth_failures
    address = request.client.host if request.client else None
    if (refused_for := await failures.refused_for(address)) is not None:
        return 429, refusal(refused_for).capitalize() + "."
    current = form_text(form, "current_password")
    if not await services(request).accounts.verify_password(user, current):
        await failures.failed(address)
        return 400, "That is not your current password."
    new = form_text(form, "new_password")
    if new != form_text(form, "new_password_again"):
        return 400, "The two new passwords differ."
    try:
        check_chosen_password(new)
    except InvalidPassword as error:
        return 400, f"Choose another password: {error}."
    return None


def _password_page(request: Request, status: int = 200, **extra: object) -> Response:
    return render(
        request,
        "password.html",
        status,
        min_length=MIN_CHOSEN_PASSWORD,
        max_length=MAX_CHOSEN_PASSWORD,
        **extra,
    )


async def _apps(request: Request, user: str, status: int = 200, **extra: object) -> Response:
    oauth = services(request).oauth
    return render(
        request,
        "apps.html",
        status,
        connected=await oauth.connected_apps(user),
        app_passwords=await oauth.list_app_passwords(user),
        apps=[app for app in await oauth.list_apps() if app.status == "active"],
        **extra,
    )


async def _signin_page(
    request: Request, target: str, status: int = 200, **extra: object
) -> Response:
    """The sign-in form, which goes on to ``target``; "to continue to App" when the target
    is an app's authorization request."""
    return render(
        request,
        "signin.html",
        status,
        next=target,
        app_name=await _app_continued_to(request, target),
        **extra,
    )


async def _app_continued_to(request: Request, target: str) -> str | None:
    """The name of the app whose authorization request ``target`` is, if it is a valid one
    (the very check the authorization page makes)."""
    path, _, query = target.partition("?")
    if path != AUTHORIZE_PATH:
        return None
    authorization = HttpRequest(
        "GET",
        str(request.url.replace(path=path, query=query)),
        request.headers,
        parse_qs(query, keep_blank_values=True),
    )
    try:
        consent = await services(request).oauth.endpoints.consent_request(authorization)
    except AuthorizationRefused:
        return None
    return consent.app_name


def _to_signin(target: str = APPS_PATH) -> Response:
    return RedirectResponse(f"{SIGNIN_PATH}?{urlencode({'next': target})}", 303)
