"""The report's menu categories: summary, one per recipe, the port's claims, parity last."""

from __future__ import annotations

from collections.abc import Sequence


def report_category(section: str, recipes: Sequence[str]) -> str:
    """Category of `section` ("summary", "claims", "parity" or a recipe) in a run of `recipes`.

    Every rule names its category through this function, so that the parity table and the
    parity figure land in one section whatever the number of recipes.
    """
    if section == "summary":
        return "1. Summary"
    if section == "claims":
        return f"{len(recipes) + 2}. The port's claims, checked"
    if section == "parity":
        return f"{len(recipes) + 3}. Framework parity"
    if section not in recipes:
        raise ValueError(f"unknown report section {section!r}; recipes are {list(recipes)}")
    return f"{list(recipes).index(section) + 2}. Recipe {section}"
