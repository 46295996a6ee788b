"""Offline synthetic languages: one meaning space, several seeded surface languages.

Every sentence is first drawn as a *meaning* (subject, verb, object, optional adjective, tense),
then rendered by a language's lexicon, word order and tense suffix. Two languages therefore share
what is said but not how, which is exactly what makes pretraining on one of them more or less
useful for translating the other: the offline stand-in for the paper's en/de/fr/ro.

Everything is a pure function of (seed, language, index), so streams never need to be stored,
workers can read disjoint shards, and a document is never repeated within a run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

NOUNS, VERBS, ADJECTIVES = 120, 50, 40
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"

# Stand-ins for the paper's languages: word order and adjective placement differ, lexicons are
# drawn independently per language (so lexical overlap is by chance only).
_LANGUAGE_SHAPES = {
    "en": ("SVO", "before"),
    "de": ("SOV", "before"),
    "fr": ("SVO", "after"),
    "ro": ("VSO", "after"),
}


@dataclass(frozen=True)
class Language:
    code: str
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]
    order: str
    adjective_position: str
    past_suffix: str
    conjunction: str


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))


def _unique_words(rng: random.Random, count: int, taken: set[str]) -> tuple[str, ...]:
    words = []
    while len(words) < count:
        word = _word(rng, rng.choice((1, 2, 2, 3)))
        if word not in taken:
            taken.add(word)
            words.append(word)
    return tuple(words)


@lru_cache(maxsize=64)
def language(code: str, seed: int = 0) -> Language:
    """The synthetic language `code` of the family with this seed."""
    rng = random.Random(f"raysweep-lang-{seed}-{code}")
    order, adjective_position = _LANGUAGE_SHAPES.get(
        code, (rng.choice(("SVO", "SOV", "VSO")), rng.choice(("before", "after"))))
    taken: set[str] = set()
    return Language(
        code=code,
        nouns=_unique_words(rng, NOUNS, taken),
        verbs=_unique_words(rng, VERBS, taken),
        adjectives=_unique_words(rng, ADJECTIVES, taken),
        order=order,
        adjective_position=adjective_position,
        past_suffix=rng.choice(_CONSONANTS) + rng.choice(_VOWELS),
        conjunction=_unique_words(rng, 1, taken)[0],
    )


Meaning = tuple  # (clauses,), each clause (subject, verb, object, adjective or -1, past)


def meaning(rng: random.Random) -> Meaning:
    clauses = []
    for _ in range(rng.choice((1, 1, 2))):
        clauses.append((rng.randrange(NOUNS), rng.randrange(VERBS), rng.randrange(NOUNS),
                        rng.randrange(ADJECTIVES) if rng.random() < 0.5 else -1, rng.random() < 0.5))
    return tuple(clauses)


def render(lang: Language, sentence: Meaning) -> str:
    parts = []
    for subject, verb, obj, adjective, past in sentence:
        s = lang.nouns[subject]
        v = lang.verbs[verb] + (lang.past_suffix if past else "")
        o = lang.nouns[obj]
        if adjective >= 0:
            a = lang.adjectives[adjective]
            o = f"{a} {o}" if lang.adjective_position == "before" else f"{o} {a}"
        slots = {"S": s, "V": v, "O": o}
        parts.append(" ".join(slots[c] for c in lang.order))
    return f" {lang.conjunction} ".join(parts) + " ."


def monolingual_document(code: str, index: int, seed: int = 0) -> str:
    """Document `index` of the monolingual stream of `code`: 3-6 sentences."""
    rng = random.Random(f"raysweep-mono-{seed}-{code}-{index}")
    lang = language(code, seed)
    return " ".join(render(lang, meaning(rng)) for _ in range(rng.randint(3, 6)))


def parallel_pair(source: str, target: str, index: int, seed: int = 0) -> tuple[str, str]:
    """Sentence pair `index` of the (source, target) parallel corpus: one meaning, two renderings."""
    # The pair's meaning stream does not depend on the direction, so en-de and de-en agree.
    low, high = sorted((source, target))
    rng = random.Random(f"raysweep-parallel-{seed}-{low}-{high}-{index}")
    sentence = meaning(rng)
    return render(language(source, seed), sentence), render(language(target, seed), sentence)
