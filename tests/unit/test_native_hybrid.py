"""The neural-search path of hybrid="rrf" (query.hybrid, query.executor): plugin detection, the
temporary score-ranker pipeline, the one `hybrid` request and the switch to client-side fusion when
OpenSearch refuses it.  The local cluster has no neural-search, so these check the request against
the plugin's documented shape; the live test of the path is its fallback (tests/integration/test_query.py)."""
import json

import numpy as np
import pytest

from grdr_plugin.index import ID_FIELD, PREFIX_FIELD
from query.executor import NativeHybrid, neural_search_present
from query.hybrid import BM25_FIELDS, native_hybrid_request, rrf, rrf_pipeline
from query.request import HIT_SOURCE, recall_filter


class _Cat:
    def __init__(self, rows):
        self.rows = rows

    def plugins(self, format):
        assert format == "json"
        return self.rows


class _Client:
    def __init__(self, rows):
        self.cat = _Cat(rows)


class _Refusing:
    """msearch as OpenSearch without neural-search answers a `hybrid` query: 400 for the whole request."""

    def __init__(self):
        self.calls = 0

    def msearch(self, body):
        from opensearchpy.exceptions import RequestError

        self.calls += 1
        raise RequestError(400, "parsing_exception", {"error": {"reason": "unknown query [hybrid]"}})


def _rows(*nodes_plugins):
    return [{"name": node, "component": plugin} for node, plugins in nodes_plugins for plugin in plugins]


@pytest.mark.parametrize("rows,present", [
    (_rows(("n1", ["opensearch-knn", "opensearch-neural-search"])), True),
    (_rows(("n1", ["opensearch-knn", "opensearch-neural-search"]), ("n2", ["opensearch-neural-search"])), True),
    # not on every node
    (_rows(("n1", ["opensearch-knn", "opensearch-neural-search"]), ("n2", ["opensearch-knn"])), False),
    (_rows(("n1", ["opensearch-knn"])), False),
    ([], False),
])
def test_neural_search_counts_only_when_every_node_has_it(rows, present):
    assert neural_search_present(_Client(rows)) is present


def test_equal_weights_are_the_processors_default():
    combination = rrf_pipeline((1.0, 1.0), 60)["phase_results_processors"][0]["score-ranker-processor"]["combination"]
    assert combination == {"technique": "rrf", "rank_constant": 60}


def test_unequal_weights_are_scaled_into_the_processors_range():
    combination = rrf_pipeline((3.0, 1.0), 20)["phase_results_processors"][0]["score-ranker-processor"]["combination"]
    assert combination["rank_constant"] == 20 and combination["parameters"]["weights"] == [0.75, 0.25]


@pytest.mark.parametrize("weights", [(1.0,), (-1.0, 1.0), (0.0, 0.0)])
def test_bad_weights_name_the_field(weights):
    with pytest.raises(ValueError, match="hybrid_weights"):
        rrf_pipeline(weights, 60)


def test_scaling_the_weights_keeps_the_fused_order():
    """Why rrf_pipeline may rescale: RRF's order depends on the weights' ratio only."""
    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(40)]
    lists = [list(rng.permutation(docs)[:25]), list(rng.permutation(docs)[:25])]
    assert [d for d, _ in rrf(lists, [3.0, 1.0])] == [d for d, _ in rrf(lists, [0.75, 0.25])]


def test_one_hybrid_request_with_recall_by_cosine_and_bm25():
    vec = np.linspace(-1, 1, 8, dtype=np.float32)
    filters = [{"term": {"split": "seen"}}]
    pipeline = rrf_pipeline((1.0, 1.0), 60)
    body = native_hybrid_request(["1-2-3", "4-5-6"], vec, "a man cooks", size=50, filters=filters,
                                 prefixes=["7-8"], pipeline=pipeline)
    assert body["size"] == 50 and body["search_pipeline"] == pipeline
    assert body["_source"] == HIT_SOURCE and body["docvalue_fields"] == [ID_FIELD]
    assert "rescore" not in body  # a hybrid query would apply it to the BM25 side too
    grdr, keyword = body["query"]["hybrid"]["queries"]
    assert grdr["script_score"]["query"]["bool"]["filter"] == [recall_filter(["1-2-3", "4-5-6"], ["7-8"]), *filters]
    assert grdr["script_score"]["script"]["source"] == "knn_score"
    assert grdr["script_score"]["script"]["params"]["query_value"] == pytest.approx(vec.tolist())
    assert keyword["bool"]["must"][0]["multi_match"] == {"query": "a man cooks", "fields": BM25_FIELDS}
    assert keyword["bool"]["filter"] == filters
    json.dumps(body)  # plain JSON: numpy values were converted


@pytest.mark.parametrize("ids,prefixes,expected", [
    (["1-2-3"], [], {"terms": {ID_FIELD: ["1-2-3"]}}),
    ([], ["1-2"], {"terms": {PREFIX_FIELD: ["1-2"]}}),
    (["1-2-3"], ["4"], {"bool": {"should": [{"terms": {ID_FIELD: ["1-2-3"]}}, {"terms": {PREFIX_FIELD: ["4"]}}],
                                 "minimum_should_match": 1}}),
    ([], [], {"match_none": {}}),
])
def test_recall_filter(ids, prefixes, expected):
    assert recall_filter(ids, prefixes) == expected


def test_a_refused_hybrid_query_switches_to_client_side_fusion_once(caplog):
    import threading

    native, client = NativeHybrid(True), _Refusing()
    with caplog.at_level("WARNING", logger="query.executor"):
        threads = [threading.Thread(target=native.run, args=(client, "catalog", [{"size": 1}])) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert native.enabled is False and client.calls == 8
    assert caplog.text.count("refused the hybrid query") == 1  # logged once, whichever thread saw it first


def test_an_error_in_any_response_counts_as_a_refusal():
    class PerResponse:
        def msearch(self, body):
            return {"responses": [{"hits": {"hits": []}}, {"error": {"reason": "score-ranker-processor"}}]}

    native = NativeHybrid(True)
    assert native.run(PerResponse(), "catalog", [{}, {}]) is None and native.enabled is False


def test_accepted_hybrid_requests_return_their_responses():
    class Accepting:
        def msearch(self, body):
            assert body[0] == {"index": "catalog"} and body[1] == {"size": 1}
            return {"responses": [{"hits": {"hits": []}}]}

    native = NativeHybrid(True)
    assert native.run(Accepting(), "catalog", [{"size": 1}]) == [{"hits": {"hits": []}}] and native.enabled


def test_a_role_that_cannot_list_plugins_fuses_client_side():
    class NoMonitor:
        class cat:
            @staticmethod
            def plugins(format):
                raise PermissionError("cluster:monitor/nodes/info")

    assert NativeHybrid.detect(NoMonitor()).enabled is False
    assert NativeHybrid.detect(_Client(_rows(("n1", ["opensearch-neural-search"])))).enabled is True
