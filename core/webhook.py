"""Small, safe JSON webhooks: batch notifications now, pipeline alerts later.

`post_json` sends one JSON document to an http(s) URL with a bounded timeout (≤ 10 s), a
bounded number of retries with exponential backoff (connection errors, timeouts, 408, 429
and 5xx are retried; other answers are final), and never follows a redirect (a 3xx is a
failure: a webhook that moved must be reconfigured, and following it could leak the body
elsewhere). Delivery failures are logged and returned, never raised: a notification must
not undo the work it reports. Only a malformed URL raises, because that is configuration.
Logs name the scheme and host only: webhook paths often embed a secret token.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core.errors import SettingsError

log = logging.getLogger("ecom.webhook")

MAX_TIMEOUT_S = 10.0
MAX_BACKOFF_S = 8.0
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "ecom-lakehouse-webhook/1"


class WebhookConfigError(SettingsError):
    """The webhook URL is not a usable http(s) URL."""


def validate_url(url: str) -> str:
    """Return the URL if it is an absolute http(s) URL with a host, else raise saying why."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        shown = parts.scheme or "no"
        raise WebhookConfigError(f"webhook URL must be http:// or https://, got {shown!r} scheme (ECOM_WEBHOOK_URL)")
    if not parts.hostname:
        raise WebhookConfigError("webhook URL has no host (ECOM_WEBHOOK_URL)")
    try:
        _ = parts.port
    except ValueError:
        raise WebhookConfigError("webhook URL has an invalid port (ECOM_WEBHOOK_URL)") from None
    return url.strip()


def redact(url: str) -> str:
    """scheme://host[:port] — enough to say where, nothing secret."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


@dataclass(frozen=True)
class Delivery:
    """The outcome of one `post_json` call."""

    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None

    def __bool__(self) -> bool:
        return self.ok


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_json(
    url: str,
    payload: Mapping[str, Any],
    *,
    timeout: float = 5.0,
    retries: int = 3,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    logger: logging.Logger = log,
) -> Delivery:
    """POST `payload` as JSON; retry transient failures; return the outcome, never raise on delivery."""
    validate_url(url)
    timeout = min(max(timeout, 0.1), MAX_TIMEOUT_S)
    retries = max(0, min(retries, 10))
    body = json.dumps(payload, default=str, separators=(",", ":")).encode()
    where = redact(url)
    status: int | None = None
    error = ""
    for attempt in range(1, retries + 2):
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                status = response.status
                response.read(65536)
            if 200 <= status < 300:
                return Delivery(True, attempt, status)
            error, retry = f"HTTP {status}", status in RETRYABLE_STATUS
        except urllib.error.HTTPError as exc:
            status = exc.code
            retry = exc.code in RETRYABLE_STATUS
            error = f"HTTP {exc.code}" + (" (redirect not followed)" if 300 <= exc.code < 400 else "")
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            error, retry, status = f"{type(reason).__name__}: {reason}", True, None
        if not retry or attempt > retries:
            break
        delay = min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_S)
        logger.info("webhook to %s: %s, retry %d/%d in %.1fs", where, error, attempt, retries, delay)
        sleep(delay)
    logger.warning("webhook to %s failed after %d attempt(s): %s", where, attempt, error)
    return Delivery(False, attempt, status, error)
