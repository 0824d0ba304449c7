"""The fake Discord's payload builders: what the gateway and REST API send, shaped as Discord sends them.

* ``message``, ``reply``, ``interaction``, ``slash``, ``context_menu``, ``press``,
  ``modal_submit`` build what a user does, as the gateway dispatches it; ``reply`` builds a
  user's reply to a message the bot sent, with ``message_reference`` and the whole
  ``referenced_message`` and its ``components``. Interactions are tracked by token
  (``Interaction``) for the REST routes' rules (tests/fakes/discord/rest.py).
* ``guild()`` is the guild object ``GET /guilds/<GUILD_ID>`` answers, carrying ``premium_tier``,
  so discord.py's ``Guild.filesize_limit`` agrees with ``upload_limit``; interactions carry
  ``attachment_size_limit`` = ``upload_limit`` (discord.py's ``Interaction.filesize_limit``).
* ``message_content=False`` (the bot lacks the Message Content intent): server messages built here
  that neither mention the bot nor are its own arrive with empty ``content``, ``attachments``,
  ``embeds`` and ``components``, as Discord blanks them.
* Attachments of any ``content_type`` (``image/gif``, ``video/mp4``, ``video/webm``) are served at
  their ``url``; ``jump_url`` gives a message's link as Discord's client copies it.
* ``gif_link`` builds a Tenor link's message as Discord unfurls it (an embed of type ``gifv`` with
  a ``video`` and a ``thumbnail``), its media served at ``/embed-media/<id>/<name>`` under the
  host name asked for (``127.0.0.1``, or ``localhost`` for a host a bot must not fetch from);
  ``forward`` builds a forwarded message: ``message_reference`` of type 1 and the original in
  ``message_snapshots``, the forward's own content, attachments and embeds empty.
* The builders refuse what Discord's client never sends: pressing a button the message does not
  have, or one on an ephemeral message of another user (nobody else sees it), replying to an
  ephemeral message, a context menu that is not registered (or only for a server, used in DMs),
  submitting a form that was not opened or with values its text inputs would not accept.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from tests.fakes.discord.rules import TEXT_INPUT_LIMIT

APP_ID = "800"
BOT = {"id": "900", "username": "clipbot", "discriminator": "0", "global_name": "clipbot", "avatar": None,
       "bot": True}
GUILD_ID = "500"
CHANNEL_ID = "600"
TIMESTAMP = "2026-11-26T12:00:00.000000+00:00"


def user(uid: str, name: str) -> dict[str, Any]:
    return {"id": uid, "username": name, "discriminator": "0", "global_name": name, "avatar": None}


@dataclass
class Interaction:
    """An interaction the fake built, as Discord tracks it: how it was answered, and its messages."""

    payload: dict[str, Any]
    callback: int | None = None  # the callback type it was answered with
    original: str | None = None  # its original response (for types 6 and 7: the message the button is on)
    loading: bool = False  # the original is a deferred "thinking" message no follow-up has filled yet

    @property
    def channel_id(self) -> str:
        return str(self.payload["channel_id"])


class PayloadBuilders:
    """Builds what users do, as Discord sends it, and keeps what it built (mixed into ``FakeDiscord``)."""

    attachments: dict[str, bytes]
    embed_files: dict[str, tuple[bytes, str]]  # id -> (bytes, content type), served at /embed-media/
    port: int
    premium_tier: int
    upload_limit: int
    message_content: bool
    messages: dict[str, dict[str, Any]]
    interactions: dict[str, Interaction]
    commands: dict[str, list[dict[str, Any]]]
    modals: list[dict[str, Any]]
    users: dict[str, dict[str, Any]]
    dm_channels: dict[str, str]
    ephemeral_to: dict[str, str]
    _ids: itertools.count[int]

    def next_id(self) -> str:
        return str(next(self._ids))

    def attachment(self, data: bytes, filename: str, content_type: str | None, size: int | None = None,
                   width: int | None = 640) -> dict[str, Any]:
        att_id = self.next_id()
        self.attachments[att_id] = data
        url = f"http://127.0.0.1:{self.port}/attachments/{att_id}/{filename}"
        payload = {"id": att_id, "filename": filename, "size": size if size is not None else len(data), "url": url,
                   "proxy_url": url, "width": width, "height": 427 if width else None}
        if content_type:
            payload["content_type"] = content_type
        return payload

    def embed_media(self, data: bytes, name: str, content_type: str, *, host: str = "127.0.0.1") -> str:
        """Serve ``data`` as an embed's media (Tenor's CDN, say); its URL under ``host``."""
        media_id = self.next_id()
        self.embed_files[media_id] = (data, content_type)
        return f"http://{host}:{self.port}/embed-media/{media_id}/{name}"

    def gif_link(self, author: dict[str, Any], video: bytes, thumbnail: bytes, *, host: str = "127.0.0.1",
                 **kw: Any) -> dict[str, Any]:
        """A message that is a Tenor link, with the ``gifv`` embed Discord makes of it: the
        animation as an MP4 (``video``) and a still PNG (``thumbnail``), as Tenor serves them."""
        slug = f"cat-{self.next_id()}"
        video_url = self.embed_media(video, f"{slug}.mp4", "video/mp4", host=host)
        still_url = self.embed_media(thumbnail, f"{slug}.png", "image/png", host=host)
        link = f"https://tenor.com/view/{slug}"
        embed = {"type": "gifv", "url": link, "provider": {"name": "Tenor", "url": "https://tenor.co"},
                 "thumbnail": {"url": still_url, "proxy_url": still_url, "width": 498, "height": 280},
                 "video": {"url": video_url, "proxy_url": video_url, "width": 498, "height": 280}}
        return self.message(author, content=link, embeds=[embed], **kw)

    def forward(self, author: dict[str, Any], original: dict[str, Any] | str, **kw: Any) -> dict[str, Any]:
        """``author`` forwarding a message to the channel: Discord sends the original's content,
        attachments and embeds in a snapshot, and nothing of the forward's own."""
        target = self.messages[original if isinstance(original, str) else original["id"]]
        snapshot = {key: target[key] for key in ("type", "content", "embeds", "attachments", "timestamp",
                                                 "edited_timestamp", "flags", "mentions", "mention_roles",
                                                 "components")}
        message = self.message(author, snapshots=[{"message": snapshot}], **kw)
        message["message_reference"] = {"type": 1, "message_id": target["id"], "channel_id": target["channel_id"],
                                        **({"guild_id": GUILD_ID} if "guild_id" in target else {})}
        return message

    def message(self, author: dict[str, Any], *, content: str = "", attachments: list[dict[str, Any]] | None = None,
                guild: bool = True, mentions: list[dict[str, Any]] | None = None,
                referenced: dict[str, Any] | None = None, embeds: list[dict[str, Any]] | None = None,
                snapshots: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A user's message, as the gateway sends it (blanked without the Message Content intent
        where Discord blanks it: a server message that does not mention the bot)."""
        self.users.setdefault(author["id"], author)
        if guild and not self.message_content and author["id"] != BOT["id"] and \
                not any(m["id"] == BOT["id"] for m in mentions or []):
            content, attachments, embeds, snapshots = "", [], [], []
        payload: dict[str, Any] = {
            "id": self.next_id(), "channel_id": CHANNEL_ID if guild else f"dm{author['id']}", "author": author,
            "content": content, "timestamp": TIMESTAMP, "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": mentions or [], "mention_roles": [],
            "attachments": attachments or [], "embeds": embeds or [], "pinned": False, "type": 19 if referenced else 0,
            "flags": 0, "components": [],
        }
        if snapshots:
            payload["message_snapshots"] = snapshots
        if guild:
            payload["guild_id"] = GUILD_ID
            payload["member"] = {"roles": [], "joined_at": TIMESTAMP, "deaf": False, "mute": False, "flags": 0}
        else:
            payload["channel_id"] = self.dm_channels.setdefault(author["id"], "601")
        if referenced is not None:
            payload["referenced_message"] = referenced
            payload["message_reference"] = {"type": 0, "message_id": referenced["id"],
                                            "channel_id": payload["channel_id"],
                                            **({"guild_id": GUILD_ID} if guild else {})}
        self.messages[payload["id"]] = payload
        return payload

    def reply(self, author: dict[str, Any], to: dict[str, Any] | str, *, content: str = "",
              attachments: list[dict[str, Any]] | None = None, ping: bool = True) -> dict[str, Any]:
        """A user's reply to a message (one the bot sent: its id, or the message), as the gateway
        sends it: ``message_reference`` and the whole ``referenced_message``, components and all.
        ``ping``: the reply mentions the replied-to author (Discord's default)."""
        target = self.messages[to if isinstance(to, str) else to["id"]]
        if target["id"] in self.ephemeral_to:
            raise AssertionError(f"message {target['id']} is ephemeral: Discord offers no reply to it")
        guild = target["channel_id"] == CHANNEL_ID
        referenced = {k: v for k, v in target.items() if k != "referenced_message"}  # one level, as Discord
        return self.message(author, content=content, attachments=attachments, guild=guild,
                            mentions=[target["author"]] if ping else [], referenced=referenced)

    def interaction(self, author: dict[str, Any], *, kind: int = 2, data: dict[str, Any], guild: bool = True,
                    permissions: str = "0", message: dict[str, Any] | None = None,
                    channel: str | None = None) -> dict[str, Any]:
        self.users.setdefault(author["id"], author)
        payload: dict[str, Any] = {
            "id": self.next_id(), "application_id": APP_ID, "type": kind, "token": f"tok{self.next_id()}",
            "version": 1, "data": data, "locale": "en-US", "entitlements": [], "app_permissions": "2147483647",
            "attachment_size_limit": self.upload_limit,
        }
        if guild:
            payload.update(guild_id=GUILD_ID, channel_id=CHANNEL_ID, guild_locale="en-US", context=0,
                           authorizing_integration_owners={"0": GUILD_ID},
                           channel={"id": CHANNEL_ID, "type": 0, "guild_id": GUILD_ID, "name": "general",
                                    "position": 0, "permission_overwrites": [], "nsfw": False, "parent_id": None},
                           member={"user": author, "roles": [], "joined_at": TIMESTAMP, "deaf": False,
                                   "mute": False, "permissions": permissions, "flags": 0})
        else:
            dm = channel or self.dm_channels.setdefault(author["id"], "601")
            payload.update(channel_id=dm, user=author, context=1, authorizing_integration_owners={"1": author["id"]},
                           channel={"id": dm, "type": 1, "recipients": [author]})
        if message is not None:
            payload["message"] = message
        self.interactions[payload["token"]] = Interaction(payload)
        return payload

    def slash(self, author: dict[str, Any], name: str, options: list[dict[str, Any]] | None = None,
              attachments: dict[str, dict[str, Any]] | None = None, users: list[dict[str, Any]] | None = None,
              **kw: Any) -> dict[str, Any]:
        """A slash command; ``attachments`` and ``users`` are what its options point at (Discord
        sends them in ``resolved``)."""
        data: dict[str, Any] = {"id": f"cmd-{name}", "name": name, "type": 1, "options": options or []}
        if attachments:
            data.setdefault("resolved", {})["attachments"] = attachments
        if users:
            data.setdefault("resolved", {})["users"] = {u["id"]: u for u in users}
        return self.interaction(author, data=data, **kw)

    def registered(self, name: str, kind: int, *, guild: bool) -> dict[str, Any] | None:
        """The synced command of that name and type usable there (server commands only in the server)."""
        for path, commands in self.commands.items():
            if guild or "/guilds/" not in path:
                for command in commands:
                    if command["name"] == name and command.get("type", 1) == kind:
                        return command
        return None

    def context_menu(self, author: dict[str, Any], name: str, target: dict[str, Any] | str, *,
                     guild: bool = True, **kw: Any) -> dict[str, Any]:
        """A message context menu entry (Apps → ``name``) used on ``target`` (a message or its id)."""
        command = self.registered(name, 3, guild=guild)
        if command is None:
            raise AssertionError(f"Discord shows no message command {name!r} there; synced: {self.commands}")
        message = self.messages[target if isinstance(target, str) else target["id"]]
        data = {"id": command["id"], "name": name, "type": 3, "target_id": message["id"],
                "resolved": {"messages": {message["id"]: message}},
                **({"guild_id": command["guild_id"]} if command.get("guild_id") else {})}
        return self.interaction(author, data=data, guild=guild, **kw)

    def press(self, author: dict[str, Any], message: dict[str, Any] | str, custom_id: str, **kw: Any) -> dict[str, Any]:
        """A press on one of a message's buttons (the message as it stands now)."""
        current = self.messages[message if isinstance(message, str) else message["id"]]
        buttons = [c for row in current.get("components") or [] for c in row.get("components") or []]
        if not any(b.get("custom_id") == custom_id for b in buttons):
            raise AssertionError(f"message {current['id']} has no button {custom_id!r}: {buttons}")
        owner = self.ephemeral_to.get(current["id"])
        if owner is not None and owner != author["id"]:
            raise AssertionError(f"message {current['id']} is ephemeral: only user {owner} sees its buttons")
        guild = current["channel_id"] == CHANNEL_ID
        return self.interaction(author, kind=3, data={"custom_id": custom_id, "component_type": 2},
                                message=current, guild=guild, channel=None if guild else current["channel_id"], **kw)

    @staticmethod
    def jump_url(message: dict[str, Any]) -> str:
        """A message's link, as Discord's client copies it ("Copy Message Link")."""
        where = GUILD_ID if message["channel_id"] == CHANNEL_ID else "@me"
        return f"https://discord.com/channels/{where}/{message['channel_id']}/{message['id']}"

    def modal_submit(self, author: dict[str, Any], modal: dict[str, Any], values: dict[str, str],
                     **kw: Any) -> dict[str, Any]:
        """The submission of an opened modal, with ``values`` by text input custom_id; refuses a
        form Discord's client would not submit (a required input empty, a value outside its lengths)."""
        if modal not in self.modals:
            raise AssertionError(f"no such modal was opened: {modal}")
        inputs = [row.get("component") if row.get("type") == 18 else (row.get("components") or [{}])[0]
                  for row in modal["components"]]
        if set(values) - {i["custom_id"] for i in inputs}:
            raise AssertionError(f"the modal has no inputs {sorted(set(values) - {i['custom_id'] for i in inputs})}")
        rows = []
        for text_input in inputs:
            value = values.get(text_input["custom_id"], "")
            low = text_input.get("min_length") or (1 if text_input.get("required", True) else 0)
            high = text_input.get("max_length") or TEXT_INPUT_LIMIT
            if (value or text_input.get("required", True)) and not low <= len(value) <= high:
                raise AssertionError(f"Discord's client would not submit {value!r} for {text_input}")
            rows.append({"type": 1, "components": [{"type": 4, "custom_id": text_input["custom_id"], "value": value}]})
        return self.interaction(author, kind=5, data={"custom_id": modal["custom_id"], "components": rows}, **kw)

    def guild(self) -> dict[str, Any]:
        """The guild as Discord's REST API describes it (GET /guilds/<id>)."""
        everyone = {"id": GUILD_ID, "name": "@everyone", "permissions": "2248473465835073", "position": 0,
                    "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}
        return {
            "id": GUILD_ID, "name": "test server", "icon": None, "splash": None, "discovery_splash": None,
            "owner_id": "1", "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "roles": [everyone], "emojis": [],
            "features": [], "mfa_level": 0, "application_id": None, "system_channel_id": None,
            "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None, "description": None,
            "banner": None, "premium_tier": self.premium_tier, "premium_subscription_count": 0,
            "preferred_locale": "en-US", "public_updates_channel_id": None, "nsfw_level": 0, "stickers": [],
            "premium_progress_bar_enabled": False, "max_members": 500000, "approximate_member_count": 2,
            "approximate_presence_count": 1,
        }
