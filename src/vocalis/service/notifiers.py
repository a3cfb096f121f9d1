"""Build the notifiers the relay uses from :class:`Settings` (nothing is sent here)."""

from __future__ import annotations

import logging

from vocalis.notify.base import Notifier
from vocalis.service.settings import Settings

log = logging.getLogger("vocalis.service")


def build_notifiers(settings: Settings) -> dict[str, Notifier]:
    """Channel -> notifier. A channel whose provider is not configured is left out; the relay
    then marks its deliveries failed with ``channel=... is not configured``."""
    from vocalis.notify.email import EmailNotifier
    from vocalis.notify.webhook import WebhookNotifier

    out: dict[str, Notifier] = {"webhook": WebhookNotifier(settings.webhook_timeout_seconds,
                                                        allow_private=settings.webhook_allow_private)}
    if settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from_number:
        from vocalis.notify.twilio import TwilioNotifier

        tw = TwilioNotifier(
            settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_from_number,
            base_url=settings.twilio_base_url, timeout=settings.twilio_timeout_seconds,
        )
        out["sms"] = out["call"] = tw
    else:
        log.warning("Twilio is not configured (VOCALIS_TWILIO_*): sms and call deliveries will fail")
    if settings.smtp_host and settings.smtp_from:
        out["email"] = EmailNotifier(
            settings.smtp_host, settings.smtp_port, sender=settings.smtp_from, user=settings.smtp_user,
            password=settings.smtp_password, starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )
    else:
        log.warning("SMTP is not configured (VOCALIS_SMTP_*): email deliveries will fail")
    return out


def close_notifiers(notifiers: dict[str, Notifier]) -> None:
    """Close the notifiers' HTTP clients (each once)."""
    seen: set[int] = set()
    for n in notifiers.values():
        close = getattr(n, "close", None)
        if close is not None and id(n) not in seen:
            seen.add(id(n))
            close()
