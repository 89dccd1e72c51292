"""The load generator's pure parts: memory verdict, answer checks, query sources, config bounds."""
import numpy as np
import pytest
from pydantic import ValidationError

from bench.loadtest import FLAT_MIN_MB, LoadConfig, invalid_reason, memory_report, read_texts
from query.searcher import Hit, SearchResult

MB = 2**20


def rss_series(start_mb: float, mb_per_s: float, seconds: int, noise_mb: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(float(t), int((start_mb + mb_per_s * t + rng.normal(0, noise_mb)) * MB)) for t in range(seconds + 1)]


def test_a_noisy_but_level_rss_is_flat_and_a_steady_leak_is_not():
    level = memory_report(1, [(0.0, 80 * MB)] + rss_series(400, 0.0, 60, noise_mb=3)[1:], warmup_s=5)
    assert level.flat and level.before_mb == 80 and abs(level.slope_mb_per_min) < 5
    assert level.bound_mb == pytest.approx(0.05 * level.start_mb, abs=0.1)  # 5 % of ~400 MB > 10 MB

    leak = memory_report(1, rss_series(100, 0.5, 60, noise_mb=1), warmup_s=5)
    assert leak.slope_mb_per_min == pytest.approx(30, abs=2) and leak.growth_mb == pytest.approx(27.5, abs=2)
    assert leak.bound_mb == FLAT_MIN_MB and not leak.flat


def test_the_memory_fit_needs_samples_after_the_warm_up():
    with pytest.raises(ValueError, match="after the warm-up"):
        memory_report(1, rss_series(100, 0, 4, 0), warmup_s=3)


def answer(scores, ids=None):
    ids = ids or [f"v{i}" for i in range(len(scores))]
    return SearchResult(hits=[Hit(video_id=v, score=s) for v, s in zip(ids, scores)], timings_ms={})


def test_an_answer_is_valid_only_with_1_to_k_sorted_distinct_hits():
    assert invalid_reason(answer([0.9, 0.5, 0.1]), k=3) is None
    assert invalid_reason(answer([]), k=3) == "0 hits for k=3"
    assert invalid_reason(answer([0.9, 0.5, 0.1]), k=2) == "3 hits for k=2"
    assert invalid_reason(answer([0.5, 0.9]), k=2) == "hits not sorted by score"
    assert invalid_reason(answer([0.9, 0.5], ids=["a", "a"]), k=2) == "duplicate video_id in hits"


def test_queries_come_from_a_file_or_a_datasets_test_split(tmp_path):
    f = tmp_path / "q.txt"
    f.write_text("a dog runs\n\n  a cat sleeps  \n", encoding="utf-8")
    assert read_texts(f, None) == ["a dog runs", "a cat sleeps"]
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "catalog.jsonl").write_text('{"video_id": "v1"}\n', encoding="utf-8")
    np.save(ds / "features.npy", np.ones((1, 4), np.float32))
    (ds / "queries.jsonl").write_text(
        '{"query_id": "q1", "text": "train text", "video_id": "v1", "split": "train"}\n'
        '{"query_id": "q2", "text": "test text", "video_id": "v1", "split": "test"}\n', encoding="utf-8")
    assert read_texts(None, ds) == ["test text"]
    with pytest.raises(ValueError, match="exactly one of --queries"):
        read_texts(f, ds)
    (tmp_path / "blank.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="no non-blank lines"):
        read_texts(tmp_path / "blank.txt", None)


def test_the_run_must_outlast_the_warm_up_enough_to_fit_a_slope():
    with pytest.raises(ValidationError, match="--duration"):
        LoadConfig(texts=["x"], duration_s=6, warmup_s=5)
    with pytest.raises(ValidationError, match="k"):
        LoadConfig(texts=["x"], k=101)
    assert LoadConfig(texts=["x"]).clients == 8


def test_failed_requests_are_timed_by_when_they_were_sent():
    from bench.loadtest import _Tally

    tally = _Tally()
    assert tally.error_window_s() is None
    tally.error("status 503", "no shard", tally.t0 + 2.5)
    tally.error("ConnectError", "refused", tally.t0 + 1.0)
    assert tally.error_window_s() == (1.0, 2.5) and tally.errors == {"status 503": 1, "ConnectError": 1}
