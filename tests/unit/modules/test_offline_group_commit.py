"""GroupCommit: offline stores that arrive close together share one repository call."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from chinwag.modules.offline import GroupCommit
from chinwag.store.offline import NewOfflineMessage, StoreResult

QUOTA = 7


def new(text: str) -> NewOfflineMessage:
    return NewOfflineMessage("bob", text, datetime.now(UTC))


class Repository:
    """Records each batch; refuses stanzas starting with 'refuse', fails those with 'fail',
    and fails the next ``failures_left`` calls whatever they hold."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failures_left = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def store_many(
        self, messages: Sequence[NewOfflineMessage], quota: int
    ) -> list[StoreResult]:
        assert quota == QUOTA
        self.batches.append([message.stanza for message in messages])
        await self.gate.wait()
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("deadlock detected")
        if any(message.stanza.startswith("fail") for message in messages):
            raise RuntimeError("the database went away")
        return [
            StoreResult.QUOTA_EXCEEDED
            if message.stanza.startswith("refuse")
            else StoreResult.STORED
            for message in messages
        ]


@pytest.fixture
def repository() -> Repository:
    return Repository()


@pytest.fixture
def commits(repository: Repository) -> GroupCommit:
    tasks: set[asyncio.Task[None]] = set()

    def spawn(work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return GroupCommit(repository, QUOTA, spawn)  # type: ignore[arg-type]


async def turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_lone_message_is_stored_at_once_without_a_timer(
    commits: GroupCommit, repository: Repository
) -> None:
    outcome = commits.submit(new("alone"))

    await turns(3)  # no clock time passes: a timer would not have fired yet

    assert outcome.done()
    assert outcome.result() is StoreResult.STORED
    assert repository.batches == [["alone"]]


async def test_messages_of_one_turn_share_a_batch_in_arrival_order(
    commits: GroupCommit, repository: Repository
) -> None:
    outcomes = [commits.submit(new(text)) for text in ("a", "refuse-b", "c")]

    results = await asyncio.gather(*outcomes)

    assert repository.batches == [["a", "refuse-b", "c"]]
    assert results == [StoreResult.STORED, StoreResult.QUOTA_EXCEEDED, StoreResult.STORED]


async def test_messages_arriving_during_a_transaction_make_the_next_batch(
    commits: GroupCommit, repository: Repository
) -> None:
    repository.gate.clear()
    first = commits.submit(new("first"))
    await turns(3)  # the first batch is in flight
    later = [commits.submit(new(text)) for text in ("second", "third")]
    await turns(3)

    assert not first.done() and not any(outcome.done() for outcome in later)
    assert repository.batches == [["first"]]

    repository.gate.set()
    await asyncio.gather(first, *later)

    assert repository.batches == [["first"], ["second", "third"]]


async def test_a_failed_batch_is_stored_again_one_message_at_a_time(
    commits: GroupCommit, repository: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = [commits.submit(new(text)) for text in ("innocent", "fail", "refuse-c", "d")]

    results = await asyncio.gather(*outcomes)

    assert results == [StoreResult.STORED, None, StoreResult.QUOTA_EXCEEDED, StoreResult.STORED]
    assert repository.batches == [
        ["innocent", "fail", "refuse-c", "d"],
        ["innocent"],
        ["fail"],
        ["refuse-c"],
        ["d"],
    ]
    assert "storing a batch of 4 offline messages failed" in caplog.text
    assert "storing an offline message for bob failed" in caplog.text


async def test_a_batch_that_failed_in_passing_stores_every_message(
    commits: GroupCommit, repository: Repository
) -> None:
    repository.failures_left = 1  # say, a deadlock with another process
    outcomes = [commits.submit(new(text)) for text in ("a", "b")]

    assert await asyncio.gather(*outcomes) == [StoreResult.STORED, StoreResult.STORED]
    assert repository.batches == [["a", "b"], ["a"], ["b"]]


async def test_a_lone_message_that_fails_is_not_tried_again_and_the_next_batch_goes_on(
    commits: GroupCommit, repository: Repository
) -> None:
    assert await commits.submit(new("fail")) is None
    assert repository.batches == [["fail"]]

    assert await commits.submit(new("after")) is StoreResult.STORED
