"""Chat platform adapters (Telegram, Discord, console); each turns messages into engine calls."""
