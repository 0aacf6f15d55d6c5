"""The transparency core: RFC 6962 hashing, proofs, leaf privacy, signed daily roots, verify_day.

Order: published known-answer vectors first, then every tree size 0..64 exhaustively against a
second, slice-based reading of the RFC, then Hypothesis over random trees with tampered proofs,
then the ledger layer (leaf privacy, signing, verify_day).

Known-answer vectors are copied from transparency-dev/merkle (Apache-2.0), the Go library behind
Trillian and certificate-transparency-go:

* ``testonly/constants.go``: ``LeafInputs``, ``NodeHashes``, ``RootHashes`` (the CT reference
  leaves ``"" 00 10 2021 3031 40414243 5051525354555657 606162636465666768696a6b6c6d6e6f`` and the
  roots of the trees of sizes 0..8);
* ``proof/verify_test.go``: ``inclusionProofs``, ``consistencyProofs`` and the probes of
  ``corruptInclusionProof`` / ``corruptConsistencyProof`` (wrong index/size/root, trailing and
  preceding garbage, a flipped bit, a removed or inserted component).

``leaf_salt`` is HMAC-SHA256, checked against RFC 4231 §4.3 (test case 2).
"""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_api.core import transparency
from cloud_api.core.transparency import (
    EMPTY_ROOT,
    DailyRoot,
    SignedRoot,
    TransferLeaf,
    consistency_between,
    consistency_proof,
    daily_root,
    inclusion_proof,
    leaf_hash,
    leaf_salt,
    node_hash,
    private_commitment,
    root,
    root_key_id,
    sign_root,
    split_fields,
    transfer_leaf,
    verify_consistency,
    verify_day,
    verify_inclusion,
    verify_root,
)
from cloud_api.keys import CloudKeys


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- transparency-dev/merkle testonly/constants.go ------------------------------------------

CT_LEAVES = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
CT_ROOTS = [  # RootHashes(): index = tree size
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
CT_NODES = [  # NodeHashes(): [level][index] of every complete subtree
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

# --- transparency-dev/merkle proof/verify_test.go (leaf index made 0-based here) --------------

CT_INCLUSION = [  # (index, tree size, audit path)
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
CT_CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


def flip(data: bytes, bit: int) -> bytes:
    """``data`` with one bit flipped (``bit`` counted across the whole string)."""
    out = bytearray(data)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


# --- known answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(len(CT_ROOTS)))
def test_root_matches_the_reference_roots(size: int) -> None:
    assert root(CT_LEAVES[:size]) == CT_ROOTS[size]


def test_empty_tree_is_the_hash_of_nothing() -> None:
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest() == CT_ROOTS[0]


def test_leaf_and_node_hashes_match_the_reference_subtrees() -> None:
    assert [leaf_hash(leaf) for leaf in CT_LEAVES] == CT_NODES[0]
    for level in range(1, len(CT_NODES)):
        below = CT_NODES[level - 1]
        built = [node_hash(below[i], below[i + 1]) for i in range(0, len(below), 2)]
        assert built == CT_NODES[level]


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_inclusion_proofs_match_and_verify_the_reference(
    index: int, size: int, path: list[bytes]
) -> None:
    leaves = CT_LEAVES[:size]
    assert inclusion_proof(index, leaves) == path
    assert verify_inclusion(CT_LEAVES[index], index, size, path, CT_ROOTS[size])


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_corrupted_reference_inclusion_proofs_fail(
    index: int, size: int, path: list[bytes]
) -> None:
    """The probes of transparency-dev's ``corruptInclusionProof``; every one must be refused."""
    good_root, leaf = CT_ROOTS[size], CT_LEAVES[index]
    probes: list[tuple[str, bytes, int, int, list[bytes], bytes]] = [
        ("index - 1", leaf, index - 1, size, path, good_root),
        ("index + 1", leaf, index + 1, size, path, good_root),
        ("index ^ 2", leaf, index ^ 2, size, path, good_root),
        ("size * 2", leaf, index, size * 2, path, good_root),
        ("size // 2", leaf, index, size // 2, path, good_root),
        ("wrong leaf", b"WrongLeaf", index, size, path, good_root),
        ("empty root", leaf, index, size, path, EMPTY_ROOT),
        ("random root", leaf, index, size, path, SOME_HASH),
        ("trailing garbage", leaf, index, size, [*path, b""], good_root),
        ("trailing root", leaf, index, size, [*path, good_root], good_root),
        ("preceding garbage", leaf, index, size, [b"", *path], good_root),
        ("preceding root", leaf, index, size, [good_root, *path], good_root),
    ]
    for i in range(len(path)):
        bad = list(path)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        probes.append((f"proof[{i}] bit 3", leaf, index, size, bad, good_root))
    if path:
        probes.append(("removed component", leaf, index, size, path[:-1], good_root))
    if len(path) > 1:
        probes.append(
            ("inserted component", leaf, index, size, [path[0], SOME_HASH, *path[1:]], good_root)
        )
    accepted = [name for name, *args in probes if verify_inclusion(*args)]  # type: ignore[arg-type]
    assert accepted == []


def test_inclusion_refuses_impossible_positions() -> None:
    for index, size in [(0, 0), (1, 0), (2, 1), (-1, 1)]:
        assert not verify_inclusion(b"x", index, size, [], leaf_hash(b"x"))
    assert not verify_inclusion(b"x", 0, 1, [], b"")  # wrong root length
    with pytest.raises(IndexError):
        inclusion_proof(3, CT_LEAVES[:3])
    with pytest.raises(IndexError):
        inclusion_proof(0, [])


@pytest.mark.parametrize(("old", "new", "proof"), CT_CONSISTENCY)
def test_consistency_proofs_match_and_verify_the_reference(
    old: int, new: int, proof: list[bytes]
) -> None:
    assert consistency_proof(old, CT_LEAVES[:new]) == proof
    assert verify_consistency(old, new, CT_ROOTS[old], CT_ROOTS[new], proof)


@pytest.mark.parametrize(("old", "new", "proof"), [c for c in CT_CONSISTENCY if c[2]])
def test_corrupted_reference_consistency_proofs_fail(
    old: int, new: int, proof: list[bytes]
) -> None:
    """The probes of transparency-dev's ``corruptConsistencyProof``; every one must be refused."""
    r1, r2 = CT_ROOTS[old], CT_ROOTS[new]
    probes: list[tuple[str, int, int, bytes, bytes, list[bytes]]] = [
        ("old - 1", old - 1, new, r1, r2, proof),
        ("old + 1", old + 1, new, r1, r2, proof),
        ("old ^ 2", old ^ 2, new, r1, r2, proof),
        ("new * 2", old, new * 2, r1, r2, proof),
        ("new // 2", old, new // 2, r1, r2, proof),
        ("wrong old root", old, new, b"WrongRoot", r2, proof),
        ("wrong new root", old, new, r1, b"WrongRoot", proof),
        ("swapped roots", old, new, r2, r1, proof),
        ("empty proof", old, new, r1, r2, []),
        ("trailing garbage", old, new, r1, r2, [*proof, b""]),
        ("trailing old root", old, new, r1, r2, [*proof, r1]),
        ("trailing new root", old, new, r1, r2, [*proof, r2]),
        ("preceding garbage", old, new, r1, r2, [b"", *proof]),
        ("preceding old root", old, new, r1, r2, [r1, *proof]),
        ("preceding new root", old, new, r1, r2, [r2, *proof]),
        ("preceding proof[0]", old, new, r1, r2, [proof[0], *proof]),
        ("truncated", old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        probes.append((f"proof[{i}] bit 4", old, new, r1, r2, bad))
    accepted = [name for name, *args in probes if verify_consistency(*args)]  # type: ignore[arg-type]
    assert accepted == []


def test_consistency_edges() -> None:
    """transparency-dev's ``TestVerifyConsistency`` table, with our stricter size-0 rule."""
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 1, EMPTY_ROOT, a, [])
    assert verify_consistency(1, 1, a, a, [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, a, [])  # roots differ
    assert not verify_consistency(1, 1, a, b, [])  # roots differ
    assert not verify_consistency(0, 1, a, b, [])  # ours: size 0 means the empty root
    assert not verify_consistency(1, 0, a, b, [])  # time travel
    assert not verify_consistency(2, 1, a, b, [])
    assert not verify_consistency(1, 2, a, b, [])  # empty proof
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])  # proof not empty
    assert not verify_consistency(0, 1, EMPTY_ROOT, a, [EMPTY_ROOT])
    assert not verify_consistency(1, 1, a, a, [EMPTY_ROOT])
    with pytest.raises(ValueError):
        consistency_proof(4, CT_LEAVES[:3])
    with pytest.raises(ValueError):
        consistency_proof(-1, CT_LEAVES[:3])


def test_leaf_salt_is_hmac_sha256_rfc4231_case_2() -> None:
    assert leaf_salt(b"Jefe", "what do ya want for nothing?") == h(
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_docstring_examples_run() -> None:
    result = doctest.testmod(transparency, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 15
    assert result.failed == 0


# --- every size 0..64, against a second reading of the RFC ------------------------------------


def ref_mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH on list slices, k found by doubling (independent of the module)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n])."""
    n = len(leaves)
    if n <= 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    """RFC 6962 §2.1.2 SUBPROOF(m, D[n], b)."""
    n = len(leaves)
    if m == n:
        return [] if complete else [ref_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, leaves[:k], complete), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


def directions(m: int, n: int) -> list[str]:
    """Which side each audit-path sibling sits on, leaf upwards: a path's whole shape."""
    if n <= 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*directions(m, k), "right"]
    return [*directions(m - k, n - k), "left"]


LEAVES_64 = [i.to_bytes(2, "big") + b"-leaf" for i in range(64)]


def test_every_size_to_64_matches_the_reference_reading() -> None:
    for n in range(65):
        leaves = LEAVES_64[:n]
        tree_root = root(leaves)
        assert tree_root == ref_mth(leaves)
        for index in range(n):
            path = inclusion_proof(index, leaves)
            assert path == ref_path(index, leaves)
            assert verify_inclusion(leaves[index], index, n, path, tree_root)
        for old in range(n + 1):
            proof = consistency_proof(old, leaves)
            assert proof == (ref_subproof(old, leaves, True) if old else [])
            assert verify_consistency(old, n, root(leaves[:old]), tree_root, proof)


def test_no_wrong_old_size_verifies_but_a_new_size_can() -> None:
    """Exhaustive to 40 leaves: the old size is bound by the proof; the new size only by the
    signed root (the same proof serves 1 -> 3 and 1 -> 4)."""
    accepted = []
    for n in range(41):
        leaves = LEAVES_64[:n]
        new_root = root(leaves)
        for old in range(1, n + 1):
            proof, old_root = consistency_proof(old, leaves), root(leaves[:old])
            accepted += [
                (old, wrong, n)
                for wrong in range(n + 1)
                if wrong != old and verify_consistency(wrong, n, old_root, new_root, proof)
            ]
    assert accepted == []
    leaves = LEAVES_64[:3]
    proof = consistency_proof(1, leaves)
    assert verify_consistency(1, 4, root(leaves[:1]), root(leaves), proof)


def test_power_of_two_trees_are_perfect_binary_trees() -> None:
    for size in (1, 2, 4, 8, 16, 32, 64):
        level = [leaf_hash(leaf) for leaf in LEAVES_64[:size]]
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        assert root(LEAVES_64[:size]) == level[0]


# --- Hypothesis: random trees, random proofs, tampering --------------------------------------


@st.composite
def trees(draw: st.DrawFn, min_size: int = 0) -> list[bytes]:
    """Up to 64 distinct leaves (distinct, so a leaf's data says where it belongs)."""
    n = draw(st.integers(min_size, 64))
    tails = draw(st.lists(st.binary(max_size=12), min_size=n, max_size=n))
    return [i.to_bytes(1, "big") + tail for i, tail in enumerate(tails)]


@settings(max_examples=600, deadline=None)
@given(trees(min_size=1), st.data())
def test_every_inclusion_proof_verifies_and_every_tampering_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(index, leaves)
    tree_root = root(leaves)
    assert verify_inclusion(leaves[index], index, n, proof, tree_root)

    bit = data.draw(st.integers(0, 255), label="bit")
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="element")
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        assert not verify_inclusion(leaves[index], index, n, bad, tree_root)
        assert not verify_inclusion(leaves[index], index, n, proof[:-1], tree_root)
    assert not verify_inclusion(leaves[index], index, n, [*proof, SOME_HASH], tree_root)
    assert not verify_inclusion(leaves[index], index, n, proof, flip(tree_root, bit))
    assert not verify_inclusion(leaves[index] + b"!", index, n, proof, tree_root)

    assert not verify_inclusion(leaves[index], n, n, proof, tree_root)
    if n > 1:
        other = data.draw(st.integers(0, n - 1).filter(lambda i: i != index), label="other")
        assert not verify_inclusion(leaves[index], other, n, proof, tree_root)
        assert not verify_inclusion(leaves[other], index, n, proof, tree_root)

    # A proof does not carry its tree size: it verifies under another size exactly when the
    # path has the same shape there. Verifiers must take the size from the signed root.
    wrong = data.draw(st.integers(0, 2 * n + 1).filter(lambda s: s != n), label="wrong size")
    same_shape = index < wrong and directions(index, wrong) == directions(index, n)
    assert verify_inclusion(leaves[index], index, wrong, proof, tree_root) == same_shape


@settings(max_examples=600, deadline=None)
@given(trees(min_size=0), st.data())
def test_every_consistency_proof_verifies_and_every_tampering_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    old = data.draw(st.integers(0, n), label="old size")
    proof = consistency_proof(old, leaves)
    old_root, new_root = root(leaves[:old]), root(leaves)
    assert verify_consistency(old, n, old_root, new_root, proof)

    bit = data.draw(st.integers(0, 255), label="bit")
    assert not verify_consistency(old, n, flip(old_root, bit), new_root, proof)
    # From the empty tree every tree is an extension: the proof is empty and binds no new root.
    assert verify_consistency(old, n, old_root, flip(new_root, bit), proof) == (old == 0 < n)
    assert not verify_consistency(old, n, old_root, new_root, [*proof, SOME_HASH])
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="element")
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        assert not verify_consistency(old, n, old_root, new_root, bad)
        assert not verify_consistency(old, n, old_root, new_root, proof[:-1])
        assert not verify_consistency(old, n, old_root, new_root, [proof[0], *proof])
    # A changed, removed or reordered old leaf: the new tree is no longer an extension.
    if old:
        at = data.draw(st.integers(0, old - 1), label="changed leaf")
        forged = [*leaves[:at], leaves[at] + b"!", *leaves[at + 1 :]]
        assert not verify_consistency(old, n, root(forged[:old]), new_root, proof)
        assert not verify_consistency(
            old, n, old_root, root(forged), consistency_proof(old, forged)
        )
    for wrong_old in (old - 1, old + 1, old ^ 2):
        if wrong_old != old:
            assert not verify_consistency(wrong_old, n, old_root, new_root, proof)
    for wrong_new in (n * 2, n // 2):
        if wrong_new != n and old > 0:
            assert not verify_consistency(old, wrong_new, old_root, new_root, proof)


@settings(max_examples=300, deadline=None)
@given(trees(min_size=2), st.data())
def test_a_reordered_pair_changes_the_root(leaves: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(leaves) - 2))
    j = data.draw(st.integers(i + 1, len(leaves) - 1))
    swapped = list(leaves)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    assert root(swapped) != root(leaves)


# --- leaves: what is public, what is committed -----------------------------------------------

SECRET = b"operator-secret-".ljust(32, b"x")


def transfer(
    n: int,
    *,
    kind: str = "subsidy",
    amount: object = 50,
    debit: str = "sys:issuance",
    credit: str = "mem:person-7f3a9c",
    **extra: object,
) -> dict[str, object]:
    fields: dict[str, object] = {
        "id": f"trf_{n:04d}",
        "key": f"subsidy:person-7f3a9c:2026-12:{n}",
        "kind": kind,
        "debit": debit,
        "credit": credit,
        "amount": amount,
        "phase": "single",
        "pending_id": None,
        "reverses_id": None,
        "refs": ["item:itm_42", "case:household-9"],
        "actor": "sw:wang-fang",
        "approved_by": "sw:zhao-lei",
        "on_behalf_of": "mem:person-7f3a9c",
        "reason": "低保户 monthly top-up",
        "created_ms": 1_796_000_000_000 + n,
    }
    fields.update(extra)
    return fields


def leaf_of(fields: dict[str, object]) -> bytes:
    public, private = split_fields(fields)
    return transfer_leaf(public, private, leaf_salt(SECRET, str(fields["id"])))


def test_split_fields_policy() -> None:
    public, private = split_fields(transfer(1))
    assert public == {
        "id": "trf_0001",
        "kind": "subsidy",
        "amount": 50,
        "phase": "single",
        "created_ms": 1_796_000_000_001,
        "reverses_id": None,
        "pending_id": None,
        "debit": "sys:issuance",
        "credit": "member",
    }
    assert private == {
        "key": "subsidy:person-7f3a9c:2026-12:1",
        "refs": '["item:itm_42","case:household-9"]',
        "actor": "sw:wang-fang",
        "approved_by": "sw:zhao-lei",
        "on_behalf_of": "mem:person-7f3a9c",
        "reason": "低保户 monthly top-up",
        "credit": "mem:person-7f3a9c",
    }


def test_split_fields_keeps_system_accounts_and_hides_unknown_fields() -> None:
    public, private = split_fields(
        transfer(2, debit="mem:a1", credit="sys:redemption", item_id="itm_9")
    )
    assert (public["debit"], public["credit"]) == ("member", "sys:redemption")
    assert private["debit"] == "mem:a1" and "credit" not in private
    assert private["item_id"] == "itm_9" and "item_id" not in public
    both_system = split_fields(transfer(3, debit="sys:issuance", credit="sys:expiry"))[0]
    assert (both_system["debit"], both_system["credit"]) == ("sys:issuance", "sys:expiry")


def test_split_fields_refuses_unknown_accounts_and_odd_public_values() -> None:
    with pytest.raises(ValueError, match="neither"):
        split_fields(transfer(1, credit="bank:123"))
    with pytest.raises(TypeError):
        split_fields(transfer(1, amount=True))
    with pytest.raises(TypeError):
        split_fields(transfer(1, amount=1.5))


PRIVATE_VALUES = [
    "person-7f3a9c",
    "wang-fang",
    "zhao-lei",
    "household-9",
    "itm_42",
    "低保户",
    "subsidy:person",
]


def test_a_published_leaf_names_nobody() -> None:
    leaf = leaf_of(transfer(1))
    text = leaf.decode()
    assert [value for value in PRIVATE_VALUES if value in text] == []
    decoded = TransferLeaf.decode(leaf)
    assert set(decoded.public) == set(transparency.PUBLIC_FIELDS)
    assert decoded.public["credit"] == "member" and decoded.public["amount"] == 50


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdef0123456789", min_size=10, max_size=16))
def test_no_member_id_reaches_the_leaf(member: str) -> None:
    fields = transfer(5, credit=f"mem:{member}", on_behalf_of=f"mem:{member}", actor=member)
    assert member not in leaf_of(fields).decode()


def test_same_fields_and_salt_give_the_same_leaf_and_the_resident_can_recompute_it() -> None:
    fields = transfer(7)
    reordered = dict(reversed(list(fields.items())))
    assert leaf_of(fields) == leaf_of(reordered)
    # The resident, given the salt and their own fields, recomputes the leaf and opens it.
    public, private = split_fields(fields)
    salt = leaf_salt(SECRET, "trf_0007")
    assert transfer_leaf(public, private, salt) == leaf_of(fields)
    assert TransferLeaf.decode(leaf_of(fields)).opens(private, salt)
    assert not TransferLeaf.decode(leaf_of(fields)).opens({**private, "actor": "sw:x"}, salt)


def test_a_different_salt_or_private_field_gives_a_different_commitment() -> None:
    public, private = split_fields(transfer(8))
    salt = leaf_salt(SECRET, "trf_0008")
    other_salt = leaf_salt(SECRET, "trf_0009")
    assert salt != other_salt and leaf_salt(b"another-secret".ljust(32), "trf_0008") != salt
    assert private_commitment(private, salt) != private_commitment(private, other_salt)
    assert transfer_leaf(public, private, salt) != transfer_leaf(public, private, other_salt)
    assert private_commitment(private, salt) != private_commitment(
        {**private, "approved_by": "sw:other"}, salt
    )
    assert (
        private_commitment(private, salt)
        == hashlib.sha256(
            salt
            + json.dumps(
                private, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode()
        ).hexdigest()
    )


def test_leaf_encoding_refuses_short_salts_and_non_canonical_data() -> None:
    with pytest.raises(ValueError, match="salt"):
        transfer_leaf({"id": "t"}, {}, b"short")
    with pytest.raises(ValueError):
        transfer_leaf({"id": "t", "private": "x"}, {}, SECRET)
    leaf = leaf_of(transfer(1))
    with pytest.raises(ValueError, match="canonical"):
        TransferLeaf.decode(json.dumps(json.loads(leaf), indent=1).encode())
    with pytest.raises(ValueError):
        TransferLeaf.decode(b'{"amount":1.5,"private":"' + b"0" * 64 + b'"}')
    with pytest.raises(ValueError):
        TransferLeaf.decode(b"not json")


# --- daily roots: build, sign, verify ---------------------------------------------------------

KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x08" * 32)
COMMUNITY = "linli-east-gate"


def three_days() -> tuple[list[list[bytes]], list[DailyRoot]]:
    """Three days of leaves (the second one quiet) and their roots."""
    days = [
        [leaf_of(transfer(i)) for i in range(5)],
        [],
        [
            leaf_of(transfer(10, kind="redemption", debit="mem:p1", credit="sys:redemption")),
            leaf_of(transfer(11, kind="reversal", reverses_id="trf_0010", amount=-50)),
            leaf_of(transfer(12)),
        ],
    ]
    roots: list[DailyRoot] = []
    log: list[bytes] = []
    for number, leaves in enumerate(days, start=1):
        log += leaves
        previous = roots[-1] if roots else None
        roots.append(
            daily_root(COMMUNITY, f"2026-12-0{number}", log, previous, signed_at_ms=number)
        )
    return days, roots


def test_daily_roots_chain_and_carry_their_consistency_proofs() -> None:
    days, (first, quiet, third) = three_days()
    assert (first.day_size, first.log_size, first.previous_day, first.consistency) == (
        5,
        5,
        None,
        (),
    )
    assert quiet.day_root == EMPTY_ROOT.hex() and quiet.log_root == first.log_root
    assert (third.previous_day, third.previous_log_root) == ("2026-12-02", quiet.log_root)
    assert (third.previous_log_size, third.day_size, third.log_size) == (5, 3, 8)
    log = days[0] + days[2]
    proof = [bytes.fromhex(p) for p in third.consistency]
    assert proof == consistency_between(quiet, third, log)
    assert verify_consistency(5, 8, h(first.log_root), h(third.log_root), proof)
    assert verify_consistency(
        5, 8, h(first.log_root), h(third.log_root), consistency_between(first, third, [*log, b"x"])
    )
    with pytest.raises(ValueError):
        consistency_between(third, first, log)


def test_a_resident_proves_their_entry_against_the_day_root() -> None:
    days, roots = three_days()
    day, body = days[2], roots[2]
    mine = day[0]
    proof = inclusion_proof(0, day)
    assert verify_inclusion(mine, 0, body.day_size, proof, h(body.day_root))
    log = days[0] + days[2]
    at = log.index(mine)
    assert verify_inclusion(mine, at, body.log_size, inclusion_proof(at, log), h(body.log_root))


def test_daily_root_refuses_a_rewritten_history() -> None:
    days, roots = three_days()
    rewritten = [leaf_of(transfer(0, amount=500)), *days[0][1:]]
    with pytest.raises(ValueError, match="history"):
        daily_root(COMMUNITY, "2026-12-02", rewritten, roots[0], signed_at_ms=9)
    with pytest.raises(ValueError):
        daily_root(COMMUNITY, "2026-12-02", days[0][:3], roots[0], signed_at_ms=9)
    with pytest.raises(ValueError, match="community"):
        daily_root("elsewhere", "2026-12-02", days[0], roots[0], signed_at_ms=9)


def test_daily_root_fields_are_checked() -> None:
    _, (first, _, third) = three_days()
    for change in [
        {"day": "2026-13-01"},
        {"day": "20261201"},
        {"day_size": 4},
        {"log_size": -1},
        {"day_root": first.day_root.upper()},
        {"log_root": "00"},
        {"consistency": ("zz",)},
        {"previous_log_root": first.log_root},
        {"community": ""},
    ]:
        with pytest.raises(ValueError):
            dataclasses.replace(first, **change)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="before"):
        dataclasses.replace(third, previous_day="2026-12-03")
    with pytest.raises(ValueError):
        dataclasses.replace(third, previous_log_root=None)


def test_signing_round_trip_and_json() -> None:
    _, roots = three_days()
    for body in roots:
        signed = sign_root(body, KEY)
        assert verify_root(signed, KEY.public_key())
        assert not verify_root(signed, OTHER_KEY.public_key())
        again = SignedRoot.from_json(signed.to_json())
        assert again == signed and verify_root(again, KEY.public_key())
    assert json.loads(sign_root(roots[0], KEY).to_json())["body"]["kind"] == "daily_root"


def test_key_id_matches_the_cloud_keys() -> None:
    cloud = CloudKeys(signing_key=KEY, code_secret=b"c" * 32)
    assert (
        sign_root(three_days()[1][0], KEY).key_id == cloud.key_id == root_key_id(KEY.public_key())
    )
    assert sign_root(three_days()[1][0], KEY, key_id="cloud-2027").key_id == "cloud-2027"


def test_a_bad_signature_is_refused() -> None:
    signed = sign_root(three_days()[1][0], KEY)
    sig = bytes.fromhex(signed.signature)
    for bad in [flip(sig, 0).hex(), flip(sig, 300).hex(), "zz", "", signed.signature[:-2]]:
        assert not verify_root(dataclasses.replace(signed, signature=bad), KEY.public_key())


def published_body_span(signed: SignedRoot) -> tuple[bytearray, int, int]:
    published = bytearray(signed.to_json())
    start = published.index(b'"body":') + len(b'"body":')
    return published, start, published.index(b',"key_id"')


def still_parses(published: bytes) -> SignedRoot | None:
    try:
        return SignedRoot.from_json(published)
    except ValueError:
        return None  # no longer a daily root at all: refused before any signature check


REPLACEMENTS = b"0123456789abcdefz-:"
"""Mostly characters that keep hex, digits and dates well-formed, so the change gets parsed."""


@settings(max_examples=500, deadline=None)
@given(
    st.integers(min_value=0),
    st.one_of(st.sampled_from(list(REPLACEMENTS)), st.integers(0, 255)),
)
def test_a_one_byte_change_in_the_body_fails_verification(position: int, byte: int) -> None:
    signed = sign_root(three_days()[1][2], KEY)
    published, start, end = published_body_span(signed)
    at = start + position % (end - start)
    if published[at] == byte:
        return
    published[at] = byte
    forged = still_parses(bytes(published))
    if forged is not None:
        assert forged.body != signed.body
        assert not verify_root(forged, KEY.public_key())


def test_every_byte_of_the_body_is_covered_by_the_signature() -> None:
    signed = sign_root(three_days()[1][2], KEY)
    original, start, end = published_body_span(signed)
    parsed_positions = set()
    for at in range(start, end):
        for byte in REPLACEMENTS:
            if original[at] == byte:
                continue
            published = bytearray(original)
            published[at] = byte
            forged = still_parses(bytes(published))
            if forged is not None:
                parsed_positions.add(at)
                assert not verify_root(forged, KEY.public_key()), (at, chr(byte))
    # Every value byte is reached; field names and punctuation cannot change and still parse.
    assert len(parsed_positions) > (end - start) * 0.6


def test_every_field_of_the_body_is_signed() -> None:
    _, (_, _, third) = three_days()
    signed = sign_root(third, KEY)
    changes: dict[str, Any] = {
        "community": "linli-east-gatf",
        "day": "2026-12-04",
        "day_root": flip(h(third.day_root), 0).hex(),
        "log_root": flip(h(third.log_root), 9).hex(),
        "previous_day": "2026-12-01",
        "previous_log_root": flip(h(third.log_root), 1).hex(),
        "consistency": (*third.consistency[:-1], flip(h(third.consistency[-1]), 5).hex()),
        "signed_at_ms": third.signed_at_ms + 1,
    }
    for name, value in changes.items():
        forged = dataclasses.replace(signed, body=dataclasses.replace(third, **{name: value}))
        assert not verify_root(forged, KEY.public_key()), name
    sizes = dataclasses.replace(third, day_size=4, previous_log_size=4)
    assert not verify_root(dataclasses.replace(signed, body=sizes), KEY.public_key())


# --- verify_day -------------------------------------------------------------------------------


def signed_days() -> tuple[list[list[bytes]], list[SignedRoot]]:
    days, roots = three_days()
    return days, [sign_root(body, KEY) for body in roots]


def test_verify_day_accepts_an_honest_ledger() -> None:
    days, signed = signed_days()
    log: list[bytes] = []
    previous: DailyRoot | None = None
    for leaves, published in zip(days, signed, strict=True):
        log += leaves
        assert verify_day(published, leaves, log, KEY.public_key(), previous=previous) == []
        previous = published.body


def test_verify_day_finds_a_changed_amount() -> None:
    days, signed = signed_days()
    forged = [
        days[2][0],
        leaf_of(transfer(11, kind="reversal", reverses_id="trf_0010", amount=-5)),
        days[2][2],
    ]
    problems = verify_day(signed[2], forged, days[0] + forged, KEY.public_key())
    assert "day root does not match the day's transfers" in problems
    assert "log root does not match the log" in problems
    assert "signature does not verify" not in problems


def test_verify_day_finds_a_removed_transfer() -> None:
    days, signed = signed_days()
    fewer = days[2][:1] + days[2][2:]
    problems = verify_day(signed[2], fewer, days[0] + fewer, KEY.public_key())
    assert "the day has 2 transfers; the root says 3" in problems
    assert "the log has 7 transfers; the root says 8" in problems
    assert "day root does not match the day's transfers" in problems


def test_verify_day_finds_a_transfer_removed_from_an_earlier_day() -> None:
    days, signed = signed_days()
    problems = verify_day(signed[2], days[2], days[0][1:] + days[2], KEY.public_key())
    assert "previous log root does not match the log's earlier transfers" in problems
    assert "log root does not match the log" in problems


def test_verify_day_finds_a_reordered_pair() -> None:
    days, signed = signed_days()
    swapped = [days[2][1], days[2][0], days[2][2]]
    problems = verify_day(signed[2], swapped, days[0] + swapped, KEY.public_key())
    assert "day root does not match the day's transfers" in problems
    assert "log root does not match the log" in problems
    earlier = [days[0][1], days[0][0], *days[0][2:]]
    assert "log root does not match the log" in verify_day(
        signed[2], days[2], earlier + days[2], KEY.public_key()
    )


def test_verify_day_finds_a_wrong_signature() -> None:
    days, signed = signed_days()
    log = days[0] + days[2]
    assert verify_day(signed[2], days[2], log, OTHER_KEY.public_key()) == [
        "signature does not verify"
    ]
    other = sign_root(signed[2].body, OTHER_KEY)
    assert verify_day(other, days[2], log, KEY.public_key()) == ["signature does not verify"]
    # A forged body signed by nobody: every check on content passes, the signature does not.
    forged = dataclasses.replace(
        signed[2], body=dataclasses.replace(signed[2].body, signed_at_ms=0)
    )
    assert verify_day(forged, days[2], log, KEY.public_key()) == ["signature does not verify"]


def test_verify_day_finds_a_day_that_is_not_the_end_of_the_log() -> None:
    days, signed = signed_days()
    problems = verify_day(signed[2], days[2], days[2] + days[0], KEY.public_key())
    assert "the day's transfers are not the end of the log" in problems


def test_verify_day_finds_a_broken_chain_and_a_bad_consistency_proof() -> None:
    days, signed = signed_days()
    log = days[0] + days[2]
    problems = verify_day(signed[2], days[2], log, KEY.public_key(), previous=signed[0].body)
    assert problems == ["does not chain to the previous root of 2026-12-01"]
    quiet = signed[1].body
    for fake in [
        dataclasses.replace(quiet, log_root=flip(h(quiet.log_root), 3).hex()),
        dataclasses.replace(quiet, community="elsewhere"),
    ]:
        assert verify_day(signed[2], days[2], log, KEY.public_key(), previous=fake) == [
            "does not chain to the previous root of 2026-12-02"
        ]
    assert verify_day(signed[2], days[2], log, KEY.public_key(), previous=quiet) == []
    body = signed[2].body
    bad_proof = dataclasses.replace(body, consistency=body.consistency[:-1])
    problems = verify_day(sign_root(bad_proof, KEY), days[2], log, KEY.public_key())
    assert problems == ["consistency proof from the previous day does not verify"]
