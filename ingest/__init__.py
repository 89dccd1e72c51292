"""Ingest: Celery workers that turn new videos into semantic IDs and vectors in OpenSearch.

`celery -A ingest worker` finds `app` here. See docs/INGEST.md.
"""
from ingest.celery_app import app

__all__ = ["app"]
