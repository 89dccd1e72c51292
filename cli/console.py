"""Shared CLI plumbing: where output goes, exit codes, one-line errors instead of stack traces.

Results (tables, summaries, `--json`) go to stdout, so `> file` and `| grep` get them; progress, logs,
warnings and errors go to stderr.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import typer
from rich.console import Console
from rich.markup import escape

# A pipe or a file has no width of its own: lay results out wide enough that `| grep` sees whole values (rich
# would wrap them at 80 columns); a terminal keeps its width.
PIPE_WIDTH = 250
out = Console(highlight=False, markup=False,  # results: stdout, printed as they are (titles hold brackets)
              width=None if sys.stdout.isatty() else PIPE_WIDTH)
console = Console(stderr=True, soft_wrap=True)  # progress, logs, warnings, errors: stderr, lines unwrapped

EXIT_OK = 0
EXIT_ERROR = 1  # nothing done, or exactly what was left behind is printed (e.g. batches still queued)
EXIT_USAGE = 2  # a flag is missing or out of range (typer's own code)
EXIT_PARTIAL = 3  # done, summary printed, but some records failed (or the alias was not swapped)
EXIT_CODES_HELP = (f"Exit codes: {EXIT_OK} done; {EXIT_ERROR} error, the message says what and how to fix it "
                   f"(nothing done, or it says exactly what was left queued); {EXIT_USAGE} bad flags; "
                   f"{EXIT_PARTIAL} done with failed records (the summary says which).")


def print_json(obj: Any) -> None:
    """`--json`: one JSON object on the last line of stdout."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print one red line on stderr; -> the Exit to raise."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into one red line naming the setting or flag, and exit code 1."""
    from kombu.exceptions import OperationalError
    from opensearchpy.exceptions import OpenSearchException
    from pydantic import ValidationError

    try:
        yield
    except ValidationError as exc:  # a config model's errors, one per field, without pydantic's dump of the input
        raise fail("; ".join(
            f"{'.'.join(map(str, e['loc'])) + ': ' if e['loc'] else ''}{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors())) from None
    except (ValueError, LookupError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    except OpenSearchException as exc:  # unreachable, TLS, 401, 403, or an answer OpenSearch refused
        from grdr_plugin.cluster.remote import connection_problem
        from grdr_plugin.settings import get_settings

        problem, fix = connection_problem(exc, get_settings())
        raise fail(f"{problem}; {fix}" if fix else problem) from None
    except OperationalError as exc:  # the Celery broker
        from ingest.submit import broker_location

        raise fail(f"cannot reach the Celery broker at {broker_location()} (GRDR_BROKER_URL): {exc}; "
                   "start the local one with `grdr cluster start`") from None


# --max-pool's help, the same on every command that searches (grdr_plugin.pool owns the rule and the default)
MAX_POOL_HELP = "recall budget: videos (counted per ID) a query reranks; default: a share of the catalog"
RECALL_LEVEL_HELP = ("recall the pool at prefixes of this many codes, up to whole IDs (default: the model's for "
                     "the catalog's size, config.json serving)")
