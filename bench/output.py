"""How a benchmark module answers: a Markdown table for people, then (`--json`) one JSON object on the last line."""
from __future__ import annotations

import argparse
import json
from typing import Any


def add_json_flag(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", action="store_true", help="one JSON object on the last line")


def emit(result: dict[str, Any], table: str, as_json: bool) -> int:
    """Print the table (and the result as JSON); the exit code of a finished run."""
    print(table)
    if as_json:
        print(json.dumps(result))
    return 0
