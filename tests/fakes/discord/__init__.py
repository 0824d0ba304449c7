"""A fake of Discord's REST API, CDN and gateway over real HTTP, for the real discord.py client.

It refuses what Discord refuses, in Discord's words, so that a test passing against it proves
something. Its modules:

* ``server``: ``FakeDiscord``, the HTTP server, what it records (``Call``), fault injection, and
  the pytest fixture ``fake`` (import ``fake_fixture`` into a test module to use it).
* ``rules``: what Discord refuses in a request body (uploads, messages, components, commands, modals).
* ``rest``: what each REST route answers: callbacks, follow-ups, channel messages, DMs, command sync.
* ``gateway``: IDENTIFY (shards, their rate limit) and DISPATCH; ``Identify``.
* ``payloads``: the ids and objects the fake uses (``APP_ID``, ``BOT``, ``GUILD_ID``,
  ``CHANNEL_ID``, ``user``) and the builders of what users do (messages, interactions).
"""

from tests.fakes.discord.gateway import Identify
from tests.fakes.discord.payloads import APP_ID, BOT, CHANNEL_ID, GUILD_ID, TIMESTAMP, Interaction, user
from tests.fakes.discord.rules import command_errors, message_errors, modal_errors
from tests.fakes.discord.server import FAULTS, Call, FakeDiscord, fake_fixture

__all__ = [
    "APP_ID",
    "BOT",
    "CHANNEL_ID",
    "FAULTS",
    "GUILD_ID",
    "TIMESTAMP",
    "Call",
    "FakeDiscord",
    "Identify",
    "Interaction",
    "command_errors",
    "fake_fixture",
    "message_errors",
    "modal_errors",
    "user",
]
