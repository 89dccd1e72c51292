"""The API key (GRDR_API_KEY): one dependency that query.api puts on every API route of every router.

With a key set, every write (POST, PUT, PATCH, DELETE, except the POST routes that only read, such
as POST /search) needs `Authorization: Bearer <key>` or `X-API-Key: <key>`; reads need it too when
GRDR_API_KEY_FOR_READS is true. Wrong or missing: 401 in the one error shape. The key is compared
in constant time and never appears in a response or a log line.
"""
from __future__ import annotations

import hmac
from typing import Callable, Collection, Optional

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.exceptions import HTTPException

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOW = "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"

# auto_error=False: either header may carry the key, so neither alone may refuse; the guard decides.
_bearer = HTTPBearer(auto_error=False, description="the API key (GRDR_API_KEY)")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key (GRDR_API_KEY)")


def api_key_guard(key: Optional[SecretStr], *, for_reads: bool,
                  read_posts: Collection[str]) -> Optional[Callable[..., None]]:
    """The dependency, or None when no key is set (then nothing is asked, and OpenAPI shows no scheme)."""
    if key is None:
        return None
    expected = key.get_secret_value().encode()

    def guard(request: Request, bearer: Optional[HTTPAuthorizationCredentials] = Depends(_bearer),
              header: Optional[str] = Depends(_header)) -> None:
        route = getattr(request.scope.get("route"), "path", "")
        writes = request.method in WRITE_METHODS and not (request.method == "POST" and route in read_posts)
        if not writes and not for_reads:
            return
        given = bearer.credentials if bearer is not None else header
        if not given:
            raise HTTPException(401, f"Authorization: this request needs the API key; {HOW}",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode(), expected):
            raise HTTPException(401, f"Authorization: the API key is not the server's; {HOW}",
                                headers={"WWW-Authenticate": "Bearer"})

    return guard
