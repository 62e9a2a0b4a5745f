"""API keys: ``Authorization: Bearer KEY`` on the ``/v1/`` routes (and ``/metrics`` if asked).

Keys come from the caller (``--api-key``, repeatable), a file (``--api-key-file``: one key per line,
``#`` comments and blank lines ignored) and the ``ONNXQA_API_KEY`` environment variable (keys
separated by commas or whitespace). A presented key is compared with every configured key in
constant time (their SHA-256 digests with :func:`hmac.compare_digest`, all of them every time).
Keys are never logged or put in a message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from .._errors import InputError

__all__ = ["ENV_VAR", "KeyCheck", "Unauthorized", "resolve_api_keys"]

ENV_VAR = "ONNXQA_API_KEY"
MIN_KEY_LENGTH = 16


class Unauthorized(Exception):
    """No key, or a wrong one (the app answers 401 with ``WWW-Authenticate: Bearer``)."""


def resolve_api_keys(
    keys: Iterable[str] = (), key_file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Every configured key, from ``keys``, ``key_file`` and ``$ONNXQA_API_KEY``, without duplicates.

    Raises:
        InputError: the file cannot be read, or a key is shorter than 16 characters or has whitespace.
    """
    found = [k.strip() for k in keys]
    if key_file is not None:
        try:
            lines = Path(key_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the API key file {key_file}: {exc}") from exc
        found += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    env = (environ if environ is not None else os.environ).get(ENV_VAR, "")
    found += env.replace(",", " ").split()
    out: list[str] = []
    for i, key in enumerate(found):
        if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
            raise InputError(
                f"API key {i + 1} is {'empty' if not key else 'too short or has whitespace'}: keys need at least "
                f"{MIN_KEY_LENGTH} characters and no whitespace (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`)"
            )
        if key not in out:
            out.append(key)
    return out


class KeyCheck:
    """Whether a request's ``Authorization`` header carries one of the keys."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, authorization: str | None) -> None:
        """Raises :class:`Unauthorized` unless the header is ``Bearer KEY`` with a configured key."""
        if not self._digests:
            return
        scheme, _, presented = (authorization or "").partition(" ")
        digest = hashlib.sha256(presented.strip().encode()).digest()
        matched = False
        for known in self._digests:  # no early exit: the same work whichever key matches
            matched |= hmac.compare_digest(digest, known)
        if scheme.lower() != "bearer" or not matched:
            raise Unauthorized
