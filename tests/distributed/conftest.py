"""Runs shared by several files of tests/distributed (start-up is most of their cost)."""

import pytest


@pytest.fixture(scope="session")
def layout_runs(tmp_path_factory):
    """Every layout's training, checkpoints and loads (layout_runs.py), for test_parallel.py and
    test_load_everywhere.py."""
    from tests.distributed.layout_runs import build

    return build(tmp_path_factory.mktemp("layouts"))
