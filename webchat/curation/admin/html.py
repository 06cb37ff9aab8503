"""HTML pieces of the curation admin: shortened text for list columns, a dialogue, and links to
samples."""

from django.urls import reverse
from django.utils.html import format_html, format_html_join


def short(text: str, n: int = 70) -> str:
    """`text` on one line, cut to `n` characters with an ellipsis."""
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def dialogue_html(messages: list[dict]) -> str:
    """Role/content messages as one paragraph each."""
    return format_html(
        '<div class="curation-dialogue">{}</div>',
        format_html_join(
            "",
            '<p style="margin:2px 0"><b>{}:</b> {}</p>',
            ((m["role"], m["content"]) for m in messages),
        )
        or "—",
    )


def sample_url(sample_id: int) -> str:
    """The admin page of one adversarial sample."""
    return reverse("admin:curation_adversarialsample_change", args=[sample_id])


def job_url(job_id: int) -> str:
    """The admin page of one curation job."""
    return reverse("admin:curation_curationjob_change", args=[job_id])
