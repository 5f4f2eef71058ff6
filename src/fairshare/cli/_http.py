"""A small client for the fairshare REST API (used by the CLI's round, request and appeal commands)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from fairshare.cli._kit import UsageError
from fairshare.errors import Unavailable


class Api:
    """Calls /api/v1 with a bearer token; 4xx become UsageError (exit 2) with the server's detail."""

    def __init__(self, url: str, token: str | None, timeout: float = 120.0):
        if not token:
            raise UsageError(
                "no API token: pass --token or set FAIRSHARE_TOKEN (an admin creates one with `fairshare token create`)"
            )
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url + "/api/v1", timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    def call(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        headers = {"Idempotency-Key": str(uuid.uuid4())} if method == "POST" else {}
        try:
            r = self.http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as e:
            raise Unavailable(
                f"cannot reach the fairshare server at {self.url} ({e}); "
                "is `fairshare serve` running there? (--url / FAIRSHARE_URL)"
            ) from e
        if r.status_code >= 500:
            raise Unavailable(f"the server failed ({r.status_code}): {_detail(r)}")
        if r.status_code >= 400:
            raise UsageError(f"{method} {path}: {r.status_code} {_detail(r)}")
        return r.json() if r.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self.call("PUT", path, json=body)


def _detail(r: httpx.Response) -> str:
    try:
        detail = r.json().get("detail", r.text)
    except ValueError:
        return r.text[:500]
    if isinstance(detail, list):  # FastAPI validation errors: one line per field
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    return str(detail)
