"""Every contract scenario against the sandbox (the same list runs against a real server)."""

from __future__ import annotations

import aiohttp
import pytest
from contract.scenarios import Scenario, Target, all_scenarios

from async_uploader.sandbox import Sandbox, SandboxConfig


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "scenario"), all_scenarios(), ids=[n for n, _ in all_scenarios()])
async def test_contract_scenario(name: str, scenario: Scenario) -> None:
    async with Sandbox(SandboxConfig()) as sb, aiohttp.ClientSession() as session:
        observed = await scenario(Target(base_url=sb.url, token=sb.token), session)
    assert isinstance(observed, dict) and "skipped" not in observed, (name, observed)
