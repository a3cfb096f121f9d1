"""Notifications: the :class:`Notifier` protocol, Twilio/webhook/e-mail notifiers, the outbox relay.

Nothing here sends on import; notifiers are built explicitly (see
:func:`vocalis.notify.build_notifiers`).
"""

from vocalis.notify.base import (
    AlertInfo,
    ContactInfo,
    DeliveryInfo,
    Notifier,
    NotifyError,
    PermanentNotifyError,
    RetryableNotifyError,
    UserInfo,
    alert_text,
)
from vocalis.notify.relay import RelayWorker, RetryPolicy, run_once

__all__ = [
    "AlertInfo",
    "ContactInfo",
    "DeliveryInfo",
    "Notifier",
    "NotifyError",
    "PermanentNotifyError",
    "RelayWorker",
    "RetryPolicy",
    "RetryableNotifyError",
    "UserInfo",
    "alert_text",
    "run_once",
]
