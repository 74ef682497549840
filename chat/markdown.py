"""Model output as safe HTML: Markdown without raw HTML, then sanitised again (defence in depth)."""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml

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
}
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "th": {"style"}, "td": {"style"}, "ol": {"start"}}


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
