"""The reader's choices that need no server: URLs, library choice, the paused collector."""

from __future__ import annotations

import pytest

from providers.tidb import reader
from providers.tidb.settings import TiDBSettings

BASE = {
    "TIDB_HOST": "tidb.internal",
    "TIDB_PORT": "4000",
    "TIDB_USER": "u@x",
    "TIDB_PASSWORD": "p@ss:w/rd%",
    "TIDB_DATABASE": "fraud",
}


def test_connectorx_url_encodes_credentials_and_never_uses_a_socket():
    url = reader.connectorx_url(TiDBSettings.from_env(BASE))
    assert url.startswith("mysql://u%40x:p%40ss%3Aw%2Frd%25@tidb.internal:4000/fraud?")
    assert "prefer_socket=false" in url and "tcp_connect_timeout_ms=10000" in url
    ipv6 = TiDBSettings.from_env({**BASE, "TIDB_HOST": "::1"})
    assert "@[::1]:4000/" in reader.connectorx_url(ipv6)


def test_tls_connections_never_go_through_connectorx():
    tls = TiDBSettings.from_env({**BASE, "TIDB_TLS": "true"})
    with pytest.raises(ValueError, match="No reader 'connectorx'"):
        reader.read_batches(tls, ("SELECT 1", []), library="connectorx")


def test_session_statements_set_utc_and_no_limit_by_default():
    assert reader.session_statements(TiDBSettings.from_env(BASE)) == ["SET time_zone = '+00:00'"]


def test_reads_pause_the_garbage_collector_and_restore_it():
    import gc

    assert gc.isenabled()
    with reader._gc_paused():
        with reader._gc_paused():  # two reads at once (a join's parts)
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with reader._gc_paused():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
