"""What only the HTTP API (`grdr serve`) reads: CORS and the request log.

``GRDR_*`` environment variables, then the defaults below. The API key is in
``grdr_plugin.settings.Settings`` (`GRDR_API_KEY`): ingest's routes read it too.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

from grdr_plugin.settings import env_names

# An origin as a browser sends it in the Origin header: scheme://host[:port], nothing after.
_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")


class HttpSettings(BaseSettings):
    model_config = env_names("GRDR_")

    # NoDecode: the variable is a plain comma-separated list, not JSON
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins whose web pages may call the API (GRDR_CORS_ORIGINS: "
                                          "comma-separated, or *); none: only pages the server itself serves")
    access_log: Literal["json", "off"] = Field(
        "json", description="one JSON line per request on stderr (GRDR_ACCESS_LOG); errors are logged either way")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return [o.strip() for o in v.split(",") if o.strip()] if isinstance(v, str) else v

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(f"GRDR_CORS_ORIGINS: {origin!r} is not an origin; give scheme://host[:port] "
                                 "(no path, no trailing slash), comma-separated, or *")
        return v


@lru_cache(maxsize=1)
def get_http_settings() -> HttpSettings:
    return HttpSettings()
