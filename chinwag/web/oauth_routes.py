"""The OAuth endpoints: authorization (with its sign-in and consent pages), token,
revocation, introspection and metadata.

The protocol is Authlib's, behind ``OAuthService.endpoints``; these routes only
translate Starlette requests and responses, and run the pages in between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chinwag.oauth.scopes import describe
from chinwag.oauth.server import (
    AUTHORIZE_PATH,
    INTROSPECT_PATH,
    METADATA_PATH,
    REVOKE_PATH,
    TOKEN_PATH,
    AuthorizationRefused,
    ConsentRequest,
    HttpRequest,
    HttpResponse,
)
from chinwag.web.pages import (
    checked_form,
    error_page,
    form_text,
    public_url,
    render,
    services,
    signed_in,
)


async def authorize(request: Request) -> Response:
    """GET asks for sign-in or consent (or, remembered, grants at once); POST decides."""
    form = await checked_form(request) if request.method == "POST" else None
    oauth = services(request).oauth
    http = _http_request(request, _multi(request.query_params.multi_items()))
    try:
        consent = await oauth.endpoints.consent_request(http)
        user = signed_in(request)
        if user is None:
            return render(request, "signin.html", next=_here(request), app_name=consent.app_name)
        if form is not None:
            return await _decide(request, http, consent, user, form)
        if await oauth.remembered(user, consent.client_id, consent.scopes):
            return _response(await oauth.endpoints.authorize(http, user))
        return render(
            request,
            "consent.html",
            consent=consent,
            scopes=describe(consent.scopes),
            action=_here(request),
        )
    except AuthorizationRefused as refused:
        if refused.redirect is not None:
            return _response(refused.redirect)
        return error_page(
            request, 400, "This app's request cannot go on", refused.description, refused.error
        )


async def _decide(
    request: Request, http: HttpRequest, consent: ConsentRequest, user: str, form: FormData
) -> Response:
    oauth = services(request).oauth
    if form_text(form, "decision") != "approve":
        return _response(await oauth.endpoints.authorize(http, None))
    remember = form_text(form, "remember") == "yes"
    await oauth.record_consent(user, consent.client_id, consent.scopes, remember)
    return _response(await oauth.endpoints.authorize(http, user))


async def token(request: Request) -> Response:
    return _response(await services(request).oauth.endpoints.token(await _form_request(request)))


async def revoke(request: Request) -> Response:
    return _response(await services(request).oauth.endpoints.revoke(await _form_request(request)))


async def introspect(request: Request) -> Response:
    endpoints = services(request).oauth.endpoints
    return _response(await endpoints.introspect(await _form_request(request)))


async def metadata(request: Request) -> Response:
    return JSONResponse(services(request).oauth.endpoints.metadata(public_url(request)))


ROUTES = [
    Route(AUTHORIZE_PATH, authorize, methods=["GET", "POST"]),
    Route(TOKEN_PATH, token, methods=["POST"]),
    Route(REVOKE_PATH, revoke, methods=["POST"]),
    Route(INTROSPECT_PATH, introspect, methods=["POST"]),
    Route(METADATA_PATH, metadata, methods=["GET"]),
]


async def _form_request(request: Request) -> HttpRequest:
    form = await request.form()
    fields = [(key, value) for key, value in form.multi_items() if isinstance(value, str)]
    return _http_request(request, _multi(fields))


def _http_request(request: Request, params: Mapping[str, Sequence[str]]) -> HttpRequest:
    return HttpRequest(request.method, str(request.url), request.headers, params)


def _multi(items: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in items:
        params.setdefault(key, []).append(value)
    return params


def _here(request: Request) -> str:
    """This page's path and query, to come back to or post to."""
    query = request.url.query
    return f"{request.url.path}?{query}" if query else request.url.path


def _response(http: HttpResponse) -> Response:
    return Response(http.body, http.status, headers=dict(http.headers))
