"""The one scanner for words naming something that may never be scored.

A policy's event types, attributes, enum values, metrics and scorecards, and a
statistical scorecard's features, are all read by :func:`scan`: the text is split
into words (``snake_case``, ``camelCase``, ``kebab-case``, digits, free text), each
word is reduced to its stem with the Snowball English stemmer (the one Sphinx
uses), and the stems are compared with the stems of :data:`SYNONYMS`, one set per
forbidden category. Multi-word terms (``trade union``, ``country of birth``) match
consecutive words; the longest term wins and its words are not matched again.

So ``churches``, ``prayers``, ``protesters``, ``rallies`` and ``HIVStatus`` are found
from ``church``, ``prayer``, ``protest``, ``rally`` and ``hiv``. Stemming also makes
words collide (``caste`` and ``cast`` share the stem ``cast``, ``nationality`` and
``national`` the stem ``nation``): :data:`NOT_TERMS` lists the words and phrases that
share a stem with a term but mean something else; they never match. A few terms
(:data:`STANDALONE`, i.e. ``age``) name the forbidden thing only when nothing but
:data:`FILLER_WORDS` stands beside them: ``applicant_age`` is a person's age,
``account_age_months`` is not.

What a word list cannot do is written down in ``docs/safeguards.md``: it misses
synonyms it does not list, coded names (``x1``, ``flag_b``) and languages other than
English; the structural checks of the policy linter do not depend on words.

The keys of :data:`SYNONYMS` are the out-of-bounds categories of the policy taxonomy
(:data:`trustledger.policy.taxonomy.OUT_OF_BOUNDS_CATEGORIES`) plus four protected
traits of the models area (``sex``, ``marital_status``, ``age``, ``nationality``);
:data:`POLICY_CATEGORY` and :data:`FEATURE_CATEGORY` map each key to the category
vocabularies of the policy linter and of :mod:`trustledger.models.features`.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Final

import snowballstemmer  # type: ignore[import-untyped]  # ships no type information

__all__ = [
    "DESCRIPTIONS",
    "FEATURE_CATEGORY",
    "FILLER_WORDS",
    "NOT_TERMS",
    "POLICY_CATEGORY",
    "STANDALONE",
    "SYNONYMS",
    "TermMatch",
    "scan",
    "stem",
    "synonym_table",
    "words",
]


@dataclass(frozen=True)
class TermMatch:
    """One forbidden term found in a text.

    ``category``: the key of :data:`SYNONYMS` whose set holds the term;
    ``word``: the word (or words) as written in the text, e.g. ``churches`` or
    ``mother_tongue``; ``term``: the entry of the synonym set it matched, e.g. ``church``.
    """

    category: str
    word: str
    term: str


@dataclass(frozen=True)
class _Category:
    description: str
    terms: frozenset[str]
    policy: str | None
    feature: str | None


def _terms(text: str) -> frozenset[str]:
    return frozenset(t.strip() for t in text.split(",") if t.strip())


_CATEGORIES: Final = {
    "political_opinion": _Category(
        "Political opinions, parties, ideology, dissent and elections: what someone thinks "
        "about how they are governed (GDPR Art. 9(1); ICCPR Art. 19, 25).",
        _terms("political, politics, politician, ideology, ideological, dissent, dissident, "
               "opinion, stance, political party, party affiliation, party member, "
               "party membership, election, electoral, ballot, voter, partisan, activist, "
               "activism, left wing, right wing, propaganda, communist, socialist, "
               "separatist, government critic, regime critic, nationalist, "
               "marxist, marxism, anarchist, extremist, opposition party, "
               "opposition supporter"),
        "political_opinion", "political_opinion"),
    "religious_belief": _Category(
        "Religious or philosophical belief and its practice: faiths, places and acts of "
        "worship, clergy, holy days (GDPR Art. 9(1); ECHR Art. 9).",
        _terms("religion, religious, church, mosque, temple, synagogue, prayer, pray, faith, "
               "worship, sabbath, sermon, clergy, priest, imam, rabbi, pastor, monk, nun, "
               "bible, quran, koran, torah, scripture, hindu, muslim, christian, jewish, jew, "
               "buddhist, sikh, atheist, atheism, agnostic, belief, spiritual, pilgrimage, "
               "ramadan, kosher, halal, baptism, sect, congregation, parish, diocese, "
               "believer, believe, devout, pious, religiosity, parishioner, catholic, "
               "evangelical, islam, islamic, judaism, hinduism, buddhism, hajj, umrah, "
               "zakat, tithe, tithing, eid, diwali, passover, hanukkah, yom kippur, "
               "bar mitzvah, bat mitzvah, sunday service, sunday mass, holy communion"),
        "religious_belief", "religion_or_belief"),
    "speech_expression": _Category(
        "What someone says, writes, posts or publishes, online or off (ECHR Art. 10, "
        "ICCPR Art. 19).",
        _terms("comment, post, tweet, retweet, message, speech, opinion piece, blog, vlog, "
               "podcast, petition, criticism, critic, social media, hashtag, forum post, "
               "journalist, journalism, slogan, censorship, manifesto, whistleblower, "
               "whistleblowing"),
        "speech_expression", None),
    "assembly_protest": _Category(
        "Taking part in assemblies, demonstrations, protests and boycotts (ECHR Art. 11, "
        "ICCPR Art. 21).",
        _terms("protest, demonstration, rally, assembly, gathering, riot, picket, vigil, "
               "boycott, sit in, public meeting, placard"),
        "assembly_protest", None),
    "association": _Category(
        "Whom someone knows or lives with, and other people's conduct or scores: friends, "
        "relatives, household, contacts, followers, congregations (ECHR Art. 11; guilt by "
        "association).",
        _terms("friend, friendship, acquaintance, contact, relative, household, family, kin, "
               "kinship, sibling, cousin, uncle, aunt, nephew, niece, parent, mother, father, "
               "brother, sister, son, daughter, grandparent, grandchild, neighbour, neighbor, "
               "follower, congregation, gathering, associate, colleague, classmate, "
               "roommate, flatmate, social network, social circle, kinsman, kinsfolk, "
               "godparent, godmother, godfather, housemate"),
        "association", None),
    "trade_union": _Category(
        "Trade-union membership and activity (GDPR Art. 9(1); ECHR Art. 11).",
        _terms("union, unionised, unionized, trade union, labour union, labor union, "
               "union member, union dues, collective bargaining, shop steward, "
               "works council"),
        "trade_union", "trade_union_membership"),
    "racial_ethnic_origin": _Category(
        "Racial or ethnic origin, skin colour, caste, tribe and descent (GDPR Art. 9(1); "
        "ICERD).",
        _terms("race, racial, ethnic, ethnicity, skin colour, skin color, skin tone, caste, "
               "tribe, tribal, ancestry, descent, indigenous, aboriginal, hispanic, latino, "
               "latina, gypsy, romani"),
        "racial_ethnic_origin", "racial_or_ethnic_origin"),
    "health": _Category(
        "Physical or mental health, disability, pregnancy and medical care (GDPR Art. 9(1)).",
        _terms("health, hiv, illness, disease, disability, disabled, diagnosis, diagnosed, "
               "medical, medication, medicine, pregnancy, pregnant, maternity, hospital, "
               "hospitalisation, hospitalization, clinic, patient, doctor, therapy, therapist, "
               "psychiatric, psychiatrist, mental, cancer, diabetes, depression, addiction, "
               "rehab, sick, sickness, vaccination, vaccine, covid, symptom, wheelchair, "
               "handicap, blood type, blood pressure, smoker, pharmacy, prescription, "
               "chemotherapy, dialysis, alcoholism, alcoholic"),
        "health", "health"),
    "genetic_biometric": _Category(
        "Genetic and biometric data: DNA, genome, fingerprints, face and iris scans "
        "(GDPR Art. 9(1)).",
        _terms("genetic, gene, genome, genomic, dna, biometric, fingerprint, face scan, "
               "facial recognition, iris scan, retina, voiceprint, faceprint, palm print, "
               "hereditary, heredity"),
        "genetic_biometric", "genetic_or_biometric"),
    "sex_life_orientation": _Category(
        "Sex life and sexual orientation (GDPR Art. 9(1)).",
        _terms("sexual, sexuality, orientation, sex life, sex work, gay, lesbian, bisexual, "
               "homosexual, heterosexual, lgbt, lgbtq, lgbtqi, queer, porn, pornography"),
        "sex_life_orientation", "sexual_orientation"),
    "sex": _Category(
        "Sex or gender (a protected attribute: scoring on it is discrimination).",
        _terms("sex, gender, female, male, woman, women, transgender, nonbinary, non binary, "
               "pronoun"),
        None, "sex"),
    "marital_status": _Category(
        "Marital, family or household status (a protected attribute).",
        _terms("marital, married, unmarried, marriage, spouse, spousal, divorce, divorced, "
               "widow, widowed, widower, husband, wife, civil partnership, civil status, "
               "personal status, family status, household status, cohabiting, cohabitation"),
        None, "marital_status"),
    "age": _Category(
        "Age as such, and dates of birth (a protected attribute; ``age`` counts only with "
        "nothing but filler words beside it).",
        _terms("age, years old, year old, age band, age group, age bracket, age in years, "
               "applicant age, applicant years, birth year, year of birth, date of birth, "
               "birth date, birthdate, birthday, dob, birth, elderly, senior citizen"),
        None, "age"),
    "nationality": _Category(
        "Nationality, citizenship, immigration status, birthplace and mother tongue (a "
        "protected attribute).",
        _terms("nationality, citizenship, foreigner, foreign worker, foreign national, "
               "foreign born, foreign citizen, immigrant, immigration, migrant, emigrant, "
               "refugee, asylum, alien, stateless, residence permit, work permit, visa status, "
               "birthplace, place of birth, country of birth, country of origin, "
               "national origin, mother tongue, native language, first language, "
               "native speaker, native tongue"),
        None, "nationality"),
}

SYNONYMS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {key: c.terms for key, c in _CATEGORIES.items()})
"""Each forbidden category's synonym set (read-only); :data:`DESCRIPTIONS` says what each covers.

Single words match every word with the same Snowball stem (``church`` matches
``churches``); multi-word terms match consecutive words with the same stems. The sets
are listed, generated from this mapping, in ``docs/safeguards.md``.
"""

DESCRIPTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {key: c.description for key, c in _CATEGORIES.items()})
"""What each category of :data:`SYNONYMS` covers, and the law that puts it out of bounds."""

POLICY_CATEGORY: Final[Mapping[str, str | None]] = MappingProxyType(
    {key: c.policy for key, c in _CATEGORIES.items()})
"""Each scanner category's out-of-bounds category of the policy taxonomy, or ``None``.

``None`` marks the protected traits (sex, marital status, age, nationality), which
the policy linter refuses under its ``protected-attribute`` rule.
"""

FEATURE_CATEGORY: Final[Mapping[str, str | None]] = MappingProxyType(
    {key: c.feature for key, c in _CATEGORIES.items()})
"""Each scanner category's key in :data:`trustledger.models.features.PROTECTED_CATEGORIES`.

``None`` for speech, assembly and association, which have no protected-attribute
category on the models side (they are still out of bounds: see :data:`DESCRIPTIONS`).
"""

NOT_TERMS: Final = frozenset({
    # share a stem with a term, mean something else
    "cast", "casts", "casting",                        # caste
    "national", "nationals", "nationally", "nation", "nations",  # nationality
    "foreign",                                         # foreigner
    "related", "relate", "relates", "relating", "relation", "relations",  # relative
    "relatively",
    "follow", "follows", "followed", "following", "follow up",  # follower
    "posted", "posting", "postings", "post code", "post office", "post dated",  # post
    "racing", "raced", "rat race",                     # race
    "critical", "critically",                          # critic
    "associated", "association", "associations",       # associate
    "elect", "elected", "electing", "elects",          # election
    "faithful", "faithfully", "good faith", "bad faith",  # faith
    "demonstrate", "demonstrated", "demonstrates",     # demonstration
    "gathered", "data gathering", "information gathering",  # gathering
    # a term inside a phrase that means something else
    "credit union", "european union",                  # union
    "household income", "household expenses", "household expenditure",  # household
    "financial health", "credit health",               # health
    "contact details", "contact information", "contact address", "contact number",
    "point of contact",                                # contact
    "parent company", "sister company",                # parent, sister
    "sector", "sectors",                               # sect (an agent noun of it)
    "contactless", "uncleared", "alienation", "pronouncement",  # compounds of a term
    "criticality", "neighbourhood", "neighbourhoods", "neighborhood", "neighborhoods",
    "vigilance", "vigilant",                           # vigil
    "transparent", "hospitality",                      # parent, hospital
})
"""Words and phrases that share a stem with a term (or contain one) but name something else.

They never match: ``cast`` is not ``caste``, ``national`` not ``nationality``, a
``credit union`` is not a trade union, ``household income`` is not a household.
"""

STANDALONE: Final = frozenset({"age"})
"""Terms that match only when every other word of the text is in :data:`FILLER_WORDS`."""

FILLER_WORDS: Final = frozenset({
    "in", "years", "year", "yrs", "of", "the", "a", "an", "applicant", "customer", "client",
    "borrower", "person", "subject", "their", "his", "her", "current", "at", "application",
})
"""Words that may stand beside a :data:`STANDALONE` term (``age_in_years``, ``applicant_age``)."""


_STEMMER = snowballstemmer.stemmer("english")
# A Snowball stemmer keeps its working string in the object: one caller at a time.
_STEMMER_LOCK = threading.Lock()


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The Snowball English stem of a lower-case word (``churches`` → ``church``)."""
    with _STEMMER_LOCK:
        result: str = _STEMMER.stemWord(word)
    return result


@dataclass(frozen=True)
class _Word:
    text: str
    start: int
    end: int


_CONFUSABLES: Final = {
    # Cyrillic and Greek letters that look like Latin ones (Unicode's confusables):
    "\u0430": "a", "\u0432": "b", "\u0435": "e", "\u0455": "s", "\u0456": "i",
    "\u0458": "j", "\u043a": "k", "\u043c": "m", "\u043d": "h", "\u043e": "o",
    "\u0440": "p", "\u0441": "c", "\u0442": "t", "\u0443": "y", "\u0445": "x",
    "\u04bb": "h", "\u0501": "d", "\u051b": "q", "\u051d": "w", "\u04cf": "l",
    "\u0261": "g", "\u03b1": "a", "\u03b2": "b", "\u03b5": "e", "\u03b7": "n",
    "\u03b9": "i", "\u03ba": "k", "\u03bd": "v", "\u03bf": "o", "\u03c1": "p",
    "\u03c4": "t", "\u03c5": "u", "\u03c7": "x",
}
"""Look-alike letters read as the Latin letter they imitate (``\u0421hurch``, a Cyrillic Es)."""


def _normalise(text: str) -> tuple[str, list[int]]:
    """``text`` as the scanner reads it, and each character's index in ``text``.

    Invisible format characters (zero-width spaces and joiners, soft hyphens) are dropped,
    compatibility forms and accents are folded (``ﬁ`` → ``fi``, ``chürch`` → ``church``),
    and look-alike Cyrillic and Greek letters are read as Latin (:data:`_CONFUSABLES`).
    """
    out: list[str] = []
    where: list[int] = []
    for k, char in enumerate(text):
        if unicodedata.category(char) == "Cf" or char == "\u00ad":
            continue
        for part in unicodedata.normalize("NFKD", char):
            if unicodedata.combining(part):
                continue
            lower = part.lower()
            mapped = _CONFUSABLES.get(lower, part)
            out.append(mapped.upper() if part != lower and mapped != part else mapped)
            where.append(k)
    return "".join(out), where


def _split(text: str) -> Iterator[_Word]:
    # Runs of letters or digits; inside a run of letters a new word starts at a
    # lower→upper change (camelCase) and before the last capital of an acronym
    # followed by lower case (HIVStatus → HIV, Status).
    i, n = 0, len(text)
    while i < n:
        if not text[i].isalnum():
            i += 1
            continue
        j = i + 1
        digit = text[i].isdigit()
        while j < n and text[j].isalnum() and text[j].isdigit() == digit:
            if not digit:
                prev, cur = text[j - 1], text[j]
                if prev.islower() and cur.isupper():
                    break
                if prev.isupper() and cur.isupper() and j + 1 < n and text[j + 1].islower():
                    break
            j += 1
        yield _Word(text[i:j], i, j)
        i = j


def _tokens(text: str) -> list[_Word]:
    """The words of ``text`` as the scanner reads it, with their places in ``text``.

    The text is normalised (:func:`_normalise`), and a run of three or more single
    letters one separator apart is one word (``c h u r c h``, ``c.h.u.r.c.h``).
    """
    norm, where = _normalise(text)
    found = list(_split(norm))
    out: list[_Word] = []
    i = 0
    while i < len(found):
        j = i
        while j + 1 < len(found) and len(found[j + 1].text) == 1 and \
                found[j + 1].text.isalpha() and len(found[j].text) == 1 and \
                found[j].text.isalpha() and found[j + 1].start - found[j].end <= 1:
            j += 1
        if j - i >= 2:
            out.append(_Word("".join(w.text for w in found[i:j + 1]),
                             where[found[i].start], where[found[j].end - 1] + 1))
        else:
            out.extend(_Word(w.text, where[w.start], where[w.end - 1] + 1)
                       for w in found[i:j + 1])
        i = j + 1
    return out


def words(text: str) -> list[str]:
    """The words of an identifier or a text, in lower case (``HIVStatus2`` → hiv, status, 2)."""
    return [w.text.lower() for w in _tokens(text)]


@dataclass(frozen=True)
class _Entry:
    category: str | None
    term: str
    stems: tuple[str, ...]


def _stems(phrase: str) -> tuple[str, ...]:
    return tuple(stem(w) for w in words(phrase))


@lru_cache(maxsize=1)
def _index() -> tuple[dict[tuple[str, ...], list[_Entry]], frozenset[str], int]:
    by_stems: dict[tuple[str, ...], list[_Entry]] = {}
    for category, terms in SYNONYMS.items():
        for term in sorted(terms):
            stems = _stems(term)
            by_stems.setdefault(stems, []).append(_Entry(category, term, stems))
    for phrase in NOT_TERMS:
        if " " in phrase:
            stems = _stems(phrase)
            by_stems.setdefault(stems, []).insert(0, _Entry(None, phrase, stems))
    single_exceptions = frozenset(p for p in NOT_TERMS if " " not in p)
    longest = max(len(k) for k in by_stems)
    return by_stems, single_exceptions, longest


def scan(text: str) -> list[TermMatch]:
    """Every forbidden term in ``text``, in the order found (one per category and place).

    ``text`` may be an identifier (``church_attendance``, ``motherTongue``), a label or
    free text. Longest terms are tried first; a word or phrase of :data:`NOT_TERMS`
    consumes its words without matching.
    """
    by_stems, exceptions, longest = _index()
    found = _tokens(text)
    lowered = [w.text.lower() for w in found]
    stems = [stem(w) for w in lowered]
    out: list[TermMatch] = []
    i = 0
    while i < len(found):
        step = 1
        for size in range(min(longest, len(found) - i), 0, -1):
            entries = by_stems.get(tuple(stems[i:i + size]))
            if not entries:
                continue
            if size == 1 and lowered[i] in exceptions:
                break
            if entries[0].category is None:
                step = size
                break
            matched = [e for e in entries if e.term not in STANDALONE or
                       all(w in FILLER_WORDS for k, w in enumerate(lowered) if k != i)]
            if not matched:
                continue
            word = text[found[i].start:found[i + size - 1].end]
            # Prefer the entry written as in the text (``criticism`` over ``critic``).
            written = "".join(lowered[i:i + size])
            ranked = sorted(matched, key=lambda e: e.term.replace(" ", "") != written)
            first = {e.category: e.term for e in reversed(ranked) if e.category is not None}
            out.extend(TermMatch(c, word, t) for c, t in first.items())
            step = size
            break
        else:
            if lowered[i] not in exceptions:
                word = text[found[i].start:found[i].end]
                derived: dict[str, str] = {}
                for e in _derived(lowered[i]):
                    if e.category is not None:
                        derived.setdefault(e.category, e.term)
                out.extend(TermMatch(c, word, t) for c, t in derived.items())
        i += step
    return out


AGENT_SUFFIXES: Final = ("goers", "goer", "going", "ers", "er", "ors", "or", "ists", "ist")
"""Endings of agent nouns the stemmer leaves alone: ``worshipper``, ``churchgoer``,
``rioter``, ``unionist`` are read as ``worship``, ``church``, ``riot``, ``union``."""

COMPOUND_REST = 4
"""A word that starts with a term of five letters or more, and has at least this many more
letters, is a compound of it (``churchattendance``, ``uniondues``); shorter rests
(``hospital|ity``) are the term's own derivations. Only kin words are also found at the
end (:data:`COMPOUND_ENDS`: ``grandmother``, ``schoolfriend``): other terms end too many
ordinary words (``fundamental``, ``circumstance``, ``generally``)."""

COMPOUND_ENDS: Final = frozenset({"mother", "father", "parent", "sister", "brother",
                                  "daughter", "friend", "cousin", "family"})
"""Terms found at the end of a compound word as well as at its start."""


@lru_cache(maxsize=1)
def _forms() -> tuple[tuple[str, _Entry], ...]:
    # every term written without spaces, five letters or more, for compounds
    by_stems, _, _ = _index()
    return tuple((e.term.replace(" ", ""), e) for entries in by_stems.values() for e in entries
                 if e.category is not None and e.term not in STANDALONE
                 and len(e.term.replace(" ", "")) >= 5)


@lru_cache(maxsize=65536)
def _derived(word: str) -> tuple[_Entry, ...]:
    """The terms an unmatched word is an agent noun or a compound of.

    See :data:`AGENT_SUFFIXES`, :data:`COMPOUND_REST` and :data:`COMPOUND_ENDS`.
    """
    by_stems, exceptions, _ = _index()
    for suffix in AGENT_SUFFIXES:
        rest = word[:-len(suffix)]
        if not word.endswith(suffix) or len(rest) < 3:
            continue
        for base in dict.fromkeys((rest, rest + "e", rest[:-1] if rest[-1] == rest[-2] else rest)):
            entries = by_stems.get((stem(base),))
            if entries and base not in exceptions and entries[0].category is not None:
                return tuple(entries)
    out = [e for form, e in _forms()
           if word in (form, form + "s") or (
               len(word) - len(form) >= COMPOUND_REST
               and (word.startswith(form) or (form in COMPOUND_ENDS and word.endswith(form))))]
    return tuple(out)


def synonym_table() -> str:
    """The synonym sets as a Markdown table (``docs/safeguards.md`` holds it; a test compares)."""
    lines = ["| category | covers | terms |", "|---|---|---|"]
    for key, category in _CATEGORIES.items():
        terms = ", ".join(sorted(category.terms))
        lines.append(f"| `{key}` | {category.description} | {terms} |")
    lines += ["", "Never matched (they share a stem with a term, or contain one, but name "
              "something else): " + ", ".join(sorted(NOT_TERMS)) + ".", "",
              "Matched only with nothing but filler words beside them: "
              + ", ".join(sorted(STANDALONE)) + " (fillers: "
              + ", ".join(sorted(FILLER_WORDS)) + ")."]
    return "\n".join(lines) + "\n"
