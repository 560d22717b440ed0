"""What a node answers when asked whether it reaches the tracking server, the storage path and the
units (slmscale.grid.node_reach), and the text of a waiting trial (cluster_state.pending_text).

No Ray here: the check is a plain function that a pinned Ray task runs on each node
(tests/test_cluster_autoscaling.py runs it on a fake worker node).
"""

from __future__ import annotations

import http.server
import threading

import pytest

from slmscale.grid.cluster_state import pending_text
from slmscale.grid.node_reach import reach_problems


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: nobody listens there


def test_everything_reachable_gives_no_problem(server, tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    assert reach_problems(server, str(tmp_path / "runs" / "grid"), [str(units)]) == []


def test_each_unreachable_thing_is_named(tmp_path):
    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o500)
    uri = f"http://127.0.0.1:{_closed_port()}"
    problems = reach_problems(uri, str(readonly), [str(tmp_path / "nope")], timeout_s=2)
    assert problems[0].startswith(f"tracking server {uri} unreachable")
    if not _root():  # root writes anywhere
        assert f"storage path {readonly} is not writable here" in problems
    assert f"units {tmp_path / 'nope'}: no such folder here" in problems


def _root() -> bool:
    import os

    return os.geteuid() == 0


def test_a_sqlite_store_missing_on_the_node_is_named(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert reach_problems(uri, str(tmp_path), []) == [f"tracking store {uri}: no such file here"]
    (tmp_path / "mlflow.db").write_bytes(b"")
    assert reach_problems(uri, str(tmp_path), []) == []


def test_an_object_store_without_access_is_named(tmp_path):
    # A scheme pyarrow cannot open here stands for any storage the node cannot reach.
    (problem,) = reach_problems("databricks", "nosuchfs://bucket/runs", [])
    assert problem.startswith("storage path nosuchfs://bucket/runs unreachable (")


BUNDLE = {"CPU": 1.0, "a10g": 1.0}


def _text(**kw) -> str:
    base = dict(never=[], infeasible=None, launching={}, latest=None, node_types="gpu.a10g ...")
    return pending_text(BUNDLE, **{**base, **kw})


def test_pending_text_says_what_the_trial_waits_for_and_why():
    head = "pending: waiting for {CPU: 1, a10g: 1}; autoscaler: "
    assert _text(launching={"gpu.a10g": 2}) == head + "starting 2 x gpu.a10g"
    assert _text(latest="Adding 1 node(s) of type gpu.a10g.") == (
        head + "Adding 1 node(s) of type gpu.a10g"
    )
    assert _text().startswith(head + "no node is being started")
    never = _text(never=["{CPU: 1, a10g: 1} per worker: no node type offers a10g"])
    assert never == head + (
        "{CPU: 1, a10g: 1} per worker: no node type offers a10g (node types: gpu.a10g ...)"
    )
    assert "no node type can fulfill it" in _text(infeasible="Error: No available node ...")
