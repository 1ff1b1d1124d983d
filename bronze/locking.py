"""Bronze's writer locks, scoped to the lake they protect.

`core.locks.writer_lock` names a lock per checkout (`.local/locks/<name>.lock`), but what
needs one writer is a Delta table, i.e. a path: two lakes (a test's temporary lake and the
project's `lake/`) never race, so their locks must not collide. The project's default lake
keeps the plain name (`bronze.orders`); any other lake gets a short digest of its root.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from core.errors import LockBusyError
from core.locks import writer_lock
from core.settings import Settings, project_dir

LOCK_WAIT_S = 60.0


def lock_name(settings: Settings, name: str) -> str:
    """`name` for the default lake, `name@<digest of the lake root>` for any other."""
    if settings.lake_root == _default_lake_root():
        return name
    return f"{name}@{hashlib.sha1(settings.lake_root.encode()).hexdigest()[:10]}"


def _default_lake_root() -> str:
    default = Path(Settings.model_fields["lake_root"].default)  # resolved as the settings validator does
    return str(default if default.is_absolute() else (project_dir() / default).resolve())


@contextmanager
def table_lock(settings: Settings, name: str) -> Iterator[None]:
    """The one-writer lock of `name` in this lake; a second writer gets `LockBusyError` at once."""
    with writer_lock(settings, lock_name(settings, name)):
        yield


@contextmanager
def waiting_lock(settings: Settings, name: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """`table_lock`, retried for up to `wait_s`: for short critical sections several runs share."""
    deadline = time.monotonic() + wait_s
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(table_lock(settings, name))
                break
            except LockBusyError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
        yield
