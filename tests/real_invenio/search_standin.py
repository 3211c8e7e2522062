"""A small in-memory OpenSearch 2 stand-in for the real-server test tier (stdlib only).

No package registry ships an OpenSearch server, so InvenioRDM talks to this endpoint instead.
It implements the calls InvenioRDM 14 makes (handshake, templates, indices, aliases, document
writes, bulk, search, count, refresh, delete-by-query) and keeps documents in memory.
Text fields are matched by analysed tokens as the index's mapping declares (search_query.py),
and writes become searchable only after a refresh delay, like the engine's refresh interval.

Run: python3 search_standin.py --port 9200 [--log FILE] [--state FILE] [--refresh-s 1.0]
With --state, documents, aliases and mappings are loaded from FILE at start and saved to it
every few seconds when changed and on SIGTERM/SIGINT, so a restart keeps what the (persistent)
database has indexed, even after a hard kill (then minus the last seconds).
With --log, one line per request, plus the body of every search (aggregations by name only).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# Run as a script, so its own directory is on sys.path.
from search_query import NO_MAPPING, Mapping, empty_aggregations, field_values, matches, sort_key_fn

JSON = dict[str, Any]
STATE_FORMAT = 2  # 2: mappings kept (analysed text search); older files are not loaded
DEFAULT_REFRESH_S = 1.0  # OpenSearch's default index.refresh_interval


class Store:
    """Indices, aliases, mappings and documents; one lock because the server is threaded.

    ``indices`` holds every document as last written (what ``GET _doc`` sees, like the
    engine's real-time get); ``searchable`` what searches see. With ``refresh_s`` > 0 a write
    reaches ``searchable`` only ``refresh_s`` seconds later (OpenSearch refreshes every 1 s
    by default, so a just-created draft is missing from searches for up to a second), or at
    once on ``_refresh`` or a ``refresh`` parameter. The delay is the worst case, restarted on
    every write of the document. Deletes are searchable at once.
    """

    def __init__(self, refresh_s: float = 0.0) -> None:
        self.lock = threading.RLock()
        self.refresh_s = refresh_s
        self.indices: dict[str, dict[str, tuple[int, JSON]]] = {}
        self.searchable: dict[str, dict[str, tuple[int, JSON]]] = {}
        self.pending: dict[str, dict[str, float]] = {}  # index -> doc id -> visible from
        self.aliases: dict[str, set[str]] = {}
        self.mapping_bodies: dict[str, JSON] = {}
        self.mappings: dict[str, Mapping] = {}
        self.version = self.version_saved = 0  # bumped on every request that may change state

    def dump(self, path: str) -> None:
        with self.lock:
            self.version_saved = self.version
            data = {
                "format": STATE_FORMAT,
                "indices": {
                    i: {d: list(v) for d, v in docs.items()} for i, docs in self.indices.items()
                },
                "aliases": {a: sorted(m) for a, m in self.aliases.items()},
                "mappings": self.mapping_bodies,
            }
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    def load(self, path: str) -> bool:
        """Read a saved state; False (nothing loaded) if it predates kept mappings, so that
        up.sh sees the indices missing and rebuilds them with their mappings."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("format") != STATE_FORMAT:
            return False
        self.indices = {
            i: {d: (int(v[0]), v[1]) for d, v in docs.items()}
            for i, docs in data["indices"].items()
        }
        self.searchable = {i: dict(docs) for i, docs in self.indices.items()}
        self.pending = {i: {} for i in self.indices}
        self.aliases = {a: set(m) for a, m in data["aliases"].items()}
        for index, body in data.get("mappings", {}).items():
            self.set_mapping(index, body)
        return True

    def create_index(self, index: str, body: JSON | None = None) -> None:
        self.indices[index] = {}
        self.searchable[index] = {}
        self.pending[index] = {}
        if body and (body.get("mappings") or body.get("settings")):
            self.set_mapping(index, body)

    def drop_index(self, index: str) -> None:
        for table in (self.indices, self.searchable, self.pending, self.mappings):
            table.pop(index, None)
        self.mapping_bodies.pop(index, None)
        for members in self.aliases.values():
            members.discard(index)

    def set_mapping(self, index: str, body: JSON) -> None:
        self.mapping_bodies[index] = body
        self.mappings[index] = Mapping.from_body(body)

    def mapping(self, index: str) -> Mapping:
        return self.mappings.get(index) or NO_MAPPING

    def resolve(self, target: str) -> list[str]:
        """Comma list of indices, aliases or wildcard patterns -> concrete index names."""
        names: list[str] = []
        for part in unquote(target).split(","):
            if part in ("_all", "*", ""):
                names.extend(self.indices)
            elif "*" in part:
                names.extend(i for i in self.indices if fnmatch.fnmatchcase(i, part))
                for alias, idx in self.aliases.items():
                    if fnmatch.fnmatchcase(alias, part):
                        names.extend(idx)
            elif part in self.indices:
                names.append(part)
            elif part in self.aliases:
                names.extend(sorted(self.aliases[part]))
        return list(dict.fromkeys(names))

    def write_index(self, target: str) -> str:
        found = self.resolve(target)
        if found:
            return found[0]
        self.create_index(target)  # like the engine: writing to a missing index creates it
        return target

    def write(self, index: str, doc_id: str, version: int, source: JSON, refresh: bool) -> None:
        """Write a document; searchable now or after the refresh delay."""
        self.indices[index][doc_id] = (version, source)
        if refresh or self.refresh_s <= 0:
            self.searchable.setdefault(index, {})[doc_id] = (version, source)
            self.pending.setdefault(index, {}).pop(doc_id, None)
        else:
            self.pending.setdefault(index, {})[doc_id] = time.monotonic() + self.refresh_s

    def remove(self, index: str, doc_id: str) -> bool:
        self.searchable.get(index, {}).pop(doc_id, None)
        self.pending.get(index, {}).pop(doc_id, None)
        return self.indices[index].pop(doc_id, None) is not None

    def refresh(self, indices: list[str] | None = None) -> None:
        """Make due writes searchable (all pending writes of ``indices`` when given)."""
        now = time.monotonic()
        for index in list(self.pending) if indices is None else indices:
            pending = self.pending.get(index) or {}
            for doc_id in [d for d, due in pending.items() if indices is not None or due <= now]:
                del pending[doc_id]
                if doc_id in self.indices.get(index, {}):
                    self.searchable.setdefault(index, {})[doc_id] = self.indices[index][doc_id]

    def put_doc(self, target: str, doc_id: str, source: JSON, params: dict[str, str]) -> JSON:
        index = self.write_index(target)
        docs = self.indices[index]
        old = docs.get(doc_id)
        version = int(params["version"]) if "version" in params else (old[0] + 1 if old else 1)
        vtype = params.get("version_type", "internal")
        if old and vtype in ("external", "external_gt") and version <= old[0]:
            raise Conflict(index, doc_id, old[0])
        if old and vtype == "external_gte" and version < old[0]:
            raise Conflict(index, doc_id, old[0])
        self.write(index, doc_id, version, source, _wants_refresh(params))
        return _doc_result(index, doc_id, version, "updated" if old else "created")

    def delete_doc(self, target: str, doc_id: str) -> tuple[int, JSON]:
        for index in self.resolve(target):
            if self.remove(index, doc_id):
                return 200, _doc_result(index, doc_id, 1, "deleted")
        return 404, _doc_result(target, doc_id, 1, "not_found")


def _wants_refresh(params: dict[str, str]) -> bool:
    """``?refresh``, ``?refresh=true`` and ``?refresh=wait_for`` all mean: searchable now."""
    return "refresh" in params and params["refresh"] in ("", "true", "wait_for")


class Conflict(Exception):
    def __init__(self, index: str, doc_id: str, current: int) -> None:
        super().__init__(f"[{doc_id}]: version conflict, current version [{current}]")
        self.index = index


def _doc_result(index: str, doc_id: str, version: int, result: str) -> JSON:
    shards = {"total": 1, "successful": 1, "failed": 0}
    return {
        "_index": index,
        "_id": doc_id,
        "_version": version,
        "result": result,
        "_shards": shards,
        "_seq_no": 0,
        "_primary_term": 1,
    }


def _error(status: int, kind: str, reason: str) -> tuple[int, JSON]:
    return status, {
        "error": {"type": kind, "reason": reason, "root_cause": [{"type": kind, "reason": reason}]},
        "status": status,
    }


HANDSHAKE = {
    "name": "async-uploader-search-standin",
    "cluster_name": "async-uploader",
    "cluster_uuid": "standin",
    "version": {
        "distribution": "opensearch",
        "number": "2.11.0",
        "lucene_version": "9.7.0",
        "minimum_wire_compatibility_version": "7.10.0",
        "minimum_index_compatibility_version": "7.0.0",
    },
    "tagline": "The OpenSearch Project: https://opensearch.org/",
}
ACK = {"acknowledged": True}


class Engine:
    """Maps (method, path, params, body) to (status, JSON) using a Store."""

    def __init__(self, refresh_s: float = 0.0) -> None:
        self.store = Store(refresh_s)

    def handle(self, method: str, path: str, params: dict[str, str], body: bytes) -> Any:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        with self.store.lock:
            if method not in ("GET", "HEAD") and not path.endswith(
                ("/_search", "/_count", "/_refresh")
            ):
                self.store.version += 1
            try:
                return self._route(method, parts, params, body)
            except Conflict as exc:
                return _error(409, "version_conflict_engine_exception", str(exc))

    def _route(self, method: str, p: list[str], params: dict[str, str], body: bytes) -> Any:
        s = self.store
        if not p:
            return 200, HANDSHAKE
        if p[0] in ("_template", "_index_template", "_component_template"):
            return (200, ACK) if method in ("PUT", "POST", "DELETE") else (404, {})
        if p[0] == "_cluster":
            return 200, {"status": "green", "cluster_name": "async-uploader"}
        if p[0] == "_bulk":
            return self._bulk(None, body, params)
        if p[0] == "_aliases":
            return self._alias_actions(_json(body).get("actions", []))
        if p[0] == "_alias" and len(p) == 2:
            return self._get_alias(p[1])
        if p[0] in ("_search", "_count", "_refresh", "_delete_by_query"):
            p = ["*", *p]
        target = p[0]
        if len(p) == 1:
            return self._index_op(method, target, body)
        op = p[1]
        if op in ("_doc", "_create") and len(p) >= 3:
            return self._doc_op(method, target, p[2], params, body)
        if op == "_update" and len(p) >= 3:
            return self._update(target, p[2], body, _wants_refresh(params))
        if op in ("_alias", "_aliases"):
            if len(p) == 3 and method in ("PUT", "POST"):
                for index in s.resolve(target):
                    s.aliases.setdefault(p[2], set()).add(index)
                return 200, ACK
            if len(p) == 3 and method == "DELETE":
                for index in s.resolve(target):
                    s.aliases.get(p[2], set()).discard(index)
                return 200, ACK
            return 200, {i: {"aliases": self._aliases_of(i)} for i in s.resolve(target)}
        if op == "_search":
            return 200, self._search(target, _json(body), params)
        if op == "_count":
            hits = self._matching(target, _json(body).get("query"))
            return 200, {"count": len(hits), "_shards": {"total": 1, "successful": 1}}
        if op == "_refresh":
            s.refresh(s.resolve(target))
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if op == "_bulk":
            return self._bulk(target, body, params)
        if op == "_delete_by_query":
            hits = self._matching(target, _json(body).get("query"))
            for index, doc_id, _v, _src in hits:
                s.remove(index, doc_id)
            return 200, {"deleted": len(hits), "total": len(hits), "failures": []}
        if op == "_mapping" and method in ("PUT", "POST"):
            for index in s.resolve(target):  # merge new properties into the kept mapping
                old = s.mapping_bodies.get(index, {})
                props = {**old.get("mappings", {}).get("properties", {})}
                props.update(_json(body).get("properties", {}))
                s.set_mapping(
                    index, {**old, "mappings": {**old.get("mappings", {}), "properties": props}}
                )
            return 200, ACK
        if op in ("_mapping", "_settings"):
            return 200, ACK if method in ("PUT", "POST") else {}
        return _error(400, "illegal_argument_exception", f"stand-in: unsupported {method} {p}")

    def _index_op(self, method: str, target: str, body: bytes) -> Any:
        s = self.store
        if method in ("HEAD", "GET"):
            found = s.resolve(target)
            if not found:
                return _error(404, "index_not_found_exception", f"no such index [{target}]")
            return 200, {i: {"aliases": self._aliases_of(i), "mappings": {}} for i in found}
        if method == "PUT":
            if target in s.indices:
                return _error(400, "resource_already_exists_exception", target)
            s.create_index(target, _json(body))
            for alias in _json(body).get("aliases", {}):
                s.aliases.setdefault(alias, set()).add(target)
            return 200, {**ACK, "shards_acknowledged": True, "index": target}
        if method == "DELETE":
            for index in s.resolve(target):
                s.drop_index(index)
            return 200, ACK
        return _error(400, "illegal_argument_exception", f"stand-in: {method} /{target}")

    def _doc_op(
        self, method: str, target: str, doc_id: str, params: dict[str, str], body: bytes
    ) -> Any:
        s = self.store
        if method in ("PUT", "POST"):
            result = s.put_doc(target, doc_id, _json(body), params)
            return (201 if result["result"] == "created" else 200), result
        if method == "DELETE":
            return s.delete_doc(target, doc_id)
        for index in s.resolve(target):
            if doc_id in s.indices[index]:
                version, source = s.indices[index][doc_id]
                return 200, {
                    "_index": index,
                    "_id": doc_id,
                    "_version": version,
                    "found": True,
                    "_source": source,
                }
        return 404, {"_index": target, "_id": doc_id, "found": False}

    def _update(self, target: str, doc_id: str, body: bytes, refresh: bool = False) -> Any:
        s = self.store
        for index in s.resolve(target):
            if doc_id in s.indices[index]:
                version, source = s.indices[index][doc_id]
                source = {**source, **_json(body).get("doc", {})}
                s.write(index, doc_id, version + 1, source, refresh)
                return 200, _doc_result(index, doc_id, version + 1, "updated")
        return _error(404, "document_missing_exception", f"[{doc_id}]: document missing")

    def _bulk(self, default: str | None, body: bytes, params: dict[str, str]) -> Any:
        lines = [ln for ln in body.decode("utf-8").splitlines() if ln.strip()]
        items, errors, i = [], False, 0
        while i < len(lines):
            action_line = json.loads(lines[i])
            action, meta = next(iter(action_line.items()))
            target, doc_id = meta.get("_index", default or ""), str(meta.get("_id"))
            doc_params = {k: str(meta[k]) for k in ("version", "version_type") if k in meta}
            if _wants_refresh(params):
                doc_params["refresh"] = "true"
            try:
                if action == "delete":
                    status, result = self.store.delete_doc(target, doc_id)
                    i += 1
                else:
                    source = json.loads(lines[i + 1])
                    if action == "update":
                        status, result = self._update(
                            target, doc_id, lines[i + 1].encode(), _wants_refresh(params)
                        )
                    else:
                        result = self.store.put_doc(target, doc_id, source, doc_params)
                        status = 201 if result["result"] == "created" else 200
                    i += 2
            except Conflict as exc:
                status, result = (
                    409,
                    {
                        "_index": exc.index,
                        "_id": doc_id,
                        "error": {"type": "version_conflict_engine_exception", "reason": str(exc)},
                    },
                )
                i += 1 if action == "delete" else 2
            errors = errors or status >= 300
            items.append({action: {**result, "status": status}})
        return 200, {"took": 1, "errors": errors, "items": items}

    def _alias_actions(self, actions: list[JSON]) -> Any:
        s = self.store
        for entry in actions:
            kind, spec = next(iter(entry.items()))
            indices = spec.get("indices") or [spec.get("index", "")]
            aliases = spec.get("aliases") or [spec.get("alias", "")]
            for index in [i for t in indices for i in s.resolve(t)]:
                for alias in aliases:
                    if kind == "add":
                        s.aliases.setdefault(alias, set()).add(index)
                    elif kind == "remove":
                        s.aliases.get(alias, set()).discard(index)
        return 200, ACK

    def _get_alias(self, alias: str) -> Any:
        members = self.store.aliases.get(alias)
        if not members:
            return _error(404, "aliases_not_found_exception", alias)
        return 200, {i: {"aliases": {alias: {}}} for i in members}

    def _aliases_of(self, index: str) -> JSON:
        return {a: {} for a, members in self.store.aliases.items() if index in members}

    def _matching(self, target: str, query: JSON | None) -> list[tuple[str, str, int, JSON]]:
        out = []
        self.store.refresh()  # writes whose delay has passed become searchable
        for index in self.store.resolve(target):
            mapping = self.store.mapping(index)
            for doc_id, (version, source) in self.store.searchable.get(index, {}).items():
                if matches(query, doc_id, source, mapping):
                    out.append((index, doc_id, version, source))
        return out

    def _search(self, target: str, body: JSON, params: dict[str, str]) -> JSON:
        hits = self._matching(target, body.get("query"))
        if body.get("post_filter"):
            post = body["post_filter"]
            hits = [h for h in hits if matches(post, h[1], h[3], self.store.mapping(h[0]))]
        for field, desc in reversed(sort_key_fn(body.get("sort") or params.get("sort") or [])):
            present = [h for h in hits if field_values(h[3], field)]
            absent = [h for h in hits if not field_values(h[3], field)]
            present.sort(key=lambda h, f=field: str(field_values(h[3], f)[0]), reverse=desc)
            hits = present + absent
        collapse = (body.get("collapse") or {}).get("field")
        if collapse:
            seen: set[str] = set()
            kept = []
            for h in hits:
                key = str(field_values(h[3], collapse)[:1])
                if key not in seen:
                    seen.add(key)
                    kept.append(h)
            hits = kept
        start = int(body.get("from", params.get("from", 0)))
        size = int(body.get("size", params.get("size", 10)))
        page = hits[start : start + size]
        aggs = body.get("aggs") or body.get("aggregations")
        return {
            "took": 1,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {
                "total": {"value": len(hits), "relation": "eq"},
                "max_score": 1.0 if page else None,
                "hits": [
                    {"_index": i, "_id": d, "_version": v, "_score": 1.0, "_source": src}
                    for i, d, v, src in page
                ],
            },
            "aggregations": empty_aggregations(aggs),
        }


def _json(body: bytes) -> JSON:
    if not body.strip():
        return {}
    data = json.loads(body)
    return data if isinstance(data, dict) else {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    engine: Engine
    log_file: Any = None

    def _serve(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._body()
        try:
            status, payload = self.engine.handle(self.command, url.path, params, body)
        except Exception as exc:  # report engine bugs to the client instead of hanging it
            status, payload = _error(500, "standin_exception", repr(exc))
        data = b"" if self.command == "HEAD" else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if self.log_file is not None:
            print(
                f"{time.strftime('%H:%M:%S')} {self.command} {self.path} -> {status}",
                file=self.log_file,
                flush=True,
            )
            if url.path.endswith(("/_search", "/_count")) and body.strip():
                print(f"    body: {_loggable(body)}", file=self.log_file, flush=True)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet; see _serve for the log
        return


def _loggable(body: bytes) -> str:
    """A search body for the log: everything but the aggregations' definitions (names only),
    so the log shows the exact query the server built."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:2000].decode("utf-8", "replace")
    for key in ("aggs", "aggregations"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data[key] = sorted(data[key])
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def autosave(store: Store, path: str, every: float = 5.0) -> None:
    while True:
        time.sleep(every)
        if store.version != store.version_saved:
            store.dump(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--log", help="append one line per request to this file")
    parser.add_argument("--state", help="load documents from / save them to this JSON file")
    parser.add_argument(
        "--refresh-s",
        type=float,
        default=float(os.environ.get("REAL_INVENIO_SEARCH_REFRESH_S", DEFAULT_REFRESH_S)),
        help="seconds before a write is searchable (default: $REAL_INVENIO_SEARCH_REFRESH_S "
        f"or {DEFAULT_REFRESH_S}, OpenSearch's refresh interval); 0: at once",
    )
    args = parser.parse_args()
    Handler.engine = Engine(args.refresh_s)
    if args.state and os.path.exists(args.state) and not Handler.engine.store.load(args.state):
        print(f"{args.state}: older state format, not loaded (reindex needed)", flush=True)
    if args.log:
        Handler.log_file = open(args.log, "a", encoding="utf-8")  # noqa: SIM115
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    if args.state:
        threading.Thread(
            target=autosave, args=(Handler.engine.store, args.state), daemon=True
        ).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        if args.state:
            Handler.engine.store.dump(args.state)


if __name__ == "__main__":
    main()
