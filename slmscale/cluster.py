"""What every node of a Ray cluster can see: the checks behind "nothing assumes one machine".

On a cluster the driver (on the head) hands trials a tracking URI, a storage path for checkpoints
and the units paths; trials may run on other machines.  A `sqlite:` store, a `localhost` server or
a folder on the head's own disk then silently splits or loses runs and checkpoints.  These helpers
name what is node-local; the caller decides, knowing the cluster, whether that is an error:

    problems = node_local_problems(tracking_uri, storage_path, units_paths)
    if problems and spans_machines(node_ips, driver_ip):
        raise UserError("cluster: " + "; ".join(problems))

Platform edge, but no Ray or MLflow import: plain URI parsing and /proc/mounts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import urlparse

# Filesystems that other machines see too (network and cluster filesystems, object-store FUSE).
SHARED_FS_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "lustre",
        "ceph",
        "glusterfs",
        "gpfs",
        "beegfs",
        "fuse.gcsfuse",
        "fuse.s3fs",
        "fuse.mountpoint-s3",
        "fuse.juicefs",
        "fuse.sshfs",
    }
)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


def mount_fstype(path: str, mounts: str = "/proc/mounts") -> str | None:
    """The filesystem type of the mount holding `path` (longest mount point prefix), or None."""
    real = os.path.realpath(path)
    best, fstype = "", None
    try:
        with open(mounts) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype


def is_shared_path(path: str, mounts: str = "/proc/mounts") -> bool:
    """An object-store/remote URI (s3://, gs://, hdfs://, ...), or a folder on a network mount."""
    scheme = urlparse(str(path)).scheme
    if scheme and scheme != "file" and len(scheme) > 1:  # len 1: a Windows drive letter
        return True
    local = urlparse(str(path)).path if scheme == "file" else str(path)
    return mount_fstype(local, mounts) in SHARED_FS_TYPES


def tracking_is_node_local(uri: str) -> bool:
    """A SQLite/file store, or a server addressed as localhost: only this machine reaches it."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        host = (parsed.hostname or "").lower()
        return host in LOOPBACK_HOSTS or host.startswith("127.")
    if uri in ("databricks", "databricks-uc"):  # MLflow's names for a remote workspace
        return False
    return parsed.scheme in ("", "file", "sqlite")


def node_local_problems(
    tracking_uri: str, storage_path: str, units_paths: Iterable[str], mounts: str = "/proc/mounts"
) -> list[str]:
    """One phrase per thing trials on another machine could not reach (empty: all shared)."""
    problems = []
    if tracking_is_node_local(tracking_uri):
        problems.append(
            f"tracking URI {tracking_uri} is local to this machine "
            "(use the cluster's MLflow server, e.g. http://<head private IP>:5000)"
        )
    if not is_shared_path(storage_path, mounts):
        problems.append(
            f"storage path {storage_path} is on this machine's disk "
            "(use s3://, gs:// or a shared mount)"
        )
    for path in units_paths:
        if not is_shared_path(path, mounts):
            problems.append(f"units {path} are on this machine's disk (use a shared mount)")
    return problems


def spans_machines(node_ips: Iterable[str], driver_ip: str) -> bool:
    """Whether any live node is on another machine than the driver (one IP = one machine)."""
    return any(ip != driver_ip for ip in node_ips)
