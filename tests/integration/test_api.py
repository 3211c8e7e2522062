"""The Python API: an async entry point, a blocking wrapper, and progress events."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from async_uploader import Outcome, UploadConfig, upload_records, upload_records_sync
from async_uploader.errors import ConfigError
from async_uploader.events import BatchDone, BatchStarted, BytesSent, Event, FileDone, RecordDone
from tests.conftest import RecordFactory


@pytest.mark.anyio
async def test_async_api_emits_progress_events(make_records: RecordFactory) -> None:
    from async_uploader.sandbox import Sandbox, SandboxConfig

    root = make_records(4, files={"a.bin": 300_000, "b.txt": b"hello"})
    events: list[Event] = []
    async with Sandbox(SandboxConfig()) as sb:
        config = UploadConfig(base_url=sb.url, token=sb.token, records_dir=root, chunk_size=65536)
        result = await upload_records(config, reporter=events.append)
    assert result.exit_code == 0
    assert [r.outcome for r in result.records] == [Outcome.PUBLISHED] * 4
    started = [e for e in events if isinstance(e, BatchStarted)]
    assert started and started[0].to_upload == 4 and started[0].total_bytes == 4 * 300_005
    assert sum(e.n for e in events if isinstance(e, BytesSent)) == 4 * 300_005
    assert len([e for e in events if isinstance(e, FileDone)]) == 8
    assert len([e for e in events if isinstance(e, RecordDone)]) == 4
    assert isinstance(events[-1], BatchDone)
    assert len(json.loads((root / "records_links.json").read_text())) == 4


def test_blocking_wrapper_and_config_errors(make_records: RecordFactory, tmp_path: Path) -> None:
    from async_uploader.sandbox import Sandbox, SandboxConfig

    root = make_records(2)
    with Sandbox.in_thread(SandboxConfig()) as sb:
        result = upload_records_sync(
            UploadConfig(base_url=sb.url, token=sb.token, records_dir=root)
        )
    assert result.count(Outcome.PUBLISHED) == 2
    with pytest.raises(ConfigError, match="plain http"):
        upload_records_sync(
            UploadConfig(base_url="http://archive.example.org", token="t", records_dir=root)
        )
    with pytest.raises(ConfigError, match="does not exist"):
        anyio.run(
            upload_records,
            UploadConfig(base_url="https://a.org", token="t", records_dir=tmp_path / "missing"),
        )
