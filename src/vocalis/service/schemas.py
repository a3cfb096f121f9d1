"""Request and response shapes of the REST API (pydantic), separate from the tables."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]{2,}$")


def short(v: object, limit: int = 80) -> str:
    """``repr(v)``, cut to ``limit`` characters: error messages name the value without echoing megabytes.

    >>> short("x" * 1000, 12)
    "'xxxxxxxxxx…"
    """
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 1] + "…"
Channel = Literal["sms", "call", "email", "webhook"]
T = TypeVar("T")

MAX_OFFSET = 2**31 - 1
"""Largest ``offset`` a list accepts (a bigger one is a 422, not an integer overflow in the database)."""


def check_email(v: str) -> str:
    v = v.strip()
    if len(v) > 320 or not EMAIL.match(v):
        raise ValueError(f"email={short(v)} must be an address like name@example.org (no spaces or control characters)")
    return v.lower()


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


# accounts -------------------------------------------------------------------------------------


class UserCreate(BaseModel):
    email: str = Field(examples=["ann@example.org"])
    password: str = Field(min_length=8, max_length=1024)
    name: str | None = Field(None, max_length=200)

    _email = field_validator("email")(check_email)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    name: str | None
    created_at: datetime


class WellbeingDeleted(BaseModel):
    checkins: int
    enrolments: int
    model_files: int = Field(description="Personal-model files removed from disk.")


class DataDeleted(BaseModel):
    """What ``DELETE /v1/users/me/data`` removed. The account, its API keys and contacts stay."""

    predictions: int = Field(description="History entries (uploads and live-stream summaries).")
    calls: int = Field(description="Triaged call reports.")
    alerts: int = Field(description="Finished alerts, with their deliveries.")
    alerts_kept: int = Field(description="Alerts still in flight (countdown or deliveries pending); "
                                         "kept so they are delivered; ask again once they are done.")
    evidence: int = Field(description="Evidence records.")
    evidence_files: int = Field(description="Evidence files removed from disk.")
    wellbeing: WellbeingDeleted


class ApiKeyCreate(BaseModel):
    name: str | None = Field(None, max_length=200)


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown once, only its hash is stored.")


class Registered(BaseModel):
    user: UserOut
    api_key: ApiKeyCreated


class TokenRequest(BaseModel):
    """Either ``email`` + ``password`` or ``api_key``."""

    email: str | None = None
    password: str | None = Field(None, max_length=1024)
    api_key: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _one_way(self) -> TokenRequest:
        if self.api_key is None and (self.email is None or self.password is None):
            raise ValueError("give either email and password, or api_key")
        return self


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    expires_at: datetime


# contacts -------------------------------------------------------------------------------------


class ContactIn(BaseModel):
    """A contact; ``channels`` defaults to every channel its fields allow (sms, email, webhook)."""

    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(None, max_length=64, description="E.164, e.g. +33612345678", examples=["+33612345678"])
    email: str | None = Field(None, max_length=320)
    webhook_url: str | None = Field(None, max_length=2000)
    webhook_secret: str | None = Field(None, min_length=16, max_length=200,
                                       description="Standard Webhooks secret; generated when omitted.")
    channels: list[Channel] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("name must not be blank")
        return v

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = re.sub(r"[\s().-]", "", v)
        if not E164.match(v):
            raise ValueError(f"phone={short(v)} must be in E.164 format: + then country code and number, up to 15 digits")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return None if v is None else check_email(v)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        parts = urlsplit(v.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook_url={short(v)} must be an http:// or https:// URL with a host")
        return v.strip()

    @model_validator(mode="after")
    def _channels(self) -> ContactIn:
        need = {"sms": self.phone, "call": self.phone, "email": self.email, "webhook": self.webhook_url}
        if self.channels is not None and not self.channels:
            raise ValueError("channels=[] must name at least one way to notify: sms, call, email or webhook")
        if self.channels is None:
            self.channels = [c for c in ("sms", "email", "webhook") if need[c]]  # type: ignore[misc]
        if not self.channels:
            raise ValueError("a contact needs at least one channel: give a phone, an email or a webhook_url")
        for c in self.channels:
            if not need[c]:
                field = {"sms": "phone", "call": "phone", "email": "email", "webhook": "webhook_url"}[c]
                raise ValueError(f"channel={c!r} needs {field}")
        self.channels = list(dict.fromkeys(self.channels))
        return self


class ContactUpdate(BaseModel):
    """Fields to change; the merged contact is validated like a new one. ``null`` clears a field."""

    name: str | None = Field(None, min_length=1, max_length=200)
    phone: str | None = None
    email: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    channels: list[Channel] | None = None


class ContactOut(BaseModel):
    id: str
    name: str
    phone: str | None
    email: str | None
    webhook_url: str | None
    webhook_secret: str | None
    channels: list[str]
    created_at: datetime
    warnings: list[str] = Field(default_factory=list, description=(
        "On create/update: channels this server has no provider for (messages on them would fail)."))


# alerts ---------------------------------------------------------------------------------------


class LocationIn(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0)


class AlertCreate(BaseModel):
    """A manual panic alert: confirmed at once, delivered to every contact on every channel."""

    model_config = ConfigDict(allow_inf_nan=False)

    risk: float | None = Field(1.0, ge=0, le=1)
    reason: str | None = Field("panic button", max_length=1000)
    location: LocationIn | None = None


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    contact_id: str | None
    channel: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    provider_id: str | None
    sent_at: datetime | None


class AlertOut(BaseModel):
    id: str
    source: str
    status: str
    risk: float | None
    reason: str | None
    location: LocationIn | None
    created_at: datetime
    confirmed_at: datetime | None
    cancelled_at: datetime | None
    deliveries: list[DeliveryOut]
    warnings: list[str] = Field(default_factory=list, description=(
        "Why this alert may reach nobody: no contacts, or channels this server has no provider for."))


class EvidenceOut(BaseModel):
    id: str
    alert_id: str
    content_type: str
    bytes: int
    sha256: str
    created_at: datetime


# predictions ----------------------------------------------------------------------------------


class PredictionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: datetime
    label: str
    probabilities: dict[str, float]
    valence: float
    arousal: float
    source: str
    duration_s: float | None
    speech_detected: bool | None = Field(None, description=(
        "Whether voice activity (Silero VAD) heard speech in the clip. false: noise, a tone, music or a "
        "scream; the label is then a guess. null: not checked (no speech model installed, or an older entry)."))
    voiced_s: float | None = Field(None, description="Seconds of the clip that voice activity called speech.")


class ModelHealth(BaseModel):
    loaded: bool
    source: str | None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    model: ModelHealth
    channels: list[str] | None = Field(None, description=(
        "Alert channels this server can deliver on (a provider is configured); null before start-up."))


class CallReasonOut(BaseModel):
    text: str
    contribution: float
    kind: str


class CallSignalOut(BaseModel):
    name: str
    evidence: str
    penalty: float


class CallOut(BaseModel):
    """A triaged call in the queue; ``report`` is the full analysis (see ``vocalis triage``)."""

    id: str
    created_at: datetime
    filename: str | None
    status: Literal["waiting", "handled"]
    priority: float = Field(description="0-100; higher is more urgent.")
    level: str = Field(description="P1 (>= 70) .. P4.")
    duration_s: float
    reasons: list[CallReasonOut]
    signals: list[CallSignalOut]
    transcript: str
    report: dict[str, Any] | None = Field(default=None, description="Full report (GET /v1/calls/{id}, POST).")


class CallUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["waiting", "handled"]
