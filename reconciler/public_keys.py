"""OpenSSH public key lines: what providers accept, and how a key is shown to people.

A key line is `<type> <base64 blob> [comment]`; the blob starts with the type again.
Providers check that (the emulated APIs do the same); reconciler checks it at validate, and
prints a key as its type, SHA256 fingerprint and comment, never in full.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from enum import Enum

KEY_TYPES = frozenset(
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
# OpenSSH refuses a key blob over SSH_MAX_PUBKEY_BYTES (16384 bytes, sshkey.h); a 16384-bit
# RSA key, the largest ssh-keygen makes, is about 2 KB. The line (base64, 4/3 of the blob,
# plus type and comment) is held to the same number of characters as a bound on its text.
MAX_PUBLIC_KEY_BYTES = 16384
MAX_PUBLIC_KEY_LINE = 32768


class KeyFault(str, Enum):
    """What is wrong with a key line; each caller words it its own way."""

    SHAPE = "shape"  # not `<type> <base64> [comment]`
    TYPE = "type"  # a key type providers do not take
    BASE64 = "base64"  # the body does not decode
    LARGE = "large"  # the blob is over the size limit asked for
    SHORT = "short"  # the blob cannot even hold its type's length
    BODY = "body"  # the blob names another key type


@dataclass(frozen=True)
class KeyProblem:
    fault: KeyFault
    key_type: str = ""
    size: int = 0  # the blob's bytes, for LARGE


def key_line_problem(text: str, max_bytes: int | None = None) -> KeyProblem | None:
    """The one parse of a key line: None when it is `<type> <base64 blob> [comment]` and the
    blob starts with that type (what providers check); otherwise what is wrong."""
    parts = text.split()
    if len(parts) < 2:
        return KeyProblem(KeyFault.SHAPE)
    key_type, body = parts[0], parts[1]
    if key_type not in KEY_TYPES:
        return KeyProblem(KeyFault.TYPE, key_type)
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return KeyProblem(KeyFault.BASE64, key_type)
    if max_bytes is not None and len(blob) > max_bytes:
        return KeyProblem(KeyFault.LARGE, key_type, len(blob))
    if len(blob) < 4:
        return KeyProblem(KeyFault.SHORT, key_type)
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length] != key_type.encode():
        return KeyProblem(KeyFault.BODY, key_type)
    return None


def public_key_problem(text: str) -> str | None:
    """Why `text` is not one OpenSSH public key line a provider accepts, or None."""
    if len(text) > MAX_PUBLIC_KEY_LINE:
        return f"is {len(text)} characters; an OpenSSH public key line is at most {MAX_PUBLIC_KEY_LINE}"
    if "\n" in text.strip():
        return "holds several lines; a public key is one line"
    problem = key_line_problem(text, MAX_PUBLIC_KEY_BYTES)
    if problem is None:
        return None
    key_type = problem.key_type
    return {
        KeyFault.SHAPE: "must look like '<type> <base64 key> [comment]'",
        KeyFault.TYPE: f"has unsupported key type {key_type[:40]!r} "
        "(use ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256/384/521)",
        KeyFault.BASE64: "has a key body that is not valid base64",
        KeyFault.LARGE: f"holds a {problem.size}-byte key; OpenSSH takes at most {MAX_PUBLIC_KEY_BYTES}",
        KeyFault.SHORT: f"has a key body that does not hold a {key_type} key",
        KeyFault.BODY: f"has a key body that does not hold a {key_type} key",
    }[problem.fault]


def fingerprint(text: str) -> str | None:
    """`SHA256:...` as `ssh-keygen -l` prints it, or None when the line does not parse."""
    parts = text.split()
    if len(parts) < 2:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def display_public_key(text: str) -> str:
    """A key for people: type, fingerprint and comment (at most 60 characters of it)."""
    parts = text.split(maxsplit=2)
    printed = fingerprint(text)
    if printed is None:
        return f"({len(text)} characters, not a parsable key)"
    comment = f" {parts[2][:60]}" if len(parts) > 2 else ""
    return f"{parts[0][:40]} {printed}{comment}"
