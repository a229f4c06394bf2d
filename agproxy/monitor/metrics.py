"""Prometheus metrics: counters kept in memory as requests finish, rendered on scrape.

Observing a request is a few dictionary updates; it runs whether or not the monitor
stores records. Label values are bounded: the protocol, the status code, the model
that served (from the catalog, never the client's free text), the error class and the
client key's name (keys are made by the owner; a request with the owner's api_key or no
key carries no `key` label, so its series are those of a gateway without client keys).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable

from agproxy.monitor.record import RequestRecord

# Seconds; wide enough for a long thinking stream.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TOKEN_KINDS = ("input", "output", "thinking", "cached")


class Histogram:
    __slots__ = ("counts", "total", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def lines(self, name: str, labels: str) -> Iterable[str]:
        running = 0
        sep = "," if labels else ""
        for bound, count in zip(BUCKETS, self.counts, strict=False):
            running += count
            yield f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}'
        yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}'
        yield f"{name}_sum{{{labels}}} {self.total:.6f}"
        yield f"{name}_count{{{labels}}} {self.count}"


class Metrics:
    def __init__(self) -> None:
        # (protocol, status, model, client key name or "")
        self.requests: defaultdict[tuple[str, int, str, str], int] = defaultdict(int)
        self.duration: defaultdict[str, Histogram] = defaultdict(Histogram)
        self.ttfb: defaultdict[str, Histogram] = defaultdict(Histogram)
        self.tokens: defaultdict[tuple[str, str, str], int] = defaultdict(int)  # model, kind, key
        self.upstream_errors: defaultdict[str, int] = defaultdict(int)
        # (provider, its key's name, status): the key-based providers' answers.
        self.provider_requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.attempts = 0
        # Counted by the writer when its queue is full (the database is far behind).
        self.records_dropped = 0
        self.bodies_dropped = 0

    def observe(self, record: RequestRecord) -> None:
        model = record.routed_model or "none"
        key = record.key_name or ""
        self.requests[(record.protocol, record.status, model, key)] += 1
        if record.provider and record.provider != "google":
            self.provider_requests[(record.provider, record.account or "", record.status)] += 1
        self.duration[record.protocol].observe(record.duration_ms / 1000)
        if record.ttfb_ms is not None:
            self.ttfb[record.protocol].observe(record.ttfb_ms / 1000)
        for kind, value in zip(
            TOKEN_KINDS,
            (
                record.input_tokens,
                record.output_tokens,
                record.thinking_tokens,
                record.cached_tokens,
            ),
            strict=True,
        ):
            if value:
                self.tokens[(model, kind, key)] += value
        for attempt in record.attempts:
            self.attempts += 1
            outcome = attempt["outcome"]
            if outcome != "ok":
                self.upstream_errors[outcome.rpartition(" ")[2]] += 1

    def lines(self) -> Iterable[str]:
        yield (
            "# HELP agproxy_requests_total AI requests served, by protocol, status, model "
            "and client key."
        )
        yield "# TYPE agproxy_requests_total counter"
        for (protocol, status, model, key), n in sorted(self.requests.items()):
            yield (
                f'agproxy_requests_total{{protocol="{protocol}",status="{status}",'
                f'model="{escape_label(model)}"{_key_label(key)}}} {n}'
            )
        yield "# HELP agproxy_request_duration_seconds Time to the end of the response."
        yield "# TYPE agproxy_request_duration_seconds histogram"
        for protocol, histogram in sorted(self.duration.items()):
            yield from histogram.lines("agproxy_request_duration_seconds", f'protocol="{protocol}"')
        yield "# HELP agproxy_time_to_first_byte_seconds Time to the first response byte."
        yield "# TYPE agproxy_time_to_first_byte_seconds histogram"
        for protocol, histogram in sorted(self.ttfb.items()):
            yield from histogram.lines(
                "agproxy_time_to_first_byte_seconds", f'protocol="{protocol}"'
            )
        yield (
            "# HELP agproxy_tokens_total Tokens reported by the upstream, by model, kind and "
            "client key."
        )
        yield "# TYPE agproxy_tokens_total counter"
        for (model, kind, key), n in sorted(self.tokens.items()):
            yield (
                f'agproxy_tokens_total{{model="{escape_label(model)}",kind="{kind}"'
                f"{_key_label(key)}}} {n}"
            )
        yield (
            "# HELP agproxy_provider_requests_total Requests a key-based provider answered, "
            "by provider, key name and status."
        )
        yield "# TYPE agproxy_provider_requests_total counter"
        for (provider, key_name, status), n in sorted(self.provider_requests.items()):
            yield (
                f'agproxy_provider_requests_total{{provider="{escape_label(provider)}",'
                f'provider_key="{escape_label(key_name)}",status="{status}"}} {n}'
            )
        yield "# HELP agproxy_upstream_attempts_total Upstream calls made (retries included)."
        yield "# TYPE agproxy_upstream_attempts_total counter"
        yield f"agproxy_upstream_attempts_total {self.attempts}"
        yield "# HELP agproxy_upstream_errors_total Failed upstream calls, by error class."
        yield "# TYPE agproxy_upstream_errors_total counter"
        for kind, n in sorted(self.upstream_errors.items()):
            yield f'agproxy_upstream_errors_total{{class="{kind}"}} {n}'
        yield (
            "# HELP agproxy_monitor_dropped_total Records not stored because the monitor "
            "queue was full."
        )
        yield "# TYPE agproxy_monitor_dropped_total counter"
        yield f"agproxy_monitor_dropped_total {self.records_dropped}"
        yield (
            "# HELP agproxy_monitor_bodies_dropped_total Records stored without their "
            "captured bodies because the monitor queue was full."
        )
        yield "# TYPE agproxy_monitor_bodies_dropped_total counter"
        yield f"agproxy_monitor_bodies_dropped_total {self.bodies_dropped}"


def _key_label(key: str) -> str:
    """`,key="name"` for a client key; nothing for the owner's api_key (or no key)."""
    return f',key="{escape_label(key)}"' if key else ""


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
