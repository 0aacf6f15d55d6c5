"""The points ledger made tamper-evident: daily Merkle trees, Certificate-Transparency style.

A hash chain proves nothing if the operator can rewrite the whole file (points.md, "Tamper-evident
and public"). Instead, every ledger transfer becomes one **leaf**; the leaves form an append-only
**log** in ledger order, hashed as an RFC 6962 / RFC 9162 Merkle tree. Each community day the cloud
signs a :class:`DailyRoot` and publishes it where it cannot be taken back (a QR code on the notice
board, the community group). A daily root commits to two trees:

* the **day tree** over that day's transfers only (``day_size``, ``day_root``): a resident checks
  their own entries with an inclusion proof against a short path;
* the **log tree** over every transfer so far (``log_size``, ``log_root``): anyone holding two
  published roots checks with a consistency proof that the later log extends the earlier one, so
  no past transfer was altered, removed or reordered. The body carries the proof from the previous
  day's log (``consistency``), so two photographed QR codes suffice.

The day's transfers are exactly the log's tail: ``log_size = previous_log_size + day_size``.

Hashing (RFC 6962 §2.1, RFC 9162 §2.1.1): ``leaf = SHA-256(0x00 || data)``,
``node = SHA-256(0x01 || left || right)``, the tree over ``n > 1`` leaves splits at the largest power
of two smaller than ``n``, and the empty tree hashes to ``SHA-256("")``.

Leaves (:class:`TransferLeaf`) hold a transfer's public fields in the clear and a salted
commitment to its private ones; :func:`split_fields` is the policy deciding which is which.

Everything here is pure (no store, no clock, no I/O); the ledger adapter feeds leaves in and
publishes what comes out.

Example:
    >>> key = Ed25519PrivateKey.generate()
    >>> leaves = [b"t1", b"t2", b"t3"]
    >>> day1 = daily_root("linli-east", "2026-12-01", leaves, None, signed_at_ms=1)
    >>> signed = sign_root(day1, key)
    >>> verify_day(signed, leaves, leaves, key.public_key())
    []
    >>> verify_inclusion(b"t2", 1, 3, inclusion_proof(1, leaves), bytes.fromhex(day1.day_root))
    True
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from linli.contract import canonical_json

Scalar = str | int | None
"""A leaf field value: JSON string, integer or null (no floats, no booleans)."""

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The hash of the empty tree (RFC 6962 §2.1): SHA-256 of the empty string."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
MIN_SALT_BYTES = 16
"""Member ids are few and guessable; only the salt keeps a commitment from being brute-forced."""

ROOT_KIND = "daily_root"
"""The ``kind`` a signed root body declares. Devices verify bodies of the same key and accept
only ``cmd``/``cfg`` (docs/decisions/0005-key-model.md), so a root cannot pass as a command."""
ROOT_VERSION = 1


# --------------------------------------------------------------------------------------------
# RFC 6962 Merkle hashing
# --------------------------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """Hash one leaf's data: ``SHA-256(0x00 || data)``.

    Example:
        >>> leaf_hash(b"").hex()[:16]
        '6e340b9cffb37a98'
    """
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash an interior node: ``SHA-256(0x01 || left || right)``.

    Example:
        >>> node_hash(leaf_hash(b""), leaf_hash(b"\\x00")).hex()[:16]
        'fac54203e7cc696c'
    """
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``), where RFC 6962 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH over the leaf hashes ``hashes[lo:hi]``."""
    n = hi - lo
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[lo]
    k = _split(n)
    return node_hash(_mth(hashes, lo, lo + k), _mth(hashes, lo + k, hi))


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of a list of leaf *data* (RFC 6962 §2.1 MTH).

    Args:
        leaves: each leaf's data, in log order (not yet hashed).

    Example:
        >>> root([]).hex()[:16]
        'e3b0c44298fc1c14'
        >>> root([b"", b"\\x00"]).hex()[:16]
        'fac54203e7cc696c'
    """
    hashes = [leaf_hash(data) for data in leaves]
    return _mth(hashes, 0, len(hashes))


def _path(m: int, hashes: Sequence[bytes], lo: int, hi: int) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[lo:hi])."""
    n = hi - lo
    if n <= 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, hashes, lo, lo + k), _mth(hashes, lo + k, hi)]
    return [*_path(m - k, hashes, lo + k, hi), _mth(hashes, lo, lo + k)]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path proving that leaf ``index`` is in the tree over ``leaves``.

    RFC 6962 §2.1.1 (RFC 9162 §2.1.3.1): the sibling hashes from the leaf up to the root.

    Args:
        index: 0-based position of the leaf.
        leaves: the whole tree's leaf data.

    Raises:
        IndexError: ``index`` is outside the tree.

    Example:
        >>> leaves = [b"a", b"b", b"c"]
        >>> proof = inclusion_proof(2, leaves)
        >>> verify_inclusion(b"c", 2, 3, proof, root(leaves))
        True
    """
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is not in a tree of {len(leaves)}")
    hashes = [leaf_hash(data) for data in leaves]
    return _path(index, hashes, 0, len(hashes))


def verify_inclusion(
    leaf_data: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an inclusion proof (RFC 9162 §2.1.3.2).

    Args:
        leaf_data: the leaf's data (hashed here with the 0x00 prefix).
        index: its claimed 0-based position.
        tree_size: the size of the tree ``root`` belongs to.
        proof: the audit path from :func:`inclusion_proof`.
        root: the tree's root hash (32 bytes).

    Returns:
        True only if the proof places exactly this leaf at ``index`` in a tree of ``tree_size``
        leaves hashing to ``root``; False for any malformed input.

    A proof does not bind the tree size by itself: it also verifies under another size where the
    audit path has the same shape (index 0 of 3 and of 4 leaves). Take ``tree_size`` from the
    signed root, never from whoever supplies the proof.

    Example:
        >>> verify_inclusion(b"a", 0, 1, [], leaf_hash(b"a"))
        True
        >>> verify_inclusion(b"a", 1, 1, [], leaf_hash(b"a"))
        False
    """
    if not 0 <= index < tree_size or len(root) != HASH_SIZE:
        return False
    if any(len(p) != HASH_SIZE for p in proof):
        return False
    fn, sn = index, tree_size - 1
    r = leaf_hash(leaf_data)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def _subproof(m: int, hashes: Sequence[bytes], lo: int, hi: int, complete: bool) -> list[bytes]:
    """RFC 6962 §2.1.2 SUBPROOF(m, D[lo:hi], b)."""
    n = hi - lo
    if m == n:
        return [] if complete else [_mth(hashes, lo, hi)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, hashes, lo, lo + k, complete), _mth(hashes, lo + k, hi)]
    return [*_subproof(m - k, hashes, lo + k, hi, False), _mth(hashes, lo, lo + k)]


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The proof that the tree over ``leaves[:old_size]`` is a prefix of the tree over ``leaves``.

    RFC 6962 §2.1.2 (RFC 9162 §2.1.4.1). Empty when ``old_size`` is 0 or ``len(leaves)``.

    Args:
        old_size: the earlier tree's size, ``0 <= old_size <= len(leaves)``.
        leaves: the later tree's leaf data.

    Raises:
        ValueError: ``old_size`` is negative or larger than the tree.

    Example:
        >>> leaves = [b"a", b"b", b"c"]
        >>> proof = consistency_proof(2, leaves)
        >>> verify_consistency(2, 3, root(leaves[:2]), root(leaves), proof)
        True
    """
    if not 0 <= old_size <= len(leaves):
        raise ValueError(f"no tree of {old_size} inside a tree of {len(leaves)}")
    if old_size == 0:
        return []
    hashes = [leaf_hash(data) for data in leaves]
    return _subproof(old_size, hashes, 0, len(hashes), True)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof (RFC 9162 §2.1.4.2).

    The RFC's algorithm covers ``0 < old_size < new_size``. At the edges: equal sizes need an
    empty proof and equal roots; ``old_size == 0`` needs an empty proof and ``old_root`` equal to
    the empty tree's hash (stricter than transparency-dev/merkle, which ignores ``old_root``).

    As with inclusion, a proof may also verify under another ``new_size`` of the same shape
    (1 -> 3 and 1 -> 4); a wrong ``old_size`` never does. Take both sizes from the signed roots.

    Args:
        old_size: the earlier tree's size.
        new_size: the later tree's size.
        old_root: the earlier root (32 bytes).
        new_root: the later root (32 bytes).
        proof: from :func:`consistency_proof`.

    Example:
        >>> verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
        True
        >>> verify_consistency(1, 1, leaf_hash(b"a"), leaf_hash(b"b"), [])
        False
    """
    if not 0 <= old_size <= new_size or len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE:
        return False
    if any(len(p) != HASH_SIZE for p in proof):
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is a node itself
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


# --------------------------------------------------------------------------------------------
# Leaves: public fields in the clear, private fields behind a salted commitment
# --------------------------------------------------------------------------------------------

PUBLIC_FIELDS: tuple[str, ...] = (
    "id",
    "kind",
    "amount",
    "phase",
    "created_ms",
    "reverses_id",
    "pending_id",
    "debit",
    "credit",
)
"""Fields every leaf shows, always present (``None`` when the transfer lacks one).

``debit``/``credit`` show a system account (``sys:…``) as itself and any member account as the
string ``"member"``. Totals per kind and period can be recomputed from these alone; no leaf says
who. Known trade-off: ``created_ms`` and ``amount`` are exact, so someone who watched a resident
at the locker at 10:02 could guess which leaf is theirs; round them in the ledger if that matters.
"""

PRIVATE_FIELDS: tuple[str, ...] = (
    "key",
    "refs",
    "actor",
    "approved_by",
    "on_behalf_of",
    "reason",
    "debit",
    "credit",
)
"""Fields only the commitment binds, always present in it (``None`` when absent).

``debit``/``credit`` appear here only when they name a member account. ``key`` (the idempotency
key) and ``reason`` are free text that may name people or items, so they stay private. Any field
outside both lists goes here too: a new ledger column is private until someone decides otherwise.
"""

MEMBER_PREFIX = "mem:"
SYSTEM_PREFIX = "sys:"
MEMBER_PLACEHOLDER = "member"
COMMITMENT_KEY = "private"


def _check_scalar(name: str, value: object) -> Scalar:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"field {name!r} must be a string, an integer or None, not {type(value)!r}")


def _as_private(value: object) -> Scalar:
    """Private values: scalars as they are, anything else (refs lists, dicts) as canonical JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return canonical_json(value).decode()


def split_fields(
    transfer_fields: Mapping[str, object],
) -> tuple[dict[str, Scalar], dict[str, Scalar]]:
    """Split a transfer into its public and private leaf fields (see :data:`PUBLIC_FIELDS`).

    Args:
        transfer_fields: a transfer row with keys ``id, key, kind, debit, credit, amount, phase,
            pending_id, reverses_id, refs, actor, approved_by, on_behalf_of, reason, created_ms``.
            Accounts start with ``mem:`` (a member) or ``sys:`` (the system).

    Returns:
        ``(public, private)``, ready for :func:`transfer_leaf`.

    Raises:
        ValueError: an account that is neither ``mem:`` nor ``sys:``.
        TypeError: a public field that is not a string, an integer or None.

    Example:
        >>> public, private = split_fields({"id": "trf_1", "kind": "subsidy", "amount": 50,
        ...     "debit": "sys:issuance", "credit": "mem:p7", "actor": "sw:li"})
        >>> public["credit"], private["credit"], private["actor"]
        ('member', 'mem:p7', 'sw:li')
    """
    public: dict[str, Scalar] = {}
    private: dict[str, Scalar] = {
        name: None for name in PRIVATE_FIELDS if name not in ("debit", "credit")
    }
    for name in PUBLIC_FIELDS:
        value = transfer_fields.get(name)
        if name in ("debit", "credit") and value is not None:
            if not isinstance(value, str):
                raise TypeError(f"account {name!r} must be a string")
            if value.startswith(SYSTEM_PREFIX):
                public[name] = value
            elif value.startswith(MEMBER_PREFIX):
                public[name] = MEMBER_PLACEHOLDER
                private[name] = value
            else:
                raise ValueError(f"account {value!r} is neither a member nor a system account")
        else:
            public[name] = _check_scalar(name, value)
    for name, value in transfer_fields.items():
        if name not in PUBLIC_FIELDS:
            private[name] = _as_private(value)
    return public, private


def leaf_salt(secret: bytes, transfer_id: str) -> bytes:
    """The salt for one transfer's commitment: ``HMAC-SHA256(secret, transfer_id)``.

    The operator keeps one secret and can hand each resident the salts of their own entries
    without revealing anyone else's.

    Example:
        >>> len(leaf_salt(b"k" * 32, "trf_1"))
        32
    """
    return hmac.new(secret, transfer_id.encode(), hashlib.sha256).digest()


def private_commitment(private: Mapping[str, Scalar], salt: bytes) -> str:
    """``hex(SHA-256(salt || canonical JSON of private))``.

    Raises:
        ValueError: a salt shorter than :data:`MIN_SALT_BYTES`.
        TypeError: a value that is not a string, an integer or None.
    """
    if len(salt) < MIN_SALT_BYTES:
        raise ValueError(f"a salt needs at least {MIN_SALT_BYTES} bytes")
    checked = {name: _check_scalar(name, value) for name, value in private.items()}
    return hashlib.sha256(salt + canonical_json(checked)).hexdigest()


@dataclass(frozen=True)
class TransferLeaf:
    """One ledger transfer as a Merkle leaf.

    Attributes:
        public: the public fields (a read-only mapping), shown in the clear.
        commitment: hex SHA-256 of the salt and the private fields, stored under ``"private"``.

    Example:
        >>> leaf = TransferLeaf({"id": "trf_1", "amount": 5}, "ab" * 32)
        >>> TransferLeaf.decode(leaf.encode()) == leaf
        True
    """

    public: Mapping[str, Scalar] = field(hash=False)
    commitment: str

    def __post_init__(self) -> None:
        if COMMITMENT_KEY in self.public:
            raise ValueError(f"a public field cannot be named {COMMITMENT_KEY!r}")
        if not _HEX_HASH.fullmatch(self.commitment):
            raise ValueError("a commitment is 64 lowercase hex digits")
        checked = {name: _check_scalar(name, value) for name, value in self.public.items()}
        object.__setattr__(self, "public", MappingProxyType(checked))

    def encode(self) -> bytes:
        """The leaf's data: canonical JSON of the public fields plus ``"private"``."""
        return canonical_json({**self.public, COMMITMENT_KEY: self.commitment})

    @classmethod
    def decode(cls, data: bytes) -> TransferLeaf:
        """Parse leaf data, refusing anything that is not in canonical form.

        Raises:
            ValueError: not JSON, not an object, a bad commitment, or not canonical.
        """
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("a leaf is canonical JSON") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get(COMMITMENT_KEY), str):
            raise ValueError(f"a leaf is a JSON object with a {COMMITMENT_KEY!r} commitment")
        commitment = obj.pop(COMMITMENT_KEY)
        try:
            leaf = cls(obj, commitment)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc
        if leaf.encode() != data:
            raise ValueError("leaf data is not in canonical form")
        return leaf

    def opens(self, private: Mapping[str, Scalar], salt: bytes) -> bool:
        """Whether ``private`` and ``salt`` are what this leaf commits to (a resident's check)."""
        return hmac.compare_digest(private_commitment(private, salt), self.commitment)


def transfer_leaf(
    public: Mapping[str, Scalar], private: Mapping[str, Scalar], salt: bytes
) -> bytes:
    """Encode a transfer as leaf data: public fields plus a salted commitment to the private ones.

    Publishing the leaf reveals nothing about the private fields; a resident given the salt and
    their fields can recompute their own leaf and check its inclusion proof.

    Args:
        public: the public fields (from :func:`split_fields`).
        private: the private fields (from :func:`split_fields`).
        salt: at least 16 secret bytes, normally :func:`leaf_salt` of the transfer id.

    Example:
        >>> salt = leaf_salt(b"s" * 32, "trf_1")
        >>> data = transfer_leaf({"id": "trf_1", "amount": 5}, {"actor": "sw:li"}, salt)
        >>> data[:30]
        b'{"amount":5,"id":"trf_1","priv'
    """
    return TransferLeaf(dict(public), private_commitment(private, salt)).encode()


# --------------------------------------------------------------------------------------------
# Daily roots: build, sign, verify
# --------------------------------------------------------------------------------------------


def _check_day(name: str, value: str) -> None:
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise ValueError(f"{name} must be YYYY-MM-DD")
    date.fromisoformat(value)  # raises ValueError for 2026-02-30


def _check_size(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")


def _check_hex(name: str, value: str) -> None:
    if not isinstance(value, str) or not _HEX_HASH.fullmatch(value):
        raise ValueError(f"{name} must be 64 lowercase hex digits")


@dataclass(frozen=True)
class DailyRoot:
    """What the cloud signs and publishes for one community day. Hashes are lowercase hex.

    Attributes:
        community: the community (one ledger, one log) this root belongs to.
        day: the community's local calendar day, ``YYYY-MM-DD``.
        day_size: how many transfers the day had.
        day_root: Merkle root over the day's leaves (the empty-tree hash on a quiet day).
        log_size: how many transfers the log holds through this day.
        log_root: Merkle root over every leaf through this day, in ledger order.
        previous_day: the day of the previous published root; None for the first.
        previous_log_size: ``log_size`` of the previous root (0 for the first);
            always ``log_size - day_size``.
        previous_log_root: ``log_root`` of the previous root; None for the first. Chains the days.
        consistency: RFC 9162 consistency proof from ``previous_log_size`` to ``log_size``;
            empty for the first root or when the day had no transfers.
        signed_at_ms: the cloud's time of signing (Unix ms).

    Raises:
        ValueError: fields that contradict each other or are malformed.
    """

    community: str
    day: str
    day_size: int
    day_root: str
    log_size: int
    log_root: str
    previous_day: str | None
    previous_log_size: int
    previous_log_root: str | None
    consistency: tuple[str, ...]
    signed_at_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.community, str) or not self.community:
            raise ValueError("community must be a non-empty string")
        _check_day("day", self.day)
        for name in ("day_size", "log_size", "previous_log_size", "signed_at_ms"):
            _check_size(name, getattr(self, name))
        _check_hex("day_root", self.day_root)
        _check_hex("log_root", self.log_root)
        object.__setattr__(self, "consistency", tuple(self.consistency))
        for element in self.consistency:
            _check_hex("a consistency proof element", element)
        if self.previous_log_size + self.day_size != self.log_size:
            raise ValueError("log_size must be previous_log_size + day_size")
        if self.previous_day is None:
            if self.previous_log_root is not None or self.previous_log_size or self.consistency:
                raise ValueError("the first root has no previous log root, size or proof")
        else:
            _check_day("previous_day", self.previous_day)
            if self.previous_day >= self.day:
                raise ValueError("previous_day must come before day")
            if self.previous_log_root is None:
                raise ValueError("a root with a previous day names the previous log root")
            _check_hex("previous_log_root", self.previous_log_root)

    def to_dict(self) -> dict[str, object]:
        """The body as JSON-ready data (what is signed, with ``kind`` and ``v``)."""
        return {
            "kind": ROOT_KIND,
            "v": ROOT_VERSION,
            "community": self.community,
            "day": self.day,
            "day_size": self.day_size,
            "day_root": self.day_root,
            "log_size": self.log_size,
            "log_root": self.log_root,
            "previous_day": self.previous_day,
            "previous_log_size": self.previous_log_size,
            "previous_log_root": self.previous_log_root,
            "consistency": list(self.consistency),
            "signed_at_ms": self.signed_at_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> DailyRoot:
        """Parse a body produced by :meth:`to_dict`.

        Raises:
            ValueError: wrong kind or version, missing or extra fields, or bad values.
        """
        body = dict(data)
        if body.pop("kind", None) != ROOT_KIND or body.pop("v", None) != ROOT_VERSION:
            raise ValueError(f"not a version {ROOT_VERSION} {ROOT_KIND}")
        expected = {f for f in cls.__dataclass_fields__}
        if set(body) != expected:
            raise ValueError(f"a daily root has exactly the fields {sorted(expected)}")
        consistency = body["consistency"]
        if not isinstance(consistency, list):
            raise ValueError("consistency must be a list")
        body["consistency"] = tuple(consistency)
        try:
            return cls(**body)  # type: ignore[arg-type]  # each field is checked in __post_init__
        except TypeError as exc:
            raise ValueError(str(exc)) from exc


def canonical_root_bytes(body: DailyRoot) -> bytes:
    """The exact bytes signed: canonical JSON (sorted keys, no spaces, UTF-8) of the body."""
    return canonical_json(body.to_dict())


def root_key_id(public_key: Ed25519PublicKey) -> str:
    """The key id for a public key: ``cloud-`` + 12 hex digits of its SHA-256.

    The same derivation as ``cloud_api.keys.CloudKeys.key_id``, so roots and envelopes name the
    cloud's key alike.
    """
    raw = public_key.public_bytes_raw()
    return "cloud-" + hashlib.sha256(raw).hexdigest()[:12]


@dataclass(frozen=True)
class SignedRoot:
    """A daily root with its Ed25519 signature, as published.

    Attributes:
        body: the signed root.
        key_id: which cloud key signed it (a hint; :func:`verify_root` takes the key itself).
        signature: hex Ed25519 signature over :func:`canonical_root_bytes` of ``body``.
    """

    body: DailyRoot
    key_id: str
    signature: str

    def to_json(self) -> bytes:
        """Canonical JSON for publishing (QR code, group message, file)."""
        return canonical_json(
            {"body": self.body.to_dict(), "key_id": self.key_id, "signature": self.signature}
        )

    @classmethod
    def from_json(cls, data: bytes) -> SignedRoot:
        """Parse a published root (its signature still unchecked).

        Raises:
            ValueError: not a signed root.
        """
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("a signed root is JSON") from exc
        if not isinstance(obj, dict) or set(obj) != {"body", "key_id", "signature"}:
            raise ValueError("a signed root has exactly body, key_id and signature")
        body, key_id, signature = obj["body"], obj["key_id"], obj["signature"]
        if not isinstance(body, dict) or not isinstance(key_id, str):
            raise ValueError("a signed root has an object body and a string key_id")
        if not isinstance(signature, str):
            raise ValueError("a signature is a hex string")
        return cls(DailyRoot.from_dict(body), key_id, signature)


def sign_root(
    root: DailyRoot, private_key: Ed25519PrivateKey, *, key_id: str | None = None
) -> SignedRoot:
    """Sign a daily root with the cloud's Ed25519 key.

    Args:
        root: the body to sign.
        private_key: the cloud's signing key.
        key_id: override the derived :func:`root_key_id`.

    Example:
        >>> key = Ed25519PrivateKey.generate()
        >>> body = daily_root("c", "2026-12-01", [], None, signed_at_ms=0)
        >>> verify_root(sign_root(body, key), key.public_key())
        True
    """
    signature = private_key.sign(canonical_root_bytes(root))
    return SignedRoot(
        body=root,
        key_id=key_id if key_id is not None else root_key_id(private_key.public_key()),
        signature=signature.hex(),
    )


def verify_root(signed: SignedRoot, public_key: Ed25519PublicKey) -> bool:
    """Whether ``signed.signature`` is ``public_key``'s signature over ``signed.body``."""
    try:
        public_key.verify(bytes.fromhex(signed.signature), canonical_root_bytes(signed.body))
    except (InvalidSignature, ValueError):
        return False
    return True


def daily_root(
    community: str,
    day: str,
    all_leaves_through_day: Sequence[bytes],
    previous: DailyRoot | None,
    *,
    signed_at_ms: int,
) -> DailyRoot:
    """Build the root for ``day``: its transfers are the log's leaves after ``previous``'s.

    Args:
        community: the community id.
        day: the community's local day, ``YYYY-MM-DD``.
        all_leaves_through_day: every leaf in the log through the end of ``day``, in order.
        previous: the last published root, or None for the community's first.
        signed_at_ms: the cloud's time now.

    Raises:
        ValueError: ``previous`` does not describe a prefix of these leaves (the store's history
            differs from what was published: stop and investigate, never publish over it), or
            belongs to another community.

    Example:
        >>> first = daily_root("c", "2026-12-01", [b"a"], None, signed_at_ms=0)
        >>> second = daily_root("c", "2026-12-02", [b"a", b"b", b"c"], first, signed_at_ms=1)
        >>> second.day_size, second.previous_log_size, len(second.consistency)
        (2, 1, 2)
    """
    previous_size = previous.log_size if previous is not None else 0
    if previous_size > len(all_leaves_through_day):
        raise ValueError("the log is shorter than the previous published root")
    if previous is not None:
        if previous.community != community:
            raise ValueError("the previous root belongs to another community")
        if root(all_leaves_through_day[:previous_size]).hex() != previous.log_root:
            raise ValueError("the log's history differs from the previous published root")
    day_leaves = all_leaves_through_day[previous_size:]
    return DailyRoot(
        community=community,
        day=day,
        day_size=len(day_leaves),
        day_root=root(day_leaves).hex(),
        log_size=len(all_leaves_through_day),
        log_root=root(all_leaves_through_day).hex(),
        previous_day=previous.day if previous is not None else None,
        previous_log_size=previous_size,
        previous_log_root=previous.log_root if previous is not None else None,
        consistency=tuple(p.hex() for p in consistency_proof(previous_size, all_leaves_through_day))
        if previous is not None
        else (),
        signed_at_ms=signed_at_ms,
    )


def consistency_between(
    prev: DailyRoot, cur: DailyRoot, all_leaves: Sequence[bytes]
) -> list[bytes]:
    """The consistency proof from ``prev``'s log to ``cur``'s, for any two days.

    Args:
        prev: the earlier root.
        cur: the later root.
        all_leaves: the log through at least ``cur`` (extra leaves are ignored).

    Raises:
        ValueError: ``prev`` is later than ``cur``, or the log is shorter than ``cur``.

    Example:
        >>> a = daily_root("c", "2026-12-01", [b"a"], None, signed_at_ms=0)
        >>> b = daily_root("c", "2026-12-02", [b"a", b"b"], a, signed_at_ms=1)
        >>> proof = consistency_between(a, b, [b"a", b"b"])
        >>> verify_consistency(1, 2, bytes.fromhex(a.log_root), bytes.fromhex(b.log_root), proof)
        True
    """
    if prev.log_size > cur.log_size or prev.day > cur.day:
        raise ValueError("prev must not be later than cur")
    if len(all_leaves) < cur.log_size:
        raise ValueError(f"need {cur.log_size} leaves, have {len(all_leaves)}")
    return consistency_proof(prev.log_size, all_leaves[: cur.log_size])


def verify_day(
    signed: SignedRoot,
    leaves_of_day: Sequence[bytes],
    all_leaves_through_day: Sequence[bytes],
    public_key: Ed25519PublicKey,
    *,
    previous: DailyRoot | None = None,
) -> list[str]:
    """Check a published root against the ledger's leaves; used by ``linli ledger verify``.

    Args:
        signed: the published root.
        leaves_of_day: the leaves the store says the day had, in order.
        all_leaves_through_day: the whole log through the day, in order.
        public_key: the cloud's public key.
        previous: the previous published root, if the caller has it (checks the chain).

    Returns:
        One line per problem found; an empty list means the day checks out.

    Example:
        >>> key = Ed25519PrivateKey.generate()
        >>> body = daily_root("c", "2026-12-01", [b"a"], None, signed_at_ms=0)
        >>> verify_day(sign_root(body, key), [b"b"], [b"b"], key.public_key())[0]
        "day root does not match the day's transfers"
    """
    body = signed.body
    problems: list[str] = []
    if not verify_root(signed, public_key):
        problems.append("signature does not verify")
    if len(leaves_of_day) != body.day_size:
        problems.append(
            f"the day has {len(leaves_of_day)} transfers; the root says {body.day_size}"
        )
    if root(leaves_of_day).hex() != body.day_root:
        problems.append("day root does not match the day's transfers")
    if len(all_leaves_through_day) != body.log_size:
        problems.append(
            f"the log has {len(all_leaves_through_day)} transfers; the root says {body.log_size}"
        )
    if root(all_leaves_through_day).hex() != body.log_root:
        problems.append("log root does not match the log")
    if list(all_leaves_through_day[body.previous_log_size :]) != list(leaves_of_day):
        problems.append("the day's transfers are not the end of the log")
    if body.previous_log_root is not None:
        prefix = all_leaves_through_day[: body.previous_log_size]
        if root(prefix).hex() != body.previous_log_root:
            problems.append("previous log root does not match the log's earlier transfers")
        if not verify_consistency(
            body.previous_log_size,
            body.log_size,
            bytes.fromhex(body.previous_log_root),
            bytes.fromhex(body.log_root),
            [bytes.fromhex(p) for p in body.consistency],
        ):
            problems.append("consistency proof from the previous day does not verify")
    if previous is not None:
        chained = (
            previous.community == body.community
            and previous.day == body.previous_day
            and previous.log_size == body.previous_log_size
            and previous.log_root == body.previous_log_root
        )
        if not chained:
            problems.append(f"does not chain to the previous root of {previous.day}")
    return problems
