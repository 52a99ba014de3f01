"""Reading pages as a person would: tables by row, text without markup."""

from __future__ import annotations

import re
from html.parser import HTMLParser


class _Cells(HTMLParser):
    def __init__(self, row_attr: str) -> None:
        super().__init__(convert_charrefs=True)
        self.row_attr = row_attr
        self.rows: dict[str, dict[str, str]] = {}
        self._row: str | None = None
        self._col: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get(self.row_attr) is not None:
            self._row = a[self.row_attr] or ""
            self.rows[self._row] = {}
        elif tag == "td" and self._row is not None and a.get("data-col"):
            self._col = a["data-col"]
            self.rows[self._row][self._col] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._col = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._col is not None:
            self.rows[self._row][self._col] += data


def table_rows(html: str, row_attr: str = "data-queue") -> dict[str, dict[str, str]]:
    """{row key: {column: text}} for rows marked with ``row_attr`` and cells with data-col."""
    parser = _Cells(row_attr)
    parser.feed(html)
    return {k: {c: v.strip() for c, v in cols.items()} for k, cols in parser.rows.items()}


def counts(html: str) -> dict[str, str]:
    """The count cards of a queue page: {"depth": "3", "failed": "0", ...}."""
    return dict(re.findall(r'data-count="(\w+)">([^<]*)<', html))


def number(text: str) -> int:
    return int(text.replace(",", ""))
