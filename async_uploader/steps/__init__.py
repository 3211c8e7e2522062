"""One record's journey, step by step: draft -> files -> share, each journaled before the next.

``job.py`` holds what a step may touch (``RecordContext``: the client, the journal saver,
claims, title locks, the reporter, the settings it reads; never the whole batch) and the
record's own state (``RecordJob``). ``settle.py`` sends calls that are not idempotent;
``reconcile.py`` finds what lost answers left on the server; ``draft.py``, ``files.py`` and
``share.py`` are the three steps; ``record.py`` (one level up) is the recipe.
"""
