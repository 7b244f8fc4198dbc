"""The order of the whole suite: tests marked ``slow`` first, every other test in the
order it was collected. With several workers (``./scripts/test`` runs pytest-xdist,
each file in one worker, handed out in this order: ``--no-loadscope-reorder``) the
longest files start at once, and none is left running alone at the end while the
other workers idle."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: the tests of a file keep their order, and a module-scoped fixture
    # still serves all of its module's tests in a row when the whole module is slow.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
