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


def public_key_problem(text: str) -> str | None:
    """Why `text` is not one OpenSSH public key line a provider accepts, or None."""
    if len(text) > MAX_PUBLIC_KEY_LINE:
        return f"is {len(text)} characters; an OpenSSH public key line is at most {MAX_PUBLIC_KEY_LINE}"
    if "\n" in text.strip():
        return "holds several lines; a public key is one line"
    parts = text.split()
    if len(parts) < 2:
        return "must look like '<type> <base64 key> [comment]'"
    key_type, body = parts[0], parts[1]
    if key_type not in KEY_TYPES:
        return f"has unsupported key type {key_type[:40]!r} (use ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256/384/521)"
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return "has a key body that is not valid base64"
    if len(blob) > MAX_PUBLIC_KEY_BYTES:
        return f"holds a {len(blob)}-byte key; OpenSSH takes at most {MAX_PUBLIC_KEY_BYTES}"
    (length,) = struct.unpack(">I", blob[:4]) if len(blob) >= 4 else (0,)
    if blob[4 : 4 + length] != key_type.encode():
        return f"has a key body that does not hold a {key_type} key"
    return None


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
