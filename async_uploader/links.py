"""Outputs derived from the journals: ``records_links.json`` and the ``--report`` file.

The links file is a JSON array in folder order; each element is the record's ``links``
object exactly as the server returned it when the draft was created, which is what the
original BIG-MAP example script wrote (readers take ``record_html`` and its last path
segment). It is rebuilt from the journals on every run, so it is never the source of truth
and is complete after an interrupted run too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .journal import DONE_PHASES, DRAFT, RecordState, atomic_write
from .results import BatchResult


def links_of(states: Sequence[RecordState], *, draft_only: bool = False) -> list[dict[str, Any]]:
    """Links of every shared record (and of complete drafts with ``--draft-only``), in order."""
    wanted = DONE_PHASES | ({DRAFT} if draft_only else set())
    return [s.links for s in states if s.phase in wanted and s.links]


def write_links(path: Path, states: Sequence[RecordState], *, draft_only: bool = False) -> None:
    data = json.dumps(links_of(states, draft_only=draft_only), indent=2, ensure_ascii=False)
    atomic_write(path, data.encode() + b"\n")


def write_report(path: Path, result: BatchResult) -> None:
    atomic_write(path, json.dumps(result.to_json(), indent=2, ensure_ascii=False).encode())
