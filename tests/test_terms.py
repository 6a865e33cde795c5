"""The one word scanner (trustledger.terms): stems, plurals, phrases, and no false alarms."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustledger.models.features import PROTECTED_CATEGORIES
from trustledger.policy.taxonomy import OUT_OF_BOUNDS_CATEGORIES
from trustledger.terms import (
    DESCRIPTIONS,
    FEATURE_CATEGORY,
    FILLER_WORDS,
    NOT_TERMS,
    POLICY_CATEGORY,
    STANDALONE,
    SYNONYMS,
    TermMatch,
    scan,
    stem,
    synonym_table,
    words,
)

ROOT = Path(__file__).resolve().parent.parent


def categories(text: str) -> set[str]:
    return {m.category for m in scan(text)}


@pytest.mark.parametrize(("text", "category"), [
    ("contact", "association"), ("contacts", "association"), ("relative", "association"),
    ("relatives", "association"), ("household", "association"), ("union", "trade_union"),
    ("churches", "religious_belief"), ("mosques", "religious_belief"),
    ("prayers", "religious_belief"), ("sabbath", "religious_belief"),
    ("congregation", "association"), ("congregation", "religious_belief"),
    ("gathering", "association"), ("gatherings", "assembly_protest"),
    ("protests", "assembly_protest"), ("protesters", "assembly_protest"),
    ("rallies", "assembly_protest"), ("petition", "speech_expression"),
    ("posts", "speech_expression"), ("comments", "speech_expression"),
    ("tweets", "speech_expression"), ("stance", "political_opinion"),
    ("opinion", "political_opinion"), ("party_affiliation", "political_opinion"),
    ("church_attendance", "religious_belief"), ("skin_colour", "racial_ethnic_origin"),
    ("skin-color", "racial_ethnic_origin"), ("caste", "racial_ethnic_origin"),
    ("hiv_status", "health"), ("medical_condition", "health"), ("birthplace", "nationality"),
    ("mother_tongue", "nationality"), ("years_old", "age"), ("applicant_years", "age"),
    ("age_band", "age"), ("birth year", "age"), ("country_of_birth", "nationality"),
    ("trade union", "trade_union"), ("unionised", "trade_union"),
    ("sexual_orientation", "sex_life_orientation"), ("gender", "sex"),
    ("personal_status_and_sex", "marital_status"), ("personal_status_and_sex", "sex"),
    ("household status", "marital_status"), ("foreign_worker", "nationality"),
    ("age_in_years", "age"), ("applicant_age", "age"), ("age", "age"),
    # agent nouns the stemmer leaves alone
    ("worshippers", "religious_belief"), ("churchgoer", "religious_belief"),
    ("parishioner", "religious_belief"), ("protestors", "assembly_protest"),
    ("rioter", "assembly_protest"), ("unionists", "trade_union"),
    ("blogger", "speech_expression"), ("believer", "religious_belief"),
    # compounds written without separators
    ("churchattendance", "religious_belief"), ("uniondues", "trade_union"),
    ("mosquevisits", "religious_belief"), ("prayertime", "religious_belief"),
    ("grandmother_debt", "association"), ("tradeunion", "trade_union"),
    # spellings: look-alike letters, invisible characters, accents, spaced letters
    ("\u0421hurch", "religious_belief"), ("mos\u200bque", "religious_belief"),
    ("pr\u00f4test", "assembly_protest"), ("p r a y e r", "religious_belief"),
    ("c.h.u.r.c.h", "religious_belief"), ("mo\u00adsque", "religious_belief"),
    # more synonyms
    ("islamic_bank", "religious_belief"), ("catholic", "religious_belief"),
    ("nationalist", "political_opinion"), ("kinsman", "association"),
])
def test_forbidden_words_are_found(text: str, category: str) -> None:
    assert category in categories(text)


@pytest.mark.parametrize(("text", "word", "term"), [
    ("churches_visited", "churches", "church"),
    ("HIVStatus", "HIV", "hiv"),
    ("motherTongue2", "motherTongue", "mother tongue"),
    ("number-of-Followers", "Followers", "follower"),
    ("the place of worship visited", "worship", "worship"),
    ("criticism", "criticism", "criticism"),
])
def test_a_match_names_the_word_as_written_and_the_term(text: str, word: str,
                                                        term: str) -> None:
    assert any(m.word == word and m.term == term for m in scan(text))


def test_splitting_identifiers_and_text() -> None:
    assert words("hivStatus_2024-reportedTwice") == ["hiv", "status", "2024", "reported",
                                                     "twice"]
    assert words("Sued and found in breach; stealing water, gas") == [
        "sued", "and", "found", "in", "breach", "stealing", "water", "gas"]
    assert words("") == []


@pytest.mark.parametrize("text", [
    # words that share a stem with a term, or contain one, but name something else
    "contract", "contracts", "downvote_cast", "cast_close_and_reopen_votes", "national_id",
    "related_party_loan", "follow_up_call", "posted_payment", "posting_date", "postal_code",
    "street_racing", "critical_failure", "credit_union_loan", "household_income",
    "financial_health", "contact_details", "third_party_guarantee", "account_age_months",
    "aged_debt", "foreign_currency_loan", "good faith", "parent company", "elected_plan",
    "housing", "telephone", "vote_up", "bounty_offered", "identity_verified",
    # endings and beginnings that are not compounds of a term
    "fundamental", "incremental", "circumstance", "isinstance", "generally", "structurally",
    "hospitality", "contactless", "uncleared_funds", "public_sector", "transparent",
    "neighbourhood", "alienation", "debtor", "creditor", "lender", "customer", "visitor",
    "a b", "type A or B",
])
def test_false_alarms_are_avoided(text: str) -> None:
    assert scan(text) == []


GERMAN_CREDIT = {
    # every column of the German Credit data (Statlog), and what the scanner must say
    "status_of_existing_checking_account": set(), "duration_in_month": set(),
    "credit_history": set(), "purpose": set(), "credit_amount": set(),
    "savings_account_and_bonds": set(), "present_employment_since": set(),
    "installment_rate_in_percentage_of_disposable_income": set(),
    "personal_status_and_sex": {"marital_status", "sex"},
    "other_debtors_or_guarantors": set(), "present_residence_since": set(),
    "property": set(), "age_in_years": {"age"}, "other_installment_plans": set(),
    "housing": set(), "number_of_existing_credits_at_this_bank": set(), "job": set(),
    "number_of_people_being_liable_to_provide_maintenance_for": set(),
    "telephone": set(), "foreign_worker": {"nationality"}, "creditability": set(),
}


@pytest.mark.parametrize(("column", "expected"), sorted(GERMAN_CREDIT.items()))
def test_german_credit_columns(column: str, expected: set[str]) -> None:
    assert categories(column) == expected


def test_the_synonym_sets_cover_both_category_vocabularies() -> None:
    assert set(SYNONYMS) == set(DESCRIPTIONS) == set(POLICY_CATEGORY) == set(FEATURE_CATEGORY)
    policy = {c for c in POLICY_CATEGORY.values() if c is not None}
    assert policy == set(OUT_OF_BOUNDS_CATEGORIES)
    feature = {c for c in FEATURE_CATEGORY.values() if c is not None}
    assert feature <= set(PROTECTED_CATEGORIES)
    # the models area may list speech, assembly and association under the scanner's keys
    assert set(PROTECTED_CATEGORIES) <= feature | set(SYNONYMS)
    # every scanner category is refused by one vocabulary or the other
    assert all(POLICY_CATEGORY[k] or FEATURE_CATEGORY[k] for k in SYNONYMS)


def test_every_term_finds_itself() -> None:
    for category, terms in SYNONYMS.items():
        for term in terms:
            assert TermMatch(category, term, term) in scan(term) or \
                any(m.category == category for m in scan(term)), (category, term)


def test_every_exception_shares_a_stem_with_a_term_or_contains_one() -> None:
    # an exception that collides with nothing would be dead weight
    single = {stem(t) for terms in SYNONYMS.values() for t in terms if " " not in t}
    written = {t for terms in SYNONYMS.values() for t in terms if " " not in t}
    for phrase in NOT_TERMS:
        stems = {stem(w) for w in words(phrase)}
        # or an agent noun or compound of a term (``sector``, ``uncleared``, ``contactless``)
        assert stems & single or any(t in phrase.replace(" ", "") for t in written), phrase


def test_the_synonym_sets_are_read_only() -> None:
    with pytest.raises(TypeError):
        SYNONYMS["health"] = frozenset()  # type: ignore[index]
    assert isinstance(SYNONYMS["health"], frozenset)


def test_standalone_terms_need_only_filler_words_beside_them() -> None:
    every_term = {t for terms in SYNONYMS.values() for t in terms}
    assert STANDALONE.issubset(every_term)
    assert "applicant" in FILLER_WORDS
    assert categories("customer age") == {"age"}
    assert categories("age of the debt") == set()


def test_the_documented_synonym_table_is_generated_from_the_sets() -> None:
    doc = (ROOT / "docs" / "safeguards.md").read_text(encoding="utf-8")
    start, end = "<!-- synonyms:start -->\n", "<!-- synonyms:end -->"
    assert start in doc and end in doc
    assert doc.split(start, 1)[1].split(end, 1)[0] == synonym_table()


@pytest.mark.parametrize("text", ["march_attended", "x1", "flag_b", "segment_7",
                                  "Gewerkschaft", "église", "mezquita", "strike_count",
                                  "counterprotest", "kinsperson", "blogroll", "pr0test",
                                  "ch ur ch"])
def test_what_the_documentation_says_a_word_check_misses_is_missed(text: str) -> None:
    # docs/safeguards.md is honest about the limits: these pass the word check
    assert scan(text) == []


@pytest.mark.parametrize("text", ["relative_risk", "contact_frequency", "believed"])
def test_what_the_documentation_says_is_refused_for_its_words_is_refused(text: str) -> None:
    assert scan(text)
