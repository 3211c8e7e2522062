"""The InvenioRDM REST API, one method per endpoint (the calls the uploader makes).

Requests, retries, the rate limit and the error map live in ``rest.RestClient``; this layer
says which calls are not idempotent (``resend=False``) and which statuses are answers rather
than errors (``accept``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from .errors import AuthRefused
from .rest import RestClient
from .wire import BodyFactory, Response

__all__ = ["InvenioClient", "Response"]


class InvenioClient(RestClient):
    def url(self, *parts: str) -> str:
        return "/".join([self.api, *(quote(p, safe="") for p in parts)])

    async def create_draft(self, body: Mapping[str, Any]) -> Response:
        # Hazard: not idempotent. Every accepted POST makes a new draft.
        return await self.request("POST", self.url("records"), json=body, resend=False)

    async def get_draft(self, draft_id: str) -> Response:
        return await self.request("GET", self.url("records", draft_id, "draft"), accept=(404,))

    async def update_draft(self, draft_id: str, body: Mapping[str, Any]) -> Response:
        return await self.request("PUT", self.url("records", draft_id, "draft"), json=body)

    async def delete_draft(self, draft_id: str) -> Response:
        return await self.request("DELETE", self.url("records", draft_id, "draft"), accept=(404,))

    async def get_record(self, record_id: str) -> Response:
        return await self.request("GET", self.url("records", record_id), accept=(404, 410))

    async def list_files(self, files_url: str) -> Response:
        return await self.request("GET", files_url)

    async def init_files(self, files_url: str, entries: list[dict[str, Any]]) -> Response:
        # Hazard: not idempotent (a second init of a key gives 400 "already exists").
        return await self.request("POST", files_url, json=entries, resend=False)

    async def delete_file(self, file_url: str) -> Response:
        return await self.request("DELETE", file_url, accept=(404,))

    async def put_content(self, content_url: str, body: BodyFactory, size: int) -> Response:
        return await self.request("PUT", content_url, body=body, size=size, accept=(400, 404))

    async def commit(self, commit_url: str) -> Response:
        # A 500 here means "content missing" (contract 3.5): the caller re-PUTs.
        return await self.request("POST", commit_url, accept=(400, 404, 500))

    async def publish(self, publish_url: str) -> Response:
        # Hazard: not idempotent; after a lost answer, GET /api/records/{id} decides.
        return await self.request("POST", publish_url, resend=False)

    async def search_user_records(self, params: Mapping[str, str]) -> Response:
        return await self.request("GET", self.url("user", "records"), params=params)

    async def probe_own_records(self) -> Response:
        """The newest of the user's records (and the total). The user's own records need no
        right but a valid token, so a refusal here means the token is refused."""
        resp = await self.request(
            "GET",
            self.url("user", "records"),
            params={"size": "1", "sort": "newest"},
            accept=(401, 403),
        )
        if resp.status in (401, 403):
            raise AuthRefused(
                "the server refused the token (INVENIO_TOKEN / --token-file): check that it is "
                "valid, not expired or revoked, and belongs to this server",
                method=resp.method,
                url=resp.url,
                status=resp.status,
                server_message=resp.obj.get("message"),
            )
        return resp

    async def search_all_user_records(self, q: str, size: int = 100) -> list[dict[str, Any]]:
        """Every hit of ``q`` among the user's records and drafts, all pages read."""
        hits: list[dict[str, Any]] = []
        page = 1
        while True:
            resp = await self.search_user_records(
                {"q": q, "size": str(size), "page": str(page), "sort": "newest"}
            )
            found = resp.obj.get("hits", {})
            batch = found.get("hits", []) if isinstance(found, dict) else []
            hits.extend(h for h in batch if isinstance(h, dict))
            total = found.get("total") if isinstance(found, dict) else None
            if isinstance(total, dict):  # some servers give OpenSearch's {"value": n}
                total = total.get("value")
            more = bool(resp.obj.get("links", {}).get("next"))
            if isinstance(total, int):
                more = more or page * size < total
            # 10,000 results is the server's ceiling (page * size); the queries stay far below.
            if not batch or not more or page * size >= 10_000:
                return hits
            page += 1

    async def get_community(self, slug_or_id: str) -> Response:
        return await self.request("GET", self.url("communities", slug_or_id), accept=(404,))

    async def search_communities(self, slug: str) -> Response:
        return await self.request(
            "GET", self.url("communities"), params={"q": f"slug:{slug}", "size": "5"}
        )

    async def put_review(self, review_url: str, community_id: str) -> Response:
        return await self.request(
            "PUT",
            review_url,
            json={"receiver": {"community": community_id}, "type": "community-submission"},
        )

    async def submit_review(self, draft_id: str) -> Response:
        # Hazard: not idempotent (with direct inclusion it publishes).
        url = self.url("records", draft_id, "draft", "actions", "submit-review")
        return await self.request(
            "POST",
            url,
            json={"payload": {"content": "Uploaded with async-uploader", "format": "html"}},
            resend=False,
        )
