"""bench.shards' pure parts: the --grdr settings it parses and which kept indices --reuse may measure."""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from bench.shards import _settings, holds, leaves_indices


def stub_client(counts: dict[str, int]):
    return SimpleNamespace(indices=SimpleNamespace(exists=lambda index: index in counts),
                           count=lambda index: {"count": counts[index]})


def test_reuse_measures_only_an_index_holding_the_catalogs_videos():
    client = stub_client({"bench-shards-msrvtt-1000000-1": 1_000_000, "half": 500_000})
    assert holds(client, "bench-shards-msrvtt-1000000-1", 1_000_000)
    assert not holds(client, "half", 1_000_000)  # an interrupted ingest: built again
    assert not holds(client, "missing", 1_000_000)


def test_a_run_leaves_the_indices_it_was_asked_to_keep_or_reused():
    assert leaves_indices(True, {"videos": 10})
    assert leaves_indices(False, {"videos": 10, "reused": True})  # a later --reuse run wants them again
    assert not leaves_indices(False, {"videos": 10})  # built for this run alone


def test_grdr_settings_name_beam_budget_and_level():
    assert _settings("300,300:19141,1000:-:2,-") == [(300, None, None), (300, 19141, None), (1000, None, 2),
                                                      (None, None, None)]
    with pytest.raises(argparse.ArgumentTypeError, match="beam\\[:budget\\[:level\\]\\]"):
        _settings("300:1:2:3")
