"""datasketch at its defaults as a whole process, the way a user would run it: read a JSONL corpus, shingle
each document (the same shingles as medcorpus: 5-character shingles for Chinese, 5-word ones otherwise),
``MinHash(num_perm=128)`` (datasketch's default, seed 1), ``MinHashLSH(threshold=0.7, num_perm=128)`` (its
default banding for that threshold), query every document, union-find over the candidate pairs, and write
the removed ids and cluster labels as JSONL. One Python process, one core (datasketch has no parallelism).

    python bench/dedup_datasketch_process.py CORPUS.jsonl OUT.jsonl [num_perm] [threshold]
"""

from __future__ import annotations

import json
import re
import sys

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def shingle_set(text: str, zh_chars: int = 5, en_words: int = 5) -> set[str]:
    han = len(_HAN.findall(text[:2000]))
    if han > 0.3 * max(1, len(_SPACE.sub("", text[:2000]))):
        s = _SPACE.sub("", text.lower())
        return {s[i : i + zh_chars] for i in range(max(1, len(s) - zh_chars + 1))}
    w = _WORD.findall(text.lower())
    return {" ".join(w[i : i + en_words]) for i in range(max(1, len(w) - en_words + 1))}


def main(corpus: str, out: str, num_perm: int = 128, threshold: float = 0.7) -> None:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sigs: dict[str, MinHash] = {}
    ids: list[str] = []
    with open(corpus, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            m = MinHash(num_perm=num_perm)
            m.update_batch([g.encode("utf-8") for g in shingle_set(r["text"])])
            lsh.insert(r["id"], m)
            sigs[r["id"]] = m
            ids.append(r["id"])
    parent = {i: i for i in ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for doc_id, m in sigs.items():
        for other in lsh.query(m):
            if other != doc_id:
                ra, rb = find(doc_id), find(other)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    with open(out, "w", encoding="utf-8") as fh:
        for i in ids:
            root = find(i)
            fh.write(json.dumps({"id": i, "cluster": root, "removed": root != i}) + "\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], int(args[2]) if len(args) > 2 else 128, float(args[3]) if len(args) > 3 else 0.7)
