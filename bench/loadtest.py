"""`grdr loadtest`: N concurrent HTTP clients against `grdr serve` for a fixed time.

Each client holds its own keep-alive connection and sends POST /search back to back, cycling
through the query texts. Reports requests, errors by kind, throughput, latency percentiles, and the
server process's RSS sampled every second with a linear fit after a warm-up: the query process's
memory is "flat" when the fitted growth over the measured window stays below
max(FLAT_MIN_MB, FLAT_FRACTION x the RSS at the end of the warm-up).
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Optional

import httpx
import numpy as np
import psutil
from pydantic import BaseModel, Field, ValidationError, model_validator

from bench import defaults
from grdr_plugin.data import load_dataset
from grdr_plugin.metrics import TAIL_PERCENTILES, latency_summary, per_second
from query.api import MAX_API_K
from query.searcher import SearchResult

# "Flat" memory: fitted growth under max(10 MB, 5 % of the warmed-up RSS). Allocator arenas and caches
# move a steady Python process by a few MB; a leak of a few KB per request passes 10 MB within a minute
# at hundreds of requests per second.
FLAT_MIN_MB = 10.0
FLAT_FRACTION = 0.05
SAMPLE_EVERY_S = 1.0  # RSS sampling period: cheap (one /proc read), and enough points for the fit in a minute
MIN_FIT_SAMPLES = 3  # the fewest points a slope is fitted to after the warm-up
EXAMPLE_CHARS = 300  # an error example stays one readable line of the report, not a whole error page
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MB = 2**20


class LoadConfig(BaseModel):
    url: str = Field(defaults.LOAD_URL, description="base URL of `grdr serve`")
    texts: list[str] = Field(..., min_length=1, description="query texts, cycled")
    # 256: one event loop drives every client; past a few hundred it, not the server, sets the pace
    clients: int = Field(defaults.LOAD_CLIENTS, ge=1, le=256)
    duration_s: float = Field(defaults.LOAD_DURATION_S, gt=0)
    warmup_s: float = Field(defaults.LOAD_WARMUP_S, ge=0,
                            description="left out of the memory fit (sessions, arenas, caches)")
    k: int = Field(defaults.LOAD_K, ge=1, le=MAX_API_K)
    timeout_s: float = Field(30.0, gt=0, description="per request; a slower answer counts as an error")
    server_pid: Optional[int] = Field(None, description="the serving process; default: the pid /health reports")

    @model_validator(mode="after")
    def _room_for_the_fit(self) -> "LoadConfig":
        if self.duration_s < self.warmup_s + MIN_FIT_SAMPLES * SAMPLE_EVERY_S:
            raise ValueError(f"--duration: must be at least --warmup + {MIN_FIT_SAMPLES:g} s "
                             f"(got {self.duration_s:g} and {self.warmup_s:g}) to fit the memory slope")
        return self


class MemoryReport(BaseModel):
    pid: int
    samples: int
    before_mb: float = Field(description="RSS before the first request")
    start_mb: float = Field(description="RSS at the end of the warm-up (the baseline)")
    end_mb: float
    max_mb: float
    slope_mb_per_min: float = Field(description="linear fit over the samples after the warm-up")
    growth_mb: float = Field(description="fitted growth over the measured window")
    bound_mb: float
    flat: bool


class LoadReport(BaseModel):
    url: str
    clients: int
    duration_s: float
    requests: int
    ok: int
    errors: dict[str, int] = Field(description="failed requests by HTTP status, exception or invalid body")
    error_examples: dict[str, str] = Field(description="the first message seen for each kind of error")
    started_at: float = Field(description="Unix time the load began")
    error_window_s: Optional[tuple[float, float]] = Field(
        description="when the first and the last failed request were sent, s after the load began; null: none")
    throughput_rps: float = Field(description="valid answers per second of wall time")
    latency_ms: dict[str, float]
    memory: Optional[MemoryReport] = Field(description="null when the server is not a local process")

    @property
    def passed(self) -> bool:
        return self.requests > 0 and not self.errors and (self.memory is None or self.memory.flat)


def read_texts(queries: Optional[Path], dataset: Optional[Path]) -> list[str]:
    """--queries FILE (one query a line) or --dataset DIR (its test queries' text)."""
    if (queries is None) == (dataset is None):
        raise ValueError("give exactly one of --queries FILE (one query a line) or --dataset DIR")
    if dataset is not None:
        ds = load_dataset(dataset)
        texts = [ds.query_text[r] for r in ds.test_queries()]
        source = f"--dataset {dataset}: no test queries in queries.jsonl"
    else:
        texts = [line.strip() for line in Path(queries).read_text(encoding="utf-8").splitlines() if line.strip()]
        source = f"--queries {queries}: no non-blank lines"
    if not texts:
        raise ValueError(source)
    return texts


def invalid_reason(result: SearchResult, k: int) -> Optional[str]:
    """Why an answer that parsed is still wrong, or None."""
    if not 1 <= len(result.hits) <= k:
        return f"{len(result.hits)} hits for k={k}"
    scores = [h.score for h in result.hits]
    if scores != sorted(scores, reverse=True):
        return "hits not sorted by score"
    if len({h.video_id for h in result.hits}) != len(result.hits):
        return "duplicate video_id in hits"
    return None


def memory_report(pid: int, samples: list[tuple[float, int]], warmup_s: float) -> MemoryReport:
    """samples: (seconds since the start, RSS bytes), the first one taken before any request."""
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples], dtype=np.float64) / MB
    after = t >= warmup_s
    if after.sum() < MIN_FIT_SAMPLES:
        raise ValueError(f"only {int(after.sum())} RSS samples after the warm-up; lengthen --duration")
    slope_per_s = float(np.polyfit(t[after], mb[after], 1)[0])
    start = float(mb[after][0])
    growth = slope_per_s * float(t[after][-1] - t[after][0])
    bound = max(FLAT_MIN_MB, FLAT_FRACTION * start)
    return MemoryReport(pid=pid, samples=len(samples), before_mb=round(float(mb[0]), 1), start_mb=round(start, 1),
                        end_mb=round(float(mb[-1]), 1), max_mb=round(float(mb.max()), 1),
                        slope_mb_per_min=round(slope_per_s * 60, 2), growth_mb=round(growth, 2),
                        bound_mb=round(bound, 1), flat=abs(growth) < bound)


class _Tally:
    """What the clients saw; one event loop, so no locking."""

    def __init__(self) -> None:
        self.t0, self.started_at = time.perf_counter(), time.time()  # when the load began, by both clocks
        self.latencies_ms: list[float] = []
        self.errors: dict[str, int] = {}
        self.examples: dict[str, str] = {}
        self.failed_sent_s: list[float] = []  # when each failed request was sent, s after t0

    def error(self, kind: str, detail: str, sent: float) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.examples.setdefault(kind, detail[:EXAMPLE_CHARS])
        self.failed_sent_s.append(sent - self.t0)

    def error_window_s(self) -> Optional[tuple[float, float]]:
        sent = self.failed_sent_s
        return (round(min(sent), 3), round(max(sent), 3)) if sent else None


async def _one(http: httpx.AsyncClient, text: str, k: int, tally: _Tally) -> None:
    t0 = time.perf_counter()
    try:
        resp = await http.post("/search", json={"text": text, "k": k})
    except httpx.HTTPError as exc:
        tally.error(type(exc).__name__, f"{exc!r} for {text!r}", t0)
        return
    ms = (time.perf_counter() - t0) * 1e3
    if resp.status_code != 200:
        tally.error(f"status {resp.status_code}", f"{resp.text} for {text!r}", t0)
        return
    try:
        reason = invalid_reason(SearchResult.model_validate_json(resp.content), k)
    except ValidationError as exc:
        reason = f"not a SearchResult: {exc.errors()[0]['msg']}"
    if reason:
        tally.error("invalid answer", f"{reason} for {text!r}", t0)
        return
    tally.latencies_ms.append(ms)


async def _client(cfg: LoadConfig, first: int, deadline: float, tally: _Tally) -> None:
    # max_connections=1: one real keep-alive connection per simulated client.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=cfg.url, timeout=cfg.timeout_s, limits=limits) as http:
        i = first
        while time.perf_counter() < deadline:
            await _one(http, cfg.texts[i % len(cfg.texts)], cfg.k, tally)
            i += cfg.clients


async def _sample_rss(proc: psutil.Process, t0: float, deadline: float, out: list[tuple[float, int]]) -> None:
    while True:
        now = time.perf_counter()
        try:
            out.append((now - t0, proc.memory_info().rss))
        except psutil.NoSuchProcess:  # LookupError: the CLI prints it as one line
            raise LookupError(f"the server process {proc.pid} exited during the load test; see its log") from None
        if now >= deadline:
            return
        await asyncio.sleep(min(SAMPLE_EVERY_S, max(0.0, deadline - now)))


def probe_server(cfg: LoadConfig) -> Optional[int]:
    """--server-pid, else the pid /health reports when the server is on this machine; None if unknowable."""
    try:
        health = httpx.get(f"{cfg.url}/health", timeout=cfg.timeout_s)
    except httpx.HTTPError as exc:
        raise ValueError(f"--url: cannot reach `grdr serve` at {cfg.url} ({type(exc).__name__}); "
                         "start it with `grdr serve --model MODEL_DIR --index NAME`") from None
    if health.status_code != 200:
        raise ValueError(f"--url: {cfg.url}/health answered {health.status_code}: {health.text[:200]}")
    if cfg.server_pid is not None:
        return cfg.server_pid
    return health.json().get("pid") if httpx.URL(cfg.url).host in LOOPBACK_HOSTS else None


async def _run(cfg: LoadConfig, pid: Optional[int]) -> tuple[_Tally, list[tuple[float, int]], float]:
    tally, rss = _Tally(), []
    t0 = tally.t0
    deadline = t0 + cfg.duration_s
    tasks = [_client(cfg, i, deadline, tally) for i in range(cfg.clients)]
    if pid is not None:
        tasks.append(_sample_rss(psutil.Process(pid), t0, deadline, rss))
    await asyncio.gather(*tasks)
    return tally, rss, time.perf_counter() - t0  # in-flight requests finish after the deadline


def run_load(cfg: LoadConfig) -> LoadReport:
    pid = probe_server(cfg)
    if pid is not None and not psutil.pid_exists(pid):
        raise ValueError(f"--server-pid: no process {pid} on this machine")
    tally, rss, elapsed = asyncio.run(_run(cfg, pid))
    latency = latency_summary(tally.latencies_ms, TAIL_PERCENTILES, with_max=True)
    failed = sum(tally.errors.values())
    return LoadReport(url=cfg.url, clients=cfg.clients, duration_s=round(elapsed, 2),
                      requests=len(tally.latencies_ms) + failed, ok=len(tally.latencies_ms), errors=tally.errors,
                      error_examples=tally.examples, started_at=tally.started_at, error_window_s=tally.error_window_s(),
                      throughput_rps=per_second(len(tally.latencies_ms), elapsed),
                      latency_ms=latency, memory=memory_report(pid, rss, cfg.warmup_s) if pid is not None else None)
