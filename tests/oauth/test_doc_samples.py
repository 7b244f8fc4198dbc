"""The guides' sample values look like what chinwag makes, so that a reader recognises them."""

import re
from pathlib import Path

from chinwag.oauth.tokens import new_client_id

REPO = Path(__file__).resolve().parents[2]
GUIDES = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *REPO.glob("examples/*/*.md")]
SAMPLE = re.compile(r'"client_id": ?"([^"]*)"|client_id=(\w+)')
"""A client_id in a JSON sample, or in a URL's query."""


def test_sample_client_ids_look_like_the_ones_chinwag_makes():
    real = re.compile(f"[0-9a-f]{{{len(new_client_id())}}}")
    assert real.fullmatch(new_client_id())
    found = [
        value for guide in GUIDES for pair in SAMPLE.findall(guide.read_text()) for value in pair
    ]
    # Placeholders are written in capitals (CLIENT_ID); anything else is a sample.
    samples = [value for value in found if value and not value.isupper()]

    assert samples, "the guides lost their sample client_id"
    assert [sample for sample in samples if not real.fullmatch(sample)] == []
