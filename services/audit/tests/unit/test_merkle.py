"""The Merkle tree: stored subtrees, roots and proofs against the RFC 9162 definitions.

The reference here is the RFC's recursive definitions written out plainly
(``mth``, ``path``, ``proof`` on lists of leaf hashes); the proofs the service
builds from stored subtrees must equal them, and must pass the offline
verifier's §2.1.3.2 / §2.1.4.2 algorithms (a third implementation).
"""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthflow.audit import merkle
from healthflow.auditverify import proofs

MAX_SIZE = 300


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH over leaf hashes, recursively."""
    n = len(leaves)
    if n == 0:
        return _h(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return _h(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def leaf_hashes(count: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(count)]


LEAVES = leaf_hashes(MAX_SIZE)


def grown(size: int, seed: int = 0) -> dict[merkle.NodeId, bytes]:
    """The stored subtrees after appending ``size`` leaves in random batches."""
    rng = random.Random(seed)
    stored: dict[merkle.NodeId, bytes] = {}
    done = 0
    while done < size:
        batch = min(size - done, rng.choice([1, 1, 2, 3, 7, 64]))
        edge = [stored[node] for node in merkle.frontier(done)]
        stored.update(merkle.grow(done, edge, LEAVES[done:done + batch]))
        done += batch
    return stored


STORED = grown(MAX_SIZE)


def served_hashes(ranges: list[merkle.Range], stored: dict[merkle.NodeId, bytes]
                  ) -> list[bytes]:
    return [merkle.range_hash(start, end, stored) for start, end in ranges]


def test_rfc_6962_test_vectors() -> None:
    """The certificate-transparency reference leaves and roots (merkle_tree_test.cc)."""
    inputs = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f"]
    roots = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
             "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
             "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
             "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
             "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
             "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
             "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
    hashes = [merkle.leaf_hash(bytes.fromhex(text)) for text in inputs]
    stored = merkle.grow(0, [], hashes)
    for size in range(1, 9):
        assert merkle.range_hash(0, size, stored).hex() == roots[size - 1]
    assert merkle.range_hash(0, 0, stored) == merkle.EMPTY_ROOT
    paths = {
        (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                 "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
        (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                 "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                 "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
        (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    }
    for (leaf, size), expected in paths.items():
        got = served_hashes(merkle.inclusion_ranges(leaf, size), stored)
        assert [h.hex() for h in got] == expected


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_every_size_root_inclusion_and_consistency(size: int) -> None:
    leaves = LEAVES[:size]
    root = mth(leaves)
    assert merkle.range_hash(0, size, STORED) == root
    rng = random.Random(size)
    for leaf in {0, size - 1, size // 2, rng.randrange(size)}:
        served = served_hashes(merkle.inclusion_ranges(leaf, size), STORED)
        assert served == path(leaf, leaves)
        proofs.verify_inclusion(leaf, size, leaves[leaf], served, root)
    for first in {1, size - 1, size, (size + 1) // 2, rng.randint(1, size)} - {0}:
        served = served_hashes(merkle.consistency_ranges(first, size), STORED)
        assert served == subproof(first, leaves, True)
        proofs.verify_consistency(first, size, mth(leaves[:first]), root, served)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_tampered_proofs_and_roots_fail(data: st.DataObject) -> None:
    size = data.draw(st.integers(2, MAX_SIZE))
    leaf = data.draw(st.integers(0, size - 1))
    root = mth(LEAVES[:size])
    served = served_hashes(merkle.inclusion_ranges(leaf, size), STORED)
    with pytest.raises(proofs.ProofError):
        proofs.verify_inclusion(leaf, size, LEAVES[(leaf + 1) % size], served, root)
    with pytest.raises(proofs.ProofError):
        proofs.verify_inclusion(leaf, size, LEAVES[leaf], served, _h(root))
    if served:
        flip = data.draw(st.integers(0, len(served) - 1))
        bad = [*served[:flip], _h(served[flip]), *served[flip + 1:]]
        with pytest.raises(proofs.ProofError):
            proofs.verify_inclusion(leaf, size, LEAVES[leaf], bad, root)
    first = data.draw(st.integers(1, size - 1))
    consistency = served_hashes(merkle.consistency_ranges(first, size), STORED)
    rewritten = [*LEAVES[:first - 1], _h(b"rewritten"), *LEAVES[first:size]]
    with pytest.raises(proofs.ProofError):
        proofs.verify_consistency(first, size, mth(LEAVES[:first]), mth(rewritten),
                                  consistency)


def test_a_proof_reads_logarithmically_many_stored_subtrees() -> None:
    for size in (1000, 10**6, 2**40 + 12345):
        worst = max(len(merkle.needed(merkle.inclusion_ranges(leaf, size)))
                    for leaf in (0, size // 3, size - 1))
        consistency = len(merkle.needed(merkle.consistency_ranges(size // 3, size)))
        assert worst <= 2 * size.bit_length()
        assert consistency <= 3 * size.bit_length()


def test_bad_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        merkle.inclusion_ranges(5, 5)
    with pytest.raises(ValueError, match="prefix"):
        merkle.consistency_ranges(6, 5)
