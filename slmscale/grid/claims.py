"""One trainer per trial at a time, whatever runs at once: claims taken before a trial trains.

Two `slmscale grid` drivers (or a grid and a `slmscale train`) on one spec and store must not
both create a run for a trial key, nor both train into its `trial-<key>` checkpoint folder.
Nothing in MLflow is a compare-and-set, so the claim is a file lock: an exclusive,
non-blocking `flock` on `<claims dir>/<key>.lock`.  It is atomic; it is released when the holder
lets go *or dies* (SIGKILL included), so a crashed driver never leaves a stale claim and a
rerun resumes at once; and it is honoured across machines on a shared filesystem (NFS).

The claims folder belongs to the store, so every driver that writes the same runs finds it:
- a SQLite store: beside the database file, `<db>.claims/<experiment id>/`;
- a tracking server with a local or mounted storage path: `<storage>/.claims/<experiment id>/`;
- a tracking server with object storage (s3://, gs://): this machine's output root, so drivers
  must run on one machine (`ray job submit` runs them all on the head node).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path


def claims_dir(tracking_uri: str, storage_path: str, experiment_id: str) -> Path:
    from slmscale.tracking.store import sqlite_path

    db = sqlite_path(tracking_uri)
    if db is not None:
        return db.with_name(db.name + ".claims") / str(experiment_id)
    if "://" not in storage_path or storage_path.startswith("file://"):
        return Path(storage_path.removeprefix("file://")) / ".claims" / str(experiment_id)
    from slmscale.paths import output_root

    store = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
    return output_root() / "claims" / store / str(experiment_id)


class Claims:
    """The claims this process holds in one claims folder (a context manager releases them all)."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self._held: dict[str, int] = {}

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.lock"

    def try_claim(self, key: str) -> bool:
        """Claim `key` now if nobody holds it (True), else False; never waits."""
        import fcntl

        if key in self._held:
            return True
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path(key), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode())
        self._held[key] = fd
        return True

    def claim(self, key: str, poll_s: float = 1.0, on_wait=None) -> None:
        """Claim `key`, waiting for its holder to let go; `on_wait(holder)` is called once."""
        told = False
        while not self.try_claim(key):
            if not told and on_wait is not None:
                on_wait(self.holder(key))
                told = True
            time.sleep(poll_s)

    def holder(self, key: str) -> str:
        """Who holds `key` (as the holder wrote it), for messages."""
        try:
            return self.path(key).read_text().strip() or "another process"
        except OSError:
            return "another process"

    def held(self, key: str) -> bool:
        return key in self._held

    def release(self, key: str) -> None:
        fd = self._held.pop(key, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def release_all(self) -> None:
        for key in list(self._held):
            self.release(key)

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, *exc) -> None:
        self.release_all()
