"""Fixtures: an emulated API server with a client (``cluster``) and the operator (``run_operator``).

The helpers live in ``operator_harness`` so the end-to-end test can use them too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from operator_harness import FAST, Cluster, OperatorFactory, emulated_cluster, running_operator

from codeintel.operator.settings import OperatorSettings


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with emulated_cluster() as c:
        yield c


@pytest.fixture
def run_operator(cluster: Cluster) -> OperatorFactory:
    """``async with run_operator(): ...`` runs kopf with our registry against the emulator."""

    def running(settings: OperatorSettings = FAST) -> contextlib.AbstractAsyncContextManager[None]:
        return running_operator(cluster, settings)

    return running
