"""The fake Discord's rules for request bodies: what Discord refuses, in Discord's words.

* Uploads (multipart message creation, interaction responses, follow-ups and edits): over
  ``upload_limit`` bytes in one request (all files together; default: the guild's limit for its
  ``premium_tier``, 10 MiB at tier 0, as for a bot in a server without boosts) → HTTP 413
  ``{"code": 40005, "message": "Request entity too large"}``. More than 10 files → 400 Invalid Form Body.
* Message bodies (``content``, ``embeds``, ``components``, wherever a message is created or edited,
  including an interaction callback's ``data``): content over 2000 characters; more than 10 embeds;
  an embed's title over 256, description over 4096, more than 25 fields, a field's name over 256 or
  value over 1024, footer text over 2048, author name over 256, or over 6000 characters in all
  embeds together; a button's label over 80 or custom_id over 100 → HTTP 400
  ``{"code": 50035, "message": "Invalid Form Body", "errors": {...}}`` with Discord's nested
  ``_errors`` (``BASE_TYPE_MAX_LENGTH`` and friends), which discord.py flattens into its message.
* Components: more than 5 action rows, more than 5 components in a row, or two components of one
  message with the same custom_id → 400 Invalid Form Body (``COMPONENT_CUSTOM_ID_DUPLICATED``).
* Command sync (``PUT .../commands``): a slash command's name not 1-32 lower-case letters, digits,
  ``-`` or ``_``, its description not 1-100 characters (options: the same rules); a context menu's
  (types 2, 3) name not 1-32 characters, or a description or options on one; two commands of one
  type with one name; more than 100 slash commands or 5 context menus of a type → 400.
* Modals (callback type 9): a title over 45, a custom_id over 100, no or over 5 rows, a text input
  without a label or one over 45, a placeholder over 100, lengths outside 0-4000 → 400.
* Interaction callbacks: the types each interaction may be answered with (``CALLBACKS``); the
  REST routes (tests/fakes/discord/rest.py) apply them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from aiohttp import web

MiB = 1024 * 1024
# Upload limits by a guild's premium tier, as Discord (and discord.py's Guild.filesize_limit) has them.
TIER_UPLOAD_LIMITS = {0: 10 * MiB, 1: 10 * MiB, 2: 50 * MiB, 3: 100 * MiB}
CONTENT_LIMIT = 2000
EMBEDS_LIMIT = 10
EMBED_TOTAL_LIMIT = 6000
FILES_LIMIT = 10
# (field, limit) checked on each embed: Discord's documented maxima.
EMBED_LIMITS = (("title", 256), ("description", 4096))
ROWS_LIMIT = 5  # action rows in a message or a modal
ROW_LIMIT = 5  # components in one action row
COMMAND_NAME_LIMIT = 32
SLASH_COMMANDS_LIMIT = 100
CONTEXT_MENUS_LIMIT = 5  # of each type (user, message)
MODAL_TITLE_LIMIT = 45
TEXT_INPUT_LABEL_LIMIT = 45
TEXT_INPUT_LIMIT = 4000
_SLASH_NAME = re.compile(r"[-_\w]{1,32}")
EPHEMERAL, LOADING = 64, 128  # message flags
# The callback types each interaction type may be answered with (APPLICATION_COMMAND,
# MESSAGE_COMPONENT, MODAL_SUBMIT): 6 and 7 update the message a component is on.
CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 5: {4, 5, 6}}


def json_response(data: Any, status: int = 200) -> web.Response:
    """``data`` as Discord answers JSON."""
    # discord.py parses a body only when Content-Type is exactly application/json (no charset).
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


def _too_long(limit: int) -> dict[str, Any]:
    return {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}]}


def form_error(code: str, message: str) -> dict[str, Any]:
    """One of Discord's nested form errors, as it stands under a field's ``_errors``."""
    return {"_errors": [{"code": code, "message": message}]}


def _length(value: Any, low: int, high: int) -> dict[str, Any] | None:
    """Discord's error for a string (or list) outside ``low``..``high`` in length; None when it fits."""
    size = len(value) if isinstance(value, (str, list)) else 0
    if value is None or size == 0:
        return form_error("BASE_TYPE_REQUIRED", "This field is required") if low > 0 else None
    if size > high:
        return _too_long(high)
    if size < low:
        return form_error("BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")
    return None


def invalid_form_body(errors: dict[str, Any]) -> web.Response:
    return json_response({"code": 50035, "errors": errors, "message": "Invalid Form Body"}, status=400)


def message_errors(body: Any, file_count: int) -> dict[str, Any]:
    """Discord's nested form errors for a message body (empty when Discord would accept it)."""
    errors: dict[str, Any] = {}
    if not isinstance(body, dict):
        return errors
    content = body.get("content")
    if isinstance(content, str) and len(content) > CONTENT_LIMIT:
        errors["content"] = _too_long(CONTENT_LIMIT)
    embeds = body.get("embeds") or []
    if len(embeds) > EMBEDS_LIMIT:
        errors["embeds"] = _too_long(EMBEDS_LIMIT)
    total = 0
    for n, embed in enumerate(embeds[:EMBEDS_LIMIT]):
        these: dict[str, Any] = {}
        for key, limit in EMBED_LIMITS:
            value = embed.get(key) or ""
            total += len(value)
            if len(value) > limit:
                these[key] = _too_long(limit)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            these["fields"] = _too_long(25)
        for m, f in enumerate(fields[:25]):
            total += len(f.get("name") or "") + len(f.get("value") or "")
            bad = {k: _too_long(limit) for k, limit in (("name", 256), ("value", 1024)) if len(f.get(k) or "") > limit}
            if bad:
                these.setdefault("fields", {})[str(m)] = bad
        for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
            value = (embed.get(key) or {}).get(sub) or ""
            total += len(value)
            if len(value) > limit:
                these[key] = {sub: _too_long(limit)}
        if these:
            errors.setdefault("embeds", {})[str(n)] = these
    if total > EMBED_TOTAL_LIMIT and "embeds" not in errors:
        errors["embeds"] = {"_errors": [{"code": "MAX_EMBED_SIZE_EXCEEDED",
                                         "message": f"Embed size exceeds maximum size of {EMBED_TOTAL_LIMIT}"}]}
    rows = body.get("components") or []
    if len(rows) > ROWS_LIMIT:
        errors["components"] = _too_long(ROWS_LIMIT)
    custom_ids: set[str] = set()
    for r, row in enumerate(rows[:ROWS_LIMIT]):
        children = row.get("components") or []
        row_errors: dict[str, Any] = {"components": _too_long(ROW_LIMIT)} if len(children) > ROW_LIMIT else {}
        for c, component in enumerate(children[:ROW_LIMIT]):
            bad = {k: _too_long(limit) for k, limit in (("label", 80), ("custom_id", 100))
                   if len(str(component.get(k) or "")) > limit}
            custom_id = component.get("custom_id")
            if custom_id is not None and custom_id in custom_ids:
                bad["custom_id"] = form_error("COMPONENT_CUSTOM_ID_DUPLICATED",
                                              "Component custom id cannot be duplicated")
            custom_ids.add(custom_id)
            if bad:
                row_errors.setdefault("components", {})[str(c)] = bad
        if row_errors:
            errors.setdefault("components", {})[str(r)] = row_errors
    if file_count > FILES_LIMIT:
        errors["files"] = _too_long(FILES_LIMIT)
    return errors


def modal_errors(data: Any) -> dict[str, Any]:
    """Discord's form errors for a modal (callback type 9's ``data``); empty when it would show it."""
    if not isinstance(data, dict):
        return {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}
    errors: dict[str, Any] = {}
    for key, high in (("title", MODAL_TITLE_LIMIT), ("custom_id", 100)):
        bad = _length(data.get(key), 1, high)
        if bad:
            errors[key] = bad
    rows = data.get("components") or []
    bad = _length(rows, 1, ROWS_LIMIT)
    if bad:
        errors["components"] = bad
    for r, row in enumerate(rows[:ROWS_LIMIT]):
        if row.get("type") == 1:  # an action row holding one text input, labelled by itself
            children = row.get("components") or []
            if len(children) != 1:
                errors.setdefault("components", {})[str(r)] = {"components": _length(children, 1, 1) or _too_long(1)}
                continue
            these = _text_input_errors(children[0], labelled=True)
            if these:
                errors.setdefault("components", {})[str(r)] = {"components": {"0": these}}
        elif row.get("type") == 18:  # a label component around one text input
            these = {}
            label = _length(row.get("label"), 1, TEXT_INPUT_LABEL_LIMIT)
            if label:
                these["label"] = label
            inner = _text_input_errors(row.get("component") or {}, labelled=False)
            if inner:
                these["component"] = inner
            if these:
                errors.setdefault("components", {})[str(r)] = these
        else:
            errors.setdefault("components", {})[str(r)] = {"type": form_error(
                "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (1, 18).")}
    return errors


def _text_input_errors(component: dict[str, Any], *, labelled: bool) -> dict[str, Any]:
    if component.get("type") != 4:
        return {"type": form_error("UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (4,).")}
    errors: dict[str, Any] = {}
    checks = [("custom_id", 1, 100), ("placeholder", 0, 100), ("value", 0, TEXT_INPUT_LIMIT)]
    if labelled:
        checks.append(("label", 1, TEXT_INPUT_LABEL_LIMIT))
    for key, low, high in checks:
        bad = _length(component.get(key), low, high)
        if bad:
            errors[key] = bad
    if component.get("style", 1) not in (1, 2):
        errors["style"] = form_error("UNION_TYPE_CHOICES", "Value of field \"style\" must be one of (1, 2).")
    for key, low in (("min_length", 0), ("max_length", 1)):
        value = component.get(key)
        if value is not None and not low <= value <= TEXT_INPUT_LIMIT:
            errors[key] = form_error("NUMBER_TYPE_MAX" if value > TEXT_INPUT_LIMIT else "NUMBER_TYPE_MIN",
                                 f"Int value should be between {low} and {TEXT_INPUT_LIMIT}.")
    return errors


def command_errors(commands: Any) -> dict[str, Any]:
    """Discord's form errors for a bulk overwrite of application commands (empty when accepted)."""
    if not isinstance(commands, list):
        return {"_errors": [{"code": "LIST_TYPE_CONVERT", "message": "Only iterables may be used in a ListType"}]}
    errors: dict[str, Any] = {}
    counts = Counter(c.get("type", 1) for c in commands)
    for kind, limit in ((1, SLASH_COMMANDS_LIMIT), (2, CONTEXT_MENUS_LIMIT), (3, CONTEXT_MENUS_LIMIT)):
        if counts[kind] > limit:
            errors["_errors"] = [{"code": "APPLICATION_COMMANDS_TOO_MANY", "message":
                                  f"Maximum number of application commands of type {kind} reached ({limit})"}]
    seen: set[tuple[int, str]] = set()
    for n, command in enumerate(commands):
        kind, name = command.get("type", 1), command.get("name")
        these = _slash_errors(command) if kind == 1 else {}
        if kind in (2, 3):
            bad = _length(name, 1, COMMAND_NAME_LIMIT)
            if bad:
                these["name"] = bad
            if command.get("description"):
                these["description"] = form_error("APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                                              "Context menu commands cannot have a description")
            if command.get("options"):
                these["options"] = form_error("APPLICATION_COMMAND_CONTEXT_MENU_OPTIONS",
                                          "Context menu commands cannot have options")
        if (kind, name) in seen:
            these["name"] = form_error("APPLICATION_COMMANDS_DUPLICATE_NAME",
                                       "Application command names must be unique")
        seen.add((kind, name))
        if these:
            errors[str(n)] = these
    return errors


def _slash_errors(command: dict[str, Any]) -> dict[str, Any]:
    """A slash command's (or an option's) name and description, and its options', recursively."""
    errors: dict[str, Any] = {}
    name = command.get("name")
    if not (isinstance(name, str) and _SLASH_NAME.fullmatch(name) and name == name.lower()):
        errors["name"] = form_error("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    bad = _length(command.get("description"), 1, 100)
    if bad:
        errors["description"] = bad
    for n, option in enumerate(command.get("options") or []):
        these = _slash_errors(option)
        if these:
            errors.setdefault("options", {})[str(n)] = these
    return errors
