"""A merged answer as one page: its per-repository cursor and the caller's budget.

The searcher over many stores (:mod:`fleet`) and the router over shards
(:mod:`router`) merge their parts with :mod:`merging` and fit the result with
:func:`fit`, so both give the same page for the same parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from codeintel.searcher import budget as budget_mod
from codeintel.searcher import cursors, merging
from codeintel.searcher import tools as tools_mod


def fit(
    tool: str,
    req: Any,
    parts: Sequence[dict[str, Any]],
    merged: dict[str, Any],
) -> dict[str, Any]:
    """``merged`` with its per-repository cursor (each repository resumes where it
    stopped, as ``req.cursor`` said it would), fitted to the caller's budget; a tool of
    ``CUT_PAGES`` is cut to fewer rows, paginated again."""
    pos = cursors.decode(tool, req)  # the callers decoded it already: it is valid

    def repage(cut: dict[str, Any]) -> None:
        merging.paginate(tool, req, parts, cut, pos)
        if "truncated" in cut:
            cut["truncated"] = True

    return budget_mod.fit(
        merged,
        req.max_tokens,
        tools_mod.merged_shape(tool),
        page_cursor=merging.paginate(tool, req, parts, merged, pos),
        repage=repage if tool in tools_mod.CUT_PAGES else None,
    )
