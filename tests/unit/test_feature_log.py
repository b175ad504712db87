"""The served-feature log writer process: start-up failures are reported, not swallowed."""

from __future__ import annotations

import pytest

from serving.feature_log import ServedFeatureLogger


def test_a_writer_that_cannot_load_the_repo_fails_the_start_with_the_reason(tmp_path):
    logger = ServedFeatureLogger(str(tmp_path))  # no feature_store.yaml here
    with pytest.raises(RuntimeError, match="could not start: .*feature_store.yaml"):
        logger.start(timeout=60)
    logger.process.join(10)
    assert not logger.process.is_alive()


def test_stop_before_start_is_a_no_op():
    ServedFeatureLogger("unused").stop()
