"""The `grdr` command line.

Each area owns its commands in its own module; this file only wires them together.
Commands that need Celery or the query layer (ingest, search, serve, bench) import
them lazily inside the command so `grdr train` and `grdr cluster` never load them.
"""
from __future__ import annotations

import typer

from cli.cluster_commands import app as cluster_app
from cli.index_commands import app as index_app

app = typer.Typer(help="grdr: generative recall with dense reranking for text-to-video search on OpenSearch",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(cluster_app, name="cluster")
app.add_typer(index_app, name="index")

from cli.bench_commands import register as register_bench_commands  # noqa: E402
from cli.ingest_commands import register as register_ingest_commands  # noqa: E402
from cli.loadtest_commands import register as register_loadtest_commands  # noqa: E402
from cli.model_commands import register as register_model_commands  # noqa: E402
from cli.query_commands import register as register_query_commands  # noqa: E402

register_model_commands(app)
register_ingest_commands(app)
register_query_commands(app)
register_loadtest_commands(app)
register_bench_commands(app)


if __name__ == "__main__":
    app()
