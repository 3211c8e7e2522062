"""The command line's arguments: the parser, and the UploadConfig it becomes.

Defaults are read from ``UploadConfig``, ``RetryConfig`` and ``ValidationLimits``, so each is
written once. Abbreviations are off (``--token VALUE`` must not be read as
``--token-file VALUE``), and an unrecognised argument's value is never echoed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import MISSING
from pathlib import Path
from typing import Any, NoReturn

from ._version import __version__
from .concurrency import DEFAULT_CAP
from .config import RetryConfig, ShareMode, UploadConfig, ValidationLimits

DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(UploadConfig) if f.default is not MISSING
}
LIMITS = ValidationLimits()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("records_dir", type=Path, metavar="RECORDS_DIR")
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="attach only files whose key matches (repeatable)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="never attach files whose key matches (repeatable)",
    )
    p.add_argument(
        "--max-file-size",
        type=float,
        default=LIMITS.max_file_size / 10**9 if LIMITS.max_file_size else None,
        metavar="GB",
        help="refuse files larger than this (default 10 GB, InvenioRDM's default)",
    )
    p.add_argument("--empty-files", choices=("allow", "warn", "error"), default=LIMITS.empty_files)


def _server(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("INVENIO_URL"),
        help="archive base URL, e.g. https://archive.big-map.eu (or INVENIO_URL)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        help="file holding the access token (default: the INVENIO_TOKEN variable)",
    )
    p.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http:// to a non-loopback host",
    )
    p.add_argument("--links-file", type=Path, help="default RECORDS_DIR/records_links.json")
    p.add_argument(
        "--state-dir",
        type=Path,
        help="state folder (default RECORDS_DIR/.upload_state; a per-user folder when "
        "RECORDS_DIR is read-only)",
    )


class _Parser(argparse.ArgumentParser):
    """argparse that never echoes the values of arguments it did not recognise: a mistyped
    option (``--token SECRET``) must not print the secret on a shared terminal or log."""

    def error(self, message: str) -> NoReturn:
        head, sep, rest = message.partition("unrecognized arguments: ")
        if sep:
            shown = [a.split("=", 1)[0] for a in rest.split() if a.startswith("-")]
            message = f"{head}unrecognized arguments: {' '.join(shown) or '(values not shown)'}"
        super().error(message)


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="async-uploader",
        description=description,
        allow_abbrev=False,  # "--token X" must not silently mean "--token-file X"
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser(
        "upload", allow_abbrev=False, help="upload every record folder (rerun to resume)"
    )
    _common(up)
    _server(up)
    up.add_argument(
        "--sandbox",
        action="store_true",
        help="start the embedded sandbox server and upload there (no account)",
    )
    up.add_argument("--sandbox-profile", choices=("invenio", "bigmap", "zenodo"), default="invenio")
    share = up.add_mutually_exclusive_group()
    share.add_argument(
        "--community", metavar="SLUG", help="share into this community (review + submit-review)"
    )
    share.add_argument("--draft-only", action="store_true", help="stop before publishing")
    up.add_argument("--report", type=Path, metavar="FILE", help="write a JSON report here")
    up.add_argument(
        "--dry-run",
        action="store_true",
        help="say per folder what would happen and what the batch would cost (requests by "
        "kind, bytes, the least time the server's rate limit allows); sends one read",
    )
    up.add_argument("--json", action="store_true", help="with --dry-run: as JSON")
    up.add_argument(
        "--events",
        metavar="FILE",
        help="append every event to FILE as it happens, one JSON object a line (NDJSON, "
        "flushed per line; byte progress at most one line per file per second); '-' writes "
        "to stdout, and the summary then goes to stderr",
    )
    up.add_argument(
        "--new-batch",
        action="store_true",
        help="none of these folders is on the server yet: skip the look-up of existing "
        "records before the first create (saves a few searches per 100 folders)",
    )
    up.add_argument(
        "--records-in-flight",
        type=int,
        default=DEFAULTS["records_in_flight"],
        metavar="N",
        help="at most N records at once (default: learned from the server's round trips, "
        f"up to {DEFAULT_CAP})",
    )
    up.add_argument(
        "--file-streams",
        type=int,
        default=DEFAULTS["file_streams"],
        metavar="N",
        help="at most N file uploads at once (default: as many as records in flight; "
        "memory: N x chunk size)",
    )
    up.add_argument("--chunk-size", type=int, default=DEFAULTS["chunk_size"] // 1024, metavar="KiB")
    up.add_argument(
        "--rate",
        type=float,
        metavar="REQ_PER_S",
        help="request budget (default: learned from the server's X-RateLimit headers)",
    )
    up.add_argument("--burst", type=int, default=DEFAULTS["burst"])
    up.add_argument(
        "--grace",
        type=float,
        default=DEFAULTS["grace_seconds"],
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, time for in-flight steps before stopping",
    )
    up.add_argument(
        "--retry-time",
        type=float,
        default=RetryConfig().total_seconds,
        metavar="SECONDS",
        help="give up on one request after retrying it this long",
    )
    up.add_argument(
        "--stall-timeout",
        type=float,
        default=DEFAULTS["stall_timeout"],
        metavar="SECONDS",
        help="abort and resend an upload that made no progress for this long",
    )
    up.add_argument(
        "--log-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often a non-interactive log gets a progress line",
    )
    up.add_argument("-q", "--quiet", action="store_true")
    up.add_argument("-v", "--verbose", action="store_true")

    val = sub.add_parser(
        "validate", allow_abbrev=False, help="check every folder locally; no network"
    )
    _common(val)

    st = sub.add_parser(
        "status", allow_abbrev=False, help="what the journal (and the server) say, per folder"
    )
    _common(st)
    _server(st)
    st.add_argument(
        "--check-server",
        action="store_true",
        help="also read each journaled record from the server (concurrently)",
    )
    st.add_argument("--json", action="store_true", help="the same, as one JSON document")

    sb = sub.add_parser(
        "sandbox", allow_abbrev=False, help="run the InvenioRDM-compatible sandbox server"
    )
    from .sandbox import cli as sandbox_cli

    sandbox_cli.add_arguments(sb)
    return parser


def limits_from(args: argparse.Namespace) -> ValidationLimits:
    size = None if args.max_file_size is None else int(args.max_file_size * 10**9)
    return ValidationLimits(max_file_size=size, empty_files=args.empty_files)


# (argument, UploadConfig field, conversion): options only some commands have. Their
# defaults come from UploadConfig (above), so a default is written in one place only.
_TUNING = (
    ("records_in_flight", "records_in_flight", int),
    ("file_streams", "file_streams", int),
    ("chunk_size", "chunk_size", lambda kib: kib * 1024),
    ("rate", "rate", float),
    ("burst", "burst", int),
    ("stall_timeout", "stall_timeout", float),
    ("grace", "grace_seconds", float),
    ("retry_time", "retry", lambda s: RetryConfig(total_seconds=s)),
    ("report", "report_file", Path),
    ("community", "community", str),
    ("new_batch", "new_batch", bool),
    ("sandbox", "ephemeral_server", bool),
)


def config_from(args: argparse.Namespace, url: str, token: str) -> UploadConfig:
    share = ShareMode.PUBLISH
    if getattr(args, "community", None):
        share = ShareMode.COMMUNITY
    elif getattr(args, "draft_only", False):
        share = ShareMode.DRAFT_ONLY
    tuning: dict[str, Any] = {
        field: convert(getattr(args, arg))
        for arg, field, convert in _TUNING
        if getattr(args, arg, None) is not None
    }
    return UploadConfig(
        base_url=url,
        token=token,
        records_dir=args.records_dir,
        links_file=args.links_file,
        state_dir=args.state_dir,
        share=share,
        limits=limits_from(args),
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        allow_insecure_http=args.allow_insecure_http,
        **tuning,
    )
