"""grdr on a user's index, pure parts: the extension mapping, attach/detach planning, refit planning."""
import json

import pytest

from grdr_plugin import index as gi
from grdr_plugin.attach import AttachRefused, IndexState, plan_attach, plan_detach
from ingest.refit import Refit, _copied_mappings, _copied_settings, copy_name, describe

SPEC = gi.IndexSpec(rerank_dim=256, fingerprint="abcdef0123456789" * 4, views=4, levels=3, codebook_size=64)
OTHER = gi.IndexSpec(rerank_dim=256, fingerprint="0123456789abcdef" * 4, views=4, levels=3, codebook_size=64)


def user_mappings(**extra):
    return {"_meta": {"owner": "video-team", "schema": 7},
            "properties": {"title": {"type": "text"}, "channel": {"type": "keyword"},
                           "clip_vec": {"type": "knn_vector", "dimension": 512}}, **extra}


def state(mappings, knn=False, index="videos-2024"):
    return IndexState(index=index, mappings=mappings, knn_enabled=knn)


def attached(spec=SPEC, **meta_extra):
    """A user mapping after plan_attach applied."""
    plan = plan_attach(state(user_mappings()), spec, registry_key="videos")
    m = user_mappings()
    m["properties"].update(plan.add)
    m["_meta"] = plan.meta
    m["_meta"]["grdr"].update(meta_extra)
    return m


# ---- one definition of grdr's fields ----

def test_the_catalog_mapping_and_the_component_template_share_one_definition_of_grdrs_fields():
    catalog = gi.index_body(SPEC)["mappings"]
    template = gi.component_template_body(SPEC)["template"]["mappings"]
    ids_and_prefixes = gi.DEFAULT_FIELDS.names()[:2]
    assert {k: catalog["properties"][k] for k in ids_and_prefixes} == {k: template["properties"][k]
                                                                       for k in ids_and_prefixes}
    # the vector: flat for the catalog's exact knn query; doc values for the script on a user's index
    assert catalog["properties"]["grdr_vec"] == gi.grdr_properties(SPEC, scorer="knn_exact")["grdr_vec"]
    assert template["properties"]["grdr_vec"] == {"type": "knn_vector", "dimension": 256}
    assert catalog["_meta"]["grdr"]["mode"] == "catalog" and template["_meta"]["grdr"]["mode"] == "attached"
    assert catalog["_meta"]["grdr"]["scorer"] == "knn_exact" and template["_meta"]["grdr"]["scorer"] == "knn_score"
    assert catalog["_meta"]["grdr"]["fingerprint"] == template["_meta"]["grdr"]["fingerprint"] == SPEC.fingerprint


def test_knn_enabled_indices_get_a_lucene_method_every_node_can_build():
    body = gi.component_template_body(SPEC, knn_enabled=True)
    vec = body["template"]["mappings"]["properties"]["grdr_vec"]
    assert vec["method"] == {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}


def test_a_generation_of_fields_is_named_by_the_fingerprint():
    gen = gi.GrdrFields.generation(SPEC.fingerprint)
    assert gen.names() == ("grdr_ids_abcdef012345", "grdr_prefixes_abcdef012345", "grdr_vec_abcdef012345")
    meta = gi.grdr_meta(SPEC, mode="attached", fields=gen)
    assert gi.GrdrMeta.model_validate(meta).fields == gen
    assert "fields" not in gi.grdr_meta(SPEC, mode="attached")  # the default names go unrecorded


def test_meta_of_reads_the_record_and_old_catalogs_default_to_catalog_mode():
    assert gi.meta_of({"_meta": {"owner": "x"}}) is None
    old = gi.meta_of({"_meta": {"grdr": {"fingerprint": "f" * 64}}})
    assert old.mode == "catalog" and old.fields == gi.DEFAULT_FIELDS and not old.detached


def test_flat_fields_walks_objects_and_multi_fields_but_not_into_nested():
    props = {"title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
             "stats": {"properties": {"views": {"type": "long"}}},
             "chapters": {"type": "nested", "properties": {"t": {"type": "keyword"}}}}
    assert {k: v["type"] for k, v in gi.flat_fields(props).items()} == {
        "title": "text", "title.raw": "keyword", "stats.views": "long", "chapters": "nested"}


@pytest.mark.parametrize("bad", ["", "Videos", "a,b", "vid*", "-x", "_x", ".hidden", "a b", "x" * 256])
def test_user_index_names_are_checked_with_the_flag_named(bad):
    with pytest.raises(ValueError, match="--index"):
        gi.validate_user_index(bad)


# ---- attach ----

def test_attach_adds_grdrs_fields_and_merges_the_record_into_the_users_meta():
    plan = plan_attach(state(user_mappings()), SPEC, registry_key="videos")
    assert sorted(plan.add) == ["grdr_ids", "grdr_prefixes", "grdr_vec"]
    assert plan.add["grdr_vec"] == {"type": "knn_vector", "dimension": 256}
    assert plan.meta["owner"] == "video-team" and plan.meta["schema"] == 7  # the user's keys stay
    grdr = plan.meta["grdr"]
    assert (grdr["fingerprint"], grdr["mode"], grdr["registry_key"]) == (SPEC.fingerprint, "attached", "videos")


def test_attach_on_a_knn_enabled_index_names_the_lucene_engine():
    plan = plan_attach(state(user_mappings(), knn=True), SPEC, registry_key="videos")
    assert plan.add["grdr_vec"]["method"]["engine"] == "lucene"


def test_attaching_again_changes_nothing():
    plan = plan_attach(state(attached()), SPEC, registry_key="videos")
    assert not plan.changes and plan.add == {} and plan.meta is None


@pytest.mark.parametrize("field,definition,shown", [
    ("grdr_vec", {"type": "float"}, "as float"),
    ("grdr_vec", {"type": "knn_vector", "dimension": 512}, r"as knn_vector\[512\]; grdr needs knn_vector\[256\]"),
    ("grdr_ids", {"type": "text"}, "as text"),
    ("grdr_prefixes", {"properties": {"a": {"type": "keyword"}}}, "as object"),
])
def test_a_conflicting_field_is_refused_with_its_name_and_the_fix(field, definition, shown):
    m = attached()
    m["properties"][field] = definition
    with pytest.raises(AttachRefused, match=rf"'{field}' {shown}.*cannot change a field's type.*Rename"):
        plan_attach(state(m), SPEC, registry_key="videos")


def test_a_grdr_named_field_without_a_record_is_refused():
    m = user_mappings()
    m["properties"]["grdr_ids"] = {"type": "keyword"}
    with pytest.raises(AttachRefused, match="'grdr_ids' but no grdr record"):
        plan_attach(state(m), SPEC, registry_key="videos")


@pytest.mark.parametrize("source,named", [({"enabled": False}, "_source.enabled: false"),
                                          ({"excludes": ["clip_vec"]}, "_source.excludes: clip_vec"),
                                          ({"includes": ["title"]}, "_source.includes: title")])
def test_an_index_without_whole_documents_in_source_is_refused(source, named):
    with pytest.raises(AttachRefused, match=named):
        plan_attach(state(user_mappings(_source=source)), SPEC, registry_key="videos")


def test_another_models_attachment_is_refused_with_refit_and_detach_named():
    with pytest.raises(AttachRefused, match="attached to model abcdef012345.*--reindex.*grdr detach"):
        plan_attach(state(attached()), OTHER, registry_key="videos")


def test_a_grdr_catalog_is_not_attached_to():
    with pytest.raises(AttachRefused, match="grdr catalog index"):
        plan_attach(state(gi.index_body(SPEC)["mappings"]), SPEC, registry_key="videos")


def test_detach_marks_the_record_and_keeps_every_other_key():
    m = attached()
    meta = plan_detach("videos-2024", m)
    assert meta["owner"] == "video-team" and meta["grdr"]["detached"] is True
    assert meta["grdr"]["fingerprint"] == SPEC.fingerprint
    m["_meta"] = meta
    assert plan_detach("videos-2024", m) is None  # twice: nothing more to do
    assert plan_detach("plain", user_mappings()) is None


def test_after_detach_the_same_model_reuses_its_fields_and_another_gets_new_ones():
    m = attached()
    m["_meta"] = plan_detach("videos-2024", m)
    same = plan_attach(state(m), SPEC, registry_key="videos")
    assert same.add == {} and same.fields == gi.DEFAULT_FIELDS and not same.meta["grdr"].get("detached")
    other = plan_attach(state(m), OTHER, registry_key="videos")
    assert other.fields == gi.GrdrFields.generation(OTHER.fingerprint) and sorted(other.add) == sorted(
        other.fields.names())


# ---- refit ----

def refit(kind):
    alias = kind == "alias"
    return Refit(kind=kind, name="videos", source_index="videos-2024",
                 target_index=copy_name("videos-2024", OTHER.fingerprint) if alias else "videos-2024",
                 fields=gi.DEFAULT_FIELDS if alias else gi.GrdrFields.generation(OTHER.fingerprint),
                 old_fields=gi.DEFAULT_FIELDS, old_fingerprint=SPEC.fingerprint, old_key="videos", publish_as="x",
                 spec=OTHER, model_dir="/m")


def test_a_copy_is_named_from_the_original_index_once():
    first = copy_name("videos-2024", OTHER.fingerprint)
    assert first == "videos-2024-grdr-0123456789ab"
    assert copy_name(first, SPEC.fingerprint) == "videos-2024-grdr-abcdef012345"


def test_a_refit_says_what_it_will_do_before_it_does_it():
    alias = " ".join(describe(refit("alias")))
    assert "copy videos-2024" in alias and "move alias videos" in alias and "atomic" in alias
    index = " ".join(describe(refit("index")))
    assert "add new fields grdr_ids_0123456789ab" in index and "switch videos-2024's _meta.grdr" in index
    assert "cannot remove a field" in index


def test_a_copy_keeps_the_users_mapping_and_settings_without_the_old_model():
    copied = _copied_mappings(attached(), gi.DEFAULT_FIELDS)
    assert set(copied["properties"]) == {"title", "channel", "clip_vec"}
    assert copied["_meta"] == {"owner": "video-team", "schema": 7}
    settings = _copied_settings({"index.uuid": "u", "index.creation_date": "1", "index.number_of_shards": "2",
                                 "index.knn": "true", "index.version.created": "x", "index.provided_name": "p",
                                 "index.analysis.analyzer.a.type": "standard"})
    assert settings == {"index.number_of_shards": "2", "index.knn": "true",
                        "index.analysis.analyzer.a.type": "standard"}
    json.dumps(copied)  # the body is plain JSON
