"""Prometheus metrics of the inference endpoint, in one registry per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "serving_request_seconds",
            "Request latency",
            ["route", "model"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.stale = Counter(
            "serving_stale_features_total",
            "Served values older than their freshness budget",
            ["model", "feature"],
            registry=self.registry,
        )
        self.errors = Counter(
            "serving_errors_total", "Errors by type", ["route", "type"], registry=self.registry
        )
        self.denied = Counter(
            "serving_auth_denied_total",
            "Requests refused: no or unknown key (401), or a key without the scope (403)",
            ["status"],
            registry=self.registry,
        )
        self.ingest_accepted = Counter(
            "serving_ingest_events_total",
            "Events the broker acknowledged",
            ["kind"],
            registry=self.registry,
        )
        self.ingest_unknown_users = Counter(
            "serving_ingest_unknown_user_events_total",
            "Accepted events whose user has no features in the online store",
            ["kind"],
            registry=self.registry,
        )
        self.erased_dropped = Counter(
            "serving_erased_subject_events_total",
            "Events and pushed rows of erased subjects, dropped (providers/erasure.py)",
            ["route"],
            registry=self.registry,
        )
        self.ingest_refused = Counter(
            "serving_ingest_refused_total",
            "Events refused: invalid (422) or broker unavailable (503)",
            ["kind", "reason"],
            registry=self.registry,
        )
