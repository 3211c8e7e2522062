"""Discovery on real directory trees built in tmp_path (no mocks, no network)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from async_uploader.discover import METADATA_FILE, Problem, RecordFolder, discover
from async_uploader.errors import ConfigError
from tests.conftest import SEED_RECORDS
from tests.unit.conftest import run_unprivileged

SEED = SEED_RECORDS  # found by the project conftest, beside the checkout
META = b'{"metadata": {"title": "x"}}'


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def make_record(root: Path, name: str, files: dict[str, bytes]) -> Path:
    return make_tree(root / name, {METADATA_FILE: META, **files})


def only(root: Path, **kw: Any) -> RecordFolder:
    [record] = discover(root, **kw)
    return record


def keys(record: RecordFolder) -> list[str]:
    return [f.key for f in record.files]


def test_records_in_natural_order_and_non_records_ignored(tmp_path: Path) -> None:
    for name in ["10", "2", "1", "run10", "run2", "run1", "b", "a"]:
        make_record(tmp_path, name, {"d.txt": b"1"})
    make_tree(tmp_path, {"notes/readme.md": b"no metadata here", "loose.txt": b"x"})
    make_record(tmp_path, ".hidden", {"d.txt": b"1"})
    names = [r.name for r in discover(tmp_path)]
    assert names == ["1", "2", "10", "a", "b", "run1", "run2", "run10"]


def test_nested_keys_sizes_and_paths(tmp_path: Path) -> None:
    make_record(
        tmp_path,
        "7",
        {
            "b.csv": b"1,2\r\n",
            "raw/run1.dat": b"x" * 17,
            "raw/deep/er/x.bin": b"",
            "raw/record_metadata.json": b"{}",  # only the top one is the metadata
        },
    )
    record = only(tmp_path)
    assert record.path == tmp_path / "7"
    assert record.metadata_path == tmp_path / "7" / METADATA_FILE
    assert keys(record) == [
        "b.csv",
        "raw/deep/er/x.bin",
        "raw/record_metadata.json",
        "raw/run1.dat",
    ]
    by_key = {f.key: f for f in record.files}
    assert by_key["raw/run1.dat"].size == 17
    assert by_key["raw/run1.dat"].path.is_absolute()
    assert by_key["b.csv"].path.read_bytes() == b"1,2\r\n"
    assert by_key["b.csv"].mtime_ns == (tmp_path / "7" / "b.csv").stat().st_mtime_ns
    assert record.problems == ()


def test_relative_root_gives_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_record(tmp_path / "records", "0", {"a": b"1"})
    monkeypatch.chdir(tmp_path)
    record = only(Path("records"))
    assert record.path.is_absolute() and record.files[0].path.is_absolute()
    assert record.files[0].path.read_bytes() == b"1"


def test_hidden_and_state_files_skipped(tmp_path: Path) -> None:
    make_record(
        tmp_path,
        "0",
        {
            "data.csv": b"1",
            ".hidden": b"x",
            ".git/config": b"x",
            "raw/.cache/blob": b"x",
            "raw/.DS_Store": b"x",
            "raw/ok.dat": b"x",
            "records_links.json": b"[]",
            ".upload_state/journal": b"x",
        },
    )
    assert keys(only(tmp_path)) == ["data.csv", "raw/ok.dat"]


TREE = {
    "a.dat": b"1",
    "b.csv": b"1",
    "x.tmp": b"1",
    "raw/run1.dat": b"1",
    "raw/run2.tmp": b"1",
    "raw/sub/deep.dat": b"1",
    "notes/readme.md": b"1",
    "notes/raw": b"1",  # a file named like the directory
}
ALL = sorted(TREE)


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        ((), (), ALL),
        (("*.dat",), (), ["a.dat", "raw/run1.dat", "raw/sub/deep.dat"]),
        (("raw/*",), (), ["raw/run1.dat", "raw/run2.tmp", "raw/sub/deep.dat"]),
        (("raw/**",), (), ["raw/run1.dat", "raw/run2.tmp", "raw/sub/deep.dat"]),
        (("raw/*.dat",), (), ["raw/run1.dat"]),
        (("**/deep.dat",), (), ["raw/sub/deep.dat"]),
        (("?.dat", "[bc].*"), (), ["a.dat", "b.csv"]),
        ((), ("**/*.tmp",), [k for k in ALL if not k.endswith(".tmp")]),
        ((), ("*.tmp",), [k for k in ALL if not k.endswith(".tmp")]),
        ((), ("raw",), ["a.dat", "b.csv", "notes/readme.md", "x.tmp"]),
        ((), ("raw/",), ["a.dat", "b.csv", "notes/raw", "notes/readme.md", "x.tmp"]),
        ((), ("/a.dat", "sub/deep.dat"), [k for k in ALL if k != "a.dat"]),
        (("*.dat",), ("raw/*",), ["a.dat"]),  # exclude wins
        (("*.dat",), ("*.dat",), []),
        (("record_metadata.json",), (), []),
        ((), ("*",), []),
    ],
)
def test_include_exclude(
    tmp_path: Path, include: tuple[str, ...], exclude: tuple[str, ...], expected: list[str]
) -> None:
    make_record(tmp_path, "0", TREE)
    record = only(tmp_path, include=include, exclude=exclude)
    assert keys(record) == expected
    assert record.metadata_path.is_file()  # the metadata is never filtered away


# Gitignore rules through pathspec. Each row: patterns, and the keys they match, which is
# exactly what ``git check-ignore`` reports with those lines as a .gitignore in the record.
GIT_TREE = {
    k: b"1"
    for k in [
        " lead.txt",
        "!bang.txt",
        "#notes.txt",
        "1.txt",
        "[1].txt",
        "a.dat",
        "a/b/scratch/c/d.txt",
        "a/scratch/s.txt",
        "keep.tmp",
        "notes/raw",
        "raw/keep.dat",
        "raw/keep.tmp",
        "raw/run.tmp",
        "raw/run1.dat",
        "raw/sub/deep.dat",
        "scratch/t.txt",
        "sub/top.txt",
        "top.txt",
        "x.tmp",
    ]
}
GIT_ALL = sorted(GIT_TREE)
RAW = [k for k in GIT_ALL if k.startswith("raw/")]
SCRATCH = ["a/b/scratch/c/d.txt", "a/scratch/s.txt", "scratch/t.txt"]
TMP = ["keep.tmp", "raw/keep.tmp", "raw/run.tmp", "x.tmp"]

GITIGNORE_CASES = {
    # negation: the last matching line wins
    "negation": (["*.tmp", "!keep.tmp"], ["raw/run.tmp", "x.tmp"]),
    "negation first loses": (["!keep.tmp", "*.tmp"], TMP),
    "anchored negation": (["*.tmp", "!/keep.tmp"], ["raw/keep.tmp", "raw/run.tmp", "x.tmp"]),
    "negation inside matched contents": (
        ["raw/*", "!raw/keep.dat"],
        [k for k in RAW if k != "raw/keep.dat"],
    ),
    "no negation inside a matched dir": (["raw/", "!raw/keep.dat"], RAW),
    "no negation inside a matched dir, **": (["raw", "!**/keep.*"], ["notes/raw", *RAW]),
    "only .dat files, gitignore idiom": (
        ["*", "!*/", "!*.dat"],
        [k for k in GIT_ALL if not k.endswith(".dat")],
    ),
    "negated files stay in matched dirs": (
        ["*", "!*.dat"],
        [k for k in GIT_ALL if k != "a.dat"],
    ),
    "negated dir, files still matched": (["*.tmp", "!raw/"], TMP),
    # escapes
    "escaped #": (["\\#notes.txt"], ["#notes.txt"]),
    "escaped !": (["\\!bang.txt"], ["!bang.txt"]),
    "escaped [": (["\\[1].txt"], ["[1].txt"]),
    "bracket class": (["[1].txt"], ["1.txt"]),
    "escaped leading space": (["\\ lead.txt"], [" lead.txt"]),
    "trailing spaces dropped": (["x.tmp  "], ["x.tmp"]),
    # directories
    "dir or file named raw": (["raw"], ["notes/raw", *RAW]),
    "dir only": (["raw/"], RAW),
    "dir only at any depth": (["scratch/"], SCRATCH),
    "dir only, anchored": (["/scratch/"], ["scratch/t.txt"]),
    "dir contents": (["raw/sub/*"], ["raw/sub/deep.dat"]),
    # **
    "** then a dir's contents": (["**/scratch/*"], SCRATCH),
    "** in the middle": (["raw/**/*.dat"], ["raw/keep.dat", "raw/run1.dat", "raw/sub/deep.dat"]),
    "** in the middle, many levels": (["a/**/d.txt"], ["a/b/scratch/c/d.txt"]),
    "** at the end, then negation": (
        ["raw/**", "!raw/keep.dat"],
        [k for k in RAW if k != "raw/keep.dat"],
    ),
    "** alone": (["**"], GIT_ALL),
    # anchoring
    "leading / anchors": (["/top.txt"], ["top.txt"]),
    "no / matches at any depth": (["top.txt"], ["sub/top.txt", "top.txt"]),
    "inner / anchors": (["scratch/t.txt"], ["scratch/t.txt"]),
    "inner / anchors, no match below": (["sub/deep.dat"], []),
    "case-sensitive": (["*.TMP"], []),
}


@pytest.mark.parametrize(
    ("patterns", "matched"), GITIGNORE_CASES.values(), ids=list(GITIGNORE_CASES)
)
def test_gitignore_rules(tmp_path: Path, patterns: list[str], matched: list[str]) -> None:
    make_record(tmp_path, "0", GIT_TREE)
    assert keys(only(tmp_path, include=patterns)) == sorted(matched)
    assert keys(only(tmp_path, exclude=patterns)) == [k for k in GIT_ALL if k not in matched]


def test_include_negation_then_exclude(tmp_path: Path) -> None:
    make_record(tmp_path, "0", GIT_TREE)
    record = only(tmp_path, include=["*.dat", "!raw/sub/"], exclude=["a.dat"])
    # "!raw/sub/" takes back the directory only; its files still match "*.dat".
    assert keys(record) == ["raw/keep.dat", "raw/run1.dat", "raw/sub/deep.dat"]
    record = only(tmp_path, include=["*.dat", "!raw/sub/*"], exclude=["a.dat"])
    assert keys(record) == ["raw/keep.dat", "raw/run1.dat"]


def test_negation_does_not_walk_excluded_dirs(tmp_path: Path) -> None:
    outside = make_tree(tmp_path / "outside", {"secret": b"s"})
    rec = make_record(tmp_path / "root", "0", {"a.tmp": b"1", "raw/keep.tmp": b"1"})
    (rec / "raw" / "escape").symlink_to(outside / "secret")
    record = only(tmp_path / "root", exclude=("raw/", "*.tmp", "!keep.tmp"))
    assert keys(record) == [] and record.problems == ()
    record = only(tmp_path / "root", exclude=("raw/*", "!keep.tmp"))
    assert keys(record) == ["a.tmp", "raw/keep.tmp"] and record.problems == ()


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("#notes.txt", "is a comment"),
        ("/", "matches nothing"),
        ("[ab", "without its closing ]"),
        ("raw/[", "without its closing ]"),
        ("a\\", "escapes nothing"),
        ("\\", "escapes nothing"),
        ("!", "no pattern after the !"),
    ],
)
@pytest.mark.parametrize("option", ["include", "exclude"])
def test_bad_pattern_is_config_error(
    tmp_path: Path, option: str, pattern: str, fragment: str
) -> None:
    make_record(tmp_path, "0", {})
    with pytest.raises(ConfigError) as info:
        discover(tmp_path, **{option: ("*.dat", pattern)})
    assert f"--{option} pattern '{pattern}'" in str(info.value)
    assert fragment in str(info.value)


def test_patterns_must_be_a_sequence_of_text(tmp_path: Path) -> None:
    make_record(tmp_path, "0", {})
    with pytest.raises(ConfigError):
        discover(tmp_path, include="*.dat")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not text"):
        discover(tmp_path, exclude=("*.dat", 3))  # type: ignore[arg-type]


def test_bad_pattern_exits_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from async_uploader.cli import main

    make_record(tmp_path, "0", {"a.dat": b"1"})
    assert main(["validate", str(tmp_path), "--exclude", "raw\\"]) == 2
    err = capsys.readouterr().err
    assert "invalid --exclude pattern 'raw\\'" in err and "Traceback" not in err


def test_excluded_directory_is_not_walked(tmp_path: Path) -> None:
    outside = make_tree(tmp_path / "outside", {"secret": b"s"})
    rec = make_record(tmp_path / "root", "0", {"a.dat": b"1", "raw/x.dat": b"1"})
    (rec / "raw" / "escape").symlink_to(outside / "secret")
    assert only(tmp_path / "root").problems  # seen when the directory is walked
    record = only(tmp_path / "root", exclude=("raw",))
    assert keys(record) == ["a.dat"] and record.problems == ()


def symlink_case(rec: Path, outside: Path, case: str) -> None:
    """Build one symlink situation inside record folder ``rec``."""
    if case == "file inside":
        (rec / "alias.dat").symlink_to("raw/run1.dat")
    elif case == "dir inside":
        (rec / "alias").symlink_to(rec / "raw")  # absolute target, still inside
    elif case == "file outside":
        (rec / "alias.dat").symlink_to(outside / "secret.dat")
    elif case == "dir outside":
        (rec / "alias").symlink_to(outside)
    elif case == "relative outside":
        (rec / "raw" / "alias.dat").symlink_to("../../../outside/secret.dat")
    elif case == "back inside via outside":
        (outside / "hop").symlink_to(rec / "raw" / "run1.dat")
        (rec / "alias.dat").symlink_to(outside / "hop")
    elif case == "broken":
        (rec / "alias.dat").symlink_to("does-not-exist")
    elif case == "self loop":
        (rec / "alias.dat").symlink_to("alias.dat")
    elif case == "parent loop":
        (rec / "raw" / "alias").symlink_to("..")
    elif case == "record itself":
        (rec / "alias").symlink_to(".")
    elif case == "mutual loop":
        (rec / "raw" / "sub").mkdir()
        (rec / "raw" / "sub" / "alias").symlink_to("../../other")
        (rec / "other").mkdir()
        (rec / "other" / "back").symlink_to("../raw")


BASE = ["keep.txt", "raw/run1.dat"]


@pytest.mark.parametrize(
    ("case", "expected_keys", "problem_key", "fragment"),
    [
        ("file inside", ["alias.dat", *BASE], None, None),
        ("dir inside", ["alias/run1.dat", *BASE], None, None),
        ("back inside via outside", ["alias.dat", *BASE], None, None),
        ("file outside", BASE, "alias.dat", "symlink leads outside the record folder"),
        ("dir outside", BASE, "alias", "symlink leads outside the record folder"),
        ("relative outside", BASE, "raw/alias.dat", "symlink leads outside the record folder"),
        ("broken", BASE, "alias.dat", "broken symlink"),
        ("self loop", BASE, "alias.dat", "symlink loop"),
        ("parent loop", BASE, "raw/alias", "symlink loop"),
        ("record itself", BASE, "alias", "symlink loop"),
        # Entered from either side, each way round ends at a folder already on the path.
        (
            "mutual loop",
            ["other/back/run1.dat", *BASE],
            "other/back/sub/alias,raw/sub/alias/back",
            "symlink loop",
        ),
    ],
)
def test_symlinks(
    tmp_path: Path,
    case: str,
    expected_keys: list[str],
    problem_key: str | None,
    fragment: str | None,
) -> None:
    outside = make_tree(tmp_path / "outside", {"secret.dat": b"secret"})
    rec = make_record(tmp_path / "root", "0", {"keep.txt": b"k", "raw/run1.dat": b"12345"})
    symlink_case(rec, outside, case)
    record = only(tmp_path / "root")
    assert keys(record) == sorted(expected_keys)
    if problem_key is None:
        assert record.problems == ()
        linked = {f.key: f for f in record.files}
        alias = next(k for k in linked if k.startswith("alias"))
        assert linked[alias].size == 5 and linked[alias].path.read_bytes() == b"12345"
        assert linked[alias].key.startswith("alias")  # the link's name, not its target's
    else:
        assert fragment is not None
        expected = [(k, "error") for k in problem_key.split(",")]
        assert [(p.key, p.severity) for p in record.problems] == expected
        assert all(fragment in p.message and p.folder == "0" for p in record.problems)


def test_symlinked_record_folder_is_followed(tmp_path: Path) -> None:
    real = make_record(tmp_path / "elsewhere", "data", {"a.txt": b"1"})
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "5").symlink_to(real)
    record = only(tmp_path / "root")
    assert record.name == "5" and keys(record) == ["a.txt"] and record.problems == ()


def test_special_file_is_a_warning(tmp_path: Path) -> None:
    rec = make_record(tmp_path, "0", {"a.txt": b"1"})
    os.mkfifo(rec / "pipe")
    record = only(tmp_path)
    assert keys(record) == ["a.txt"]
    assert [(p.key, p.severity) for p in record.problems] == [("pipe", "warning")]
    assert "not a regular file" in record.problems[0].message


def test_unreadable_subdirectory_is_a_problem(open_tmp: Path) -> None:
    rec = make_record(open_tmp, "0", {"a.txt": b"1", "locked/b.txt": b"2"})
    (rec / "locked").chmod(0)
    record = run_unprivileged(lambda: only(open_tmp))
    assert keys(record) == ["a.txt"]
    assert [p.key for p in record.problems] == ["locked"]
    assert "cannot read directory" in record.problems[0].message


def test_unreadable_record_folder_is_reported_not_skipped(open_tmp: Path) -> None:
    make_record(open_tmp, "0", {"a.txt": b"1"})
    (make_record(open_tmp, "1", {"a.txt": b"1"})).chmod(0)
    records = run_unprivileged(lambda: discover(open_tmp))
    assert [r.name for r in records] == ["0", "1"]
    assert records[0].problems == ()
    assert "cannot look inside the folder" in records[1].problems[0].message


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_bad_root_is_config_error(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "records"
    if kind == "file":
        root.write_text("not a folder")
    with pytest.raises(ConfigError) as info:
        discover(root)
    assert str(root) in str(info.value)


def test_problem_str_is_one_line() -> None:
    err = Problem("3", "must be text\nnext", "metadata.title")
    assert str(err) == "folder 3, metadata.title: must be text\\nnext"
    warn = Problem("3", "is empty", "a\tb.txt", "warning")
    assert str(warn) == "warning: folder 3, a\\tb.txt: is empty"
    assert str(Problem("x", "too many files")) == "folder x: too many files"


def test_many_records(tmp_path: Path) -> None:
    for i in range(300):
        make_record(tmp_path, str(i), {"a.csv": b"1", "b.json": b"{}", "sub/c.dat": b"22"})
    records = discover(tmp_path)
    assert [r.name for r in records] == [str(i) for i in range(300)]
    assert all(keys(r) == ["a.csv", "b.json", "sub/c.dat"] for r in records)


def test_seed_records() -> None:
    records = discover(SEED)
    assert [r.name for r in records] == ["0", "1"]  # _reference has no metadata
    assert keys(records[0]) == ["scientific_data.json"]
    assert keys(records[1]) == ["dummy_data.md", "scientific_data.json"]
    assert [f.size for f in records[1].files] == [1160, 874]
    assert all(r.problems == () for r in records)
