"""Model replies as HTML that is safe to put into the page as it is.

Every reply is rendered here on the server (the websocket's deltas, snapshots, exports); the page
never turns model text into HTML itself.
"""

import nh3
from markdown_it import MarkdownIt

from webchat.chat.highlight import TOKEN_CLASSES, highlight

# html=False: raw HTML in the source is shown as text, never passed through. nh3 then strips
# anything the renderer itself should never emit (defence in depth: a renderer bug or plugin
# must not become an XSS).
_md = (
    MarkdownIt(
        "commonmark",
        {"html": False, "linkify": False, "typographer": False, "highlight": highlight},
    )
    .enable(["table", "strikethrough"])
    .disable("image")
)  # an <img> would make every reader's browser fetch a URL the model chose
_ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "del",
    "s",
    "code",
    "pre",
    "span",
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
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
}


def render_markdown(text: str) -> str:
    """Markdown to HTML that is safe to insert into the page as-is.

    Args:
        text: untrusted Markdown (a model's reply, possibly containing HTML or script).

    Returns:
        Sanitised HTML: no script, no event handlers, no javascript: links; links open in a new
        tab without access to the opener.
    """
    html = _md.render(text or "")
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties={"text-align"},
        # Pygments' token spans keep only its own short class names, nothing a reply could aim at
        # the page's own CSS.
        allowed_classes={"span": TOKEN_CLASSES},
    )
