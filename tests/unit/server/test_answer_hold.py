"""``OutputBatch`` holds each answer to a client's <r/> (XEP-0198) for the whole of
``ANSWER_HOLD_SECONDS`` from when it was held, not until a timer armed for an earlier
one fires."""

from __future__ import annotations

import asyncio

import pytest

from chinwag.server import c2s

HOLD = 0.2


class Held:
    """Stands for a connection: notes when its held answers are written."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.written: list[float] = []

    def answer_held(self) -> None:
        self.written.append(self.loop.time())


async def test_each_answer_waits_its_own_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(c2s, "ANSWER_HOLD_SECONDS", HOLD)
    loop = asyncio.get_running_loop()
    batch = c2s.OutputBatch()
    first, second, third = Held(loop), Held(loop), Held(loop)
    start = loop.time()

    batch.hold_answer(first)  # type: ignore[arg-type]
    await asyncio.sleep(HOLD / 2)
    batch.hold_answer(second)  # type: ignore[arg-type]
    await asyncio.sleep(HOLD)
    batch.hold_answer(third)  # type: ignore[arg-type]
    await asyncio.sleep(HOLD * 1.5)

    waited = [
        round(held.written[0] - start - offset, 2)
        for held, offset in ((first, 0), (second, HOLD / 2), (third, HOLD * 1.5))
    ]
    assert all(wait >= HOLD - 0.01 for wait in waited), waited  # the second's was HOLD / 2
    assert [len(held.written) for held in (first, second, third)] == [1, 1, 1]
