"""The one configuration object, built by the entry point and passed down (no globals).

Memory math: at most ``file_streams`` uploads are in flight, each holding one ``chunk_size``
buffer (plus aiohttp's socket buffer), so peak payload memory is about
``file_streams * chunk_size`` (8 x 1 MiB by default), whatever the file sizes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from ._version import __version__
from .errors import ConfigError

USER_AGENT = f"async-uploader/{__version__} (+https://github.com/async-uploader)"


class ShareMode(StrEnum):
    PUBLISH = "publish"  # POST .../actions/publish
    COMMUNITY = "community"  # review + submit-review (today's BIG-MAP Archive "share")
    DRAFT_ONLY = "draft-only"  # stop after the files are committed


@dataclass(frozen=True)
class RetryConfig:
    """Bounds for retrying one HTTP call (see ``retry.py`` for the decision table)."""

    attempts: int = 8
    total_seconds: float = 600.0
    base_delay: float = 0.5
    max_delay: float = 30.0


@dataclass(frozen=True)
class ValidationLimits:
    """Local checks before anything is sent (``validate.py``): what the server would refuse."""

    max_files: int = 100  # InvenioRDM/Zenodo RDM_RECORDS_MAX_FILES_COUNT
    max_file_size: int | None = 10 * 10**9  # InvenioRDM default 10 GB; None = no local limit
    max_key_length: int = 255  # FILES_REST_OBJECT_KEY_MAX_LEN, counted here in UTF-8 bytes
    empty_files: Literal["allow", "warn", "error"] = "warn"  # Zenodo refuses empty files


@dataclass(frozen=True)
class UploadConfig:
    """Everything one batch needs. The token is kept out of ``repr``."""

    base_url: str
    token: str = field(repr=False)
    records_dir: Path
    links_file: Path | None = None  # default: records_dir / records_links.json
    state_dir: Path | None = None  # default: records_dir/.upload_state (see state.py)
    report_file: Path | None = None
    share: ShareMode = ShareMode.PUBLISH
    community: str | None = None  # slug or UUID, with ShareMode.COMMUNITY
    # Caps, not settings: None lets the controller learn them (concurrency.py), the records
    # in flight up to DEFAULT_CAP, the file uploads at once as many as the records.
    records_in_flight: int | None = None
    file_streams: int | None = None
    chunk_size: int = 1024 * 1024
    rate: float | None = None  # requests/second; None = learn the server's limit from headers
    burst: int = 10
    connect_timeout: float = 30.0
    read_timeout: float = 300.0  # waiting for a response (publish of a large record can be slow)
    stall_timeout: float = 120.0  # an upload with no bytes accepted for this long is aborted
    grace_seconds: float = 30.0
    retry: RetryConfig = field(default_factory=RetryConfig)
    limits: ValidationLimits = field(default_factory=ValidationLimits)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    allow_insecure_http: bool = False
    verify_tls: bool = True
    # The user asserts none of these folders is on the server yet: skip the look-up that
    # otherwise precedes the first create of every folder the journal does not know.
    new_batch: bool = False
    # The server lives only for this run (the embedded sandbox): its state starts empty
    # every time and is kept apart from every real server's.
    ephemeral_server: bool = False

    @property
    def api_url(self) -> str:
        return self.base_url.rstrip("/") + "/api"

    @property
    def links_path(self) -> Path:
        return self.links_file or (self.records_dir / "records_links.json")

    @property
    def state_path(self) -> Path:
        """The state root: beside the records (per-user when they are read-only)."""
        return self.state_dir or default_state_root(self.records_dir)

    def check(self) -> None:
        """Refuse bad settings before anything is sent (exit code 2)."""
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--url must be an http(s) URL, got {self.base_url!r}")
        if (
            parts.scheme == "http"
            and not self.allow_insecure_http
            and not is_loopback(parts.hostname)
        ):
            raise ConfigError(
                f"refusing plain http:// to {parts.hostname}: the token would travel unencrypted "
                "(use https://, or --allow-insecure-http if you really mean it)"
            )
        if not self.token:
            raise ConfigError("no token: set INVENIO_TOKEN or pass --token-file")
        if self.share is ShareMode.COMMUNITY and not self.community:
            raise ConfigError("community sharing needs a community slug (--community SLUG)")
        for name in ("records_in_flight", "file_streams", "chunk_size", "burst"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError("--rate must be positive")
        if not self.records_dir.is_dir():
            raise ConfigError(f"records folder {self.records_dir} does not exist")
        outputs = [("--links-file", self.links_path.parent), ("--state-dir", self.state_path)]
        if self.report_file is not None:
            outputs.append(("--report", self.report_file.parent))
        for option, folder in outputs:
            if not writable_dir(folder):
                raise ConfigError(
                    f"{folder} cannot be written (read-only record folders: "
                    f"put the outputs elsewhere with {option})"
                )


def writable_dir(folder: Path) -> bool:
    """Whether files may be made in ``folder`` (or in its nearest existing parent).

    A folder without any write bit counts as read-only even for root (who could write
    anyway): its owner made it read-only on purpose, and the tool's outputs go elsewhere."""
    while not folder.exists():
        if folder.parent == folder:
            return False
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)


def default_state_root(records_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """``RECORDS_DIR/.upload_state``, or a per-user folder keyed by the records folder's real
    path when that cannot be written (see ``state.py`` for what lives there)."""
    beside = records_dir / ".upload_state"
    if writable_dir(beside):
        return beside
    env = os.environ if environ is None else environ
    base = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    real = os.path.realpath(records_dir)
    digest = hashlib.sha256(real.encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(real).name)[:40] or "records"
    return base / "async-uploader" / f"{name}-{digest}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token_file: Path | None, environ: dict[str, str] | None = None) -> str:
    """Token from --token-file or INVENIO_TOKEN; never from the command line."""
    env = os.environ if environ is None else environ
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read --token-file {token_file}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"--token-file {token_file} is empty")
        return token
    return env.get("INVENIO_TOKEN", "").strip()
