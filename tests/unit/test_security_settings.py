"""Credentials never leave Settings: not in its text forms, not in a validation error, not inside the URL."""
import pytest
from pydantic import ValidationError

from grdr_plugin.settings import Settings

PASSWORD = "pw-7f3a9c1e-never-print"


def test_no_text_form_of_settings_holds_the_password():
    s = Settings(opensearch_user="grdr-query", opensearch_password=PASSWORD)
    forms = [repr(s), str(s), s.model_dump_json(), str(s.model_dump()), str(s.model_dump(mode="json"))]
    assert all(PASSWORD not in f for f in forms)
    assert all("**********" in f for f in forms)  # still visible that a password is set


@pytest.mark.parametrize("via_env", [False, True], ids=["argument", "GRDR_OPENSEARCH_URL"])
def test_a_url_with_credentials_is_refused_without_echoing_them(monkeypatch, via_env):
    url = f"https://grdr-query:{PASSWORD}@search.example:9200"
    with pytest.raises(ValidationError) as err:
        if via_env:
            monkeypatch.setenv("GRDR_OPENSEARCH_URL", url)
            Settings()
        else:
            Settings(opensearch_url=url)
    assert "set GRDR_OPENSEARCH_USER and GRDR_OPENSEARCH_PASSWORD instead" in str(err.value)
    assert PASSWORD not in str(err.value) and PASSWORD not in repr(err.value)


def test_a_bad_value_elsewhere_does_not_echo_the_password_either():
    with pytest.raises(ValidationError) as err:
        Settings(opensearch_password=PASSWORD, opensearch_timeout_s=-1)
    assert "opensearch_timeout_s" in str(err.value) and PASSWORD not in str(err.value)
