"""Request checks both emulated APIs make the same way: names, SSH public keys, envs."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

PUBLIC_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
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
    real providers check; a pasted private key or a truncated line fails.
    """
    parts = text.strip().split()
    if len(parts) < 2:
        return "must look like '<type> <base64 key> [comment]', e.g. 'ssh-ed25519 AAAA... me@host'"
    key_type, body = parts[0], parts[1]
    if key_type not in PUBLIC_KEY_TYPES:
        return f"unsupported key type {key_type!r} (use ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256/384/521)"
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return "key body is not valid base64"
    if len(blob) < 4:
        return "key body is too short"
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length] != key_type.encode():
        return f"key body does not hold a {key_type} key"
    return None


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
