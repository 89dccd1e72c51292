"""query.executor's round trips over a scripted client: what is sent in each round, and how a
refused query surfaces.  (The same against the real node: tests/integration/test_query.py.)"""
import numpy as np
import pytest

from query.executor import QueryRefused, run_rounds
from query.planner import plan_search


class _Counts:
    def video_count(self, sid):
        return {"1-2-3": 3, "4-5-6": 2}.get(sid, 0)

    def prefix_count(self, prefix):
        return {"1-2": 30}.get(prefix, 0)


class _Scripted:
    """Answers each _msearch with the next scripted list of responses; keeps what was sent."""

    def __init__(self, *rounds):
        self.rounds, self.sent = list(rounds), []

    def msearch(self, body):
        self.sent.append(body)
        return {"responses": self.rounds.pop(0)}


def _response(total, ids=()):
    return {"hits": {"total": {"value": total, "relation": "eq"},
                     "hits": [{"_id": v, "_score": 0.5, "fields": {"grdr_ids": ["1-2-3"]}} for v in ids]}}


def _plan(hybrid="off"):
    codes = np.array([[[1, 2, 3]], [[4, 5, 6]]])
    return plan_search(["a", "b"], np.ones((2, 4), dtype=np.float32), codes, np.zeros((2, 1), dtype=np.float32),
                       _Counts(), k=10, max_pool=40, hybrid=hybrid, filters=[], levels=3)


def test_one_round_when_every_pool_holds_k():
    client = _Scripted([_response(12), _response(15)])
    answers = run_rounds(client, "catalog", _plan(), _Counts())
    assert len(client.sent) == 1 and client.sent[0][0::2] == [{"index": "catalog"}] * 2
    assert answers.prefixes == [[], []] and answers.keyword == [None, None]


def test_the_second_round_asks_only_the_small_pool_again_widened():
    widened = _response(33, ["v1"])
    client = _Scripted([_response(3), _response(15)], [widened])
    answers = run_rounds(client, "catalog", _plan(), _Counts())
    assert len(client.sent) == 2 and len(client.sent[1]) == 2  # one query asked again
    again = client.sent[1][1]
    assert {"terms": {"grdr_prefixes": ["1-2"]}} in again["query"]["script_score"]["query"]["bool"]["filter"][0][
        "bool"]["should"]
    assert answers.prefixes == [["1-2"], []] and answers.grdr[0] is widened


def test_hybrid_responses_are_split_per_side():
    keyword = [_response(50), _response(50)]
    client = _Scripted([_response(12), keyword[0], _response(15), keyword[1]])
    answers = run_rounds(client, "catalog", _plan("union"), _Counts())
    assert answers.keyword == keyword and [r["hits"]["total"]["value"] for r in answers.grdr] == [12, 15]


def test_a_refused_query_is_raised_with_opensearchs_reason():
    client = _Scripted([_response(12), {"error": {"reason": "too_many_clauses"}}])
    with pytest.raises(QueryRefused, match="OpenSearch refused the query: .*too_many_clauses"):
        run_rounds(client, "catalog", _plan(), _Counts())
