"""`grdr bench` end to end on a small grown catalog: the real ingest, the three systems, the report."""
import json

from bench.report import write_report
from bench.suite import BenchConfig, run_bench
from tests.conftest import shared_dataset


def test_bench_measures_three_systems_and_cleans_up(tiny_model_dir, settings, client, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    cfg = BenchConfig(dataset=shared_dataset("msrvtt"), model=tiny_model_dir, scales=[2000], queries=10, clients=[1],
                      throughput_queries=10, beams=[20, 300], ef_search=[100], pools=[3000], pool_beams=[20],
                      work_dir=work)
    result = run_bench(cfg, log=lambda _: None, settings=settings)
    scale = result["scales"]["2000"]
    assert result["videos"] == scale["videos"] == 2000 and scale["ingest"]["videos"] == 2000
    systems = scale["systems"]
    assert set(systems) == {"grdr", "dense_exact", "hnsw"}
    for name, system in systems.items():
        assert 0 <= system["R@1"] <= system["R@5"] <= system["R@10"] <= 100, name
        assert 0 < system["p50_ms"] <= system["p99_ms"] and system["qps"]["1"] > 0, name
    assert set(systems["grdr"]["stages_ms"]) == {"encode", "decode", "opensearch", "total"}
    assert 0 < systems["grdr"]["recall_ram_bytes"] < systems["hnsw"]["recall_ram_bytes"]
    # a pool besides the default budget (the floor, 1,000, on 2,000 videos) is measured as a curve point
    assert [(c["beam"], c["max_pool"]) for c in scale["curves"]["grdr_pool"]] == [(20, 3000)]
    assert "overlap@10" in systems["grdr"] and scale["storage"]["grdr"]["bytes_per_video"] > 0
    # each corpus beside the real one: nearest-neighbour cosines in both spaces, exact dense R@10
    real = result["real_corpus"]
    assert real["videos"] == 1000 and real["queries"] == 10 and 0 <= real["dense_exact"]["R@10"] <= 100
    assert real["nn_cosine"]["rerank"]["videos_sampled"] == 1000
    assert scale["nn_cosine"]["features"]["videos_sampled"] == 2000
    for profile in (*real["nn_cosine"].values(), *scale["nn_cosine"].values()):
        assert -1 <= profile["p5"] <= profile["p50"] <= profile["p95"] <= 1
    # the grown catalog is gone after ingest, and so are the bench's indices
    assert list(work.iterdir()) == []
    assert not client.indices.exists(index="bench-msrvtt-2000-hnsw")
    assert not client.indices.exists_alias(name="bench-msrvtt-2000")
    report = write_report(result, tmp_path / "report", "grdr bench ...")
    assert (tmp_path / "report" / "BENCHMARKS.md").is_file() and report
    text = report.read_text()
    assert "| grown | 2,000 | 2,000 |" in text
    # GRDR's headline is what the model serves this catalog with, measured apart from the beam sweep
    grdr = systems["grdr"]
    assert grdr["max_pool"] == 1000 and grdr["recall_level"] >= 1 and grdr["beam"] >= 1
    assert f"| GRDR defaults (level {grdr['recall_level']}, beam {grdr['beam']}, budget 1000) |" in text
    assert "Targets in this run (no scale target is set at 2,000 videos):" in text
    json.dumps(result)  # the --json line is plain JSON
