"""Alerts for failed checkpoints, sent through the project's one webhook client.

`core.webhook.post_json` (http(s) only, bounded timeout and retries, no redirects, never
raises on delivery) is the only way this project POSTs anything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from core import console
from core.errors import EcomError
from core.settings import Settings
from core.webhook import post_json

log = logging.getLogger("ecom.expectations.alerts")


def send_alert(settings: Settings, payload: Mapping[str, Any]) -> bool | None:
    """POST `payload` to `ECOM_WEBHOOK_URL`. True/False: delivered or not; None: no URL set.

    Never raises: a failed alert must not hide the failed checkpoint it reports.
    """
    if not settings.webhook_url:
        log.info("no ECOM_WEBHOOK_URL: checkpoint alert for %s not sent", payload.get("checkpoint"))
        return None
    try:
        delivery = post_json(
            settings.webhook_url,
            payload,
            timeout=settings.webhook_timeout_s,
            retries=settings.webhook_retries,
        )
    except (EcomError, ValueError) as exc:  # a malformed URL is configuration: say so, keep going
        console.warn(f"checkpoint alert not sent: {exc}")
        return False
    if not delivery:
        console.warn(f"checkpoint alert for {payload.get('checkpoint')} not delivered: {delivery.error}")
    return bool(delivery)
