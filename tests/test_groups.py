"""The service's group features over the real engine: chat switches, /forget, inline search."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.composition import build_service
from bot.settings import Settings
from core.chat.context import Chat, Context, User
from core.chat.service import ChatService
from core.chat.switches import ChatSettings
from core.galleries import GLOBAL_COLLECTION
from core.gallery.engine import Engine

GROUP = Chat("telegram", "-100", private=False)
OTHER = Chat("telegram", "-200", private=False)


def ctx(user: str = "1", chat: Chat = GROUP, *, admin: bool = False, name: str = "") -> Context:
    async def is_admin() -> bool:
        return admin

    return Context(chat, User("telegram", user, name or f"user {user}"), is_admin)


@pytest.fixture
def service(gallery: Engine, settings: Settings) -> ChatService:
    return build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)


@pytest.mark.parametrize(("command", "on", "off", "setting"), [
    ("watch", "on", "off", "watch"), ("inline", "on", "off", "inline"),
    ("results", "private", "here", "private_results"),
])
async def test_switches_are_for_admins_and_are_remembered(service: ChatService, command: str, on: str, off: str,
                                                          setting: str) -> None:
    switch = getattr(service, command)
    refused = await switch(ctx("1"), on)
    assert refused is not None and refused.kind == "error" and "admins" in refused.text
    assert await service.chat_settings(ctx("1")) == ChatSettings()
    done = await switch(ctx("2", admin=True), on)
    assert done is not None and done.kind == "info"
    assert getattr(await service.chat_settings(ctx("1")), setting) is True
    assert getattr(await service.chat_settings(ctx("1", OTHER)), setting) is False  # per chat
    shown = await switch(ctx("1"), "")  # anyone may ask
    assert shown is not None and shown.kind == "info"
    await switch(ctx("2", admin=True), off)
    assert getattr(await service.chat_settings(ctx("1")), setting) is False
    wrong = await switch(ctx("2", admin=True), "maybe")
    assert wrong is not None and wrong.text.startswith(f"Usage: /{command}")


async def test_watch_on_explains_what_telegram_groups_need(service: ChatService) -> None:
    reply = await service.watch(ctx(admin=True), "on")
    assert reply is not None and "privacy mode off" in reply.text and "90 days" in reply.text


async def test_switches_survive_a_new_service_on_the_same_gallery(service: ChatService, gallery: Engine,
                                                                  settings: Settings) -> None:
    await service.results(ctx(admin=True), "private")
    again = build_service(settings, gallery)  # another process, or after a restart
    assert (await again.chat_settings(ctx())).private_results


async def test_forget_removes_what_the_user_added_after_confirmation(service: ChatService, gallery: Engine,
                                                                     photos: dict[str, Path]) -> None:
    ann, bob = ctx("1", name="Ann"), ctx("2", name="Bob")
    shared = photos["flower"].read_bytes()
    await service.add(ann, photos["china"].read_bytes(), "china")
    await service.add(ann, shared, "flower")
    await service.add(ctx("1", OTHER), shared, "flower elsewhere")  # the same picture in another chat
    await service.add(bob, photos["motorcycle"].read_bytes(), "bike")
    found = await service.find(ann, "china")
    assert found is not None and found.buttons
    media = Path(gallery.picture_file(""))
    files_before = {p for p in media.rglob("*") if p.is_file()}

    ask = await service.forget(ann)
    assert ask is not None and [b.text for b in ask.buttons] == ["Yes, forget", "Cancel"]
    assert len(await gallery.list_images(GROUP.collection)) == 3  # nothing gone before the answer
    stranger = await service.press(bob, ask.buttons[0].data)
    assert stranger is not None and stranger.kind == "error" and "Only the person who asked" in stranger.text
    done = await service.press(ann, ask.buttons[0].data)
    assert done is not None and done.replaces
    assert done.text == "Forgot your 2 images, 0 repost records and 1 conversation in this chat."
    assert [r.label for r in await gallery.list_images(GROUP.collection)] == ["bike"]
    assert [r.label for r in await gallery.list_images(OTHER.collection)] == ["flower elsewhere"]
    files_after = {p for p in media.rglob("*") if p.is_file()}
    assert len(files_before - files_after) == 1  # china's file; the flower's stays for the other chat
    expired = await service.press(ann, found.buttons[-1].data)  # her conversation is gone too
    assert expired is not None and "expired" in expired.text
    again = await service.press(ann, ask.buttons[0].data)  # one answer per request
    assert again is not None and "expired" in again.text


async def test_forget_cancel_and_admins_forgetting_someone_who_left(service: ChatService, gallery: Engine,
                                                                    photos: dict[str, Path]) -> None:
    await service.add(ctx("1"), photos["china"].read_bytes(), "china")
    ask = await service.forget(ctx("1"))
    assert ask is not None
    cancelled = await service.press(ctx("1"), ask.buttons[1].data)
    assert cancelled is not None and cancelled.text == "Nothing was forgotten."
    assert len(await gallery.list_images(GROUP.collection)) == 1
    refused = await service.forget(ctx("2"), "1")
    assert refused is not None and refused.kind == "error" and "admins" in refused.text
    ask = await service.forget(ctx("2", admin=True), "1")
    assert ask is not None and ask.buttons and "user 1" not in ask.text  # named by id: we don't know them
    done = await service.press(ctx("2", admin=True), ask.buttons[0].data)
    assert done is not None and done.text.startswith("Forgot 1's 1 image")
    assert await gallery.list_images(GROUP.collection) == []
    bad = await service.forget(ctx("2", admin=True), "@someone")
    assert bad is not None and bad.text.startswith("Usage: /forget")


async def test_inline_search_offers_only_pictures_the_platform_holds_from_allowed_galleries(
        service: ChatService, gallery: Engine, photos: dict[str, Path]) -> None:
    ann = User("telegram", "1", "Ann")
    rocket = next(r for r in await gallery.list_images(GLOBAL_COLLECTION) if r.label == "rocket")
    assert await service.inline_search(ann, "rocket", member_of=[]) == []  # no file id known yet
    await service.remember_file("telegram", rocket.id, "AgACfile-rocket")
    [hit] = await service.inline_search(ann, "rocket", member_of=[])
    assert (hit.image_id, hit.file_id, hit.title) == (rocket.id, "AgACfile-rocket", "rocket")
    assert await service.inline_search(User("discord", "1"), "rocket", member_of=[]) == []  # per platform
    # A chat's gallery joins only when the chat allows it and the user is a member.
    added = await gallery.add_image(photos["china"], collection=GROUP.collection, label="temple")
    await service.remember_file("telegram", added.record.id, "AgACfile-temple")
    assert all(h.image_id != added.record.id for h in await service.inline_search(ann, "temple", member_of=[]))
    assert all(h.image_id != added.record.id
               for h in await service.inline_search(ann, "temple", member_of=[GROUP.collection]))  # inline off
    await service.inline(ctx("9", admin=True), "on")
    hits = await service.inline_search(ann, "temple", member_of=[GROUP.collection])
    assert hits[0].image_id == added.record.id
    assert await service.inline_search(ann, "", member_of=[]) == []
    assert await service.inline_search(ann, '"unclosed', member_of=[]) == []  # no error pop-up for a typo


async def test_inline_candidates_are_recorded_only_where_inline_is_on(service: ChatService) -> None:
    assert await service.inline_candidates(User("telegram", "9")) == []
    await service.inline(ctx("9", admin=True), "on")
    assert await service.inline_candidates(User("telegram", "9")) == [GROUP.collection]
