"""Step 3, the share: publish, or submit to a community for review.

Hazard: publish and submit-review are not idempotent. The journal says ``sharing`` before
the call; after a lost answer ``GET /api/records/{id}`` (or the review's status) decides.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import anyio

from ..client import InvenioClient
from ..config import ShareMode
from ..errors import CommunityNotFound, UploaderError
from ..journal import DRAFT, IN_REVIEW, SHARING
from ..plan import fingerprint
from ..results import Outcome
from .job import RecordJob
from .settle import unsure


async def share(job: RecordJob, draft: dict[str, Any]) -> Outcome:
    draft_id = str(draft["id"])
    community = job.ctx.settings.share is ShareMode.COMMUNITY
    if community:
        review = await review_status(job, draft_id)
        if review == "submitted":  # an earlier run submitted it; the curators decide
            await job.save(phase=IN_REVIEW)
            return Outcome.IN_REVIEW
        if review == "accepted" and await confirm_published(job):
            return Outcome.PUBLISHED
        await job.client.put_review(draft["links"]["review"], await job.ctx.community_id())

    async def send() -> Outcome:
        await job.save(phase=SHARING, fingerprint=fingerprint(job.record))
        if not community:
            resp = await job.client.publish(draft["links"]["publish"])
            return await job.mark_published(resp.obj)
        resp = await job.client.submit_review(draft_id)
        if resp.obj.get("status") == "accepted" and await confirm_published(job):
            return Outcome.PUBLISHED
        await job.save(phase=IN_REVIEW)
        return Outcome.IN_REVIEW

    async def settle() -> Outcome | None:
        # Hazard: the share may have happened with its answer lost: ask the server.
        if await confirm_published(job):
            return Outcome.PUBLISHED
        if community and await review_status(job, draft_id) == "submitted":
            await job.save(phase=IN_REVIEW)
            return Outcome.IN_REVIEW
        return None

    try:
        # A publish 500 right after a commit is a known race (invenio-rdm-records #809):
        # back off at least a second before the next try.
        return await unsure(job, send, settle, min_delay=1.0)
    except UploaderError:
        await job.save(phase=DRAFT)
        raise


async def confirm_published(job: RecordJob) -> bool:
    if not job.state.draft_id:
        return False
    resp = await job.client.get_record(job.state.draft_id)
    if resp.status != 200:
        return False
    await job.mark_published(resp.obj)
    return True


async def review_status(job: RecordJob, draft_id: str) -> str | None:
    """The draft's review request status ("created", "submitted", ...), or None."""
    url = job.client.url("records", draft_id, "draft", "review")
    resp = await job.client.request("GET", url, accept=(404,))
    return resp.obj.get("status") if resp.status == 200 else None


class Community:
    """The --community slug resolved to its UUID once for the whole batch (the review
    request needs the UUID)."""

    def __init__(self, client: InvenioClient, slug: str) -> None:
        self.client = client
        self.slug = slug
        self._id: str | None = None
        self._lock = anyio.Lock()

    async def __call__(self) -> str:
        async with self._lock:
            if self._id is None:
                self._id = await self._resolve()
            return self._id

    async def _resolve(self) -> str:
        resp = await self.client.get_community(self.slug)
        if resp.status == 404:
            found = await self.client.search_communities(self.slug)
            hits = found.obj.get("hits", {}).get("hits", [])
            match = [h for h in hits if self.slug in (h.get("slug"), h.get("id"))]
            if not match:
                raise CommunityNotFound(
                    f"community {self.slug!r} not found on the server (check --community)",
                    method="GET",
                    url=resp.url,
                    status=404,
                    server_message=resp.obj.get("message"),
                )
            resp = replace(resp, status=200, data=match[0])
        return str(resp.obj["id"])
