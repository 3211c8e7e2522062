"""The public surface stays small, sorted and importable."""

from __future__ import annotations

import async_uploader


def test_all_is_sorted_and_complete() -> None:
    names = async_uploader.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(async_uploader, name), name
    public = {n for n in vars(async_uploader) if not n.startswith("_")} - {"annotations", "anyio"}
    modules = {n for n in public if type(getattr(async_uploader, n)).__name__ == "module"}
    assert public - modules == set(names) - {"__version__"}
