"""Helpers for the everyday-flow AppTests (issue 17): which tab a page shows open after a rerun."""

from __future__ import annotations

from collections.abc import Iterator

from streamlit.testing.v1 import AppTest


def _nodes(node: object) -> Iterator[object]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _nodes(child)


def open_tab(at: AppTest, first_label: str) -> str:
    """The label of the open tab in the set of tabs whose first tab is `first_label`."""
    for node in _nodes(at.main):
        proto = getattr(node, "proto", None)
        if type(node).__name__ == "Block" and proto is not None and proto.HasField("tab_container"):
            labels = [child.label for child in node.children.values()]
            if labels and labels[0] == first_label:
                return labels[proto.tab_container.default_tab_index]
    raise AssertionError(f"no tabs starting with {first_label!r} on the page")
