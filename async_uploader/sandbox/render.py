"""JSON shapes of drafts, records, files, requests and communities, with absolute links.

Links are built from the sandbox's own base URL and percent-encoded like Werkzeug's URL
builder does for ``<path:key>``: ``/`` stays literal, everything else unsafe is encoded.

``series`` is the InvenioRDM series whose shapes are rendered: 14 (the default), or 12,
whose file entries have no ``transfer``, whose records, requests and communities lack the
links and keys v13+ added (``V13_*`` below), as observed on a real 12.1.0.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
from typing import Any
from urllib.parse import quote

from .store import Community, FileEntry, Record, Request, Snapshot, Store

# What v13+ added, left out when rendering for v12 (real-invenio-v12.md, the v12 differential).
V13_DRAFT_LINKS = ("preview_html", "quota_increase")
V13_RECORD_LINKS = (*V13_DRAFT_LINKS, "request_deletion", "file_modification")
V13_REQUEST_KEYS = ("files", "last_activity_at", "last_reply")
V13_REQUEST_LINKS = ("timeline_focused", "lock", "unlock")
V13_COMMUNITY_LINKS = ("collection_trees", "membership_requests")


def _without(data: dict[str, Any], keys: tuple[str, ...], series: int) -> dict[str, Any]:
    """``data`` as v12 renders it: without the v13+ ``keys`` (as is for series 13+)."""
    if series >= 13:
        return data
    return {k: v for k, v in data.items() if k not in keys}


def qkey(key: str) -> str:
    return quote(key, safe="/")


def _access(snap: Snapshot) -> dict[str, Any]:
    access = dict(snap.access)
    embargo = access.get("embargo") or {"active": False, "reason": None}
    if not snap.files_enabled:
        status = "metadata-only"
    elif embargo.get("active"):
        status = "embargoed"
    elif access["record"] == "restricted" or access["files"] == "restricted":
        status = "restricted"
    else:
        status = "open"
    access["embargo"] = embargo
    access["status"] = status
    return access


def mimetype(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def file_json(
    files_url: str, entry: FileEntry, bucket_id: str, *, links: bool = True, series: int = 14
) -> dict[str, Any]:
    """One file entry; ``files_url`` is the absolute URL of its files collection."""
    out: dict[str, Any] = {
        "key": entry.key,
        "status": "completed" if entry.committed else "pending",
        "created": entry.created,
        "updated": entry.updated,
        "metadata": entry.metadata,
        "access": {"hidden": False},
        "transfer": {"type": entry.transfer_type},
    }
    if entry.committed:
        assert entry.blob is not None
        out.update(
            checksum=entry.checksum,
            size=entry.blob.size,
            mimetype=mimetype(entry.key),
            storage_class="L",
            file_id=entry.file_id,
            version_id=entry.version_id,
            bucket_id=bucket_id,
        )
    elif entry.blob is None:  # InvenioRDM 14 shows nothing of received content before commit
        if entry.declared_size is not None:
            out["size"] = entry.declared_size
        if entry.declared_checksum is not None:
            out["checksum"] = entry.declared_checksum
    if entry.transfer_type == "M":
        out["transfer"].update(parts=entry.parts, part_size=entry.part_size)
        if not entry.committed:  # multipart pre-allocates the object at init
            out.update(
                mimetype=mimetype(entry.key),
                version_id=entry.version_id,
                file_id=entry.file_id,
                bucket_id=bucket_id,
                checksum=None,
                storage_class="L",
            )
    if links:
        self_url = f"{files_url}/{qkey(entry.key)}"
        out_links: dict[str, Any] = {"self": self_url}
        if "/draft/" in files_url:  # a published record's files cannot be committed
            out_links["commit"] = f"{self_url}/commit"
        if entry.transfer_type == "M" and not entry.committed:
            expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=14)).isoformat()
            out_links["parts"] = [
                {"part": n, "url": f"{self_url}/content/{n}", "expiration": expires}
                for n in range(1, (entry.parts or 0) + 1)
            ]
        else:
            out_links["content"] = f"{self_url}/content"
        out["links"] = out_links
    if series < 13:  # v12 has no transfer types in its file schema
        del out["transfer"]
    return out


def files_list_json(files_url: str, snap: Snapshot, series: int = 14) -> dict[str, Any]:
    entries = [file_json(files_url, e, snap.bucket_id, series=series) for e in snap.files.values()]
    return {
        "enabled": snap.files_enabled,
        "default_preview": snap.default_preview,
        "order": snap.order,
        "entries": entries,
        "links": {"self": files_url, "archive": f"{files_url}-archive"},
    }


def _files_section(files_url: str, snap: Snapshot, series: int) -> dict[str, Any]:
    done = [e for e in snap.files.values() if e.committed and e.blob is not None]
    return {
        "enabled": snap.files_enabled,
        "default_preview": snap.default_preview,
        "order": snap.order,
        "count": len(snap.files),
        "total_bytes": sum(e.blob.size for e in done if e.blob is not None),
        "entries": {
            k: file_json(files_url, e, snap.bucket_id, links=False, series=series)
            for k, e in snap.files.items()
        },
    }


def _access_links(api: str) -> dict[str, str]:
    return {
        "access_users": f"{api}/access/users",
        "access_groups": f"{api}/access/groups",
        "access_request": f"{api}/access/request",
        "access": f"{api}/access",
    }


def _published_only_links(api: str) -> dict[str, str]:
    return {
        "request_deletion": f"{api}/request-deletion",
        "file_modification": f"{api}/file-modification",
    }


def draft_links(base: str, rec: Record, series: int = 14) -> dict[str, Any]:
    api = f"{base}/api/records/{rec.id}"
    links = {
        "self": f"{api}/draft",
        "self_html": f"{base}/uploads/{rec.id}",
        "preview_html": f"{base}/records/{rec.id}?preview=1",
        "files": f"{api}/draft/files",
        "media_files": f"{api}/draft/media-files",
        "archive": f"{api}/draft/files-archive",
        "archive_media": f"{api}/draft/media-files-archive",
        "publish": f"{api}/draft/actions/publish",
        "record": api,
        "record_html": f"{base}/records/{rec.id}",
        "review": f"{api}/draft/review",
        "versions": f"{api}/versions",
        "reserve_doi": f"{api}/draft/pids/doi",
        "access_links": f"{api}/access/links",
        "access_grants": f"{api}/access/grants",
        **_access_links(api),
        "communities": f"{api}/communities",
        "communities-suggestions": f"{api}/communities-suggestions",
        "quota_increase": f"{api}/quota-increase",
        "requests": f"{api}/requests",
        "self_iiif_manifest": f"{base}/api/iiif/draft:{rec.id}/manifest",
        "self_iiif_sequence": f"{base}/api/iiif/draft:{rec.id}/sequence/default",
    }
    if rec.published is not None:  # the edit draft of a published record
        links.update(_published_only_links(api))
    if rec.review is not None:
        links["submit-review"] = f"{api}/draft/actions/submit-review"
    return _without(links, V13_RECORD_LINKS, series)


def record_links(base: str, rec: Record, snap: Snapshot, series: int = 14) -> dict[str, Any]:
    api = f"{base}/api/records/{rec.id}"
    links = {
        "self": api,
        "self_html": f"{base}/records/{rec.id}",
        "preview_html": f"{base}/records/{rec.id}?preview=1",
        "reserve_doi": f"{api}/draft/pids/doi",
        "self_iiif_manifest": f"{base}/api/iiif/record:{rec.id}/manifest",
        "self_iiif_sequence": f"{base}/api/iiif/record:{rec.id}/sequence/default",
        "files": f"{api}/files",
        "media_files": f"{api}/media-files",
        "archive": f"{api}/files-archive",
        "archive_media": f"{api}/media-files-archive",
        "latest": f"{api}/versions/latest",
        "latest_html": f"{base}/records/{rec.id}/latest",
        "draft": f"{api}/draft",
        "versions": f"{api}/versions",
        "access_links": f"{api}/access/links",
        "access_grants": f"{api}/access/grants",
        **_access_links(api),
        "communities": f"{api}/communities",
        "communities-suggestions": f"{api}/communities-suggestions",
        **_published_only_links(api),
        "quota_increase": f"{api}/quota-increase",
        "requests": f"{api}/requests",
        "parent": f"{base}/api/records/{rec.parent.id}",
        "parent_html": f"{base}/records/{rec.parent.id}",
    }
    doi = snap.pids.get("doi", {}).get("identifier")
    if doi:
        links["doi"] = f"https://doi.org/{doi}"
        links["self_doi"] = links["doi"]
    return _without(links, V13_RECORD_LINKS, series)


def record_json(store: Store, base: str, rec: Record, *, draft: bool) -> dict[str, Any]:
    """The draft (``draft=True``) or the published record, as the API returns it."""
    snap = rec.draft if draft else rec.published
    assert snap is not None
    published = rec.published is not None
    series = store.profile.series
    files_url = (
        f"{base}/api/records/{rec.id}/draft/files"
        if draft
        else f"{base}/api/records/{rec.id}/files"
    )
    communities: dict[str, Any] = {}
    if rec.parent.communities:
        communities = {"default": rec.parent.communities[0], "ids": list(rec.parent.communities)}
    out: dict[str, Any] = {
        "id": rec.id,
        "is_draft": draft,
        "is_published": published,
        "status": rec.draft_status() if draft else "published",
        "created": rec.created,
        "updated": snap.updated,
        "revision_id": snap.revision_id,
        "metadata": snap.metadata,
        "custom_fields": snap.custom_fields,
        "access": _access(snap),
        "files": _files_section(files_url, snap, series),
        "media_files": {"enabled": False, "count": 0, "entries": {}},
        "parent": {
            "id": rec.parent.id,
            "access": {"owned_by": {"user": rec.parent.owner}, "links": []},
            "communities": communities,
        },
        "versions": {
            "index": rec.index,
            "is_latest": store.is_latest(rec),
            "is_latest_draft": store.is_latest_draft(rec),
        },
        "pids": snap.pids,
        "links": draft_links(base, rec, series) if draft else record_links(base, rec, snap, series),
    }
    if draft:
        out["expires_at"] = rec.created.replace("T", " ")  # str(datetime), as the real server
    else:
        out["deletion_status"] = {"is_deleted": False, "status": "P"}
        counts: dict[str, float] = dict.fromkeys(
            ("views", "unique_views", "downloads", "unique_downloads"), 0
        )
        counts["data_volume"] = 0.0
        out["stats"] = {"this_version": counts, "all_versions": dict(counts)}
    return out


def request_json(
    base: str, req: Request, *, next_html: str | None = None, series: int = 14
) -> dict[str, Any]:
    """``next_html``: where the UI goes after an action (the submit-review answer has it)."""
    api = f"{base}/api/requests/{req.id}"
    actions: dict[str, str] = {}
    if req.status == "submitted":
        actions = {a: f"{api}/actions/{a}" for a in ("accept", "cancel", "decline")}
    elif req.status == "created":
        actions = {"submit": f"{base}/api/records/{req.record_id}/draft/actions/submit-review"}
    out: dict[str, Any] = {
        "id": req.id,
        "number": str(req.number),
        "type": req.type,
        "title": "",
        "status": req.status,
        "is_open": req.is_open,
        "is_closed": req.status in ("accepted", "declined", "cancelled"),
        "is_expired": False,
        "expires_at": None,
        "created": req.created,
        "updated": req.updated,
        "created_by": {"user": req.created_by},
        "receiver": {"community": req.community_id},
        "topic": {"record": req.record_id},
        "revision_id": 2,
        "files": {"enabled": True},
        "last_activity_at": req.updated,
        "last_reply": None,
        "links": {
            "self": api,
            "self_html": f"{base}/me/requests/{req.id}",
            "comments": f"{api}/comments",
            "timeline": f"{api}/timeline",
            "timeline_focused": f"{api}/timeline_focused",
            "lock": f"{api}/lock",
            "unlock": f"{api}/unlock",
            "actions": actions,
        },
    }
    if next_html is not None:
        out["links"]["next_html"] = next_html
    out["links"] = _without(out["links"], V13_REQUEST_LINKS, series)
    return _without(out, V13_REQUEST_KEYS, series)


def community_json(base: str, comm: Community, series: int = 14) -> dict[str, Any]:
    api = f"{base}/api/communities/{comm.id}"
    out: dict[str, Any] = {
        "id": comm.id,
        "slug": comm.slug,
        "created": comm.created,
        "updated": comm.created,
        "revision_id": 1,
        "metadata": {"title": comm.title},
        "custom_fields": {},
        "children": {"allow": False},
        "deletion_status": {"is_deleted": False, "status": "P"},
        "access": {
            "visibility": comm.visibility,
            "member_policy": "open",
            "record_policy": "open",
            "review_policy": comm.review_policy,
        },
        "links": {
            "self": api,
            "self_html": f"{base}/communities/{comm.slug}",
            "settings_html": f"{base}/communities/{comm.slug}/settings",
            "logo": f"{api}/logo",
            "rename": f"{api}/rename",
            "records": f"{api}/records",
            "members": f"{api}/members",
            "public_members": f"{api}/members/public",
            "invitations": f"{api}/invitations",
            "requests": f"{api}/requests",
            "collection_trees": f"{api}/collection-trees",
            "membership_requests": f"{api}/membership-requests",
        },
    }
    out["links"] = _without(out["links"], V13_COMMUNITY_LINKS, series)
    return out
