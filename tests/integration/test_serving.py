"""The inference endpoint on real Redis and MariaDB, with models trained on generated history."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from devstack import Redis
from tests.utils.auth import api_keys, headers
from tests.utils.jobs import feast
from tests.utils.tables import rows


@pytest.fixture
def client(stack, monkeypatch):
    from serving.main import create_app
    from serving.settings import Settings

    for key, value in stack["serving_env"].items():
        monkeypatch.setenv(key, value)
    settings = Settings(
        api_keys=api_keys(),
        models_dir=stack["models"],
        log_flush_seconds=0.2,
        broker_url=stack["broker"].url,
        broker_timeout_seconds=1.0,
    )
    with TestClient(create_app(settings), headers=headers()) as c:
        yield c


@pytest.fixture
def db(stack_db):
    return stack_db


ROOT = Path(__file__).resolve().parents[2]
LOGIN = {"user_id": 1, "login_ip": "203.0.113.7", "login_device": "dev-new"}


def test_predict_returns_score_decision_and_feature_ages(client):
    body = client.post(
        "/v1/models/account_takeover/predict", json={"entities": [LOGIN, {**LOGIN, "user_id": 2}]}
    )
    assert body.status_code == 200
    out = body.json()
    assert (
        out["model"] == "account_takeover" and out["model_version"] and 0 <= out["threshold"] <= 1
    )
    first = out["predictions"][0]
    assert 0.0 <= first["score"] <= 1.0 and first["decision"] == (
        first["score"] >= out["threshold"]
    )
    batch = first["features"]["failed_logins_1d"]
    assert batch["status"] == "PRESENT" and batch["age_seconds"] > 0
    assert batch["stale"] is True  # the history ended in March: far beyond the 26 h budget
    assert (
        first["features"]["ip_is_common"]["value"] is False
    )  # on-demand: computed for this request
    assert len({p["request_id"] for p in out["predictions"]}) == 2
    assert "serving_stale_features_total" in client.get("/metrics").text


def test_batch_ages_count_from_what_the_runs_covered_not_from_the_row(client, stack):
    """Rows are stored per change, so an idle user's row is old while its value is current. The
    engine records how far the batch runs covered (runs through Feb 28 vouch up to Mar 1 00:00,
    though materialized to Mar 2); serving ages values from that, so `stale` means a late
    pipeline, not an idle user."""
    import redis as redis_lib

    from providers.feast_redis import progress_key

    r = redis_lib.Redis.from_url(stack["redis"].url)
    key = progress_key(client.app.state.store.project)
    covered = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert int(r.hget(key, "user_transactions")) == int(covered.timestamp() * 1_000_000)

    def served(users):
        out = client.post(
            "/v1/models/withdrawal_fraud/predict",
            json={"entities": [{"user_id": u, "amount": 10.0} for u in users]},
        ).json()
        return [p["features"]["txn_count_30d"] for p in out["predictions"]]

    users = list(range(1, 101))  # a request's most
    before = time.time()
    features = served(users)
    present = [f for f in features if f["status"] == "PRESENT"]
    assert present and all(f["stale"] for f in present)  # the runs stopped in March: late
    assert all(abs(f["age_seconds"] - (before - covered.timestamp())) < 60 for f in present)
    # A punctual pipeline: the same old rows are current, not stale.
    r.hset(key, "user_transactions", int((before - 3600) * 1_000_000))
    try:
        features = served(users)
    finally:
        r.hset(key, "user_transactions", int(covered.timestamp() * 1_000_000))
    present = [f for f in features if f["status"] == "PRESENT"]
    assert present and not any(f["stale"] for f in present)
    assert all(3500 < f["age_seconds"] < 3700 for f in present)


def test_unknown_entity_is_scored_with_missing_features_reported(client):
    out = client.post(
        "/v1/models/withdrawal_fraud/predict",
        json={"entities": [{"user_id": 987654, "amount": 50.0}]},
    ).json()
    prediction = out["predictions"][0]
    assert "txn_count_30d" in prediction["missing_features"]
    assert prediction["features"]["txn_count_30d"] == {
        "value": None,
        "age_seconds": None,
        "stale": False,
        "status": "NOT_FOUND",
    }


@pytest.mark.parametrize(
    ("url", "body", "status", "field"),
    [
        ("/v1/models/nope/predict", {"entities": [LOGIN]}, 404, None),
        (
            "/v1/models/withdrawal_fraud/predict",
            {"entities": [{"user_id": 1, "amount": "lots"}]},
            422,
            "amount",
        ),
        (
            "/v1/models/withdrawal_fraud/predict",
            {"entities": [{"user_id": 1, "amount": -5}]},
            422,
            "amount",
        ),
        (
            "/v1/models/account_takeover/predict",
            {"entities": [{**LOGIN, "login_ip": "999.1.1.1"}]},
            422,
            "login_ip",
        ),
        ("/v1/models/account_takeover/predict", {"entities": [{"user_id": 1}]}, 422, "login_ip"),
        ("/v1/models/account_takeover/predict", {"entities": [LOGIN] * 101}, 422, "entities"),
        ("/v1/models/account_takeover/predict", {"rows": []}, 422, "entities"),
        ("/v1/push/nope", {"events": [{"user_id": 1}]}, 404, None),
        (
            "/v1/push/login_push",
            {"events": [{"user_id": 1, "last_login_ip": "1.2.3.4"}]},
            422,
            "event_ts",
        ),
        (
            "/v1/push/login_push",
            {"events": [{"user_id": 1, "event_ts": "2026-03-01T00:00:00"}]},
            422,
            "event_ts",
        ),
    ],
)
def test_client_mistakes_get_4xx_naming_the_field(client, url, body, status, field):
    response = client.post(url, json=body)
    assert response.status_code == status, response.text
    if field:
        assert any(field in map(str, error["loc"]) for error in response.json()["detail"]), (
            response.json()
        )


def test_push_is_served_at_once_and_kept_offline(client, db):
    event = {
        "user_id": 3,
        "last_login_ip": "198.51.100.9",
        "last_login_device": "dev-new",
        "last_login_country": "DE",
        "recent_ips": ["198.51.100.9"],
        "event_ts": dt.datetime.now(dt.UTC).isoformat(),
    }
    assert client.post("/v1/push/login_push", json={"events": [event]}).status_code == 200
    assert rows(db, "SELECT last_login_ip FROM login_push_events WHERE user_id = 3") == [
        ("198.51.100.9",)
    ]
    features = client.post(
        "/v1/models/account_takeover/predict",
        json={"entities": [{"user_id": 3, "login_ip": "198.51.100.9", "login_device": "dev-new"}]},
    ).json()["predictions"][0]["features"]
    assert (
        features["last_login_ip"]["value"] == "198.51.100.9"
        and features["ip_seen_recently"]["value"] is True
    )
    assert features["device_is_new"]["value"] is False  # it is the device of the last login
    pushed = features["last_login_ip"]
    assert pushed["age_seconds"] < 60
    assert pushed["stale"] is (pushed["age_seconds"] > 5)  # the real-time views' 5 s budget


def test_every_served_vector_is_logged_with_its_request_id(stack, db):
    from serving.main import create_app
    from serving.settings import Settings

    with pytest.MonkeyPatch.context() as mp:
        for key, value in stack["serving_env"].items():
            mp.setenv(key, value)
        app = create_app(
            Settings(api_keys=api_keys(), models_dir=stack["models"], log_flush_seconds=30)
        )  # flushed only at shutdown
        with TestClient(app, headers=headers()) as c:
            out = c.post(
                "/v1/models/withdrawal_fraud/predict",
                json={"entities": [{"user_id": u, "amount": 10.0 * u} for u in (4, 5, 6)]},
            ).json()
            writer = app.state.logger.process
            assert writer.pid != os.getpid()  # written outside the serving process
            # Ctrl-C or `docker stop` signal the whole group: the writer waits for the server.
            os.kill(writer.pid, signal.SIGINT)
            os.kill(writer.pid, signal.SIGTERM)
            time.sleep(0.3)
            assert writer.is_alive()
    assert writer.exitcode == 0  # stopped by the server's shutdown, after writing
    ids = {p["request_id"] for p in out["predictions"]}
    logged = rows(
        db,
        "SELECT `__request_id`, user_id, amount, `user_transactions__txn_count_30d` "
        "FROM served_withdrawal_fraud",
    )
    by_id = {r[0]: r for r in logged}
    assert ids <= set(by_id)  # nothing lost on shutdown
    served = {p["request_id"]: p for p in out["predictions"]}
    for request_id in ids:
        _, user, amount, count = by_id[request_id]
        assert (
            user == served[request_id]["entity"]["user_id"]
            and amount == served[request_id]["entity"]["amount"]
        )
        assert count == served[request_id]["features"]["txn_count_30d"]["value"]


def predict_withdrawal(client, user: int) -> str:
    """One scored withdrawal; its request id."""
    out = client.post(
        "/v1/models/withdrawal_fraud/predict",
        json={"entities": [{"user_id": user, "amount": 12.5}]},
    )
    assert out.status_code == 200
    return out.json()["predictions"][0]["request_id"]


def logged(db, request_id: str) -> bool:
    """Whether the request is in the withdrawal model's log (no table yet: not logged)."""
    import pymysql

    try:
        query = "SELECT 1 FROM served_withdrawal_fraud WHERE `__request_id` = %s"
        return bool(rows(db, query, request_id))
    except pymysql.err.ProgrammingError:  # the first flush creates the table
        return False


def test_a_killed_log_writer_is_replaced_and_later_rows_are_logged(client, db):
    def predict(user: int) -> str:
        return predict_withdrawal(client, user)

    logger = client.app.state.logger
    first = predict(7)
    deadline = time.monotonic() + 10
    while not logged(db, first) and time.monotonic() < deadline:  # flushed every 0.2 s
        time.sleep(0.1)
    assert logged(db, first)
    killed = logger.process
    os.kill(killed.pid, signal.SIGKILL)
    killed.join(5)
    second = predict(8)  # sending its row finds the pipe broken; a new writer takes the row
    deadline = time.monotonic() + 10
    while not logged(db, second) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logged(db, second)
    assert logger.process.pid != killed.pid and logger.process.is_alive()


def _predict(client, entities=None):
    return client.post(
        "/v1/models/account_takeover/predict", json={"entities": entities or [LOGIN]}
    )


def _values(response) -> dict:
    (prediction,) = response.json()["predictions"]
    return {n: (f["value"], f["status"]) for n, f in prediction["features"].items()}


def test_a_hung_online_store_is_a_503_within_the_deadline_never_a_hang(stack, client):
    """SIGSTOP: Redis accepts connections and never answers (the case that hung requests)."""
    redis: Redis = stack["redis"]
    pid = int(redis.pid_file.read_text())
    deadline = client.app.state.settings.read_deadline_ms / 1000
    assert _predict(client).status_code == 200  # connected before the hang
    os.kill(pid, signal.SIGSTOP)
    try:
        took = []
        for _ in range(20):
            started = time.monotonic()
            response = _predict(client)
            took.append(time.monotonic() - started)
            assert response.status_code == 503, response.text
            assert "did not answer" in response.json()["detail"]
    finally:
        os.kill(pid, signal.SIGCONT)
    # the deadline plus the test client's own overhead; without a deadline each request waited
    # for the store (minutes with a stopped Redis)
    assert max(took) < deadline + 0.5, took
    assert _predict(client).status_code == 200


def test_redis_lost_its_data_predictions_refused_until_materialization_reloads_it(stack, client):
    """Redis killed and restarted empty (no persistence): 503 fast while down; then, not a 200
    with every feature missing but a 503 naming the unloaded views, /readyz failing, until the
    next `feast materialize-incremental` reloads the views whole (not only its new interval)."""
    redis: Redis = stack["redis"]
    end = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    # Other modules push values for any user (the conformance test's generated pushes too). One
    # older than the view's TTL before `end` lies outside the reload: a value of our own, inside
    # the window and newer, replaces it. One stamped after `end` rightly stays out of the reload,
    # and so do the on-demand features computed from it: those are left out below.
    pushed = client.post("/v1/push/login_push", json={"events": [{
        "user_id": LOGIN["user_id"], "last_login_ip": "198.51.100.77", "last_login_device": "d-1",
        "last_login_country": "NL", "recent_ips": ["198.51.100.77"],
        "event_ts": (end - dt.timedelta(hours=12)).isoformat(),
    }]})  # fmt: skip
    assert pushed.status_code == 200, pushed.text
    first = _predict(client)
    served_at = time.time()
    before = _values(first)
    assert sum(status == "PRESENT" for _, status in before.values()) > 10
    (prediction,) = first.json()["predictions"]
    ages = {n: f["age_seconds"] for n, f in prediction["features"].items()}
    later = {n for n, age in ages.items() if age is not None and served_at - age > end.timestamp()}
    redis.stop()
    try:
        started = time.monotonic()
        response = _predict(client)
        assert response.status_code == 503 and time.monotonic() - started < 5
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
    finally:
        redis.start()  # same port, empty
    refused = _predict(client)
    assert refused.status_code == 503 and "not loaded" in refused.json()["detail"], refused.text
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "not loaded" in ready.json()["reason"]
    # The registry says everything up to this end was materialized already: an incremental run
    # would write nothing; the missing load markers make it load every view whole.
    feast(stack["env"], "materialize-incremental", end.strftime("%Y-%m-%dT%H:%M:%S"))
    assert client.get("/readyz").status_code == 200
    after = _predict(client)
    assert after.status_code == 200
    # Every value served before is back. The reload's window is each view's whole TTL up to the
    # end, at least the first run's (Feast starts a first incremental run at now - TTL).
    present = {
        name: v
        for name, v in before.items()
        if v[1] == "PRESENT" and name not in later and (ages[name] is not None or not later)
    }
    assert len(present) > 10
    assert {name: _values(after)[name] for name in present} == present


def test_every_route_but_health_needs_a_key_with_its_scope(client):
    from tests.utils.auth import headers

    routes = [
        ("post", "/v1/models/account_takeover/predict", {"entities": [LOGIN]}, "predict"),
        ("post", "/v1/push/login_push", {"events": []}, "ingest"),
        ("post", "/v1/events/login", {"events": []}, "ingest"),
        ("get", "/metrics", None, "admin"),
    ]
    for method, url, body, scope in routes:
        call = getattr(client, method)
        kwargs = {"json": body} if body is not None else {}
        none = call(url, headers={"Authorization": ""}, **kwargs)
        assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer", url
        wrong = call(url, headers={"Authorization": "Bearer not-a-key"}, **kwargs)
        assert wrong.status_code == 401, url
        other = next(name for name in ("predict", "ingest", "admin") if name != scope)
        assert call(url, headers=headers(other), **kwargs).status_code == 403, url
        assert call(url, headers=headers(scope), **kwargs).status_code in (200, 422), url
    for url in ("/healthz", "/readyz", "/openapi.json"):
        assert client.get(url, headers={"Authorization": ""}).status_code == 200, url
    # and no route was forgotten: every one but health and the API description requires a scope
    from fastapi.routing import APIRoute

    open_paths = {"/healthz", "/readyz"}
    for route in client.app.routes:
        if not isinstance(route, APIRoute) or route.path in open_paths:
            continue
        scopes = [d.dependency.__qualname__ for d in route.dependencies]
        assert "require.<locals>.check" in scopes, route.path
    assert 'serving_auth_denied_total{status="403"}' in client.get("/metrics").text


def test_openapi_names_each_models_fields_and_the_errors(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for model, fields in (
        ("account_takeover", {"user_id", "login_ip", "login_device"}),
        ("withdrawal_fraud", {"user_id", "amount"}),
    ):
        operation = paths[f"/v1/models/{model}/predict"]["post"]
        assert {"200", "400", "401", "403", "422", "503"} <= set(operation["responses"]), model
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        request = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
        entity = request["properties"]["entities"]["items"]["$ref"].rsplit("/", 1)[1]
        assert set(spec["components"]["schemas"][entity]["properties"]) == fields, model
    # A name that is not served is not an operation: it answers 404, outside the description.
    assert not [path for path in paths if "{" in path]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


def test_skew_report_batch_features_match_and_push_lag_is_measured(stack, client):
    from feast import FeatureStore

    from pipelines.skew import skew_report
    from tests.utils.jobs import ROOT

    # After a materialize (Redis may have been emptied by another test), batch features must match.
    feast(stack["env"], "materialize", "2026-02-01T00:00:00", "2026-03-02T00:00:00")
    started = dt.datetime.now(dt.UTC)  # log timestamps are taken at request time, after this
    event = {
        "user_id": 8,
        "last_login_ip": "192.0.2.1",
        "last_login_device": "d8",
        "last_login_country": "FR",
        "recent_ips": ["192.0.2.1"],
        "event_ts": (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)).isoformat(),
    }
    assert client.post("/v1/push/login_push", json={"events": [event]}).status_code == 200
    logins = [{"user_id": u, "login_ip": "192.0.2.1", "login_device": "d8"} for u in (7, 8, 9)]
    assert (
        client.post("/v1/models/account_takeover/predict", json={"entities": logins}).status_code
        == 200
    )
    client.app.state.logger.stop()  # flush now (the fixture's exit flushes again, harmlessly)
    with pytest.MonkeyPatch.context() as mp:  # the report reads as the offline reader
        for key, value in {**stack["env"], **stack["accounts"]["reader"]}.items():
            mp.setenv(key, value)
        reader = FeatureStore(repo_path=str(ROOT / "feature_repo"))
    report = skew_report(
        reader,
        "account_takeover",
        started,
        dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1),
    ).set_index("feature")
    assert report["rows"].eq(3).all()
    batch = [
        f
        for f in report.index
        if f.startswith(("user_logins__", "user_withdrawals__", "user_profile__"))
    ]
    assert (
        batch and report.loc[batch, "mismatches"].eq(0).all()
    )  # materialized values = offline values
    assert report.loc["user_last_login__last_login_ip", "mismatches"] == 0
    assert (
        25 <= report.loc["user_last_login__last_login_ip", "age_max_s"] < 120
    )  # the push's event time
    assert report.loc["login_context__ip_seen_recently", "mismatches"] == 0  # on-demand, both sides
    # Batch values are aged, as in the response, from how far the runs covered (logged per view),
    # not from their rows' own (older: a row per change) times.
    covered = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    since_covered = (started - covered).total_seconds()
    for feature in batch:
        assert since_covered <= report.loc[feature, "age_max_s"] < since_covered + 60, feature


def test_online_reader_serves_what_feast_get_online_features_serves(stack, client):
    """The one-round-trip reader against Feast's own read: values, statuses and timestamps."""
    import asyncio
    import math

    from serving.features import FeatureClient, OnlineReader

    store = client.app.state.store
    reader, feast_read = OnlineReader(store), FeatureClient(store)
    pushed = {
        "user_id": 11,
        "last_login_ip": "192.0.2.11",
        "last_login_device": "d11",
        "last_login_country": "NL",
        "recent_ips": ["192.0.2.11", "192.0.2.12"],
        "event_ts": dt.datetime.now(dt.UTC).isoformat(),
    }
    assert client.post("/v1/push/login_push", json={"events": [pushed]}).status_code == 200
    users = [1, 2, 11, 987654, *range(20, 60)]  # known, pushed, unknown
    cases = {
        "account_takeover": [
            {"user_id": u, "login_ip": "192.0.2.11", "login_device": f"d{u % 3}"} for u in users
        ],
        "withdrawal_fraud": [{"user_id": u, "amount": 10.0 + u} for u in users],
    }

    async def read_all():
        return {service: await reader.fetch(service, rows_) for service, rows_ in cases.items()}

    assert all(reader.supported(service) for service in cases)
    by_service = asyncio.run(read_all())
    compared = 0
    for service, rows_ in cases.items():
        ours = by_service[service]
        theirs, _ = feast_read.fetch(service, rows_)
        assert [sorted(r) for r in ours] == [sorted(r) for r in theirs]
        for mine, other in zip(ours, theirs, strict=True):
            for name, served in mine.items():
                expected = other[name]
                assert (served.status, served.event_timestamp, served.stale) == (
                    expected.status,
                    expected.event_timestamp,
                    expected.stale,
                ), name
                same_nan = (
                    isinstance(served.value, float)
                    and isinstance(expected.value, float)
                    and math.isnan(served.value)
                    and math.isnan(expected.value)
                )
                assert same_nan or served.value == expected.value, (name, served, expected)
                compared += 1
    assert compared > 1000
    # Some values of each kind were really there: not a comparison of two empty reads.
    statuses = {f.status for r in ours for f in r.values()}
    assert statuses == {"PRESENT", "NOT_FOUND"}


def test_unknown_user_ratio_is_null_in_json_not_a_500(client):
    out = client.post(
        "/v1/models/withdrawal_fraud/predict",
        json={"entities": [{"user_id": 987654, "amount": 50.0}]},
    )
    assert out.status_code == 200, out.text
    assert out.json()["predictions"][0]["features"]["amount_vs_30d_mean"]["value"] is None


def test_a_third_model_is_a_feature_service_and_an_artefact(
    stack, db, tmp_path, monkeypatch, mariadb
):
    """No code change: a feature service applied to the registry, an artefact trained on it,
    its name in SERVING_MODELS. Its route, request schema and log come from the service."""
    from feast import FeatureService, FeatureStore
    from feast.feature_logging import LoggingConfig

    from pipelines.train import train
    from providers.tidb import TiDBLoggingDestination, roles
    from serving.main import ModelConfigError, create_app
    from serving.settings import Settings
    from tests.utils.auth import api_keys, headers

    for key, value in stack["env"].items():  # applying and training: not serving's account
        monkeypatch.setenv(key, value)
    name = "login_velocity_check"
    store = FeatureStore(repo_path=str(ROOT / "feature_repo"))
    service = FeatureService(
        name=name,
        features=[
            store.get_stream_feature_view("user_login_velocity"),
            store.get_on_demand_feature_view("login_context"),
        ],
        logging_config=LoggingConfig(
            destination=TiDBLoggingDestination(table_name=f"served_{name}")
        ),
    )
    store.apply([service])
    try:
        window = dict(
            since=dt.datetime(2026, 2, 11, tzinfo=dt.UTC),
            until=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        )
        artefact, _ = train(
            name,
            dt.datetime.now(dt.UTC),
            out=tmp_path,
            save_dataset=False,
            labels="account_takeover",
            algorithm="gbdt",
            **window,
        )
        assert artefact.feature_service == name and artefact.format == "fraud-gbdt-v1"
        # Serving's account is granted the new service's log table (docs/deployment.md), then
        # serves it with nothing more.
        accounts = stack["accounts"]
        mariadb.create_roles(
            stack["database"],
            passwords={role: account["TIDB_PASSWORD"] for role, account in accounts.items()},
            log_tables=[*roles.LOG_TABLES, f"served_{name}"],
        )
        for key, value in stack["serving_env"].items():
            monkeypatch.setenv(key, value)
        settings = Settings(api_keys=api_keys(), models=[name], models_dir=tmp_path)
        with TestClient(create_app(settings), headers=headers()) as c:
            spec = c.get("/openapi.json").json()
            assert list(spec["paths"]).count(f"/v1/models/{name}/predict") == 1
            out = c.post(f"/v1/models/{name}/predict", json={"entities": [LOGIN]})
            assert out.status_code == 200, out.text
            (prediction,) = out.json()["predictions"]
            assert 0 <= prediction["score"] <= 1
            assert {"ip_is_common", *artefact.features} <= set(prediction["features"])
            bad = c.post(f"/v1/models/{name}/predict", json={"entities": [{"user_id": 1}]})
            assert bad.status_code == 422  # its request schema: the login's fields
            # Its on-demand view reads views the service does not serve: the reader reads them
            # too, and serves what Feast's own read serves.
            import asyncio

            from serving.features import FeatureClient, OnlineReader

            live = c.app.state.store
            logins = [
                {"user_id": u, "login_ip": "192.0.2.11", "login_device": "d1"}
                for u in (1, 2, 3, 987654)
            ]
            ours = asyncio.run(OnlineReader(live).fetch(name, logins))
            theirs, _ = FeatureClient(live).fetch(name, logins)
            assert {"ip_is_common", "failed_logins_10m"} <= set(ours[0])
            for mine, other in zip(ours, theirs, strict=True):
                assert {n: (f.value, f.status) for n, f in mine.items()} == {
                    n: (other[n].value, other[n].status) for n in mine
                }
        # shut down: the log is drained into the service's own table
        logged = rows(db, f"SELECT `__request_id` FROM served_{name}")
        assert logged == [(prediction["request_id"],)]
        # An artefact trained on another service is refused at start, saying so.
        wrong = Settings(api_keys=api_keys(), models=["account_takeover"], models_dir=tmp_path)
        (tmp_path / "account_takeover").symlink_to(tmp_path / name)
        with pytest.raises(ModelConfigError, match="trained on feature service"):
            create_app(wrong)
    finally:
        store.delete_feature_service(name)  # the admin's store, made before the switch


def test_an_erased_subject_is_not_pushed_ingested_or_logged_again(client, db, stack):
    """Its own users (above the generated ids): erasing them touches no other test's data."""
    from feast import FeatureStore

    from pipelines import erase
    from tests.integration.test_ingest import counted

    subject, other = 9_500_001, 9_500_002
    now = dt.datetime.now(dt.UTC).isoformat()

    def pushed(user: int) -> dict:
        return {
            "user_id": user,
            "last_login_ip": "198.51.100.10",
            "last_login_device": "dev-erase",
            "last_login_country": "DE",
            "recent_ips": ["198.51.100.10"],
            "event_ts": now,
        }

    def login(event_id: int, user: int) -> dict:
        return {
            "event_id": event_id,
            "user_id": user,
            "event_ts": now,
            "ip": "198.51.100.10",
            "device_id": "dev-erase",
            "country": "DE",
            "success": True,
        }

    def predict(user: int) -> str:
        return predict_withdrawal(client, user)

    assert client.post("/v1/push/login_push", json={"events": [pushed(subject)]}).status_code == 200
    first = predict(subject)
    deadline = time.monotonic() + 10
    while not logged(db, first) and time.monotonic() < deadline:  # flushed every 0.2 s
        time.sleep(0.1)
    assert logged(db, first)
    with pytest.MonkeyPatch.context() as mp:  # the erasure runs as the writer role
        for key, value in {**stack["env"], **stack["accounts"]["writer"]}.items():
            mp.setenv(key, value)
        store = FeatureStore(repo_path=str(Path(__file__).resolve().parents[2] / "feature_repo"))
    done = erase.erase(store, subject, "dpo@example.com", "ticket 4", stack["broker"].url)
    assert done.erased["tidb:login_push_events"] == 1 and done.erased["redis:online"] == 1
    assert done.erased["tidb:served_withdrawal_fraud"] == 1

    # Pushes and events of the subject are dropped and counted; the other user's go through.
    before = client.get("/metrics").text
    out = client.post(
        "/v1/push/login_push", json={"events": [pushed(subject), pushed(other)]}
    ).json()
    assert (out["written"], out["erased"]) == (1, 1)
    out = client.post(
        "/v1/events/login",
        json={"events": [login(9_500_000_001, subject), login(9_500_000_002, other)]},
    ).json()
    assert (out["accepted"], out["erased"], out["ids"][0]) == (1, 1, "")
    metrics = client.get("/metrics").text
    name = "serving_erased_subject_events_total"
    assert counted(metrics, name, before, '{route="push_login_push"}') == 1
    assert counted(metrics, name, before, '{route="ingest_login"}') == 1
    # A request for the subject is answered, but not logged.
    gone, kept = predict(subject), predict(other)
    deadline = time.monotonic() + 10
    while not logged(db, kept) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logged(db, kept) and not logged(db, gone)
    for table in ("login_push_events", "served_withdrawal_fraud"):
        assert rows(db, f"SELECT COUNT(*) FROM {table} WHERE user_id = %s", (subject,)) == [(0,)]
    import redis

    online = redis.Redis.from_url(stack["redis"].url)
    assert not online.exists(erase.online_key(store, subject))
    assert online.exists(erase.online_key(store, other))
