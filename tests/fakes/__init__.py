"""The test fakes: doubles that behave like the real thing, as strictly, rather than patches.

* ``recorder``: what every fake shares: ``RecordingEncoder`` (the real tiny model, its calls
  logged), serving on loopback, fault injection and waiting for calls.
* ``telegram``: a fake Telegram Bot API server (``tests.fakes.telegram.FakeTelegram``).
* ``discord``: a fake Discord REST API and gateway (``tests.fakes.discord.FakeDiscord``).
"""

from tests.fakes.recorder import RecordingEncoder, serve_on_loopback

__all__ = ["RecordingEncoder", "serve_on_loopback"]
