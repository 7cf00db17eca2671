"""The generator's SQL text helpers: what they rewrite, and what they must leave alone."""

from __future__ import annotations

import pytest

from tools.migrations.render import dquote
from tools.migrations.sqltext import requalify


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('"products"."price" >= 0', '"__new_products"."price" >= 0'),
        ("products.price >= 0", '"__new_products".price >= 0'),
        ("`Products`.price >= 0", '"__new_products".price >= 0'),  # identifiers ignore case
        (
            "[products].price > 0 AND 'products'.price < 9",
            '"__new_products".price > 0 AND "__new_products".price < 9',
        ),
        # left alone: a string that mentions the table, a longer name, a column named like the table
        (
            "note <> 'products.price' AND products_old.price > 0",
            "note <> 'products.price' AND products_old.price > 0",
        ),
        ("products > 0", "products > 0"),
    ],
)
def test_requalify_renames_only_the_tables_qualifier(expression: str, expected: str) -> None:
    assert requalify(expression, "products", "__new_products", quote_name=dquote) == expected


def test_requalify_handles_quotes_in_names() -> None:
    assert (
        requalify('"we""ird".a > 0', 'we"ird', '__new_we"ird', quote_name=dquote) == '"__new_we""ird".a > 0'
    )
