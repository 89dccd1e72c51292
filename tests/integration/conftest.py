"""Integration tests talk to the real node and Redis started by `grdr cluster start` (see .ci/run)."""
import uuid

import pytest

from grdr_plugin.settings import Settings


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def client(settings):
    c = settings.opensearch_client()
    try:
        c.info()
    except Exception as exc:  # a missing node is a failure here, not a skip: CI starts it
        pytest.fail(f"OpenSearch is not reachable at {settings.opensearch_url} ({exc!r}); run `grdr cluster start`")
    return c


@pytest.fixture
def alias(client):
    """A fresh alias name; every versioned index behind it is dropped afterwards."""
    from grdr_plugin.index import drop_index

    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    drop_index(client, name)
