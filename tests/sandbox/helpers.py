"""Helpers for the Clever sandbox tests: a fake clock, clients, paging and recordings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from cleversync.sandbox import Sandbox

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "clever_recordings"
START = 1_750_000_000.0  # 2025-06-15, after the generated data's dates


class FakeClock:
    """A clock the tests move by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def client_for(sandbox: Sandbox, district: int = 0, token: str | None = None) -> httpx.Client:
    """An in-process client authenticated as one district."""
    if token is None:
        token = sandbox.district_token(sandbox.districts[district].id)
    return httpx.Client(
        transport=httpx.WSGITransport(app=sandbox.wsgi_app),
        base_url="http://sandbox.test",
        headers={"Authorization": f"Bearer {token}"},
    )


def next_link(body: dict[str, Any]) -> str | None:
    return next((link["uri"] for link in body["links"] if link["rel"] == "next"), None)


def links_by_rel(body: dict[str, Any]) -> dict[str, str]:
    return {link["rel"]: link["uri"] for link in body["links"]}


def follow(client: httpx.Client, uri: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow ``next`` links from ``uri``; the records and every page's body."""
    records: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    next_uri: str | None = uri
    while next_uri is not None:
        response = client.get(next_uri)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        records.extend(item["data"] for item in body["data"])
        next_uri = next_link(body)
        assert len(pages) < 1000, "paging does not end"
    return records, pages


def recording(name: str) -> list[dict[str, Any]]:
    """The interactions of one recorded cassette (real Clever answers)."""
    return json.loads((RECORDINGS / name).read_text(encoding="utf-8"))
