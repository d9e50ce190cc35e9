"""safe_markdown against every image, link, reference definition and raw HTML example of the CommonMark spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mindroute.ui.render import MarkdownStream, escape_markdown, safe_markdown
from tests.ui.inert import REREADERS, all_tokens, assert_inert

SPEC = json.loads((Path(__file__).parent / "commonmark_0_31_2_examples.json").read_text(encoding="utf-8"))
EXAMPLES = SPEC["examples"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"spec-{e['example']}-{e['section']}")
def test_every_spec_example_renders_inert(example: dict) -> None:
    assert_inert(safe_markdown(example["markdown"]))


def test_the_fixture_holds_every_image_and_reference_definition_example() -> None:
    numbers = {s: sorted(e["example"] for e in EXAMPLES if e["section"] == s) for s in {e["section"] for e in EXAMPLES}}
    assert numbers["Images"] == list(range(572, 594))  # CommonMark 0.31.2: examples 572-593
    assert numbers["Link reference definitions"] == list(range(192, 219))  # 192-218
    assert len(numbers["Links"]) == 90 and len(numbers["Raw HTML"]) == 20


@pytest.mark.parametrize(
    ("source", "label"),
    [
        ("![a [b] c](http://evil.example/p.png)", r"[image: a \[b\] c]"),
        ("![x][r]\n\n[r]: http://evil.example/p.png", "[image: x]"),
        ("![x]\n\n[x]: <http://evil.example/p.png> 'title'", "[image: x]"),
        ("[![inner](http://evil.example/i.png)](https://ok.example/)", "[[image: inner]](https://ok.example/)"),
        ("![](http://evil.example/p.png)", "[image: untitled]"),
    ],
)
def test_images_become_a_label(source: str, label: str) -> None:
    out = safe_markdown(source)
    assert label in out and "evil.example" not in out
    assert_inert(out)


def test_bare_reference_definitions_and_html_leave_nothing_fetchable() -> None:
    out = safe_markdown("[r]: http://evil.example/p.png\n\n<img src=http://evil.example/x.png>\n\n<p>hi</p>")
    assert "](http" not in out and "evil.example/p.png" not in out
    assert r"\<img src=http\://evil.example/x.png>" in out  # shown as text
    assert_inert(out)


def test_links_only_to_http_and_https() -> None:
    out = safe_markdown(
        "[ok](https://ok.example/a(b)?q=1 'title') [js](javascript:alert(1)) [rel](/admin) "
        "[mail](mailto:a@b.example) <https://auto.example/x>"
    )
    assert "[ok](https://ok.example/a%28b%29?q=1)" in out
    assert r"[https\://auto.example/x](https://auto.example/x)" in out
    tokens = all_tokens(REREADERS["gfm"].parse(out))
    assert [t.attrGet("href") for t in tokens if t.type == "link_open"] == [
        "https://ok.example/a%28b%29?q=1",
        "https://auto.example/x",
    ]


def test_streamlit_directives_math_and_emoji_stay_text() -> None:
    source = ":red[x] :material/home: $\\int x$ :smile: at 10:30: fine!"
    out = safe_markdown(source)
    assert out == r"\:red\[x\] \:material/home: \$\\int x\$ \:smile: at 10:30: fine\!"
    tokens = all_tokens(REREADERS["gfm"].parse(out))
    assert [t.content for t in tokens if t.type == "text"] == [source]


TYPICAL_ANSWER = """# Title with *emphasis*

Some **bold**, ~~struck~~ and `code` text, a [link](https://example.com/page), a line\\
break and a soft
break.

1. first
2. second
   - nested
   - list

> quoted
>
> twice

```python
print("![not an image](http://example.com/x.png)")  # code stays code

```

    indented code

| a | b |
| :-- | --: |
| 1 | 2 |

***

- loose item

- second loose item
"""


def test_an_ordinary_answer_renders_as_before() -> None:
    """Without images, HTML or odd links, the rebuilt Markdown renders to the same HTML,
    code (even code quoting an image) included; only the indented block becomes a fence."""
    md = REREADERS["gfm"]
    out = safe_markdown(TYPICAL_ANSWER)
    assert md.render(out) == md.render(TYPICAL_ANSWER)
    assert_inert(out)


@pytest.mark.parametrize(
    "code",
    ["a`b", "``", "` x `", " lead", "![i](http://evil.example/p.png)", "<img src=x>"],
)
def test_code_spans_keep_their_text(code: str) -> None:
    fence = "```" if "``" in code else "``"
    out = safe_markdown(f"before {fence} {code} {fence} after")
    tokens = all_tokens(REREADERS["gfm"].parse(out))
    spans = [t.content for t in tokens if t.type == "code_inline"]
    texts = "".join(t.content for t in tokens if t.type == "text")
    assert spans == [code] or code in texts  # as code, or (long backtick runs) as escaped text
    assert "image" not in {t.type for t in tokens}


def test_partial_streamed_output_is_safe_at_every_prefix() -> None:
    answer = "Look: ![tracker](https://evil.example/p.png?leak=1) and [r]\n\n[r]: https://evil.example/q.png\n"
    for end in range(len(answer) + 1):
        assert_inert(safe_markdown(answer[:end]))


def test_escape_markdown_leaves_no_image_or_tag() -> None:
    for example in EXAMPLES:
        assert_inert(escape_markdown(example["markdown"]))


def _stream(text: str, step: int) -> list[str]:
    stream = MarkdownStream()
    return [stream.render(text[:end]) for end in [*range(step, len(text), step), len(text)]]


@pytest.mark.parametrize("step", [1, 7, 64])
def test_a_streamed_answer_is_inert_at_every_step_and_ends_as_the_whole(step: int) -> None:
    answer = TYPICAL_ANSWER + "\n![late](http://evil.example/late.png)\n\n1) a\n2) b\n\n```\nopen fence"
    shown = _stream(answer, step)
    for markdown in shown:
        assert_inert(markdown)
    assert shown[-1] == safe_markdown(answer)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"spec-{e['example']}-{e['section']}")
def test_every_spec_example_streamed_a_character_at_a_time_stays_inert(example: dict) -> None:
    shown = _stream(example["markdown"], 1)
    for markdown in shown:
        assert_inert(markdown)
    if "]:" not in example["markdown"]:  # a reference definition only applies within its own part
        assert shown[-1] == safe_markdown(example["markdown"])


def test_a_stream_that_is_not_a_continuation_starts_over() -> None:
    stream = MarkdownStream()
    stream.render("first paragraph\n\nsecond\n\nthird")
    assert stream.render("other text") == "other text"


@pytest.mark.parametrize(
    "table",
    [
        "| a | b |\n| - | - |\n| `x\\|![i](http://evil.example/p.png)` | 2 |",
        "| a |\n| - |\n| `\\|<img src=http://evil.example/q.png>\\|` |",
        "| a |\n| - |\n| **`x\\|y`** ![i](http://evil.example/p.png) [l](https://ok.example/a|b) |",
    ],
)
def test_a_pipe_in_code_in_a_table_cell_cannot_free_the_rest_of_the_code(table: str) -> None:
    out = safe_markdown(table)
    assert_inert(out)
    cells = [t for t in all_tokens(REREADERS["gfm"].parse(out)) if t.type in ("td", "td_open")]
    assert cells  # still a table
