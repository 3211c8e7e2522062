"""``async-uploader validate`` output: each finding once, with its severity said once."""

from __future__ import annotations

import pytest

from async_uploader.cli import main
from tests.conftest import RecordFactory


def test_validate_says_warning_and_error_once(
    make_records: RecordFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_records(2)
    (root / "0" / "empty.dat").write_bytes(b"")  # a warning in a valid folder
    (root / "1" / "empty.dat").write_bytes(b"")  # a warning beside an error
    (root / "1" / "record_metadata.json").write_text("{")
    assert main(["validate", str(root)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "warning: folder 0, empty.dat: file is empty" in out[0]
    assert out[0].startswith("warning: folder 0") and "warning: warning" not in "\n".join(out)
    assert any(line.startswith("warning: folder 1, empty.dat") for line in out)
    assert any(
        line.startswith("error: folder 1, record_metadata.json: invalid JSON") for line in out
    )
    assert out[-1] == "1 valid, 1 invalid, of 2 record folders"
