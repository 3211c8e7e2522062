"""The real-server tier's connection facts, shared by conftest.py and the tests.

A module of its own (not conftest) so tests can import the type: conftest modules are not
importable by name when several test folders have one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Per-series default state dirs; must match tests/real_invenio/series.sh.
DEFAULT_DIRS = {14: "/tmp/async-uploader-real-invenio", 12: "/tmp/async-uploader-real-invenio-v12"}
# Per-series default PostgreSQL ports (REAL_INVENIO_PG_PORT overrides); also as in series.sh.
DEFAULT_PG_PORTS = {14: 54329, 12: 54339}
DEFAULT_SERIES = 14


def selected_series() -> int:
    """The InvenioRDM series chosen by REAL_INVENIO_SERIES (default 14)."""
    raw = os.environ.get("REAL_INVENIO_SERIES", "").strip() or str(DEFAULT_SERIES)
    series = int(raw)
    if series not in DEFAULT_DIRS:
        raise ValueError(f"REAL_INVENIO_SERIES must be one of {sorted(DEFAULT_DIRS)}, not {raw!r}")
    return series


def state_dir() -> Path:
    """up.sh's state dir for the selected series (REAL_INVENIO_DIR overrides)."""
    return Path(os.environ.get("REAL_INVENIO_DIR") or DEFAULT_DIRS[selected_series()])


def pg_port() -> str:
    """The selected series' PostgreSQL port (REAL_INVENIO_PG_PORT overrides)."""
    return os.environ.get("REAL_INVENIO_PG_PORT") or str(DEFAULT_PG_PORTS[selected_series()])


@dataclass(frozen=True)
class RealServer:
    """Where the real InvenioRDM answers, and who to be there (tokens kept out of repr)."""

    url: str
    token: str = field(repr=False)
    community: str
    community_review: str
    user: str
    token_2: str = field(repr=False)
    user_2: str
    series: int = DEFAULT_SERIES  # InvenioRDM major series: 14 or 12

    @property
    def api(self) -> str:
        return f"{self.url}/api"

    def headers(self, second_user: bool = False) -> dict[str, str]:
        token = self.token_2 if second_user else self.token
        return {"Authorization": f"Bearer {token}"}
