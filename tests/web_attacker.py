"""An attacker's client for the web chat: Gradio's queue protocol spoken directly over httpx.

No browser and no Gradio client library: it reads the page's embedded config to find the event
handlers, then posts to ``/gradio_api/queue/join`` whatever data it likes, with any
``session_hash``, cookies or none, and reads the answer from the SSE stream of
``/gradio_api/queue/data``. It can also pose as any client address through a trusted proxy's
``X-Forwarded-For`` (the addresses are only header text: no traffic goes anywhere but localhost).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import httpx

_CONFIG = re.compile(r"window\.gradio_config = (\{.*?\});</script>", re.S)


@dataclass
class Answer:
    """One event's outcome: its outputs when it ran, or Gradio's error; ``raw`` is every SSE message."""

    ok: bool
    data: list[Any]
    raw: str

    @property
    def text(self) -> str:
        return json.dumps(self.data)


def file_data(path: str, **extra: Any) -> dict[str, Any]:
    """A ``gradio.FileData`` naming ``path``, as a client may send it."""
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": path.rsplit("/", 1)[-1], **extra}


class Attacker:
    """One client: its own cookie jar (or none), its own address, any session hashes it likes."""

    def __init__(self, base: str, *, address: str | None = None, cookies: bool = True) -> None:
        headers = {"x-forwarded-for": address} if address else {}
        self.http = httpx.Client(base_url=base, timeout=60, headers=headers,
                                 cookies=None if cookies else httpx.Cookies())
        self.keep_cookies = cookies
        page = self.get("/")
        assert page.status_code == 200, page.text
        match = _CONFIG.search(page.text)
        assert match, "the page embeds its config"
        self.config: dict[str, Any] = json.loads(match.group(1))
        self.session = self.new_session()

    def close(self) -> None:
        self.http.close()

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        response = self.http.get(url, **kwargs)
        if not self.keep_cookies:
            self.http.cookies.clear()
        return response

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        response = self.http.post(url, **kwargs)
        if not self.keep_cookies:
            self.http.cookies.clear()
        return response

    @staticmethod
    def new_session() -> str:
        return secrets.token_hex(5)

    def component(self, elem_id: str) -> int:
        return next(int(c["id"]) for c in self.config["components"] if c.get("props", {}).get("elem_id") == elem_id)

    def dependency(self, elem_id: str, event: str) -> tuple[int, dict[str, Any]]:
        """The handler that ``event`` on the component ``elem_id`` triggers: (fn_index, its config)."""
        target = self.component(elem_id)
        for index, dep in enumerate(self.config["dependencies"]):
            if [target, event] in [list(t) for t in dep["targets"]]:
                return int(dep.get("id", index)), dep
        raise AssertionError(f"no {event} handler on #{elem_id}")

    def call(self, elem_id: str, event: str, data: list[Any], *, session: str | None = None,
             event_data: Any = None) -> Answer:
        """Trigger ``event`` on ``elem_id`` with ``data`` (one value per input; None for a State)."""
        fn_index, _ = self.dependency(elem_id, event)
        return self.call_fn(fn_index, data, session=session, event_data=event_data,
                            trigger=self.component(elem_id))

    def call_fn(self, fn_index: int, data: list[Any], *, session: str | None = None, event_data: Any = None,
                trigger: int | None = None) -> Answer:
        session = session or self.session
        joined = self.post("/gradio_api/queue/join", json={
            "data": data, "event_data": event_data, "fn_index": fn_index, "trigger_id": trigger,
            "session_hash": session})
        if joined.status_code != 200:
            return Answer(False, [], f"join refused: {joined.status_code} {joined.text}")
        raw = []
        with self.http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                raw.append(line)
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    output = message.get("output") or {}
                    return Answer(bool(message.get("success")), list(output.get("data") or []), "\n".join(raw))
        return Answer(False, [], "\n".join(raw))

    def served(self, answer: Answer) -> str:
        """Everything the answer links to, fetched: what the attacker would download next."""
        urls = set(re.findall(r'"url":\s*"([^"]*gradio_api/file=[^"]+)"', answer.raw))
        return "\n".join(self.http.get(url).content.decode("latin-1") for url in sorted(urls))

    def send(self, text: str = "", files: list[dict[str, Any]] | None = None, *, session: str | None = None) -> Answer:
        """A chat message, as the message box submits it (text and files); any other input the handler
        takes (the tab's state, or a chat history on a page that still takes one) is sent empty."""
        _, dep = self.dependency("clipbot-box", "submit")
        box, chat = self.component("clipbot-box"), self.component("clipbot-chat")
        message = {"text": text, "files": files or []}
        data = [message if i == box else [] if i == chat else None for i in dep["inputs"]]
        return self.call("clipbot-box", "submit", data, session=session)

    def upload(self, name: str, content: bytes) -> httpx.Response:
        return self.post("/gradio_api/upload", files=[("files", (name, content, "application/octet-stream"))])

    def sign_in(self, name: str, password: str) -> httpx.Response:
        origin = str(self.http.base_url).rstrip("/")
        return self.post("/auth/sign-in", json={"name": name, "password": password}, headers={"origin": origin})
