"""Backfill of a user's index, pure parts: the features field checks, vector rows, partial update bodies."""
import json

import numpy as np
import pytest

from grdr_plugin.feature_space import FeatureSpace, check_vector_field, read_feature_space
from grdr_plugin.index import DEFAULT_FIELDS, GrdrFields
from ingest.backfill import (
    BackfillBatch,
    BackfillTarget,
    DocIds,
    DocRef,
    field_inputs,
    field_value,
    partial_doc,
    vector_problem,
)
from ingest.docs import prefixes
from ingest.pipeline import Stopwatch
from ingest.schemas import Summary
from ingest.sources import Record
from tests.support.tiny_model import tiny_config

COSINE = FeatureSpace(dim=4)


def test_the_model_folder_records_the_feature_space(tmp_path, tiny_model_dir):
    space = read_feature_space(tiny_model_dir)
    assert (space.dim, space.space_type, space.normalise) == (512, "cosinesimil", True)
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    (model / "feature_space.json").write_text('{"space_type": "innerproduct"}')
    assert read_feature_space(model).space_type == "innerproduct" and not read_feature_space(model).normalise
    (model / "feature_space.json").write_text('{"space_type": "cosine"}')
    with pytest.raises(ValueError, match="feature_space.json must be"):
        read_feature_space(model)


@pytest.mark.parametrize("field,message", [
    (None, "has no field 'clip_vec'"),
    ({"type": "float"}, "clip_vec is a float field of videos, not a knn_vector"),
    ({"type": "knn_vector", "dimension": 8}, "holds 8-d vectors in videos, the model reads 4-d"),
    ({"type": "knn_vector", "dimension": 4, "space_type": "l2"}, "in the l2 space in videos, the model's features "
                                                                 "are cosinesimil"),
    ({"type": "knn_vector", "dimension": 4, "method": {"name": "hnsw", "space_type": "innerproduct"}},
     "innerproduct space"),
])
def test_a_features_field_off_the_models_dimension_or_space_is_refused(field, message):
    with pytest.raises(ValueError, match=f"--features-field: .*{message}"):
        check_vector_field("clip_vec", field, COSINE, index="videos")


@pytest.mark.parametrize("field", [{"type": "knn_vector", "dimension": 4},
                                   {"type": "knn_vector", "dimension": 4, "space_type": "cosinesimil"},
                                   {"type": "knn_vector", "dimension": 4,
                                    "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}}])
def test_a_field_in_the_models_space_or_declaring_none_is_taken(field):
    check_vector_field("clip_vec", field, COSINE, index="videos")


def test_field_values_are_read_by_dotted_path():
    src = {"emb": {"clip": [1.0]}, "a.b": 2}
    assert field_value(src, "emb.clip") == [1.0] and field_value(src, "a.b") == 2 and field_value(src, "x.y") is None


@pytest.mark.parametrize("value,message", [(None, "is missing in this document"), ("1,2", "not a list of numbers"),
                                           ([1, "2", 3, 4], "not a list of numbers"), ([True] * 4, "not a list"),
                                           ([1.0, 2.0], "has 2 values, the model expects 4")])
def test_a_bad_vector_is_named_with_its_field(value, message):
    assert message in vector_problem(value, "clip_vec", 4)
    assert vector_problem([0.5, 1, 2, 3], "clip_vec", 4) is None


def test_field_inputs_fail_bad_rows_alone_and_normalise_the_good_ones():
    cfg = tiny_config(feature_dim=4, frames=3)
    rows = {"ok": [3.0, 4.0, 0.0, 0.0], "nan": [float("nan"), 1.0, 1.0, 1.0], "zero": [0.0] * 4, "none": None,
            "short": [1.0]}
    found = {k: [DocRef(index="i", routing=None, filled=False, source={"clip_vec": v})] for k, v in rows.items()}
    target = BackfillTarget(index="i", alias="i", publish_as="i", fingerprint="f" * 8, model_dir="/m",
                            features_field="clip_vec", normalise=True)
    summary = Summary()
    enc = field_inputs([Record(video_id=k) for k in rows], found, target, cfg, summary, Stopwatch(summary))
    assert [r.video_id for r in enc.records] == ["ok"]
    np.testing.assert_allclose(enc.pooled, [[0.6, 0.8, 0.0, 0.0]])
    assert enc.frames.shape == (1, 3, 4)  # one pooled feature per video: every frame is that feature
    reasons = {e.video_id: e.reason for e in summary.errors}
    assert set(reasons) == {"nan", "zero", "none", "short"}
    assert reasons["nan"] == "field 'clip_vec': features[0]: NaN"
    assert reasons["zero"] == "field 'clip_vec': features: all zeros"


@pytest.mark.parametrize("fields", [DEFAULT_FIELDS, GrdrFields.generation("0123456789abcdef")])
def test_a_partial_update_carries_grdrs_fields_only(fields):
    body = json.loads(partial_doc(fields, ["1-2-3", "1-2-4"], "0.5,-0.25"))
    assert body == {"doc": {fields.ids: ["1-2-3", "1-2-4"], fields.prefixes: prefixes(["1-2-3", "1-2-4"]),
                            fields.vec: [0.5, -0.25]}}


def test_a_backfill_batch_round_trips_through_json():
    target = BackfillTarget(index="a,b", alias="videos", publish_as="videos", fingerprint="f" * 8, model_dir="/m",
                            fields=GrdrFields.generation("abcdef0123456789"), features_field="clip_vec")
    batch = BackfillBatch(target=target, source=DocIds(ids=["v1", "v2"]), size=2)
    again = BackfillBatch.model_validate(json.loads(json.dumps(batch.model_dump())))
    assert again == batch and isinstance(again.source, DocIds)
