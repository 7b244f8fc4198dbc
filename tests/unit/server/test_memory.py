"""Handing freed memory back to the system."""

import platform

from chinwag.server.memory import return_free_memory


def test_freed_memory_goes_back_on_glibc_and_nothing_breaks_elsewhere() -> None:
    returned = return_free_memory()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert returned is True
    else:
        assert returned is False
