"""The console front end: ``clipbot chat``, and ``clipbot run`` when no chat platform is configured."""

from adapters.console.chat import PLATFORM, ConsoleChat, ConsoleStyle

__all__ = ["PLATFORM", "ConsoleChat", "ConsoleStyle"]
