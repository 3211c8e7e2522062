"""Local validation on real folders built in tmp_path (no mocks, no network)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from async_uploader.discover import METADATA_FILE, Problem, RecordFolder, discover
from async_uploader.validate import (
    ValidationLimits,
    ValidRecord,
    validate_all,
    validate_record,
)
from tests.conftest import SEED_RECORDS
from tests.unit.conftest import run_unprivileged

SEED = SEED_RECORDS  # found by the project conftest, beside the checkout
REPO_RECORDS = Path(__file__).resolve().parents[2] / "records"

GOOD: dict[str, Any] = {
    "access": {"record": "public", "files": "public"},
    "files": {"enabled": True},
    "metadata": {
        "creators": [
            {"person_or_org": {"type": "personal", "family_name": "Liot", "given_name": "F"}},
            {"person_or_org": {"type": "organizational", "name": "BIG-MAP"}},
        ],
        "publication_date": "2022-11-28",
        "resource_type": {"id": "dataset"},
        "title": "Test of resistivity of metal A",
        "description": "Values with a minus sign: \u22128",
    },
}


def good() -> dict[str, Any]:
    return copy.deepcopy(GOOD)


def make(
    root: Path,
    metadata: dict[str, Any] | bytes,
    files: dict[str, bytes] | None = None,
    name: str = "0",
) -> RecordFolder:
    folder = root / name
    folder.mkdir(parents=True)
    raw = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    (folder / METADATA_FILE).write_bytes(raw)
    for key, data in ({"data.csv": b"1,2\n"} if files is None else files).items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(data)
    return next(r for r in discover(root) if r.name == name)


def problems_of(result: ValidRecord | tuple[Problem, ...]) -> tuple[Problem, ...]:
    assert not isinstance(result, ValidRecord), "expected the folder to be refused"
    return result


def find(problems: tuple[Problem, ...], key: str | None) -> Problem:
    matches = [p for p in problems if p.key == key]
    assert matches, f"no problem for {key!r} in {[str(p) for p in problems]}"
    return matches[0]


def set_path(body: dict[str, Any], path: str, value: Any) -> None:
    """Set (or, with value ``...``, delete) a dotted path such as ``metadata.creators.1.x``."""
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is ...:
        del node[last]
    else:
        node[last] = value


def test_good_record(tmp_path: Path) -> None:
    record = make(tmp_path, good(), {"data.csv": b"1,2\n", "raw/x.dat": b"abc"})
    result = validate_record(record)
    assert isinstance(result, ValidRecord)
    assert result.folder is record
    assert result.metadata == GOOD  # parsed unchanged, U+2212 kept
    assert result.title == "Test of resistivity of metal A"
    assert result.total_bytes == 7
    assert result.warnings == ()
    raw = record.metadata_path.read_bytes()
    assert result.metadata_sha256 == hashlib.sha256(raw).hexdigest()


def test_sha256_follows_the_raw_bytes(tmp_path: Path) -> None:
    compact = make(tmp_path, json.dumps(GOOD).encode(), name="0")
    pretty = make(tmp_path, json.dumps(GOOD, indent=2).encode(), name="1")
    a, b = validate_record(compact), validate_record(pretty)
    assert isinstance(a, ValidRecord) and isinstance(b, ValidRecord)
    assert a.metadata == b.metadata
    assert a.metadata_sha256 != b.metadata_sha256


@pytest.mark.parametrize(
    ("path", "value", "field", "fragment"),
    [
        ("metadata.title", ..., "metadata.title", "at least 3 characters"),
        ("metadata.title", "ab", "metadata.title", "at least 3 characters"),
        ("metadata.title", "  ab  ", "metadata.title", "at least 3 characters"),
        ("metadata.title", 123, "metadata.title", "at least 3 characters"),
        ("metadata.creators", ..., "metadata.creators", "non-empty list"),
        ("metadata.creators", [], "metadata.creators", "non-empty list"),
        ("metadata.creators", {"a": 1}, "metadata.creators", "non-empty list"),
        (
            "metadata.creators.1.person_or_org.type",
            "robot",
            "metadata.creators.1.person_or_org.type",
            '"personal" or "organizational"',
        ),
        (
            "metadata.creators.0.person_or_org.type",
            ...,
            "metadata.creators.0.person_or_org.type",
            '"personal" or "organizational"',
        ),
        (
            "metadata.creators.0.person_or_org.family_name",
            ...,
            "metadata.creators.0.person_or_org.family_name",
            "required for a personal creator",
        ),
        (
            "metadata.creators.1.person_or_org.name",
            "",
            "metadata.creators.1.person_or_org.name",
            "required for an organizational creator",
        ),
        ("metadata.creators.0", "Liot", "metadata.creators.0.person_or_org", "missing"),
        ("metadata.resource_type", ..., "metadata.resource_type.id", "required"),
        ("metadata.resource_type", {"id": ""}, "metadata.resource_type.id", "required"),
        ("metadata.resource_type", "dataset", "metadata.resource_type.id", "required"),
        ("metadata.publication_date", ..., "metadata.publication_date", "required"),
        ("metadata.publication_date", "2022-13-01", "metadata.publication_date", "not a date"),
        ("metadata.publication_date", "2022-02-30", "metadata.publication_date", "not a date"),
        ("metadata.publication_date", "28/11/2022", "metadata.publication_date", "not a date"),
        ("metadata.publication_date", "2022/2021", "metadata.publication_date", "not a date"),
        ("metadata.publication_date", "2022-11-28T10:00", "metadata.publication_date", "YYYY"),
        ("metadata.publication_date", 2022, "metadata.publication_date", "not a date"),
        ("metadata", ..., "metadata", "missing"),
        ("metadata", [], "metadata", "not an object"),
        ("access", "public", "access", "must be an object"),
        ("access.record", "secret", "access.record", '"public" or "restricted"'),
        ("files", {"enabled": "yes"}, "files.enabled", "true or false"),
        ("files", [], "files.enabled", "true or false"),
        ("files", {"enabled": False}, "files.enabled", "set it to true"),
    ],
)
def test_metadata_rules(tmp_path: Path, path: str, value: Any, field: str, fragment: str) -> None:
    body = good()
    set_path(body, path, value)
    problems = problems_of(validate_record(make(tmp_path, body)))
    problem = find(problems, field)
    assert fragment in problem.message
    assert problem.severity == "error" and problem.folder == "0"
    assert str(problem).startswith(f"folder 0, {field}: ")


@pytest.mark.parametrize(
    "date", ["2022", "2022-11", "2022-11-28", "2020/2021", "2020-01/2021-06-30", "2024-02-29"]
)
def test_edtf_dates_accepted(tmp_path: Path, date: str) -> None:
    body = good()
    body["metadata"]["publication_date"] = date
    assert isinstance(validate_record(make(tmp_path, body)), ValidRecord)


def test_files_enabled_true_without_files(tmp_path: Path) -> None:
    problems = problems_of(validate_record(make(tmp_path, good(), files={})))
    assert "no data file" in find(problems, "files.enabled").message


def test_metadata_only_record_and_default_files_enabled(tmp_path: Path) -> None:
    body = good()
    body["files"]["enabled"] = False
    assert isinstance(validate_record(make(tmp_path, body, files={}, name="0")), ValidRecord)
    del body["files"]  # the server defaults files.enabled to true
    assert isinstance(validate_record(make(tmp_path, body, name="1")), ValidRecord)


def test_every_problem_is_reported(tmp_path: Path) -> None:
    body = {"metadata": {}, "files": {"enabled": True}}
    files = {"empty.dat": b"", "big.dat": b"x" * 11}
    limits = ValidationLimits(max_file_size=10, empty_files="error")
    problems = problems_of(validate_record(make(tmp_path, body, files), limits))
    assert {p.key for p in problems} == {
        "metadata.title",
        "metadata.creators",
        "metadata.resource_type.id",
        "metadata.publication_date",
        "empty.dat",
        "big.dat",
    }


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{\n  "a": 1\n  "b": 2\n}', "invalid JSON at line 3, column 3: Expecting ',' delimiter"),
        (b"", "invalid JSON at line 1, column 1: Expecting value"),
        (b'{"metadata": {"title": "caf\xe9"}}', "not valid UTF-8 (byte 0xe9 at line 1"),
        (json.dumps(GOOD).encode("utf-16"), "not valid UTF-8"),  # json.loads(bytes) takes it
        (b"[1, 2]", "the top level must be a JSON object"),
        (b'"text"', "the top level must be a JSON object"),
        (b'{"metadata": {"x": NaN}}', "NaN is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON"),
    ],
)
def test_metadata_file_syntax(tmp_path: Path, raw: bytes, fragment: str) -> None:
    problems = problems_of(validate_record(make(tmp_path, raw)))
    assert [p.key for p in problems] == [METADATA_FILE]
    assert fragment in problems[0].message


def test_metadata_file_unreadable(tmp_path: Path) -> None:
    record = make(tmp_path, good())
    record.metadata_path.unlink()
    record.metadata_path.mkdir()  # fails as root too
    problem = find(problems_of(validate_record(record)), METADATA_FILE)
    assert "cannot read the file" in problem.message


def test_bom_and_duplicate_keys_are_warnings(tmp_path: Path) -> None:
    text = json.dumps(GOOD)[:-1] + ', "files": {"enabled": true}}'
    result = validate_record(make(tmp_path, b"\xef\xbb\xbf" + text.encode()))
    assert isinstance(result, ValidRecord)
    assert [(p.key, p.severity) for p in result.warnings] == [(METADATA_FILE, "warning")] * 2
    assert "byte order mark" in result.warnings[0].message
    assert "'files' appears twice" in result.warnings[1].message


@pytest.mark.parametrize(
    ("policy", "outcome"), [("allow", "clean"), ("warn", "warning"), ("error", "error")]
)
def test_empty_files_policy(tmp_path: Path, policy: Any, outcome: str) -> None:
    record = make(tmp_path, good(), {"empty.dat": b"", "full.dat": b"1"})
    result = validate_record(record, ValidationLimits(empty_files=policy))
    if outcome == "clean":
        assert isinstance(result, ValidRecord) and result.warnings == ()
        return
    problems = result.warnings if isinstance(result, ValidRecord) else result
    assert (outcome == "warning") == isinstance(result, ValidRecord)
    problem = find(problems, "empty.dat")
    assert problem.severity == outcome and "empty (0 bytes)" in problem.message


@pytest.mark.parametrize(
    ("size", "limit", "ok"), [(10, 10, True), (11, 10, False), (11, None, True)]
)
def test_max_file_size(tmp_path: Path, size: int, limit: int | None, ok: bool) -> None:
    record = make(tmp_path, good(), {"f.bin": b"x" * size})
    result = validate_record(record, ValidationLimits(max_file_size=limit))
    assert isinstance(result, ValidRecord) == ok
    if not ok:
        assert f"over the limit of {limit}" in find(problems_of(result), "f.bin").message


def test_max_files(tmp_path: Path) -> None:
    record = make(tmp_path, good(), {"a": b"1", "b": b"1", "c": b"1"})
    assert isinstance(validate_record(record, ValidationLimits(max_files=3)), ValidRecord)
    problem = find(problems_of(validate_record(record, ValidationLimits(max_files=2))), None)
    assert "3 data files, over the limit of 2" in problem.message


def test_key_length_counts_utf8_bytes(tmp_path: Path) -> None:
    key = "d" * 100 + "/" + "é" * 80  # 181 characters, 261 bytes
    record = make(tmp_path, good(), {key: b"1"})
    problem = find(problems_of(validate_record(record)), key)
    assert "261 bytes long in UTF-8, over the limit of 255" in problem.message
    assert isinstance(validate_record(record, ValidationLimits(max_key_length=261)), ValidRecord)


def test_control_characters_in_name(tmp_path: Path) -> None:
    record = make(tmp_path, good(), {"bad\nname.txt": b"1", "del\x7f.txt": b"1"})
    problems = problems_of(validate_record(record))
    for key in ("bad\nname.txt", "del\x7f.txt"):
        assert "control characters" in find(problems, key).message
    assert all("\n" not in str(p) for p in problems)


def test_name_not_utf8(tmp_path: Path) -> None:
    record = make(tmp_path, good(), files={})
    with open(os.fsencode(record.path) + b"/caf\xe9.txt", "wb") as fh:
        fh.write(b"1")
    [record] = discover(tmp_path)
    [problem] = problems_of(validate_record(record))
    assert "not valid UTF-8" in problem.message


@pytest.mark.parametrize("key", ["../escape.txt", "raw/../../x", "/etc/passwd"])
def test_unsafe_keys(tmp_path: Path, key: str) -> None:
    # Discovery never makes such keys; a caller building RecordFolders itself might.
    record = make(tmp_path, good())
    real = record.files[0]
    record = dataclasses.replace(record, files=(dataclasses.replace(real, key=key),))
    assert (
        "leading '/' or a '..' segment" in find(problems_of(validate_record(record)), key).message
    )


def swap_for_missing(path: Path) -> None:
    path.unlink()


def swap_for_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def swap_for_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize(
    ("swap", "fragment"),
    [
        (swap_for_missing, "cannot open the file for reading: No such file"),
        (swap_for_fifo, "no longer a regular file"),  # must not hang either
        (swap_for_dir, "no longer a regular file"),
    ],
)
def test_file_changed_since_discovery(
    tmp_path: Path, swap: Callable[[Path], None], fragment: str
) -> None:
    record = make(tmp_path, good(), {"a.dat": b"1", "b.dat": b"2"})
    swap(record.files[0].path)
    [problem] = problems_of(validate_record(record))
    assert problem.key == "a.dat" and fragment in problem.message


def test_file_without_read_permission(open_tmp: Path) -> None:
    record = make(open_tmp, good(), {"a.dat": b"1", "secret.dat": b"2"})
    record.files[1].path.chmod(0)
    problems = problems_of(run_unprivileged(lambda: validate_record(record)))
    assert [p.key for p in problems] == ["secret.dat"]
    assert "cannot open the file for reading: Permission denied" in problems[0].message


def test_discovery_problems_are_carried_over(tmp_path: Path) -> None:
    record = make(tmp_path, good())
    (record.path / "link").symlink_to("/etc/hostname")
    [record] = discover(tmp_path)
    problem = find(problems_of(validate_record(record)), "link")
    assert "outside the record folder" in problem.message


def test_discovery_warning_stays_a_warning(tmp_path: Path) -> None:
    record = make(tmp_path, good())
    os.mkfifo(record.path / "pipe")
    [record] = discover(tmp_path)
    result = validate_record(record)
    assert isinstance(result, ValidRecord)
    assert [p.key for p in result.warnings] == ["pipe"]


def test_validate_all_splits_and_keeps_order(tmp_path: Path) -> None:
    bad = good()
    bad["metadata"]["title"] = "x"
    make(tmp_path, good(), name="0")
    make(tmp_path, bad, name="1")
    make(tmp_path, good(), name="2")
    make(tmp_path, b"{", name="10")
    folders = discover(tmp_path)
    valid, refused = validate_all(folders)
    assert [r.folder.name for r in valid] == ["0", "2"]
    assert [(f.name, [p.key for p in ps]) for f, ps in refused] == [
        ("1", ["metadata.title"]),
        ("10", [METADATA_FILE]),
    ]


def test_seed_records_are_clean() -> None:
    valid, refused = validate_all(discover(SEED))
    assert refused == []
    assert [(r.folder.name, r.warnings) for r in valid] == [("0", ()), ("1", ())]
    assert valid[1].title == "Test of resistivity of metal B"
    assert valid[1].total_bytes == 1160 + 874


def test_repo_records_are_clean_and_cover_the_cases() -> None:
    valid, refused = validate_all(discover(REPO_RECORDS))
    assert refused == []
    assert len(valid) >= 4
    assert all(r.warnings == () for r in valid)
    assert not (REPO_RECORDS / "records_links.json").exists()
    keys = [f.key for r in valid for f in r.folder.files]
    assert any("/" in k for k in keys), "a record with a sub-folder"
    assert any(not k.isascii() for k in keys), "a record with a non-ASCII file name"
    assert any(3_000_000 <= r.total_bytes <= 5_000_000 for r in valid), "a multi-MB record"
    for r in valid:
        meta = r.metadata["metadata"]
        assert meta["resource_type"] == {"id": "dataset"}
        assert meta["description"] and meta["publisher"]
        assert r.metadata["access"] == {"record": "public", "files": "public"}
        affiliations = [a for c in meta["creators"] for a in c.get("affiliations", [])]
        assert all(a == {"id": "01ggx4157"} for a in affiliations)
