"""Sign-in: residents with phone + PIN, staff with a login + password; sessions by bearer token.

Secrets are hashed with scrypt (n=2^14, r=8, p=1, 16-byte salt). Tokens are 256-bit random values
stored only as SHA-256 hashes. Failed sign-ins are throttled per login in memory; the persisted,
per-address throttle and staff TOTP belong to the accounts issue (#7).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from cloud_api.errors import NotAuthenticated, Throttled
from cloud_api.store import Store

SESSION_MS = 12 * 60 * 60 * 1000
MAX_FAILURES = 5
LOCKOUT_MS = 5 * 60 * 1000


def hash_secret(secret: str) -> str:
    """Hash a PIN or password for storage."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    """Check a PIN or password against its stored hash in constant time."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        computed = hashlib.scrypt(
            secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(computed.hex(), digest)


@dataclass(frozen=True)
class Person:
    """The signed-in person."""

    id: str
    community_id: str
    role: str
    display_name: str
    language: str


class AccountService:
    """Sign-in and sessions."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._failures: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._dummy_hash = hash_secret(secrets.token_hex(8))

    def sign_in(self, login: str, secret: str, now_ms: int) -> tuple[str, Person]:
        """Return a new session token and the person, or raise."""
        with self._lock:
            count, since = self._failures.get(login, (0, now_ms))
            if count >= MAX_FAILURES and now_ms - since < LOCKOUT_MS:
                raise Throttled("too many failed sign-ins; try again in a few minutes")
        row = self._store.read_one(
            "SELECT id, community_id, role, display_name, language, secret_hash"
            " FROM people WHERE login = ?",
            (login,),
        )
        # Hash even for an unknown login so timing does not reveal which logins exist.
        ok = verify_secret(secret, row["secret_hash"] if row else self._dummy_hash) and bool(row)
        if not ok or row is None:
            with self._lock:
                count, since = self._failures.get(login, (0, now_ms))
                if now_ms - since >= LOCKOUT_MS:
                    count, since = 0, now_ms
                self._failures[login] = (count + 1, since)
            raise NotAuthenticated("wrong login or PIN")
        with self._lock:
            self._failures.pop(login, None)
        token = secrets.token_urlsafe(32)
        with self._store.write() as db:
            db.execute("DELETE FROM sessions WHERE expires_ms < ?", (now_ms,))
            db.execute(
                "INSERT INTO sessions (token_hash, person_id, expires_ms) VALUES (?, ?, ?)",
                (_token_hash(token), row["id"], now_ms + SESSION_MS),
            )
        return token, _person(row)

    def person_for(self, token: str, now_ms: int) -> Person:
        """The person behind a session token, or NotAuthenticated."""
        row = self._store.read_one(
            "SELECT p.id, p.community_id, p.role, p.display_name, p.language"
            " FROM sessions s JOIN people p ON p.id = s.person_id"
            " WHERE s.token_hash = ? AND s.expires_ms > ?",
            (_token_hash(token), now_ms),
        )
        if row is None:
            raise NotAuthenticated("not signed in, or the session expired")
        return _person(row)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _person(row: object) -> Person:
    r = row  # sqlite3.Row
    return Person(
        id=r["id"],  # type: ignore[index]
        community_id=r["community_id"],  # type: ignore[index]
        role=r["role"],  # type: ignore[index]
        display_name=r["display_name"],  # type: ignore[index]
        language=r["language"],  # type: ignore[index]
    )
