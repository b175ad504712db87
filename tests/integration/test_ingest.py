"""`POST /v1/events/{kind}` on a real, durable broker: acknowledged means held, bad input never
reaches the broker, a dead broker is a quick 503 and loses nothing it acknowledged."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time

import pytest
import redis as redis_client
from fastapi.testclient import TestClient

from devstack import Redis
from providers.events import KINDS, MESSAGE_FIELD, decode
from tests.utils.auth import api_keys, headers

pytestmark = pytest.mark.usefixtures("stack")
NOW = dt.datetime.now(dt.UTC).replace(microsecond=123456)


def login(event_id: int, user_id: int = 7, **changes) -> dict:
    return {
        "event_id": event_id,
        "user_id": user_id,
        "event_ts": NOW.isoformat(),
        "ip": "203.0.113.5",
        "device_id": "dev-a",
        "country": "DE",
        "success": False,
        **changes,
    }


def counted(metrics: str, name: str, before: str, labels: str = '{kind="login"}') -> float:
    """How much a counter grew between two scrapes. Feast sets PROMETHEUS_MULTIPROC_DIR when
    imported, so counters of every app in one process share their values: tests count deltas."""

    def value(text: str) -> float:
        found = [line for line in text.splitlines() if line.startswith(f"{name}{labels} ")]
        return float(found[0].split()[-1]) if found else 0.0

    return value(metrics) - value(before)


def held(broker: Redis, stream: str) -> list[dict]:
    client = redis_client.Redis.from_url(broker.url)
    try:
        entries = client.xrange(stream)
    finally:
        client.close()
    return [decode(KINDS[stream.split(".")[1]], fields[MESSAGE_FIELD]) for _, fields in entries]


@pytest.fixture
def client(stack, monkeypatch):
    from serving.main import create_app
    from serving.settings import Settings

    for key, value in stack["serving_env"].items():
        monkeypatch.setenv(key, value)
    redis_client.Redis.from_url(stack["broker"].url).flushall()
    settings = Settings(
        api_keys=api_keys(),
        models_dir=stack["models"],
        broker_url=stack["broker"].url,
        broker_timeout_seconds=1.0,
    )
    with TestClient(create_app(settings), headers=headers()) as c:
        yield c


def test_acknowledged_events_are_on_the_broker_as_sent(client, stack):
    body = {"events": [login(1), login(2, user_id=10**12, ip="2001:DB8::1")]}  # 10**12: unknown
    before = client.get("/metrics").text
    response = client.post("/v1/events/login", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2 and len(response.json()["ids"]) == 2
    events = held(stack["broker"], "events.login")
    assert [e.event_id for e in events] == [1, 2]
    assert events[0].event_ts == NOW and events[1].ip == "2001:db8::1"  # one spelling per address
    withdrawal = {
        "event_id": 5,
        "user_id": 7,
        "event_ts": NOW.isoformat(),
        "amount": "1250.10",
        "destination_account": "DE00 1234",
    }
    assert client.post("/v1/events/withdrawal", json={"events": [withdrawal]}).status_code == 200
    assert str(held(stack["broker"], "events.withdrawal")[0].amount) == "1250.10"
    metrics = client.get("/metrics").text
    # user 7 has features online (the stack's history); user 10**12 none: counted, and kept
    assert counted(metrics, "serving_ingest_unknown_user_events_total", before) == 1
    assert counted(metrics, "serving_ingest_events_total", before) == 2


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (login(1, ip="999.1.1.1"), "ip"),
        (login(1, success="no"), "success"),
        (login(1, country="de"), "country"),
        (login(1, event_ts="2026-03-01T00:00:00"), "event_ts"),  # no zone
        (login(1, event_ts=(NOW + dt.timedelta(hours=1)).isoformat()), "event_ts"),
        (login(0), "event_id"),
        (login(1, user_id=2**63), "user_id"),
        ({k: v for k, v in login(1).items() if k != "device_id"}, "device_id"),
        ({**login(1), "surprise": 1}, "surprise"),
    ],
)
def test_a_malformed_event_is_a_422_and_nothing_of_its_batch_reaches_the_broker(
    client, stack, event, field
):
    response = client.post("/v1/events/login", json={"events": [login(9), event]})
    assert response.status_code == 422, response.text
    locations = [error["loc"] for error in response.json()["detail"]]
    assert any(loc[:3] == ["body", "events", 1] and field in map(str, loc) for loc in locations)
    assert held(stack["broker"], "events.login") == []


def test_amounts_that_would_be_rounded_and_unknown_kinds_are_refused(client, stack):
    withdrawal = {
        "event_id": 5,
        "user_id": 7,
        "event_ts": NOW.isoformat(),
        "amount": "10.005",
        "destination_account": "X",
    }
    assert client.post("/v1/events/withdrawal", json={"events": [withdrawal]}).status_code == 422
    assert client.post("/v1/events/logout", json={"events": [login(1)]}).status_code == 404
    assert client.post("/v1/events/login", json={"events": []}).status_code == 422
    assert held(stack["broker"], "events.withdrawal") == []


def test_broker_down_is_a_quick_503_and_what_it_acknowledged_survives(client, stack):
    broker: Redis = stack["broker"]
    assert client.post("/v1/events/login", json={"events": [login(1), login(2)]}).status_code == 200
    os.kill(int(broker.pid_file.read_text()), signal.SIGKILL)  # a crash, not a clean shutdown
    time.sleep(0.2)
    try:
        started = time.monotonic()
        response = client.post("/v1/events/login", json={"events": [login(3)]})
        assert response.status_code == 503, response.text
        assert time.monotonic() - started < 3
    finally:
        broker.start()  # same port and data dir: the append-only file is replayed
    assert [e.event_id for e in held(broker, "events.login")] == [1, 2]
    assert client.post("/v1/events/login", json={"events": [login(3)]}).status_code == 200
    assert [e.event_id for e in held(broker, "events.login")] == [1, 2, 3]


def test_a_retried_batch_is_appended_once(client, stack):
    """A producer that lost the answer retries the same events: the stream holds them once."""
    body = {"events": [login(21), login(22)]}
    first = client.post("/v1/events/login", json=body).json()
    again = client.post("/v1/events/login", json={"events": [login(22), login(23)]}).json()
    assert (first["accepted"], first["repeated"]) == (2, 0)
    assert (again["accepted"], again["repeated"]) == (1, 1) and again["ids"][0] == ""
    assert [e.event_id for e in held(stack["broker"], "events.login")] == [21, 22, 23]
