"""What a Python worker of the stream job keeps between tasks (spark_jobs/stream.py, BUCKETS).

A module of its own, imported by name inside the worker: the job runs as `__main__`, whose
functions and classes cloudpickle ships by value, their globals included, so a dict defined there
would be a fresh copy in every task.
"""

from __future__ import annotations

from typing import Any

# (view, bucket) -> (token, {key: KeyWindows or its JSON}): the window state this worker last wrote
# for a bucket. Valid only while the bucket's stored token is the same: a failed or replayed
# batch, or another worker's write, changes or rolls back the token.
WRITTEN: dict[tuple[str, int], tuple[str, dict[int, Any]]] = {}

# (view, bucket) -> the erasure mirror's version (providers/erasure.py) whose erased keys this
# worker last dropped from the bucket's windows.
PURGED: dict[tuple[str, int], int] = {}
