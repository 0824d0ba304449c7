"""The page itself: a Gradio Blocks app with a Chat tab and a Gallery tab.

Every event handler is a coroutine, so Gradio runs it on the event loop serving the app, which
is the loop the engine lives in (see :mod:`adapters.web.server`); the model and the decoding run
on the engine's own threads and micro-batcher, as for every front end. A tab's session (its
chat thread, its last result and its buttons) lives in Gradio's server-side session state.

Everything a client sends is treated as hostile: who the visitor is comes from the request's
session cookie (``gr.Request``), never from the tab's ``session_hash``; the chat thread is the
server's own, never the one the page sends back; a file is opened only if this browser uploaded
it here (:class:`adapters.web.uploads.UploadLedger`); user text is escaped wherever it is shown.
Signing in is a request from the browser to :mod:`adapters.web.auth` (only an HTTP answer can
set a cookie), so the password never passes through Gradio's queue.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr

from adapters.web.chat import WebConversation, text_message
from adapters.web.gallery import ANY_COLOR, COLOR_CHOICES, GalleryView, details
from adapters.web.markup import escape_markdown
from adapters.web.session import Access, Visitor
from adapters.web.sessions import Identity
from adapters.web.uploads import UploadLedger
from adapters.web.users import WebUsers
from core.errors import ClipbotError
from core.text import plural

log = logging.getLogger(__name__)
T = TypeVar("T")
OOPS = "Something went wrong on the server; try again, and tell the operator if it keeps happening."
PLACEHOLDER = "Type words to search, drop or paste a photo to find its closest match, or /help"
CSS = """
#clipbot-chat .message.user img { max-height: 180px; width: auto; object-fit: contain; }
#clipbot-chat .message.bot img { max-height: 480px; width: auto; object-fit: contain; }
"""


@dataclass
class WebApp:
    """What the page's handlers need: the conversation, the gallery view, the users, the rules."""

    conversation: WebConversation
    gallery: GalleryView
    users: WebUsers
    access: Access
    identify: Callable[[str | None, dict[str, str]], Identity]  # who sent a request (see WebGuard.identify)
    uploads: UploadLedger

    def visitor(self, state: Visitor, request: gr.Request) -> Visitor:
        """Who this event acts as: the tab's state if this browser owns it, else a fresh visitor."""
        client = getattr(request, "client", None)
        who = self.identify(getattr(client, "host", None), dict(getattr(request, "headers", {}) or {}))
        return state.adopt(who)

    def own_files(self, visitor: Visitor, paths: Sequence[Any]) -> tuple[list[Path], int]:
        """The files among ``paths`` this visitor's browser uploaded here, and how many others were named."""
        owned = [self.uploads.owned(visitor.owner or "", str(p)) for p in paths]
        mine = [p for p in owned if p is not None]
        return mine, len(owned) - len(mine)


def intro(count: int | None, access: Access) -> str:
    """What the page is, how many images it searches (None: not counted yet), and how to start."""
    if access.users_configured:
        who = "Anyone here can search; sign in (below) to add and edit images."
    elif access.open_add:
        who = "Anyone here can search and add images."
    else:
        who = "This page searches the gallery; adding images is turned off for visitors."
    return (
        "# clipbot\n"
        "Image search for this photo library, with CLIP: send a photo and get the closest image in the "
        "gallery with its similarity score, or describe what you are looking for in words.\n\n"
        + (f"**The gallery holds {plural(count, 'image')}.** " if count is not None else "")
        + f"{who}\n\n"
        "**To start:** drop or paste a photo into the message box below and press Enter, or type words "
        "such as *red car* (add `color:red` to filter by colour). `/help` lists every command; the **Gallery** "
        "tab shows every image."
    )


def new_visitor() -> Visitor:
    return Visitor()


def who_text(visitor: Visitor, access: Access) -> str:
    if visitor.name is not None:
        admin = " (admin)" if visitor.is_admin(access) else ""
        return f"Signed in as **{escape_markdown(visitor.name)}**{admin}."
    return "Browsing as a guest." + (" Sign in to add images." if access.users_configured else "")


NOT_YOURS = ("That file was not uploaded from this page in this session; drop or paste the photo into "
             "the message box again.")
# Sign in and out from the browser, so the answer can set the session cookie; the returned values
# replace the Python handler's inputs: the password never reaches Gradio's queue.
SIGN_IN_JS = """async (name, password) => {
  let message = 'Could not reach the server; try again.';
  try {
    const r = await fetch('auth/sign-in', {method: 'POST', credentials: 'same-origin',
      headers: {'Content-Type': 'application/json'}, body: JSON.stringify({name: name, password: password})});
    message = (await r.json()).message;
  } catch (e) {}
  return [name, message];
}"""
SIGN_OUT_JS = """async () => {
  try { await fetch('auth/sign-out', {method: 'POST', credentials: 'same-origin'}); } catch (e) {}
  return [];
}"""


async def guarded(work: Awaitable[T], fallback: T) -> T:
    """A handler's work; an unexpected failure is logged and the page gets ``fallback``, no traceback."""
    try:
        return await work
    except ClipbotError as exc:  # not expected here (the service answers these), but readable
        log.warning("web request failed: %s", exc)
        return fallback
    except Exception:
        log.exception("web request failed")
        return fallback


def build_blocks(web: WebApp) -> gr.Blocks:
    """The Gradio app; mounted and served by :class:`adapters.web.server.WebPlatform`."""
    access = web.access
    demo = gr.Blocks(title="clipbot", analytics_enabled=False, delete_cache=(600, 3600))
    with demo:
        visitor = gr.State(new_visitor)  # called for each new session: every tab gets its own guest id
        header = gr.Markdown(intro(None, access), elem_id="clipbot-intro")
        who = gr.Markdown("Browsing as a guest.", elem_id="clipbot-who")
        with gr.Accordion("Sign in", open=False, visible=bool(web.users), elem_id="clipbot-signin") as account:
            with gr.Row():
                name = gr.Textbox(label="Name", max_lines=1, elem_id="clipbot-name")
                password = gr.Textbox(label="Password", type="password", max_lines=1, elem_id="clipbot-password")
            with gr.Row():
                sign_in = gr.Button("Sign in", variant="primary", elem_id="clipbot-sign-in")
                sign_out = gr.Button("Sign out", visible=False, elem_id="clipbot-sign-out")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chatbot = gr.Chatbot(
                    label="Chat", height=600, render_markdown=False, buttons=[], feedback_options=None,
                    group_consecutive_messages=False, elem_id="clipbot-chat",
                    placeholder="Your matches and search results appear here.",
                )
                box = gr.MultimodalTextbox(
                    placeholder=PLACEHOLDER, file_count="single", sources=["upload"], show_label=False,
                    elem_id="clipbot-box", max_plain_text_length=4000,
                )
            with gr.Tab("Gallery", id="gallery") as gallery_tab:
                with gr.Row():
                    words = gr.Textbox(label="Filter by words", max_lines=1, scale=3, elem_id="clipbot-filter")
                    # Only where the pictures' text is read and offered (CLIPBOT_OCR): else it filters nothing.
                    reading = gr.Textbox(label="Filter by the text in the picture", max_lines=1, scale=2,
                                         elem_id="clipbot-text-filter", visible=web.gallery.texts is not None)
                    color = gr.Dropdown(list(COLOR_CHOICES), value=ANY_COLOR, label="Colour", scale=1,
                                        elem_id="clipbot-color")
                summary = gr.Markdown(elem_id="clipbot-summary")
                pictures = gr.Gallery(label="Images", columns=5, height="auto", object_fit="cover",
                                      elem_id="clipbot-gallery", buttons=[])
                with gr.Row():
                    previous_page = gr.Button("\u2190 Previous page", size="sm", elem_id="clipbot-prev")
                    next_page = gr.Button("Next page \u2192", size="sm", elem_id="clipbot-next")
                page_no, shown_ids = gr.State(1), gr.State([])
                with gr.Accordion("Selected image", open=False, elem_id="clipbot-selected") as selected_box:
                    selected_info = gr.Markdown("Click an image above to edit or delete it.")
                    selected_id = gr.Number(label="Image id", precision=0, interactive=False, elem_id="clipbot-id")
                    new_label = gr.Textbox(label="Label", max_lines=1, elem_id="clipbot-edit-label")
                    new_description = gr.Textbox(label="Description", lines=2, elem_id="clipbot-edit-description")
                    with gr.Row():
                        save = gr.Button("Save label and description", elem_id="clipbot-save")
                        delete = gr.Button("Delete image", variant="stop", elem_id="clipbot-delete")
                    edit_status = gr.Markdown(elem_id="clipbot-edit-status")
                with gr.Accordion("Add images", open=True, elem_id="clipbot-add"):
                    files = gr.File(label="Images (several at once)", file_count="multiple", elem_id="clipbot-files")
                    add_label = gr.Textbox(label="Label (empty: each file's name)", max_lines=1,
                                           elem_id="clipbot-add-label")
                    add_description = gr.Textbox(label="Description (empty: a caption, where captions are on)",
                                                 lines=2, elem_id="clipbot-add-description")
                    add = gr.Button("Add to the gallery", variant="primary", elem_id="clipbot-add-button")
                    add_status = gr.Markdown(elem_id="clipbot-add-status")

        # -- header and sign-in ---------------------------------------------------------------
        async def recount_header() -> str:
            return intro(await guarded(web.gallery.count(), 0), access)

        async def load(state: Visitor, request: gr.Request) -> tuple[Any, ...]:
            v = web.visitor(state, request)
            return (await recount_header(), who_text(v, access),
                    gr.update(visible=v.name is None), gr.update(visible=v.name is not None),
                    gr.update(label="Account" if v.name else "Sign in"), state)

        async def signed_in(user: str, outcome: str, state: Visitor, request: gr.Request) -> tuple[Any, ...]:
            """After the browser's sign-in request: ``outcome`` is its answer, the cookie is what counts."""
            v = web.visitor(state, request)
            ok = v.name is not None
            message = who_text(v, access) if ok else escape_markdown(outcome or "Wrong name or password.")
            return (state, message, gr.update(value=""), gr.update(visible=not ok), gr.update(visible=ok),
                    gr.update(open=not ok, label="Account" if ok else "Sign in"), list(v.history))

        async def signed_out(state: Visitor, request: gr.Request) -> tuple[Any, ...]:
            v = web.visitor(state, request)
            return (state, who_text(v, access), gr.update(visible=True), gr.update(visible=False),
                    gr.update(label="Sign in"), list(v.history))

        def recount(event: Any) -> None:  # after anything that may add or delete: the header's count
            event.then(recount_header, None, header, show_progress="hidden", api_visibility="private")

        demo.load(load, [visitor], [header, who, sign_in, sign_out, account, visitor], show_progress="hidden",
                  api_visibility="private")
        signed = [visitor, who, password, sign_in, sign_out, account, chatbot]
        sign_in.click(signed_in, [name, password, visitor], signed, js=SIGN_IN_JS, api_visibility="private")
        password.submit(signed_in, [name, password, visitor], signed, js=SIGN_IN_JS, api_visibility="private")
        sign_out.click(signed_out, [visitor], [visitor, who, sign_in, sign_out, account, chatbot], js=SIGN_OUT_JS,
                       api_visibility="private")

        # -- chat -------------------------------------------------------------------------------
        async def send(message: dict[str, Any] | None, state: Visitor, request: gr.Request) -> tuple[Any, ...]:
            v = web.visitor(state, request)
            text = str((message or {}).get("text") or "") if isinstance(message, dict) else ""
            named = (message or {}).get("files") if isinstance(message, dict) else None
            files, foreign = web.own_files(v, named if isinstance(named, list) else [])
            if foreign:
                return v.remember([text_message(NOT_YOURS)]), gr.update(value=None), state
            if not text.strip() and not files:
                return list(v.history), gr.update(), state
            added = await guarded(web.conversation.submit(v, text, files), [text_message(OOPS)])
            return v.remember(added), gr.update(value=None), state

        async def option(state: Visitor, request: gr.Request, event: gr.SelectData) -> tuple[Any, ...]:
            v = web.visitor(state, request)
            added = await guarded(web.conversation.press(v, str(event.value)), [text_message(OOPS)])
            return v.remember(added), state

        recount(box.submit(send, [box, visitor], [chatbot, box, visitor], api_visibility="private"))
        chatbot.option_select(option, [visitor], [chatbot, visitor], api_visibility="private")

        # -- gallery ----------------------------------------------------------------------------
        async def show(text: str, family: str, in_text: str | None, page: int) -> tuple[Any, ...]:
            result = await web.gallery.page(text, family, page, in_text or "")
            many = result.pages > 1
            return (result.items, result.summary, result.page, result.ids,
                    gr.update(visible=many, interactive=result.page > 1),
                    gr.update(visible=many, interactive=result.page < result.pages))

        gallery_out = [pictures, summary, page_no, shown_ids, previous_page, next_page]

        async def first_page(text: str, family: str, in_text: str | None) -> tuple[Any, ...]:
            return await show(text, family, in_text, 1)

        async def earlier(text: str, family: str, in_text: str | None, page: int) -> tuple[Any, ...]:
            return await show(text, family, in_text, page - 1)

        async def later(text: str, family: str, in_text: str | None, page: int) -> tuple[Any, ...]:
            return await show(text, family, in_text, page + 1)

        filters = [words, color, reading]
        for trigger in (gallery_tab.select, words.submit, color.change, reading.submit):
            trigger(first_page, filters, gallery_out, api_visibility="private")
        previous_page.click(earlier, [*filters, page_no], gallery_out, api_visibility="private")
        next_page.click(later, [*filters, page_no], gallery_out, api_visibility="private")

        async def pick(ids: list[int], event: gr.SelectData) -> tuple[Any, ...]:
            index = event.index if isinstance(event.index, int) else -1
            if not 0 <= index < len(ids):
                return gr.update(), None, "", "", "", gr.update()
            try:
                record = await web.gallery.describe(ids[index])
                text = await web.gallery.text_of(record)
            except ClipbotError as exc:
                return escape_markdown(str(exc)), None, "", "", "", gr.update()
            return details(record, text), record.id, record.label, record.description, "", gr.update(open=True)

        pictures.select(pick, [shown_ids], [selected_info, selected_id, new_label, new_description, edit_status,
                                            selected_box], api_visibility="private")

        async def save_edit(state: Visitor, image_id: float | None, label: str, description: str, text: str,
                            family: str, in_text: str | None, page: int, request: gr.Request) -> tuple[Any, ...]:
            v = web.visitor(state, request)
            if image_id is None:
                return ("Click an image above first.", *await show(text, family, in_text, page))
            status = await web.gallery.edit(v, int(image_id), label, description)
            return (escape_markdown(status), *await show(text, family, in_text, page))

        async def delete_image(state: Visitor, image_id: float | None, text: str, family: str, in_text: str | None,
                               page: int, request: gr.Request) -> tuple[Any, ...]:
            v = web.visitor(state, request)
            if image_id is None:
                return ("Click an image above first.", None, gr.update(), gr.update(), gr.update(),
                        *await show(text, family, in_text, page))
            status = await web.gallery.delete(v, int(image_id))
            if status.startswith("Deleted"):  # nothing is selected any more
                cleared = (None, "Click an image above to edit or delete it.", "", "")
                return (escape_markdown(status), *cleared, *await show(text, family, in_text, page))
            return (escape_markdown(status), image_id, gr.update(), gr.update(), gr.update(),
                    *await show(text, family, in_text, page))

        save.click(save_edit, [visitor, selected_id, new_label, new_description, *filters, page_no],
                   [edit_status, *gallery_out], api_visibility="private")
        recount(delete.click(delete_image, [visitor, selected_id, *filters, page_no],
                     [edit_status, selected_id, selected_info, new_label, new_description, *gallery_out],
                     api_visibility="private"))

        async def add_files(state: Visitor, paths: list[str] | None, label: str, description: str, text: str,
                            family: str, in_text: str | None, request: gr.Request,
                            progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
            def report(done: int, total: int, what: str) -> None:
                progress((done, total), desc=what, unit="images")

            v = web.visitor(state, request)
            files, foreign = web.own_files(v, paths if isinstance(paths, list) else [])
            if foreign:
                return (escape_markdown(NOT_YOURS), gr.update(value=None), *await show(text, family, in_text, 1))
            status = await guarded(web.gallery.add(v, files, label, description, report), OOPS)
            ok = status.startswith("Added") and not status.startswith("Added 0 ")
            return (escape_markdown(status), gr.update(value=None) if ok else gr.update(),
                    *await show(text, family, in_text, 1))

        recount(add.click(add_files, [visitor, files, add_label, add_description, *filters],
                  [add_status, files, *gallery_out], api_visibility="private"))
    return demo
