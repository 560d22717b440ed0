"""slmscale.cluster: naming what trials on another machine could not reach."""

from __future__ import annotations

import pytest

from slmscale.cluster import (
    is_shared_path,
    mount_fstype,
    node_local_problems,
    spans_machines,
    tracking_is_node_local,
)

MOUNTS = """\
/dev/root / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
fs-123.efs.us-west-2.amazonaws.com:/ /mnt/efs nfs4 rw,vers=4.1 0 0
/dev/nvme1n1 /mnt/efs/scratch ext4 rw 0 0
gcsfuse /mnt/my\\040bucket fuse.gcsfuse rw 0 0
"""


@pytest.fixture
def mounts(tmp_path):
    path = tmp_path / "mounts"
    path.write_text(MOUNTS)
    return str(path)


@pytest.mark.parametrize(
    "path, fstype",
    [
        ("/home/me/units", "ext4"),
        ("/tmp/x", "tmpfs"),
        ("/mnt/efs", "nfs4"),
        ("/mnt/efs/units/smoke", "nfs4"),
        ("/mnt/efs/scratch/ckpt", "ext4"),  # a local disk mounted inside the share
        ("/mnt/efsother/x", "ext4"),  # a prefix of the name is not a parent folder
        ("/mnt/my bucket/units", "fuse.gcsfuse"),
    ],
)
def test_mount_fstype_takes_the_innermost_mount(mounts, path, fstype):
    assert mount_fstype(path, mounts) == fstype


@pytest.mark.parametrize(
    "path, shared",
    [
        ("s3://bucket/slmscale/ray_results", True),
        ("gs://bucket/x", True),
        ("hdfs://namenode/x", True),
        ("/mnt/efs/ray_results", True),
        ("file:///mnt/efs/ray_results", True),
        ("/home/me/grid_runs/smoke", False),
        ("file:///home/me/x", False),
        ("grid_runs/smoke", False),
    ],
)
def test_is_shared_path(mounts, path, shared):
    assert is_shared_path(path, mounts) is shared


@pytest.mark.parametrize(
    "uri, local",
    [
        ("sqlite:////home/me/mlflow.db", True),
        ("file:///home/me/mlruns", True),
        ("./mlruns", True),
        ("http://127.0.0.1:5000", True),
        ("http://localhost:5000", True),
        ("http://127.0.1.1:5000", True),
        ("http://10.0.3.7:5000", False),
        ("https://mlflow.example.org", False),
        ("databricks", False),
        ("databricks://profile", False),
        ("postgresql://db.internal/mlflow", False),
    ],
)
def test_tracking_is_node_local(uri, local):
    assert tracking_is_node_local(uri) is local


def test_node_local_problems_names_each_unreachable_thing(mounts):
    problems = node_local_problems(
        "sqlite:///home/me/mlflow.db",
        "/home/me/grid_runs/smoke",
        ["/mnt/efs/units/a", "/home/me/units/b"],
        mounts,
    )
    assert len(problems) == 3
    assert "sqlite:///home/me/mlflow.db" in problems[0]
    assert "/home/me/grid_runs/smoke" in problems[1]
    assert "/home/me/units/b" in problems[2]


def test_a_cluster_set_up_as_docs_say_has_no_problems(mounts):
    assert node_local_problems("http://10.0.3.7:5000", "s3://b/r", ["/mnt/efs/units"], mounts) == []


def test_spans_machines():
    assert not spans_machines(["10.0.0.1", "10.0.0.1"], "10.0.0.1")
    assert spans_machines(["10.0.0.1", "10.0.0.2"], "10.0.0.1")
