"""A benchmark module's command line and answer: comma-separated number flags in; a Markdown table for people,
then (`--json`) one JSON object on the last line, out."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable


def int_list(text: str) -> list[int]:
    """An argparse type: "1000,10000" -> [1000, 10000]."""
    return _number_list(text, int, "integers, e.g. 1000,10000")


def float_list(text: str) -> list[float]:
    """An argparse type: "0,0.5" -> [0.0, 0.5]."""
    return _number_list(text, float, "numbers, e.g. 0,0.5,1")


def _number_list(text: str, kind: Callable[[str], Any], example: str) -> list:
    try:
        return [kind(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated {example}") from None


def add_kept_catalog_flags(ap: argparse.ArgumentParser, *, queries: int, dataset_help: str) -> None:
    """The flags of a bench over the catalog and HNSW baseline `bench.shards --keep` leaves: the model, the dataset
    whose test queries it runs, both indices, and how many queries."""
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--dataset", type=Path, required=True, help=dataset_help)
    ap.add_argument("--index", required=True, help="the grdr catalog (one shard)")
    ap.add_argument("--hnsw-index", required=True, help="the HNSW baseline's index (bench.suite.build_hnsw)")
    ap.add_argument("--queries", type=int, default=queries)


def add_json_flag(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", action="store_true", help="one JSON object on the last line")


def emit(result: dict[str, Any], table: str, as_json: bool) -> int:
    """Print the table (and the result as JSON); the exit code of a finished run."""
    print(table)
    if as_json:
        print(json.dumps(result))
    return 0
