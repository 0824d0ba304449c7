"""Two `clipbot run` processes, one PostgreSQL gallery, one bot token behind a load balancer.

Everything a later message needs is in the database: a photo added through one worker is
matched through the other, and a Next button pressed on a reply one worker sent is answered
by the other.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from tests.conftest import recompressed
from tests.fakes.telegram import BOT_USER, FakeTelegram
from tests.pg import pg_server_url_fixture, pg_url_fixture  # noqa: F401
from tests.test_shared_gallery import as_url
from tests.test_telegram import ALICE, TOKEN, message, photo, private
from tests.test_webhook import SECRET, free_port, local_api_fixture, round_robin  # noqa: F401  (a fixture)


async def test_two_processes_share_the_gallery_and_the_buttons(local_api: FakeTelegram, pg_url: str,
                                                               clip_dir: Path, tmp_path: Path,
                                                               photos: dict[str, Path]) -> None:
    ports = [free_port(), free_port()]
    runner, lb_port, served = await round_robin(ports)
    workers: list[asyncio.subprocess.Process] = []
    try:
        for n, port in enumerate(ports):
            env = {**os.environ, "CLIPBOT_CLIP_MODEL": str(clip_dir), "CLIPBOT_CAPTION_MODEL": "none",
                   "CLIPBOT_PRECISION": "fp32", "CLIPBOT_DATABASE_URL": as_url(pg_url),
                   "CLIPBOT_MEDIA_DIR": str(tmp_path / "shared-media"), "CLIPBOT_DATA_DIR": str(tmp_path / f"w{n}"),
                   "CLIPBOT_RATE_LIMIT_PER_MINUTE": "0", "TELEGRAM_BOT_TOKEN": TOKEN,
                   "TELEGRAM_BASE_URL": local_api.base_url, "TELEGRAM_BASE_FILE_URL": local_api.base_file_url,
                   "TELEGRAM_WEBHOOK_URL": f"http://127.0.0.1:{lb_port}/telegram",
                   "TELEGRAM_WEBHOOK_LISTEN": "127.0.0.1", "TELEGRAM_WEBHOOK_PORT": str(port),
                   "TELEGRAM_WEBHOOK_SECRET": SECRET}
            workers.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            ))
        await local_api.wait_for("setWebhook", count=2, timeout=120)
        await wait_until_listening(ports)

        local_api.push(message(private(ALICE), ALICE, caption="/add rocket | on the pad",
                               caption_entities=[{"type": "bot_command", "offset": 0, "length": 4}],
                               photo=photo(local_api, "w1", photos["rocket"].read_bytes())))
        await local_api.wait_for("sendMessage", timeout=60)
        local_api.push(message(private(ALICE), ALICE, caption="/add coffee | a cup",
                               caption_entities=[{"type": "bot_command", "offset": 0, "length": 4}],
                               photo=photo(local_api, "w2", photos["coffee"].read_bytes())))
        await local_api.wait_for("sendMessage", count=2, timeout=60)
        assert sorted(served) == sorted(ports)  # one add through each worker

        local_api.push(message(private(ALICE), ALICE, photo=photo(local_api, "w3", recompressed(photos["coffee"]))))
        [match] = await local_api.wait_for("sendPhoto", timeout=60)
        assert match.params["caption"].startswith("coffee\na cup") and "match 1 of 2" in match.params["caption"]
        answered_by = served[-1]
        button = match.params["reply_markup"]["inline_keyboard"][0][0]
        local_api.push({"callback_query": {
            "id": "cb-w", "from": ALICE, "chat_instance": "ci", "data": button["callback_data"],
            "message": {"message_id": 777, "date": int(time.time()), "chat": private(ALICE), "from": BOT_USER,
                        "photo": [{"file_id": "x", "file_unique_id": "x", "width": 1, "height": 1}],
                        "caption": match.params["caption"]},
        }})
        [edit] = await local_api.wait_for("editMessageMedia", timeout=60)
        assert served[-1] != answered_by  # the other process answered the button
        assert "match 2 of 2" in edit.params["media"]["caption"] and "rocket" in edit.params["media"]["caption"]
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.terminate()
        logs = [(await w.communicate())[1].decode(errors="replace") for w in workers]
        await runner.cleanup()
    assert [w.returncode for w in workers] == [0, 0], logs


async def wait_until_listening(ports: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
