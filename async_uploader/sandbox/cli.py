"""``async-uploader sandbox``: serve the sandbox until SIGINT/SIGTERM (a dev server; the one
place in the package that prints)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from .faults import FaultPlan, FaultPlanError
from .ratelimit import parse_limits
from .server import Sandbox
from .state import SERIES, SandboxConfig
from .validation import PROFILES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (0: any free port)")
    parser.add_argument("--token", default=None, help="API token (default: a random one)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="invenio")
    parser.add_argument(
        "--series",
        type=int,
        choices=SERIES,
        default=None,
        help="InvenioRDM line to imitate (default: the profile's; bigmap: 12, others: 14)",
    )
    parser.add_argument("--latency", type=float, default=0.0, metavar="MS")
    parser.add_argument("--jitter", type=float, default=0.0, metavar="MS")
    parser.add_argument(
        "--rate-limit", default=None, metavar="LIMIT", help='e.g. "20 per 1 second"'
    )
    parser.add_argument("--faults", default=None, metavar="PLAN.json", help="fault plan file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--discard-bytes", action="store_true", help="keep only size + md5 of uploads"
    )
    parser.add_argument("--data-dir", default=None, metavar="DIR")
    parser.add_argument("--index-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument(
        "--community", action="append", default=None, metavar="SLUG", dest="communities"
    )
    parser.add_argument(
        "--links-origin",
        default=None,
        metavar="URL",
        help="render links with this scheme://host:port instead of the sandbox's own",
    )


def _config(args: argparse.Namespace) -> SandboxConfig:
    faults = FaultPlan.from_file(args.faults) if args.faults else None
    if args.rate_limit:
        parse_limits(args.rate_limit)
    return SandboxConfig(
        profile=args.profile,
        series=args.series,
        token=args.token,
        latency_ms=args.latency,
        jitter_ms=args.jitter,
        rate_limit=args.rate_limit,
        faults=faults,
        seed=args.seed,
        discard_bytes=args.discard_bytes,
        data_dir=args.data_dir,
        index_delay_s=getattr(args, "index_delay", 0.0),
        communities=tuple(args.communities or ("sandbox-community",)),
        links_origin=getattr(args, "links_origin", None),
    )


async def _serve(config: SandboxConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Sandbox(config, host=host, port=port) as sb:
        print(f"sandbox ({config.profile}) listening on {sb.url}", flush=True)
        print(f"API base URL: {sb.url}/api", flush=True)
        print(f"token: {sb.token}", flush=True)  # a throwaway dev-server token, shown on purpose
        if config.links_origin:
            print(f"links rendered with origin {config.links_origin}", flush=True)
        await stop.wait()
        print("sandbox stopping", flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
    except (FaultPlanError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config, args.host, args.port))
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return 0
