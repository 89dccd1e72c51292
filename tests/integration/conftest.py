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


@pytest.fixture
def ingest_alias(client, alias):
    """The conftest alias; afterwards its (and its versioned indices') rows in the registry and errors index go too."""
    from grdr_plugin.id_registry import REGISTRY_INDEX
    from ingest.config import get_ingest_settings

    yield alias
    for index in (REGISTRY_INDEX, get_ingest_settings().errors_index):
        client.indices.refresh(index=index, ignore=[404])  # delete_by_query sees only refreshed documents
        client.delete_by_query(index=index, body={"query": {"prefix": {"alias": alias}}}, ignore=[404], refresh=True)
    client.indices.delete(index=f"{alias}-v*", ignore=[404])


@pytest.fixture(scope="module")
def queue(settings, tmp_path_factory):
    """A real `celery -A ingest worker` subprocess on a private queue, one per test module."""
    import redis

    from ingest.worker_process import celery_worker

    try:
        redis.Redis.from_url(settings.broker_url, socket_timeout=3).ping()
    except Exception as exc:  # a missing broker is a failure here, not a skip: CI starts it
        pytest.fail(f"Redis is not reachable at {settings.broker_url} ({exc!r}); run `grdr cluster start`")
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with celery_worker(log_path=log) as q:
        yield q
