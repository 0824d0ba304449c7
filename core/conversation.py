"""The platform-neutral shapes of a chat request and a reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from core.galleries import searchable

if TYPE_CHECKING:
    from core.commands import ChatCommand


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


class HelpStyle(Protocol):
    """How one front end writes commands in its help and hints: ``/find <words>``, ``/match image``, ..."""

    front_end: str

    def usage(self, command: ChatCommand) -> str: ...

    def notes(self, *, private: bool) -> list[str]: ...

    def send_photo(self) -> str:
        """How a user hands this front end a photo, lower case: "send me a photo"."""
        ...

    def how_to_add(self) -> str:
        """One sentence telling how to add an image to the chat's gallery."""
        ...

    def watch_note(self) -> str:
        """What repost alerts need on this front end to see every image ("" when nothing)."""
        ...

    def refine_usage(self) -> str:
        """How to refine a result with words here, with examples (said when the words are missing)."""
        ...

    def not_a_result(self) -> str:
        """What to say when refining or /similar has no result of the bot's to work on."""
        ...


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
