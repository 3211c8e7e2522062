"""The public surface stays small, sorted and importable; the package root stays lazy."""

from __future__ import annotations

import subprocess
import sys

import async_uploader

CLIENT_MODULES = {
    "cli",
    "client",
    "config",
    "discover",
    "journal",
    "match",
    "pipeline",
    "plan",
    "reconcile",
    "record",
    "state",
    "transfer",
    "validate",
}


def test_all_is_sorted_and_complete() -> None:
    names = async_uploader.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(async_uploader, name), name
    assert set(dir(async_uploader)) >= set(names)
    # What the root can hand out is exactly the public list (nothing leaks through it).
    assert set(async_uploader._EXPORTS) == set(names) - {"__version__"}


def test_configuration_names_are_public() -> None:
    from async_uploader import RetryConfig, UploadConfig, ValidationLimits

    fields = UploadConfig.__dataclass_fields__
    assert fields["retry"].default_factory is RetryConfig  # type: ignore[misc]
    assert fields["limits"].default_factory is ValidationLimits  # type: ignore[misc]


def test_importing_the_sandbox_loads_no_client_module() -> None:
    """The sandbox is an independent server: `python -X importtime` lists what it loads."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import async_uploader.sandbox"],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    ours = {m.split(".", 1)[1] for m in loaded if m.startswith("async_uploader.")}
    assert ours, "importtime listed none of the package's modules"
    assert not ours & CLIENT_MODULES, sorted(ours & CLIENT_MODULES)
