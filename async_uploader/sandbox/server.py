"""``Sandbox``: run the app on a loopback port, in the caller's loop or in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from .app import create_app
from .faults import FaultPlan
from .state import SandboxConfig, SandboxState

T = TypeVar("T")


class Sandbox:
    """A running sandbox. Use ``async with Sandbox(cfg) as sb`` or ``Sandbox.in_thread(cfg)``."""

    def __init__(
        self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or SandboxConfig()
        self.host = host
        self.port = port
        self.state = SandboxState(self.config)
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.state.base_url

    @property
    def token(self) -> str:
        return self.state.token

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # A test server: do not wait long for handlers stuck in a fault (a stalled upload).
        runner = web.AppRunner(
            create_app(self.state), access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.port = address[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.state.base_url = f"http://{host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.state.close()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # thread-safe access ------------------------------------------------------------
    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the sandbox's loop when called from another thread."""
        loop = self._loop
        if self._thread is None or loop is None or threading.current_thread() is self._thread:
            return fn()

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), loop).result(timeout=30)

    def stats(self) -> dict[str, Any]:
        return self._call(self.state.stats_dict)

    def reset_stats(self) -> None:
        self._call(self.state.reset_stats)

    def set_faults(self, plan: FaultPlan | Mapping[str, Any] | None) -> None:
        coerced = FaultPlan.coerce(plan)
        self._call(lambda: self.state.set_faults(coerced))

    def records(self) -> list[dict[str, Any]]:
        return self._call(self.state.records_list)

    def set_token_valid(self, valid: bool) -> None:
        """Revoke (False) or restore the token: a revoked token makes the caller anonymous."""

        def apply() -> None:
            self.state.token_valid = valid

        self._call(apply)

    @classmethod
    @contextlib.contextmanager
    def in_thread(
        cls, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> Iterator[Sandbox]:
        """Serve from a background thread with its own event loop (for sync callers)."""
        sb = cls(config, host, port)
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(sb.start())
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(sb.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        thread = threading.Thread(target=run, name="sandbox", daemon=True)
        sb._thread = thread
        thread.start()
        started.wait()
        if failure:
            thread.join()
            loop.close()
            raise failure[0]
        try:
            yield sb
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
