"""The stream job refuses a checkpoint whose window state it would misread."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from spark_jobs.settings import SettingsError
from spark_jobs.stream import DEFINITIONS_FILE, LAYOUT_FILE, STATE_LAYOUT, _check_definitions

VIEWS = [SimpleNamespace(name="user_login_velocity", definition_hash="a1")]


def test_a_new_checkpoint_records_definitions_and_layout(tmp_path):
    _check_definitions(str(tmp_path), VIEWS)
    assert json.loads((tmp_path / DEFINITIONS_FILE).read_text()) == {"user_login_velocity": "a1"}
    assert (tmp_path / LAYOUT_FILE).read_text() == STATE_LAYOUT
    _check_definitions(str(tmp_path), VIEWS)  # the same job again: accepted


def test_changed_definitions_are_refused(tmp_path):
    _check_definitions(str(tmp_path), VIEWS)
    changed = [SimpleNamespace(name="user_login_velocity", definition_hash="b2")]
    with pytest.raises(SettingsError, match=r"\['user_login_velocity'\] changed"):
        _check_definitions(str(tmp_path), changed)


def test_a_checkpoint_of_another_state_layout_is_refused(tmp_path):
    # What the job wrote before its state was bucketed: definitions, no layout.
    (tmp_path / DEFINITIONS_FILE).write_text(json.dumps({"user_login_velocity": "a1"}))
    with pytest.raises(SettingsError, match="another layout"):
        _check_definitions(str(tmp_path), VIEWS)
    (tmp_path / LAYOUT_FILE).write_text("map-per-bucket/8")
    with pytest.raises(SettingsError, match="another layout"):
        _check_definitions(str(tmp_path), VIEWS)
