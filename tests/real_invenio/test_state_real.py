"""State you can trust, on the real InvenioRDM 14: lost create answers for titles the server
cleans, a deleted state, and a rerun with another links file. Checked in PostgreSQL.

The answers are lost by a proxy in front of the real server (``lossy_proxy``): the create
happens, the uploader never hears of it. The search stand-in makes new drafts searchable
only after its refresh delay (1 s, like OpenSearch), so the patient search really waits.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from async_uploader.match import clean_text
from tests.conftest import RecordFactory, metadata, run_cli
from tests.real_invenio.helpers import assert_files_match, db_titles, record_id
from tests.real_invenio.lossy_proxy import Lose, LossyProxy
from tests.real_invenio.real_invenio_env import RealServer

pytestmark = pytest.mark.real_invenio

TITLES = [
    "“Curly” quotes {tag} run {i} ",
    "  Space-padded {tag} run {i}",
    "ﬁle {tag} d'une run {i}",
]
CREATE = r"/api/records"


def titled(root: Path, tag: str) -> list[str]:
    titles = []
    for folder in sorted(root.iterdir(), key=lambda p: int(p.name)):
        i = int(folder.name)
        title = TITLES[i % len(TITLES)].format(tag=tag, i=i)
        (folder / "record_metadata.json").write_text(json.dumps(metadata(title)))
        titles.append(title)
    return titles


def upload(proxy: LossyProxy, server: RealServer, root: Path, *extra: str) -> str:
    proc = run_cli(["upload", str(root), "--url", proxy.url, "-v", *extra], token=server.token)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stderr


def assert_once_each(tag: str, titles: list[str]) -> None:
    published, drafts = db_titles(tag)
    assert drafts == {}, f"orphan drafts: {drafts}"
    assert published == {clean_text(t): 1 for t in titles}


def test_cleaned_titles_with_lost_creates_leave_no_orphan_and_no_duplicate(
    real_server: RealServer, lossy_proxy: LossyProxy, make_records: RecordFactory
) -> None:
    tag = f"AU{uuid.uuid4().hex[:10]}"
    root = make_records(6, files={"data.bin": 2000})
    titles = titled(root, tag)
    lossy_proxy.set_rules([Lose("POST", CREATE, every=2)])
    upload(lossy_proxy, real_server, root)
    assert lossy_proxy.lost("POST") >= 3
    assert_once_each(tag, titles)
    links = json.loads((root / "records_links.json").read_text())
    for i, link in enumerate(links):
        assert_files_match(real_server, record_id(link), root / str(i))


def test_deleted_state_and_another_links_file_create_nothing(
    real_server: RealServer, lossy_proxy: LossyProxy, make_records: RecordFactory, tmp_path: Path
) -> None:
    tag = f"AU{uuid.uuid4().hex[:10]}"
    root = make_records(4, files={"data.bin": 1500})
    titles = titled(root, tag)
    upload(lossy_proxy, real_server, root, "--links-file", str(tmp_path / "first.json"))
    first = json.loads((tmp_path / "first.json").read_text())
    lossy_proxy.reset_counts()
    upload(lossy_proxy, real_server, root)  # no --links-file now: the journal still knows
    assert lossy_proxy.count() == 0
    shutil.rmtree(root / ".upload_state")
    out = upload(lossy_proxy, real_server, root)
    assert out.count("adopting it") == 4
    assert lossy_proxy.count("POST") == 0
    assert_once_each(tag, titles)
    again = json.loads((root / "records_links.json").read_text())
    assert [record_id(link) for link in again] == [record_id(link) for link in first]
