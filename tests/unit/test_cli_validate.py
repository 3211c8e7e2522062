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


def test_a_mistyped_option_never_echoes_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["upload", "records", "--token", "sekrit-token-value", "--tok=sekrit-2"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--token" in err and "--tok" in err and "sekrit" not in err
    with pytest.raises(SystemExit):  # abbreviations are off: not read as --token-file
        main(["upload", "records", "--token-f", "x"])
