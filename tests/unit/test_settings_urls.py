"""GRDR_OPENSEARCH_URL naming several nodes: parsed into the client's hosts, refused with the entry and the fix
when malformed, and never echoing a credential."""
import pytest
from pydantic import ValidationError

from grdr_plugin.cluster.remote import is_local, tls_check
from grdr_plugin.settings import Settings

THREE = "http://127.0.0.1:9270, http://127.0.0.1:9271/,http://127.0.0.1:9272"


def test_a_comma_separated_list_is_every_node_of_the_client(monkeypatch):
    monkeypatch.setenv("GRDR_OPENSEARCH_URL", THREE)
    s = Settings()
    assert s.opensearch_urls == [f"http://127.0.0.1:{p}" for p in (9270, 9271, 9272)]
    assert s.opensearch_url == ",".join(s.opensearch_urls)
    hosts = s.opensearch_client().transport.hosts
    assert [(h["host"], h["port"]) for h in hosts] == [("127.0.0.1", p) for p in (9270, 9271, 9272)]


def test_one_url_stays_one_node():
    assert Settings(opensearch_url="https://search.example:9200/").opensearch_urls == ["https://search.example:9200"]


@pytest.mark.parametrize("value,message", [
    ("http://a:9200,,http://b:9200", "entry 2 of 3 is empty; give node URLs separated by single commas"),
    ("http://a:9200,", "entry 2 of 2 is empty"),
    ("", "the URL is empty"),
    ("http://a:9200,b:9200", "entry 2 of 2 must start with http:// or https://"),
    ("https://a:9200,http://b:9200", "the list mixes http:// and https://"),
    ("http://a:9200,http://a:9200/", "the list names http://a:9200 more than once"),
])
def test_a_bad_list_names_the_entry_and_the_fix(monkeypatch, value, message):
    monkeypatch.setenv("GRDR_OPENSEARCH_URL", value)
    with pytest.raises(ValidationError, match=f"GRDR_OPENSEARCH_URL\n.*{message}"):
        Settings()


@pytest.mark.parametrize("value", ["http://a:9200,http://grdr:s3cret-pw@b:9200", "grdr:s3cret-pw@b:9200"])
def test_a_credential_in_any_entry_is_refused_without_being_shown(monkeypatch, value):
    monkeypatch.setenv("GRDR_OPENSEARCH_URL", value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "s3cret-pw" not in str(caught.value) and "GRDR_OPENSEARCH_URL" in str(caught.value)


def test_doctor_reads_a_list_as_the_local_cluster_and_loopback():
    s = Settings(opensearch_url="http://127.0.0.1:9200,http://127.0.0.1:9201", opensearch_port=9200)
    assert is_local(s) and tls_check(s).status == "ok"
    assert tls_check(Settings(opensearch_url="http://127.0.0.1:9200,http://search.example:9200")).status == "warn"
