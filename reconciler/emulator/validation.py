"""Request checks both emulated APIs make the same way: names, SSH public keys, envs."""

from __future__ import annotations

import base64
import hashlib
import struct
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from reconciler.public_keys import KeyFault, key_line_problem

MAX_NAME_LENGTH = 255


class StrictBody(BaseModel):
    """Request bodies: wrong JSON types are errors, unknown fields are ignored as real APIs do."""

    model_config = ConfigDict(strict=True, extra="ignore")


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


ResourceName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(_name)
]


def _public_key(value: str) -> str:
    problem = public_key_problem(value)
    if problem:
        raise ValueError(problem)
    return value.strip()


PublicKey = Annotated[str, AfterValidator(_public_key)]


def public_key_problem(text: str) -> str | None:
    """Why `text` is not an OpenSSH public key line, or None if it is one.

    The base64 body must decode and name the same key type as the line, which is what
    real providers check; a pasted private key or a truncated line fails. The messages are
    the emulated APIs' own.
    """
    problem = key_line_problem(text)
    if problem is None:
        return None
    key_type = problem.key_type
    return {
        KeyFault.SHAPE: "must look like '<type> <base64 key> [comment]', e.g. 'ssh-ed25519 AAAA... me@host'",
        KeyFault.TYPE: f"unsupported key type {key_type!r} (use ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256/384/521)",
        KeyFault.BASE64: "key body is not valid base64",
        KeyFault.SHORT: "key body is too short",
        KeyFault.BODY: f"key body does not hold a {key_type} key",
    }[problem.fault]


def example_public_key(label: str, key_type: str = "ssh-ed25519") -> str:
    """A well-formed public key line derived from `label` (for tests and examples)."""
    material = hashlib.sha256(label.encode()).digest()
    blob = struct.pack(">I", len(key_type)) + key_type.encode() + struct.pack(">I", len(material)) + material
    return f"{key_type} {base64.b64encode(blob).decode()} {label}"


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 time with a zone (Z or an offset)."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("must be an RFC 3339 time with a zone, e.g. 2026-01-01T00:00:00Z")
    return moment


def parse_dollars(value: str) -> Decimal:
    """A positive amount of dollars written as a decimal string ("25.50")."""
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError('must be a decimal amount of dollars as a string, e.g. "25.50"') from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError("must be a positive amount of dollars")
    return amount
