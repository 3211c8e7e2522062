"""Stage 2: refuse, before any request, the record folders the server would refuse anyway.

Only what the InvenioRDM schema requires of every instance is checked (title, creators,
resource type, publication date) plus the file limits; vocabulary ids and instance-specific
rules are left to the server, whose messages the uploader reports verbatim. Every problem of a
folder is reported at once so one run is enough to fix a folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .config import ValidationLimits
from .discover import METADATA_FILE, Problem, RecordFolder

__all__ = ["ValidRecord", "ValidationLimits", "validate_all", "validate_record"]


@dataclass(frozen=True)
class ValidRecord:
    folder: RecordFolder
    # The parsed draft body, sent unchanged to the server. A plain dict (JSON-serialisable):
    # never mutate it, other stages share it.
    metadata: Mapping[str, Any]
    metadata_sha256: str  # of the raw record_metadata.json bytes (change detection)
    warnings: tuple[Problem, ...] = ()

    @property
    def title(self) -> str:
        return str(self.metadata["metadata"]["title"])

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.folder.files)


_DAY = r"\d{4}(?:-\d{2}(?:-\d{2})?)?"
_EDTF_RE = re.compile(rf"({_DAY})(?:/({_DAY}))?")
_CREATOR_TYPES = ("personal", "organizational")
_ACCESS_VALUES = ("public", "restricted")


class _DuplicateKeys(list[str]):
    """Collects duplicate object keys: json keeps the last value silently, the user may not."""

    def hook(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                self.append(k)
            seen.add(k)
        return dict(pairs)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; write it as a string or a number")


def _valid_day(text: str) -> bool:
    parts = [int(p) for p in text.split("-")]
    try:
        dt.date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except ValueError:
        return False
    return True


def _edtf_ok(value: str) -> bool:
    m = _EDTF_RE.fullmatch(value)
    if not m or not all(_valid_day(d) for d in m.groups() if d is not None):
        return False
    # Zero-padded ISO days compare correctly as text (shorter = start of that period).
    return m.group(2) is None or m.group(1) <= m.group(2)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _parse(folder: RecordFolder, out: list[Problem]) -> tuple[Any, str] | None:
    """Read and decode record_metadata.json; None (with problems added) if it is unusable."""
    name = folder.name
    try:
        raw = folder.metadata_path.read_bytes()
    except OSError as exc:
        out.append(Problem(name, f"cannot read the file: {exc.strerror}", METADATA_FILE))
        return None
    digest = hashlib.sha256(raw).hexdigest()
    if raw.startswith(b"\xef\xbb\xbf"):
        out.append(
            Problem(
                name,
                "starts with a byte order mark (ignored); save it as plain UTF-8",
                METADATA_FILE,
                "warning",
            )
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        out.append(
            Problem(
                name,
                f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at line {line}, byte offset "
                f"{exc.start}); save the file as UTF-8",
                METADATA_FILE,
            )
        )
        return None
    dups = _DuplicateKeys()
    try:
        body = json.loads(text, object_pairs_hook=dups.hook, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        out.append(
            Problem(
                name,
                f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                METADATA_FILE,
            )
        )
        return None
    except ValueError as exc:  # NaN / Infinity, refused by the server's JSON parser
        out.append(Problem(name, f"invalid JSON: {exc}", METADATA_FILE))
        return None
    except RecursionError:
        out.append(Problem(name, "invalid JSON: nested too deeply", METADATA_FILE))
        return None
    for key in dict.fromkeys(dups):
        out.append(
            Problem(
                name,
                f"key {key!r} appears twice in one object; only the last one is used",
                METADATA_FILE,
                "warning",
            )
        )
    if not isinstance(body, dict):
        out.append(
            Problem(
                name,
                f"the top level must be a JSON object ({{...}}), found {type(body).__name__}",
                METADATA_FILE,
            )
        )
        return None
    return body, digest


def _check_metadata(folder: RecordFolder, body: dict[str, Any], out: list[Problem]) -> None:
    def bad(field: str, message: str) -> None:
        out.append(Problem(folder.name, message, field))

    meta = body.get("metadata")
    if not isinstance(meta, dict):
        what = "missing" if meta is None else "not an object"
        bad(
            "metadata",
            f'{what}; add a "metadata" object with title, creators, '
            "resource_type and publication_date",
        )
        meta = {}

    if not _text(meta.get("title")) or len(meta["title"].strip()) < 3:
        bad("metadata.title", "must be a text of at least 3 characters; add a title")

    creators = meta.get("creators")
    if not isinstance(creators, list) or not creators:
        bad("metadata.creators", "must be a non-empty list; add at least one creator")
        creators = []
    for i, creator in enumerate(creators):
        path = f"metadata.creators.{i}"
        por = creator.get("person_or_org") if isinstance(creator, dict) else None
        if not isinstance(por, dict):
            bad(f"{path}.person_or_org", 'missing; each creator needs a "person_or_org" object')
            continue
        kind = por.get("type")
        if kind not in _CREATOR_TYPES:
            bad(f"{path}.person_or_org.type", 'must be "personal" or "organizational"')
        elif kind == "personal" and not _text(por.get("family_name")):
            bad(f"{path}.person_or_org.family_name", "required for a personal creator; add it")
        elif kind == "organizational" and not _text(por.get("name")):
            bad(f"{path}.person_or_org.name", "required for an organizational creator; add it")

    rtype = meta.get("resource_type")
    if not isinstance(rtype, dict) or not _text(rtype.get("id")):
        bad("metadata.resource_type.id", 'required; add e.g. "resource_type": {"id": "dataset"}')

    date = meta.get("publication_date")
    if date is None:
        bad("metadata.publication_date", 'required; add e.g. "publication_date": "2024-05-14"')
    elif not isinstance(date, str) or not _edtf_ok(date):
        bad(
            "metadata.publication_date",
            f"{date!r} is not a date: use YYYY, YYYY-MM, "
            "YYYY-MM-DD or an interval such as 2020/2021",
        )

    access = body.get("access")
    if access is not None and not isinstance(access, dict):
        bad("access", 'must be an object like {"record": "public", "files": "public"}')
    elif access is not None:
        for part in ("record", "files"):
            if part in access and access[part] not in _ACCESS_VALUES:
                bad(f"access.{part}", 'must be "public" or "restricted"')

    files = body.get("files", {})
    enabled = files.get("enabled", True) if isinstance(files, dict) else None
    if not isinstance(enabled, bool):
        bad("files.enabled", 'must be true or false, e.g. "files": {"enabled": true}')
    elif not enabled and folder.files:
        bad(
            "files.enabled",
            f"is false but the folder holds {len(folder.files)} data file(s): "
            "set it to true, or remove or exclude the files",
        )
    elif enabled and not folder.files:
        bad(
            "files.enabled",
            "is true but the folder holds no data file: add files, or set it "
            "to false for a metadata-only record",
        )


def _key_problem(key: str, max_len: int) -> str | None:
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # undecodable bytes in the name (surrogate escapes)
        return "file name is not valid UTF-8; rename the file"
    if size > max_len:
        return f"file name is {size} bytes long in UTF-8, over the limit of {max_len}; shorten it"
    if any(c < " " or "\x7f" <= c <= "\x9f" for c in key):
        return "file name contains control characters; rename the file"
    if key.startswith("/") or ".." in key.split("/"):
        return "file name has a leading '/' or a '..' segment; rename the file"
    return None


def _unreadable(path: str) -> str | None:
    """Open and close the file for real: permission bits lie when running as root."""
    try:
        # O_NONBLOCK: a FIFO put in place of the file must not hang us.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return f"cannot open the file for reading: {exc.strerror}; fix it or exclude the file"
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if not stat.S_ISREG(mode):
        return "is no longer a regular file; replace it or exclude it"
    return None


def _check_files(folder: RecordFolder, limits: ValidationLimits, out: list[Problem]) -> None:
    name = folder.name
    if len(folder.files) > limits.max_files:
        out.append(
            Problem(
                name,
                f"{len(folder.files)} data files, over the limit of {limits.max_files} "
                "per record; split the record or pack files into an archive",
            )
        )
    for f in folder.files:
        for message in (_key_problem(f.key, limits.max_key_length), _unreadable(str(f.path))):
            if message:
                out.append(Problem(name, message, f.key))
        if limits.max_file_size is not None and f.size > limits.max_file_size:
            out.append(
                Problem(
                    name,
                    f"file is {f.size} bytes, over the limit of {limits.max_file_size} "
                    "bytes per file; split or compress it",
                    f.key,
                )
            )
        if f.size == 0 and limits.empty_files != "allow":
            severity: Literal["error", "warning"] = (
                "error" if limits.empty_files == "error" else "warning"
            )
            out.append(
                Problem(
                    name,
                    "file is empty (0 bytes); some servers (Zenodo) refuse empty "
                    "files: remove or exclude it",
                    f.key,
                    severity,
                )
            )


def validate_record(
    folder: RecordFolder, limits: ValidationLimits | None = None
) -> ValidRecord | tuple[Problem, ...]:
    """A ValidRecord, or every problem found (errors and warnings) if any is an error."""
    limits = limits or ValidationLimits()
    found: list[Problem] = list(folder.problems)
    parsed = _parse(folder, found)
    if parsed is not None:
        _check_metadata(folder, parsed[0], found)
    _check_files(folder, limits, found)
    if parsed is None or any(p.severity == "error" for p in found):
        return tuple(found)
    return ValidRecord(folder, parsed[0], parsed[1], tuple(found))


def validate_all(
    folders: Sequence[RecordFolder], limits: ValidationLimits | None = None
) -> tuple[list[ValidRecord], list[tuple[RecordFolder, tuple[Problem, ...]]]]:
    """Split folders into valid records and (folder, problems) pairs, keeping their order."""
    limits = limits or ValidationLimits()
    good: list[ValidRecord] = []
    bad: list[tuple[RecordFolder, tuple[Problem, ...]]] = []
    for folder in folders:
        result = validate_record(folder, limits)
        if isinstance(result, ValidRecord):
            good.append(result)
        else:
            bad.append((folder, result))
    return good, bad
