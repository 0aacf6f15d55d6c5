"""Demo data: a community, residents, staff, two locker banks, a terminal, items, one reservation.

Demo logins use fixed, published PINs, passwords and TOTP secrets: this data is for ``linli demo``
and tests only, and :func:`seed_demo` refuses to run on a store that already holds other
communities. Residents' phone numbers go to ``resident_profiles`` (their ``people.login`` is their
id); staff TOTP secrets are stored sealed under the cloud's keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cloud_api import ledger
from cloud_api.accounts.service import (
    check_password,
    check_pin,
    hash_secret,
    seal_totp_secret,
)
from cloud_api.core.totp import step_of, totp_at
from cloud_api.devices.enrol import enrol_device, issue_terminal_token
from cloud_api.items.service import reserve
from cloud_api.keys import CloudKeys
from cloud_api.store import Store
from linli.identity import DeviceIdentity

COMMUNITY = "sunny-garden"


@dataclass(frozen=True)
class DemoLogin:
    """One demo account: a resident's phone and PIN, or a staff login, password and TOTP secret.

    Example:
        >>> httpx.post(f"{url}/api/v1/session", json=login.body(clock.now().wall_ms))
    """

    role: str
    name: str
    login: str
    secret: str = field(repr=False)
    totp_secret: str | None = field(default=None, repr=False)
    household: str = ""
    unit: str = ""
    flags: tuple[str, ...] = ()

    def body(self, now_ms: int) -> dict[str, str]:
        """The JSON body of ``POST /api/v1/session`` at ``now_ms`` (staff: with the current
        authenticator code; a code is accepted once, so sign in again in the next 30 s step)."""
        result = {"login": self.login, "secret": self.secret}
        if self.totp_secret is not None:
            result["totp"] = totp_at(self.totp_secret, step_of(now_ms))
        return result


@dataclass(frozen=True)
class DemoSeed:
    """What the demo seeded, for printing and for the scenario."""

    logins: tuple[DemoLogin, ...]
    identities: dict[str, DeviceIdentity]
    reserved_item: str
    reserved_by: DemoLogin
    reserved_locker: str
    reserved_compartment: str
    items_in_lockers: dict[str, set[str]]
    terminal_id: str = ""
    terminal_identity: DeviceIdentity | None = None
    terminal_token: str = field(default="", repr=False)
    """The valuation terminal's HTTP token, new at every seeding (the previous one stops)."""


LOGINS = (
    DemoLogin(
        "resident",
        "王阿姨 (Auntie Wang, 72)",
        "13800000001",
        "246810",
        household="王家 Wang household",
        unit="3栋 2单元 401",
        flags=("elderly",),
    ),
    DemoLogin(
        "resident",
        "李叔叔 (Uncle Li)",
        "13800000002",
        "135790",
        household="李家 Li household",
        unit="5栋 1单元 202",
    ),
    DemoLogin(
        "social_worker",
        "张社工 (Zhang, social worker)",
        "zhang",
        "demo-social-worker",
        totp_secret="JBSWY3DPEHPK3PXP",  # noqa: S106 (published demo secret)
    ),
    DemoLogin(
        "maintainer",
        "刘师傅 (Liu, maintainer)",
        "liu",
        "demo-maintainer",
        totp_secret="JBSWY3DPEHPK3PXQ",  # noqa: S106 (published demo secret)
    ),
    # A second social worker: large point movements need two (docs/decisions/0015-ledger.md).
    DemoLogin(
        "social_worker",
        "陈社工 (Chen, social worker)",
        "chen",
        "demo-social-worker-2",
        totp_secret="JBSWY3DPEHPK3PXR",  # noqa: S106 (published demo secret)
    ),
)
LOCKERS = {
    "locker-a": ("1号柜 Locker A", "阳光花园 3栋 东门 · Building 3, east gate"),
    "locker-b": ("2号柜 Locker B", "阳光花园 活动中心 · Community centre"),
}
COMPARTMENTS = [("A1", "S"), ("A2", "M"), ("A3", "M"), ("A4", "L")]
TERMINAL = ("terminal-1", "估价终端 Valuation terminal", "阳光花园 活动中心 · Community centre")
ITEMS = [
    # id, title, category, points, locker, compartment
    ("itm_kettle", "电热水壶 Electric kettle", "appliance", 12, "locker-a", "A2"),
    ("itm_books", "儿童绘本 5 本 Picture books", "books", 5, "locker-a", "A3"),
    ("itm_coat", "冬季外套 Winter coat", "clothing", 20, "locker-b", "A4"),
]


def seed_demo(store: Store, keys: CloudKeys, now_ms: int) -> DemoSeed:
    """Seed the demo (idempotent on a store that holds only the demo)."""
    existing = {r["id"] for r in store.read("SELECT id FROM communities")}
    if existing - {COMMUNITY}:
        raise SystemExit("refusing to seed demo data into a store that holds other communities")
    if not existing:
        _seed_people(store, keys, now_ms)
    identities = {
        device_id: enrol_device(
            store,
            keys,
            community_id=COMMUNITY,
            device_id=device_id,
            role="locker",
            name=name,
            location=location,
            compartments=COMPARTMENTS,
        )
        for device_id, (name, location) in LOCKERS.items()
    }
    if not existing:
        _seed_items(store, keys, now_ms)
    terminal_id, terminal_name, terminal_location = TERMINAL
    terminal_identity = enrol_device(
        store,
        keys,
        community_id=COMMUNITY,
        device_id=terminal_id,
        role="terminal",
        name=terminal_name,
        location=terminal_location,
    )
    in_lockers: dict[str, set[str]] = {d: set() for d in LOCKERS}
    for row in store.read(
        "SELECT device_id, compartment FROM items WHERE status IN ('listed', 'reserved', 'collecting')"
    ):
        in_lockers[row["device_id"]].add(row["compartment"])
    return DemoSeed(
        logins=LOGINS,
        identities=identities,
        reserved_item="itm_kettle",
        reserved_by=LOGINS[0],
        reserved_locker="locker-a",
        reserved_compartment="A2",
        items_in_lockers=in_lockers,
        terminal_id=terminal_id,
        terminal_identity=terminal_identity,
        terminal_token=issue_terminal_token(store, terminal_id),
    )


def _seed_people(store: Store, keys: CloudKeys, now_ms: int) -> None:
    with store.write() as db:
        db.execute(
            "INSERT INTO communities (id, name) VALUES (?, ?)", (COMMUNITY, "阳光花园 Sunny Garden")
        )
        accounts = ledger.SqlLedger(db)
        for account in ledger.SYSTEM_ACCOUNTS:
            accounts.open_account(account, "system", name=account.split(":")[1])
        for i, login in enumerate(LOGINS, start=1):
            person_id = f"per_{i}"
            is_resident = login.role == "resident"
            if is_resident:
                check_pin(login.secret, login.login)
            else:
                check_password(login.secret)
            db.execute(
                "INSERT INTO people (id, community_id, role, display_name, login, secret_hash,"
                " totp_secret, created_ms) VALUES (?,?,?,?,?,?,?,?)",
                (
                    person_id,
                    COMMUNITY,
                    login.role,
                    login.name,
                    person_id if is_resident else login.login,  # a phone never goes in people
                    hash_secret(login.secret),
                    seal_totp_secret(keys, person_id, login.totp_secret)
                    if login.totp_secret
                    else None,
                    now_ms,
                ),
            )
            if is_resident:
                db.execute(
                    "INSERT INTO resident_profiles (person_id, phone, household, unit, flags)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (person_id, login.login, login.household, login.unit, json.dumps(login.flags)),
                )
                accounts.open_account(
                    f"mem:{person_id}", "member", limit=0, person_id=person_id, name=login.name
                )
                ledger.transfer(
                    db,
                    key=f"seed-credit:{person_id}",
                    debit=ledger.ISSUANCE,
                    credit=f"mem:{person_id}",
                    amount=50,
                    kind="valuation_credit",
                    actor="seed",
                    now_ms=now_ms,
                )


def _seed_items(store: Store, keys: CloudKeys, now_ms: int) -> None:
    with store.write() as db:
        for item_id, title, category, points, device_id, compartment in ITEMS:
            db.execute(
                "INSERT INTO items (id, community_id, donor_id, title, category, points, status,"
                " device_id, compartment, updated_ms) VALUES (?,?,?,?,?,?, 'listed', ?,?,?)",
                (
                    item_id,
                    COMMUNITY,
                    "per_2",
                    title,
                    category,
                    points,
                    device_id,
                    compartment,
                    now_ms,
                ),
            )
        db.execute(
            "UPDATE compartments SET occupancy = 'present', fact_occupancy = 'present'"
            " WHERE (device_id, name) IN"
            " (SELECT device_id, compartment FROM items)"
        )
        reserve(db, keys, "itm_kettle", "per_1", now_ms)
