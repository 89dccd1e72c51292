import warnings

import pytest
from pydantic import ValidationError

from grdr_plugin.settings import Settings
from ingest.config import IngestSettings


def test_defaults_are_local_and_verify_tls(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("GRDR_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert s.opensearch_url == "http://127.0.0.1:9200"
    assert s.verify_certs is True
    assert s.broker_url.startswith("redis://127.0.0.1")


def test_environment_overrides_defaults_and_flags_override_environment(monkeypatch):
    monkeypatch.setenv("GRDR_OPENSEARCH_URL", "https://search.example:9200/")
    monkeypatch.setenv("GRDR_BULK_CHUNK_SIZE", "250")
    s = Settings()
    assert s.opensearch_url == "https://search.example:9200"
    assert IngestSettings().bulk_chunk_size == 250
    assert IngestSettings(bulk_chunk_size=10).bulk_chunk_size == 10


def test_ingest_batch_sizes_keep_their_documented_variables(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("GRDR_"):
            monkeypatch.delenv(key)
    defaults = IngestSettings()
    assert (defaults.batch_size, defaults.bulk_chunk_size, defaults.video_batch_size) == (5000, 2500, 16)
    monkeypatch.setenv("GRDR_INGEST_BATCH_SIZE", "700")
    monkeypatch.setenv("GRDR_INGEST_VIDEO_BATCH_SIZE", "4")
    s = IngestSettings()
    assert (s.batch_size, s.video_batch_size) == (700, 4)
    assert IngestSettings(batch_size=3).batch_size == 3


def test_a_bad_ingest_size_names_the_variable(monkeypatch):
    monkeypatch.setenv("GRDR_BULK_CHUNK_SIZE", "0")
    with pytest.raises(ValidationError, match="GRDR_BULK_CHUNK_SIZE"):
        IngestSettings()
    monkeypatch.delenv("GRDR_BULK_CHUNK_SIZE")
    monkeypatch.setenv("GRDR_INGEST_BATCH_SIZE", "many")
    with pytest.raises(ValidationError, match="GRDR_INGEST_BATCH_SIZE"):
        IngestSettings()


def test_the_bulk_retry_policy_comes_from_the_settings():
    from ingest.indexer import RetryPolicy

    s = IngestSettings(bulk_max_retries=2, bulk_initial_backoff_s=0.1, bulk_max_backoff_s=1.0)
    p = RetryPolicy.from_settings(s)
    assert (p.max_retries, p.initial_s, p.max_s) == (2, 0.1, 1.0)


def test_a_bad_value_from_the_environment_names_its_variable(monkeypatch):
    monkeypatch.setenv("GRDR_OPENSEARCH_TIMEOUT_S", "-1")
    with pytest.raises(ValidationError, match="GRDR_OPENSEARCH_TIMEOUT_S"):
        Settings()


def test_bad_url_names_the_variable(monkeypatch):
    monkeypatch.setenv("GRDR_OPENSEARCH_URL", "search.example:9200")
    with pytest.raises(ValidationError, match="GRDR_OPENSEARCH_URL"):
        Settings()


def test_password_is_never_shown(monkeypatch):
    monkeypatch.setenv("GRDR_OPENSEARCH_PASSWORD", "s3cret-pw")
    s = Settings()
    assert "s3cret-pw" not in repr(s) and "s3cret-pw" not in str(s.model_dump())
    assert s.opensearch_password.get_secret_value() == "s3cret-pw"


def test_turning_verification_off_warns_for_tls():
    s = Settings(opensearch_url="https://127.0.0.1:9200", verify_certs=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s.opensearch_client()
    assert any("GRDR_VERIFY_CERTS" in str(w.message) for w in caught)
