"""The async path's line splitter: lines end at \\n, \\r\\n or \\r only, however the bytes are cut."""

from __future__ import annotations

import asyncio

import pytest

from mindroute.providers.sse import aiter_lines as _aiter_lines


async def _arrive(pieces: list[bytes]):
    """The body's pieces as the HTTP client hands them over, here fixed ones."""
    for piece in pieces:
        yield piece


def lines(pieces: list[bytes]) -> list[str]:
    async def collect() -> list[str]:
        return [line async for line in _aiter_lines(_arrive(pieces))]

    return asyncio.run(collect())


TEXT = 'data: {"a": "é\u2028x"}\r\n\r\ndata: two\n\ndata: three\rlast'
EXPECTED = ['data: {"a": "é\u2028x"}', "", "data: two", "", "data: three", "last"]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 1000])
def test_any_cut_gives_the_same_lines(size: int) -> None:
    raw = TEXT.encode()
    assert lines([raw[i : i + size] for i in range(0, len(raw), size)]) == EXPECTED


def test_a_crlf_cut_between_its_two_bytes_is_one_break() -> None:
    assert lines([b"data: x\r", b"\n\r", b"\n"]) == ["data: x", ""]


def test_a_final_line_without_a_break_and_a_trailing_cr() -> None:
    assert lines([b"a\nb"]) == ["a", "b"]
    assert lines([b"a\r"]) == ["a"]
    assert lines([]) == []
