"""The sign-up page of an invitation, ``/invite/{token}``: served only with ``[auth]
invitations = true`` (else every such path is 404, as for a page that does not exist).

The form asks for a username (RFC 7622's PRECIS rules, as everywhere) and a password
twice; a used, expired or unknown invitation gets a page that says so, and no form.
Signing up spends the invitation, creates the account and signs the browser in.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from chinwag.network.accounts import (
    MAX_CHOSEN_PASSWORD,
    MIN_CHOSEN_PASSWORD,
    AccountExists,
    InvalidPassword,
    InvalidUsername,
)
from chinwag.network.invitations import (
    InvitationService,
    InvitationState,
    InvitationUnusable,
)
from chinwag.store.invitations import InvitationRecord
from chinwag.web.account_routes import WELCOME_PATH
from chinwag.web.pages import checked_form, error_page, form_text, render, services, sign_in

log = logging.getLogger(__name__)

INVITE_PATH = "/invite/{token}"


async def signup_page(request: Request) -> Response:
    invitations, token = _invitation_of(request)
    try:
        record = await invitations.check(token)
    except InvitationUnusable as unusable:
        return _unusable(request, unusable)
    return _form(request, token, record)


async def sign_up(request: Request) -> Response:
    invitations, token = _invitation_of(request)
    form = await checked_form(request)
    name, password = form_text(form, "username"), form_text(form, "password")
    try:
        record = await invitations.check(token)
    except InvitationUnusable as unusable:
        return _unusable(request, unusable)
    if password != form_text(form, "password_again"):
        return _form(request, token, record, 400, name, "The two passwords differ.")
    try:
        username = await invitations.sign_up(token, name, password)
    except InvitationUnusable as unusable:
        return _unusable(request, unusable)
    except (InvalidUsername, InvalidPassword, AccountExists) as error:
        message = f"{str(error)[0].upper()}{str(error)[1:]}."
        return _form(request, token, record, 400, name, message)
    await sign_in(request, username)
    log.info("%s signed up with an invitation from %s", username, record.created_by)
    return RedirectResponse(WELCOME_PATH, 303)


ROUTES = [
    Route(INVITE_PATH, signup_page, methods=["GET"]),
    Route(INVITE_PATH, sign_up, methods=["POST"]),
]


def _invitation_of(request: Request) -> tuple[InvitationService, str]:
    invitations = services(request).invitations
    if invitations is None:
        raise HTTPException(404, "There is no page at this address.")
    return invitations, request.path_params["token"]


def _form(
    request: Request,
    token: str,
    record: InvitationRecord,
    status: int = 200,
    username: str = "",
    error: str = "",
) -> Response:
    return render(
        request,
        "signup.html",
        status,
        token=token,
        expires_at=record.expires_at,
        username=username,
        error=error,
        min_length=MIN_CHOSEN_PASSWORD,
        max_length=MAX_CHOSEN_PASSWORD,
    )


def _unusable(request: Request, unusable: InvitationUnusable) -> Response:
    again = "Ask whoever sent it to you for a new one."
    if unusable.state is InvitationState.USED:
        return error_page(
            request, 410, "Invitation used", f"This invitation has made its account. {again}"
        )
    if unusable.state is InvitationState.EXPIRED:
        assert unusable.record is not None
        expired = unusable.record.expires_at.strftime("%Y-%m-%d %H:%M")
        return error_page(
            request, 410, "Invitation expired", f"This invitation expired on {expired} UTC. {again}"
        )
    return error_page(
        request,
        404,
        "No such invitation",
        "This link names no invitation: check that you have all of it.",
    )
