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
    from opensearchpy.exceptions import AuthenticationException, AuthorizationException, SSLError, TransportError
    from opensearchpy.exceptions import ConnectionError as OSConnectionError
    from pydantic import ValidationError

    try:
        yield
    except ValidationError as exc:  # a config model's errors, one per field, without pydantic's dump of the input
        console.print("[red]error:[/red] " + "; ".join(
            f"{'.'.join(map(str, e['loc'])) + ': ' if e['loc'] else ''}{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()))
        raise typer.Exit(1) from None
    except (ValueError, LookupError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except SSLError:  # before ConnectionError, its base class
        console.print("[red]error:[/red] the TLS certificate of OpenSearch at GRDR_OPENSEARCH_URL could not be "
                      "verified; set GRDR_OPENSEARCH_CA_FILE to the CA that signed it (GRDR_VERIFY_CERTS=false skips "
                      "the check: for a test node only)")
        raise typer.Exit(1) from None
    except AuthenticationException:  # the answer never echoes the password, and neither do we
        console.print("[red]error:[/red] OpenSearch refused the credentials (401); "
                      "check GRDR_OPENSEARCH_USER and GRDR_OPENSEARCH_PASSWORD")
        raise typer.Exit(1) from None
    except AuthorizationException as exc:
        console.print(f"[red]error:[/red] OpenSearch denied this user the action (403): {exc.error}; "
                      "map it to the grdr role for the job (docs/opensearch-roles.yml)")
        raise typer.Exit(1) from None
    except OSConnectionError:
        console.print("[red]error:[/red] cannot reach OpenSearch at GRDR_OPENSEARCH_URL; "
                      "start the local one with `grdr cluster start`")
        raise typer.Exit(1) from None
    except TransportError as exc:
        console.print(f"[red]error:[/red] OpenSearch answered {exc.status_code}: {exc.error}")
        raise typer.Exit(1) from None
