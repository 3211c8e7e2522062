"""The sandbox's configuration and the per-app state object shared by all routes."""

from __future__ import annotations

import hmac
import json
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .faults import FaultPlan, FaultRule
from .files import BlobStore
from .ratelimit import MovingWindowLimiter, parse_limits
from .store import Store
from .validation import PROFILES, VALIDATION_MESSAGE, Profile

USER_ID = "1"  # the token's user: owner of every record, member of every community
GENERIC_500 = (
    "The server encountered an internal error and was unable to complete your request. "
    "Either the server is overloaded or there is an error in the application."
)


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that shapes a sandbox run. ``faults`` may be a plan, a dict or None."""

    profile: str = "invenio"
    series: int | None = None  # InvenioRDM line, 14 or 12; None: the profile's (bigmap: 12)
    token: str | None = None  # None: a random one is generated
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_limit: str | None = None  # e.g. "20 per 1 second"; None: off (zenodo: its default)
    faults: FaultPlan | Mapping[str, Any] | None = None
    seed: int = 0
    discard_bytes: bool = False
    data_dir: str | Path | None = None
    index_delay_s: float = 0.0
    communities: tuple[str, ...] = ("sandbox-community",)
    max_file_size: int = 10**10
    # Render every ``links`` URL with this origin ("http://127.0.0.1:8081") instead of the
    # sandbox's own, while still serving on its own address: lets a test check that a
    # client does not send its token to a host other than the one it was given.
    links_origin: str | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r} (one of {sorted(PROFILES)})")
        if self.series not in (None, *SERIES):
            raise ValueError(f"unknown series {self.series!r} (one of {list(SERIES)})")
        if self.rate_limit:
            parse_limits(self.rate_limit)
        if self.links_origin is not None:
            object.__setattr__(self, "links_origin", check_origin(self.links_origin))


SERIES = (14, 12)  # the InvenioRDM lines the sandbox models, each checked against a real one


def profile_for(config: SandboxConfig) -> Profile:
    """The profile's rules in the configured series; v12 has no multipart (no ``transfer``)."""
    profile = PROFILES[config.profile]
    series = profile.series if config.series is None else config.series
    allow_multipart = profile.allow_multipart and series >= 13
    return replace(profile, series=series, allow_multipart=allow_multipart)


def check_origin(origin: str) -> str:
    """``scheme://host[:port]`` without a trailing slash; ValueError for anything else."""
    parts = urlsplit(origin.rstrip("/"))
    try:
        _ = parts.port  # a bad port raises here
    except ValueError:
        parts = urlsplit("")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ValueError(f"links_origin must be scheme://host[:port], not {origin!r}")
    return f"{parts.scheme}://{parts.netloc}"


class ApiFailure(Exception):
    """An error answer in InvenioRDM's JSON shape."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: list[dict[str, Any]] | str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    def response(self) -> web.Response:
        body: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        return web.json_response(body, status=self.status)


def validation_failure(errors: list[dict[str, Any]]) -> ApiFailure:
    return ApiFailure(400, VALIDATION_MESSAGE, errors)


@dataclass
class Stats:
    requests_total: int = 0
    per_route: Counter[str] = field(default_factory=Counter)
    per_method: Counter[str] = field(default_factory=Counter)
    per_user_agent: Counter[str] = field(default_factory=Counter)
    per_status: Counter[str] = field(default_factory=Counter)
    write_requests: int = 0
    status_429: int = 0
    faults_fired: int = 0
    faults_per_kind: Counter[str] = field(default_factory=Counter)
    bytes_received: int = 0


class SandboxState:
    """Config, store, limiter, fault plan and counters of one running sandbox."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.profile: Profile = profile_for(config)
        self.token = config.token or secrets.token_urlsafe(24)
        self.token_valid = True
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if config.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="au-sandbox-")
            root = Path(self._tmp.name)
        else:
            root = Path(config.data_dir)
        self.blobs = BlobStore(root / "blobs", discard=config.discard_bytes)
        self.store = Store(self.profile, self.blobs, USER_ID)
        for slug in config.communities:
            self.store.add_community(slug, slug.replace("-", " ").title(), USER_ID)
        limit = config.rate_limit or self.profile.default_rate_limit
        self.limiter = MovingWindowLimiter(parse_limits(limit)) if limit else None
        self.plan = FaultPlan.coerce(config.faults)
        if config.faults is None and config.seed:
            self.plan = FaultPlan(seed=config.seed)
        self.base_url = ""
        self.stats = Stats()
        self.reset_fault_counters()

    # faults ------------------------------------------------------------------------
    def reset_fault_counters(self) -> None:
        self.route_calls: Counter[str] = Counter()
        self.global_calls = 0
        self.storm_until = 0.0
        self.storm_rule: FaultRule | None = None

    def set_faults(self, plan: FaultPlan | Mapping[str, Any] | None) -> None:
        self.plan = FaultPlan.coerce(plan)
        self.reset_fault_counters()

    def count_fault(self, kind: str) -> None:
        self.stats.faults_fired += 1
        self.stats.faults_per_kind[kind] += 1

    def storm_active(self) -> bool:
        return time.time() < self.storm_until

    # auth ----------------------------------------------------------------------------
    def user(self, request: web.Request) -> str | None:
        """The caller: the token's user, or None (anonymous) for a missing/unknown token."""
        given = None
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        elif "access_token" in request.query:
            given = request.query["access_token"]
        if given and self.token_valid and hmac.compare_digest(given, self.token):
            return USER_ID
        return None

    def require_user(self, request: web.Request) -> str:
        user = self.user(request)
        if user is None:
            raise ApiFailure(403, "Permission denied.")
        return user

    # introspection -----------------------------------------------------------------
    def stats_dict(self) -> dict[str, Any]:
        recs = self.store.records.values()
        s = self.stats
        return {
            "drafts": sum(1 for r in recs if r.draft is not None),
            "published": sum(1 for r in recs if r.published is not None),
            "communities": len(self.store.communities),
            "review_requests": len(self.store.requests),
            "requests_total": s.requests_total,
            "requests_per_route": dict(s.per_route),
            "requests_per_method": dict(s.per_method),
            "requests_per_user_agent": dict(s.per_user_agent),
            "responses_per_status": dict(s.per_status),
            "write_requests": s.write_requests,
            "status_429": s.status_429,
            "faults_fired": s.faults_fired,
            "faults_per_kind": dict(s.faults_per_kind),
            "bytes_received": s.bytes_received,
        }

    def reset_stats(self) -> None:
        self.stats = Stats()

    def records_list(self) -> list[dict[str, Any]]:
        out = []
        for rec in self.store.records.values():
            snap = rec.current
            out.append(
                {
                    "id": rec.id,
                    "parent_id": rec.parent.id,
                    "index": rec.index,
                    "status": rec.draft_status(),
                    "has_draft": rec.draft is not None,
                    "is_published": rec.published is not None,
                    "title": snap.metadata.get("title"),
                    "metadata": json.loads(json.dumps(snap.metadata)),
                    "access": dict(snap.access),
                    "communities": list(rec.parent.communities),
                    "files_enabled": snap.files_enabled,
                    "files": [
                        {
                            "key": e.key,
                            "size": e.blob.size if e.blob else None,
                            "md5": e.blob.md5 if e.blob else None,
                            "checksum": e.checksum,
                            "status": "completed" if e.committed else "pending",
                        }
                        for e in snap.files.values()
                    ],
                }
            )
        return out

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
