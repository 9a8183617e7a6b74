"""Query-CoT-Item triplets, built the way the LREM paper's teacher builds them.

For every TRAIN query:

1. **Reason** about the query with the world's knowledge (``knowledge.json``): a need maps
   to product types, a premium brand to its product type and budget words, a fact to its
   product type, a negation to the type plus the allowed values of the negated attribute,
   a plain query to synonyms and related words.
2. **Extract** comma-separated keywords from that reasoning; if the query names a brand,
   other brand names are left out.
3. **Clean up** by rule: drop duplicate keywords, keywords sharing a word with the query,
   and banned terms; keep at most ``max_cot_tokens`` whitespace-separated words.

Items are then filtered as in the paper: a retriever (BM25 over titles here) fetches top-k
for the query alone (set A) and for ``"query (keywords)"`` (set B); the judged-relevant
items of B minus A are kept, i.e. items the keywords made findable. ``item_filter``
decides what happens when there are none (see :class:`components.config.TeacherConfig`).

Imported real data (``lrem data import``: its ``knowledge.json`` says ``"source": "imported"``)
has no world knowledge beyond product types and brands. There, a query no knowledge
matches is reasoned about by **corpus feedback**: the most frequent title words of the
catalog items BM25 ranks highest for the query alone (never the judgments), so real data
gets a CoT and goes through the same training.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from components.config import CATEGORIES, ITEM_FILTERS, ITEM_SELECTS, TeacherConfig
from components.data import schema
from components.data.generate import words
from components.data.io import load_knowledge, read_jsonl, write_jsonl

FILTER_PATHS = ("retriever", "judged_fallback", "judged", "dropped")


# ---------------------------------------------------------------------------------------
# Lexical retriever


class LexicalRetriever:
    """Okapi BM25 over item titles, tokenised with :func:`components.data.generate.words`."""

    def __init__(self, ids: Sequence[str], titles: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.ids = list(ids)
        docs = [words(t) for t in titles]
        n = len(docs)
        avgdl = sum(len(d) for d in docs) / max(1, n)
        postings: dict[str, dict[int, int]] = {}
        for idx, doc in enumerate(docs):
            for term in doc:
                postings.setdefault(term, {})
                postings[term][idx] = postings[term].get(idx, 0) + 1
        self._index: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term, tfs in postings.items():
            idf = math.log(1.0 + (n - len(tfs) + 0.5) / (len(tfs) + 0.5))
            doc_idx = np.fromiter(tfs.keys(), dtype=np.int64, count=len(tfs))
            tf = np.fromiter(tfs.values(), dtype=np.float64, count=len(tfs))
            dl = np.array([len(docs[i]) for i in doc_idx], dtype=np.float64)
            weight = idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * dl / avgdl))
            self._index[term] = (doc_idx, weight)
        self._n = n

    def search(self, text: str, k: int) -> list[str]:
        """Ids of the top-k items with a positive score, best first (ties: catalog order)."""
        scores = np.zeros(self._n, dtype=np.float64)
        for term, count in sorted(Counter(words(text)).items()):
            hit = self._index.get(term)
            if hit is not None:
                scores[hit[0]] += count * hit[1]
        candidates = np.flatnonzero(scores > 0)
        if candidates.size == 0:
            return []
        order = np.lexsort((candidates, -scores[candidates]))[:k]
        return [self.ids[i] for i in candidates[order]]


# ---------------------------------------------------------------------------------------
# Teacher: reasoning, keyword extraction, clean-up


@dataclass
class Reasoning:
    """The teacher's free reasoning about a query, and the keyword phrases it names."""

    kind: str  # which knowledge answered: use, premium_brand, fact, negation, product_type, none
    text: str
    keywords: list[str] = field(default_factory=list)


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return n > 0 and any(tuple(haystack[i:i + n]) == tuple(needle) for i in range(len(haystack) - n + 1))


def _replace(haystack: list[str], needle: Sequence[str], by: Sequence[str]) -> list[str]:
    """``haystack`` with the first occurrence of ``needle`` replaced by ``by``."""
    n = len(needle)
    for i in range(len(haystack) - n + 1):
        if tuple(haystack[i:i + n]) == tuple(needle):
            return haystack[:i] + list(by) + haystack[i + n:]
    return list(haystack)


class _Speller:
    """A word not in the vocabulary, one edit (drop, insert, swap, replace) from exactly one
    vocabulary word of at least 4 letters, is read as that word."""

    def __init__(self, vocabulary: set[str]) -> None:
        self.vocabulary = vocabulary
        self._deletes: dict[str, set[str]] = {}
        for w in sorted(vocabulary):
            if len(w) >= 4:
                for d in self._drops(w):
                    self._deletes.setdefault(d, set()).add(w)

    @staticmethod
    def _drops(w: str) -> list[str]:
        return [w[:i] + w[i + 1:] for i in range(len(w))]

    def correct(self, w: str) -> str:
        if w in self.vocabulary or len(w) < 4 or not w.isalpha():
            return w
        near = set(self._deletes.get(w, ()))  # w lost a letter
        near |= {d for d in self._drops(w) if d in self.vocabulary and len(d) >= 4}  # w gained one
        for d in self._drops(w):  # replaced or swapped letters
            near |= {v for v in self._deletes.get(d, ()) if len(v) == len(w)}
        return next(iter(near)) if len(near) == 1 else w


def _listing(values: Sequence[str]) -> str:
    return ", ".join(values) if values else "nothing specific"


class Teacher:
    """Reasons about queries with the world's knowledge and turns that into a short CoT."""

    def __init__(self, knowledge: dict, cfg: TeacherConfig,
                 feedback: Callable[[str], list[str]] | None = None) -> None:
        self.cfg = cfg
        self.feedback = feedback  # query -> related terms, when no knowledge matches (imported data)
        self.types: dict[str, dict] = knowledge["product_types"]
        self.brands: dict[str, dict] = knowledge.get("brands", {})
        self.premium: dict[str, dict] = knowledge.get("premium_brands", {})
        self.budget_words: list[str] = list(knowledge.get("budget_words", []))
        # phrase (as a word tuple) -> product type, longest phrases first so the best match wins
        phrases = []
        for name, info in self.types.items():
            for phrase in [name, *info.get("synonyms", [])]:
                phrases.append((tuple(words(phrase)), name))
        self._type_phrases = sorted(phrases, key=lambda p: (-len(p[0]), p[0], p[1]))
        self._uses = sorted(((tuple(words(u["use"])), u) for u in knowledge.get("uses", [])),
                            key=lambda p: (-len(p[0]), p[0]))
        self._facts = sorted(((tuple(words(f["fact"])), f) for f in knowledge.get("facts", [])),
                             key=lambda p: (-len(p[0]), p[0]))
        self._brand_words = {b.lower(): b for b in sorted(self.brands)}
        self._banned = [tuple(words(t)) for t in cfg.banned_terms if words(t)]
        self.drops: Counter = Counter()
        # Queries as people type them (components/data/phrasing.py): the teacher reads a misspelt
        # word as the knowledge word one edit away, and a reworded intent back through the word
        # rules the knowledge states ("wordings": word -> what people also say).
        self._wordings = [(tuple(words(w["also_said"])), tuple(words(w["word"])))
                          for w in knowledge.get("wordings", []) if words(w["also_said"]) and words(w["word"])]
        self._speller = _Speller(self._knowledge_words(knowledge)) if self._wordings else None

    # -- step 1: reasoning -----------------------------------------------------------

    def _type_in(self, qwords: list[str]) -> tuple[str, tuple[str, ...]] | None:
        for phrase, name in self._type_phrases:
            if _contains(qwords, phrase):
                return name, phrase
        return None

    def _type_terms(self, names: Sequence[str]) -> list[str]:
        """Product-type names, then their synonyms, then related keywords (breadth first)."""
        out = [n.lower() for n in names]
        out += [s for n in names for s in self.types[n].get("synonyms", [])]
        out += [k for n in names for k in self.types[n].get("keywords", [])]
        return out

    def _reason_qa(self, qwords: list[str]) -> Reasoning | None:
        for phrase, use in self._uses:
            if _contains(qwords, phrase):
                names = list(use["product_types"])
                text = (f"The shopper wants to {use['use']}. That need is met by {_listing([n.lower() for n in names])}. "
                        f"Shoppers also call them {_listing([s for n in names for s in self.types[n]['synonyms']])}.")
                return Reasoning("use", text, self._type_terms(names))
        return None

    def _reason_alternative(self, qwords: list[str]) -> Reasoning | None:
        for word in qwords:
            brand = self._brand_words.get(word)
            if brand is None or brand not in self.premium:
                continue
            info = self.premium[brand]
            name = info["product_type"]
            low = info["price_band"][0]
            others = self.types[name].get("standard_brands", [])[:3]
            text = (f"{brand} is a premium {name.lower()} brand priced from {low:.0f}. The shopper wants a cheaper "
                    f"{name.lower()}: {_listing(self.budget_words)} options under {low:.0f}, for example from "
                    f"{_listing(others)}; maybe on sale or at a discount.")
            synonyms = list(self.types[name].get("synonyms", []))
            keywords = [name.lower(), *synonyms[:2], *self.budget_words, *synonyms[2:],
                        *self.types[name].get("keywords", []), *others, "sale", "discount"]
            return Reasoning("premium_brand", text, keywords)
        return None

    def _reason_knowledge(self, qwords: list[str]) -> Reasoning | None:
        for phrase, fact in self._facts:
            if _contains(qwords, phrase):
                names = list(fact["product_types"])
                text = (f"{fact['statement']} So the query is about {fact['answer']}, which calls for "
                        f"{_listing([n.lower() for n in names])}.")
                return Reasoning("fact", text, [fact["answer"], *self._type_terms(names)])
        return None

    def _reason_negative(self, qwords: list[str]) -> Reasoning | None:
        found = self._type_in(qwords)
        if found is None:
            return None
        name, phrase = found
        info = self.types[name]
        rest = list(qwords)
        for i in range(len(rest) - len(phrase) + 1):  # the type's own words are not the negated value
            if tuple(rest[i:i + len(phrase)]) == phrase:
                rest = rest[:i] + rest[i + len(phrase):]
                break
        best: tuple[int, str, str] | None = None  # (length, attribute, value)
        for attr in info.get("negatable_attributes", list(info["attributes"])):
            for value in info["attributes"][attr]:
                vw = words(value)
                if _contains(rest, vw) and (best is None or len(vw) > best[0]):
                    best = (len(vw), attr, value)
        if best is None:
            return None
        _, attr, value = best
        allowed = [v for v in info["attributes"][attr] if v != value]
        text = (f"The shopper wants a {name.lower()} whose {attr} is anything but {value}; "
                f"good options are {_listing(allowed)}.")
        return Reasoning("negation", text, [*allowed, *self._type_terms([name])])

    def _reason_plain(self, qwords: list[str]) -> Reasoning | None:
        found = self._type_in(qwords)
        if found is None:
            return None
        name, _ = found
        info = self.types[name]
        brands = info.get("standard_brands", [])[:2]
        terms = self._type_terms([name])
        text = (f"The shopper is looking for a {name.lower()} ({_listing(info.get('synonyms', []))}); related: "
                f"{_listing(info.get('keywords', []))}; popular brands include {_listing(brands)}.")
        return Reasoning("product_type", text, [*terms[1:], terms[0], *brands])

    @staticmethod
    def _knowledge_words(knowledge: dict) -> set[str]:
        texts: list[str] = list(knowledge.get("brands", {}))
        for name, info in knowledge.get("product_types", {}).items():
            texts += [name, *info.get("synonyms", []), *info.get("keywords", [])]
            texts += [v for values in (info.get("attributes") or {}).values() for v in values]
        texts += [u["use"] for u in knowledge.get("uses", [])] + [f["fact"] for f in knowledge.get("facts", [])]
        texts += [w[k] for w in knowledge.get("wordings", []) for k in ("word", "also_said")]
        return {w for t in texts for w in words(t)}

    def readings(self, qwords: list[str]) -> list[list[str]]:
        """The query's words as typed, then spelled right, then with one or two word rules read back."""
        out = [qwords]
        if self._speller is None:
            return out
        fixed = [self._speller.correct(w) for w in qwords]
        if fixed != qwords:
            out.append(fixed)
        found = [(said, word) for said, word in self._wordings if _contains(fixed, said)]
        singles = [_replace(fixed, said, word) for said, word in found]
        out += singles
        for i, (said, word) in enumerate(found):
            out += [_replace(single, said, word) for single in singles[i + 1:]]
        return out

    def reason(self, query: str, category: str) -> Reasoning:
        readings = self.readings(words(query))
        by_category = {"qa": self._reason_qa, "alternative": self._reason_alternative,
                       "knowledge": self._reason_knowledge, "negative": self._reason_negative,
                       "plain": self._reason_plain}
        # The category's own reasoning first; the others in a fixed order when it finds nothing.
        order = [by_category[category]] if category in by_category else []
        order += [by_category[c] for c in ("knowledge", "qa", "alternative", "negative", "plain")
                  if by_category[c] not in order]
        for reason in order:
            for qwords in readings:
                result = reason(qwords)
                if result is not None:
                    return result
        if self.feedback is not None:
            terms = self.feedback(query)
            if terms:
                return Reasoning("corpus_feedback", "No world knowledge matches this query; the closest catalog "
                                 f"titles talk about {_listing(terms)}.", terms)
        return Reasoning("none", "No knowledge matches this query.", [])

    # -- step 2: keyword extraction --------------------------------------------------

    def extract_keywords(self, reasoning: Reasoning, query: str) -> list[str]:
        """Keywords named by the reasoning; other brands are left out when the query names one."""
        qwords = set(words(query))
        names_brand = any(w in self._brand_words for w in qwords)
        out = []
        for keyword in reasoning.keywords:
            kw = " ".join(words(keyword))
            if not kw:
                continue
            if names_brand and any(w in self._brand_words and w not in qwords for w in kw.split()):
                self.drops["other_brand"] += 1
                continue
            out.append(kw)
        return out

    # -- step 3: rule-based clean-up -------------------------------------------------

    def clean(self, keywords: Sequence[str], query: str) -> list[str]:
        qwords = set(words(query))
        seen: set[str] = set()
        out = []
        for kw in keywords:
            kwords = kw.split()
            if kw in seen:
                self.drops["duplicate"] += 1
                continue
            seen.add(kw)
            if qwords.intersection(kwords):
                self.drops["overlaps_query"] += 1
                continue
            if any(_contains(kwords, banned) for banned in self._banned):
                self.drops["banned"] += 1
                continue
            out.append(kw)
        return out

    def cot(self, query: str, category: str) -> tuple[str, Reasoning]:
        """The comma-separated keyword CoT (at most ``max_cot_tokens`` words; may be empty)."""
        reasoning = self.reason(query, category)
        kept, n_words = [], 0
        for kw in self.clean(self.extract_keywords(reasoning, query), query):
            size = len(kw.split())
            if n_words + size > self.cfg.max_cot_tokens:
                self.drops["over_length"] += 1
                continue
            kept.append(kw)
            n_words += size
        return ", ".join(kept), reasoning


# ---------------------------------------------------------------------------------------
# Triplets


FEEDBACK_DOCS = 10  # top BM25 titles read by corpus feedback
FEEDBACK_TERMS = 8
_STOPWORDS = frozenset("""a an and are as at be but by for from has have in into is it its of on or that the their
this to was were which with within without not no than then these those we our you your can may also been more
most other such only both between after before during over under""".split())


def corpus_feedback(retriever: "LexicalRetriever", titles: dict[str, str]) -> Callable[[str], list[str]]:
    """Query -> the commonest title words of its top BM25 items that the query does not use."""

    def related(query: str) -> list[str]:
        qwords = set(words(query))
        counts: Counter = Counter()
        first_seen: dict[str, int] = {}
        for iid in retriever.search(query, FEEDBACK_DOCS):
            for w in dict.fromkeys(words(titles[iid])):
                if w in qwords or w in _STOPWORDS or len(w) < 3 or w.isdigit():
                    continue
                counts[w] += 1
                first_seen.setdefault(w, len(first_seen))
        ranked = sorted(counts, key=lambda w: (-counts[w], first_seen[w]))
        return ranked[:FEEDBACK_TERMS]

    return related


def spread_over_types(items: Sequence[str], item_type: Mapping[str, str | None], k: int) -> list[str]:
    """At most ``k`` of ``items``, taken round robin over their product types (types in order of
    first appearance, items in their given order within a type). Items without a type form one group."""
    groups: dict[str | None, list[str]] = {}
    for i in items:
        groups.setdefault(item_type.get(i), []).append(i)
    queues = list(groups.values())
    out: list[str] = []
    depth = 0
    while len(out) < k and any(depth < len(q) for q in queues):
        out += [q[depth] for q in queues if depth < len(q)][:k - len(out)]
        depth += 1
    return out


def _select_items(qid: str, relevant: list[str], a: list[str], b: list[str], cfg: TeacherConfig,
                  item_type: Mapping[str, str | None] | None = None) -> tuple[list[str], str]:
    """Items for one query and the filter path that chose them."""
    k = cfg.max_items_per_query
    spread = cfg.item_select == "spread" and item_type is not None
    if cfg.item_filter != "judged":
        in_a = set(a)
        relevant_set = set(relevant)
        found = [i for i in b if i not in in_a and i in relevant_set]
        if found:
            return (spread_over_types(found, item_type, k) if spread else found[:k]), "retriever"
        if cfg.item_filter == "retriever":
            return [], "dropped"
    rng = random.Random(f"{cfg.seed}:{qid}")
    pool = sorted(relevant)
    if spread:
        rng.shuffle(pool)
        chosen = sorted(spread_over_types(pool, item_type, k))
    else:
        chosen = sorted(rng.sample(pool, min(k, len(pool))))
    return chosen, "judged" if cfg.item_filter == "judged" else "judged_fallback"


def generate_triplets(data_dir: str | Path, cfg: TeacherConfig, out_path: Path,
                      exclude: Collection[str] = ()) -> dict:
    """Write Query-CoT-Item triplets for the TRAIN queries of ``data_dir`` to ``out_path``; return stats.

    Rows: ``query_id, query, category, cot, item_id, item_title`` (JSON Lines, sorted keys).
    ``exclude``: training query ids left out (the router's held-out queries,
    :func:`components.routing.holdout.holdout_query_ids`), counted in ``n_queries_held_out``.
    """
    if cfg.item_filter not in ITEM_FILTERS:
        raise ValueError(f"teacher.item_filter must be one of {ITEM_FILTERS}, got {cfg.item_filter!r}")
    if cfg.item_select not in ITEM_SELECTS:
        raise ValueError(f"teacher.item_select must be one of {ITEM_SELECTS}, got {cfg.item_select!r}")
    if cfg.max_cot_tokens < 1 or cfg.max_items_per_query < 1:
        raise ValueError("teacher.max_cot_tokens and teacher.max_items_per_query must be >= 1")
    started = time.perf_counter()
    data_dir, out_path = Path(data_dir), Path(out_path)
    catalog = read_jsonl(data_dir / schema.CATALOG_FILE)
    queries = [q for q in read_jsonl(data_dir / schema.QUERIES_FILE) if q["split"] == "train"]
    n_train = len(queries)
    exclude = {str(q) for q in exclude}
    queries = [q for q in queries if str(q["query_id"]) not in exclude]
    queries.sort(key=lambda q: q["query_id"])
    relevant: dict[str, list[str]] = {}
    for row in read_jsonl(data_dir / schema.JUDGMENTS_FILE):
        relevant.setdefault(row["query_id"], []).append(row["item_id"])
    titles = {item["item_id"]: item["title"] for item in catalog}
    item_type = {item["item_id"]: item.get("product_type") for item in catalog}
    knowledge = load_knowledge(data_dir)
    retriever = LexicalRetriever([i["item_id"] for i in catalog], [i["title"] for i in catalog])
    feedback = corpus_feedback(retriever, titles) if knowledge.get("source") == "imported" else None
    teacher = Teacher(knowledge, cfg, feedback=feedback)

    rows: list[dict[str, Any]] = []
    paths: Counter = Counter()
    dropped: Counter = Counter()
    reasoning_kinds: Counter = Counter()
    triplets_per_category: Counter = Counter()
    kept_queries: Counter = Counter()
    cot_words: list[int] = []
    for query in tqdm(queries, desc="teacher triplets", unit="query", mininterval=2.0):
        qid, text, category = query["query_id"], query["text"], query["category"]
        judged = [i for i in relevant.get(qid, []) if i in titles]
        if not judged:
            dropped["no_judged_items"] += 1
            continue
        cot, reasoning = teacher.cot(text, category)
        reasoning_kinds[reasoning.kind] += 1
        if not cot:
            dropped["empty_cot"] += 1
            continue
        a = retriever.search(text, cfg.retriever_top_k)
        b = retriever.search(f"{text} ({cot})", cfg.retriever_top_k)
        items, path = _select_items(qid, judged, a, b, cfg, item_type)
        paths[path] += 1
        if not items:
            dropped["no_items"] += 1
            continue
        kept_queries[category] += 1
        cot_words.append(len(cot.split()))
        for item_id in items:
            rows.append({"query_id": qid, "query": text, "category": category, "cot": cot,
                         "item_id": item_id, "item_title": titles[item_id]})
            triplets_per_category[category] += 1

    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_path, rows)
    n_kept = sum(kept_queries.values())
    return {
        "n_triplets": len(rows),
        "n_train_queries": n_train,
        "n_queries_held_out": n_train - len(queries),
        "n_queries": n_kept,
        "n_queries_dropped": len(queries) - n_kept,
        "dropped_reasons": dict(sorted(dropped.items())),
        "triplets_per_category": {c: triplets_per_category[c] for c in CATEGORIES},
        "queries_per_category": {c: kept_queries[c] for c in CATEGORIES},
        "mean_cot_words": round(sum(cot_words) / max(1, len(cot_words)), 3),
        "max_cot_words": max(cot_words, default=0),
        "mean_items_per_query": round(len(rows) / max(1, n_kept), 3),
        "filter_paths": {p: paths[p] for p in FILTER_PATHS},
        "reasoning_kinds": dict(sorted(reasoning_kinds.items())),
        "keyword_drops": dict(sorted(teacher.drops.items())),
        "item_filter": cfg.item_filter,
        "item_select": cfg.item_select,
        "seconds": round(time.perf_counter() - started, 3),
    }


__all__ = ["LexicalRetriever", "Reasoning", "Teacher", "generate_triplets", "ITEM_FILTERS", "FILTER_PATHS"]
