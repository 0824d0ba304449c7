"""Who is using the page and what they may do; how the web chat writes commands.

Nothing here imports Gradio: the rules are tested without a browser.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from adapters.web.sessions import Identity
from core.chat import Button, Chat, ChatCommand, Context, ResultRef, Takes, User, result_ref
from core.galleries import GLOBAL_COLLECTION

PLATFORM = "web"
WEB_COLLECTION = "web"
NOTHING_TO_REFINE = "Nothing to refine yet: drop a photo or search for something first."
REFINE_HINT = ('Type words after ">" to refine the last result, for example "> at night", "> but red" or '
               '"> -people" (or /refine at night); More like this and Not this under it search again with your taste.')
MAX_HISTORY = 200  # chat messages a tab keeps on the server


@dataclass(frozen=True)
class WebChat(Chat):
    """The one web gallery, ``web``, shared by everyone who uses the page (searched with ``global``)."""

    platform: str = PLATFORM
    id: str = WEB_COLLECTION
    private: bool = False

    @property
    def collection(self) -> str:
        return WEB_COLLECTION


WEB_CHAT = WebChat()


class WebStyle:
    """How the web chat writes commands: a photo is dropped or pasted into the message box."""

    front_end = PLATFORM

    def usage(self, command: ChatCommand) -> str:
        text = f"/{command.name} {command.usage}".rstrip()
        if command.takes is Takes.RESULT:
            return f"{text} (on the last result)"
        if command.takes is Takes.RESULT_WORDS:
            return f"{text} (on the last result), or > {command.usage}"
        if command.by_id:
            return f"{text} (with a photo attached), or /{command.name} #12"
        return f"{text} (with a photo attached)" if command.takes.photo else text

    def notes(self, *, private: bool) -> list[str]:
        return ["Attach a photo by dropping it on the message box, pasting it, or with the paperclip.",
                "A photo alone is matched; any other text is searched, like /find.",
                "Under a result, Next match and Top N page through it; More like this and Not this search "
                "again with your taste (or type /next, /top, /more, /not for the last result).",
                "A message starting with > refines the last result with your words: > at night, > but red, "
                "> -people.",
                "The Gallery tab browses, filters, adds and edits images."]

    def send_photo(self) -> str:
        return "drop or paste a photo"

    def how_to_add(self) -> str:
        return ("To add an image, attach a photo and type /add label | description, "
                "or use Add images in the Gallery tab.")

    def watch_note(self) -> str:
        return ""

    def refine_usage(self) -> str:
        return REFINE_HINT

    def not_a_result(self) -> str:
        return NOTHING_TO_REFINE


WEB_STYLE = WebStyle()


@dataclass(frozen=True)
class Access:
    """What the page's settings allow: who may add, who are bot admins."""

    users_configured: bool = False
    open_add: bool = False
    admin_ids: frozenset[str] = frozenset()
    add_requires_admin: bool = False


@dataclass
class Visitor:
    """One browser tab's session: kept server-side in Gradio's session state, never sent to the page.

    Who it is comes from the request's cookie on every event (:meth:`adopt`), never from the tab's
    ``session_hash``, which the client chose and which travels in URLs.
    """

    name: str | None = None  # signed in as this web user
    guest: str = field(default_factory=lambda: secrets.token_hex(6))  # authorship of a guest
    # The last result's buttons' data by kind ("next", "top", "like", "not"), for /next, /more, ...
    buttons: dict[str, str] = field(default_factory=dict)
    result: ResultRef | None = None  # the last result: what /similar, /refine and "> words" work on
    owner: str | None = None  # the browser this tab belongs to (Identity.owner), set by its first event
    rate_key: str | None = None  # what the rate limit counts for this visitor (Identity.rate_key)
    history: list[dict[str, Any]] = field(default_factory=list)  # the chat thread, as the server wrote it

    @classmethod
    def of(cls, who: Identity) -> Visitor:
        """A visitor for one request that owns no tab (no cookie, or someone else's tab)."""
        return cls(name=who.name, guest=who.guest, rate_key=who.rate_key, owner=who.owner)

    def adopt(self, who: Identity) -> Visitor:
        """The visitor a request on this tab acts as.

        The tab's own state when the request comes from the browser that owns it (or owned it
        before signing in or out); otherwise a fresh visitor, and the tab's state is left alone:
        a replayed or guessed ``session_hash`` reaches nobody's results, thread or account.
        """
        if who.token is None:
            return Visitor.of(who)
        if self.owner is None:
            self.owner = who.owner
        elif self.owner not in (who.owner, who.previous):
            return Visitor.of(who)
        self.owner = who.owner
        if self.name != who.name:  # signed in or out since the last event: the results were someone else's
            self.forget_results()
            if who.name is None:
                self.history = []
        self.name, self.guest, self.rate_key = who.name, who.guest, who.rate_key
        return self

    def remember(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add messages to the thread (the last MAX_HISTORY kept); returns the thread."""
        self.history = [*self.history, *messages][-MAX_HISTORY:]
        return list(self.history)

    def shown(self, buttons: tuple[Button, ...]) -> None:
        """A result with these buttons was shown: it is now the last result."""
        self.buttons = {b.data.partition(":")[0]: b.data for b in buttons}
        self.result = result_ref(self.buttons.values())

    def forget_results(self) -> None:
        """No last result any more (after signing in or out: the results were someone else's)."""
        self.buttons, self.result = {}, None

    @property
    def signed_in(self) -> bool:
        return self.name is not None

    @property
    def user(self) -> User:
        if self.name is not None:
            return User(PLATFORM, self.name, self.name)
        return User(PLATFORM, f"guest-{self.guest}", "guest")

    def context(self, access: Access) -> Context:
        async def is_chat_admin() -> bool:
            return self.is_admin(access)

        return Context(WEB_CHAT, self.user, is_chat_admin, help_style=WEB_STYLE, rate_key=self.rate_key)

    def is_admin(self, access: Access) -> bool:
        """A bot admin (``CLIPBOT_ADMIN_IDS`` names web users as ``web:<name>``); guests never are."""
        return self.signed_in and (self.user.key in access.admin_ids or self.user.id in access.admin_ids)

    def add_refusal(self, access: Access) -> str | None:
        """Why this visitor may not add images, or None when they may."""
        if access.add_requires_admin and not self.is_admin(access):
            return "Only admins can add images here."
        if self.signed_in or access.open_add:
            return None
        if access.users_configured:
            return "Sign in to add images (Sign in, at the top of the page)."
        return ("This page is read-only for visitors: the operator can allow adding with "
                "CLIPBOT_WEB_OPEN_ADD=true, or set up sign-in with CLIPBOT_WEB_USERS.")

    def change_refusal(self, access: Access, *, collection: str, added_by: str | None,
                       image_id: int | None = None) -> str | None:
        """Why this visitor may not edit or delete an image, or None when they may.

        The chat platforms' rule: its author or an admin; images of the shared ``global`` gallery
        are changed by bot admins only. Read-only guests change nothing.
        """
        if not self.signed_in and not access.open_add:
            return "Sign in to change images." if access.users_configured else "This page is read-only for visitors."
        if collection not in (WEB_COLLECTION, GLOBAL_COLLECTION):  # as if it did not exist: no id leaks
            return f"There is no image #{image_id}." if image_id is not None else "There is no such image."
        if self.is_admin(access):
            return None
        if collection == GLOBAL_COLLECTION:
            return "Only the bot's admins can change images of the shared gallery."
        if added_by != self.user.key:
            return "Only the person who added it or the bot's admins can change it."
        return None


def photo_command_hint(command: ChatCommand) -> str:
    """What to tell someone who typed a photo command without attaching a photo."""
    example = f"/{command.name} {command.usage}".rstrip()
    extra = " (for example /add cat | our cat Tom)" if command.takes is Takes.LABELLED_PHOTO else ""
    if command.by_id:
        extra = f", or type /{command.name} #12 for gallery image 12"
    return f"Attach a photo to {example}: drop it on the message box or paste it{extra}."
