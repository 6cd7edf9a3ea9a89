"""The alert log's receiver (salt/alertmanager/files/alert-log.py), run on
this host's loopback: what Alertmanager posts becomes one JSON line per
alert; anything else is refused and writes nothing."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import REPO, load_module

alert_log = load_module("salt/alertmanager/files/alert-log.py", "alert_log")
# A notification in Alertmanager's webhook format (version 4, as its documentation gives it).
NOTIFICATION = (REPO / "tests" / "fixtures" / "alertmanager-webhook-nodedown.json").read_bytes()


@pytest.fixture
def receiver(tmp_path):
    path = tmp_path / "alerts.jsonl"
    server = ThreadingHTTPServer(("127.0.0.1", 0), alert_log.handler(alert_log.Log(str(path), 4096)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], path
    server.shutdown()
    server.server_close()


def post(port: int, body: bytes, method: str = "POST") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, "/", body=body, headers={"Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_each_alert_of_a_notification_is_one_line(receiver):
    port, path = receiver
    sent = json.loads(NOTIFICATION)
    assert post(port, NOTIFICATION) == 200
    logged = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(logged) == len(sent["alerts"]) >= 1
    for line, alert in zip(logged, sent["alerts"], strict=True):
        assert line["status"] == alert["status"] and line["labels"] == alert["labels"]
        assert line["startsAt"] == alert["startsAt"] and line["receiver"] == sent["receiver"]
        assert line["annotations"]["summary"] == alert["annotations"]["summary"]


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"alerts": "no list"}', b"[1, 2]", b'{"alerts": [1]}', b"\xff\xfe"],
)
def test_what_is_not_a_notification_is_refused_and_writes_nothing(receiver, body):
    port, path = receiver
    assert post(port, body) == 400
    assert post(port, b"", method="PUT") == 501
    assert not path.exists()


def test_a_body_over_the_limit_is_refused_before_it_is_read(receiver):
    # Only the headers go: the receiver answers on the declared length, and a
    # client still sending a body it will not read would meet a closed socket.
    port, path = receiver
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest("POST", "/")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(alert_log.MAX_BODY + 1))
        conn.endheaders()
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    assert not path.exists()


def test_past_its_size_the_log_moves_to_one_older_generation(receiver):
    port, path = receiver
    while not Path(f"{path}.1").exists():
        assert post(port, NOTIFICATION) == 200
    older = Path(f"{path}.1").read_text()
    assert len(older) > 4096 and path.read_text().count("\n") == len(json.loads(NOTIFICATION)["alerts"])
