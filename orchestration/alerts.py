"""Failure alerts: every task's `on_failure_callback` POSTs one JSON message to the webhook.

The URL comes from the Airflow Variable `ecom_webhook_url`, else `ECOM_WEBHOOK_URL`; only
http(s) is accepted. The post uses the project's webhook client (`core.webhook.post_json`),
imported when an alert is sent, never at parse time, with one try and a timeout of at most
10 s. The callback never raises: an alert that cannot be sent is logged, and the task's own
failure stays the story.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

VARIABLE = "ecom_webhook_url"
ENV_VAR = "ECOM_WEBHOOK_URL"
TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 10.0


def webhook_url(variable_value: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The alert URL: the Variable wins over the environment; anything but http(s) is refused."""
    env = os.environ if env is None else env
    for candidate in (variable_value, env.get(ENV_VAR)):
        if candidate and candidate.strip():
            url = candidate.strip()
            if url.startswith(("http://", "https://")):
                return url
            log.warning("alert webhook ignored: %r is not an http(s) URL", url.split(":", 1)[0] + ":…")
            return None
    return None


def failure_payload(context: dict[str, Any]) -> dict[str, Any]:
    """The alert message: which task of which run failed, how often it tried, and why."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    exc = context.get("exception")
    logical = context.get("logical_date")
    return {
        "source": "airflow",
        "event": "task_failed",
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "max_tries": getattr(ti, "max_tries", None),
        "logical_date": logical.isoformat() if isinstance(logical, datetime) else None,
        "error": (f"{type(exc).__name__}: {exc}" if exc is not None else None),
        "log_url": getattr(ti, "log_url", None),
    }


def _variable_url() -> str | None:
    try:
        from airflow.sdk import Variable

        value = Variable.get(VARIABLE, default=None)
    except Exception as exc:  # no API / DB reachable: fall back on the environment
        log.info("alert webhook: Variable %s unreadable (%s); using %s", VARIABLE, exc, ENV_VAR)
        return None
    return str(value) if value else None


def post_alert(url: str, payload: dict[str, Any], timeout: float = TIMEOUT_S) -> None:
    """POST the payload with the project's webhook client (one try; the timeout ≤ 10 s).

    Raises when the alert was not delivered; `alert_on_failure` turns that into a log line.
    """
    from core.webhook import post_json

    delivery = post_json(url, payload, timeout=min(timeout, MAX_TIMEOUT_S), retries=0)
    if not delivery:
        raise RuntimeError(f"webhook refused the alert: {delivery.error}")


def alert_on_failure(context: dict[str, Any]) -> None:
    """`on_failure_callback` of every task: post the failure to the webhook; never raise."""
    try:
        url = webhook_url(_variable_url())
        if url is None:
            log.info("no alert webhook configured (Variable %s or %s)", VARIABLE, ENV_VAR)
            return
        payload = failure_payload(context)
        post_alert(url, payload)
        log.info("failure alert posted for %s.%s", payload["dag_id"], payload["task_id"])
    except Exception as exc:
        log.warning("failure alert not sent: %s: %s", type(exc).__name__, exc)
