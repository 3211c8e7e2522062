"""The real-server tier's connection facts, shared by conftest.py and the tests.

A module of its own (not conftest) so tests can import the type: conftest modules are not
importable by name when several test folders have one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    @property
    def api(self) -> str:
        return f"{self.url}/api"

    def headers(self, second_user: bool = False) -> dict[str, str]:
        token = self.token_2 if second_user else self.token
        return {"Authorization": f"Bearer {token}"}
