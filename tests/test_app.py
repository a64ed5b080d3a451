"""create_app's database engine: every wait is bounded, including a peer that vanished."""

from __future__ import annotations

from throttle_app.extensions import db


def test_connections_notice_a_dead_database_peer(app):
    """TCP keepalives and a user timeout: after a failover without a reset, pooled connections
    fail within about 25 s instead of hanging for the kernel's 15 minutes."""
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            params = raw.driver_connection.get_dsn_parameters()
        finally:
            raw.close()
    assert params["keepalives"] == "1"
    assert int(params["keepalives_idle"]) <= 10
    assert int(params["tcp_user_timeout"]) <= 30_000
    assert params["connect_timeout"]
