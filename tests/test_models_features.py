import json
from pathlib import Path

import pytest

from trustledger.errors import InputError, NotFoundError
from trustledger.models.features import (
    PROTECTED_CATEGORIES,
    ColumnSpec,
    known_proxy,
    load_dictionary,
    parse_dictionary,
    protected_by_description,
    protected_by_name,
    refusal_for,
    select_features,
)


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("sex", "sex"), ("Gender", "sex"), ("applicant_gender", "sex"),
        ("personal_status_and_sex", "marital_status"), ("marital_status", "marital_status"),
        ("age", "age"), ("age_in_years", "age"), ("applicantAge", "age"),
        ("date_of_birth", "age"), ("nationality", "nationality"),
        ("foreign_worker", "nationality"), ("citizenship", "nationality"),
        ("ethnicity", "racial_or_ethnic_origin"), ("race", "racial_or_ethnic_origin"),
        ("religion", "religion_or_belief"), ("health_status", "health"),
        ("disability", "health"), ("sexual_orientation", "sexual_orientation"),
        ("trade_union_member", "trade_union_membership"),
        ("political_affiliation", "political_opinion"),
        ("biometric_template", "genetic_or_biometric"),
    ],
)
def test_protected_names_are_recognised(name: str, category: str) -> None:
    assert protected_by_name(name)[0] == category


@pytest.mark.parametrize(
    "name",
    ["account_age_months", "mortgage", "average_balance", "page_views", "late_payments_12m",
     "credit_amount", "housing", "foreign_currency_loan", "third_party_guarantor"],
)
def test_ordinary_names_are_not_protected(name: str) -> None:
    assert protected_by_name(name) == ()


def spec(name: str, category: str = "loan_terms") -> ColumnSpec:
    return ColumnSpec(name=name, category=category, description=name.replace("_", " "))


def test_every_protected_category_is_refused_when_declared() -> None:
    for category, reason in PROTECTED_CATEGORIES.items():
        refusal = refusal_for(spec("column_x", category), "column_x")
        assert refusal is not None
        assert refusal.category == category
        assert refusal.reason == reason
        assert "column_x" in str(refusal)


def test_a_protected_name_is_refused_whatever_it_is_declared_as() -> None:
    refusal = refusal_for(spec("age_in_years", "income_and_employment"), "age_in_years")
    assert refusal is not None and refusal.category == "age"
    assert "age as such" in refusal.reason


def test_undeclared_columns_are_refused_with_the_reason() -> None:
    refusal = refusal_for(None, "shoe_size")
    assert refusal is not None and refusal.category == "undeclared"
    assert "no category declared" in refusal.reason


def test_select_features_lists_refusals_and_protected_columns() -> None:
    dictionary = {"amount": spec("amount"), "sex": spec("sex", "sex"),
                  "region": spec("region", "racial_or_ethnic_origin")}
    selection = select_features(["amount", "sex", "region", "extra", "y"], dictionary,
                                target="y")
    assert [f.name for f in selection.features] == ["amount"]
    assert {r.column for r in selection.refused} == {"sex", "region", "extra"}
    assert selection.protected == ("sex", "region")


@pytest.mark.parametrize(("column", "words"), [
    ("sex", "sex or gender"), ("age", "age as such"), ("extra", "no category declared"),
])
def test_asking_for_a_refused_feature_fails_naming_column_and_reason(
    column: str, words: str
) -> None:
    dictionary = {"amount": spec("amount"), "sex": spec("sex", "sex"), "age": spec("age")}
    with pytest.raises(InputError, match=rf"{column}: refused .*{words}"):
        select_features(["amount", "sex", "age", "extra", "y"], dictionary, target="y",
                        requested=["amount", column])


def test_no_usable_feature_and_unknown_columns_are_errors() -> None:
    with pytest.raises(InputError, match="no usable feature"):
        select_features(["sex", "y"], {"sex": spec("sex", "sex")}, target="y")
    with pytest.raises(InputError, match="not in the data: ghost"):
        select_features(["a", "y"], {"a": spec("a"), "ghost": spec("ghost")}, target="y")
    with pytest.raises(InputError, match=r"feature column.*not in the data: nope"):
        select_features(["a", "y"], {"a": spec("a")}, target="y", requested=["nope"])


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "single key"),
        ({"columns": {}}, "non-empty"),
        ({"columns": {"a": "x"}}, r"columns\.a: must be an object"),
        ({"columns": {"a": {"category": "astrology", "description": "d"}}},
         r"columns\.a\.category: 'astrology'"),
        ({"columns": {"a": {"category": "assets", "description": " "}}},
         r"columns\.a\.description"),
        ({"columns": {"a": {"category": "assets", "description": "d", "colour": 1}}},
         "unknown key"),
        ({"columns": {"a": {"category": "assets", "description": "d", "bands": [3, 1]}}},
         r"columns\.a\.bands"),
        ({"columns": {"a": {"category": "assets", "description": "d",
                            "special_codes": [True]}}}, r"columns\.a\.special_codes"),
        ({"columns": {"a": {"category": "assets", "description": "d", "groups": {"x": 1}}}},
         r"columns\.a\.groups"),
    ],
)
def test_bad_dictionaries_are_refused_naming_the_key(document: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_dictionary(document)


def test_load_dictionary_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_dictionary(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        load_dictionary(bad)
    dup = tmp_path / "dup.json"
    dup.write_text('{"columns": {"a": {"category": "assets", "description": "d"}, '
                   '"a": {"category": "assets", "description": "e"}}}', encoding="utf-8")
    with pytest.raises(InputError, match="duplicate key"):
        load_dictionary(dup)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"columns": {"a": {"category": "assets", "description": "d",
                                                  "special_codes": [-1]}}}), encoding="utf-8")
    assert load_dictionary(good)["a"].special_codes == (-1,)


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("household_status", "marital_status"), ("applicant_years", "age"),
        ("age_band", "age"), ("years_old", "age"), ("skin_colour", "racial_or_ethnic_origin"),
        ("caste", "racial_or_ethnic_origin"), ("hiv_status", "health"),
        ("medical_condition", "health"), ("party_affiliation", "political_opinion"),
        ("church_attendance", "religion_or_belief"), ("birthplace", "nationality"),
        ("mother_tongue", "nationality"), ("country_of_birth", "nationality"),
        ("HIVStatus", "health"), ("churches_attended", "religion_or_belief"),
    ],
)
def test_protected_traits_under_other_names_are_refused_with_the_right_category(
    name: str, category: str
) -> None:
    assert protected_by_name(name)[0] == category
    refusal = refusal_for(spec(name, "income_and_employment"), name)
    assert refusal is not None and refusal.category == category
    assert PROTECTED_CATEGORIES[category] in refusal.reason
    with pytest.raises(InputError, match=rf"{name}: refused \({category}\)"):
        select_features(["amount", name, "y"], {"amount": spec("amount"), name: spec(name)},
                        target="y", requested=["amount", name])


@pytest.mark.parametrize(("description", "category"), [
    ("Marital status of the applicant", "marital_status"),
    ("Country of birth", "nationality"),
    ("Number of prayers a week", "religion_or_belief"),
    ("Years since the HIV diagnosis", "health"),
])
def test_a_description_that_reveals_a_protected_trait_is_refused(
    description: str, category: str
) -> None:
    column = ColumnSpec(name="x7", category="assets", description=description)
    refusal = refusal_for(column, "x7")
    assert refusal is not None and refusal.category == category
    assert "its description" in refusal.reason


def test_ordinary_descriptions_are_not_refused() -> None:
    document = json.loads((Path(__file__).parent / "data" / "german_credit.columns.json")
                          .read_text(encoding="utf-8"))
    for name, raw in document["columns"].items():
        if raw["category"] in PROTECTED_CATEGORIES:
            continue
        assert protected_by_description(raw["description"]) == (), name
        assert refusal_for(ColumnSpec(name, raw["category"], raw["description"]), name) is None


@pytest.mark.parametrize(("name", "words"), [
    ("postcode", "geography"), ("home_region", "geography"), ("zip_code", "geography"),
    ("neighbourhood", "geography"), ("surname", "names"), ("preferred_language", "language"),
])
def test_known_proxies_are_named_but_not_refused(name: str, words: str) -> None:
    reason = known_proxy(name)
    assert reason is not None and words in reason
    assert refusal_for(spec(name), name) is None


def test_ordinary_names_are_not_known_proxies() -> None:
    for name in ("credit_amount", "duration_in_month", "housing", "zipper_sales"):
        assert known_proxy(name) is None
