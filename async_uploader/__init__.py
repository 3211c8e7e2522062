"""async_uploader: fast, crash-safe, verified bulk uploads of record folders to InvenioRDM.

Public API (everything else is internal)::

    result = await upload_records(UploadConfig(base_url=..., token=..., records_dir=...))
    result = upload_records_sync(config)      # the same, for plain (non-async) code
"""

from __future__ import annotations

import anyio

from .config import ShareMode, UploadConfig, __version__
from .errors import UploaderError
from .events import Event, Reporter
from .pipeline import upload_records
from .results import BatchResult, Outcome, RecordResult


def upload_records_sync(config: UploadConfig, *, reporter: Reporter | None = None) -> BatchResult:
    """Blocking wrapper around ``upload_records`` (runs its own event loop)."""

    async def _run() -> BatchResult:
        if reporter is None:
            return await upload_records(config)
        return await upload_records(config, reporter=reporter)

    return anyio.run(_run)


__all__ = [
    "BatchResult",
    "Event",
    "Outcome",
    "RecordResult",
    "Reporter",
    "ShareMode",
    "UploadConfig",
    "UploaderError",
    "__version__",
    "upload_records",
    "upload_records_sync",
]
