"""The trainer's tests share one record store fixture over ``records_url`` (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trainer.store import RecordStore


@pytest.fixture
async def records(records_url: str) -> AsyncIterator[RecordStore]:
    store = RecordStore(records_url)
    yield store
    await store.aclose()
