"""Shared CLI plumbing: clear one-line errors instead of stack traces, JSON on the last line."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import typer
from rich.console import Console

console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """`--json`: one JSON object on the last line of stdout."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into one red line and exit code 1."""
    from opensearchpy.exceptions import ConnectionError as OSConnectionError, TransportError

    try:
        yield
    except (ValueError, LookupError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1)
    except OSConnectionError:
        console.print("[red]error:[/red] cannot reach OpenSearch at GRDR_OPENSEARCH_URL; "
                      "start the local one with `grdr cluster start`")
        raise typer.Exit(1)
    except TransportError as exc:
        console.print(f"[red]error:[/red] OpenSearch answered {exc.status_code}: {exc.error}")
        raise typer.Exit(1)
