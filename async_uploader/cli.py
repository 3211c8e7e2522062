"""Command line: a thin layer over the library (argparse -> UploadConfig -> upload_records).

Exit codes: 0 all records done; 1 some records failed, are invalid or changed (the rest are
done); 2 usage or configuration error (nothing sent); 3 fatal for the batch (token refused,
server unreachable, journal not writable); 75 interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Sequence

import anyio

from .cliargs import build_parser, config_from, limits_from
from .config import read_token
from .errors import ConfigError, first_error
from .estimate import KINDS
from .eventlog import EventLog
from .events import tee
from .inspect import Inspection, inspect_records
from .pipeline import upload_records
from .prepare import validate_records
from .progress import human_bytes, make_renderer, summary

EXIT_USAGE = 2
EXIT_INTERRUPTED = 75


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(__doc__).parse_args(argv)
    try:
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "sandbox":
            from .sandbox import cli as sandbox_cli

            return sandbox_cli.run(args)
        if args.command == "status":
            return anyio.run(cmd_status, args)
        return anyio.run(cmd_upload, args)
    except ConfigError as exc:
        print(f"async-uploader: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def cmd_validate(args: argparse.Namespace) -> int:
    found = validate_records(
        args.records_dir, include=args.include, exclude=args.exclude, limits=limits_from(args)
    )
    for record in found.valid:
        for warning in record.warnings:
            print(warning)  # a warning's str starts with "warning: " already
    for _folder, problems in found.invalid:
        for problem in problems:
            print(problem if problem.severity == "warning" else f"error: {problem}")
    valid, invalid = len(found.valid), len(found.invalid)
    print(f"{valid} valid, {invalid} invalid, of {found.folders} record folders")
    return 1 if invalid else 0


@contextlib.asynccontextmanager
async def _server_for(args: argparse.Namespace) -> AsyncIterator[tuple[str, str]]:
    if getattr(args, "sandbox", False):
        from .sandbox import Sandbox, SandboxConfig

        async with Sandbox(SandboxConfig(profile=args.sandbox_profile)) as sb:
            yield sb.url, sb.token
        return
    if not args.url:
        raise ConfigError("no server: pass --url (or set INVENIO_URL), or use --sandbox")
    yield args.url, read_token(args.token_file)


async def cmd_upload(args: argparse.Namespace) -> int:
    verbosity = 0 if args.quiet else (2 if args.verbose else 1)
    renderer = make_renderer(verbosity, args.log_interval)
    stop, abort = anyio.Event(), anyio.Event()
    async with _server_for(args) as (url, token):
        config = config_from(args, url, token)
        config.check()  # before any task group, so a usage error is not wrapped in a group
        if args.sandbox:
            renderer.line(f"sandbox server at {url} (in this process; it stops when we do)")
        if args.dry_run:
            return render_dry_run(await inspect_records(config, ask_server=True), args.json)
        events = EventLog.open(args.events, args.records_dir) if args.events else None
        reporter = renderer if events is None else tee(renderer, events)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_signals, stop, abort, config.grace_seconds)
                result = await upload_records(config, reporter=reporter, stop=stop, abort=abort)
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # e.g. StateLocked: a usage error, not a crash
            error = first_error(group)
            if isinstance(error, ConfigError):
                raise error from None
            raise
        finally:
            if events is not None:
                events.close()
    out = sys.stderr if args.events == "-" else sys.stdout  # stdout may be the event log
    print(summary(result), file=out, flush=True)
    print(f"links file: {config.links_path}", file=out, flush=True)
    return result.exit_code


def render_dry_run(report: Inspection, as_json: bool) -> int:
    """What ``upload`` would do, and what it would cost; nothing is written anywhere."""
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    for line in status_lines(report):
        print(line)
    print()
    for line in estimate_lines(report):
        print(line)
    return 0


async def _watch_signals(stop: anyio.Event, abort: anyio.Event, grace: float) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not stop.is_set():
                stop.set()
                print(
                    f"{name}: starting no new records; in-flight steps get {grace:.0f} s. "
                    "Send it again to stop at once.",
                    file=sys.stderr,
                    flush=True,
                )
            else:
                abort.set()


async def cmd_status(args: argparse.Namespace) -> int:
    """Render ``inspect_records``: the same plan ``upload`` follows."""
    if args.check_server and not args.url:
        raise ConfigError("--check-server needs --url (or INVENIO_URL)")
    token = read_token(args.token_file) if args.check_server else "-"
    config = config_from(args, args.url or "", token)
    report = await inspect_records(config, check_server=args.check_server)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    for line in status_lines(report):
        print(line)
    return 0


def status_lines(report: Inspection) -> list[str]:
    lines = []
    for view in report.folders:
        if view.action == "invalid":
            lines.append(f"{view.folder}: invalid: {view.note}")
            continue
        line = f"{view.folder}: {view.state}"
        if view.record_id:
            line += f" (id {view.record_id})"
        if view.server:
            line += f"; server: {view.server}"
        line += f"; rerun would: {view.rerun}"
        if view.note:
            line += f"; note: {view.note}"
        lines.append(line)
    return lines


def estimate_lines(report: Inspection) -> list[str]:
    """The dry run's batch totals."""
    est = report.estimate
    kinds = ", ".join(f"{k} {est.requests[k]}" for k in KINDS if est.requests.get(k))
    lines = [
        f"would upload {est.records} records: {est.files} files, {human_bytes(est.bytes)}",
        f"requests: {est.total_requests} ({kinds or 'none'})"
        + ("" if est.exact else "; at least: some folders depend on what the server holds"),
    ]
    if est.min_seconds is not None:
        lines.append(
            f"least time the rate limit allows: {est.min_seconds:.1f} s ({est.rate:.3g} requests/s)"
        )
    else:
        why = "the server sent no X-RateLimit headers" if report.asked_server else "give --url"
        lines.append(f"least time the rate limit allows: no limit known ({why})")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
