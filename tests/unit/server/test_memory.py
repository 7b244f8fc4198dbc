"""The server process's heap: collector settings and handing freed memory back."""

import gc
import platform

from chinwag.server.memory import (
    YOUNG_GENERATION_THRESHOLD,
    return_free_memory,
    settle_after_start,
)


def test_freed_memory_goes_back_on_glibc_and_nothing_breaks_elsewhere() -> None:
    returned = return_free_memory()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert returned is True
    else:
        assert returned is False


def test_after_start_up_its_objects_are_frozen_and_young_collections_rarer() -> None:
    before = gc.get_threshold()
    started_up = [object(), {"a": [1]}]
    try:
        settle_after_start()

        assert gc.get_freeze_count() > 0
        assert not any(item is started_up for item in gc.get_objects())  # frozen
        assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *before[1:])
        made_later: list[object] = []
        assert any(item is made_later for item in gc.get_objects())  # still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
