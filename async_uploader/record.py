"""One record's journey: draft -> files -> share, each step journaled before the next.

The order of operations is what makes a kill at any moment safe:

1. the journal says ``creating`` (with the time and title) *before* POST /api/records;
   the draft id is journaled the moment the answer arrives (``steps/draft.py``);
2. every committed file is journaled (size, mtime, md5) before the next step
   (``steps/files.py``);
3. the journal says ``sharing`` before publish/submit-review, ``published`` after
   (``steps/share.py``).

A rerun reads the journal and asks the server about anything that was in flight, so no
call that creates something is ever sent twice blindly.
"""

from __future__ import annotations

from .config import ShareMode
from .journal import PUBLISHED
from .plan import Action
from .results import FileResult, Outcome, RecordResult
from .steps.draft import ensure_draft
from .steps.files import sync_files
from .steps.job import RecordJob
from .steps.reconcile import sweep_orphans
from .steps.share import confirm_published, share


async def execute(job: RecordJob) -> RecordResult:
    """Run the record's remaining steps; its result (errors propagate to the pipeline)."""
    outcome = await _journey(job)
    if job.state.sweep_from:  # a create was resent: its lost twin may exist
        async with job.ctx.title_lock(job.record.title):
            await sweep_orphans(job)
    files = tuple(FileResult(f.key, f.size, f.md5) for f in job.state.files.values())
    return RecordResult(job.folder, outcome, job.state.draft_id, job.state.record_url, files)


async def _journey(job: RecordJob) -> Outcome:
    if job.plan.action is Action.SWEEP:
        return _shared(job)
    if job.plan.action is Action.CONFIRM_SHARE and await confirm_published(job):
        return Outcome.PUBLISHED
    draft = await ensure_draft(job)
    if draft is None:  # the share went through in an earlier run after all
        return _shared(job)
    await sync_files(job, draft)
    if job.ctx.settings.share is ShareMode.DRAFT_ONLY:
        return Outcome.DRAFT
    return await share(job, draft)


def _shared(job: RecordJob) -> Outcome:
    return Outcome.PUBLISHED if job.state.phase == PUBLISHED else Outcome.IN_REVIEW
