"""Fixtures for the real-server tier (`pytest -m real_invenio tests/real_invenio`).

Fixtures, plus one hook for the ``series`` marker (it only acts on tests carrying that
marker, so the default fast run is unaffected). The server is started outside pytest by
tests/real_invenio/up.sh, which writes an env file; REAL_INVENIO_SERIES (14, the default, or 12)
picks which series' server the tests run against.

``@pytest.mark.series(14)`` (or ``series(13, 14)``) marks a test that needs a feature the other
series lacks; on the other series it is skipped with the stated reason
(``@pytest.mark.series(14, reason="...")``).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real_invenio.lossy_proxy import LossyProxy
from tests.real_invenio.real_invenio_env import RealServer, selected_series, state_dir


def env_file_path() -> Path:
    """REAL_INVENIO_ENV, else server.env in the selected series' state dir."""
    explicit = os.environ.get("REAL_INVENIO_ENV")
    if explicit:
        return Path(explicit)
    return state_dir() / "server.env"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``series(...)`` that do not list the selected series."""
    del config
    for item in items:
        marker = item.get_closest_marker("series")
        if marker is None:
            continue
        series = selected_series()
        wanted = sorted({int(s) for s in marker.args})
        if series not in wanted:
            why = marker.kwargs.get("reason", "needs another InvenioRDM series")
            only = "/".join(f"v{s}" for s in wanted)
            reason = f"InvenioRDM {only} only: {why} (REAL_INVENIO_SERIES={series})"
            item.add_marker(pytest.mark.skip(reason=reason))


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    return values


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/records?size=1", timeout=10) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _unavailable(reason: str, required: bool) -> None:
    if required:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_server() -> RealServer:
    """The running server from up.sh; skips when it is absent.

    Set REAL_INVENIO_REQUIRED=1 (CI does, after up.sh) to turn "absent" into a failure, so a
    broken bring-up can never pass as a skipped tier.
    """
    required = os.environ.get("REAL_INVENIO_REQUIRED") == "1"
    path = env_file_path()
    if not path.is_file():
        reason = f"real InvenioRDM not set up: {path} is absent (run tests/real_invenio/up.sh)"
        _unavailable(reason, required)
    env = read_env_file(path)
    server = RealServer(
        url=env["REAL_INVENIO_URL"].rstrip("/"),
        token=env["REAL_INVENIO_TOKEN"],
        community=env["REAL_INVENIO_COMMUNITY"],
        community_review=env.get("REAL_INVENIO_COMMUNITY_REVIEW", ""),
        user=env.get("REAL_INVENIO_USER", ""),
        token_2=env.get("REAL_INVENIO_TOKEN_2", ""),
        user_2=env.get("REAL_INVENIO_USER_2", ""),
        series=int(env.get("REAL_INVENIO_SERIES", "14")),  # v14 env files predate the key
    )
    if server.series != selected_series():
        reason = (
            f"{path} is a v{server.series} server but REAL_INVENIO_SERIES selects "
            f"v{selected_series()}"
        )
        _unavailable(reason, required)
    if not _answers(server.url):
        reason = f"real InvenioRDM at {server.url} does not answer (run tests/real_invenio/up.sh)"
        _unavailable(reason, required)
    return server


@pytest.fixture
def lossy_proxy(real_server: RealServer) -> Iterator[LossyProxy]:
    """A :class:`LossyProxy` in front of the real server on a free port (``.url``); it loses
    nothing until the test calls ``set_rules([Lose(...)])``, and counts every request."""
    with LossyProxy(real_server.url) as proxy:
        yield proxy
