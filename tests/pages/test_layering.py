"""The pages stay thin: they import only mindroute.ui, mindroute.services and the messages (mindroute.i18n), and
never open a transaction."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE_FILES = sorted([ROOT / "Home.py", *(ROOT / "pages").rglob("*.py")])
# mindroute.i18n is a leaf every layer uses (the messages and their formats), like the standard library.
ALLOWED = ("mindroute.ui", "mindroute.services", "mindroute.i18n")


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _problems(path: Path) -> set[str]:
    """Every import of MindRoute outside the ui and services layers, and every `transaction(` call."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "mindroute":
            modules = [f"mindroute.{alias.name}" for alias in node.names]  # from mindroute import x
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            modules = []
        for module in modules:
            inside = module == "mindroute" or module.startswith("mindroute.")
            if inside and not any(module == layer or module.startswith(layer + ".") for layer in ALLOWED):
                found.add(f"import {module}")
        if isinstance(node, ast.Call):
            called = node.func
            name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", None)
            if name == "transaction":
                found.add("transaction(")
    return found


def test_the_pages_are_found() -> None:
    assert len(PAGE_FILES) > 10


@pytest.mark.parametrize("path", PAGE_FILES, ids=_name)
def test_a_page_imports_only_ui_and_services_and_opens_no_transaction(path: Path) -> None:
    assert _problems(path) == set()
