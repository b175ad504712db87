"""The skew report's gate and CLI validation (the report itself runs on real services in
tests/integration/test_serving.py and tests/e2e/test_loop.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines import skew


def report(*rows):
    return pd.DataFrame(rows, columns=["feature", "kind", "rows", "mismatches"])


def test_gate_flags_batch_features_above_the_rate_only():
    r = report(
        ("user_logins__failed_logins_1d", "batch", 100, 2),
        ("user_profile__top_ips", "batch", 100, 0),
        ("user_last_login__last_login_ip", "push", 100, 90),  # push lag is reported, not gated
        ("login_context__ip_is_common", "on_demand", 100, 50),
    )
    assert skew.gate(r, 0.0) == [
        "user_logins__failed_logins_1d: 2 of 100 rows mismatch (2.00% > 0.00%)"
    ]
    assert skew.gate(r, 0.02) == []  # exactly at the limit passes


def test_gate_on_an_empty_window_passes():
    assert skew.gate(report(), 0.0) == []


@pytest.mark.parametrize("bad", ["-0.1", "1.5", "lots"])
def test_rate_flag_is_validated(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        skew.main(["withdrawal_fraud", "--max-batch-mismatch-rate", bad])
    assert exit_.value.code == 2
    assert "--max-batch-mismatch-rate" in capsys.readouterr().err


def test_window_must_be_ordered(capsys):
    with pytest.raises(SystemExit):
        skew.main(
            [
                "withdrawal_fraud",
                "--since",
                "2026-03-02T00:00:00Z",
                "--until",
                "2026-03-01T00:00:00Z",
            ]
        )
    assert "is not before" in capsys.readouterr().err
