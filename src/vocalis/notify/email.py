"""E-mail through SMTP (``smtplib``), optional STARTTLS and login.

The ``Message-ID`` is derived from the delivery's idempotency key, so a resend after a crash
carries the same id and mail systems can de-duplicate it.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formatdate

from vocalis.notify.base import (
    AlertInfo,
    ContactInfo,
    DeliveryInfo,
    PermanentNotifyError,
    RetryableNotifyError,
    UserInfo,
    alert_text,
    location_link,
)


def build_message(
    delivery: DeliveryInfo, alert: AlertInfo, contact: ContactInfo, user: UserInfo, sender: str
) -> EmailMessage:
    """The e-mail for one delivery (plain text)."""
    msg = EmailMessage()
    msg["Subject"] = f"Vocalis alert: {user.display_name} may need help"
    msg["From"] = sender
    msg["To"] = contact.email or ""
    msg["Date"] = formatdate(alert.created_at.timestamp(), usegmt=True)
    msg["Message-ID"] = f"<{delivery.idempotency_key.replace(':', '.')}@vocalis>"
    lines = [f"Hello {contact.name},", "", alert_text(alert, user), ""]
    link = location_link(alert)
    if link:
        lines += [f"Location: {link}", ""]
    lines += ["You receive this because you are an emergency contact in Vocalis."]
    msg.set_content("\n".join(lines))
    return msg


class EmailNotifier:
    """Sends alerts by e-mail."""

    channels = ("email",)

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        sender: str,
        user: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.user, self.password, self.starttls, self.timeout = user, password, starttls, timeout

    def send(self, delivery: DeliveryInfo, alert: AlertInfo, contact: ContactInfo, user: UserInfo) -> str:
        if not contact.email:
            raise PermanentNotifyError(f"contact={contact.id} has no email address")
        msg = build_message(delivery, alert, contact, user, self.sender)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.user and self.password:
                    smtp.login(self.user, self.password)
                smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as e:
            raise PermanentNotifyError(f"smtp: authentication failed for user={self.user!r}") from e
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            retry = all(400 <= c < 500 for c in codes)
            raise (RetryableNotifyError if retry else PermanentNotifyError)(
                f"smtp: recipient {contact.email} refused ({codes})"
            ) from e
        except smtplib.SMTPResponseException as e:
            cls = RetryableNotifyError if 400 <= e.smtp_code < 500 else PermanentNotifyError
            raise cls(f"smtp: {e.smtp_code} {e.smtp_error!r}") from e
        except (TimeoutError, smtplib.SMTPException, OSError) as e:
            raise RetryableNotifyError(f"smtp: {self.host}:{self.port} failed ({type(e).__name__}: {e})") from e
        return str(msg["Message-ID"])
