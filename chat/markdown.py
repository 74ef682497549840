"""Model output as safe HTML: Markdown without raw HTML, then sanitised again (defence in depth)."""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

# html=False: any HTML the model writes is shown as text, never parsed as markup.
_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable(["table", "strikethrough"])


def _image_as_link(renderer, tokens, idx, options, env) -> str:
    # A reply must not make the browser fetch a URL by itself: an image whose address carries the
    # conversation is a known way to leak it (prompt injection). The reader can still follow the link.
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = renderer.renderInlineAsText(token.children or [], options, env)
    return f'<a href="{escapeHtml(src)}">{escapeHtml(alt or src)}</a>'


_md.add_render_rule("image", _image_as_link)

# Highlighted here, on the server: code reads the same without JavaScript. Short class names on spans;
# their colours are in static/css/code.css.
_code_formatter = HtmlFormatter(nowrap=True)


def _code_block(renderer, tokens, idx, options, env) -> str:
    """A fenced code block: its language as a label, a copy button (static/js/copy.js), highlighted code."""
    token = tokens[idx]
    language = token.info.split(maxsplit=1)[0] if token.info.strip() else ""
    try:
        lexer = get_lexer_by_name(language) if language else None
    except ClassNotFound:
        lexer = None
    code = highlight(token.content, lexer, _code_formatter) if lexer else escapeHtml(token.content)
    language_class = f' class="language-{escapeHtml(language)}"' if language else ""
    return (
        f'<div class="code-block"><div class="code-head"><span class="code-lang">{escapeHtml(language or "text")}'
        '</span><button type="button" class="copy-code" data-copy-code>Copy</button></div>'
        f"<pre><code{language_class}>{code}</code></pre></div>\n"
    )


_md.add_render_rule("fence", _code_block)

_ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "s",
    "del",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "div",
    "span",
    "button",
}
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "th": {"style"},
    "td": {"style"},
    "ol": {"start"},
    "div": {"class"},
    "span": {"class"},
    "button": {"type", "class", "data-copy-code"},
}


def render_markdown(text: str) -> str:
    return nh3.clean(
        _md.render(text or ""),
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


_TAG_OR_CITATION = re.compile(r"(<[^>]*>)|\[(\d{1,2})\]")
_NO_LINKS_INSIDE = ("a", "code", "pre")


def cite_sources(html: str, sources: list[dict]) -> str:
    """[n] in the text of sanitised HTML becomes a link to source n (not inside links or code)."""
    depth = 0

    def replace(match: re.Match) -> str:
        nonlocal depth
        tag = match.group(1)
        if tag:
            name = tag.strip("</> ").split(" ")[0].lower()
            if name in _NO_LINKS_INSIDE:
                depth += -1 if tag.startswith("</") else 1
            return tag
        number = int(match.group(2))
        if depth or not 1 <= number <= len(sources):
            return match.group(0)
        url = escapeHtml(sources[number - 1]["url"])
        return f'<a class="citation" href="{url}" rel="noopener noreferrer nofollow" target="_blank">[{number}]</a>'

    return _TAG_OR_CITATION.sub(replace, html)
