"""Blocking entry points for plain (non-async) code."""

from __future__ import annotations

import anyio

from .config import UploadConfig
from .events import Reporter, no_reporter
from .pipeline import upload_records
from .results import BatchResult


def upload_records_sync(config: UploadConfig, *, reporter: Reporter = no_reporter) -> BatchResult:
    """``upload_records`` in its own event loop."""

    async def run() -> BatchResult:
        return await upload_records(config, reporter=reporter)

    return anyio.run(run)
