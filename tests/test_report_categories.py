"""The report's sections: the parity table and figure share one, for any number of recipes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from n2v_repro.report.categories import report_category

RULES = Path(__file__).resolve().parents[1] / "workflow" / "rules"


@pytest.mark.parametrize(
    ("recipes", "claims", "parity"),
    [
        (["cpu"], "3. The port's claims, checked", "4. Framework parity"),
        (["paper", "port"], "4. The port's claims, checked", "5. Framework parity"),
    ],
)
def test_claims_and_parity_follow_the_recipes(recipes: list[str], claims: str, parity: str) -> None:
    assert report_category("summary", recipes) == "1. Summary"
    assert [report_category(r, recipes) for r in recipes] == [
        f"{i}. Recipe {r}" for i, r in enumerate(recipes, 2)
    ]
    assert report_category("claims", recipes) == claims
    assert report_category("parity", recipes) == parity


def test_an_unknown_recipe_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown report section 'cpu'"):
        report_category("cpu", ["port"])


def test_every_rule_names_its_category_through_report_category() -> None:
    """A category typed into a rule (as parity's table once was) drifts from the others."""
    found = []
    for path in sorted(RULES.glob("*.smk")):
        for value in re.findall(r"\bcategory=([^,\n]+)", path.read_text()):
            found.append((path.name, value.strip()))
    assert found
    typed = [(name, v) for name, v in found if not v.startswith(("report_category(", "recipe_"))]
    assert not typed, typed
