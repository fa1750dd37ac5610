"""Postings in ``symbols.postings`` (schema 2) and in the ``postings`` table (schema 1).

A store written before format 8 keeps answering find_references exactly as the
codeintel that wrote it did (``tests/fixtures/symbols-schema1``, written by main
28e8317 with the answers it gave); a new store answers exactly as the old layout does;
an update edits the parent's postings file into what a fresh build writes; a postings
file that is missing, short or another database's is refused.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
from pathlib import Path
from types import ModuleType

import msgspec
import numpy as np
import pytest

from codeintel.core import errors
from codeintel.core.store import symbols as symbols_store
from codeintel.core.store import symbols_postings
from codeintel.core.symbols import SymbolIndex
from codeintel.indexer import chunking
from codeintel.searcher import generations

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _fixture_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_symbols_schema1", FIXTURES / "make_symbols_schema1.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIXTURE = _fixture_script()


def _extracted(sources: dict[str, str]) -> list[symbols_store.FileSymbols]:
    found = [chunking.chunk_and_extract(rel, text)[1] for rel, text in sources.items()]
    return [f for f in found if f is not None]


def _written(directory: Path, sources: dict[str, str], schema: int) -> Path:
    directory.mkdir(parents=True)
    symbols_store.write(directory / symbols_store.SYMBOLS_DB, _extracted(sources), schema)
    return directory


def _answers(directory: Path, names: list[str]) -> list[object]:
    with SymbolIndex.open(directory) as index:  # type: ignore[union-attr]
        return json.loads(json.dumps(FIXTURE.answers(index, names)))  # type: ignore[no-any-return]


def _names(sources: dict[str, str]) -> list[str]:
    return sorted({n for f in _extracted(sources) for n in f.names} | {"absent", "main"})


def test_a_schema_1_store_answers_as_its_writer_did(tmp_path: Path) -> None:
    store = tmp_path / "old"
    shutil.copytree(FIXTURES / "symbols-schema1", store)
    assert symbols_store.check_schema(store / symbols_store.SYMBOLS_DB) == 1
    assert not (store / "symbols.postings").exists()
    lines = (store / "references.jsonl").read_text().splitlines()
    names, recorded = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    assert len(recorded) > 80 and any(r[2] is not None for r in recorded)  # pages walked
    assert _answers(store, names) == recorded


def test_a_schema_2_store_answers_as_schema_1(tmp_path: Path) -> None:
    old = _written(tmp_path / "old", FIXTURE.SOURCES, 1)
    new = _written(tmp_path / "new", FIXTURE.SOURCES, symbols_store.SCHEMA_VERSION)
    assert (new / "symbols.postings").is_file() and not (old / "symbols.postings").exists()
    names = _names(FIXTURE.SOURCES)
    assert _answers(new, names) == _answers(old, names)
    assert sum(page[3]["total"] for page in _answers(new, names)) > 100


@pytest.mark.parametrize("schema", [1, symbols_store.SCHEMA_VERSION])
def test_an_update_answers_as_a_fresh_build(tmp_path: Path, schema: int) -> None:
    """Removed, changed and added files; the update keeps its parent's schema."""
    before = dict(FIXTURE.SOURCES)
    after = dict(before)
    del after["pkg/util.py"]
    after["pkg/shapes.py"] = before["pkg/shapes.py"].replace("helper(r)", "area(helper)")
    after["pkg/extra.py"] = "from pkg.shapes import total\n\n\ndef area(x):\n    return total(x)\n"
    parent = _written(tmp_path / "parent", before, schema)
    child = tmp_path / "child"
    child.mkdir()
    changed = ["pkg/shapes.py", "pkg/extra.py"]
    symbols_store.update(
        parent / symbols_store.SYMBOLS_DB,
        child / symbols_store.SYMBOLS_DB,
        ["pkg/util.py"],
        _extracted({path: after[path] for path in changed}),
    )
    assert symbols_store.check_schema(child / symbols_store.SYMBOLS_DB) == schema
    assert (child / "symbols.postings").exists() == (schema >= 2)
    fresh = _written(tmp_path / "fresh", after, schema)
    names = [*_names(before), "extra", "x"]
    updated = _answers(child, names)
    # file ids differ between an update and a fresh build: compare without the cursors
    assert _without_cursors(updated) == _without_cursors(_answers(fresh, names))
    helper = next(a[3] for a in updated if a[0] == "helper" and a[1] is None)
    assert [f["path"] for f in helper["per_file"]] == ["pkg/shapes.py", "web/app.js"]


def _without_cursors(answers: list[object]) -> list[object]:
    out = []
    for name, glob, _, page in answers:  # type: ignore[misc]
        out.append([name, glob, {k: v for k, v in page.items() if k != "cursor"}])
    return out


def test_a_postings_file_missing_short_or_foreign_is_refused(tmp_path: Path) -> None:
    store = _written(tmp_path / "a", FIXTURE.SOURCES, symbols_store.SCHEMA_VERSION)
    other = _written(tmp_path / "b", {"x.py": "def area():\n    return area\n"}, 2)
    postings = store / "symbols.postings"
    data = postings.read_bytes()

    shutil.copyfile(other / "symbols.postings", postings)
    with pytest.raises(errors.IndexFormatError, match="another symbol database"):
        SymbolIndex.open(store)
    postings.write_bytes(data[:-64])
    with pytest.raises(errors.IndexFormatError, match="its header says"):
        SymbolIndex.open(store)
    postings.unlink()
    with pytest.raises(errors.IndexFormatError, match="cannot map"):
        SymbolIndex.open(store)
    postings.write_bytes(data)
    with SymbolIndex.open(store) as index:  # type: ignore[union-attr]
        assert index.references("area").total > 5


def test_a_searcher_turns_the_symbol_tools_off_for_a_refused_postings_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _written(tmp_path / "a", FIXTURE.SOURCES, symbols_store.SCHEMA_VERSION)
    (store / "symbols.postings").write_bytes(b"CISYMPOS")
    assert generations._open_symbols(store) is None  # the other tools keep answering
    assert "symbol tools are off" in caplog.text and "too short" in caplog.text


def test_a_header_that_lies_about_its_arrays_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "s"
    directory.mkdir()
    path = directory / "symbols.postings"
    columns = symbols_postings.Occurrences.concatenate([])
    symbols_postings.save(path, columns, 3, "token")
    header, arrays = symbols_postings.array_file.load(
        path, symbols_postings.MAGIC, symbols_postings.VERSION, symbols_postings.DTYPES, "x"
    )
    assert list(arrays["name_starts"]) == [0, 0, 0, 0, 0] and header["token"] == "token"
    bad = {**{n: a.copy() for n, a in arrays.items()}, "starts": arrays["starts"][:0]}
    symbols_postings.array_file.save(
        path, symbols_postings.MAGIC, symbols_postings.VERSION, header, bad, symbols_postings.DTYPES
    )
    with pytest.raises(errors.IndexFormatError, match="disagree"):
        symbols_postings.Postings.load(path, "token")


def test_an_older_reader_refuses_schema_2_by_its_version(tmp_path: Path) -> None:
    """A reader of schema 1 reads ``user_version`` and checks the ``postings`` table
    (``check_schema`` of formats 6-7): the table is there, empty, so it refuses the
    database by its version, and its navigation tools say "not indexed"."""
    store = _written(tmp_path / "new", FIXTURE.SOURCES, symbols_store.SCHEMA_VERSION)
    conn = sqlite3.connect(store / symbols_store.SYMBOLS_DB)
    assert conn.execute("PRAGMA user_version").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM postings").fetchone() == (0,)
    conn.close()


def test_occurrences_of_a_name_absent_from_a_file_are_empty(tmp_path: Path) -> None:
    store = _written(tmp_path / "a", FIXTURE.SOURCES, symbols_store.SCHEMA_VERSION)
    postings = symbols_store.open_postings(store / symbols_store.SYMBOLS_DB)
    assert [len(c) for c in postings.occurrences(None, 10**6, 1)] == [0, 0, 0, 0]  # type: ignore[arg-type]
    totals = postings.name_totals()
    assert int(totals.sum()) == len(postings.columns[0]) and int(totals[0]) == 0
    assert msgspec.json.encode(totals.tolist())


def _occurrence_rows(directory: Path) -> list[tuple[object, ...]]:
    """Every occurrence as (name, path, line, column, kind, enclosing), in file order:
    what a postings file says, free of the ids a build happens to give names and files."""
    db = directory / symbols_store.SYMBOLS_DB
    conn = sqlite3.connect(db)
    names = dict(conn.execute("SELECT id, name FROM names").fetchall())
    paths = dict(conn.execute("SELECT id, path FROM files").fetchall())
    conn.close()
    every = symbols_store.open_postings(db).everything()
    return [
        (names[n], paths[f], line, column, kind, enclosing)
        for n, f, line, column, kind, enclosing in zip(*(c.tolist() for c in every), strict=True)
    ]


def _postings_bytes(directory: Path) -> tuple[dict[str, object], dict[str, bytes]]:
    header, arrays = symbols_postings.array_file.load(
        directory / "symbols.postings",
        symbols_postings.MAGIC,
        symbols_postings.VERSION,
        symbols_postings.DTYPES,
        "symbol postings file",
    )
    return header, {name: array.tobytes() for name, array in arrays.items()}


class TestAnUpdateMergesThePostings:
    """An update keeps the parent's sorted postings and merges the new files' into them,
    writing the bytes a full sort writes (docs/performance.md, *An update merges the
    postings*)."""

    def _update(self, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
        before = dict(FIXTURE.SOURCES)
        after = dict(before)
        after["pkg/geometry.py"] = after.pop("pkg/shapes.py")  # renamed
        after["pkg/util.py"] = before["pkg/util.py"] + "\n\ndef brand_new(area):\n    return area\n"
        del after["go/main.go"]  # deleted
        after["aaa/first.py"] = "from pkg.util import helper\n\nzeta = helper(1)\n"  # added
        parent = _written(tmp_path / "parent", before, symbols_store.SCHEMA_VERSION)
        child = tmp_path / "child"
        child.mkdir()
        changed = ["pkg/geometry.py", "pkg/util.py", "aaa/first.py"]
        symbols_store.update(
            parent / symbols_store.SYMBOLS_DB,
            child / symbols_store.SYMBOLS_DB,
            ["pkg/shapes.py", "go/main.go"],
            _extracted({path: after[path] for path in changed}),
        )
        return parent, child, after

    def test_the_update_holds_what_a_fresh_build_holds(self, tmp_path: Path) -> None:
        parent, child, after = self._update(tmp_path)
        fresh = _written(tmp_path / "fresh", after, symbols_store.SCHEMA_VERSION)
        updated = _occurrence_rows(child)
        assert sorted(updated) == sorted(_occurrence_rows(fresh))
        assert {row[:2] for row in updated} >= {("zeta", "aaa/first.py"), ("area", "pkg/util.py")}
        assert not any(row[1] in ("pkg/shapes.py", "go/main.go") for row in updated)
        # and the parent's file is untouched, still its own database's
        assert {row[1] for row in _occurrence_rows(parent)} >= {"pkg/shapes.py", "go/main.go"}

    def test_the_update_writes_the_bytes_a_full_sort_writes(self, tmp_path: Path) -> None:
        _, child, _ = self._update(tmp_path)
        header, merged = _postings_bytes(child)
        every = symbols_store.open_postings(child / symbols_store.SYMBOLS_DB).everything()
        resorted = tmp_path / "resorted"
        resorted.mkdir()
        # every occurrence regrouped by file (as a build stages them), sorted anew by save()
        by_file = np.argsort(every.files, kind="stable")
        symbols_postings.save(
            resorted / "symbols.postings",
            symbols_postings.Occurrences(*(column[by_file] for column in every)),
            int(header["names"]),  # type: ignore[call-overload]
            str(header["token"]),
        )
        assert _postings_bytes(resorted) == (header, merged)

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_a_merge_equals_a_full_sort_on_random_postings(self, tmp_path: Path, seed: int) -> None:
        rng = np.random.default_rng(seed)
        old = _random_occurrences(rng, files=range(1, 40), names=300, rows=5_000)
        symbols_postings.save(tmp_path / "parent", old, 300, "p")
        parent = symbols_postings.Postings.load(tmp_path / "parent", "p")
        dropped = sorted(rng.choice(np.arange(1, 40), size=6, replace=False).tolist())
        # the added files: some ids reused from dropped ones, some new; names old and new
        added = _random_occurrences(
            rng, files=[dropped[0], dropped[1], 40, 41], names=340, rows=900
        )
        symbols_postings.save_update(tmp_path / "merged", parent, dropped, added, 340, "c")
        full = symbols_postings.Occurrences.concatenate([old.without_files(dropped), added])
        symbols_postings.save(tmp_path / "sorted", full, 340, "c")
        assert (tmp_path / "merged").read_bytes() == (tmp_path / "sorted").read_bytes()

    @pytest.mark.parametrize(
        ("old_rows", "dropped", "added_rows"),
        [(0, [], 50), (400, list(range(1, 10)), 0), (400, [], 0), (0, [], 0)],
        ids=["empty-parent", "everything-dropped", "nothing-changed", "empty"],
    )
    def test_a_merge_at_the_edges(
        self, tmp_path: Path, old_rows: int, dropped: list[int], added_rows: int
    ) -> None:
        rng = np.random.default_rng(9)
        old = _random_occurrences(rng, files=range(1, 10), names=20, rows=old_rows)
        symbols_postings.save(tmp_path / "parent", old, 20, "p")
        parent = symbols_postings.Postings.load(tmp_path / "parent", "p")
        added = _random_occurrences(rng, files=[12], names=25, rows=added_rows)
        symbols_postings.save_update(tmp_path / "merged", parent, dropped, added, 25, "c")
        full = symbols_postings.Occurrences.concatenate([old.without_files(dropped), added])
        symbols_postings.save(tmp_path / "sorted", full, 25, "c")
        assert (tmp_path / "merged").read_bytes() == (tmp_path / "sorted").read_bytes()
        merged = symbols_postings.Postings.load(tmp_path / "merged", "c")
        assert int(merged.name_totals().sum()) == len(full.names)

    def test_a_parent_out_of_order_is_refused(self, tmp_path: Path) -> None:
        # The merge trusts the parent's order; a file out of it fails the update, whose
        # parent keeps serving, rather than write postings that readers misread.
        rng = np.random.default_rng(5)
        symbols_postings.save(
            tmp_path / "parent", _random_occurrences(rng, range(1, 10), 20, 400), 20, "p"
        )
        header, arrays = symbols_postings.array_file.load(
            tmp_path / "parent",
            symbols_postings.MAGIC,
            symbols_postings.VERSION,
            symbols_postings.DTYPES,
            "x",
        )
        first, last = (int(at) for at in arrays["name_starts"][1:3])
        assert last - first >= 2  # name 1 is in two files at least: swap them
        files = arrays["files"].copy()
        files[[first, first + 1]] = files[[first + 1, first]]
        symbols_postings.array_file.save(
            tmp_path / "parent",
            symbols_postings.MAGIC,
            symbols_postings.VERSION,
            header,
            {**arrays, "files": files},
            symbols_postings.DTYPES,
        )
        parent = symbols_postings.Postings.load(tmp_path / "parent", "p")
        added = _random_occurrences(rng, [12], 20, 10)
        with pytest.raises(errors.IndexFormatError, match="not in \\(name, file\\) order"):
            symbols_postings.save_update(tmp_path / "merged", parent, [], added, 20, "c")
        assert not (tmp_path / "merged").exists()

    def test_the_parents_rows_are_not_sorted_again(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        parent = _written(tmp_path / "parent", FIXTURE.SOURCES, symbols_store.SCHEMA_VERSION)
        added = _extracted({"pkg/extra.py": "from pkg.util import helper\n\nz = helper(2)\n"})
        child = tmp_path / "child"
        child.mkdir()
        sorted_sizes: list[int] = []
        argsort, lexsort = np.argsort, np.lexsort

        def spy_argsort(a: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
            sorted_sizes.append(len(a))
            return argsort(a, *args, **kwargs)  # type: ignore[call-overload, no-any-return]

        def spy_lexsort(keys: object, *args: object, **kwargs: object) -> np.ndarray:
            sorted_sizes.append(len(keys[0]))  # type: ignore[index]
            return lexsort(keys, *args, **kwargs)  # type: ignore[call-overload, no-any-return]

        monkeypatch.setattr(np, "argsort", spy_argsort)
        monkeypatch.setattr(np, "lexsort", spy_lexsort)
        symbols_store.update(
            parent / symbols_store.SYMBOLS_DB, child / symbols_store.SYMBOLS_DB, [], added
        )
        monkeypatch.undo()
        new_rows = sum(1 for row in _occurrence_rows(child) if row[1] == "pkg/extra.py")
        assert 0 < new_rows < len(_occurrence_rows(parent)) / 10
        assert sorted_sizes and max(sorted_sizes) == new_rows  # only the new file's rows


def _random_occurrences(
    rng: np.random.Generator, files: object, names: int, rows: int
) -> symbols_postings.Occurrences:
    """``rows`` occurrences of name ids 1..``names`` in ``files``, each file's in source order."""
    file_ids = np.sort(rng.choice(np.asarray(list(files)), size=rows))  # type: ignore[call-overload]
    return symbols_postings.Occurrences(
        rng.integers(1, names + 1, size=rows).astype(np.int64),
        file_ids.astype(np.int64),
        np.arange(rows, dtype=np.uint32),
        rng.integers(0, 80, size=rows).astype(np.uint32),
        rng.integers(0, 4, size=rows).astype(np.uint8),
        rng.integers(0, 1 << 40, size=rows).astype(np.int64),
    )


@pytest.mark.parametrize(
    ("count", "top"), [(0, 5), (1, 5), (1000, 3), (50_000, 70_000), (20_000, 2**40)]
)
def test_the_radix_order_is_numpys_stable_sort(count, top):
    keys = np.random.default_rng(count).integers(0, top, count).astype(np.int64)
    order = symbols_postings._radix_order(keys, (top - 1).bit_length())
    assert order.tolist() == np.argsort(keys, kind="stable").tolist()
