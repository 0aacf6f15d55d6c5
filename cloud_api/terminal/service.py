"""What a valuation terminal may do in the cloud (docs/terminal-api.md).

A terminal authenticates with its own token (``Authorization: Terminal <device_id>:<token>``;
the cloud keeps only the token's SHA-256). A resident signs in at the kiosk with phone and PIN
under the same throttle as every sign-in, and the terminal receives a **ticket**, not a session:
an HMAC over (terminal, resident, expiry) that lets *this* terminal act for *this* resident for
72 hours — long enough for a proposal queued during an outage to be submitted later, and useless
to any other terminal or to anyone without the cloud's key.

A proposal is idempotent on the terminal's ``proposal_id``: the first request records the item,
its valuation (checked by recomputing it under the stored policy) and, space permitting, its
drop-off grant; the same request again returns that answer; the same id with another body is a
conflict.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_api.accounts.service import AccountService, Person
from cloud_api.devices.enrol import token_hash
from cloud_api.devices.service import DeviceService, DeviceUnavailable
from cloud_api.errors import CloudError, Conflict, Invalid, NotAuthenticated, NotFound
from cloud_api.grants.service import free_compartments
from cloud_api.items.service import ItemService, grant_view
from cloud_api.keys import CloudKeys
from cloud_api.notify.outbox import enqueue
from cloud_api.store import StorePort
from cloud_api.uploads import media_type_of, photo_path, store_upload
from cloud_api.valuations.service import ValuationService
from linli.clock import Clock

TICKET_MS = 72 * 3600 * 1000
MAX_TERMINAL_PHOTO_BYTES = 2 * 1024 * 1024
OPEN_WAIT_S = 3.0
"""How long a proposal with ``open_now`` waits for the locker to apply the configuration that
carries its new grant before sending the open command (the locker opens only for grants it
holds); past it the resident uses the code shown."""


@dataclass(frozen=True)
class Terminal:
    """An authenticated valuation terminal."""

    device_id: str
    community_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TerminalService:
    """Terminal authentication, tickets, space, photos and proposals."""

    def __init__(
        self,
        store: StorePort,
        keys: CloudKeys,
        clock: Clock,
        accounts: AccountService,
        items: ItemService,
        valuations: ValuationService,
        devices: DeviceService,
        data_dir: Path,
    ) -> None:
        self.store = store
        self.keys = keys
        self.clock = clock
        self.accounts = accounts
        self.items = items
        self.valuations = valuations
        self.devices = devices
        self.data_dir = data_dir
        self._ticket_key = hmac.new(
            keys.code_secret, b"linli terminal tickets v1", "sha256"
        ).digest()

    def _now(self) -> int:
        return self.clock.now().wall_ms

    # --- who is asking -------------------------------------------------------------------------

    def authenticate(self, credentials: str) -> Terminal:
        """The terminal whose ``<device_id>:<token>`` these are, or 401."""
        device_id, _, token = credentials.partition(":")
        row = self.store.read_one(
            "SELECT id, community_id, http_token_hash FROM devices WHERE id = ? AND role = 'terminal'",
            (device_id,),
        )
        expected = row["http_token_hash"] if row is not None else None
        if (
            row is None
            or not token
            or expected is None
            or not hmac.compare_digest(expected, token_hash(token))
        ):
            raise NotAuthenticated("this terminal is not enrolled", code="terminal_unauthorized")
        return Terminal(row["id"], row["community_id"])

    def ticket_for(self, terminal: Terminal, resident_id: str, expires_ms: int) -> str:
        body = _b64(json.dumps([terminal.device_id, resident_id, expires_ms]).encode())
        mac = hmac.new(self._ticket_key, body.encode(), "sha256").digest()
        return f"{body}.{_b64(mac)}"

    def resident(self, terminal: Terminal, ticket: str | None) -> Person:
        """The resident a ticket names, for this terminal only; 401 otherwise."""
        if not ticket:
            raise NotAuthenticated("sign the resident in first", code="ticket_invalid")
        body, _, mac = ticket.partition(".")
        try:
            given = _unb64(mac)
            device_id, resident_id, expires_ms = json.loads(_unb64(body))
        except (ValueError, binascii.Error, TypeError):
            raise NotAuthenticated("sign the resident in again", code="ticket_invalid") from None
        good = hmac.new(self._ticket_key, body.encode(), "sha256").digest()
        if not hmac.compare_digest(good, given) or device_id != terminal.device_id:
            raise NotAuthenticated("sign the resident in again", code="ticket_invalid")
        if not isinstance(expires_ms, int) or expires_ms <= self._now():
            raise NotAuthenticated("sign the resident in again", code="ticket_expired")
        row = self.store.read_one(
            "SELECT id, community_id, role, display_name, language, status FROM people"
            " WHERE id = ? AND role = 'resident'",
            (resident_id,),
        )
        if row is None or row["community_id"] != terminal.community_id:
            raise NotAuthenticated("sign the resident in again", code="ticket_invalid")
        if row["status"] != "active":
            raise NotAuthenticated("this account is disabled", code="account_disabled")
        return Person(
            row["id"], row["community_id"], row["role"], row["display_name"], row["language"]
        )

    # --- the resident at the kiosk -------------------------------------------------------------

    def signin(self, terminal: Terminal, phone: str, pin: str) -> dict[str, Any]:
        now = self._now()
        person = self.accounts.check_resident(
            phone, pin, now, address=f"terminal:{terminal.device_id}"
        )
        if person.community_id != terminal.community_id:
            raise NotAuthenticated("wrong login, PIN or password")
        expires = now + TICKET_MS
        return {
            "resident_id": person.id,
            "display_name": person.display_name,
            "language": person.language,
            "ticket": self.ticket_for(terminal, person.id, expires),
            "ticket_expires_ms": expires,
        }

    def space(self, terminal: Terminal, size: str) -> dict[str, Any]:
        with self.store.snapshot() as db:
            free = free_compartments(db, terminal.community_id, size)
        return {"free": bool(free), "size": free[0]["size"] if free else None}

    def put_photo(self, resident: Person, digest: str, data: bytes) -> bool:
        """Store a photo under its hash; return whether it was new."""
        if len(data) > MAX_TERMINAL_PHOTO_BYTES:
            raise Invalid("the photo is larger than 2 MiB", field="body", code="photo_too_large")
        if media_type_of(data) != "image/jpeg":
            raise Invalid("the photo is not a JPEG", field="body", code="bad_photo")
        if hashlib.sha256(data).hexdigest() != digest:
            raise Invalid(
                "the photo's bytes do not match its hash", field="body", code="hash_mismatch"
            )
        existed = photo_path(self.store, self.data_dir, digest) is not None
        store_upload(self.store, self.data_dir, resident.id, data, self._now())
        return not existed

    # --- proposals -----------------------------------------------------------------------------

    def submit(
        self, terminal: Terminal, resident: Person, body: dict[str, Any]
    ) -> tuple[bool, dict[str, Any]]:
        """Record a proposal (or find it again); return (new?, the answer)."""
        open_now = bool(body.pop("open_now", False))
        request_hash = hashlib.sha256(
            json.dumps({**body, "resident": resident.id}, sort_keys=True).encode()
        ).hexdigest()
        now = self._now()
        with self.store.write() as db:
            known = db.execute(
                "SELECT item_id, request_hash FROM valuations WHERE proposal_key = ?",
                (body["proposal_id"],),
            ).fetchone()
            if known is not None:
                if known["request_hash"] != request_hash:
                    raise Conflict(
                        "this proposal id was used for another proposal",
                        code="idempotency_conflict",
                        field="proposal_id",
                    )
                if not open_now:
                    # Sent again after an outage: the resident may have left with "you will get
                    # a message"; the code goes out as one (once, whatever the first answer was).
                    self._message_code(db, known["item_id"], resident, now)
                return False, self._answer(db, known["item_id"], resident, opened=False)
            for digest in body["photos"]:
                if db.execute("SELECT 1 FROM uploads WHERE hash = ?", (digest,)).fetchone() is None:
                    raise Invalid("a photo was not uploaded", field="photos", code="photo_missing")
            proposal = self.valuations.checked_proposal(
                db, terminal.community_id, body["inputs"], body["proposal"]
            )
            if proposal.abstained is None and body["inputs"]["category"] != body["category"]:
                raise Invalid("the category differs from the inputs'", field="category")
            item_id = self.items.propose_in(
                db,
                resident,
                resident.id,
                {
                    "title": body["title"],
                    "category": body["category"],
                    "size": body["size"],
                    "kind": "give",
                    "points": proposal.points or 0,
                },
                now,
            )
            db.execute(
                "INSERT INTO valuations (item_id, proposal_key, request_hash, terminal_id,"
                " policy_version, inputs, proposal, points, confidence, abstained, photos,"
                " weight_mg, created_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    item_id,
                    body["proposal_id"],
                    request_hash,
                    terminal.device_id,
                    proposal.policy_version,
                    json.dumps(body["inputs"], sort_keys=True),
                    json.dumps(proposal.to_json(), sort_keys=True, ensure_ascii=False),
                    proposal.points,
                    proposal.confidence,
                    proposal.abstained,
                    json.dumps(body["photos"]),
                    body["weight_mg"],
                    now,
                ),
            )
            if body["photos"]:
                db.execute("UPDATE items SET photo = ? WHERE id = ?", (body["photos"][0], item_id))
        no_grant_reason = None
        try:
            self.items.request_dropoff(resident, item_id, None, notify=not open_now)
        except CloudError as exc:
            if exc.code != "no_free_compartment":
                raise
            no_grant_reason = "no_space"
        opened = open_now and no_grant_reason is None and self._open(item_id, resident)
        with self.store.snapshot() as db:
            answer = self._answer(db, item_id, resident, opened=opened)
        answer["no_grant_reason"] = no_grant_reason
        return True, answer

    @staticmethod
    def _message_code(db: Any, item_id: str, resident: Person, now: int) -> None:
        grant = db.execute(
            "SELECT id FROM grants WHERE item_id = ? AND purpose = 'dropoff' AND status = 'active'",
            (item_id,),
        ).fetchone()
        if grant is not None:
            enqueue(
                db,
                person_id=resident.id,
                kind="new_code",
                key=f"new_code:{grant['id']}",
                params={"grant_id": grant["id"]},
                now_ms=now,
            )

    def waiting_for_space(self, now: int) -> int:
        """The scheduler's job: a terminal's proposal that found no free door gets its drop-off
        grant (and the code by message) once a fitting door is free; return how many."""
        waiting = self.store.read(
            "SELECT i.id, i.donor_id, i.community_id, i.size FROM items i"
            " JOIN valuations v ON v.item_id = i.id"
            " WHERE i.status = 'proposed' AND NOT EXISTS (SELECT 1 FROM grants g"
            " WHERE g.item_id = i.id AND g.purpose = 'dropoff') ORDER BY i.created_ms, i.id"
        )
        done = 0
        for row in waiting:
            with self.store.snapshot() as db:  # a read first: no write lock while all is full
                if not free_compartments(db, row["community_id"], row["size"]):
                    continue
            donor = self.store.read_one(
                "SELECT id, community_id, role, display_name, language FROM people WHERE id = ?",
                (row["donor_id"],),
            )
            assert donor is not None
            person = Person(
                donor["id"],
                donor["community_id"],
                donor["role"],
                donor["display_name"],
                donor["language"],
            )
            try:
                self.items.request_dropoff(person, row["id"], None, notify=True)
            except CloudError:
                continue  # still no room (or the item moved meanwhile)
            done += 1
        return done

    def _open(self, item_id: str, resident: Person) -> bool:
        """Send the open command once the locker holds the grant; False if it could not be."""
        grant = self.store.read_one(
            "SELECT g.id, g.device_id, g.compartment, d.cfg_version FROM grants g"
            " JOIN devices d ON d.id = g.device_id"
            " WHERE g.item_id = ? AND g.purpose = 'dropoff' AND g.status = 'active'",
            (item_id,),
        )
        if grant is None:
            return False
        deadline = time.monotonic() + OPEN_WAIT_S
        while True:
            row = self.store.read_one(
                "SELECT cfg_applied_version FROM devices WHERE id = ?", (grant["device_id"],)
            )
            if row is not None and row["cfg_applied_version"] >= grant["cfg_version"]:
                break
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        try:
            self.devices.send_command(
                grant["device_id"],
                "open",
                requested_by=resident.id,
                compartment=grant["compartment"],
                grant_id=grant["id"],
            )
        except (DeviceUnavailable, CloudError):
            return False
        return True

    def _answer(self, db: Any, item_id: str, resident: Person, *, opened: bool) -> dict[str, Any]:
        item = db.execute(
            "SELECT id, status, device_id, compartment FROM items WHERE id = ?", (item_id,)
        ).fetchone()
        grant = db.execute(
            "SELECT id FROM grants WHERE item_id = ? AND purpose = 'dropoff'"
            " ORDER BY created_ms DESC, rowid DESC LIMIT 1",
            (item_id,),
        ).fetchone()
        shown = None
        if grant is not None:
            view = grant_view(db, self.keys, grant["id"], with_code=True)
            shown = {
                "grant_id": view["grant_id"],
                "device_id": view["device_id"],
                "locker_name": view["locker"],
                "compartment": view["compartment"],
                "label": view["compartment"],
                "valid_until_ms": view["valid_until_ms"],
                "status": view["status"],
                "opened": opened,
                "code": view["code"] if view["status"] == "active" else None,
            }
        return {
            "item_id": item["id"],
            "status": item["status"],
            "grant": shown,
            "no_grant_reason": None,
        }

    def status(self, terminal: Terminal, proposal_id: str) -> dict[str, Any]:
        """Where a proposal's item is now (the kiosk polls for the locker's confirmation)."""
        row = self.store.read_one(
            "SELECT i.id, i.status, i.device_id, i.compartment, d.decision, d.points, d.reason"
            " FROM valuations v JOIN items i ON i.id = v.item_id"
            " LEFT JOIN valuation_decisions d ON d.item_id = i.id"
            " WHERE v.proposal_key = ? AND v.terminal_id = ?",
            (proposal_id, terminal.device_id),
        )
        if row is None:
            raise NotFound("no such proposal")
        return {
            "item_id": row["id"],
            "status": row["status"],
            "device_id": row["device_id"],
            "compartment": row["compartment"],
            "decision": None
            if row["decision"] is None
            else {"decision": row["decision"], "points": row["points"], "reason": row["reason"]},
        }
