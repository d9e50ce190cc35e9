"""The message catalogs against the code: which messages lack a translation, which entries nothing uses.

    python scripts/messages.py                  # report, per source file; exit 1 when anything is missing
    python scripts/messages.py --add PO FILE..  # append FILE's untranslated messages to PO (empty msgstr)

Messages are what Babel's Python extractor finds in calls of `_`, `_n`, `_l`, `_ln` and `N_` in Home.py,
pages/ and mindroute/ (see mindroute/i18n.py). tests/test_i18n_catalog.py runs the same checks.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mindroute import i18n  # noqa: E402

KEYWORDS = {"_": None, "_l": None, "N_": None, "_n": (1, 2), "_ln": (1, 2)}
SINGLE = {"_", "_l", "N_"}
PLURAL = {"_n", "_ln"}
PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)(?:[!:][^}]*)?\}")


def source_files() -> list[Path]:
    files = [ROOT / "Home.py", *sorted((ROOT / "pages").rglob("*.py")), *sorted((ROOT / "mindroute").rglob("*.py"))]
    return [f for f in files if f.name != "i18n.py"]


def extract(path: Path) -> list[tuple[int, str | tuple[str, str]]]:
    """(line, message id) of every translatable message in `path`; a plural is (singular, plural)."""
    found = []
    for lineno, message, _comments, _context in extract_from_file("python", str(path), keywords=KEYWORDS):
        if isinstance(message, tuple):
            message = message if len(message) == 2 else tuple(message[:2])
        found.append((lineno, message))
    return found


def non_literal_calls(path: Path) -> list[str]:
    """Calls of the gettext functions whose message is not a plain string literal (an f-string, a variable,
    a concatenation): the extractor cannot see them, so they would never be translated."""
    problems = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        name = node.func.id
        if name not in SINGLE | PLURAL:
            continue
        wanted = 2 if name in PLURAL else 1
        args = node.args[:wanted]
        if len(args) < wanted or not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
            problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}() needs a string literal")
    return problems


def used_messages() -> dict[str | tuple[str, str], list[str]]:
    """Every message id the code uses -> where ("path:line")."""
    used: dict[str | tuple[str, str], list[str]] = defaultdict(list)
    for path in source_files():
        for lineno, message in extract(path):
            used[message].append(f"{path.relative_to(ROOT)}:{lineno}")
    return used


def catalog_entries(language: str) -> dict[str | tuple[str, str], tuple[Path, object]]:
    """Message id -> (the .po file holding it, the message); a second file holding it is reported by
    `duplicated`."""
    entries: dict[str | tuple[str, str], tuple[Path, object]] = {}
    for path in i18n.catalog_files(language):
        with path.open("rb") as handle:
            for message in read_po(handle, locale=language):
                if message.id:
                    key = message.id if isinstance(message.id, str) else tuple(message.id[:2])
                    entries.setdefault(key, (path, message))
    return entries


def duplicated(language: str) -> list[str]:
    seen: dict[object, Path] = {}
    problems = []
    for path in i18n.catalog_files(language):
        with path.open("rb") as handle:
            for message in read_po(handle, locale=language):
                if not message.id:
                    continue
                key = message.id if isinstance(message.id, str) else tuple(message.id[:2])
                if key in seen:
                    problems.append(f"{key!r} is in {seen[key].name} and {path.name}")
                seen.setdefault(key, path)
    return problems


def translated(message: object) -> bool:
    string = message.string  # type: ignore[attr-defined]
    if getattr(message, "fuzzy", False):
        return False
    if isinstance(string, tuple | list):
        return all(s.strip() for s in string)
    return bool(string and string.strip())


def placeholder_mismatches(language: str) -> list[str]:
    """Translations whose {placeholders} differ from their message id's (a crash or a lost value)."""
    problems = []
    for key, (path, message) in catalog_entries(language).items():
        if not translated(message):
            continue
        source = " ".join(key) if isinstance(key, tuple) else key
        strings = message.string if isinstance(message.string, tuple | list) else [message.string]  # type: ignore[attr-defined]
        want = set(PLACEHOLDER.findall(source))
        for string in strings:
            got = set(PLACEHOLDER.findall(string))
            if got - want or (want - got - {"n"}):
                problems.append(
                    f"{path.name}: {key!r}: placeholders {sorted(got)} in the translation, {sorted(want)} in the id"
                )
    return problems


def missing(language: str) -> dict[str | tuple[str, str], list[str]]:
    entries = catalog_entries(language)
    return {
        key: where for key, where in used_messages().items() if key not in entries or not translated(entries[key][1])
    }


def unused(language: str) -> list[str]:
    used = used_messages()
    return [f"{path.name}: {key!r}" for key, (path, _m) in catalog_entries(language).items() if key not in used]


def add(po: Path, files: list[Path], language: str = "ko") -> int:
    """Append the messages of `files` that no catalog of `language` holds yet to `po`, untranslated."""
    entries = catalog_entries(language)
    if po.exists():
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=language)
    else:
        catalog = Catalog(
            locale=language,
            domain="mindroute",
            project="MindRoute",
            copyright_holder="the MindRoute authors",
            last_translator="the MindRoute authors",
            language_team=i18n.LANGUAGES.get(language, language),
            charset="utf-8",
            fuzzy=False,
        )
    added = 0
    for path in files:
        for lineno, message in extract(path.resolve()):
            if message in entries or (message if isinstance(message, str) else message[0]) in catalog:
                continue
            catalog.add(message, string=("",) if isinstance(message, tuple) else "", locations=[(str(path), lineno)])
            added += 1
    po.parent.mkdir(parents=True, exist_ok=True)
    with po.open("wb") as handle:
        write_po(handle, catalog, width=120, omit_header=False, sort_output=False, include_lineno=False)
    return added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--language", default="ko")
    parser.add_argument("--add", nargs="+", metavar=("PO", "FILE"), help="append FILE's new messages to PO")
    args = parser.parse_args(argv)
    if args.add:
        po, *files = (Path(p) for p in args.add)
        print(f"{add(po, files, args.language)} message(s) added to {po}")
        return 0
    problems = [p for f in source_files() for p in non_literal_calls(f)]
    problems += duplicated(args.language) + placeholder_mismatches(args.language)
    lacking = missing(args.language)
    for key, where in sorted(lacking.items(), key=lambda kv: kv[1][0]):
        problems.append(f"{where[0]}: no {args.language} translation for {key!r}")
    problems += [f"unused entry {u}" for u in unused(args.language)]
    for line in problems:
        print(line)
    print(f"{len(used_messages())} messages in the code, {len(lacking)} untranslated, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
