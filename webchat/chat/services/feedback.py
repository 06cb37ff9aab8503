"""Writes for feedback: a user's rating, reason, comment and correction of one reply."""

from webchat.chat import selectors
from webchat.chat.models import Feedback, Message
from webchat.chat.validation import ChatInputError, limits, validate_text


def feedback_submit(
    *, user, message_id, rating=0, reason="", comment="", corrected_reply=""
) -> Feedback:
    """Rate a reply (one feedback per user and reply; sending again updates it).

    Args:
        rating: +1 (thumbs up), -1 (thumbs down) or 0 (no thumb, e.g. only a correction).
        reason: one of Feedback.Reason or "".
        comment: free text.
        corrected_reply: what the reply should have been; with the user turn before it and the
            rejected reply it forms a correction for curation.
    """
    message = selectors.message_get(user=user, message_id=message_id, role=Message.Role.ASSISTANT)
    if isinstance(rating, bool) or rating not in (-1, 0, 1):
        raise ChatInputError("out_of_range", "rating must be 1, 0 or -1.", field="rating")
    reason = reason or ""
    if reason not in Feedback.Reason.values and reason != "":
        raise ChatInputError(
            "invalid",
            f"reason must be one of: {', '.join(Feedback.Reason.values)}.",
            field="reason",
        )
    max_chars = limits()["max_feedback_chars"]
    comment = validate_text(comment or "", field="comment", max_chars=max_chars, allow_empty=True)
    corrected_reply = validate_text(
        corrected_reply or "", field="corrected_reply", max_chars=max_chars, allow_empty=True
    )
    if rating == 0 and not (reason or comment.strip() or corrected_reply.strip()):
        raise ChatInputError("empty", "The feedback is empty.")
    feedback, _ = Feedback.objects.update_or_create(
        message=message,
        user=user,
        defaults={
            "rating": rating,
            "reason": reason,
            "comment": comment,
            "corrected_reply": corrected_reply,
        },
    )
    return feedback
