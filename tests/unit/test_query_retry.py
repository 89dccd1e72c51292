"""query.executor.send: what a lost node costs a search, over a scripted client.  Each `_msearch` answer or
exception is scripted; what was sent is kept.  (Against a real 3-node cluster with a node SIGKILLed under load:
tests/integration/test_cluster_faults.py.)"""
import pytest
from opensearchpy.exceptions import ConnectionError, ConnectionTimeout, RequestError, SSLError, TransportError

from query import executor
from query.executor import NativeHybrid, OpenSearchUnavailable, QueryRefused, lost_reason, msearch, retryable, send


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch):
    monkeypatch.setattr(executor, "RETRY_PAUSES_S", (0.0, 0.0))


class _Scripted:
    """Each _msearch takes the next scripted step: an exception to raise or the list of responses."""

    def __init__(self, *steps):
        self.steps, self.sent = list(steps), []

    def msearch(self, body):
        self.sent.append([line for line in body[1::2]])  # the request bodies, headers left out
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return {"responses": step}


def _whole(n):
    return {"_shards": {"total": 3, "successful": 3, "failed": 0}, "hits": {"hits": [], "total": {"value": n}}}


def _partial():
    failure = {"shard": 1, "index": "videos-v000001", "reason": {"type": "node_disconnected_exception",
                                                                 "reason": "[grdr-node-2] disconnected"}}
    return {"_shards": {"total": 3, "successful": 2, "failed": 1, "failures": [failure]},
            "hits": {"hits": [], "total": {"value": 5}}}


def _error(status, kind):
    return {"error": {"type": kind, "reason": f"{kind} happened"}, "status": status}


BODIES = [{"q": "a"}, {"q": "b"}, {"q": "c"}]


def test_a_whole_answer_is_one_round_trip():
    client = _Scripted([_whole(1), _whole(2), _whole(3)])
    assert [r["hits"]["total"]["value"] for r in send(client, "videos", BODIES)] == [1, 2, 3]
    assert len(client.sent) == 1


def test_a_partial_answer_is_asked_again_alone_and_replaced():
    client = _Scripted([_whole(1), _partial(), _error(503, "no_shard_available_action_exception")],
                       [_whole(2), _whole(3)])
    answers = send(client, "videos", BODIES)
    assert [r["hits"]["total"]["value"] for r in answers] == [1, 2, 3]
    assert client.sent == [BODIES, BODIES[1:]]  # only the lost queries travel again


@pytest.mark.parametrize("exc", [ConnectionError("N/A", "refused", None), ConnectionTimeout("TIMEOUT", "30 s", None),
                                 TransportError(502, "bad gateway"), TransportError(503, "unavailable"),
                                 TransportError(504, "gateway timeout")])
def test_no_answer_or_a_gateway_status_is_tried_again(exc):
    client = _Scripted(exc, [_whole(1), _whole(2), _whole(3)])
    assert len(send(client, "videos", BODIES)) == 3 and len(client.sent) == 2


@pytest.mark.parametrize("exc", [SSLError("N/A", "certificate verify failed", None), TransportError(500, "bug"),
                                 RequestError(400, "parsing_exception", {})])
def test_what_another_node_would_answer_the_same_is_raised_at_once(exc):
    client = _Scripted(exc)
    with pytest.raises(type(exc)):
        send(client, "videos", BODIES)
    assert len(client.sent) == 1


def test_a_refused_query_is_not_asked_again_and_msearch_raises_it():
    client = _Scripted([_whole(1), _error(400, "parsing_exception"), _whole(3)])
    with pytest.raises(QueryRefused, match="parsing_exception"):
        msearch(client, "videos", BODIES)
    assert len(client.sent) == 1


def test_a_shard_lost_for_every_try_is_raised_as_unavailable_not_answered_partially():
    tries = 1 + len(executor.RETRY_PAUSES_S)
    client = _Scripted(*[[_partial()] for _ in range(tries)])
    with pytest.raises(OpenSearchUnavailable, match="1 of 1 searches .* 3 tries: 1 of 3 shards failed: "
                                                    "node_disconnected_exception") as caught:
        send(client, "videos", BODIES[:1])
    assert caught.value.status_code == 503 and len(client.sent) == tries


def test_no_node_answering_any_try_raises_the_connection_error_itself():
    tries = 1 + len(executor.RETRY_PAUSES_S)
    client = _Scripted(*[ConnectionError("N/A", f"refused {i}", None) for i in range(tries)])
    with pytest.raises(ConnectionError, match=f"refused {tries - 1}"):
        send(client, "videos", BODIES)


def test_native_hybrid_stays_on_through_a_lost_node_and_goes_off_when_refused():
    native = NativeHybrid(True)
    assert native.run(_Scripted([_partial()], [_whole(1)]), "videos", BODIES[:1]) is not None
    assert native.enabled
    assert native.run(_Scripted([_error(400, "parsing_exception")]), "videos", BODIES[:1]) is None
    assert not native.enabled


@pytest.mark.parametrize("response,lost", [
    (_whole(3), False), (_partial(), True), (_error(503, "x"), True), (_error(500, "x"), True),
    (_error(400, "x"), False), (_error(404, "index_not_found_exception"), False),
])
def test_what_counts_as_lost(response, lost):
    assert (lost_reason(response) is not None) is lost


def test_retryable_exceptions():
    assert retryable(ConnectionTimeout("TIMEOUT", "t", None)) and not retryable(SSLError("N/A", "x", None))
    assert retryable(TransportError(503, "x")) and not retryable(TransportError(429, "x"))
