import json

import pytest

from bench.baselines import hnsw_index_body
from grdr_plugin import index as gi


def spec(**kw):
    base = dict(rerank_dim=256, fingerprint="abcdef0123456789", views=4, levels=3, codebook_size=64)
    base.update(kw)
    return gi.IndexSpec(**base)


def test_mapping_has_the_design_fields():
    body = gi.index_body(spec())
    props = body["mappings"]["properties"]
    assert props["video_id"] == {"type": "keyword"}
    assert props["grdr_ids"] == {"type": "keyword"}
    assert props["grdr_prefixes"] == {"type": "keyword"}
    # faiss engine, but no graph ever built: flat vectors the exact knn query scans
    assert props["grdr_vec"] == {"type": "knn_vector", "dimension": 256,
                                 "method": {"name": "hnsw", "engine": "faiss", "space_type": "cosinesimil"}}
    assert props["title"]["type"] == "text" and props["description"]["type"] == "text"
    assert props["tags"]["type"] == "keyword" and props["duration_s"]["type"] == "float"
    assert props["ingested_at"]["type"] == "date"
    index = body["settings"]["index"]
    assert index["knn"] is True and index["knn.advanced.approximate_threshold"] == -1
    assert (index["sort.field"], index["sort.mode"]) == ("grdr_ids", "min")  # a pool's videos kept together
    meta = body["mappings"]["_meta"]["grdr"]
    assert meta["fingerprint"] == "abcdef0123456789" and meta["rerank_dim"] == 256 and meta["scorer"] == "knn_exact"
    # every document's video ID and title in doc values (ingest bounds titles to what title.raw keeps): hits read them
    assert meta["hit_doc_values"] is True and props["video_id"] == {"type": "keyword"}
    assert props["title"]["fields"]["raw"] == {"type": "keyword", "ignore_above": gi.KEYWORD_IGNORE_ABOVE}
    assert gi.GrdrMeta.model_validate({"fingerprint": "f"}).hit_doc_values is False  # an older catalog: `_source`


def test_hnsw_body_uses_lucene_engine():
    body = hnsw_index_body(128, m=8, ef_construction=64)
    method = body["mappings"]["properties"]["grdr_vec"]["method"]
    assert body["settings"]["index"]["knn"] is True
    assert method["engine"] == "lucene" and method["parameters"] == {"m": 8, "ef_construction": 64}


@pytest.mark.parametrize("bad", ["", "Upper", "has space", "-lead", "cat-v000001"])
def test_bad_index_names_are_refused_with_the_flag_named(bad):
    with pytest.raises(ValueError, match="--index"):
        gi.validate_name(bad)


def test_versioned_names_sort_in_creation_order():
    assert gi.versioned_name("cat", 2) < gi.versioned_name("cat", 10)


def test_spec_from_model_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"rerank_dim": 64, "fingerprint": "f" * 64, "views": 4,
                                                      "levels": 3, "codebook_size": 32, "feature_dim": 512, "frames": 4,
                                                      "other": 1}))
    s = gi.IndexSpec.from_model_dir(tmp_path)
    assert s.rerank_dim == 64 and s.codebook_size == 32


def test_spec_from_model_dir_errors_name_the_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match="--model"):
        gi.IndexSpec.from_model_dir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="rerank_dim"):
        gi.IndexSpec.from_model_dir(tmp_path)


def test_fingerprint_of_mapping_response():
    resp = {"cat-v000001": {"mappings": {"_meta": {"grdr": {"fingerprint": "xyz"}}}}}
    assert gi.fingerprint_of(resp) == "xyz"
    assert gi.fingerprint_of({"i": {"mappings": {}}}) is None
