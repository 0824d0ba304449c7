"""How each front end writes commands: the text chats' way (Telegram's), ``style_of`` and ``/help``."""

from __future__ import annotations

from core.chat.catalogue import ChatCommand, HelpStyle, commands_for
from core.chat.context import Context
from core.search.query import REFINE_USAGE

SEARCH_SYNTAX = (
    "Searching: cat + beach (both), cat -dog (cats, no dogs), \"red hat\" (those words in a label or "
    "description), #12 + night (image 12, at night), car color:red (red among its colours).",
    "Under a result, More like this and Not this search again with your taste.",
)


class ChatStyle:
    """How a text chat (Telegram) writes commands: ``/find <words>``, photo commands on a photo."""

    front_end = "telegram"

    def usage(self, command: ChatCommand) -> str:
        text = f"/{command.name} {command.usage}".rstrip()
        if command.takes.result:
            return f"{text} (as a reply to a result)"
        if command.by_id:
            return f"{text} (on a photo), or /{command.name} #12"
        return f"{text} (on a photo)" if command.takes.photo else text

    def notes(self, *, private: bool) -> list[str]:
        notes = ["\u201cOn a photo\u201d: as the photo's caption, or as a reply to it.",
                 "Reply words to a result (\u201cat night\u201d, \u201cbut red\u201d, \u201c-people\u201d) "
                 "to refine it."]
        if not private:
            notes.append("In groups, mention me in a photo's caption, reply /match to a photo, or use /find.")
        return notes

    def send_photo(self) -> str:
        return "send me a photo"

    def how_to_add(self) -> str:
        return ("To add an image, send a photo with the caption /add label | description "
                "(or reply /add label | description to a photo).")

    def watch_note(self) -> str:
        return ("In a Telegram group I see every photo only with privacy mode off (@BotFather, Bot Settings, "
                "Group Privacy) or as an admin; otherwise only those that mention me or reply to me.")

    def refine_usage(self) -> str:
        return REFINE_USAGE

    def not_a_result(self) -> str:
        return ("That message isn't one of my results. Reply to a result (a picture with a score under it) "
                "to refine it, or send a new search.")


CHAT_STYLE = ChatStyle()


def style_of(ctx: Context) -> HelpStyle:
    """How the front end a request came from writes commands (a text chat's way when it did not say)."""
    return ctx.help_style or CHAT_STYLE


def help_text(style: HelpStyle, *, private: bool) -> str:
    """Every command of the catalogue, one line each, written the way ``style`` writes them."""
    give = style.send_photo()
    lines = [
        f"{give[:1].upper()}{give[1:]} and I'll answer with the closest image in this chat's gallery and the "
        "shared one, with a similarity score.",
        *(f"{style.usage(c)} \u2014 {c.summary}" for c in commands_for(style.front_end) if c.name != "help"),
        *style.notes(private=private),
        *SEARCH_SYNTAX,
    ]
    return "\n".join(lines)
