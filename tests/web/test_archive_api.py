"""The REST API's message archive (``/api/v1/me/archive``, scope ``wl.archive``), in
process over a real store: scope, pages both ways, filters, and bad parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from chinwag.store.archive import NewArchivedMessage, SqlArchiveRepository, id_at, visible_id
from chinwag.web.app import build_web_app

from .conftest import BASE_URL, Site
from .test_api import bearer, token_for

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def v(n: int) -> str:
    """The id of message ``n``."""
    return visible_id(id_at(T0 + timedelta(minutes=n)))


INSUFFICIENT_SCOPE = 'Bearer realm="chinwag", error="insufficient_scope", scope="wl.archive"'


@pytest.fixture
async def archive_api(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    """The API with alice's archive: m1..m5 with bob (m2 from bob/phone), sent on even n."""
    archive = SqlArchiveRepository(site.database)
    await archive.append(
        [
            NewArchivedMessage(
                "alice",
                id_at(T0 + timedelta(minutes=n)),
                "bob@localhost",
                "phone" if n == 2 else "desk",
                n % 2 == 0,
                f"<message xmlns='jabber:client' type='chat'><body>m{n}</body></message>",
            )
            for n in range(1, 6)
        ]
    )
    app = build_web_app(site.settings, site.accounts, site.oauth, archive=archive)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def bodies(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [message["body"] for message in response.json()["messages"]]


async def test_the_archive_needs_a_token_with_wl_archive(site: Site, archive_api) -> None:
    basic = bearer(await token_for(site.oauth, "alice", "wl.basic wl.blocking"))

    missing = await archive_api.get("/api/v1/me/archive")
    lacking = await archive_api.get("/api/v1/me/archive", headers=basic)

    assert missing.status_code == 401 and "wl.archive" in missing.json()["message"]
    assert lacking.status_code == 403
    assert lacking.headers["www-authenticate"] == INSUFFICIENT_SCOPE


async def test_an_app_pages_back_from_the_newest(site: Site, archive_api) -> None:
    headers = bearer(await token_for(site.oauth, "alice", "wl.archive"))

    newest = await archive_api.get("/api/v1/me/archive?max=2", headers=headers)
    page = newest.json()
    before = await archive_api.get(
        f"/api/v1/me/archive?max=2&before={page['first']}", headers=headers
    )
    oldest = await archive_api.get(
        f"/api/v1/me/archive?max=2&before={before.json()['first']}", headers=headers
    )
    forwards = await archive_api.get(f"/api/v1/me/archive?max=10&after={v(3)}", headers=headers)

    assert bodies(newest) == ["m4", "m5"]
    assert newest.headers["cache-control"] == "no-store"
    assert page["messages"][0] == {
        "id": v(4),
        "at": "2026-12-01T12:04:00Z",
        "with": "bob@localhost/desk",
        "direction": "out",
        "type": "chat",
        "body": "m4",
    }
    assert (page["first"], page["last"], page["count"], page["complete"]) == (
        v(4),
        v(5),
        5,
        False,
    )
    assert bodies(before) == ["m2", "m3"] and not before.json()["complete"]
    assert bodies(oldest) == ["m1"] and oldest.json()["complete"]
    assert bodies(forwards) == ["m4", "m5"] and forwards.json()["complete"]


async def test_filters_and_bad_parameters(site: Site, archive_api) -> None:
    headers = bearer(await token_for(site.oauth, "alice", "wl.archive"))
    base = "/api/v1/me/archive"

    by_full = await archive_api.get(f"{base}?with=bob@localhost/phone", headers=headers)
    timed = await archive_api.get(
        f"{base}?start=2026-12-01T12:02:00%2B00:00&end=2026-12-01T12:03:00Z", headers=headers
    )
    bobs = await archive_api.get(
        base, headers=bearer(await token_for(site.oauth, "bob", "wl.archive"))
    )

    assert bodies(by_full) == ["m2"]
    assert bodies(timed) == ["m2", "m3"]
    assert bodies(bobs) == [] and bobs.json()["complete"]
    capped = await archive_api.get(f"{base}?max=100000", headers=headers)
    assert len(bodies(capped)) == 5
    for query in ("max=0", "max=-1", "max=x", "with=@", "start=yesterday", "end=2026-12-01"):
        bad = await archive_api.get(f"{base}?{query}", headers=headers)
        assert (bad.status_code, bad.json()["error"]) == (400, "bad_request"), query
    unknown = await archive_api.get(f"{base}?after=nope", headers=headers)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_id")


async def test_a_server_without_the_archive_says_so(site: Site, api) -> None:
    headers = bearer(await token_for(site.oauth, "alice", "wl.archive"))

    response = await api.get("/api/v1/me/archive", headers=headers)

    assert (response.status_code, response.json()["error"]) == (503, "unavailable")
