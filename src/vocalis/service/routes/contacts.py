"""Emergency contacts: CRUD, owner-scoped."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from pydantic import ValidationError

from vocalis.notify.webhook import new_secret, private_address
from vocalis.service.convert import contact_out
from vocalis.service.deps import SessionDep, SettingsDep, UserDep, configured_channels
from vocalis.service.errors import InvalidInputError, NotFoundError, field_message
from vocalis.service.schemas import ContactIn, ContactOut, ContactUpdate
from vocalis.service.settings import Settings
from vocalis.storage import repositories as repo

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


def _fields(c: ContactIn) -> dict[str, object]:
    assert c.channels is not None
    return {
        "name": c.name, "phone": c.phone, "email": c.email, "webhook_url": c.webhook_url,
        "webhook_secret": (c.webhook_secret or new_secret()) if c.webhook_url else c.webhook_secret,
        "channels": ",".join(c.channels),
    }


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ContactOut)
def create_contact(body: ContactIn, user: UserDep, session: SessionDep, settings: SettingsDep,
                   request: Request) -> ContactOut:
    """Add a contact. A webhook contact gets a ``whsec_`` signing secret unless one is given.

    A ``webhook_url`` on a loopback, private or link-local address is refused (422) unless the
    server allows it (``VOCALIS_WEBHOOK_ALLOW_PRIVATE``); the relay checks the resolved address again
    before each delivery."""
    _check_webhook(body, settings)
    row = repo.create_contact(session, user.id, **_fields(body))
    session.commit()
    return _with_warnings(contact_out(row), request)


def _with_warnings(out: ContactOut, request: Request) -> ContactOut:
    """Say which of the contact's channels this server cannot deliver on (no provider configured)."""
    channels = configured_channels(request.app)
    if channels is not None:
        out.warnings = [f"channel={c} is not configured on this server: alerts to {out.name} on it will fail"
                        for c in out.channels if c not in channels]
    return out


def _check_webhook(body: ContactIn, settings: Settings) -> None:
    if body.webhook_url and not settings.webhook_allow_private:
        bad = private_address(body.webhook_url, resolve=False)
        if bad is not None:
            raise InvalidInputError(
                f"webhook_url={body.webhook_url!r} points at {bad}: it must be a public address (this server does "
                "not send to loopback, private or link-local receivers unless its operator allows them)")


@router.get("", response_model=list[ContactOut])
def list_contacts(user: UserDep, session: SessionDep) -> list[ContactOut]:
    return [contact_out(c) for c in repo.list_contacts(session, user.id)]


@router.get("/{contact_id}", response_model=ContactOut)
def get_contact(contact_id: str, user: UserDep, session: SessionDep) -> ContactOut:
    row = repo.get_contact(session, user.id, contact_id)
    if row is None:
        raise NotFoundError(f"contact={contact_id} not found")
    return contact_out(row)


@router.patch("/{contact_id}", response_model=ContactOut)
def update_contact(contact_id: str, body: ContactUpdate, user: UserDep, session: SessionDep,
                   settings: SettingsDep, request: Request) -> ContactOut:
    """Change some fields; the result is validated like a new contact."""
    row = repo.get_contact(session, user.id, contact_id)
    if row is None:
        raise NotFoundError(f"contact={contact_id} not found")
    merged = {
        "name": row.name, "phone": row.phone, "email": row.email, "webhook_url": row.webhook_url,
        "webhook_secret": row.webhook_secret, "channels": row.channel_list,
    }
    merged.update(body.model_dump(exclude_unset=True))
    try:
        new = ContactIn.model_validate(merged)
    except ValidationError as e:
        raise InvalidInputError("; ".join(field_message(err.get("loc", ()), err["msg"]) for err in e.errors())) from None
    _check_webhook(new, settings)
    for k, v in _fields(new).items():
        setattr(row, k, v)
    session.commit()
    return _with_warnings(contact_out(row), request)


@router.delete("/{contact_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_contact(contact_id: str, user: UserDep, session: SessionDep) -> Response:
    if not repo.delete_contact(session, user.id, contact_id):
        raise NotFoundError(f"contact={contact_id} not found")
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
