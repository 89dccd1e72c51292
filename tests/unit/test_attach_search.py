"""Searching a user's index as it is, pure parts: filters on its own fields, BM25's fields, grdr's field
names, the `_source` fields a hit carries."""
import numpy as np
import pytest
from pydantic import ValidationError

from grdr_plugin.index import GrdrFields
from query.filters import DATE_FORMAT, SearchFilters, field_kinds_of, filter_clauses
from query.hybrid import BM25_FIELDS, bm25_request, check_text_fields, default_text_fields, keyword_candidates_request
from query.request import HIT_SOURCE, grdr_request, hit_source
from query.results import Hit, hit_of

PROPS = {"title": {"type": "text", "fields": {"raw": {"type": "keyword"}}}, "channel": {"type": "keyword"},
         "published": {"type": "date"}, "stats": {"properties": {"views": {"type": "long"}}},
         "live": {"type": "boolean"}, "clip_vec": {"type": "knn_vector", "dimension": 4},
         "grdr_ids": {"type": "keyword"}, "grdr_prefixes": {"type": "keyword"}}
KINDS = field_kinds_of(PROPS)


def clauses(**filters):
    return filter_clauses(SearchFilters(**filters), KINDS)


def test_field_kinds_cover_the_users_fields_and_leave_grdrs_out():
    assert KINDS == {"title": "text", "title.raw": "keyword", "channel": "keyword", "published": "date",
                     "stats.views": "numeric", "live": "boolean", "clip_vec": "other"}


def test_term_terms_and_range_on_keyword_numeric_date_and_boolean_fields():
    assert clauses(term={"channel": "news"}) == [{"term": {"channel": "news"}}]
    assert clauses(term={"live": True}) == [{"term": {"live": True}}]
    assert clauses(terms={"stats.views": [1, 2]}) == [{"terms": {"stats.views": [1, 2]}}]
    assert clauses(range={"stats.views": {"gte": 10, "lt": 500.5}}) == [
        {"range": {"stats.views": {"gte": 10, "lt": 500.5}}}]
    assert clauses(range={"published": {"gte": "now-30d/d"}}) == [
        {"range": {"published": {"gte": "now-30d/d", "format": DATE_FORMAT}}}]
    # a date compares as a one-instant range in the default format, whatever format the field declares
    assert clauses(term={"published": "2024-05-01"}) == [
        {"range": {"published": {"gte": "2024-05-01", "lte": "2024-05-01", "format": DATE_FORMAT}}}]
    both = clauses(terms={"published": ["2024-05-01", 1714521600000]})[0]["bool"]
    assert len(both["should"]) == 2 and both["minimum_should_match"] == 1


@pytest.mark.parametrize("filters,message", [
    ({"term": {"nope": "x"}}, "filters.term.nope: 'nope' is not a field of the index"),
    ({"term": {"title": "x"}}, "filters.term.title: title is a text field.*title.raw"),
    ({"term": {"stats.views": "10"}}, "filters.term.stats.views: '10': a numeric field takes numbers"),
    ({"terms": {"channel": [1]}}, "filters.terms.channel: 1: a keyword field takes strings"),
    ({"range": {"channel": {"gte": "a"}}}, "filters.range.channel: channel is a keyword field"),
    ({"range": {"published": {"gte": "last tuesday"}}}, "filters.range.published: 'last tuesday': a date field"),
    ({"term": {"live": "yes"}}, "filters.term.live: 'yes': a boolean field takes true or false"),
    ({"term": {"clip_vec": 1}}, "filters.term.clip_vec: clip_vec is neither a keyword, numeric, date nor boolean"),
    ({"tags": ["x"]}, "filters.tags: 'tags' is not a field of the index"),
    ({"duration_max": 5.0}, "filters.duration_max: 'duration_s' is not a field of the index"),
])
def test_a_filter_the_mapping_cannot_answer_is_refused_with_the_field_named(filters, message):
    with pytest.raises(ValueError, match=message):
        clauses(**filters)


@pytest.mark.parametrize("payload", [{"range": {"x": {}}}, {"range": {"x": {"gte": 1, "gt": 2}}},
                                     {"range": {"x": {"from": 1}}}, {"term": {"x": [1]}}, {"term": {"x": None}},
                                     {"terms": {"x": ["a"] * 1001}}, {"term": {f"f{i}": 1 for i in range(65)}},
                                     {"range": {"x": {"gte": float("nan")}}}])
def test_malformed_filters_are_refused_before_any_request(payload):
    with pytest.raises(ValidationError):
        SearchFilters(**payload)


@pytest.mark.parametrize("value", ["2024-05-01", "2024-05-01T12:30:00Z", "2024-05-01T12:30:00+02:00", "now",
                                   "now-7d/d", "2024-05-01||+1M/d"])
def test_date_values_in_the_forms_opensearch_reads(value):
    assert clauses(range={"published": {"lte": value}})


def test_bm25_reads_the_named_fields_or_every_text_field_of_the_index():
    assert default_text_fields(KINDS) == ["title"]
    assert check_text_fields(["title^2", "title.raw"], KINDS) == ["title^2", "title.raw"]
    with pytest.raises(ValueError, match="text_fields: 'stats.views' is a numeric field"):
        check_text_fields(["stats.views"], KINDS)
    with pytest.raises(ValueError, match="text_fields: 'body' is not a field of the index.*text fields here: title"):
        check_text_fields(["body"], KINDS)
    with pytest.raises(ValueError, match="a boost is a positive number"):
        check_text_fields(["title^-1"], KINDS)
    body = bm25_request("cats", size=5, filters=[], text_fields=["title"])
    assert body["query"]["bool"]["must"][0]["multi_match"]["fields"] == ["title"]
    assert bm25_request("cats", size=5, filters=[])["query"]["bool"]["must"][0]["multi_match"]["fields"] == BM25_FIELDS


def test_requests_read_grdrs_fields_where_the_index_keeps_them():
    gen = GrdrFields.generation("0123456789abcdef")
    body = grdr_request(["1-2-3"], np.ones(4), prefixes=["1-2"], fields=gen)
    text = str(body)
    assert "'grdr_ids'" not in text and "'grdr_vec'" not in text and "'grdr_prefixes'" not in text
    assert gen.ids in text and gen.vec in text and gen.prefixes in text
    assert body["docvalue_fields"] == [gen.ids]
    union = keyword_candidates_request("cats", np.ones(4), size=5, filters=[], fields=gen)
    assert union["rescore"]["query"]["rescore_query"]["script_score"]["script"]["params"]["field"] == gen.vec


def test_hits_carry_the_source_fields_asked_for_and_only_then():
    assert hit_source() == HIT_SOURCE
    assert hit_source(["channel", "title", "stats.*"]) == {"includes": ["title", "channel", "stats.*"]}
    with pytest.raises(ValueError, match="source: a list of field names"):
        hit_source("channel")
    with pytest.raises(ValueError, match="source: '' is not a field name"):
        hit_source([""])
    with pytest.raises(ValueError, match="source: at most 100 fields"):
        hit_source([f"f{i}" for i in range(101)])
    raw = {"_id": "v1", "_score": 0.5, "_source": {"title": "t", "channel": "news"},
           "fields": {"grdr_ids_x": ["1-2-3"]}}
    plain = hit_of(raw, ["1-2-3"], [], id_field="grdr_ids_x")
    assert plain.model_dump() == {"video_id": "v1", "score": 0.5, "matched_id": "1-2-3", "title": "t"}
    asked = hit_of(raw, ["1-2-3"], [], id_field="grdr_ids_x", with_source=True)
    assert asked.model_dump()["source"] == {"title": "t", "channel": "news"}
    assert Hit.model_validate(asked.model_dump()) == asked
