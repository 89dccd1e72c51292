"""Tiny loopback HTTP client (stdlib only), so `grdr cluster` works before opensearch-py is even set up."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Optional

LOOPBACK_TIMEOUT_S = 5.0  # a local node that takes longer to answer counts as not answering (yet)


def get_json(url: str, timeout: float = LOOPBACK_TIMEOUT_S) -> Optional[Any]:
    """The decoded JSON body of a 2xx answer; None when nothing answers or the answer is not OK/JSON."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"}),
                                    timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except (urllib.error.URLError, OSError, ValueError):
        return None
