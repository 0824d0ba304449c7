"""The platform-neutral shapes of a chat request (its chat, user and arguments) and a reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from core.chat.catalogue import HelpStyle, Takes, image_ref
from core.chat.threads import ResultRef
from core.galleries import searchable


@dataclass(frozen=True)
class Chat:
    """Where a request came from; each chat has its own gallery."""

    platform: str
    id: str
    private: bool = True

    @property
    def collection(self) -> str:
        return f"{self.platform}:{self.id}"

    @property
    def searchable(self) -> tuple[str, ...]:
        """A chat sees its own gallery plus the operator's ``global`` one, never another chat's."""
        return searchable(self.collection)


@dataclass(frozen=True)
class User:
    platform: str
    id: str
    name: str = ""

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.id}"


async def _never_admin() -> bool:
    return False


@dataclass(frozen=True)
class Context:
    """One request's chat and user. ``is_chat_admin`` is asked only when a permission needs it.

    ``help_style`` is how the front end the request came from writes commands (``None``: as a
    text chat such as Telegram does).
    """

    chat: Chat
    user: User
    is_chat_admin: Callable[[], Awaitable[bool]] = field(default=_never_admin)
    help_style: HelpStyle | None = None
    # What the rate limit counts, where the front end knows better than the user's key (the web
    # counts guests by address: a guest can be anyone, as often as they like). None: the user's key.
    rate_key: str | None = None

    @property
    def limit_key(self) -> str:
        return self.rate_key or self.user.key


@dataclass(frozen=True)
class Button:
    text: str
    data: str  # opaque to adapters; short enough for Telegram's 64-byte callback data
    row: int = 0  # buttons of one row sit side by side, where a platform lays them out in rows


# A photo as a request carries it: its bytes, or how to download them. The service downloads only
# after the rate limit let the request through, so a flood costs no traffic.
Photo = bytes | Callable[[], Awaitable[bytes]]


async def photo_bytes(photo: Photo) -> bytes:
    return photo if isinstance(photo, bytes) else await photo()


ReplyKind = Literal["result", "info", "error", "busy", "rate_limited"]


@dataclass(frozen=True)
class Reply:
    """What the bot says: text, optionally with an image, its score and buttons."""

    text: str
    kind: ReplyKind = "info"
    image: bytes | None = None
    image_name: str | None = None
    score: float | None = None
    result_id: int | None = None
    buttons: tuple[Button, ...] = ()
    path: str | None = None  # the shown image's file: the operator's own where it has one (the console prints it)
    # An answer to a button that takes the place of the message the button was on ("Next match"),
    # rather than coming as a new message.
    replaces: bool = False


@dataclass(frozen=True)
class CommandInput:
    """A command's arguments, as the front end that received it parsed them."""

    words: str = ""
    photo: Photo | None = None
    label: str = ""
    description: str = ""
    image_id: int | None = None
    result: ResultRef | None = None  # the result a Takes.RESULT command was given

    @classmethod
    def from_text(cls, takes: Takes, text: str, photo: Photo | None = None) -> CommandInput:
        """Arguments written after a command in a text chat: ``red car``, ``label | description``, ``#12``."""
        text = text.strip()
        if takes is Takes.LABELLED_PHOTO:
            label, _, description = text.partition("|")
            return cls(photo=photo, label=label.strip(), description=description.strip())
        if takes is Takes.IMAGE_ID or (takes is Takes.PHOTO and photo is None and image_ref(text) is not None):
            return cls(image_id=image_ref(text))
        return cls(words=text if takes in (Takes.WORDS, Takes.RESULT_WORDS) else "", photo=photo)

    def require_photo(self) -> Photo:
        if self.photo is None:  # front ends ask for the photo before calling the service
            raise ValueError("a photo command was run without a photo")
        return self.photo
