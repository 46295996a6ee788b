"""Offline synthetic languages: one meaning space, a seeded family of surface languages.

Every sentence is first drawn as a *meaning* (clauses of subject, verb, object, number, tense and
an optional adjective), then rendered by a language's lexicon, word order and morphology. Two
languages therefore share what is said but not how, which is what makes pretraining on one of them
more or less useful for translating the other: the offline stand-in for the paper's en/de/fr/ro.

The family has one knob, `relatedness`: each language inherits each word of a proto-language
(through its own regular sound changes, like German "Wasser" / English "water") with that
probability, and draws a fresh word otherwise. At 0 the lexicons are unrelated; at 1 every word is
a cognate. Word order, adjective placement and affixes are per language either way.

Everything is a pure function of (family, language, index), so streams never need to be stored,
workers can read disjoint shards, and a document is never repeated within a run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class Family:
    """The parameters of a language family (hashable: languages are cached per family)."""

    seed: int = 0
    relatedness: float = 0.3
    """Probability that a language's word for a concept descends from the proto-language's."""
    nouns: int = 30
    verbs: int = 12
    adjectives: int = 8

    @staticmethod
    def of(spec) -> Family:
        """The family a sweep spec describes (its `synthetic` section and seed)."""
        s = spec.synthetic
        return Family(spec.seed, s.relatedness, s.nouns, s.verbs, s.adjectives)


@dataclass(frozen=True)
class Shape:
    """Grammar of a language: what differs besides the words."""

    order: str  # of subject, verb, object: SVO, SOV, VSO
    adjective_position: str  # before | after the noun
    object_case: bool  # objects carry an accusative suffix
    past_as_word: bool  # past tense is an auxiliary word before the verb, not a suffix


# Stand-ins for the paper's languages, loosely after the real ones: English SVO with no case,
# German verb-final with case, French with post-nominal adjectives and a past auxiliary,
# Romanian verb-first (a stand-in for its freer order) with case. Other codes get a random shape.
STAND_INS = {
    "en": Shape("SVO", "before", object_case=False, past_as_word=False),
    "de": Shape("SOV", "before", object_case=True, past_as_word=False),
    "fr": Shape("SVO", "after", object_case=False, past_as_word=True),
    "ro": Shape("VSO", "after", object_case=True, past_as_word=False),
}


@dataclass(frozen=True)
class Language:
    code: str
    shape: Shape
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]
    plural_suffix: str
    object_suffix: str
    past_marker: str  # a suffix, or a word when shape.past_as_word
    conjunction: str
    cognates: frozenset  # (part of speech, concept) pairs whose word descends from the proto word


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS)
                   for _ in range(rng.choice((1, 2, 2, 3))))


def _sound_change(rng: random.Random):
    """A language's regular sound changes: a few consonants and one vowel shift everywhere."""
    consonants = rng.sample(_CONSONANTS, 4)
    vowels = rng.sample(_VOWELS, 2)
    table = {consonants[0]: consonants[1], consonants[2]: consonants[3], vowels[0]: vowels[1]}
    return lambda word: "".join(table.get(ch, ch) for ch in word)


@lru_cache(maxsize=16)
def _proto_lexicon(family: Family) -> tuple[tuple[str, ...], ...]:
    rng = random.Random(f"raysweep-proto-{family.seed}")
    return tuple(tuple(_word(rng) for _ in range(n))
                 for n in (family.nouns, family.verbs, family.adjectives))


@lru_cache(maxsize=64)
def language(code: str, family: Family = Family()) -> Language:
    """The synthetic language `code` of this family."""
    rng = random.Random(f"raysweep-lang-{family.seed}-{code}")
    shape = STAND_INS.get(code) or Shape(rng.choice(("SVO", "SOV", "VSO")),
                                         rng.choice(("before", "after")),
                                         rng.random() < 0.5, rng.random() < 0.5)
    shift = _sound_change(rng)
    taken: set[str] = set()
    cognates = set()

    def lexicon(part: int, proto_words: tuple[str, ...]) -> tuple[str, ...]:
        words = []
        for concept, proto in enumerate(proto_words):
            inherit = rng.random() < family.relatedness
            word = shift(proto) if inherit else _word(rng)
            while word in taken:  # homonyms would make translation ambiguous
                word, inherit = _word(rng), False
            cognates.update([(part, concept)] if inherit else [])
            taken.add(word)
            words.append(word)
        return tuple(words)

    nouns, verbs, adjectives = (lexicon(part, words)
                                for part, words in enumerate(_proto_lexicon(family)))
    plural, accusative, past = (rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(3))
    conjunction = _word(rng)
    while conjunction in taken:
        conjunction = _word(rng)
    return Language(code, shape, nouns, verbs, adjectives, plural_suffix=plural,
                    object_suffix=accusative if shape.object_case else "", past_marker=past,
                    conjunction=conjunction, cognates=frozenset(cognates))


# A meaning: a tuple of clauses, each
# (subject, subject plural, verb, past, object, object plural, adjective of the object or -1).
Meaning = tuple


def meaning(rng: random.Random, family: Family) -> Meaning:
    clauses = []
    for _ in range(rng.choice((1, 1, 2))):
        clauses.append((rng.randrange(family.nouns), rng.random() < 0.3,
                        rng.randrange(family.verbs), rng.random() < 0.5,
                        rng.randrange(family.nouns), rng.random() < 0.3,
                        rng.randrange(family.adjectives) if rng.random() < 0.5 else -1))
    return tuple(clauses)


def render(lang: Language, sentence: Meaning) -> str:
    parts = []
    for subject, subject_plural, verb, past, obj, object_plural, adjective in sentence:
        s = lang.nouns[subject] + (lang.plural_suffix if subject_plural else "")
        o = lang.nouns[obj] + (lang.plural_suffix if object_plural else "") + lang.object_suffix
        if adjective >= 0:
            a = lang.adjectives[adjective]
            o = f"{a} {o}" if lang.shape.adjective_position == "before" else f"{o} {a}"
        if not past:
            v = lang.verbs[verb]
        elif lang.shape.past_as_word:
            v = f"{lang.past_marker} {lang.verbs[verb]}"
        else:
            v = lang.verbs[verb] + lang.past_marker
        slots = {"S": s, "V": v, "O": o}
        parts.append(" ".join(slots[c] for c in lang.shape.order))
    return f" {lang.conjunction} ".join(parts) + " ."


def monolingual_document(code: str, index: int, family: Family = Family()) -> str:
    """Document `index` of the monolingual stream of `code`: 3-6 sentences."""
    rng = random.Random(f"raysweep-mono-{family.seed}-{code}-{index}")
    lang = language(code, family)
    return " ".join(render(lang, meaning(rng, family)) for _ in range(rng.randint(3, 6)))


def parallel_pair(source: str, target: str, index: int,
                  family: Family = Family()) -> tuple[str, str]:
    """Sentence pair `index` of the (source, target) parallel corpus: one meaning, two
    renderings."""
    # The pair's meaning stream does not depend on the direction, so en-de and de-en agree.
    low, high = sorted((source, target))
    rng = random.Random(f"raysweep-parallel-{family.seed}-{low}-{high}-{index}")
    sentence = meaning(rng, family)
    return render(language(source, family), sentence), render(language(target, family), sentence)


def shared_words(a: str, b: str, family: Family = Family()) -> float:
    """Share of concepts whose words are cognates in both languages: the measurable relatedness
    of two languages (about `family.relatedness` squared)."""
    concepts = family.nouns + family.verbs + family.adjectives
    return len(language(a, family).cognates & language(b, family).cognates) / concepts
