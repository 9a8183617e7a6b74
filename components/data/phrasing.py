"""Queries as people type them: the phrasing layer of the demo world (``world.phrasing: varied``).

A drafted query (see :mod:`components.data.generate`) is a *core*: the intent in one of the
category's short templates ("something to keep my coffee hot", "cheaper option than velora",
"black hiking backpack"). This module composes the final text from parts around that core:

- a named **pattern** (:data:`PATTERNS`): where the core sits and what surrounds it; an opener
  ("hey"), a lead-in ("looking for", "can you recommend"), a trailing ask (", what do i get"),
  a filler ("please"); statements, questions and imperatives. The intent thus comes first,
  in the middle, last, or alone;
- a **wording** of the intent (hard categories qa and knowledge): the use or the fact said in
  other words, by the word rules of :data:`WORDINGS` ("hot" -> "steaming", "commute" -> "trip
  to work"). No rewritten intent is ever stated verbatim in the world's knowledge; the word
  rules themselves are (``knowledge.json`` ``wordings``: language knowledge, what a pretrained
  LLM has read);
- a light **misspelling** of one word (a swap, a dropped or a doubled letter).

Held-out phrasing: the patterns in :data:`HELDOUT_PATTERNS` and the word rules in
:data:`HELDOUT_WORDINGS` are used by eval (and dev) queries only, never by a training query: no
trainer reads them (dev queries are for the reasoning router: routing.use_dev). The choice
is fixed here, in code, and was committed before any model scored on it was trained. Every
query records ``pattern``, ``intent_position`` (only, first, middle, last: where the intent's
words sit), ``wording`` (verbatim or reworded), ``typo`` and ``heldout_phrasing``; eval
queries draw held-out phrasing with probability :data:`HELDOUT_EVAL_SHARE`.

Determinism: one ``random.Random`` seeded from the world seed (a string seed: stable across
processes), used in query order; no set is iterated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# ---------------------------------------------------------------------------------------
# Parts. None of their words is a product-type name or synonym, an attribute value or a
# brand: the teacher reads the intent, and the parts never name a product.

OPENERS = ("hey", "hi", "ok so", "hello", "quick question", "so")
LEADS = ("looking for", "i need", "show me", "find me", "searching for", "want")
QUESTION_LEADS = ("do you have", "where can i find", "can you recommend", "any suggestions for")
# before a need said as a verb phrase (a bare qa core: "keep my coffee hot")
VERB_LEADS = ("i want to", "i need to", "trying to", "i would like to")
VERB_QUESTION_LEADS = ("how do i", "how can i", "what helps me", "what lets me")
ASKS = ("what do i get", "what should i buy", "any ideas", "what works best", "which one", "what do you suggest")
FILLERS = ("please", "thanks", "asap", "if possible")
# parts of the held-out patterns only (eval)
HELDOUT_OPENERS = ("yo", "good morning")
HELDOUT_ASKS = ("what would you pick", "recommendations welcome", "help me choose")


@dataclass(frozen=True)
class Pattern:
    """A named arrangement of parts around the core ``{x}``."""

    name: str
    template: str  # slots: {x} core, {o} opener, {l} lead, {q} question lead, {a} ask, {f} filler
    mood: str  # statement, question, imperative
    weight: int = 1


PATTERNS: tuple[Pattern, ...] = (
    Pattern("bare", "{x}", "statement", 4),
    Pattern("lead", "{l} {x}", "imperative", 2),
    Pattern("question_lead", "{q} {x}", "question", 2),
    Pattern("trailing_ask", "{x}, {a}", "question", 2),
    Pattern("lead_trailing_ask", "{l} {x}, {a}", "question", 1),
    Pattern("opener_trailing_ask", "{o} {x} {a}", "question", 1),
    Pattern("opener_lead", "{o} {l} {x}", "imperative", 1),
    Pattern("trailing_filler", "{x} {f}", "imperative", 1),
    # held out: eval only
    Pattern("ask_colon", "{A}: {x}", "question", 1),
    Pattern("opener_ask_filler", "{O}, {x}, {A} {f}", "question", 1),
    Pattern("intent_then_want", "{x} is what i want, {A}", "statement", 1),
)
HELDOUT_PATTERNS = ("ask_colon", "opener_ask_filler", "intent_then_want")

# Word rules: (name, words of the intent, what they become). Applied on word boundaries.
WORDINGS: tuple[tuple[str, str, str], ...] = (
    ("stay", "stay", "remain"),
    ("warm", "warm", "toasty"),
    ("hot", "hot", "steaming"),
    ("night", "night", "nighttime"),
    ("winter", "winter", "wintertime"),
    ("protect", "protect", "shield"),
    ("practice", "practice", "rehearse"),
    ("beach", "beach", "seaside"),
    ("walk", "walk", "stroll"),
    ("walking", "walking", "strolling"),
    ("tea", "tea", "cuppa"),
    ("puppy", "puppy", "young dog"),
    ("newborn", "newborn", "new baby"),
    ("coffee", "coffee", "java"),
    ("music", "music", "tunes"),
    ("songs", "songs", "tracks"),
    ("phone", "phone", "mobile"),
    ("car", "car", "vehicle"),
    ("quickly", "quickly", "fast"),
    ("cold", "cold", "freezing"),
    ("summer", "summer", "summertime"),
    ("commute", "commute", "trip to work"),
    ("hike", "hike", "trek"),
    ("sleep", "sleep", "snooze"),
    ("dark", "dark", "dim"),
    ("safely", "safely", "securely"),
    ("comfortably", "comfortably", "in comfort"),
    ("improve", "improve", "boost"),
    ("upgrade", "upgrade", "level up"),
    ("cozy", "cozy", "snug"),
    ("evening", "evening", "dusk"),
    ("carry", "carry", "tote"),
    ("sport", "sport", "game"),
    ("gadget", "gadget", "gizmo"),
    ("replaced", "replaced", "superseded"),
    ("race", "race", "contest"),
    ("hobby", "hobby", "pastime"),
    ("movies", "movies", "films"),
    ("head", "head", "noggin"),
    ("knees", "knees", "knee joints"),
    ("floor", "floor", "ground"),
    ("hair", "hair", "locks"),
    ("teeth", "teeth", "chompers"),
    ("guests", "guests", "visitors"),
    ("to_work", "to work", "to the office"),
    ("at_home", "at home", "at my place"),
    ("morning", "morning", "early hours"),
    ("famous", "famous", "renowned"),
    ("wore", "wore", "had on"),
    ("wears", "wears", "puts on"),
    ("plays", "plays", "performs on"),
    ("listen", "listen", "tune in"),
    ("clean", "clean", "scrub"),
    ("tidy", "tidy", "neaten"),
    ("rain", "rain", "showers"),
    ("baby", "baby", "infant"),
    ("toddler", "toddler", "little one"),
    ("game", "game", "match"),
    ("gym", "gym", "fitness center"),
    ("feet", "feet", "tootsies"),
    ("kitten", "kitten", "young cat"),
    ("workouts", "workouts", "training sessions"),
    ("meetings", "meetings", "conferences"),
    ("wedding", "wedding", "nuptials"),
    ("diary", "diary", "daily log"),
    ("hedges", "hedges", "shrubs"),
    ("grass", "grass", "turf"),
    ("books", "books", "reads"),
    ("documents", "documents", "paperwork"),
    ("climbing", "climbing", "ascending"),
    ("cooking", "cooking", "culinary"),
    ("adventures", "adventures", "escapades"),
    ("tradition", "tradition", "custom"),
    ("pilgrimage", "pilgrimage", "journey"),
    ("drinks", "drinks", "beverages"),
    ("steak", "steak", "beef"),
    ("chicken", "chicken", "poultry"),
    ("family", "family", "household"),
    ("flight", "flight", "plane trip"),
    ("computer", "computer", "pc"),
    ("rainy", "rainy", "wet"),
    ("complexion", "complexion", "skin"),
    ("formal", "formal", "fancy"),
    ("backcountry", "backcountry", "wilderness"),
    ("equip", "equip", "kit out"),
    ("prepare", "prepare", "get set"),
    ("exploring", "exploring", "investigating"),
    ("surfing", "surfing", "wave riding"),
    ("shows", "shows", "programs"),
    ("calls", "calls", "phone chats"),
    ("lawn", "lawn", "yard"),
    ("boil", "boil", "heat up"),
    ("slice", "slice", "cut"),
    ("store", "store", "keep"),
)
# held out: eval only
HELDOUT_WORDINGS = ("coffee", "beach", "winter", "newborn", "hike", "protect", "night", "hobby", "gadget",
                    "sport", "walk", "phone", "quickly", "movies", "tea", "to_work", "evening", "famous",
                    "gym", "wedding", "grass", "climbing", "tradition", "steak", "flight", "formal", "surfing",
                    "boil")

HELDOUT_EVAL_SHARE = 0.5  # eval (and dev) queries drawn with held-out phrasing
# the splits phrased as the traffic is: eval, and dev (labelled traffic-like queries for the router)
TRAFFIC_SPLITS = ("eval", "dev")
REWORD_SHARE = 0.5  # queries whose intent is reworded, where a rule applies
TYPO_SHARE = 0.12  # queries with one misspelled word
REWORDED_CATEGORIES = ("qa", "knowledge")
BARE_CATEGORIES = ("qa", "knowledge")  # whose template ("something to ...") the phrasing may drop
BARE_SHARE = 0.35


def _tokens(text: str) -> list[str]:
    return text.split()


def applicable_wordings(intent: str, names: tuple[str, ...] | list[str]) -> list[str]:
    """Names of the word rules (among ``names``) whose words occur in ``intent``."""
    toks = _tokens(intent)
    out = []
    for name, src, _ in WORDINGS:
        if name not in names:
            continue
        s = _tokens(src)
        if any(toks[i:i + len(s)] == s for i in range(len(toks) - len(s) + 1)):
            out.append(name)
    return out


def reword(intent: str, names: list[str]) -> str:
    """``intent`` with the word rules ``names`` applied (each at its first occurrence)."""
    toks = _tokens(intent)
    for name, src, dst in WORDINGS:
        if name not in names:
            continue
        s = _tokens(src)
        for i in range(len(toks) - len(s) + 1):
            if toks[i:i + len(s)] == s:
                toks = toks[:i] + _tokens(dst) + toks[i + len(s):]
                break
    return " ".join(toks)


def misspell(word: str, rng: random.Random) -> str:
    """One light typo: two inner letters swapped, one dropped, or one doubled."""
    i = rng.randrange(1, len(word) - 2)
    kind = rng.choice(("swap", "drop", "double"))
    if kind == "swap" and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1:]


@dataclass
class Phrased:
    text: str
    pattern: str
    intent_position: str
    wording: str
    wording_rules: list[str]
    typo: bool
    heldout_pattern: bool
    heldout_wording: bool

    @property
    def heldout_phrasing(self) -> bool:
        return self.heldout_pattern or self.heldout_wording

    def fields(self) -> dict:
        return {"pattern": self.pattern, "intent_position": self.intent_position, "wording": self.wording,
                "typo": self.typo, "heldout_phrasing": self.heldout_phrasing}


def _position(before: int, after: int) -> str:
    if before and after:
        return "middle"
    if before:
        return "last"
    if after:
        return "first"
    return "only"


class Phraser:
    """Composes query texts from a core; one per world, drawn in query order."""

    def __init__(self, seed: int, stream: str = "") -> None:
        self.rng = random.Random(f"lrem-phrasing-{stream}{seed}")
        self.train_patterns = [p for p in PATTERNS if p.name not in HELDOUT_PATTERNS]
        self.heldout_patterns = [p for p in PATTERNS if p.name in HELDOUT_PATTERNS]
        self.train_rules = [n for n, _, _ in WORDINGS if n not in HELDOUT_WORDINGS]

    def _pick(self, patterns: list[Pattern]) -> Pattern:
        return self.rng.choices(patterns, weights=[p.weight for p in patterns])[0]

    def phrase(self, category: str, core: str, intent: str, split: str) -> Phrased:
        """``core`` contains ``intent`` (the words the position is measured on) verbatim."""
        rng = self.rng
        heldout = split in TRAFFIC_SPLITS and rng.random() < HELDOUT_EVAL_SHARE
        rewordable = category in REWORDED_CATEGORIES
        train_rules = applicable_wordings(intent, self.train_rules) if rewordable else []
        heldout_rules = applicable_wordings(intent, HELDOUT_WORDINGS) if rewordable else []
        heldout_pattern = heldout_wording = False
        rules: list[str] = []
        if heldout:
            # a held-out pattern, a held-out word rule, or both
            roll = rng.random()
            heldout_wording = bool(heldout_rules) and roll < 0.6
            heldout_pattern = not heldout_wording or roll < 0.2
            if heldout_wording:
                rules = [rng.choice(heldout_rules)]
        if not heldout_wording and train_rules and rng.random() < REWORD_SHARE:
            rules = rng.sample(train_rules, min(len(train_rules), 1 + (rng.random() < 0.3)))
        said = reword(intent, rules) if rules else intent
        if category in BARE_CATEGORIES and rng.random() < BARE_SHARE:
            core = intent  # the need or the fact typed alone, the parts around it
        before, _, after = core.partition(intent)
        core_text = f"{before}{said}{after}"
        # a core that has its own words before the intent ("how can i ...") takes no lead-in
        fits = [p for p in (self.heldout_patterns if heldout_pattern else self.train_patterns)
                if not before.strip() or ("{l}" not in p.template and "{q}" not in p.template)]
        pattern = self._pick(fits)
        verb = category == "qa" and core.startswith(intent)
        slots = {"o": rng.choice(OPENERS), "l": rng.choice(VERB_LEADS if verb else LEADS),
                 "q": rng.choice(VERB_QUESTION_LEADS if verb else QUESTION_LEADS),
                 "a": rng.choice(ASKS), "f": rng.choice(FILLERS), "O": rng.choice(HELDOUT_OPENERS),
                 "A": rng.choice(HELDOUT_ASKS)}
        head, _, tail = pattern.template.partition("{x}")
        head, tail = head.format(**slots), tail.format(**slots)
        n_before = len(_tokens(head + before))
        n_after = len(_tokens(after.replace(",", " ") + tail.replace(",", " ").replace(":", " ")))
        text = f"{head}{core_text}{tail}"
        typo = False
        if rng.random() < TYPO_SHARE:
            toks = text.split(" ")
            long_ones = [i for i, t in enumerate(toks) if len(t) >= 5 and t.isalpha()]
            if long_ones:
                i = rng.choice(long_ones)
                toks[i] = misspell(toks[i], rng)
                text = " ".join(toks)
                typo = True
        return Phrased(text=text, pattern=pattern.name, intent_position=_position(n_before, n_after),
                       wording="reworded" if rules else "verbatim", wording_rules=rules, typo=typo,
                       heldout_pattern=heldout_pattern, heldout_wording=heldout_wording)


def part_phrases() -> list[str]:
    """Every phrase the parts add (for checks that they never name a product)."""
    out = [*OPENERS, *LEADS, *QUESTION_LEADS, *VERB_LEADS, *VERB_QUESTION_LEADS, *ASKS, *FILLERS, *HELDOUT_OPENERS, *HELDOUT_ASKS]
    for p in PATTERNS:
        out.append(p.template.replace(",", " ").replace(":", " "))
    return out


__all__ = ["PATTERNS", "HELDOUT_PATTERNS", "WORDINGS", "HELDOUT_WORDINGS", "Phraser", "Phrased",
           "applicable_wordings", "reword", "misspell", "part_phrases"]
