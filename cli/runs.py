"""What `grdr ingest --wait` and `grdr backfill --wait` share: the progress bar while the batches run, then
the summary (or its --json), exit code 3 when a record failed or the alias was not switched."""
from __future__ import annotations

import sys
from typing import Any

import typer

from cli.console import EXIT_PARTIAL, out, print_json
from grdr_plugin.metrics import per_second

SHOWN_ERRORS = 20  # failures listed in the terminal; --json has up to GRDR_INGEST_MAX_ERRORS_REPORTED, the index all


def wait_with_progress(sub, *, total: int, unit: str, desc: str) -> tuple[Any, dict[str, Any]]:
    """(Summary, extra) of the queued batches, with a progress bar on stderr."""
    from tqdm import tqdm

    from ingest.submit import wait

    with tqdm(total=total, unit=unit, desc=desc, file=sys.stderr) as bar:
        return wait(sub, on_progress=bar.update)


def report(summary, extra: dict[str, Any], seconds: float, *, as_json: bool, done: str, errors_index: str,
           not_switched: str) -> None:
    """Print the run's summary (`done` is its first line) and exit 3 when any record failed or the switch failed."""
    result = {**summary.public(), **extra, "seconds": round(seconds, 3),
              "videos_per_s": per_second(summary.done, seconds) if seconds > 0 else None}
    if as_json:
        print_json(result)
    else:
        out.print(done)
        for err in summary.errors[:SHOWN_ERRORS]:
            out.print(f"  {err.video_id}: {err.reason}")
        if summary.failed > SHOWN_ERRORS:
            out.print(f"  ... {summary.failed - SHOWN_ERRORS} more; every failure is in the errors index "
                      f"{errors_index} (GRDR_INGEST_ERRORS_INDEX)")
        if extra.get("swapped") is False:
            out.print(f"{not_switched}: {extra.get('swap_error')}")
    if summary.failed or extra.get("swapped") is False:
        raise typer.Exit(EXIT_PARTIAL)


