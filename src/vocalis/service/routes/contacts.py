"""Emergency contacts: CRUD, owner-scoped."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import ValidationError

from vocalis.notify.webhook import new_secret
from vocalis.service.convert import contact_out
from vocalis.service.deps import SessionDep, UserDep
from vocalis.service.errors import InvalidInputError, NotFoundError
from vocalis.service.schemas import ContactIn, ContactOut, ContactUpdate
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
def create_contact(body: ContactIn, user: UserDep, session: SessionDep) -> ContactOut:
    """Add a contact. A webhook contact gets a ``whsec_`` signing secret unless one is given."""
    row = repo.create_contact(session, user.id, **_fields(body))
    session.commit()
    return contact_out(row)


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
def update_contact(contact_id: str, body: ContactUpdate, user: UserDep, session: SessionDep) -> ContactOut:
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
        raise InvalidInputError("; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())) from None
    for k, v in _fields(new).items():
        setattr(row, k, v)
    session.commit()
    return contact_out(row)


@router.delete("/{contact_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_contact(contact_id: str, user: UserDep, session: SessionDep) -> Response:
    if not repo.delete_contact(session, user.id, contact_id):
        raise NotFoundError(f"contact={contact_id} not found")
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
