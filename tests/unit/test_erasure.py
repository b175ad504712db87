"""Erasure helpers that need no server: which dead letters name a subject, how a key is matched."""

from __future__ import annotations

import pickle

import pytest

from pipelines.erase import _key_match, _scrub
from providers.erasure import MirrorCheck, erased_set_key, subject_of


@pytest.mark.parametrize(
    ("message", "named"),
    [
        ('{"user_id": 42, "ip": "x"}', True),
        ('{"user_id": "42"}', True),
        ('{"user_id": " 42 "}', True),
        ('{"user_id": 42.0}', True),
        ('{"user_id": "+42"}', True),
        ('{"user_id": "042"}', True),
        ('{"user_id": 42, "ip": "cut at 65,000 charact', True),
        ('{"user_id": "42.5"}', False),
        ('{"user_id": 420}', False),
        ('{"user_id": "4242"}', False),
        ('{"user_id": true}', False),
        ('{"device_id": "42"}', False),
        ("[42]", False),
        ("user_id=42 (not JSON)", False),
        ("", False),
    ],
)
def test_a_message_names_the_subject_only_in_its_user_id_as_ingest_reads_it(message, named):
    assert (subject_of(message) == 42) is named


def test_keys_are_matched_as_numbers_or_as_utf8_bytes_never_through_a_collation():
    assert _key_match("bigint", 42) == ("`user_id` = %s", 42)
    assert _key_match("varbinary", 42) == ("`user_id` = %s", b"42")
    condition, key = _key_match("varchar", 42)
    assert condition == "CAST(CONVERT(`user_id` USING utf8mb4) AS BINARY) = %s" and key == b"42"


def test_the_audit_error_never_carries_the_key():
    assert _scrub("Duplicate entry '42' for key", 42) == "Duplicate entry '<subject>' for key"


def test_the_workers_check_travels_to_spark_and_names_one_set_per_project():
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig

    check = MirrorCheck(RedisOnlineStoreConfig(connection_string="localhost:1"), "fraud")
    assert pickle.loads(pickle.dumps(check)) == check
    assert erased_set_key("fraud") == b"{feature_platform:fraud}:erased"
