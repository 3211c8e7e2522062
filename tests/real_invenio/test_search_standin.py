"""The search stand-in matches like OpenSearch where the uploader depends on it.

After a lost create answer the uploader looks its draft up by title phrase. On a real
InvenioRDM that search is analysed (tokens, not substrings), sees the title as the server
cleaned it, and misses a just-created draft until the next index refresh. These checks go
through the real server, so they also pin the query the server builds.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.conftest import metadata
from tests.real_invenio.real_invenio_env import RealServer, state_dir

sys.path.insert(0, str(Path(__file__).parent))  # the stand-in's modules import each other flat
from search_analysis import standard_tokens
from search_query import Mapping, matches

pytestmark = pytest.mark.real_invenio
STATE = state_dir()  # the selected series' (REAL_INVENIO_SERIES) up.sh state dir

RECORDS_MAPPING = {  # the shape of invenio-rdm-records' record-v7.0.0 title mapping
    "settings": {
        "analysis": {
            "char_filter": {
                "strip_special_chars": {
                    "type": "pattern_replace",
                    "pattern": "[\\p{Punct}\\p{S}]",
                    "replacement": "",
                }
            },
            "analyzer": {
                "accent_analyzer": {
                    "tokenizer": "standard",
                    "type": "custom",
                    "char_filter": ["strip_special_chars"],
                    "filter": ["lowercase", "asciifolding"],
                }
            },
        }
    },
    "mappings": {
        "properties": {
            "id": {"type": "keyword"},
            "metadata": {
                "properties": {
                    "title": {
                        "type": "text",
                        "analyzer": "accent_analyzer",
                        "fields": {"keyword": {"type": "keyword"}},
                    }
                }
            },
        }
    },
}
DRAFTS_MAPPING = {
    "mappings": {"properties": {"metadata": {"properties": {"title": {"type": "text"}}}}}
}


def refresh_delay() -> float:
    """The delay the running stand-in was started with (up.sh writes it to search.conf)."""
    conf = STATE / "search.conf"
    for part in conf.read_text().split() if conf.is_file() else []:
        if part.startswith("refresh="):
            return float(part.removeprefix("refresh="))
    return 0.0


def q_matches(mapping: dict[str, Any], title: str, q: str) -> bool:
    query = {"query_string": {"query": q}}
    return matches(query, "x", {"metadata": {"title": title}}, Mapping.from_body(mapping))


def test_standard_tokenizer() -> None:
    text = '"Curly" run-3 v1.2 foo:bar don\'t 1,000 e.g. résumé 日本 a_b'
    assert standard_tokens(text) == [
        *("Curly", "run", "3", "v1.2", "foo:bar", "don't", "1,000", "e.g", "résumé"),
        *("日", "本", "a_b"),
    ]


@pytest.mark.parametrize("mapping", [RECORDS_MAPPING, DRAFTS_MAPPING], ids=["records", "drafts"])
def test_phrases_match_tokens_not_substrings(mapping: dict[str, Any]) -> None:
    assert q_matches(mapping, '"Curly" quotes run 3', 'metadata.title:"\\"Curly\\" quotes run 3"')
    assert q_matches(mapping, "Run 1", 'metadata.title:"run 1"')
    assert not q_matches(mapping, "Run 10", 'metadata.title:"run 1"')
    assert not q_matches(mapping, "Run 1", 'metadata.title:"run 10"')
    assert q_matches(mapping, "B", 'metadata.title:"A" OR metadata.title:"B"')
    assert not q_matches(mapping, "C", 'metadata.title:"A" OR metadata.title:"B"')
    assert q_matches(mapping, 'back\\slash "x"', 'metadata.title:"back\\\\slash \\"x\\""')
    assert q_matches(mapping, "Quotes run 3", "quotes run")  # bare words: default operator OR
    assert q_matches(mapping, "x", "metadata.title:x OR nothing")


def test_records_index_folds_and_strips_punctuation() -> None:
    """Published records use accent_analyzer; drafts the standard analyser."""
    assert q_matches(RECORDS_MAPPING, "Résumé data", 'metadata.title:"resume data"')
    assert not q_matches(DRAFTS_MAPPING, "Résumé data", 'metadata.title:"resume data"')
    assert not q_matches(RECORDS_MAPPING, "run-3", 'metadata.title:"run 3"')  # one token run3
    assert q_matches(DRAFTS_MAPPING, "run-3", 'metadata.title:"run 3"')


async def _create(session: aiohttp.ClientSession, server: RealServer, title: str) -> Any:
    body = {**metadata(title), "files": {"enabled": False}}
    url = f"{server.api}/records"
    async with session.post(url, json=body, headers=server.headers()) as resp:
        assert resp.status == 201
        return await resp.json()


async def _titles(session: aiohttp.ClientSession, server: RealServer, q: str) -> list[str]:
    params = {"q": q, "size": "100"}
    url = f"{server.api}/user/records"
    async with session.get(url, params=params, headers=server.headers()) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    titles = sorted(h["metadata"]["title"] for h in body["hits"]["hits"])
    assert body["hits"]["total"] == len(titles)
    return titles


def test_through_the_server(real_server: RealServer) -> None:
    tag = f"SI{uuid.uuid4().hex[:10]}"
    delay = refresh_delay()

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            drafts = [
                await _create(session, real_server, t)
                for t in (f"{tag} run 1", f"{tag} run 10", f"  \u201cCurly\u201d {tag} run 3 ")
            ]
            created = time.monotonic()
            assert drafts[2]["metadata"]["title"] == f'"Curly" {tag} run 3'  # stored cleaned
            early = await _titles(session, real_server, f'metadata.title:"{tag}"')
            if delay >= 0.5 and time.monotonic() - created < delay:
                assert early == [], "visible before the refresh delay"
            await anyio.sleep(delay + 0.2)
            phrase = f'metadata.title:"\\"Curly\\" {tag} run 3"'
            assert await _titles(session, real_server, phrase) == [f'"Curly" {tag} run 3']
            assert await _titles(session, real_server, f'metadata.title:"{tag} run 1"') == [
                f"{tag} run 1"
            ]
            both = f'metadata.title:"{tag} run 1" OR metadata.title:"{tag} run 10"'
            assert await _titles(session, real_server, both) == [f"{tag} run 1", f"{tag} run 10"]
            for draft in drafts:  # deletes are searchable at once
                url = draft["links"]["self"]
                async with session.delete(url, headers=real_server.headers()) as resp:
                    assert resp.status == 204
            assert await _titles(session, real_server, f'metadata.title:"{tag}"') == []

    anyio.run(main)


def test_search_log_shows_the_query(real_server: RealServer) -> None:
    """The server wraps ``q`` in a bare query_string (no fields, default operator OR)."""
    log = STATE / "logs" / "search-requests.log"
    tag = f"SQ{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            await _titles(session, real_server, f'metadata.title:"{tag}"')

    anyio.run(main)
    bodies = [
        json.loads(line.split("body: ", 1)[1])
        for line in log.read_text(encoding="utf-8").splitlines()[-200:]
        if line.startswith("    body: ") and tag in line
    ]
    assert bodies, "the search body was not logged"
    (query_string,) = bodies[-1]["query"]["bool"]["must"]
    assert query_string == {"query_string": {"query": f'metadata.title:"{tag}"'}}
    assert bodies[-1]["track_total_hits"] is True and bodies[-1]["size"] == 100
