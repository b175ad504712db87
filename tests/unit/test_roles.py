"""`python -m providers.tidb.roles D`: the statements a DBA runs, with placeholders for accounts."""

from __future__ import annotations

import pytest

from providers.tidb import roles


def test_printed_statements_name_every_role_and_never_a_real_password(capsys):
    assert roles.main(["fraud", "--log-table", "served_new_model"]) == 0
    out = capsys.readouterr().out
    assert "GRANT SELECT ON `fraud_registry`.* TO '<serving user>'@'%';" in out
    assert "GRANT ALL PRIVILEGES ON `fraud_scratch`.* TO '<reader user>'@'%';" in out
    assert (
        "GRANT SELECT, INSERT, CREATE ON `fraud`.`login_push_events` TO '<serving user>'@'%';"
        in out
    )
    assert out.count("IDENTIFIED BY '<password>'") == 2 * len(roles.ROLES)
    assert "ON `fraud`.`served_new_model` TO '<serving user>'@'%';" in out
    assert "DROP" not in out  # on the data: only ALL on the registry's and scratch databases


def test_a_database_name_no_server_accepts_is_refused():
    from providers.tidb.errors import InvalidIdentifier

    with pytest.raises(InvalidIdentifier):
        roles.main(["x" * 65])
