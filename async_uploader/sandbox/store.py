"""In-memory state: records (draft and/or published snapshots), parents, files, communities,
review requests. Mutable on purpose (it is the server's database); only the event loop
thread touches it.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .files import Blob, BlobStore
from .validation import Profile

_B32 = "0123456789abcdefghjkmnpqrstvwxyz"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class NotFound(Exception):
    """404 with the message the real server gives."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


PID_MISSING = "The persistent identifier does not exist."
PID_UNREGISTERED = "The persistent identifier is not registered."


@dataclass
class FileEntry:
    key: str
    created: str
    updated: str
    transfer_type: str = "L"
    metadata: dict[str, Any] | None = None
    declared_size: int | None = None
    declared_checksum: str | None = None
    parts: int | None = None
    part_size: int | None = None
    blob: Blob | None = None
    part_blobs: dict[int, Blob] = field(default_factory=dict)
    committed: bool = False
    checksum: str | None = None  # reported once committed (a fault may make it wrong)
    file_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    version_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def blobs(self) -> list[Blob]:
        return ([self.blob] if self.blob else []) + list(self.part_blobs.values())

    def copy_shared(self) -> FileEntry:
        """A copy sharing the same bytes (caller retains the blobs)."""
        return FileEntry(
            key=self.key,
            created=self.created,
            updated=self.updated,
            transfer_type=self.transfer_type,
            metadata=copy.deepcopy(self.metadata),
            declared_size=self.declared_size,
            declared_checksum=self.declared_checksum,
            blob=self.blob,
            committed=self.committed,
            checksum=self.checksum,
            file_id=self.file_id,
        )


@dataclass
class Snapshot:
    """One state of a record: its draft or its published version."""

    metadata: dict[str, Any]
    access: dict[str, Any]
    files_enabled: bool
    default_preview: str | None
    order: list[str]
    pids: dict[str, Any]
    custom_fields: dict[str, Any]
    revision_id: int
    updated: str
    bucket_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    files: dict[str, FileEntry] = field(default_factory=dict)


@dataclass
class AccessLink:
    id: str
    created_at: str
    expires_at: str | None
    permission: str
    description: str
    token: str


@dataclass
class Parent:
    id: str
    owner: str
    record_ids: list[str] = field(default_factory=list)
    communities: list[str] = field(default_factory=list)  # community uuids, default first
    links: list[AccessLink] = field(default_factory=list)
    grants: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Community:
    id: str
    slug: str
    title: str
    owner: str
    created: str
    visibility: str = "public"
    review_policy: str = "open"  # "closed": every submission waits for a curator
    members: set[str] = field(default_factory=set)


@dataclass
class Request:
    id: str
    number: int
    record_id: str
    community_id: str
    created_by: str
    created: str
    updated: str
    status: str = "created"  # created | submitted | accepted | declined | cancelled
    type: str = "community-submission"

    @property
    def is_open(self) -> bool:
        return self.status == "submitted"

    @property
    def blocks_publish(self) -> bool:
        return self.status in ("created", "submitted")


@dataclass
class Record:
    id: str
    parent: Parent
    index: int
    created: str
    created_ts: float
    draft: Snapshot | None = None
    published: Snapshot | None = None
    review: Request | None = None
    visible_at: float = 0.0  # search sees it from then on (indexing delay)

    @property
    def current(self) -> Snapshot:
        snap = self.draft or self.published
        assert snap is not None
        return snap

    def draft_status(self) -> str:
        if self.draft is None:
            return "published"
        if self.published is not None:
            return "published"  # an edit draft of a published record
        base = "new_version_draft" if self.index > 1 else "draft"
        if self.review is None:
            return base
        if self.review.status == "submitted":
            return "in_review"
        if self.review.status == "declined":
            return "declined"
        return f"{base}_with_review"


class Store:
    """All records and the operations that move them between states."""

    def __init__(self, profile: Profile, blobs: BlobStore, owner: str) -> None:
        self.profile = profile
        self.blobs = blobs
        self.owner = owner
        self.records: dict[str, Record] = {}
        self.parents: dict[str, Parent] = {}
        self.communities: dict[str, Community] = {}
        self.requests: dict[str, Request] = {}
        self._int_ids = itertools.count(100_000 + secrets.randbelow(800_000))
        self._request_numbers = itertools.count(1)

    # ids -----------------------------------------------------------------------------
    def new_id(self) -> str:
        while True:
            if self.profile.integer_ids:
                rid = str(next(self._int_ids))
            else:
                chars = "".join(secrets.choice(_B32) for _ in range(10))
                rid = f"{chars[:5]}-{chars[5:]}"
            if rid not in self.records and rid not in self.parents:
                return rid

    # lookups -------------------------------------------------------------------------
    def record(self, rid: str) -> Record:
        rec = self.records.get(rid)
        if rec is None:
            raise NotFound(PID_MISSING)
        return rec

    def draft(self, rid: str) -> tuple[Record, Snapshot]:
        rec = self.record(rid)
        if rec.draft is None:
            raise NotFound(PID_MISSING)
        return rec, rec.draft

    def published(self, rid: str) -> tuple[Record, Snapshot]:
        rec = self.records.get(rid)
        if rec is None:
            raise NotFound(PID_MISSING)
        if rec.published is None:
            raise NotFound(PID_UNREGISTERED)
        return rec, rec.published

    def community(self, ref: str) -> Community:
        if ref in self.communities:
            return self.communities[ref]
        for comm in self.communities.values():
            if comm.slug == ref:
                return comm
        raise NotFound(PID_MISSING)

    def versions(self, parent: Parent) -> list[Record]:
        return [self.records[r] for r in parent.record_ids if r in self.records]

    def latest_published(self, parent: Parent) -> Record | None:
        done = [r for r in self.versions(parent) if r.published is not None]
        return max(done, key=lambda r: r.index) if done else None

    def is_latest(self, rec: Record) -> bool:
        return self.latest_published(rec.parent) is rec

    def is_latest_draft(self, rec: Record) -> bool:
        return max(self.versions(rec.parent), key=lambda r: r.index) is rec

    # state changes -------------------------------------------------------------------
    def create(self, snap: Snapshot, *, delay: float) -> Record:
        parent = Parent(id=self.new_id(), owner=self.owner)
        self.parents[parent.id] = parent
        rec = self._add_record(parent, 1, snap, delay)
        return rec

    def _add_record(self, parent: Parent, index: int, snap: Snapshot, delay: float) -> Record:
        rec = Record(
            id=self.new_id(),
            parent=parent,
            index=index,
            created=now_iso(),
            created_ts=time.time(),
            draft=snap,
            visible_at=time.time() + delay,
        )
        self.records[rec.id] = rec
        parent.record_ids.append(rec.id)
        return rec

    def drop_snapshot(self, snap: Snapshot | None) -> None:
        if snap is None:
            return
        for entry in snap.files.values():
            for blob in entry.blobs():
                self.blobs.release(blob)
        snap.files.clear()

    def delete_draft(self, rec: Record) -> None:
        self.drop_snapshot(rec.draft)
        rec.draft = None
        if rec.review is not None:
            self.requests.pop(rec.review.id, None)
            rec.review = None
        if rec.published is None:  # a never-published record vanishes, PID included
            del self.records[rec.id]
            rec.parent.record_ids.remove(rec.id)
            if not rec.parent.record_ids:
                del self.parents[rec.parent.id]

    def publish(self, rec: Record, *, delay: float) -> None:
        draft = rec.draft
        assert draft is not None
        old = rec.published
        draft.revision_id += 1
        draft.updated = now_iso()
        if self.profile.doi_prefix and "doi" not in draft.pids:
            doi = f"{self.profile.doi_prefix}.{rec.id}"
            draft.pids["doi"] = {"identifier": doi, "provider": "datacite", "client": "datacite"}
        draft.pids.setdefault("oai", {"identifier": f"oai:sandbox:{rec.id}", "provider": "oai"})
        rec.published, rec.draft = draft, None
        self.drop_snapshot(old)
        rec.visible_at = time.time() + delay

    def edit(self, rec: Record) -> Snapshot:
        if rec.draft is None:
            pub = rec.published
            assert pub is not None
            snap = copy.copy(pub)
            snap.metadata = copy.deepcopy(pub.metadata)
            snap.access = copy.deepcopy(pub.access)
            snap.pids = copy.deepcopy(pub.pids)
            snap.files = {}
            for key, entry in pub.files.items():
                snap.files[key] = entry.copy_shared()
                self.blobs.retain(entry.blob)
            rec.draft = snap
        return rec.draft

    def new_version(self, rec: Record, *, delay: float) -> Record:
        parent = rec.parent
        for other in self.versions(parent):
            if other.published is None and other.draft is not None:
                return other  # idempotent while the new-version draft exists
        latest = self.latest_published(parent)
        assert latest is not None and latest.published is not None
        base = latest.published
        metadata = copy.deepcopy(base.metadata)
        metadata.pop("version", None)
        metadata["publication_date"] = dt.date.today().isoformat()  # observed on v14.0.5
        snap = Snapshot(
            metadata=metadata,
            access=copy.deepcopy(base.access),
            files_enabled=True,
            default_preview=None,
            order=[],
            pids={},
            custom_fields=copy.deepcopy(base.custom_fields),
            revision_id=1,
            updated=now_iso(),
        )
        index = max(r.index for r in self.versions(parent)) + 1
        return self._add_record(parent, index, snap, delay)

    def import_files(self, rec: Record, snap: Snapshot) -> None:
        latest = self.latest_published(rec.parent)
        assert latest is not None and latest.published is not None
        for key, entry in latest.published.files.items():
            snap.files[key] = entry.copy_shared()
            self.blobs.retain(entry.blob)

    def new_request(self, rec: Record, community: Community, user: str) -> Request:
        stamp = now_iso()
        req = Request(
            id=str(uuid.uuid4()),
            number=next(self._request_numbers),
            record_id=rec.id,
            community_id=community.id,
            created_by=user,
            created=stamp,
            updated=stamp,
        )
        self.requests[req.id] = req
        return req

    def add_community(
        self, slug: str, title: str, owner: str, visibility: str = "public"
    ) -> Community:
        comm = Community(
            id=str(uuid.uuid4()),
            slug=slug,
            title=title,
            owner=owner,
            created=now_iso(),
            visibility=visibility,
            members={owner},
        )
        self.communities[comm.id] = comm
        return comm
