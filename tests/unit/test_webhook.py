"""Webhook delivery against a real HTTP server on 127.0.0.1: payload, retries, timeout, redirects."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core import webhook
from core.errors import EcomError
from generator.sinks import BatchRecord
from generator.stream import BatchResult, payload

Behaviour = Callable[[BaseHTTPRequestHandler, int], None]


class Server:
    """A local HTTP server whose answer to the n-th request is decided by `behaviour`."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.requests: list[dict[str, object]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.requests.append(
                    {"path": self.path, "body": body, "content_type": self.headers.get("Content-Type")}
                )
                behaviour(self, len(server.requests))

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/batch"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def answer(status: int, headers: dict[str, str] | None = None) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler, n: int) -> None:
        handler.send_response(status)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return behave


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    yield


def no_sleep(_: float) -> None:
    return None


def test_posts_the_batch_document() -> None:
    record = BatchRecord(
        batch_id="b-1",
        seed=11,
        started_at=datetime(2025, 1, 2, 3, 4, 5),
        ended_at=datetime(2025, 1, 2, 3, 4, 9),
        inserted={"customers": 3, "orders": 2},
        updated={"orders": 1},
        keys={"customers": (1, 3), "orders": None},
        window=(datetime(2025, 1, 1, 3, 4, 5), datetime(2025, 1, 2, 3, 4, 5)),
        defects={"null_email": 1},
    )
    with Server(answer(204)) as server:
        delivery = webhook.post_json(server.url, payload(BatchResult(record, seconds=4.0)), sleep=no_sleep)
    assert delivery.ok and delivery.attempts == 1 and delivery.status == 204
    [req] = server.requests
    assert req["path"] == "/hooks/batch" and req["content_type"] == "application/json"
    assert json.loads(req["body"]) == {  # type: ignore[arg-type]
        "batch_id": "b-1",
        "started_at": "2025-01-02T03:04:05Z",
        "ended_at": "2025-01-02T03:04:09Z",
        "rows": {"customers": 3, "orders": 2},
        "updated": {"orders": 1},
        "defects": {"null_email": 1},
    }


def test_retries_server_errors_with_backoff() -> None:
    delays: list[float] = []

    def flaky(handler: BaseHTTPRequestHandler, n: int) -> None:
        answer(503 if n < 3 else 200)(handler, n)

    with Server(flaky) as server:
        delivery = webhook.post_json(server.url, {"x": 1}, retries=3, backoff=0.5, sleep=delays.append)
    assert delivery.ok and delivery.attempts == 3
    assert delays == [0.5, 1.0]
    assert len(server.requests) == 3


def test_gives_up_after_bounded_retries_and_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    delays: list[float] = []
    with Server(answer(500)) as server:
        delivery = webhook.post_json(server.url + "?token=s3cret", {"x": 1}, retries=2, sleep=delays.append)
    assert not delivery and delivery.attempts == 3 and delivery.status == 500
    assert len(server.requests) == 3 and len(delays) == 2
    assert "failed after 3 attempt(s)" in caplog.text
    assert "s3cret" not in caplog.text and "/hooks" not in caplog.text  # only scheme://host:port is logged


def test_client_errors_are_not_retried() -> None:
    with Server(answer(400)) as server:
        delivery = webhook.post_json(server.url, {"x": 1}, retries=3, sleep=no_sleep)
    assert not delivery and delivery.attempts == 1 and len(server.requests) == 1


def test_redirects_are_not_followed() -> None:
    with Server(answer(200)) as target, Server(answer(307, {"Location": target.url})) as server:
        delivery = webhook.post_json(server.url, {"x": 1}, retries=2, sleep=no_sleep)
    assert not delivery and delivery.status == 307 and "redirect not followed" in (delivery.error or "")
    assert delivery.attempts == 1
    assert target.requests == []  # the body never went to the redirect target


def test_timeout_is_bounded() -> None:
    def slow(handler: BaseHTTPRequestHandler, n: int) -> None:
        time.sleep(1.5)
        answer(200)(handler, n)

    with Server(slow) as server:
        began = time.monotonic()
        delivery = webhook.post_json(server.url, {"x": 1}, timeout=0.3, retries=1, sleep=no_sleep)
        took = time.monotonic() - began
    assert not delivery and delivery.attempts == 2 and delivery.status is None
    assert took < 1.4  # two attempts of 0.3 s, not the server's 1.5 s each
    assert "timed out" in (delivery.error or "").lower() or "timeout" in (delivery.error or "").lower()


def test_unreachable_host_is_a_logged_failure() -> None:
    with Server(answer(200)) as server:
        url = server.url
    delivery = webhook.post_json(url, {"x": 1}, retries=1, sleep=no_sleep)  # server closed: refused
    assert not delivery and delivery.attempts == 2


def test_timeout_setting_is_capped_at_ten_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []

    def fake_open(request: object, timeout: float) -> object:
        seen.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(webhook._OPENER, "open", fake_open)
    webhook.post_json("https://hooks.example.com/x", {"x": 1}, timeout=60, retries=0, sleep=no_sleep)
    assert seen == [10.0]


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "file:///etc/passwd", "example.com/hook", "http://", "https://:80/x"]
)
def test_refuses_what_is_not_http(url: str) -> None:
    with pytest.raises(EcomError, match="webhook URL"):
        webhook.post_json(url, {"x": 1})


def test_nothing_is_sent_without_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_batch only calls the webhook when ECOM_WEBHOOK_URL is set (checked end to end in integration)."""
    from core.settings import load_settings

    assert load_settings(webhook_url="").webhook_url is None
    assert load_settings(webhook_url="   ").webhook_url is None
