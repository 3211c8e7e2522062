"""async_uploader: fast, crash-safe, verified bulk uploads of record folders to InvenioRDM.

Public API (everything else is internal)::

    result = await upload_records(UploadConfig(base_url=..., token=..., records_dir=...))
    result = upload_records_sync(config)      # the same, for plain (non-async) code
    report = inspect_records(config)          # what is done, what a run would do (no writes)

The root is lazy: importing ``async_uploader.sandbox`` (a separate server process) loads no
client module, and ``import async_uploader`` itself costs nothing until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# name -> module that defines it
_EXPORTS = {
    "BatchResult": "results",
    "Event": "events",
    "Outcome": "results",
    "RecordResult": "results",
    "Reporter": "events",
    "RetryConfig": "config",
    "ShareMode": "config",
    "UploadConfig": "config",
    "UploaderError": "errors",
    "ValidationLimits": "config",
    "inspect_records": "inspect",
    "upload_records": "pipeline",
    "upload_records_sync": "sync",
}

if TYPE_CHECKING:
    from .config import RetryConfig, ShareMode, UploadConfig, ValidationLimits
    from .errors import UploaderError
    from .events import Event, Reporter
    from .inspect import inspect_records
    from .pipeline import upload_records
    from .results import BatchResult, Outcome, RecordResult
    from .sync import upload_records_sync


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'async_uploader' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "BatchResult",
    "Event",
    "Outcome",
    "RecordResult",
    "Reporter",
    "RetryConfig",
    "ShareMode",
    "UploadConfig",
    "UploaderError",
    "ValidationLimits",
    "__version__",
    "inspect_records",
    "upload_records",
    "upload_records_sync",
]
