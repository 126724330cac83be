"""Signed webhooks, as the Standard Webhooks specification has them (standardwebhooks.com).

Each delivery carries ``webhook-id`` (the same for every try of one message: the receiver's
idempotency key), ``webhook-timestamp`` (Unix seconds, so a receiver can refuse replays) and
``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}`` under the
hospital's secret. Secrets are ``whsec_`` and 32 random bytes in base64 (``hms hospitals
webhook``). A delivery succeeds on any 2xx answer; anything else raises :class:`DeliveryFailed`,
so the job is tried again later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import httpx

PREFIX = "whsec_"


class DeliveryFailed(Exception):
    """The receiver did not take the message (an answer other than 2xx, or none)."""


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    mac = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


async def deliver(
    client: httpx.AsyncClient, url: str, secret: str, message_id: str, body: bytes
) -> None:
    """POST one signed message; raises :class:`DeliveryFailed` unless the receiver took it.

    The error names the status or the transport failure's class, never the body (it holds
    contact data) nor the URL (a receiver may put a token in it)."""
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "hms-webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as error:
        raise DeliveryFailed(type(error).__name__) from None
    if not response.is_success:
        raise DeliveryFailed(f"HTTP {response.status_code}")
