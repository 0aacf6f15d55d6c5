"""Accounts: sign-in, sessions, the persisted sign-in throttle, staff TOTP, and what a social
worker does for residents (onboarding, PIN reset, phone change, flags, status).

Residents sign in with their mobile number and a 6-digit PIN; staff with a login, a password and
a TOTP code (RFC 6238), because staff can open doors and issue points. A resident's phone number
lives only in ``resident_profiles`` (``people.login`` is the person's id), is shown masked
(``138****0001``), and never reaches a log, a URL or ``account_changes``.

Secrets are hashed with scrypt (n=2^14, r=8, p=1, 16-byte salt), also for unknown logins so
timing does not reveal which exist. Tokens are 256-bit random values stored only as SHA-256
hashes. TOTP secrets are sealed with AES-256-GCM under :attr:`CloudKeys.totp_seal_key` (bound to
the person's id), so a copy of the database alone cannot produce codes; a TOTP step is accepted
once (``people.totp_last_step``).

Sign-in throttle (``sign_in_attempts``, persisted, so a restart does not reset it). Keys are
``login:<hmac>`` and ``addr:<hmac>`` (HMAC-SHA256 under a key derived from the code secret):
the table never holds a phone number or an address in clear.

- Per login: 5 failures are free; the 5th blocks the login for 5 min, each further failure
  doubles the block up to 1 h. The count is forgotten 24 h after its first failure (when not
  blocked) and cleared by a successful sign-in or a PIN reset. Under a sustained attack on one
  login that is at most 5 + 4 + 24 ≈ 33 guesses a day, about 12,000 a year: about 1.2 % a year
  of finding one resident's PIN (≈ 10^6 valid PINs). An attacker can keep a resident out of
  *signing in* for at most 1 h at a time; a resident already signed in (12-hour sessions) keeps
  their session, their codes and "open now".
- Per address: 20 failures within 15 min block the address for 15 min.
- A request refused as throttled is not checked at all (it teaches nothing) and does not count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloud_api.core import totp
from cloud_api.errors import Conflict, Forbidden, Invalid, NotAuthenticated, NotFound, Throttled
from cloud_api.keys import CloudKeys
from cloud_api.ledger import SqlLedger
from cloud_api.store import StorePort
from linli.ids import new_id

SESSION_MS = 12 * 60 * 60 * 1000

LOGIN_FREE_FAILURES = 5
LOGIN_FIRST_BLOCK_MS = 5 * 60 * 1000
LOGIN_MAX_BLOCK_MS = 60 * 60 * 1000
LOGIN_FORGET_MS = 24 * 60 * 60 * 1000
ADDRESS_MAX_FAILURES = 20
ADDRESS_WINDOW_MS = 15 * 60 * 1000
ADDRESS_BLOCK_MS = 15 * 60 * 1000

LANGUAGES = ("zh-CN", "en")
FLAGS = frozenset({"elderly", "low_income", "disabled"})
STATUSES = ("active", "disabled")
PIN_LENGTH = 6
MIN_PASSWORD_LENGTH = 12
MAX_NAME_LENGTH = 64
MAX_REASON_LENGTH = 200

_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_PHONE_LIKE = re.compile(r"\+?[0-9][0-9 -]*")
_SEAL_PREFIX = "v1:"


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


def normalize_phone(raw: str) -> str | None:
    """The 11-digit Chinese mobile number in ``raw`` (spaces, dashes and a leading +86, 0086 or
    86 tolerated), or None.

    Example:
        >>> normalize_phone("+86 138-0000-0001"), normalize_phone("12345")
        ('13800000001', None)
    """
    compact = raw.replace(" ", "").replace("-", "")
    if compact.startswith("+86"):
        compact = compact[3:]
    elif compact.startswith("0086"):
        compact = compact[4:]
    elif compact.startswith("86") and len(compact) == 13:
        compact = compact[2:]
    return compact if _MOBILE.fullmatch(compact) else None


def mask_phone(phone: str) -> str:
    """A phone number as it may be shown: ``138****0001``."""
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 8 else "****"


def check_pin(pin: str, phone: str, *, field: str = "pin") -> None:
    """Refuse a PIN that is not 6 digits, or is easy to guess.

    Raises:
        Invalid: all one digit, an ascending or descending run, or the phone's last 6 digits.
    """
    if len(pin) != PIN_LENGTH or not (pin.isascii() and pin.isdigit()):
        raise Invalid("the PIN must be exactly 6 digits", field=field)
    if len(set(pin)) == 1:
        raise Invalid("the PIN cannot be one digit repeated", field=field)
    steps = {int(b) - int(a) for a, b in pairwise(pin)}
    if steps in ({1}, {-1}):
        raise Invalid("the PIN cannot be a run of digits such as 123456", field=field)
    if pin == phone[-PIN_LENGTH:]:
        raise Invalid("the PIN cannot be the end of the phone number", field=field)


def check_password(password: str) -> None:
    """Refuse a staff password shorter than 12 characters."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(
            f"a staff password needs at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )


def new_totp_secret() -> str:
    """A fresh 160-bit TOTP secret, base32 (RFC 4226's recommended length)."""
    return base64.b32encode(secrets.token_bytes(20)).decode()


def seal_totp_secret(keys: CloudKeys, person_id: str, secret_b32: str) -> str:
    """A TOTP secret sealed for ``people.totp_secret``: ``"v1:" + base64(nonce + ciphertext)``."""
    totp.decode_secret(secret_b32)  # refuse a secret no authenticator could use
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(keys.totp_seal_key).encrypt(nonce, secret_b32.encode(), _seal_aad(person_id))
    return _SEAL_PREFIX + base64.b64encode(nonce + sealed).decode()


def unseal_totp_secret(keys: CloudKeys, person_id: str, stored: str) -> str | None:
    """The TOTP secret of ``person_id``, or None if the stored value is not theirs or corrupt."""
    if not stored.startswith(_SEAL_PREFIX):
        return None
    try:
        raw = base64.b64decode(stored[len(_SEAL_PREFIX) :], validate=True)
        plain = AESGCM(keys.totp_seal_key).decrypt(raw[:12], raw[12:], _seal_aad(person_id))
    except (binascii.Error, ValueError, InvalidTag):
        return None
    return plain.decode()


def _seal_aad(person_id: str) -> bytes:
    return f"linli totp secret v1 {person_id}".encode()


@dataclass(frozen=True)
class Person:
    """The signed-in person."""

    id: str
    community_id: str
    role: str
    display_name: str
    language: str


class AccountService:
    """Sign-in, sessions, and residents' accounts.

    Example:
        >>> accounts = AccountService(store, keys)
        >>> token, person = accounts.sign_in("13800000001", "246810", now_ms, address="10.0.0.7")
    """

    def __init__(self, store: StorePort, keys: CloudKeys) -> None:
        self._store = store
        self._keys = keys
        self._attempt_key = hmac.new(
            keys.code_secret, b"linli sign-in throttle keys v1", "sha256"
        ).digest()
        self._dummy_hash = hash_secret(secrets.token_hex(8))

    # --- sign-in and sessions ------------------------------------------------------------------

    def sign_in(
        self,
        login: str,
        secret: str,
        now_ms: int,
        *,
        address: str,
        totp: str | None = None,
    ) -> tuple[str, Person]:
        """Return a new session token and the person, or raise.

        Raises:
            Throttled: the login or the address is blocked for now.
            NotAuthenticated: wrong credentials (``code`` ``totp_required`` when a staff
                password was right but no TOTP code came with it; ``totp_invalid`` for a wrong
                or already used code; ``account_disabled``).
        """
        row, keys = self._verified(login, secret, now_ms, address)
        step: int | None = None
        if row["role"] != "resident":
            if not totp:
                self._failed(keys, now_ms)
                raise NotAuthenticated(
                    "enter the 6-digit code from your authenticator app", code="totp_required"
                )
            step = self._totp_step(row, totp, now_ms)
            if step is None:
                self._failed(keys, now_ms)
                raise NotAuthenticated(
                    "wrong or already used authenticator code", code="totp_invalid"
                )
        token = secrets.token_urlsafe(32)
        replayed = False
        with self._store.write() as db:
            if step is not None:
                # A code counts once even when two sign-ins race with it.
                used = db.execute(
                    "UPDATE people SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?",
                    (step, row["id"], step),
                )
                replayed = used.rowcount != 1
            if not replayed:
                db.execute("DELETE FROM sign_in_attempts WHERE key = ?", (keys[0],))
                db.execute("DELETE FROM sessions WHERE expires_ms < ?", (now_ms,))
                db.execute(
                    "INSERT INTO sessions (token_hash, person_id, expires_ms, created_ms)"
                    " VALUES (?, ?, ?, ?)",
                    (_token_hash(token), row["id"], now_ms + SESSION_MS, now_ms),
                )
        if replayed:
            self._failed(keys, now_ms)
            raise NotAuthenticated("wrong or already used authenticator code", code="totp_invalid")
        return token, _person(row)

    def _verified(
        self, login: str, secret: str, now_ms: int, address: str
    ) -> tuple[sqlite3.Row, tuple[str, str]]:
        """The active person whose login and secret these are, and the throttle's keys."""
        phone = _phone_of(login)
        login_id = f"phone:{phone}" if phone is not None else f"staff:{login}"
        keys = (self._key("login", login_id), self._key("addr", address or "unknown"))
        self._refuse_if_blocked(keys, now_ms)
        row = self._find(phone, login)
        # Hash even for an unknown login so timing does not reveal which logins exist.
        ok = verify_secret(secret, row["secret_hash"] if row else self._dummy_hash)
        if not ok or row is None:
            self._failed(keys, now_ms)
            raise NotAuthenticated("wrong login, PIN or password")
        if row["status"] != "active":
            raise NotAuthenticated(
                "this account is disabled; please contact your social worker",
                code="account_disabled",
            )
        return row, keys

    def check_resident(self, phone: str, pin: str, now_ms: int, *, address: str) -> Person:
        """A resident's phone and PIN checked under the same throttle as :meth:`sign_in`, without
        opening a session (the valuation terminal's sign-in: it gets a ticket, not a session).

        Raises:
            Throttled, NotAuthenticated: as :meth:`sign_in`; a staff login is refused like a
                wrong one (staff do not sign in at a terminal).
        """
        if _phone_of(phone) is None:
            raise NotAuthenticated("wrong login, PIN or password")
        row, keys = self._verified(phone, pin, now_ms, address)
        if row["role"] != "resident":
            raise NotAuthenticated("wrong login, PIN or password")
        with self._store.write() as db:
            db.execute("DELETE FROM sign_in_attempts WHERE key = ?", (keys[0],))
        return _person(row)

    def person_for(self, token: str, now_ms: int) -> Person:
        """The person behind a session token, or NotAuthenticated."""
        row = self._store.read_one(
            "SELECT p.id, p.community_id, p.role, p.display_name, p.language"
            " FROM sessions s JOIN people p ON p.id = s.person_id"
            " WHERE s.token_hash = ? AND s.expires_ms > ? AND p.status = 'active'",
            (_token_hash(token), now_ms),
        )
        if row is None:
            raise NotAuthenticated("not signed in, or the session expired")
        return _person(row)

    def sign_out(self, token: str) -> None:
        """End one session (idempotent)."""
        with self._store.write() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))

    def revoke_sessions(self, person_id: str, *, keep_token: str | None = None) -> int:
        """End every session of a person (but ``keep_token``'s); return how many ended."""
        with self._store.write() as db:
            return _revoke(db, person_id, keep_token)

    def _find(self, phone: str | None, login: str) -> sqlite3.Row | None:
        columns = (
            "p.id, p.community_id, p.role, p.display_name, p.language, p.secret_hash, p.status,"
            " p.totp_secret, p.totp_last_step"
        )
        if phone is not None:
            return self._store.read_one(
                f"SELECT {columns} FROM resident_profiles r JOIN people p ON p.id = r.person_id"  # noqa: S608
                " WHERE r.phone = ? AND p.role = 'resident'",
                (phone,),
            )
        return self._store.read_one(
            f"SELECT {columns} FROM people p WHERE p.login = ? AND p.role <> 'resident'",  # noqa: S608
            (login,),
        )

    def _totp_step(self, row: sqlite3.Row, code: str, now_ms: int) -> int | None:
        sealed = row["totp_secret"]
        secret = unseal_totp_secret(self._keys, row["id"], sealed) if sealed else None
        if secret is None:
            return None  # staff without an enrolled authenticator cannot sign in
        return totp.verify(secret, code, now_ms, int(row["totp_last_step"]))

    # --- throttle --------------------------------------------------------------------------------

    def _key(self, kind: str, value: str) -> str:
        return f"{kind}:" + hmac.new(self._attempt_key, value.encode(), "sha256").hexdigest()

    def _refuse_if_blocked(self, keys: tuple[str, ...], now_ms: int) -> None:
        marks = ",".join("?" * len(keys))
        row = self._store.read_one(
            f"SELECT MAX(blocked_until_ms) FROM sign_in_attempts WHERE key IN ({marks})",  # noqa: S608
            keys,
        )
        until = row[0] if row is not None and row[0] is not None else 0
        if until > now_ms:
            wait_s = math.ceil((until - now_ms) / 1000)
            raise Throttled(f"too many failed attempts; try again in {wait_s} seconds")

    def _failed(self, keys: tuple[str, str], now_ms: int) -> None:
        """Count one failure against the login and the address."""
        login_key, address_key = keys
        with self._store.write() as db:
            _count_failure(db, login_key, now_ms, _login_block, LOGIN_FORGET_MS)
            _count_failure(db, address_key, now_ms, _address_block, ADDRESS_WINDOW_MS)

    # --- residents: self-service -----------------------------------------------------------------

    def change_own_pin(
        self,
        person: Person,
        old_pin: str,
        new_pin: str,
        now_ms: int,
        *,
        address: str,
        keep_token: str | None = None,
    ) -> None:
        """A resident changes their PIN; the old one is checked under the sign-in throttle.
        Every other session of theirs ends."""
        profile = self._store.read_one(
            "SELECT r.phone, p.secret_hash FROM resident_profiles r"
            " JOIN people p ON p.id = r.person_id WHERE p.id = ? AND p.role = 'resident'",
            (person.id,),
        )
        if profile is None:
            raise NotFound("no such resident")
        check_pin(new_pin, profile["phone"], field="new_pin")
        keys = (self._key("login", f"phone:{profile['phone']}"), self._key("addr", address))
        self._refuse_if_blocked(keys, now_ms)
        if not verify_secret(old_pin, profile["secret_hash"]):
            self._failed(keys, now_ms)
            raise Forbidden("the current PIN is wrong", field="old_pin", code="wrong_pin")
        new_hash = hash_secret(new_pin)
        with self._store.write() as db:
            db.execute("UPDATE people SET secret_hash = ? WHERE id = ?", (new_hash, person.id))
            db.execute("DELETE FROM sign_in_attempts WHERE key = ?", (keys[0],))
            ended = _revoke(db, person.id, keep_token)
            _record(
                db, person.id, "pin_changed", person.id, "changed by the resident",
                {"sessions_ended": ended}, now_ms,
            )  # fmt: skip

    def set_language(self, person: Person, language: str) -> None:
        """Set the language of the person's pages and messages."""
        if language not in LANGUAGES:
            raise Invalid(f"language must be one of {', '.join(LANGUAGES)}", field="language")
        with self._store.write() as db:
            db.execute("UPDATE people SET language = ? WHERE id = ?", (language, person.id))

    # --- residents: what a social worker does ----------------------------------------------------

    def onboard_resident(
        self,
        worker: Person,
        display_name: str,
        phone: str,
        pin: str,
        household: str,
        unit: str,
        language: str,
        flags: Iterable[str],
        reason: str,
        *,
        now_ms: int,
    ) -> str:
        """Open a resident's account in the worker's community; return the new person's id.

        Raises:
            Invalid: a bad name, phone, PIN, language, flag or reason (``field`` says which).
            Conflict: the phone number is already registered (``field="phone"``).
        """
        _require_worker(worker)
        name = _text(display_name, "display_name", minimum=1)
        number = _valid_phone(phone)
        check_pin(pin, number)
        household = _text(household, "household")
        unit = _text(unit, "unit")
        if language not in LANGUAGES:
            raise Invalid(f"language must be one of {', '.join(LANGUAGES)}", field="language")
        chosen = _flags(flags)
        why = _reason(reason)
        secret_hash = hash_secret(pin)
        person_id = new_id("per")
        try:
            with self._store.write() as db:
                _refuse_taken(db, number)
                db.execute(
                    "INSERT INTO people (id, community_id, role, display_name, login, secret_hash,"
                    " language, created_ms) VALUES (?, ?, 'resident', ?, ?, ?, ?, ?)",
                    (
                        person_id,
                        worker.community_id,
                        name,
                        person_id,
                        secret_hash,
                        language,
                        now_ms,
                    ),
                )
                db.execute(
                    "INSERT INTO resident_profiles (person_id, phone, household, unit, flags)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (person_id, number, household, unit, json.dumps(chosen)),
                )
                SqlLedger(db).open_account(
                    f"mem:{person_id}", "member", limit=0, person_id=person_id, name=name
                )
                _record(
                    db, person_id, "onboarded", worker.id, why,
                    {"language": language, "flags": chosen}, now_ms,
                )  # fmt: skip
        except sqlite3.IntegrityError as exc:  # the same phone registered at the same moment
            raise Conflict("this phone number is already registered", field="phone") from exc
        return person_id

    def reset_pin(
        self, worker: Person, person_id: str, new_pin: str, reason: str, *, now_ms: int
    ) -> int:
        """Give a resident a new PIN; their sessions end and their sign-in block is lifted.
        Returns how many sessions ended."""
        _require_worker(worker)
        why = _reason(reason)
        resident = self._resident(worker, person_id)
        check_pin(new_pin, resident["phone"])
        new_hash = hash_secret(new_pin)
        login_key = self._key("login", f"phone:{resident['phone']}")
        with self._store.write() as db:
            self._resident(worker, person_id, db)
            db.execute("UPDATE people SET secret_hash = ? WHERE id = ?", (new_hash, person_id))
            db.execute("DELETE FROM sign_in_attempts WHERE key = ?", (login_key,))
            ended = _revoke(db, person_id)
            _record(db, person_id, "pin_reset", worker.id, why, {"sessions_ended": ended}, now_ms)
        return ended

    def change_phone(
        self, worker: Person, person_id: str, new_phone: str, reason: str, *, now_ms: int
    ) -> int:
        """Change a resident's phone number; their sessions end. Returns how many ended.

        The caller re-publishes the configuration of every device holding the resident's live
        grants: a grant's guard digits are the phone's last four.
        """
        _require_worker(worker)
        why = _reason(reason)
        number = _valid_phone(new_phone)
        self._resident(worker, person_id)
        try:
            with self._store.write() as db:
                self._resident(worker, person_id, db)
                _refuse_taken(db, number)
                db.execute(
                    "UPDATE resident_profiles SET phone = ? WHERE person_id = ?",
                    (number, person_id),
                )
                ended = _revoke(db, person_id)
                _record(
                    db,
                    person_id,
                    "phone_changed",
                    worker.id,
                    why,
                    {"sessions_ended": ended},
                    now_ms,
                )
        except sqlite3.IntegrityError as exc:
            raise Conflict("this phone number is already registered", field="phone") from exc
        return ended

    def set_flags(
        self, worker: Person, person_id: str, flags: Iterable[str], reason: str, *, now_ms: int
    ) -> list[str]:
        """Set a resident's support flags (sensitive: never shown publicly per person)."""
        _require_worker(worker)
        why = _reason(reason)
        chosen = _flags(flags)
        with self._store.write() as db:
            before = json.loads(self._resident(worker, person_id, db)["flags"])
            db.execute(
                "UPDATE resident_profiles SET flags = ? WHERE person_id = ?",
                (json.dumps(chosen), person_id),
            )
            _record(
                db, person_id, "flags_set", worker.id, why, {"from": before, "to": chosen}, now_ms
            )
        return chosen

    def set_status(
        self, worker: Person, person_id: str, status: str, reason: str, *, now_ms: int
    ) -> None:
        """Enable or disable a resident; disabling ends their sessions."""
        _require_worker(worker)
        why = _reason(reason)
        if status not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}", field="status")
        with self._store.write() as db:
            before = self._resident(worker, person_id, db)["status"]
            db.execute("UPDATE people SET status = ? WHERE id = ?", (status, person_id))
            ended = _revoke(db, person_id) if status != "active" else 0
            _record(
                db, person_id, "status_set", worker.id, why,
                {"from": before, "to": status, "sessions_ended": ended}, now_ms,
            )  # fmt: skip

    def profile(self, worker: Person, person_id: str) -> dict[str, Any]:
        """A resident of the worker's community (phone masked)."""
        _require_worker(worker)
        return _profile_of(self._resident(worker, person_id))

    def history(self, worker: Person, person_id: str) -> list[dict[str, Any]]:
        """A resident's account changes, newest first, with who made each and why."""
        _require_worker(worker)
        self._resident(worker, person_id)
        rows = self._store.read(
            "SELECT c.id, c.kind, c.actor_id, a.display_name AS actor_name, c.reason, c.detail,"
            " c.at_ms FROM account_changes c JOIN people a ON a.id = c.actor_id"
            " WHERE c.person_id = ? ORDER BY c.at_ms DESC, c.rowid DESC",
            (person_id,),
        )
        return [dict(r) | {"detail": json.loads(r["detail"])} for r in rows]

    def search(
        self, worker: Person, q: str, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Residents of the worker's community matching ``q`` (a substring of the name,
        household or unit; or, for 4 digits, the phone's last four), and how many match."""
        _require_worker(worker)
        where = "p.community_id = ? AND p.role = 'resident'"
        params: list[Any] = [worker.community_id]
        query = q.strip()
        if query:
            like = "%" + re.sub(r"([\\%_])", r"\\\1", query) + "%"
            parts = [f"{c} LIKE ? ESCAPE '\\'" for c in ("p.display_name", "r.household", "r.unit")]
            params += [like] * 3
            if re.fullmatch(r"[0-9]{4}", query):
                parts.append("substr(r.phone, -4) = ?")
                params.append(query)
            where += " AND (" + " OR ".join(parts) + ")"
        base = f" FROM people p JOIN resident_profiles r ON r.person_id = p.id WHERE {where}"
        with self._store.snapshot() as db:
            total = db.execute("SELECT COUNT(*)" + base, tuple(params)).fetchone()[0]
            rows = db.execute(
                f"SELECT {_PROFILE_COLUMNS}{base} ORDER BY p.display_name, p.id LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
        return [_profile_of(r) for r in rows], int(total)

    def _resident(
        self, worker: Person, person_id: str, db: sqlite3.Connection | None = None
    ) -> sqlite3.Row:
        """A resident of the worker's community; anyone else is NotFound (never revealed)."""
        sql = (
            f"SELECT {_PROFILE_COLUMNS} FROM people p JOIN resident_profiles r"  # noqa: S608
            " ON r.person_id = p.id WHERE p.id = ? AND p.community_id = ? AND p.role = 'resident'"
        )
        params = (person_id, worker.community_id)
        row = db.execute(sql, params).fetchone() if db else self._store.read_one(sql, params)
        if row is None:
            raise NotFound("no such resident")
        found: sqlite3.Row = row
        return found


_PROFILE_COLUMNS = (
    "p.id, p.display_name, p.language, p.status, p.created_ms, r.phone, r.household, r.unit,"
    " r.flags"
)


def _profile_of(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "display_name": row["display_name"],
        "household": row["household"],
        "unit": row["unit"],
        "language": row["language"],
        "flags": json.loads(row["flags"]),
        "status": row["status"],
        "phone_masked": mask_phone(row["phone"]),
        "created_ms": row["created_ms"],
    }


def _phone_of(login: str) -> str | None:
    """The normalized phone of a login that looks like a phone number, or its bare digits."""
    stripped = login.strip()
    if not _PHONE_LIKE.fullmatch(stripped):
        return None
    return normalize_phone(stripped) or stripped.replace(" ", "").replace("-", "")


def _valid_phone(raw: str) -> str:
    number = normalize_phone(raw.strip())
    if number is None:
        raise Invalid("a Chinese mobile number is needed (11 digits, 13x to 19x)", field="phone")
    return number


def _refuse_taken(db: sqlite3.Connection, phone: str) -> None:
    if db.execute("SELECT 1 FROM resident_profiles WHERE phone = ?", (phone,)).fetchone():
        raise Conflict("this phone number is already registered", field="phone")


def _require_worker(worker: Person) -> None:
    if worker.role != "social_worker":
        raise Forbidden("only a social worker manages residents' accounts")


def _text(value: str, field: str, *, minimum: int = 0) -> str:
    text = value.strip()
    if not minimum <= len(text) <= MAX_NAME_LENGTH or any(ord(c) < 32 for c in text):
        raise Invalid(
            f"{field} needs {minimum} to {MAX_NAME_LENGTH} printable characters", field=field
        )
    return text


def _reason(reason: str) -> str:
    text = reason.strip()
    if not 1 <= len(text) <= MAX_REASON_LENGTH:
        raise Invalid(f"a reason of 1 to {MAX_REASON_LENGTH} characters is needed", field="reason")
    return text


def _flags(flags: Iterable[str]) -> list[str]:
    chosen = sorted(set(flags))
    unknown = set(chosen) - FLAGS
    if unknown:
        raise Invalid(f"flags must be among {', '.join(sorted(FLAGS))}", field="flags")
    return chosen


def _record(
    db: sqlite3.Connection,
    person_id: str,
    kind: str,
    actor_id: str,
    reason: str,
    detail: dict[str, Any],
    now_ms: int,
) -> None:
    """One immutable ``account_changes`` row (``detail`` never carries a phone or a PIN)."""
    db.execute(
        "INSERT INTO account_changes (id, person_id, kind, actor_id, reason, detail, at_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            new_id("chg"),
            person_id,
            kind,
            actor_id,
            reason,
            json.dumps(detail, sort_keys=True),
            now_ms,
        ),
    )


def _revoke(db: sqlite3.Connection, person_id: str, keep_token: str | None = None) -> int:
    if keep_token is None:
        cursor = db.execute("DELETE FROM sessions WHERE person_id = ?", (person_id,))
    else:
        cursor = db.execute(
            "DELETE FROM sessions WHERE person_id = ? AND token_hash <> ?",
            (person_id, _token_hash(keep_token)),
        )
    return int(cursor.rowcount)


def _login_block(failures: int) -> int:
    """How long a login is blocked after its ``failures``-th failure (0: not blocked)."""
    if failures < LOGIN_FREE_FAILURES:
        return 0
    doublings = min(failures - LOGIN_FREE_FAILURES, 8)
    return min(LOGIN_FIRST_BLOCK_MS << doublings, LOGIN_MAX_BLOCK_MS)


def _address_block(failures: int) -> int:
    return ADDRESS_BLOCK_MS if failures >= ADDRESS_MAX_FAILURES else 0


def _count_failure(
    db: sqlite3.Connection,
    key: str,
    now_ms: int,
    block_ms: Callable[[int], int],
    forget_ms: int,
) -> None:
    """Count a failure against ``key``; a count older than ``forget_ms`` (and not blocking)
    starts again (for an address, its 15-minute window)."""
    row = db.execute(
        "SELECT failures, first_ms, blocked_until_ms FROM sign_in_attempts WHERE key = ?", (key,)
    ).fetchone()
    failures, first_ms = (0, now_ms)
    if row is not None:
        failures, first_ms = row["failures"], row["first_ms"]
        if now_ms - first_ms >= forget_ms and row["blocked_until_ms"] <= now_ms:
            failures, first_ms = 0, now_ms
    failures += 1
    blocked_for = block_ms(failures)
    blocked_until = now_ms + blocked_for if blocked_for else 0
    db.execute(
        "INSERT INTO sign_in_attempts (key, failures, first_ms, blocked_until_ms)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,"
        " first_ms = excluded.first_ms, blocked_until_ms = excluded.blocked_until_ms",
        (key, failures, first_ms, blocked_until),
    )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _person(row: sqlite3.Row) -> Person:
    return Person(
        id=row["id"],
        community_id=row["community_id"],
        role=row["role"],
        display_name=row["display_name"],
        language=row["language"],
    )
