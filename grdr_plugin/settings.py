"""The run-time settings every layer shares: OpenSearch, the Celery broker, the local cluster.

Precedence: CLI flags (applied by the caller with ``Settings(**overrides)``), then
``GRDR_*`` environment variables, then the defaults below. What only the ingest workers
read (batch sizes, retries, queue) is ``ingest.config.IngestSettings``.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional
from urllib.parse import urlsplit

from pydantic import AliasGenerator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from grdr_plugin.index import MAX_SHARDS
from grdr_plugin.model.config import DEFAULT_QUERY_ENCODER, QueryEncoder


def env_names(prefix: str) -> SettingsConfigDict:
    """Each field read from the variable PREFIX + its upper-cased name, which a validation error then names
    (e.g. GRDR_OPENSEARCH_TIMEOUT_S, not opensearch_timeout_s); callers still pass fields by name."""
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", populate_by_name=True,
                              alias_generator=AliasGenerator(validation_alias=lambda name: prefix + name.upper()))


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error must not echo a value that may hold a secret
    model_config = SettingsConfigDict(**env_names("GRDR_"), hide_input_in_errors=True)

    # OpenSearch connection
    opensearch_url: str = Field("http://127.0.0.1:9200",
                                description="OpenSearch endpoint (http or https); several nodes comma-separated, "
                                            "so that a request goes to another node when one is lost")
    opensearch_user: Optional[str] = Field(None, description="basic-auth user")
    opensearch_password: Optional[SecretStr] = Field(None, description="basic-auth password (never logged)")
    opensearch_ca_file: Optional[Path] = Field(None, description="CA bundle for TLS verification")
    verify_certs: bool = Field(True, description="verify TLS certificates (turning off prints a warning)")
    # opensearch-py's own default (10 s) is short for a bulk request or a trie-build aggregation page on a busy node
    opensearch_timeout_s: float = Field(30.0, gt=0, description="seconds an OpenSearch request may take")

    # Celery
    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker URL")
    result_backend: str = Field("redis://127.0.0.1:6379/1", description="Celery result backend URL")

    # HTTP API (`grdr serve`)
    api_key: Optional[SecretStr] = Field(
        None, description="key that writes (POST /videos) need as `Authorization: Bearer` or `X-API-Key`; "
                          "unset: no key is asked")
    api_key_for_reads: bool = Field(False, description="reads (search, jobs) need the key too")

    # Query serving (`grdr search`, `grdr serve`, `grdr eval`); docs/MODEL.md, "Query encoders"
    query_encoder: QueryEncoder = Field(DEFAULT_QUERY_ENCODER, description="the query encoder's graph: int8 "
                                        "(faster) or float (the one the model was trained with)")

    # New catalog indices (`grdr index create`, `grdr ingest`); flags --shards / --replicas override them.
    index_shards: int = Field(1, ge=1, le=MAX_SHARDS, description="primary shards of a new catalog index")
    index_replicas: Optional[int] = Field(
        None, ge=0, description="replicas of a new catalog index; unset: 1 with >= 2 data nodes, else 0")

    # Local cluster (`grdr cluster ...`)
    home: Path = Field(Path(".grdr"), description="project-local folder for the cluster's data, logs and cache")
    opensearch_version: str = Field("3.5.0", description="OpenSearch core version; k-NN is <version>.0")
    opensearch_port: int = Field(9200, ge=1, le=65535)
    opensearch_heap: str = Field("1g", description="JVM heap for each local node (-Xms/-Xmx)")
    opensearch_transport_port: int = Field(9300, ge=1, le=65535,
                                           description="first transport port of a multi-node local cluster (+i)")
    # a home's node count is fixed at its first start (its data belongs to that cluster); at most 9 because
    # every node shares this one machine's memory and cores
    cluster_nodes: int = Field(1, ge=1, le=9, description="nodes `grdr cluster start` runs unless --nodes says")
    cache_dir: Optional[Path] = Field(None, description="download cache, shareable between homes; unset: <home>/cache")
    redis_port: int = Field(6379, ge=1, le=65535)
    # everysec: a SIGKILLed Redis loses nothing it answered (the AOF is written before each reply); a machine crash
    # loses at most ~1 s of writes, which the ingest producer re-sends. always: fsync per write (measured in
    # docs/RELIABILITY.md)
    redis_appendfsync: Literal["everysec", "always", "no"] = Field(
        "everysec", description="fsync policy of the local Redis's append-only file (`grdr cluster start`)")
    java_home: Optional[Path] = Field(None, description="JDK to run OpenSearch; found in /usr/lib/jvm if unset")

    @field_validator("opensearch_ca_file", mode="before")
    @classmethod
    def _empty_ca_file_is_unset(cls, v: object) -> object:
        return None if v == "" else v  # `GRDR_OPENSEARCH_CA_FILE=` unsets it, as it would a shell default

    @field_validator("opensearch_url")
    @classmethod
    def _urls_have_scheme(cls, v: str) -> str:
        entries = v.split(",")
        urls = [_checked_url(u.strip(), i, len(entries)) for i, u in enumerate(entries, 1)]
        if len({u.split("://", 1)[0] for u in urls}) > 1:  # one CA file and one verify flag serve every node
            raise ValueError(f"the list mixes http:// and https:// ({', '.join(urls)}); "
                             "every node of one cluster is reached the same way")
        twice = sorted({u for u in urls if urls.count(u) > 1})
        if twice:
            raise ValueError(f"the list names {', '.join(twice)} more than once; name each node once")
        return ",".join(urls)

    @property
    def opensearch_urls(self) -> list[str]:
        """Every node GRDR_OPENSEARCH_URL names: the client spreads requests over them and, when one is
        lost, sends the request to the next."""
        return self.opensearch_url.split(",")

    def knn_version(self) -> str:
        return f"{self.opensearch_version}.0"

    def opensearch_client(self):
        """An opensearch-py client built from these settings."""
        from opensearchpy import OpenSearch

        if self.opensearch_url.startswith("https://") and not self.verify_certs:
            warnings.warn("GRDR_VERIFY_CERTS is off: TLS certificates of OpenSearch are not checked", stacklevel=2)
        auth = None
        if self.opensearch_user:
            pw = self.opensearch_password.get_secret_value() if self.opensearch_password else ""
            auth = (self.opensearch_user, pw)
        kwargs = dict(
            hosts=self.opensearch_urls,
            http_auth=auth,
            verify_certs=self.verify_certs,
            ssl_show_warn=self.verify_certs,
            timeout=self.opensearch_timeout_s,
            http_compress=False,
        )
        if self.opensearch_ca_file:
            kwargs["ca_certs"] = str(self.opensearch_ca_file)
        return OpenSearch(**kwargs)


def _checked_url(url: str, position: int, count: int) -> str:
    """One node's URL of GRDR_OPENSEARCH_URL, without a trailing slash; a ValueError names the fix and, in a list,
    the entry (by position: the value is not echoed before it is known to hold no credentials)."""
    which = f"entry {position} of {count}" if count > 1 else "the URL"
    if not url:
        raise ValueError(f"{which} is empty; give node URLs separated by single commas, e.g. "
                         "http://10.0.0.1:9200,http://10.0.0.2:9200")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{which} must start with http:// or https://, e.g. http://127.0.0.1:9200")
    if "@" in urlsplit(url).netloc:
        # a URL is printed in messages and logs; a password inside it would be too
        raise ValueError(f"{which} must not hold credentials (user:password@); "
                         "set GRDR_OPENSEARCH_USER and GRDR_OPENSEARCH_PASSWORD instead")
    return url.rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
