"""API keys: made, hashed, loaded from the environment or a file; no key, no server."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from serving import keys
from serving.settings import Settings


def test_new_key_is_stored_as_its_hash_only(tmp_path, capsys):
    out = tmp_path / "keys.json"
    assert (
        keys.main(["new", "--name", "scorer", "--scopes", "predict,admin", "--out", str(out)]) == 0
    )
    key = capsys.readouterr().out.split("key: ")[1].split()[0]
    stored = json.loads(out.read_text())
    assert stored == {"scorer": {"sha256": keys.digest(key), "scopes": ["admin", "predict"]}}
    assert key not in out.read_text() and oct(out.stat().st_mode & 0o777) == "0o600"
    settings = Settings(api_keys_file=out)
    assert settings.api_keys["scorer"].scopes == {"predict", "admin"}
    with pytest.raises(SystemExit):  # a name is not reused
        keys.main(["new", "--name", "scorer", "--scopes", "predict", "--out", str(out)])


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "no API key is configured"),
        ({"api_keys": {"a": {"sha256": "abc", "scopes": ["predict"]}}}, "64 lowercase hex"),
        ({"api_keys": {"a": {"sha256": "a" * 64, "scopes": []}}}, "at least 1"),
        ({"api_keys": {"a": {"sha256": "a" * 64, "scopes": ["root"]}}}, "predict"),
        (
            {
                "api_keys": {
                    "a": {"sha256": "a" * 64, "scopes": ["predict"]},
                    "b": {"sha256": "a" * 64, "scopes": ["admin"]},
                }
            },
            "same key",
        ),
    ],
)
def test_bad_key_settings_stop_the_server_saying_what_to_fix(given, message, monkeypatch):
    monkeypatch.delenv("SERVING_API_KEYS", raising=False)
    monkeypatch.delenv("SERVING_API_KEYS_FILE", raising=False)
    with pytest.raises(ValidationError, match=message):
        Settings(**given)


def test_keys_from_the_environment_as_json(monkeypatch):
    monkeypatch.setenv(
        "SERVING_API_KEYS", json.dumps({"ops": {"sha256": "b" * 64, "scopes": ["admin"]}})
    )
    assert Settings().api_keys["ops"].scopes == {"admin"}


def test_unknown_scope_on_the_command_line_is_refused(capsys):
    with pytest.raises(SystemExit):
        keys.main(["new", "--name", "x", "--scopes", "predict,root"])
    assert "unknown ['root']" in capsys.readouterr().err
