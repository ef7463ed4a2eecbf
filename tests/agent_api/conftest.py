"""The running API fixture of these tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent_api.api_site import ApiSite, running_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiSite]:
    async with running_api(tmp_path / "site") as site:
        yield site
