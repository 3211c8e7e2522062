"""Initialise a fresh InvenioRDM instance (series 14 or 12) in ONE Python process (invenio venv).

Each `invenio ...` CLI call spends ~5 s creating the app; running the same click commands
against one app object saves most of that. The commands themselves are the package's own
(through Flask's CLI runner), so the instance ends up exactly as the documented CLI leaves it.

Writes the env file (mode 600) with the server URL, two users' tokens and community slugs.
Tokens never go to stdout/stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PASSWORD = "async-uploader-ci-password"  # loopback-only throwaway instance


@contextmanager
def step(name: str) -> Iterator[None]:
    """Print the step's name and duration; name the failing step clearly."""
    start = time.monotonic()
    print(f"[setup] {name} ...", flush=True)
    try:
        yield
    except BaseException:
        print(f"[setup] FAILED at step: {name}", file=sys.stderr, flush=True)
        raise
    print(f"[setup] {name}: {time.monotonic() - start:.1f} s", flush=True)


class Cli:
    """Runs invenio click commands against one already-created app."""

    def __init__(self, app: Any) -> None:
        from invenio_app.cli import cli

        self.app = app
        self.group = cli
        self.runner = app.test_cli_runner()

    def __call__(self, *argv: str, secret_output: bool = False) -> str:
        result = self.runner.invoke(self.group, list(argv))
        if result.exit_code != 0:
            detail = "(output withheld: may hold a secret)" if secret_output else result.output
            if result.exception is not None and not secret_output:
                import traceback

                detail += "".join(traceback.format_exception(result.exception))
            raise RuntimeError(f"`invenio {' '.join(argv[:3])}` failed: {detail[-4000:]}")
        return str(result.output)


def create_token(cli: Cli, email: str, name: str) -> str:
    out = cli("tokens", "create", "-n", name, "-u", email, secret_output=True)
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(f"`invenio tokens create` printed nothing for {name}")
    return lines[-1]  # the token is the last line printed


def create_community(email: str, slug: str, title: str, review_policy: str) -> str:
    """Create a public community owned by ``email`` unless it exists; return its UUID."""
    from invenio_access.permissions import authenticated_user
    from invenio_access.utils import get_identity
    from invenio_accounts.proxies import current_datastore
    from invenio_communities.communities.schema import CommunityAccessSchema
    from invenio_communities.proxies import current_communities
    from invenio_pidstore.errors import PIDDoesNotExistError

    service = current_communities.service
    user = current_datastore.get_user(email)
    identity = get_identity(user)
    identity.provides.add(authenticated_user)
    try:
        return str(service.read(identity, slug).id)
    except PIDDoesNotExistError:
        pass
    access = {
        "visibility": "public",
        "members_visibility": "public",
        "record_submission_policy": "open",
        "review_policy": review_policy,
    }
    # v12 (invenio-communities 13) has no record_submission_policy (added in v13): the schema
    # would refuse it as an unknown field.
    known = CommunityAccessSchema().fields
    access = {k: v for k, v in access.items() if k in known}
    data = {"slug": slug, "metadata": {"title": title}, "access": access}
    return str(service.create(identity, data).id)


def reindex_all() -> None:
    """Re-send every database record to search (the stand-in keeps no data when it is lost).

    `invenio rdm rebuild-all-indices` only queues ids for a worker; with no worker, consume
    each service's queue right here.
    """
    from invenio_access.permissions import system_identity
    from invenio_records_resources.proxies import current_service_registry

    for name, service in current_service_registry._services.items():
        if not hasattr(service, "rebuild_index") or not hasattr(service, "indexer"):
            continue
        try:
            service.rebuild_index(system_identity)
        except NotImplementedError:
            continue
        # Drafts have their own indexer and queue (invenio-drafts-resources).
        for attr in ("indexer", "draft_indexer"):
            if getattr(service, attr, None) is not None:
                getattr(service, attr).process_bulk_queue()
        print(f"[setup]   reindexed {name}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env-file", required=True, type=Path)
    parser.add_argument("--files-dir", required=True, type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--series", type=int, default=14, help="written to the env file")
    parser.add_argument("--reindex-only", action="store_true", help="search state was lost")
    args = parser.parse_args()

    with step("create app"):
        from invenio_app.factory import create_app

        app = create_app()
        cli = Cli(app)

    if args.reindex_only:
        with step("index init"):
            cli("index", "init")
        with step("reindex everything"), app.app_context():
            reindex_all()
        return 0

    owner, other = "ci-owner@example.org", "ci-other@example.org"
    with step("db init + create"):
        cli("db", "init")
        cli("db", "create")
    with step("files location"):
        args.files_dir.mkdir(parents=True, exist_ok=True)
        cli("files", "location", "create", "--default", "default-location", str(args.files_dir))
    with step("roles"):
        cli("roles", "create", "admin")
        cli("access", "allow", "superuser-access", "role", "admin")
    with step("index init"):
        cli("index", "init")
    with step("rdm-records fixtures (vocabularies)"):
        cli("rdm-records", "fixtures")
    with step("rdm fixtures (pages, oai sets)"):
        cli("rdm", "fixtures")
    with step("users"):
        for email in (owner, other):
            cli("users", "create", email, "--password", PASSWORD, "--active", "--confirm")
    with step("tokens"):
        token = create_token(cli, owner, "async-uploader-ci")
        token2 = create_token(cli, other, "async-uploader-ci-2")
    with step("communities"), app.app_context():
        create_community(owner, "async-uploader-ci", "Async uploader CI", "open")
        create_community(owner, "async-uploader-ci-review", "Async uploader CI (review)", "closed")

    env = {
        "REAL_INVENIO_URL": args.url,
        "REAL_INVENIO_TOKEN": token,
        "REAL_INVENIO_COMMUNITY": "async-uploader-ci",
        "REAL_INVENIO_COMMUNITY_REVIEW": "async-uploader-ci-review",
        "REAL_INVENIO_USER": owner,
        "REAL_INVENIO_TOKEN_2": token2,
        "REAL_INVENIO_USER_2": other,
        "REAL_INVENIO_SERIES": str(args.series),
    }
    tmp = args.env_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(f"{k}={v}\n" for k, v in env.items())
    tmp.replace(args.env_file)
    print(f"[setup] wrote {args.env_file}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
