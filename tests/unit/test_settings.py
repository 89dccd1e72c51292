import warnings

import pytest
from pydantic import ValidationError

from grdr_plugin.settings import Settings


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
    assert s.bulk_chunk_size == 250
    assert Settings(bulk_chunk_size=10).bulk_chunk_size == 10


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
