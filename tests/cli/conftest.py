"""The ``chinwag`` fixture: the console command in a temporary directory of its own."""

import sys

import pytest
from cli_support import CHINWAG, Chinwag


@pytest.fixture
def chinwag(tmp_path):
    if not CHINWAG.exists():
        pytest.fail(
            f"the chinwag console script is missing next to {sys.executable}: pip install -e ."
        )
    return Chinwag(tmp_path)
