"""A small multi-language repository with known navigation answers (issue 18).

It holds an ambiguous name (``parse`` in Python source, tests, generated code, Go
and TypeScript), a method with the same name in two classes (``Circle.area`` and
``Square.area``), calls and imports of them, a binary file, a file longer than
one read_file page, a minified line, a submodule, and symlinks inside and
outside the tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from gitrepo import GitRepo

SHAPES = '''\
"""Shapes and their areas."""

import math
from typing import Protocol


class Shape(Protocol):
    def area(self) -> float: ...


class Circle:
    """A circle of radius r."""

    def __init__(self, r: float) -> None:
        self.r = r

    def area(self) -> float:
        """The area of the circle."""
        return math.pi * self.r**2

    def grow(self, k: float) -> "Circle":
        return Circle(self.r * k)


class Square:
    """A square of side s."""

    def __init__(self, s: float) -> None:
        self.s = s

    def area(self) -> float:
        """The area of the square."""
        return self.s * self.s


def parse(text: str) -> Shape:
    """Parse 'circle 2' or 'square 3' into a shape."""
    kind, size = text.split()
    if kind == "circle":
        return Circle(float(size))
    return Square(float(size))


def total_area(shapes: list[Shape]) -> float:
    # parse is not called here: this comment must not count as a reference
    return sum(s.area() for s in shapes)
'''

USES = """\
from pkg.shapes import Circle, parse


def report(text: str) -> str:
    shape = parse(text)
    label = "parse"
    return f"{label}: {shape.area():.2f} {Circle(1).area():.2f}"
"""

TEST_SHAPES = """\
from pkg.shapes import parse


def parse_fixture() -> str:
    return "circle 1"


def test_parse() -> None:
    assert parse(parse_fixture()).area() > 3
"""

VENDORED = '''\
def parse(data):
    """A vendored parser that shadows ours."""
    return data.split()
'''

GO_MAIN = """\
package main

import "fmt"

// parse reads a size.
func parse(s string) int {
\treturn len(s)
}

func main() {
\tfmt.Println(parse("abc"))
}
"""

TS_APP = """\
import { helper } from "./helper";

export class Widget {
  render(): string {
    return helper(parse("x"));
  }
}

export function parse(s: string): string {
  return s.trim();
}
"""

BIG_LINES = 2_500
FILES: dict[str, str | bytes] = {
    "pkg/__init__.py": "",
    "pkg/shapes.py": SHAPES,
    "pkg/uses.py": USES,
    "tests/test_shapes.py": TEST_SHAPES,
    "pkg/parse_generated.py": VENDORED,
    "tests/helpers.py": "def parse(line):\n    return line.strip()\n",
    "cmd/main.go": GO_MAIN,
    "web/app.ts": TS_APP,
    "web/helper.ts": "export function helper(s: string): string {\n  return s;\n}\n",
    "assets/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
    "data/big.txt": "".join(f"line {i}\n" for i in range(1, BIG_LINES + 1)),
    "web/min.js": "var a=" + "1+" * 1_500 + "1;\n",
    "docs/no-newline.txt": "first\nsecond",
}


def make_nav_repo(path: Path) -> GitRepo:
    repo = GitRepo(path)
    repo.write(FILES)
    os.symlink("pkg/shapes.py", path / "shapes_link.py")
    os.symlink("../../../etc/passwd", path / "pkg" / "escape_link")
    os.symlink("/etc/passwd", path / "abs_link")
    os.symlink("../..", path / "pkg" / "updir")
    os.symlink("missing.py", path / "dangling_link")
    repo.git("add", "-A")
    head = repo.commit("navigation fixture")
    # A submodule entry (a gitlink) without a .gitmodules checkout: what the tree records.
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{head},third_party/sub")
    repo.git("commit", "-q", "-m", "add a submodule")
    return repo
