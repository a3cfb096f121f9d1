"""SMS and voice calls through the official ``twilio`` SDK.

The SDK's HTTP layer is replaced by :class:`HttpxTwilioHttpClient`, which

* sends to a configurable base URL (``https://api.twilio.com`` by default; tests point it at a
  local fake server),
* adds the ``I-Twilio-Idempotency-Token`` header (the delivery's idempotency key) so a retry after
  a crash does not send a second message, and
* turns timeouts and connection errors into :class:`RetryableNotifyError`.

Twilio answers 429 and 5xx: retryable; any other 4xx: permanent.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from vocalis.errors import require
from vocalis.notify.base import (
    AlertInfo,
    ContactInfo,
    DeliveryInfo,
    PermanentNotifyError,
    RetryableNotifyError,
    UserInfo,
    alert_text,
)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
TWILIO_API = "https://api.twilio.com"

_http_client_base: Any
try:
    import twilio.http as _twilio_http

    _http_client_base = _twilio_http.HttpClient
except ImportError:  # pragma: no cover - the twilio extra is missing; TwilioNotifier says so
    _http_client_base = object


class HttpxTwilioHttpClient(_http_client_base):  # type: ignore[misc]
    """A ``twilio.http.HttpClient`` on httpx: base URL override, idempotency header, timeouts."""

    def __init__(self, base_url: str = TWILIO_API, timeout: float = 10.0) -> None:
        import logging

        import httpx

        super().__init__(logging.getLogger("vocalis.notify.twilio"), False, timeout)
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout)
        self._local = threading.local()

    def set_idempotency_token(self, token: str | None) -> None:
        """The token added to requests made from this thread until reset with ``None``."""
        self._local.token = token

    def _rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        if not parts.netloc.endswith("twilio.com"):
            return url
        base = urlsplit(self.base_url)
        return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, ""))

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Any:
        import httpx
        from twilio.http.response import Response

        hdrs = dict(headers or {})
        token = getattr(self._local, "token", None)
        if token:
            hdrs[IDEMPOTENCY_HEADER] = token
        try:
            r = self._client.request(
                method, self._rewrite(url), params=params, data=data, headers=hdrs,  # type: ignore[arg-type]
                auth=auth, timeout=timeout or self.timeout, follow_redirects=allow_redirects,
            )
        except httpx.TimeoutException as e:
            raise RetryableNotifyError(f"twilio: request timed out after {timeout or self.timeout}s") from e
        except httpx.TransportError as e:
            raise RetryableNotifyError(f"twilio: connection failed ({type(e).__name__}: {e})") from e
        return Response(int(r.status_code), r.text, r.headers)

    def close(self) -> None:
        self._client.close()


def voice_twiml(text: str) -> str:
    """Inline TwiML that reads ``text`` twice (escaped by the SDK's TwiML builder)."""
    from twilio.twiml.voice_response import VoiceResponse

    r = VoiceResponse()
    r.say(text)
    r.pause(length=1)
    r.say(text)
    return str(r)


class TwilioNotifier:
    """Sends ``sms`` (``client.messages.create``) and ``call`` (``client.calls.create`` with ``<Say>``)."""

    channels = ("sms", "call")

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        *,
        base_url: str = TWILIO_API,
        timeout: float = 10.0,
    ) -> None:
        require("twilio", "serve")
        from twilio.rest import Client

        self.from_number = from_number
        self.http = HttpxTwilioHttpClient(base_url, timeout)
        self.client = Client(account_sid, auth_token, http_client=self.http)

    def send(self, delivery: DeliveryInfo, alert: AlertInfo, contact: ContactInfo, user: UserInfo) -> str:
        from twilio.base.exceptions import TwilioRestException

        if not contact.phone:
            raise PermanentNotifyError(f"contact={contact.id} has no phone number for channel={delivery.channel}")
        text = alert_text(alert, user)
        self.http.set_idempotency_token(delivery.idempotency_key)
        try:
            if delivery.channel == "sms":
                msg = self.client.messages.create(to=contact.phone, from_=self.from_number, body=text)
                return str(msg.sid)
            if delivery.channel == "call":
                call = self.client.calls.create(to=contact.phone, from_=self.from_number, twiml=voice_twiml(text))
                return str(call.sid)
            raise PermanentNotifyError(f"channel={delivery.channel!r} must be 'sms' or 'call' for Twilio")
        except TwilioRestException as e:
            status = int(e.status)
            detail = f"twilio: HTTP {status} code={e.code}: {e.msg}"
            if status == 429 or status >= 500:
                raise RetryableNotifyError(detail) from e
            raise PermanentNotifyError(detail) from e
        finally:
            self.http.set_idempotency_token(None)

    def close(self) -> None:
        self.http.close()
