"""An OpenAI-compatible HTTP API: POST /v1/chat/completions (SSE streaming or one JSON answer)
and GET /v1/models, authenticated with per-user API keys (settings page).

A completion goes through the same path as a browser chat turn: parsing.completion_request reads
the request, services.completion_create stores it and queues the reply (same limits, same queue,
same workers), then this view listens to the conversation's channel group like the websocket
consumer does: join first, then read the row, then follow the deltas by sequence number
(webchat.chat.deltas).
"""

import asyncio
import json
import logging
import time

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from webchat.accounts.services import api_key_authenticate
from webchat.api import parsing
from webchat.chat import jsoninput, selectors, services
from webchat.chat.deltas import GAP, STALE, StreamedText
from webchat.chat.models import FINAL_STATUSES, Message
from webchat.chat.replies import group_name
from webchat.chat.validation import ChatInputError

log = logging.getLogger(__name__)
db = database_sync_to_async

REPLY_TIMEOUT_S = 900  # the generation task's own hard limit is 960 s
POLL_S = 5.0  # with no event for this long, re-read the row (an event may have been dropped)
BROKEN = (Message.Status.FAILED, Message.Status.INTERRUPTED)  # answered as errors

# Our error codes as OpenAI-style HTTP statuses and error types.
STATUS = {
    "not_found": 404,
    "model_not_found": 404,
    "rate_limited": 429,
    "busy": 429,
    "no_model": 503,
    "inactive": 403,
}


def _error(status: int, message: str, code: str, param: str | None = None, headers=None):
    kind = {401: "authentication_error", 429: "rate_limit_error", 404: "not_found_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )
    response = JsonResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}, status=status
    )
    for k, v in (headers or {}).items():
        response[k] = v
    return response


def _input_error(exc: ChatInputError):
    headers = {}
    if exc.code == "rate_limited" and "retry_after" in exc.extra:
        headers["Retry-After"] = str(max(1, round(exc.extra.get("retry_after", 1))))
    return _error(STATUS.get(exc.code, 400), exc.detail, exc.code, exc.extra.get("field"), headers)


def _authenticate(request):
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return api_key_authenticate(raw_key=key.strip())


def _unauthorized():
    return _error(
        401,
        "Invalid or missing API key. Send 'Authorization: Bearer <key>' with a key created on "
        "the settings page.",
        "invalid_api_key",
    )


async def models(request):
    """GET /v1/models: the model versions a caller may name (the active one first)."""
    if request.method != "GET":
        return _error(405, "Use GET.", "method_not_allowed")
    if await db(_authenticate)(request) is None:
        return _unauthorized()
    versions = await db(selectors.models_available)()
    return JsonResponse(
        {
            "object": "list",
            "data": [
                {
                    "id": v["name"],
                    "object": "model",
                    "created": 0,
                    "owned_by": "webchat",
                    "status": v["status"],
                }
                for v in versions
            ],
        }
    )


@csrf_exempt
async def chat_completions(request):
    """POST /v1/chat/completions."""
    if request.method != "POST":
        return _error(405, "Use POST.", "method_not_allowed")
    user = await db(_authenticate)(request)
    if user is None:
        return _unauthorized()
    try:
        raw = request.body
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return _error(413, f"The request body is larger than {limit} bytes.", "too_large")
    try:
        body = jsoninput.loads(raw or b"{}")
        if not isinstance(body, dict):
            raise ChatInputError("bad_json", "The request body must be a JSON object.")
        completion = parsing.completion_request(body)
        turn = await db(services.completion_create)(
            user=user,
            turns=completion.turns,
            system_prompt=completion.system_prompt,
            params=completion.params,
            model_name=completion.model,
        )
    except ChatInputError as exc:
        return _input_error(exc)
    reply = Reply(user, turn.conversation.pk, turn.assistant_message.pk)
    await reply.join()
    model = completion.model or "default"
    if completion.stream:
        response = StreamingHttpResponse(
            reply.sse(model, completion.include_usage), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # let proxies pass events through at once
        return response
    try:
        async for _ in reply.deltas():
            pass
    except asyncio.CancelledError:
        await reply.cancel()
        raise
    if reply.status in BROKEN:
        return _error(502, f"The generation {reply.status}: {reply.error}", reply.status)
    return JsonResponse(reply.completion(model))


class Reply:
    """Follows one reply through the channel layer, with the row as the source of truth."""

    def __init__(self, user, conversation_id: int, message_id: int):
        self.user = user
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.layer = get_channel_layer()
        self.channel = None
        self.stream = StreamedText()
        self.status = Message.Status.QUEUED
        self.error = ""
        self.usage = {}
        self.model_version = None
        self.created = int(time.time())

    async def join(self) -> None:
        self.channel = await self.layer.new_channel("api.")
        await self.layer.group_add(group_name(self.conversation_id), self.channel)

    async def leave(self) -> None:
        if self.channel:
            await self.layer.group_discard(group_name(self.conversation_id), self.channel)
            self.channel = None

    async def cancel(self) -> None:
        """The caller went away: stop generating for nobody."""
        if self.status not in FINAL_STATUSES:
            try:
                await db(services.message_stop)(user=self.user, message_id=self.message_id)
            except Exception:
                log.exception("could not stop message %s", self.message_id)
        await self.leave()

    async def _read_row(self) -> str:
        """Catch up from the database; returns the new text beyond what was already given."""
        message = await db(Message.objects.select_related("model_version").get)(pk=self.message_id)
        new = self.stream.catch_up(message.last_seq, message.content)
        if message.status in FINAL_STATUSES:
            self.status, self.error = message.status, message.error
            self.usage = {
                "prompt_tokens": message.prompt_tokens,
                "completion_tokens": message.completion_tokens,
            }
            self.model_version = message.model_version.name if message.model_version else None
            self.max_tokens = (message.params or {}).get("max_new_tokens")
        return new

    async def deltas(self):
        """Yield text deltas until the reply ends."""
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        try:
            new = await self._read_row()  # after joining: nothing can fall between the two
            if new:
                yield new
            while self.status not in FINAL_STATUSES:
                if time.monotonic() > deadline:
                    await self.cancel()
                    self.status, self.error = "failed", "timed out waiting for the reply"
                    return
                try:
                    event = await asyncio.wait_for(self.layer.receive(self.channel), POLL_S)
                except TimeoutError:
                    new = await self._read_row()
                    if new:
                        yield new
                    continue
                if event.get("message_id") != self.message_id:
                    continue
                kind = event.get("type")
                if kind == "chat.started":
                    self.model_version = event.get("model_version")
                elif kind == "chat.delta":
                    verdict = self.stream.apply(event["seq"], event["text"])
                    if verdict == STALE:
                        continue
                    if verdict == GAP:
                        new = await self._read_row()  # the row has it all
                        if new:
                            yield new
                        continue
                    yield event["text"]
                elif kind == "chat.done":
                    new = await self._read_row()
                    if new:
                        yield new
        finally:
            await self.leave()

    def finish_reason(self) -> str:
        if self.status == Message.Status.DONE and self.usage.get("completion_tokens") == getattr(
            self, "max_tokens", None
        ):
            return "length"
        return "stop"

    def usage_data(self) -> dict:
        prompt = self.usage.get("prompt_tokens", 0)
        completion = self.usage.get("completion_tokens", 0)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def completion(self, model: str) -> dict:
        return {
            "id": f"chatcmpl-{self.message_id}",
            "object": "chat.completion",
            "created": self.created,
            "model": self.model_version or model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.stream.text},
                    "finish_reason": self.finish_reason(),
                }
            ],
            "usage": self.usage_data(),
        }

    def _chunk(self, model: str, delta: dict, finish_reason=None) -> str:
        chunk = {
            "id": f"chatcmpl-{self.message_id}",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_version or model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        return f"data: {json.dumps(chunk)}\n\n"

    async def sse(self, model: str, include_usage: bool):
        """The reply as server-sent events in OpenAI's chunk format, ending with [DONE]."""
        try:
            yield self._chunk(model, {"role": "assistant", "content": ""})
            async for text in self.deltas():
                yield self._chunk(model, {"content": text})
            if self.status in BROKEN:
                error = {
                    "message": f"The generation {self.status}: {self.error}",
                    "type": "server_error",
                    "code": self.status,
                }
                yield f"data: {json.dumps({'error': error})}\n\n"
            else:
                yield self._chunk(model, {}, self.finish_reason())
            if include_usage:
                usage = {
                    "id": f"chatcmpl-{self.message_id}",
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model_version or model,
                    "choices": [],
                    "usage": self.usage_data(),
                }
                yield f"data: {json.dumps(usage)}\n\n"
            yield "data: [DONE]\n\n"
        except asyncio.CancelledError:
            await self.cancel()
            raise
