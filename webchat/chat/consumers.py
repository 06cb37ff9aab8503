"""The chat websocket: one connection per browser tab, JSON frames both ways (docs/websocket.md).

The consumer watches one conversation at a time by joining its channel group. It joins FIRST and
reads the rows after, so the snapshot it sends plus the deltas after it hold every character
exactly once: deltas numbered at or below what the snapshot already contains are dropped here.
Replies are rendered to sanitised HTML on the server; the page never turns model text into HTML.
"""

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from webchat import metrics, turnlog
from webchat.chat import selectors, services
from webchat.chat.deltas import APPLIED, GAP, StreamedText
from webchat.chat.markdown import render_markdown
from webchat.chat.replies import group_name
from webchat.chat.validation import ChatInputError, limits, validate_id

log = logging.getLogger(__name__)

db = database_sync_to_async


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)  # before accept: the handshake is refused
            return
        self.user = user
        self.conversation_id: int | None = None
        # message id -> what this socket's client has of each reply in the watched
        # conversation (snapshot plus deltas), so deltas can be deduplicated and the whole
        # reply re-rendered to HTML.
        self.streams: dict[int, StreamedText] = {}
        await self.accept()
        metrics.websocket_opened(self)
        await self.send_frame({"type": "hello", "user": user.get_username()})

    async def disconnect(self, code):
        metrics.websocket_closed(self)
        if getattr(self, "conversation_id", None) is not None:
            await self.channel_layer.group_discard(
                group_name(self.conversation_id), self.channel_name
            )

    # --- client frames ----------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        turnlog.bind(None)  # a frame's log lines name the reply it is about, not the last one
        ref = None
        try:
            frame = self.parse(text_data, bytes_data)
            ref = frame.get("id") if isinstance(frame.get("id"), str | int) else None
            kind = frame.get("type")
            if kind is None:
                raise ChatInputError("missing_field", "The field 'type' is required.", field="type")
            handler = HANDLERS.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise ChatInputError(
                    "unknown_type",
                    f"Unknown frame type {str(kind)[:40]!r}. Known types: {', '.join(HANDLERS)}.",
                )
            await handler(self, frame, ref)
        except ChatInputError as exc:
            await self.send_error(exc, ref)
        except Exception:
            log.exception("websocket frame failed for user %s", self.user.pk)
            await self.send_error(
                ChatInputError("server_error", "Something went wrong on the server. Try again."),
                ref,
            )

    def parse(self, text_data, bytes_data) -> dict:
        if text_data is None:
            raise ChatInputError("bad_frame", "Frames must be JSON text, not binary.")
        max_bytes = limits()["max_frame_bytes"]
        if len(text_data) > max_bytes or len(text_data.encode()) > max_bytes:
            raise ChatInputError("too_large", f"The frame is larger than {max_bytes} bytes.")
        try:
            frame = json.loads(text_data)
        except ValueError:
            raise ChatInputError("bad_json", "The frame is not valid JSON.") from None
        if not isinstance(frame, dict):
            raise ChatInputError("bad_frame", "A frame must be a JSON object with a 'type'.")
        return frame

    async def on_ping(self, frame, ref):
        await self.send_frame({"type": "pong", "ref": ref})

    async def on_subscribe(self, frame, ref):
        conversation_id = validate_id(frame.get("conversation_id"), "conversation_id")
        await db(selectors.conversation_get)(user=self.user, conversation_id=conversation_id)
        await self.watch(conversation_id)
        snapshot = await db(selectors.conversation_snapshot)(
            user=self.user, conversation_id=conversation_id
        )
        for message in snapshot["messages"]:
            self.remember(message)
        await self.send_frame({"type": "conversation", "ref": ref, **snapshot})

    async def on_unsubscribe(self, frame, ref):
        await self.watch(None)
        await self.send_frame({"type": "unsubscribed", "ref": ref})

    async def on_send(self, frame, ref):
        conversation_id = frame.get("conversation_id")
        if conversation_id is not None:
            validate_id(conversation_id, "conversation_id")
        parent_id = frame.get("parent_id")
        if parent_id is not None:
            validate_id(parent_id, "parent_id")
        await self.start_turn(
            ref,
            services.message_send,
            text=required(frame, "text"),
            conversation_id=conversation_id,
            parent_id=parent_id,
            params=frame.get("params"),
            conversation_options=frame.get("conversation"),
        )

    async def on_regenerate(self, frame, ref):
        message_id = validate_id(frame.get("message_id"), "message_id")
        await self.start_turn(
            ref, services.message_regenerate, message_id=message_id, params=frame.get("params")
        )

    async def on_edit(self, frame, ref):
        message_id = validate_id(frame.get("message_id"), "message_id")
        await self.start_turn(
            ref,
            services.message_edit,
            message_id=message_id,
            text=required(frame, "text"),
            params=frame.get("params"),
        )

    async def on_stop(self, frame, ref):
        message_id = validate_id(frame.get("message_id"), "message_id")
        message = await db(services.message_stop)(user=self.user, message_id=message_id)
        await self.send_frame(
            {"type": "stopping", "ref": ref, "message_id": message.pk, "status": message.status}
        )

    async def on_feedback(self, frame, ref):
        message_id = validate_id(frame.get("message_id"), "message_id")
        feedback = await db(services.feedback_submit)(
            user=self.user,
            message_id=message_id,
            rating=required(frame, "rating"),
            reason=frame.get("reason") or "",
            comment=frame.get("comment") or "",
            corrected_reply=frame.get("corrected_reply") or "",
        )
        await self.send_frame(
            {
                "type": "feedback_saved",
                "ref": ref,
                "message_id": message_id,
                "feedback": selectors.feedback_data(feedback),
            }
        )

    # --- helpers ----------------------------------------------------------------------------

    async def watch(self, conversation_id: int | None) -> None:
        """Join a conversation's group (leaving the previous one) before any row is read."""
        if conversation_id == self.conversation_id:
            return
        if self.conversation_id is not None:
            await self.channel_layer.group_discard(
                group_name(self.conversation_id), self.channel_name
            )
        self.conversation_id = conversation_id
        self.streams = {}
        if conversation_id is not None:
            await self.channel_layer.group_add(group_name(conversation_id), self.channel_name)

    def remember(self, message: dict) -> None:
        if message["role"] == "assistant":
            self.streams[message["id"]] = StreamedText(message["last_seq"], message["content"])

    async def start_turn(self, ref, service, **fields) -> None:
        """Run a turn service (send, regenerate, edit) and tell the client what it queued."""
        turn = await db(service)(user=self.user, **fields)
        turnlog.bind(turn.assistant_message.pk)
        await self.watch(turn.conversation.pk)
        # Read after joining: the worker may already have streamed into the reply.
        reply = await db(selectors.message_snapshot)(
            user=self.user, message_id=turn.assistant_message.pk
        )
        self.remember(reply)
        await self.send_frame(
            {
                "type": "accepted",
                "ref": ref,
                "conversation": selectors.conversation_meta(turn.conversation),
                "created": turn.created_conversation,
                "user_message": (
                    selectors.message_data(turn.user_message) if turn.user_message else None
                ),
                "message": reply,
                "position": turn.position,
            }
        )

    async def adopt(self, message_id: int) -> dict | None:
        """Start following a reply this socket has no state for (a reply started from another
        tab, or a gap in the sequence): resend it whole from its row. None when it is not in
        the watched conversation (a late event from a group this socket just left)."""
        try:
            message = await db(selectors.message_snapshot)(user=self.user, message_id=message_id)
        except ChatInputError:
            return None
        if message["conversation_id"] != self.conversation_id:
            return None
        self.remember(message)
        await self.send_frame({"type": "message", "message": message})
        return message

    async def send_frame(self, frame: dict) -> None:
        if frame.get("ref", 0) is None:
            del frame["ref"]
        await self.send(text_data=json.dumps(frame))

    async def send_error(self, exc: ChatInputError, ref) -> None:
        frame = {"type": "error", "code": exc.code, "detail": exc.detail, **exc.extra}
        if ref is not None:
            frame["ref"] = ref
        await self.send(text_data=json.dumps(frame))

    # --- channel-layer events from the worker (webchat.chat.replies) ------------------------

    async def chat_delta(self, event):
        message_id, seq = event["message_id"], event["seq"]
        state = self.streams.get(message_id)
        if state is None:
            await self.adopt(message_id)
            return
        verdict = state.apply(seq, event["text"])
        if verdict == GAP:
            await self.adopt(message_id)  # the row holds everything up to at least seq
            return
        if verdict != APPLIED:
            return  # already in the snapshot this client has
        await self.send_frame(
            {
                "type": "delta",
                "message_id": message_id,
                "seq": seq,
                "text": event["text"],
                "html": render_markdown(state.text),
            }
        )

    async def chat_started(self, event):
        if event["message_id"] in self.streams or await self.adopt(event["message_id"]):
            await self.send_frame(
                {
                    "type": "started",
                    "message_id": event["message_id"],
                    "model_version": event.get("model_version"),
                }
            )

    async def chat_queue(self, event):
        if event["message_id"] in self.streams or await self.adopt(event["message_id"]):
            await self.send_frame(
                {"type": "queue", "message_id": event["message_id"], "position": event["position"]}
            )

    async def chat_done(self, event):
        message_id = event["message_id"]
        if message_id not in self.streams and not await self.adopt(message_id):
            return
        self.streams[message_id] = StreamedText(event["last_seq"], event["content"])
        await self.send_frame(
            {
                "type": "done",
                "message_id": message_id,
                "status": event["status"],
                "content": event["content"],
                "html": render_markdown(event["content"]),
                "last_seq": event["last_seq"],
                "error": event.get("error", ""),
                "usage": event.get("usage", {}),
            }
        )


def required(frame: dict, field: str):
    """A field the frame must carry (its value is checked by the service)."""
    if field not in frame:
        raise ChatInputError("missing_field", f"The field '{field}' is required.", field=field)
    return frame[field]


HANDLERS = {
    "ping": ChatConsumer.on_ping,
    "subscribe": ChatConsumer.on_subscribe,
    "unsubscribe": ChatConsumer.on_unsubscribe,
    "send": ChatConsumer.on_send,
    "regenerate": ChatConsumer.on_regenerate,
    "edit": ChatConsumer.on_edit,
    "stop": ChatConsumer.on_stop,
    "feedback": ChatConsumer.on_feedback,
}
