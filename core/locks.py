"""One writer per table: an exclusive, non-blocking file lock per (layer, table).

Delta's local-filesystem log store serialises writers only inside one JVM, so two
`ecom run` processes on the same table would race. The lock file lives under
`.local/locks` and names the holder (pid, start time); it is released when the process
ends, even on kill -9, because the OS drops flock locks with the file descriptor.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from core.errors import LockBusyError
from core.settings import Settings


@contextmanager
def writer_lock(settings: Settings, name: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the lock `name` (e.g. `bronze.orders`) or refuse with who holds it.

    `wait_s` > 0 waits that long for a short critical section (e.g. a ledger append)."""
    # One lock namespace per lake: two lakes (e.g. a test's and the demo's) never contend.
    lake = hashlib.sha1(settings.lake_root.encode()).hexdigest()[:10]
    folder = settings.local_dir / "locks" / lake
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                raise LockBusyError(
                    f"{name} is being written by {holder}; one writer per table — wait for it to finish"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}".encode(), 0)
        yield
    finally:
        os.close(fd)
