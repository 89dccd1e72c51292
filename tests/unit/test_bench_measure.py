"""bench.suite.measure: the systems timed in turns, a block of queries each, over several passes."""
import pytest

from bench.suite import measure


def _system(name, calls, answers):
    def run(text):
        calls.append((name, text))
        return answers[text], {"encode": 1.0, "total": 2.0 if name == "a" else 4.0}
    return run


def test_systems_take_turns_and_each_pass_is_timed():
    calls: list[tuple[str, str]] = []
    texts, truth = ["q1", "q2", "q3"], ["v1", "v2", "v3"]
    right = {"q1": ["v1", "x"], "q2": ["x", "v2"], "q3": ["v3"]}
    wrong = {"q1": ["x"], "q2": ["x"], "q3": ["x"]}
    out = measure({"a": _system("a", calls, right), "b": _system("b", calls, wrong)}, texts, truth, reference="a",
                  rounds=2, block=1)
    warm, timed = calls[:2], calls[2:]
    assert warm == [("a", "q1"), ("b", "q1")]
    # blocks of one query: the first system of each query rotates, and so does each pass's start
    assert timed == [("a", "q1"), ("b", "q1"), ("b", "q2"), ("a", "q2"), ("a", "q3"), ("b", "q3"),
                     ("b", "q1"), ("a", "q1"), ("a", "q2"), ("b", "q2"), ("b", "q3"), ("a", "q3")]
    a, hits = out["a"]
    assert hits == [right[t] for t in texts] and a["R@1"] == 66.67 and a["R@10"] == 100
    assert a["p50_ms"] == 2.0 and set(a["stages_ms"]) == {"encode", "total"} and "overlap@10" not in a
    b, _ = out["b"]
    assert b["R@10"] == 0 and b["p50_ms"] == 4.0 and b["overlap@10"] == 6.67  # "x" in 2 of 3 lists of 10


def test_a_block_of_queries_runs_on_one_system_before_the_next_takes_it():
    calls: list[tuple[str, str]] = []
    answers = {t: [] for t in ("q1", "q2", "q3")}
    out = measure({"a": _system("a", calls, answers), "b": _system("b", calls, answers)}, list(answers), ["v"] * 3,
                  rounds=1, block=2)
    assert calls[2:] == [("a", "q1"), ("a", "q2"), ("b", "q1"), ("b", "q2"), ("b", "q3"), ("a", "q3")]
    assert [len(hits) for _, hits in out.values()] == [3, 3]


@pytest.mark.parametrize("bad", [{"rounds": 0}, {"block": 0}])
def test_at_least_one_pass_of_blocks_of_one(bad):
    with pytest.raises(ValueError, match="at least 1"):
        measure({"a": _system("a", [], {"q": []})}, ["q"], ["v"], **bad)


def test_the_encode_after_each_kind_of_work_is_timed_in_turns_leaving_out_each_turns_first():
    from bench.encode_context import encode_after

    order: list[tuple[str, str]] = []
    between = {kind: (lambda text, q, kind=kind: order.append((kind, text))) for kind in ("idle", "search")}
    out = encode_after(lambda text: order.append(("encode", text)), between, ["q1", "q2", "q3"], rounds=2, block=2)
    assert order[:6] == [("encode", "q1"), ("idle", "q1"), ("encode", "q2"), ("idle", "q2"),
                         ("encode", "q1"), ("search", "q1")]  # each encode, then the kind whose turn it is
    # per kind: 2 passes of two turns (q1 q2, then q3); each turn's first encode left out: q2 timed, twice
    assert {kind: s["samples"] for kind, s in out.items()} == {"idle": 2, "search": 2}
    assert sum(1 for kind, _ in order if kind == "idle") == 6 and len(order) == 24
