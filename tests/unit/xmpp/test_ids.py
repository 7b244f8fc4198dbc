"""Random identifiers from the pooled CSPRNG: the asked length, distinct across the
pool's refills, and never repeated by a forked child."""

from __future__ import annotations

import os
import string

import pytest

from chinwag.xmpp.ids import random_hex


def test_an_id_is_the_hex_of_the_asked_number_of_bytes() -> None:
    for count in (1, 4, 8, 16):
        value = random_hex(count)
        assert len(value) == 2 * count and set(value) <= set(string.hexdigits.lower())


def test_ids_stay_distinct_across_many_refills_of_the_pool() -> None:
    values = [random_hex(8) for _ in range(10_000)]  # ~20 reads of 4 KiB

    assert len(set(values)) == len(values)


def test_an_id_longer_than_the_pool_is_whole() -> None:
    assert len(random_hex(5000)) == 10_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    random_hex(8)  # the pool holds bytes the child would otherwise inherit
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(writer, random_hex(8).encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    child_id = os.read(reader, 64).decode()
    os.close(reader)

    assert child_id and child_id != random_hex(8)
