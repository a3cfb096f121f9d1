"""Service configuration: every option is an environment variable ``VOCALIS_<NAME>``.

>>> s = Settings(data_dir="/tmp/v")
>>> s.database_url
'sqlite:////tmp/v/vocalis.db'
>>> s.max_upload_bytes
26214400
"""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Settings of the Vocalis service (pydantic-settings, env prefix ``VOCALIS_``)."""

    model_config = SettingsConfigDict(env_prefix="VOCALIS_", env_file=None, extra="ignore")

    # storage
    data_dir: Path = Field(default=Path("./vocalis-data"), description="Folder for the database, evidence and secrets.")
    database_url: str = Field(default="", description="SQLAlchemy URL; default sqlite:///<data_dir>/vocalis.db.")
    evidence_dir: Path | None = Field(default=None, description="Evidence uploads; default <data_dir>/evidence.")
    retention_days: int = Field(default=90, ge=1, description="History and evidence older than this are purged.")
    wellbeing_allow_no_speech: bool = Field(default=False, description=(
        "Accept wellbeing clips (enrolment, check-in) in which voice activity (Silero VAD) hears no speech; "
        "by default they get a 400: their mood would be a guess and stay in the history."))
    wellbeing_retention_days: int | None = Field(
        default=None, ge=1, description="Wellbeing check-ins older than this are purged; default: retention_days."
    )
    migrate_on_startup: bool = True

    # model and uploads
    model_path: Path | None = Field(default=None, description="Model bundle; None = the bundled default.")
    preload_model: bool = Field(default=True, description="Load the model at startup rather than on first use.")
    max_upload_bytes: int = Field(default=25 * MIB, ge=1)
    max_audio_seconds: float = Field(default=600.0, gt=0)
    max_evidence_bytes: int = Field(default=200 * MIB, ge=1)
    max_json_bytes: int = Field(default=1 * MIB, ge=1024, description="Largest JSON request body (413 above).")

    # call triage (POST /v1/calls)
    triage_model_path: Path | None = Field(
        default=None, description="Caller-state bundle; None = the service's emotion model mapped to caller states.")
    triage_asr_model: str = Field(default="tiny.en", description="Whisper model for transcripts ('' = none).")
    triage_language: str | None = Field(default="en", description="Spoken language; None = detect (multilingual model).")
    triage_lexicon_path: Path | None = Field(default=None, description="Gravity lexicon JSON; None = built-in.")

    # auth
    secret_key: str | None = Field(
        default=None, description="HMAC key for bearer tokens; default: created once in <data_dir>/secret.key."
    )
    token_ttl_seconds: int = Field(default=3600, ge=60)
    token_max_age_seconds: int = Field(
        default=86400, ge=60, description="POST /v1/auth/refresh renews a token until this long after the "
        "password or API key it descends from was given; then sign in again.")
    cors_origins: list[str] = Field(default_factory=list)

    # Twilio (SMS and voice calls)
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_base_url: str = Field(default="https://api.twilio.com", description="Override to point at a test server.")
    twilio_timeout_seconds: float = Field(default=10.0, gt=0)

    # e-mail
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str | None = None
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)

    # webhooks (Standard Webhooks signatures with each contact's secret)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_allow_private: bool = Field(
        default=False, description="Allow webhook URLs on loopback, private or link-local addresses (a receiver on "
        "your own network); off, any user could make the server call its internal services.")

    # outbox relay
    relay_enabled: bool = True
    relay_poll_seconds: float = Field(default=2.0, gt=0)
    relay_max_attempts: int = Field(default=8, ge=1)
    relay_backoff_base_seconds: float = Field(default=2.0, gt=0)
    relay_backoff_max_seconds: float = Field(default=300.0, gt=0)
    relay_lease_seconds: float = Field(default=60.0, gt=0, description="A 'sending' row older than this is re-claimed.")
    relay_batch_size: int = Field(default=50, ge=1)
    relay_flush_seconds: float = Field(
        default=10.0, ge=0, description="On shutdown, pending deliveries are attempted once more for at most this long.")

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'vocalis.db').as_posix()}"
        if self.evidence_dir is None:
            self.evidence_dir = self.data_dir / "evidence"
        return self

    @property
    def evidence_root(self) -> Path:
        """Where evidence files are stored (always set after validation)."""
        assert self.evidence_dir is not None
        return self.evidence_dir

    @property
    def wellbeing_db_path(self) -> Path:
        """The wellbeing SQLite file (personal models go next to it under ``models/``)."""
        return self.data_dir / "wellbeing" / "wellbeing.db"

    @property
    def wellbeing_retention(self) -> int:
        """Days wellbeing check-ins are kept (``wellbeing_retention_days``, else ``retention_days``)."""
        return self.wellbeing_retention_days or self.retention_days

    def resolved_secret_key(self) -> str:
        """The token signing key: the configured one, else one created once under ``data_dir``."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret.key"
        if path.is_file():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(key)
        tmp.replace(path)
        return key


def check_environment() -> None:
    """Build :class:`Settings` and the stream settings from the environment once, so that a bad
    ``VOCALIS_*`` value stops ``vocalis serve`` before it starts, with a
    :class:`~vocalis.errors.ConfigError` naming the variable, its value and the rule."""
    from pydantic import ValidationError

    from vocalis.errors import ConfigError
    from vocalis.service.ws import StreamSettings

    problems: list[str] = []
    for cls, prefix in ((Settings, "VOCALIS_"), (StreamSettings, "VOCALIS_STREAM_")):
        try:
            cls()
        except ValidationError as e:
            for err in e.errors():
                name = prefix + "_".join(str(part) for part in err["loc"]).upper() if err["loc"] else cls.__name__
                value = f"={err['input']!r}" if err["loc"] else ""
                problems.append(f"{name}{value}: {err['msg']}")
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
