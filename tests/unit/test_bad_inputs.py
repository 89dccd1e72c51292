"""The bad-input corpus (tests/bad_inputs/cases.jsonl) against every validation path that needs no service.

Catalog lines go through ingest.sources, features files through the worker's own per-record path
(ingest.pipeline.file_inputs), video files through ingest.video, API cases through the request
models, query.searcher.clean_query and query.filters. tests/integration/test_bad_inputs_live.py
sends the same cases through a real worker and the real HTTP app.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Optional

import pytest
from pydantic import ValidationError

from grdr_plugin.index import IndexSpec, index_body
from grdr_plugin.runtime import ModelRuntime
from ingest.pipeline import Resources, Stopwatch, file_inputs
from ingest.schemas import RecordError, Summary
from ingest.sources import Record, plan_videos, read_records
from ingest.video import VideoError, read_frames
from query.api import MAX_BODY_BYTES, SearchRequest
from query.errors import content_type_problem
from query.filters import field_kinds_of, filter_clauses
from query.searcher import clean_query
from tests.bad_inputs.corpus import (
    CATALOG_NAME,
    MANIFEST,
    Case,
    api_body,
    api_json,
    assert_names,
    catalog_lines,
    load_cases,
    names,
    write_features,
    write_good_features,
)
from tests.bad_inputs.make_videos import make_videos

CASES = load_cases()
KINDS = field_kinds_of(index_body(IndexSpec(rerank_dim=8, fingerprint="0123456789ab"))["mappings"]["properties"])


def of(stage: str) -> list:
    return [pytest.param(c, id=c.id) for c in CASES if c.stage == stage]


def test_the_corpus_has_over_100_distinct_cases_of_every_kind_the_issue_names():
    ids = [c.id for c in CASES]
    assert len(ids) >= 100 and len(set(ids)) == len(ids), Counter(ids).most_common(3)
    kinds = {c.kind for c in CASES}
    for kind in ("malformed JSONL", "missing field", "extra field", "wrong feature dimension", "NaN/Inf", "non-UTF-8",
                 "1 MB string", "empty video file", "truncated video file", "corrupt video file", "unsupported codec",
                 "duplicate id in one batch", "empty query", "whitespace query", "100 KB query", "control characters",
                 "injection attempt", "filter with wrong type"):
        assert kind in kinds, kind
    assert MANIFEST.stat().st_size < 200_000  # big inputs are generated, not stored


# ---- ingest: catalog lines ----

@pytest.mark.parametrize("case", of("catalog"))
def test_a_bad_catalog_line_is_one_error_naming_its_field(case, tmp_path):
    lines = catalog_lines(case)
    (tmp_path / CATALOG_NAME).write_bytes(b"".join(line + b"\n" for line in lines))
    items = [item for src, _ in plan_videos(str(tmp_path / CATALOG_NAME), batch_size=100) for item in read_records(src)]
    errors = [item for item in items if isinstance(item, RecordError)]
    assert len(errors) == 1 and len(items) == len(lines), items
    where = case.id if case.error_id == "id" else f"{CATALOG_NAME} line {len(lines)}"
    assert errors[0].video_id == where
    assert_names(case, errors[0].reason)
    errors[0].reason.encode()  # what goes to the errors index must be sendable


# ---- ingest: per-video features files, through the worker's per-record path ----

@pytest.fixture(scope="module")
def resources(tiny_model_dir) -> Resources:
    return Resources(client=None, runtime=ModelRuntime(tiny_model_dir))


@pytest.mark.parametrize("case", of("features"))
def test_a_bad_features_file_fails_its_record_only(case, resources, tmp_path):
    good = Record("good", features_path=write_good_features(tmp_path / "good.npy"))
    bad = Record(case.id, features_path=write_features(case, tmp_path / f"{case.id}.npy"))
    summary = Summary()
    enc = file_inputs([good, bad, good], resources, None, summary, Stopwatch(summary))
    assert [r.video_id for r in enc.records] == ["good", "good"] and enc.frames.shape[0] == 2
    assert summary.failed == 1 and summary.errors[0].video_id == case.id
    assert_names(case, summary.errors[0].reason)


# ---- ingest: video files ----

@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    return make_videos(tmp_path_factory.mktemp("videos"))


def test_the_good_videos_decode(videos):
    for name in ("good.mp4", "good_mjpeg.avi"):
        assert read_frames(videos[name], 4, 32).shape == (4, 32, 32, 3)


@pytest.mark.parametrize("case", of("video"))
def test_a_bad_video_file_raises_a_video_error_with_the_reason(case, videos):
    with pytest.raises(VideoError) as err:
        read_frames(videos[case.video], 4, 32)
    assert_names(case, str(err.value))


# ---- the HTTP API's models: request -> clean_query -> filter clauses ----

def refusal(case: Case) -> Optional[str]:
    """'field: why' from the first layer below HTTP that refuses the case, or None if none does."""
    problem = content_type_problem(case.content_type or None)
    if problem:  # a body not sent as JSON is refused before it is read
        return problem
    try:
        body: Any = api_json(case)
    except (ValueError, RecursionError) as exc:  # FastAPI's JSON decoding refuses it: the body as a whole
        return f"body: {exc}"
    try:
        req = SearchRequest.model_validate(body)
        clean_query(req.text)
        filter_clauses(req.filters, KINDS)
    except ValidationError as exc:
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
    except ValueError as exc:  # clean_query and filter_clauses say 'field: why' themselves
        return str(exc)
    return None


@pytest.mark.parametrize("case", of("api"))
def test_an_api_case_is_refused_naming_its_field_or_passes_as_plain_values(case):
    if case.status == 413:
        assert len(api_body(case)) > MAX_BODY_BYTES
        return
    refused = refusal(case)
    if case.status != 200:
        assert refused is not None and names(refused, case.field), refused
        return
    assert refused is None
    # Hostile text and filter values stay values: every clause is a plain terms/range on a keyword field.
    req = SearchRequest.model_validate(api_json(case))
    assert all(next(iter(c)) in ("terms", "range") for c in filter_clauses(req.filters, KINDS))
