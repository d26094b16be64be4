"""Runs shared by several files of tests/distributed (start-up is most of their cost)."""

import pytest


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory):
    """The runs of shared_runs.py: every layout's training, checkpoints and loads, the shared save folders and
    the in-loop downstream evaluations, each case's records in the returned folder."""
    from tests.distributed.shared_runs import build

    return build(tmp_path_factory.mktemp("shared_runs"))
