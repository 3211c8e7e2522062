"""Fixtures for the sandbox's own tests: a sandbox per test, over real loopback sockets."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from async_uploader.sandbox import Sandbox, SandboxConfig

# tests/ on sys.path so that ``contract.scenarios`` imports whatever the rootdir layout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SandboxFactory = Callable[..., AbstractAsyncContextManager[tuple[Sandbox, aiohttp.ClientSession]]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def running() -> SandboxFactory:
    """``async with running(profile=...) as (sb, session)``: session sends the token."""

    @asynccontextmanager
    async def make(**config: Any) -> AsyncIterator[tuple[Sandbox, aiohttp.ClientSession]]:
        async with Sandbox(SandboxConfig(**config)) as sb:
            headers = {"Authorization": f"Bearer {sb.token}"}
            async with aiohttp.ClientSession(headers=headers) as session:
                yield sb, session

    return make
