"""The command catalogue: every entry is reachable, under every name, on every front end that claims it."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.console import ConsoleChat
from adapters.discord import DiscordPlatform
from adapters.discord.messages import menu_name
from adapters.telegram import TelegramPlatform
from bot.composition import build_service
from bot.settings import Settings
from core.chat.catalogue import CATALOGUE, ChatCommand, Takes, commands_for
from core.chat.context import CommandInput, Context, Reply
from core.chat.service import ChatService
from core.chat.styles import help_text
from core.gallery.engine import Engine
from tests.fakes.discord import APP_ID, BOT, GUILD_ID, FakeDiscord, user
from tests.fakes.telegram import FakeTelegram
from tests.test_discord import dispatch
from tests.test_telegram import ALICE, GROUP, TOKEN, command, photo


class SpyService(ChatService):
    """The real service, noting which catalogue command each request ran."""

    ran: list[str]

    async def execute(self, command: ChatCommand, ctx: Context, args: CommandInput) -> Reply | None:
        self.ran.append(command.name)
        return await super().execute(command, ctx, args)


def spy_service(settings: Settings, engine: Engine) -> SpyService:
    plain = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), engine)
    spy = SpyService(engine, config=plain.config, limiter=plain.limiter)
    spy.ran = []
    return spy


def every_name(front_end: str) -> list[tuple[str, ChatCommand]]:
    return [(name, c) for c in commands_for(front_end) for name in c.names]


def test_catalogue_names_are_unique_and_front_ends_known() -> None:
    names = [name for c in CATALOGUE for name in c.names]
    assert len(names) == len(set(names))
    assert all(c.front_ends <= {"telegram", "discord", "console", "web"} and c.front_ends for c in CATALOGUE)
    assert all(3 <= len(c.title) <= 100 for c in CATALOGUE)  # Telegram wants 3-256, Discord at most 100


def test_help_lists_every_command_but_itself() -> None:
    from adapters.console import ConsoleStyle
    from adapters.discord.messages import DISCORD_STYLE
    from core.chat.styles import CHAT_STYLE

    for style in (CHAT_STYLE, ConsoleStyle(), DISCORD_STYLE):
        text = help_text(style, private=True)
        for c in commands_for(style.front_end):
            assert (style.usage(c) in text) == (c.name != "help"), (style.front_end, c.name)
    assert "/add label | description (on a photo)" in help_text(CHAT_STYLE, private=True)
    assert "/add PATH | label | description" in help_text(ConsoleStyle(), private=True)
    assert "/add image label [description]" in help_text(DISCORD_STYLE, private=True)
    assert "In groups" in help_text(CHAT_STYLE, private=False)
    assert "In groups" not in help_text(CHAT_STYLE, private=True)


def test_text_arguments_are_parsed_per_kind() -> None:
    assert CommandInput.from_text(Takes.LABELLED_PHOTO, " cat | on a mat ").label == "cat"
    assert CommandInput.from_text(Takes.LABELLED_PHOTO, "cat | on | mat").description == "on | mat"
    assert CommandInput.from_text(Takes.IMAGE_ID, "#12").image_id == 12
    assert CommandInput.from_text(Takes.IMAGE_ID, "twelve").image_id is None
    assert CommandInput.from_text(Takes.WORDS, " red car ").words == "red car"
    assert CommandInput.from_text(Takes.NOTHING, "ignored").words == ""


async def test_every_command_is_reachable_on_the_console(gallery: Engine, settings: Settings,
                                                         photos: dict[str, Path]) -> None:
    service = spy_service(settings, gallery)
    out = io.StringIO()
    chat = ConsoleChat(service, out=out)
    await chat.handle("rocket")  # a result for /similar and /refine to work on
    lines: list[str] = []
    for name, cmd in every_name("console"):
        if cmd.takes is Takes.LABELLED_PHOTO:
            lines.append(f"/{name} {photos['flower']} | flower")
        elif cmd.takes.photo:
            lines.append(f"/{name} {photos['rocket']}")
        else:
            lines.append({Takes.WORDS: f"/{name} rocket", Takes.IMAGE_ID: f"/{name} 999",
                          Takes.RESULT_WORDS: f"/{name} at night"}.get(cmd.takes, f"/{name}"))
        if cmd.by_id:
            lines.append(f"/{name} #1")
        if cmd.takes is Takes.RESULT_WORDS:
            lines.append("> at night")  # a reply to the last result runs /refine too
        for line in lines:
            await chat.handle(line)
            assert service.ran[-1] == cmd.name, line
        lines.clear()
    assert "I don't know that command" not in out.getvalue()
    assert "Nothing to refine yet" not in out.getvalue()
    assert service.ran.count("refine") == 2 and service.ran.count("match") == 2


def test_the_console_and_the_web_write_every_kind_of_input() -> None:
    from adapters.console import ConsoleStyle
    from adapters.web.session import WebStyle

    for style in (ConsoleStyle(), WebStyle()):
        usages = {c.name: style.usage(c) for c in CATALOGUE}
        assert {c.takes for c in CATALOGUE} == set(Takes)  # every kind is tried below
        assert all(usage.startswith(f"/{name}") for name, usage in usages.items())
        assert "on the last result" in usages["similar"] and "> <words>" in usages["refine"]
        assert "/match #12" in usages["match"]
        notes = "\n".join(style.notes(private=True))
        assert "/more" in notes and "/not" in notes and "> " in notes


@pytest.fixture
async def telegram_spy(gallery: Engine, settings: Settings) -> AsyncIterator[tuple[FakeTelegram, SpyService]]:
    # Every command once in one group is over Telegram's 20 messages a minute: a roomier group here.
    fake = FakeTelegram(TOKEN, group_limit=60)
    await fake.start()
    service = spy_service(settings, gallery)
    platform = TelegramPlatform(service, token=TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url,
                                max_file_bytes=20 * 1024 * 1024, poll_timeout=1, group_messages_per_minute=60)
    await platform.start()
    yield fake, service
    await platform.stop()
    await fake.stop()


async def test_every_command_is_reachable_on_telegram(telegram_spy: tuple[FakeTelegram, SpyService],
                                                      photos: dict[str, Path]) -> None:
    fake, service = telegram_spy
    [menu] = fake.sent("setMyCommands")
    assert [c["command"] for c in menu.params["commands"]] == [c.name for c in commands_for("telegram")]
    original = {"message_id": 5, "date": int(time.time()), "chat": GROUP, "from": ALICE,
                "photo": photo(fake, "cat-photo", photos["chelsea"].read_bytes())}
    fake.push(command(GROUP, ALICE, "/find rocket"))  # a result, for the commands replied to one
    [result] = await fake.wait_for("sendPhoto")
    answered = 1
    for name, cmd in every_name("telegram"):
        args = {Takes.WORDS: " cat", Takes.IMAGE_ID: " 999", Takes.LABELLED_PHOTO: " cat | ginger",
                Takes.RESULT_WORDS: " at night"}.get(cmd.takes, "")
        extra: dict[str, Any] = ({"reply_to_message": original} if cmd.takes.photo
                                 else {"reply_to_message": result.result} if cmd.takes.result else {})
        fake.push(command(GROUP, ALICE, f"/{name}{args}", **extra))
        answered += 1
        await fake.wait_for("sendMessage", "sendPhoto", count=answered)
        assert service.ran[-1] == cmd.name, name
    fake.push(command(GROUP, ALICE, "/match #1"))  # a gallery image's number instead of a photo
    answered += 1
    await fake.wait_for("sendMessage", "sendPhoto", count=answered)
    assert service.ran[-1] == "match"
    # The same photo commands as a photo's caption.
    for cmd in (c for c in commands_for("telegram") if c.takes.photo):
        caption = f"/{cmd.name} kitten" if cmd.takes is Takes.LABELLED_PHOTO else f"/{cmd.name}"
        fake.push({"message": {"message_id": 900 + answered, "date": int(time.time()), "chat": GROUP,
                               "from": ALICE, "caption": caption,
                               "photo": photo(fake, f"cap-{cmd.name}", photos["chelsea"].read_bytes())}})
        answered += 1
        await fake.wait_for("sendMessage", "sendPhoto", count=answered)
        assert service.ran[-1] == cmd.name, caption


@pytest.fixture
async def discord_spy(gallery: Engine, settings: Settings) -> AsyncIterator[tuple[FakeDiscord, DiscordPlatform,
                                                                                   SpyService]]:
    fake = FakeDiscord()
    await fake.start()
    service = spy_service(settings, gallery)
    platform = DiscordPlatform(service, token="fake-discord-token", guild_ids=(int(GUILD_ID),),
                               api_base_url=fake.api_base, max_file_bytes=25 * 1024 * 1024)
    await platform.login()
    yield fake, platform, service
    await platform.stop()
    await fake.stop()


async def test_every_command_is_reachable_on_discord(discord_spy: tuple[FakeDiscord, DiscordPlatform, SpyService],
                                                     photos: dict[str, Path]) -> None:
    fake, platform, service = discord_spy
    [sync] = fake.sent("PUT", f"/applications/{APP_ID}/guilds/{GUILD_ID}/commands")
    # Commands on a result are message context menus (Apps > Similar images): Discord's slash
    # commands cannot point at a message.
    offered = commands_for("discord")
    assert [(c["type"], c["name"]) for c in sync.entries] == [
        *((1, c.name) for c in offered if not c.takes.result), *((3, menu_name(c)) for c in offered if c.takes.result)]
    alice = user("11", "alice")
    not_a_result = fake.message(BOT, content="hello")
    for n, cmd in enumerate(commands_for("discord"), start=1):
        if cmd.takes.result:  # on a message that is not a result: the service says so
            dispatch(platform, "interaction_create", fake.context_menu(alice, menu_name(cmd), not_a_result))
            await fake.wait_for("POST", f"/webhooks/{APP_ID}/", count=n)
            assert service.ran[-1] == cmd.name
            continue
        options: list[dict[str, Any]] = []
        resolved: dict[str, dict[str, Any]] = {}
        if cmd.takes.photo:
            att = fake.attachment(photos["chelsea"].read_bytes(), "cat.png", "image/png")
            options.append({"name": "image", "type": 11, "value": att["id"]})
            resolved[att["id"]] = att
        if cmd.takes is Takes.LABELLED_PHOTO:
            options.append({"name": "label", "type": 3, "value": "cat"})
        elif cmd.takes is Takes.WORDS:
            options.append({"name": "text", "type": 3, "value": "cat"})
        elif cmd.takes is Takes.IMAGE_ID:
            options.append({"name": "id", "type": 4, "value": 999})
        dispatch(platform, "interaction_create", fake.slash(alice, cmd.name, options, resolved))
        follow_ups = await fake.wait_for("POST", f"/webhooks/{APP_ID}/", count=n)
        assert service.ran[-1] == cmd.name
        if cmd.asker_only:
            assert follow_ups[-1].json["flags"] == 64  # type: ignore[index]  # only the asker sees /help


def test_each_front_end_says_how_to_refine_in_its_own_words() -> None:
    """The service words "refine this" and "that is not a result" the way the asking front end works."""
    from adapters.console.chat import ConsoleStyle
    from adapters.discord.messages import DiscordStyle
    from adapters.web.session import WebStyle
    from core.chat.styles import CHAT_STYLE

    telegram, discord_, console, web = CHAT_STYLE, DiscordStyle(), ConsoleStyle(), WebStyle()
    assert telegram.refine_usage().startswith("Reply to a result") and "Reply to a result" in telegram.not_a_result()
    assert "Apps > Refine with words" in discord_.refine_usage() and "Apps" in discord_.not_a_result()
    assert "/refine" in console.refine_usage() and "Reply" not in console.refine_usage() + console.not_a_result()
    assert '">"' in web.refine_usage() and "More like this" in web.refine_usage()
    assert "Reply" not in web.refine_usage() + web.not_a_result()
