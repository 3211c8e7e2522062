"""Draft validation the way InvenioRDM does it: soft on save, strict at publish.

On create/update invalid values are dropped and reported in ``errors`` (201/200), while
unknown vocabulary ids and bad ``access`` values are hard 400s with nothing stored. At
publish the same checks run on the stored draft and any error refuses the publish.
Profiles capture the per-instance rules (vanilla InvenioRDM, BIG-MAP Archive, Zenodo).
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from .sanitize import sanitize_metadata

MISSING = "Missing data for required field."
BAD_DATE = "Please provide a valid date or interval."
VALIDATION_MESSAGE = "A validation error occurred."

RESOURCE_TYPES: dict[str, str] = {
    "dataset": "Dataset",
    "publication": "Publication",
    "publication-article": "Journal article",
    "software": "Software",
    "image": "Image",
    "image-figure": "Figure",
    "video": "Video/Audio",
    "presentation": "Presentation",
    "poster": "Poster",
    "lesson": "Lesson",
    "other": "Other",
    "model": "Model",
    "physicalobject": "Physical object",
    "workflow": "Workflow",
}
AFFILIATIONS: dict[str, str] = {
    "01ggx4157": "CERN",
    "05f950310": "Technical University of Denmark",
    "04wxnsj81": "Sorbonne University",
    "02s376052": "Ecole Polytechnique Federale de Lausanne",
    "01nrxwf90": "Uppsala University",
}
_TOP_LEVEL = ("metadata", "access", "files", "pids", "custom_fields")
_ACCESS_VALUES = ("public", "restricted")


@dataclass(frozen=True)
class Profile:
    """Per-instance rules. ``invenio`` is vanilla v14; ``bigmap`` the BIG-MAP Archive, a v12
    instance with its own policies. ``series`` (14 or 12) picks the wire shapes and answers
    that differ between InvenioRDM lines (render.py, the file routes)."""

    name: str
    series: int = 14
    integer_ids: bool = False
    community_required: bool = False  # publish without a community: 403
    description_required: bool = False
    force_restricted: bool = False
    drop_version: bool = False
    allow_metadata_only: bool = True
    allow_restricted_records: bool = True
    allow_empty_files: bool = True
    allow_multipart: bool = True
    default_rate_limit: str | None = None
    doi_prefix: str | None = None


PROFILES: dict[str, Profile] = {
    "invenio": Profile("invenio"),
    "bigmap": Profile(
        "bigmap",
        series=12,
        community_required=True,
        description_required=True,
        force_restricted=True,
        drop_version=True,
        allow_metadata_only=False,
    ),
    "zenodo": Profile(
        "zenodo",
        integer_ids=True,
        allow_metadata_only=False,
        allow_restricted_records=False,
        allow_empty_files=False,
        allow_multipart=False,
        default_rate_limit="100 per 1 minute",
        doi_prefix="10.5281/zenodo",
    ),
}


class HardError(Exception):
    """A refusal with nothing stored: 400 with ``message`` and optional ``errors``."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


@dataclass(frozen=True)
class Loaded:
    """The storable part of a draft body, plus the soft errors found while loading it."""

    metadata: dict[str, Any]
    access: dict[str, Any] | None  # None: not given (PUT keeps the current value)
    files_enabled: bool
    default_preview: str | None
    order: list[str]
    pids: dict[str, Any] | None
    custom_fields: dict[str, Any]
    errors: list[dict[str, Any]]


def _err(errors: list[dict[str, Any]], field: str, message: str) -> None:
    errors.append({"field": field, "messages": [message]})


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def valid_edtf(value: Any) -> bool:
    """A level-0 EDTF date or interval: ``YYYY[-MM[-DD]]`` or ``A/B``."""
    if not isinstance(value, str) or not value:
        return False
    parts = value.split("/")
    if len(parts) > 2:
        return False
    for part in parts:
        match = _DATE.match(part)
        if match is None:
            return False
        year, month, day = match.groups()
        try:
            dt.date(int(year), int(month or 1), int(day or 1))
        except ValueError:
            return False
    return len(parts) == 1 or parts[0] <= parts[1]


def _check_vocabularies(metadata: dict[str, Any]) -> None:
    rtype = metadata.get("resource_type")
    if isinstance(rtype, dict) and "id" in rtype and rtype["id"] not in RESOURCE_TYPES:
        raise HardError(f"Invalid value {rtype['id']}.")
    for creator in metadata.get("creators") or []:
        if not isinstance(creator, dict):
            continue
        for aff in creator.get("affiliations") or []:
            if isinstance(aff, dict) and "id" in aff and aff["id"] not in AFFILIATIONS:
                raise HardError(f"Invalid value {aff['id']}.")


def _clean_creator(raw: Any, path: str, errors: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        _err(errors, path, "Invalid input type.")
        return None
    person = raw.get("person_or_org")
    if not isinstance(person, dict):
        _err(errors, f"{path}.person_or_org", MISSING)
        return None
    kind = person.get("type")
    if kind not in ("personal", "organizational"):
        msg = MISSING if kind is None else "Invalid value. Choose one of: organizational, personal."
        _err(errors, f"{path}.person_or_org.type", msg)
        return None
    needed = "family_name" if kind == "personal" else "name"
    if not isinstance(person.get(needed), str) or not person[needed].strip():
        _err(errors, f"{path}.person_or_org.{needed}", MISSING)
        return None
    creator = copy.deepcopy(raw)
    if kind == "personal":
        given = person.get("given_name")
        creator["person_or_org"]["name"] = (
            f"{person['family_name']}, {given}" if given else person["family_name"]
        )
    affiliations = []
    for aff in creator.get("affiliations") or []:
        if isinstance(aff, dict) and "id" in aff:
            aff = {"id": aff["id"], "name": AFFILIATIONS[aff["id"]]}
        affiliations.append(aff)
    if "affiliations" in creator:
        creator["affiliations"] = affiliations
    return creator


# The fields of invenio-rdm-records 14's MetadataSchema; any other key is "Unknown field.".
METADATA_FIELDS = frozenset(
    [
        "additional_descriptions",
        "additional_titles",
        "contributors",
        "copyright",
        "creators",
        "dates",
        "description",
        "formats",
        "funding",
        "identifiers",
        "languages",
        "locations",
        "publication_date",
        "publisher",
        "references",
        "related_identifiers",
        "resource_type",
        "rights",
        "sizes",
        "subjects",
        "title",
        "version",
    ]
)


def clean_metadata(raw: Any, profile: Profile, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Soft-validate ``metadata``; invalid values are dropped and reported."""
    if not isinstance(raw, dict):
        if raw is not None:
            _err(errors, "metadata", "Invalid input type.")
        raw = {}
    meta = copy.deepcopy(raw)
    sanitize_metadata(meta)  # loading cleans text first; validation sees the cleaned value
    _check_vocabularies(meta)
    for key in sorted(set(meta) - METADATA_FIELDS):  # v14: a soft error, the key is dropped
        del meta[key]
        _err(errors, f"metadata.{key}", "Unknown field.")
    if profile.drop_version:
        meta.pop("version", None)
    rtype = meta.get("resource_type")
    if not isinstance(rtype, dict) or "id" not in rtype:
        meta.pop("resource_type", None)
        _err(errors, "metadata.resource_type", MISSING)
    else:
        meta["resource_type"] = {"id": rtype["id"], "title": {"en": RESOURCE_TYPES[rtype["id"]]}}
    title = meta.get("title")
    if title is None:
        _err(errors, "metadata.title", MISSING)
    elif not isinstance(title, str):
        meta.pop("title")
        _err(errors, "metadata.title", "Not a valid string.")
    elif len(title) < 3:
        meta.pop("title")
        _err(errors, "metadata.title", "Shorter than minimum length 3.")
    version = meta.get("version")
    if isinstance(version, str) and len(version) > 191:
        meta.pop("version")
        _err(errors, "metadata.version", "Longer than maximum length 191.")
    date = meta.get("publication_date")
    if date is None:
        _err(errors, "metadata.publication_date", MISSING)
    elif not valid_edtf(date):
        meta.pop("publication_date")
        _err(errors, "metadata.publication_date", BAD_DATE)
    creators = meta.get("creators")
    if not isinstance(creators, list) or not creators:
        meta.pop("creators", None)
        _err(errors, "metadata.creators", MISSING)
    else:
        cleaned = [
            _clean_creator(c, f"metadata.creators.{i}", errors) for i, c in enumerate(creators)
        ]
        kept = [c for c in cleaned if c is not None]
        if kept:
            meta["creators"] = kept
        else:
            meta.pop("creators")
    return meta


def clean_access(raw: Any, profile: Profile) -> dict[str, Any] | None:
    """Hard-validate ``access``; ``None`` when absent."""
    if raw is None:
        return {"record": "restricted", "files": "restricted"} if profile.force_restricted else None
    if not isinstance(raw, dict):
        raise HardError(
            VALIDATION_MESSAGE, [{"field": "access", "messages": ["Invalid input type."]}]
        )
    errors: list[dict[str, Any]] = []
    access = {"record": raw.get("record", "public"), "files": raw.get("files", "public")}
    for name in ("record", "files"):
        if access[name] not in _ACCESS_VALUES:
            _err(errors, f"access.{name}", "Must be one of: public, restricted.")
    embargo = raw.get("embargo") or {"active": False, "reason": None}
    if not isinstance(embargo, dict):
        _err(errors, "access.embargo", "Invalid input type.")
    elif embargo.get("active"):
        until = embargo.get("until")
        try:
            future = dt.date.fromisoformat(str(until)) > dt.date.today()
        except ValueError:
            future = False
        if not future:
            _err(errors, "access.embargo.until", "Embargo end date must be in the future.")
    if errors:
        raise HardError(VALIDATION_MESSAGE, errors)
    if access["record"] == "restricted" and not profile.allow_restricted_records:
        raise HardError(
            VALIDATION_MESSAGE,
            [
                {
                    "field": "access",
                    "messages": ["You don't have permissions to manage record access."],
                }
            ],
        )
    if profile.force_restricted:
        access = {"record": "restricted", "files": "restricted"}
    access["embargo"] = embargo if isinstance(embargo, dict) else {"active": False}
    return access


def load_draft(body: Any, profile: Profile, *, file_count: int | None) -> Loaded:
    """Load a create (``file_count=None``) or PUT body. Raises :class:`HardError`."""
    if not isinstance(body, dict):
        raise HardError(
            VALIDATION_MESSAGE, [{"field": "_schema", "messages": ["Invalid input type."]}]
        )
    errors: list[dict[str, Any]] = []
    metadata = clean_metadata(body.get("metadata"), profile, errors)
    access = clean_access(body.get("access"), profile)
    files = body.get("files")
    enabled, default_preview, order = True, None, []
    if isinstance(files, dict):
        if isinstance(files.get("enabled", True), bool):
            enabled = files.get("enabled", True)
        else:
            _err(errors, "files.enabled", "Not a valid boolean.")
        default_preview = files.get("default_preview")
        order = list(files.get("order") or [])
    if not enabled and not profile.allow_metadata_only:
        enabled = True
        _err(errors, "files.enabled", "You don't have permissions to manage files options.")
    elif not enabled and file_count:
        enabled = True
        _err(
            errors,
            "files.enabled",
            "You must first delete all files to set the record to be metadata-only.",
        )
    elif enabled and file_count == 0:
        _err(errors, "files.enabled", FILES_MISSING)
    pids = body.get("pids") if isinstance(body.get("pids"), dict) else None
    raw_custom = body.get("custom_fields")
    custom: dict[str, Any] = raw_custom if isinstance(raw_custom, dict) else {}
    return Loaded(metadata, access, enabled, default_preview, order, pids, custom, errors)


FILES_MISSING = (
    "Missing uploaded files. To disable files for this record please mark it as metadata-only."
)
FILES_PENDING = "One or more files have not completed their transfer, please wait."


def publish_errors(
    metadata: dict[str, Any],
    profile: Profile,
    *,
    files_enabled: bool,
    file_count: int,
    pending: int,
) -> list[dict[str, Any]]:
    """Strict validation at publish (and at submit-review)."""
    errors: list[dict[str, Any]] = []
    clean_metadata(metadata, profile, errors)
    if profile.description_required:
        desc = metadata.get("description")
        if not isinstance(desc, str) or not desc.strip():
            _err(errors, "metadata.description", MISSING)
    if files_enabled and file_count == 0:
        _err(errors, "files.enabled", FILES_MISSING)
    elif not files_enabled and not profile.allow_metadata_only:
        _err(errors, "files.enabled", "Metadata-only records are not allowed.")
    if pending:
        _err(errors, "files", FILES_PENDING)
    return errors
