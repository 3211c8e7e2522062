"""A small in-memory OpenSearch 2 stand-in for the real-server test tier (stdlib only).

No package registry ships an OpenSearch server, so InvenioRDM talks to this endpoint instead.
It implements the calls InvenioRDM 14 makes (handshake, templates, indices, aliases, document
writes, bulk, search, count, refresh, delete-by-query) and keeps documents in memory.

Run: python3 search_standin.py --port 9200 [--log FILE] [--state FILE]
With --state, documents and aliases are loaded from FILE at start and saved to it every few
seconds when changed and on SIGTERM/SIGINT, so a restart keeps what the (persistent) database
has indexed, even after a hard kill (then minus the last seconds).
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
from search_query import empty_aggregations, field_values, matches, sort_key_fn

JSON = dict[str, Any]


class Store:
    """Indices, aliases and documents; one lock because the server is threaded."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.indices: dict[str, dict[str, tuple[int, JSON]]] = {}
        self.aliases: dict[str, set[str]] = {}
        self.version = self.version_saved = 0  # bumped on every request that may change state

    def dump(self, path: str) -> None:
        with self.lock:
            self.version_saved = self.version
            data = {
                "indices": {
                    i: {d: list(v) for d, v in docs.items()} for i, docs in self.indices.items()
                },
                "aliases": {a: sorted(m) for a, m in self.aliases.items()},
            }
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    def load(self, path: str) -> None:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        self.indices = {
            i: {d: (int(v[0]), v[1]) for d, v in docs.items()}
            for i, docs in data["indices"].items()
        }
        self.aliases = {a: set(m) for a, m in data["aliases"].items()}

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
        self.indices[target] = {}  # like the engine: writing to a missing index creates it
        return target

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
        docs[doc_id] = (version, source)
        return _doc_result(index, doc_id, version, "updated" if old else "created")

    def delete_doc(self, target: str, doc_id: str) -> tuple[int, JSON]:
        for index in self.resolve(target):
            if self.indices[index].pop(doc_id, None) is not None:
                return 200, _doc_result(index, doc_id, 1, "deleted")
        return 404, _doc_result(target, doc_id, 1, "not_found")


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

    def __init__(self) -> None:
        self.store = Store()

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
            return self._update(target, p[2], body)
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
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if op == "_bulk":
            return self._bulk(target, body, params)
        if op == "_delete_by_query":
            hits = self._matching(target, _json(body).get("query"))
            for index, doc_id, _v, _src in hits:
                s.indices[index].pop(doc_id, None)
            return 200, {"deleted": len(hits), "total": len(hits), "failures": []}
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
            s.indices[target] = {}
            for alias in _json(body).get("aliases", {}):
                s.aliases.setdefault(alias, set()).add(target)
            return 200, {**ACK, "shards_acknowledged": True, "index": target}
        if method == "DELETE":
            for index in s.resolve(target):
                s.indices.pop(index, None)
                for members in s.aliases.values():
                    members.discard(index)
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

    def _update(self, target: str, doc_id: str, body: bytes) -> Any:
        s = self.store
        for index in s.resolve(target):
            if doc_id in s.indices[index]:
                version, source = s.indices[index][doc_id]
                source = {**source, **_json(body).get("doc", {})}
                s.indices[index][doc_id] = (version + 1, source)
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
            try:
                if action == "delete":
                    status, result = self.store.delete_doc(target, doc_id)
                    i += 1
                else:
                    source = json.loads(lines[i + 1])
                    if action == "update":
                        status, result = self._update(target, doc_id, lines[i + 1].encode())
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
        for index in self.store.resolve(target):
            for doc_id, (version, source) in self.store.indices[index].items():
                if matches(query, doc_id, source):
                    out.append((index, doc_id, version, source))
        return out

    def _search(self, target: str, body: JSON, params: dict[str, str]) -> JSON:
        hits = self._matching(target, body.get("query"))
        if body.get("post_filter"):
            hits = [h for h in hits if matches(body["post_filter"], h[1], h[3])]
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
    args = parser.parse_args()
    Handler.engine = Engine()
    if args.state and os.path.exists(args.state):
        Handler.engine.store.load(args.state)
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
