"""The local stack: real MariaDB (TiDB stand-in) and Redis processes on loopback."""

from devstack.services import LOOPBACK, MariaDB, Redis, ServiceError, free_port

__all__ = [
    "LOOPBACK",
    "MariaDB",
    "Redis",
    "ServiceError",
    "free_port",
    "feast_redis_connection_string",
]


def feast_redis_connection_string(redis_url: str) -> str:
    """Turn `redis://[:password@]host:port[/db]` into Feast's `host:port,db=N[,password=...]` form."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(redis_url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ValueError(f"REDIS_URL must look like redis://host:port/0 (got {redis_url!r})")
    parts = [f"{parsed.hostname}:{parsed.port or 6379}"]
    db = (parsed.path or "/0").lstrip("/") or "0"
    parts.append(f"db={int(db)}")
    if parsed.password:
        parts.append(f"password={unquote(parsed.password)}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)
