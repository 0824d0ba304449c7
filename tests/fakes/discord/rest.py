"""The fake Discord's REST routes: what each endpoint answers, and the rules that hang on state.

* Command sync (``PUT .../commands``), once its body passes tests/fakes/discord/rules.py: the
  answer carries ``description: ""`` for context menus and ``guild_id`` for guild commands, as
  Discord's does; ``commands`` keeps what was synced.
* Interactions built by the fake (``interaction``, ``slash``, ``context_menu``, ``press``,
  ``modal_submit``) are tracked by token, as Discord tracks them: a second callback → 400 40060
  "Interaction has already been acknowledged."; a callback type the interaction cannot take
  (6/7 only for buttons and forms opened from one, 9 not for a form's submission) → 400;
  a modal (type 9) outside the rules → 400. Follow-ups and edits before the interaction was
  acknowledged → 404 10015 "Unknown Webhook"; the first follow-up after a deferred "thinking"
  (type 5) edits that message instead of making a new one, keeping its ephemeral state
  (Discord's documented backwards compatibility). Interactions whose token the fake did not make
  are answered leniently, as before.
* Messages: every message the fake makes or builds is kept in ``messages`` (edits applied), so
  ``GET /channels/<c>/messages/<id>`` answers it (404 10008 "Unknown Message" otherwise) and a
  reply (``message_reference``) to a message it does not know in that channel → 400 Invalid Form
  Body (``MESSAGE_REFERENCE_UNKNOWN_MESSAGE``). A created reply answers with ``type`` 19,
  ``message_reference`` and ``referenced_message``.
* Ephemeral messages (flags 64, from an interaction's response or follow-up) belong to the user
  of that interaction: ``GET /channels/<c>/messages/<id>`` answers 404 10008 for one, and a
  reply to one → 400 ``MESSAGE_REFERENCE_UNKNOWN_MESSAGE``, as Discord keeps them out of channels.
* Direct messages: ``POST /users/@me/channels`` with ``recipient_id`` opens (or returns) the DM
  channel with a user the fake has seen (400 50033 "Invalid Recipient(s)" otherwise); messages
  there to a user in ``dms_closed`` → 403 ``{"code": 50007, "message": "Cannot send messages to
  this user"}``. Messages to a channel the fake does not know → 404 10003 "Unknown Channel".
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.discord.payloads import (
    APP_ID,
    BOT,
    CHANNEL_ID,
    GUILD_ID,
    TIMESTAMP,
    Interaction,
    PayloadBuilders,
    user,
)
from tests.fakes.discord.rules import (
    CALLBACKS,
    EPHEMERAL,
    LOADING,
    command_errors,
    form_error,
    invalid_form_body,
    json_response,
    message_errors,
    modal_errors,
)


class RestRoutes(PayloadBuilders):
    """The REST API's side of ``FakeDiscord`` (mixed into it): each route's answer."""

    gateway_url: str
    recommended_shards: int
    max_concurrency: int
    dms_closed: set[str]

    def _answer(self, method: str, path: str, body: Any, files: dict[str, bytes], upload_bytes: int,
                upload_count: int) -> web.Response:
        if upload_bytes > self.upload_limit:
            return json_response({"code": 40005, "message": "Request entity too large"}, status=413)
        if method in ("POST", "PATCH") and (path.startswith("/webhooks/") or "/messages" in path):
            errors = message_errors(body, upload_count)
            if errors:
                return invalid_form_body(errors)
        if method == "GET" and path == f"/guilds/{GUILD_ID}":
            return json_response(self.guild())
        if method == "GET" and path == "/gateway":
            return json_response({"url": self.gateway_url})
        if method == "GET" and path == "/gateway/bot":
            return json_response({"url": self.gateway_url, "shards": self.recommended_shards,
                                  "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0,
                                                          "max_concurrency": self.max_concurrency}})
        if method == "GET" and path == "/users/@me":
            return json_response(BOT)
        if method == "GET" and path == "/oauth2/applications/@me":
            return json_response({
                "id": APP_ID, "name": "clipbot", "icon": None, "description": "", "bot_public": True,
                "bot_require_code_grant": False, "verify_key": "0" * 64, "owner": user("1", "owner"), "flags": 0,
                "summary": "", "team": None})
        if method == "POST" and path == "/users/@me/channels":
            return self._open_dm(body or {})
        if method == "PUT" and path.endswith("/commands"):
            return self._sync(path, body)
        if path.endswith("/callback"):
            return self._callback(path, body or {}, files, upload_count)
        if path.startswith("/webhooks/"):
            return self._webhook(method, path, body or {}, files)
        if path.startswith("/channels/") and "/messages" in path:
            return self._channel_message(method, path, body or {}, files)
        if method == "PATCH":
            return json_response(self._new_message(body or {}, files, CHANNEL_ID))
        if method == "DELETE":
            return web.Response(status=204)
        return json_response({"message": "404: Not Found", "code": 0}, status=404)

    def _open_dm(self, body: dict[str, Any]) -> web.Response:
        recipient = self.users.get(str(body.get("recipient_id")))
        if recipient is None or recipient.get("bot"):
            return json_response({"message": "Invalid Recipient(s)", "code": 50033}, status=400)
        channel = self.dm_channels.setdefault(recipient["id"], self.next_id())
        return json_response({"id": channel, "type": 1, "last_message_id": None, "flags": 0, "recipients": [recipient]})

    def _known_channel(self, channel: str) -> bool:
        return channel in (CHANNEL_ID, "601") or channel in self.dm_channels.values()

    @staticmethod
    def _user_of(interaction: Interaction) -> str:
        payload = interaction.payload
        return str((payload.get("member") or {}).get("user", payload.get("user", {})).get("id"))

    def _sync(self, path: str, body: Any) -> web.Response:
        errors = command_errors(body)
        if errors:
            return invalid_form_body(errors)
        guild = path.split("/guilds/")[1].split("/")[0] if "/guilds/" in path else None
        synced = [{**c, "id": self.next_id(), "application_id": APP_ID, "version": "1",
                   "description": c.get("description") or "", **({"guild_id": guild} if guild else {})}
                  for c in body]
        self.commands[path] = synced
        return json_response(synced)

    def _callback(self, path: str, body: dict[str, Any], files: dict[str, bytes], upload_count: int) -> web.Response:
        kind, data = body.get("type"), body.get("data")
        errors = modal_errors(data) if kind == 9 else message_errors(data, upload_count) if isinstance(data, dict) \
            else {}
        if errors:
            return invalid_form_body({"data": errors})
        interaction = self.interactions.get(path.split("/")[3])
        if interaction is not None:
            if interaction.callback is not None:
                return json_response({"message": "Interaction has already been acknowledged.", "code": 40060},
                                     status=400)
            allowed = set(CALLBACKS.get(interaction.payload["type"], ()))
            if interaction.payload["type"] == 5 and "message" in interaction.payload:
                allowed.add(7)  # a form opened from a button may update that button's message
            if kind not in allowed:
                return invalid_form_body({"type": form_error(
                    "INTERACTION_CALLBACK_TYPE_INVALID", f"Interaction callback type {kind} is not valid here")})
            interaction.callback = kind
        resource: dict[str, Any] = {"type": kind}
        channel = interaction.channel_id if interaction is not None else CHANNEL_ID
        component_message = (interaction.payload.get("message") or {}).get("id") if interaction is not None else None
        if kind in (4, 5):
            flags = (data or {}).get("flags", 0) | (LOADING if kind == 5 else 0)
            message = self._new_message({**(data or {}), "flags": flags}, files, channel)
            resource["message"] = message
            if flags & EPHEMERAL and interaction is not None:
                self.ephemeral_to[message["id"]] = self._user_of(interaction)
            if interaction is not None:
                interaction.original, interaction.loading = message["id"], kind == 5
        elif kind in (6, 7) and interaction is not None and component_message is not None:
            interaction.original = component_message
            if kind == 7:
                resource["message"] = self._edit(component_message, data or {}, files)
        elif kind == 7:
            resource["message"] = self._new_message(data or {}, files, channel)
        elif kind == 9 and isinstance(data, dict):
            self.modals.append(data)
        return json_response({"interaction": {"id": path.split("/")[2], "type": 2,
                                              "response_message_loading": kind == 5}, "resource": resource})

    def _webhook(self, method: str, path: str, body: dict[str, Any], files: dict[str, bytes]) -> web.Response:
        """Follow-ups (POST), and reading, editing or deleting an interaction's messages."""
        parts = path.strip("/").split("/")  # webhooks, app id, token[, messages, id]
        interaction = self.interactions.get(parts[2]) if len(parts) > 2 else None
        if interaction is None:  # a token this fake did not make: answered as a plain webhook
            if method == "DELETE":
                return web.Response(status=204)
            return json_response(self._new_message(body, files, CHANNEL_ID))
        if interaction.callback is None or interaction.callback == 9:
            return json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
        if len(parts) == 3 and method == "POST":
            if interaction.loading and interaction.original is not None:  # fills the "thinking" message
                interaction.loading = False
                flags = self.messages[interaction.original]["flags"] & ~LOADING
                return json_response(self._edit(interaction.original, {**body, "flags": flags}, files))
            message = self._new_message(body, files, interaction.channel_id)
            if message["flags"] & EPHEMERAL:
                self.ephemeral_to[message["id"]] = self._user_of(interaction)
            return json_response(message)
        target = interaction.original if len(parts) == 5 and parts[4] == "@original" else \
            parts[4] if len(parts) == 5 else None
        if target is None or target not in self.messages:
            return json_response({"message": "Unknown Message", "code": 10008}, status=404)
        if target == interaction.original:
            interaction.loading = False
        if method == "DELETE":
            del self.messages[target]
            return web.Response(status=204)
        if method == "GET":
            return json_response(self.messages[target])
        if method == "PATCH":
            return json_response(self._edit(target, body, files))
        return json_response({"message": "405: Method Not Allowed", "code": 0}, status=405)

    def _channel_message(self, method: str, path: str, body: dict[str, Any], files: dict[str, bytes]) -> web.Response:
        parts = path.strip("/").split("/")  # channels, id, messages[, id]
        channel = parts[1]
        if not self._known_channel(channel):
            return json_response({"message": "Unknown Channel", "code": 10003}, status=404)
        if method == "POST" and len(parts) == 3:
            closed = [u for u, c in self.dm_channels.items() if c == channel and u in self.dms_closed]
            if closed:
                return json_response({"message": "Cannot send messages to this user", "code": 50007}, status=403)
            reference = body.get("message_reference")
            referenced = None
            if reference and reference.get("message_id") is not None:
                referenced = self.messages.get(str(reference["message_id"]))
                if referenced is not None and referenced["id"] in self.ephemeral_to:
                    referenced = None  # not a channel's message: nobody can reply to it
                if (referenced is None or referenced["channel_id"] != channel) and \
                        reference.get("fail_if_not_exists", True):
                    return invalid_form_body({"message_reference": form_error(
                        "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")})
            return json_response(self._new_message(body, files, channel, referenced=referenced))
        message = self.messages.get(parts[3]) if len(parts) == 4 else None
        if message is None or message["channel_id"] != channel or message["id"] in self.ephemeral_to:
            return json_response({"message": "Unknown Message", "code": 10008}, status=404)
        if method == "GET":
            return json_response(message)
        if method == "PATCH":
            return json_response(self._edit(message["id"], body, files))
        if method == "DELETE":
            del self.messages[message["id"]]
            return web.Response(status=204)
        return json_response({"message": "405: Method Not Allowed", "code": 0}, status=405)

    def _uploaded(self, files: dict[str, bytes]) -> list[dict[str, Any]]:
        attachments = []
        for name, data in files.items():
            att_id = self.next_id()
            self.attachments[att_id] = data
            url = f"http://127.0.0.1:{self.port}/attachments/{att_id}/{name}"
            attachments.append({"id": att_id, "filename": name, "size": len(data), "url": url, "proxy_url": url})
        return attachments

    def _new_message(self, body: dict[str, Any], files: dict[str, bytes], channel_id: str, *,
                     referenced: dict[str, Any] | None = None) -> dict[str, Any]:
        message = {"id": self.next_id(), "channel_id": channel_id, "author": BOT, "content": body.get("content") or "",
                   "timestamp": TIMESTAMP, "edited_timestamp": None, "tts": False, "mention_everyone": False,
                   "mentions": [], "mention_roles": [], "attachments": self._uploaded(files),
                   "embeds": body.get("embeds") or [], "pinned": False, "type": 19 if referenced else 0,
                   "flags": body.get("flags", 0), "components": body.get("components") or []}
        if referenced is not None:
            message["message_reference"] = {"type": 0, "message_id": referenced["id"], "channel_id": channel_id}
            message["referenced_message"] = {k: v for k, v in referenced.items() if k != "referenced_message"}
        self.messages[message["id"]] = message
        return message

    def _edit(self, message_id: str, body: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        """A message edited as Discord edits one: the fields given replace the old ones; attachments
        listed by id stay, new uploads are added."""
        message = self.messages[message_id]
        for key in ("content", "embeds", "components", "flags"):
            if key in body:
                message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "attachments" in body:
            keep = {str(a.get("id")) for a in body["attachments"] or []}
            message["attachments"] = [a for a in message["attachments"] if a["id"] in keep]
        message["attachments"] = [*message["attachments"], *self._uploaded(files)]
        message["edited_timestamp"] = TIMESTAMP
        return message
