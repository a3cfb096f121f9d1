"""The outbox relay: delivers the ``deliveries`` rows written in the alert's own transaction.

One pass (:func:`run_once`):

1. **claim**, in a short transaction: due rows (``pending`` with ``next_attempt_at <= now``, or
   ``sending`` whose claim is older than the lease: the process died between sending and
   recording) are switched to ``sending`` with a compare-and-set on ``(status, attempts)``, so two
   relays never claim the same row;
2. **send**, outside any transaction, each with its idempotency key (Twilio's
   ``I-Twilio-Idempotency-Token``, the webhook's ``webhook-id``, the e-mail's ``Message-ID``), so a
   re-claimed row that had in fact been sent is not sent twice by the provider;
3. **record**, in a second short transaction: ``sent`` (provider id), ``pending`` again with
   exponential backoff and jitter for a retryable error, or ``failed`` (permanent error or
   ``max_attempts`` used); then the alert's aggregate status.

:class:`RelayWorker` runs passes in an asyncio task (woken early when an alert is created) and
flushes the outbox when stopped: every pending delivery, even one waiting out its backoff, is
attempted once more (within ``flush_seconds``); what still fails stays ``pending`` in the database
and is delivered by the next relay to start. Nothing is dropped on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from vocalis.notify.base import (
    AlertInfo,
    ContactInfo,
    DeliveryInfo,
    Notifier,
    NotifyError,
    PermanentNotifyError,
    UserInfo,
)
from vocalis.storage.tables import Alert, Contact, Delivery, User, utcnow

log = logging.getLogger("vocalis.notify.relay")

FINAL_ALERT_STATUSES = ("confirmed", "delivered", "partially_failed", "failed")


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts, exponential backoff with jitter, and the claim lease."""

    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    lease_seconds: float = 60.0
    batch_size: int = 50
    max_workers: int = 4

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds before the next try after ``attempts`` tries: half fixed, half random ("equal jitter").

        >>> p = RetryPolicy(backoff_base=2, backoff_max=60)
        >>> [1 <= p.delay(1, random.Random(0)) <= 2, 30 <= p.delay(10, random.Random(0)) <= 60]
        [True, True]
        """
        d = min(self.backoff_max, self.backoff_base * 2 ** max(0, attempts - 1))
        return d / 2 + rng.uniform(0, d / 2)


@dataclass(frozen=True)
class Claim:
    """A claimed delivery with everything its notifier needs."""

    delivery: DeliveryInfo
    alert: AlertInfo
    contact: ContactInfo | None
    user: UserInfo


@dataclass(frozen=True)
class Outcome:
    """What one send produced."""

    claim: Claim
    provider_id: str | None = None
    error: str | None = None
    retryable: bool = False


def _due(now: datetime, policy: RetryPolicy, ignore_backoff: bool = False) -> object:
    lease_expired = now - timedelta(seconds=policy.lease_seconds)
    pending = Delivery.status == "pending"
    return or_(
        pending if ignore_backoff else and_(pending, Delivery.next_attempt_at <= now),
        and_(Delivery.status == "sending", Delivery.claimed_at <= lease_expired),
    )


def claim(
    session_factory: sessionmaker[Session], now: datetime, policy: RetryPolicy, *,
    ignore_backoff: bool = False, exclude: Collection[str] = (),
) -> list[Claim]:
    """Claim up to ``policy.batch_size`` due deliveries (one short transaction).

    ``ignore_backoff`` also claims pending rows whose next attempt is later (the shutdown flush);
    ``exclude`` skips these delivery ids.
    """
    claims: list[Claim] = []
    with session_factory() as session, session.begin():
        stmt = select(Delivery.id, Delivery.status, Delivery.attempts).where(
            _due(now, policy, ignore_backoff))  # type: ignore[arg-type]
        if exclude:
            stmt = stmt.where(Delivery.id.not_in(list(exclude)))
        rows = session.execute(stmt.order_by(Delivery.next_attempt_at, Delivery.id).limit(policy.batch_size)).all()
        for delivery_id, status, attempts in rows:
            res = session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.status == status, Delivery.attempts == attempts)
                .values(status="sending", claimed_at=now, attempts=attempts + 1)
                .execution_options(synchronize_session=False)
            )
            if getattr(res, "rowcount", 0) != 1:
                continue  # another relay won it
            d = session.get(Delivery, delivery_id)
            assert d is not None
            session.refresh(d)
            a = session.get(Alert, d.alert_id)
            assert a is not None
            u = session.get(User, a.user_id)
            assert u is not None
            c = session.get(Contact, d.contact_id) if d.contact_id else None
            claims.append(Claim(
                delivery=DeliveryInfo(d.id, d.alert_id, d.channel, d.idempotency_key, d.attempts),
                alert=AlertInfo(a.id, a.source, a.risk, a.reason, a.created_at, a.latitude, a.longitude,
                                a.accuracy_m),
                contact=None if c is None else ContactInfo(c.id, c.name, c.phone, c.email, c.webhook_url,
                                                           c.webhook_secret),
                user=UserInfo(u.id, u.email, u.name),
            ))
    return claims


def send_one(c: Claim, notifiers: Mapping[str, Notifier]) -> Outcome:
    """Call the channel's notifier; every exception becomes an :class:`Outcome`."""
    try:
        if c.contact is None:
            raise PermanentNotifyError("the contact was deleted before delivery")
        notifier = notifiers.get(c.delivery.channel)
        if notifier is None:
            raise PermanentNotifyError(f"channel={c.delivery.channel} is not configured on this server")
        return Outcome(c, provider_id=notifier.send(c.delivery, c.alert, c.contact, c.user))
    except NotifyError as e:
        return Outcome(c, error=str(e)[:2000], retryable=e.retryable)
    except Exception as e:  # unknown failure: retry (safe: every send is idempotent)
        log.exception("notifier for channel=%s raised", c.delivery.channel)
        return Outcome(c, error=f"{type(e).__name__}: {e}"[:2000], retryable=True)


def update_alert_status(session: Session, alert_id: str) -> str:
    """Recompute an alert's status from its deliveries (only once it is confirmed)."""
    alert = session.get(Alert, alert_id)
    assert alert is not None
    if alert.status not in FINAL_ALERT_STATUSES:
        return alert.status
    counts: dict[str, int] = {
        str(status): int(n)
        for status, n in session.execute(
            select(Delivery.status, func.count()).where(Delivery.alert_id == alert_id).group_by(Delivery.status)
        ).all()
    }
    total = sum(counts.values())
    open_ = counts.get("pending", 0) + counts.get("sending", 0)
    sent = counts.get("sent", 0)
    if total == 0 or open_:
        status = "confirmed"
    elif sent == total:
        status = "delivered"
    elif sent == 0:
        status = "failed"
    else:
        status = "partially_failed"
    alert.status = status
    return status


def record(
    session_factory: sessionmaker[Session], outcome: Outcome, now: datetime, policy: RetryPolicy,
    rng: random.Random,
) -> str | None:
    """Store one outcome; returns the delivery's new status (``None`` if the claim was lost)."""
    d = outcome.claim.delivery
    if outcome.error is None:
        values: dict[str, object] = {
            "status": "sent", "provider_id": outcome.provider_id, "sent_at": now, "last_error": None,
        }
    elif outcome.retryable and d.attempts < policy.max_attempts:
        values = {
            "status": "pending", "last_error": outcome.error,
            "next_attempt_at": now + timedelta(seconds=policy.delay(d.attempts, rng)),
        }
    else:
        values = {"status": "failed", "last_error": outcome.error}
    with session_factory() as session, session.begin():
        res = session.execute(
            update(Delivery)
            .where(Delivery.id == d.id, Delivery.status == "sending", Delivery.attempts == d.attempts)
            .values(claimed_at=None, **values)
            .execution_options(synchronize_session=False)
        )
        if getattr(res, "rowcount", 0) != 1:
            log.warning("delivery %s was re-claimed by another relay; outcome dropped", d.id)
            return None
        update_alert_status(session, d.alert_id)
    return str(values["status"])


def run_once(
    session_factory: sessionmaker[Session],
    notifiers: Mapping[str, Notifier],
    now: datetime | None = None,
    *,
    policy: RetryPolicy | None = None,
    rng: random.Random | None = None,
    on_outcome: Callable[[Outcome, str | None], None] | None = None,
    ignore_backoff: bool = False,
    exclude: Collection[str] = (),
) -> int:
    """One relay pass at time ``now`` (default: the clock); returns how many deliveries it handled."""
    policy = policy or RetryPolicy()
    rng = rng or random.Random()
    now = now or utcnow()
    claims = claim(session_factory, now, policy, ignore_backoff=ignore_backoff, exclude=exclude)
    if not claims:
        return 0
    if policy.max_workers <= 1 or len(claims) == 1:
        outcomes = [send_one(c, notifiers) for c in claims]
    else:
        with ThreadPoolExecutor(max_workers=min(policy.max_workers, len(claims))) as pool:
            outcomes = list(pool.map(lambda c: send_one(c, notifiers), claims))
    for outcome in outcomes:
        status = record(session_factory, outcome, now, policy, rng)
        if on_outcome is not None:
            on_outcome(outcome, status)
    return len(claims)


class RelayWorker:
    """Runs :func:`run_once` in the background: every ``poll_seconds`` or when :meth:`wake` is called."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        notifiers: Mapping[str, Notifier],
        *,
        policy: RetryPolicy | None = None,
        poll_seconds: float = 2.0,
        clock: Callable[[], datetime] = utcnow,
        on_outcome: Callable[[Outcome, str | None], None] | None = None,
        flush_seconds: float = 10.0,
    ) -> None:
        self.session_factory = session_factory
        self.notifiers = notifiers
        self.policy = policy or RetryPolicy()
        self.poll_seconds = poll_seconds
        self.flush_seconds = flush_seconds
        self.clock = clock
        self.on_outcome = on_outcome
        self._rng = random.Random()
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    def _pass(self) -> int:
        return run_once(self.session_factory, self.notifiers, self.clock(), policy=self.policy, rng=self._rng,
                        on_outcome=self.on_outcome)

    async def start(self) -> None:
        """Start the background task on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="vocalis-outbox-relay")

    def wake(self) -> None:
        """Ask for a pass now; safe to call from any thread."""
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                while not self._stopping and await asyncio.to_thread(self._pass) > 0:
                    pass  # keep going while there is work
            except Exception:
                log.exception("outbox relay pass failed; retrying in %.1fs", self.poll_seconds)
            if self._stopping:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            self._wake.clear()

    def flush(self, timeout: float | None = None) -> int:
        """Attempt every pending delivery once, backoff or not (blocking); returns how many were tried.

        Passes repeat until none is left untried or ``timeout`` (default ``flush_seconds``) is
        spent; a delivery that fails again stays ``pending`` for the next relay.
        """
        deadline = time.monotonic() + (self.flush_seconds if timeout is None else timeout)
        tried: set[str] = set()

        def seen(outcome: Outcome, status: str | None) -> None:
            tried.add(outcome.claim.delivery.id)
            if self.on_outcome is not None:
                self.on_outcome(outcome, status)

        while time.monotonic() < deadline:
            n = run_once(self.session_factory, self.notifiers, self.clock(), policy=self.policy, rng=self._rng,
                         on_outcome=seen, ignore_backoff=True, exclude=tried)
            if n == 0:
                break
        return len(tried)

    async def stop(self, *, flush: bool = True) -> None:
        """Stop the task; with ``flush``, attempt every pending delivery once more (:meth:`flush`)."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if flush:
            try:
                n = await asyncio.to_thread(self.flush)
                if n:
                    log.info("outbox relay: flushed %d pending deliveries on shutdown", n)
            except Exception:
                log.exception("outbox relay flush failed")
