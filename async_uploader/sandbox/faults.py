"""Seeded fault injection: a frozen plan, and pure decisions derived from it.

A decision is a pure function of ``(seed, rule index, call number)``, so the same plan
replays identically whatever the timing or the interleaving of other routes. The call
number is the 1-based count of calls to the rule's route since the plan was installed
(for ``"*"`` rules: the count of all API calls).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROUTE_NAMES: tuple[str, ...] = (
    "create_draft",
    "get_draft",
    "update_draft",
    "delete_draft",
    "publish",
    "edit",
    "new_version",
    "files_import",
    "get_record",
    "search_records",
    "search_user_records",
    "files_list",
    "files_init",
    "files_delete_all",
    "file_get",
    "file_update",
    "file_delete",
    "content_put",
    "part_put",
    "content_get",
    "commit",
    "community_get",
    "community_search",
    "community_create",
    "review_put",
    "review_get",
    "review_delete",
    "submit_review",
    "request_get",
    "request_action",
    "access_links",
    "access_grants",
)

KINDS = (
    "status",
    "drop_mid_body",
    "stall_mid_body",
    "rate_storm",
    "wrong_checksum",
    "lose_response",
)
# Kinds that only make sense on some routes; a rule naming another route is refused early.
_ROUTES_FOR_KIND: dict[str, tuple[str, ...]] = {
    "drop_mid_body": ("content_put", "part_put", "*"),
    "stall_mid_body": ("content_put", "part_put", "*"),
    "wrong_checksum": ("commit", "*"),
}


class FaultPlanError(ValueError):
    """The plan is malformed (unknown route or kind, bad values)."""


@dataclass(frozen=True)
class FaultRule:
    """One rule. It fires on the listed call numbers, or with ``probability`` per call."""

    route: str
    kind: str
    probability: float = 0.0
    on_calls: tuple[int, ...] = ()
    status: int = 503
    body: str = "json"  # "json" | "html" (a proxy's error page)
    duration_s: float = 1.0  # rate_storm; stall_mid_body: how long reading stops
    retry_after: str = "seconds"  # rate_storm: "seconds" | "date"
    fraction: float = 0.5  # drop_mid_body: share of Content-Length read before the abort

    def __post_init__(self) -> None:
        if self.route != "*" and self.route not in ROUTE_NAMES:
            raise FaultPlanError(f"unknown route {self.route!r}")
        if self.kind not in KINDS:
            raise FaultPlanError(f"unknown fault kind {self.kind!r}")
        allowed = _ROUTES_FOR_KIND.get(self.kind)
        if allowed is not None and self.route not in allowed:
            raise FaultPlanError(f"{self.kind} cannot apply to route {self.route!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise FaultPlanError("probability must be within [0, 1]")
        if any(n < 1 for n in self.on_calls):
            raise FaultPlanError("on_calls are 1-based call numbers")
        if self.body not in ("json", "html"):
            raise FaultPlanError("body must be 'json' or 'html'")
        if self.retry_after not in ("seconds", "date"):
            raise FaultPlanError("retry_after must be 'seconds' or 'date'")
        if not 100 <= self.status <= 599:
            raise FaultPlanError("status must be an HTTP status code")
        if not 0.0 <= self.fraction < 1.0:
            raise FaultPlanError("fraction must be within [0, 1)")

    def matches(self, route: str) -> bool:
        return self.route in ("*", route)


@dataclass(frozen=True)
class FaultPlan:
    """Latency, jitter and rules. Build with :meth:`from_dict` or :meth:`from_file`."""

    seed: int = 0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rules: tuple[FaultRule, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultPlan:
        if not isinstance(data, Mapping):
            raise FaultPlanError("a fault plan is a JSON object")
        unknown = set(data) - {"seed", "latency_ms", "jitter_ms", "rules"}
        if unknown:
            raise FaultPlanError(f"unknown plan keys: {sorted(unknown)}")
        rules = []
        for raw in data.get("rules", []):
            if not isinstance(raw, Mapping):
                raise FaultPlanError("each rule is a JSON object")
            values = dict(raw)
            if "on_calls" in values:
                values["on_calls"] = tuple(int(n) for n in values["on_calls"])
            try:
                rules.append(FaultRule(**values))
            except TypeError as exc:
                raise FaultPlanError(f"bad rule {raw!r}: {exc}") from None
        return cls(
            seed=int(data.get("seed", 0)),
            latency_ms=float(data.get("latency_ms", 0.0)),
            jitter_ms=float(data.get("jitter_ms", 0.0)),
            rules=tuple(rules),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> FaultPlan:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def coerce(cls, value: FaultPlan | Mapping[str, Any] | None) -> FaultPlan:
        if value is None:
            return cls()
        if isinstance(value, FaultPlan):
            return value
        return cls.from_dict(value)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for rule in data["rules"]:
            rule["on_calls"] = list(rule["on_calls"])
        return data

    def fires(self, index: int, call_no: int) -> bool:
        """Whether rule ``index`` fires on call ``call_no`` of its route (pure)."""
        rule = self.rules[index]
        if call_no in rule.on_calls:
            return True
        if rule.probability <= 0.0:
            return False
        return random.Random(f"{self.seed}:{index}:{call_no}").random() < rule.probability

    def delay_s(self, call_no: int, base_ms: float = 0.0, base_jitter_ms: float = 0.0) -> float:
        """Latency for API call ``call_no``: fixed part plus seeded jitter, in seconds."""
        fixed = self.latency_ms + base_ms
        jitter = self.jitter_ms + base_jitter_ms
        if jitter > 0:
            fixed += random.Random(f"{self.seed}:latency:{call_no}").uniform(0.0, jitter)
        return max(fixed, 0.0) / 1000.0

    def decide(self, route: str, route_call: int, global_call: int) -> tuple[FaultRule, ...]:
        """The rules that fire for this call, in plan order."""
        fired = []
        for i, rule in enumerate(self.rules):
            if not rule.matches(route):
                continue
            if self.fires(i, global_call if rule.route == "*" else route_call):
                fired.append(rule)
        return tuple(fired)
