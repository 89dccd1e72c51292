"""The search page of `grdr serve`, in a real headless Chromium (Debian's `chromium`, driven by Playwright).

A person's path through it, against a real `grdr serve` over a worker-ingested catalog: type a query,
see the hits the API gives (title, score, matched semantic ID, per-stage timings); click a semantic ID,
see every video that shares it, and follow another ID from there; narrow by tags and duration; read an
error. The page and the OpenAPI docs load with every request to another host refused: no CDN.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from ingest.submit import enqueue, make_plan, wait
from ingest.target import prepare_target
from query.api import PAGE_DIR
from tests.conftest import shared_dataset
from tests.support.serve_process import grdr_serve

# Debian's chromium, as the project's setup installs it (Makefile system-deps); Playwright downloads nothing.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PEOPLE = {"man", "men", "woman", "women", "girl", "boy", "people", "person", "guy", "lady", "kid", "child"}
TIMEOUT_MS = 30_000  # a search on 2 shared cores answers in well under a second; a cold first one takes longer
BROWSE_SIZE = int(re.search(r"const BROWSE_SIZE = (\d+)", (PAGE_DIR / "app.js").read_text())[1])  # the page's


def tagged_catalog(root: Path) -> Path:
    """msrvtt's 200 unseen videos as a dataset folder, each with a tag (people/scene) and a duration."""
    msrvtt = shared_dataset("msrvtt")
    rows = [json.loads(line) for line in (msrvtt / "catalog.jsonl").read_text().splitlines()]
    keep = [i for i, row in enumerate(rows) if row["split"] == "unseen"]
    root.mkdir()
    with open(root / "catalog.jsonl", "w") as out:
        for n, i in enumerate(keep):
            row = rows[i]
            tag = "people" if PEOPLE & set(row["title"].lower().split()) else "scene"
            out.write(json.dumps({**row, "tags": [tag], "duration_s": float(5 + (n * 7) % 55)}) + "\n")
    for name in ("features.npy", "frames.npy"):
        np.save(root / name, np.load(msrvtt / name, mmap_mode="r")[keep])
    return root


@pytest.fixture
def served(client, ingest_alias, tiny_model_dir, queue, tmp_path):
    """(base URL of `grdr serve`, server log) over the tagged catalog."""
    plan = make_plan(dataset=tagged_catalog(tmp_path / "catalog"), batch_size=500)
    summary, _ = wait(enqueue(plan, prepare_target(client, ingest_alias, tiny_model_dir), queue=queue))
    assert summary.indexed == 200 and summary.failed == 0, summary.errors
    log = tmp_path / "serve.log"
    with grdr_serve(tiny_model_dir, ingest_alias, log) as (url, _):
        yield url, log


@pytest.fixture
def browser_page(served, tmp_path):
    """A page in a fresh headless Chromium profile; any request to another host is refused and recorded."""
    url, _ = served
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed; `make system-deps` installs it (apt-get install chromium)")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 860})
        elsewhere: list[str] = []

        def refuse(route):
            elsewhere.append(route.request.url)
            route.abort()

        context.route(re.compile(rf"^(?!{re.escape(url)}/).*"), refuse)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        # Chromium logs each 4xx answer as a console error; the error a test provokes is checked on the page
        page.on("console", lambda msg: problems.append(f"console: {msg.text}")
                if msg.type == "error" and "the server responded with a status of 4" not in msg.text else None)
        yield page, url, elsewhere, problems
        context.close()


def results(page: Page) -> list[dict]:
    """The result table as the person sees it."""
    rows = page.locator("#results tbody tr")
    return [{"video_id": row.get_attribute("data-video-id"),
             "title": row.locator(".title").inner_text(),
             "score": float(row.locator(".score").inner_text()),
             "matched_id": row.locator(".sid").inner_text() if row.locator(".sid").count() else None}
            for row in rows.all()]


def search(page: Page, text: str, k: int) -> None:
    page.fill("#q", text)
    page.fill("#k", str(k))
    page.click("button[type=submit]")


def api_hits(url: str, body: dict) -> list[dict]:
    r = httpx.post(f"{url}/search", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["hits"]


def videos(n: int) -> str:
    return f"{n:,} video" if n == 1 else f"{n:,} videos"


def sharing(client, alias: str, semantic_id: str) -> list[str]:
    """Every video holding the ID, by video_id, from OpenSearch itself."""
    hits = client.search(index=alias, body={"size": 1000, "query": {"term": {"grdr_ids": semantic_id}},
                                            "sort": [{"video_id": "asc"}], "_source": False})["hits"]["hits"]
    return [h["_id"] for h in hits]


def test_a_person_searches_browses_an_id_and_filters_in_a_real_browser(browser_page, client, ingest_alias):
    page, url, elsewhere, problems = browser_page
    health = httpx.get(f"{url}/health").json()

    page.goto(f"{url}/")
    expect(page.locator("#status")).to_contain_text(f"{health['ids']:,} semantic IDs")

    # Type a query: the hits the API gives, with title, score, matched ID and the stages' timings.
    search(page, "a man is cooking in a kitchen", k=5)
    expect(page.locator("#results tbody tr")).to_have_count(5)
    shown = results(page)
    expected = api_hits(url, {"text": "a man is cooking in a kitchen", "k": 5})
    assert [r["video_id"] for r in shown] == [h["video_id"] for h in expected]
    assert [r["title"] for r in shown] == [h["title"] for h in expected]
    assert [r["score"] for r in shown] == [round(h["score"], 4) for h in expected]
    assert [r["matched_id"] for r in shown] == [h["matched_id"] for h in expected]
    assert all(r["matched_id"] for r in shown)
    timings = page.locator("#timings").inner_text()
    assert all(re.search(rf"{stage} \d+\.\d ms", timings) for stage in ("encode", "decode", "opensearch", "total"))
    expect(page.locator("#summary")).to_contain_text("5 hits")
    expect(page.locator("#score-head")).to_have_text("dense score")

    # Click the first hit's semantic ID: every video that shares it, the hit among them.
    first = shown[0]
    page.locator("#results tbody tr").first.locator(".sid").click()
    holders = sharing(client, ingest_alias, first["matched_id"])
    expect(page.locator("#browser-title")).to_have_text(f"ID {first['matched_id']} · {videos(len(holders))}")
    listed = [li.get_attribute("data-video-id") for li in page.locator("#browser-list > li").all()]
    assert first["video_id"] in holders and listed == holders[:BROWSE_SIZE]

    # Follow another ID of a listed video.
    item = page.locator("#browser-list > li").first
    other = next(b for b in item.locator(".sid").all() if b.inner_text() != first["matched_id"])
    other_id, other_video = other.inner_text(), item.get_attribute("data-video-id")
    other.click()
    expect(page.locator("#browser-title")).to_have_text(f"ID {other_id} · "
                                                        f"{videos(len(sharing(client, ingest_alias, other_id)))}")
    assert other_video in [li.get_attribute("data-video-id") for li in page.locator("#browser-list > li").all()]

    # Narrow by tags and duration: the same hits as the API's with those filters, each passing them.
    page.fill("#tags", "people")
    page.fill("#dmax", "30")
    search(page, "a man is talking", k=10)
    filtered = api_hits(url, {"text": "a man is talking", "k": 10, "filters": {"tags": ["people"], "duration_max": 30}})
    expect(page.locator("#results tbody tr")).to_have_count(len(filtered))
    assert [r["video_id"] for r in results(page)] == [h["video_id"] for h in filtered] != []
    for hit in filtered:
        doc = client.get(index=ingest_alias, id=hit["video_id"])["_source"]
        assert doc["tags"] == ["people"] and doc["duration_s"] <= 30

    # Hybrid RRF labels its scores; a query the searcher refuses shows its error, field first.
    page.fill("#tags", "")
    page.fill("#dmax", "")
    page.select_option("#hybrid", "rrf")
    search(page, "a man is talking", k=3)
    expect(page.locator("#score-head")).to_have_text("RRF score")
    expect(page.locator("#results tbody tr")).to_have_count(3)
    search(page, "   ", k=3)
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("text: empty")

    # The OpenAPI docs render from the server's own assets.
    page.goto(f"{url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("grdr query API")
    expect(page.locator(".opblock-summary-path", has_text="/ids/{semantic_id}/videos")).to_have_count(1)

    assert elsewhere == [], elsewhere  # nothing was fetched from another host
    assert problems == [], problems
