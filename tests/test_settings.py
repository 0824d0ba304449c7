"""Settings: every one documented in .env.example, which itself loads as the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings, load_settings
from core.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / ".env.example"


def env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    return str(alias.choices[0]) if alias is not None else f"CLIPBOT_{field.upper()}"  # type: ignore[union-attr]


def test_every_setting_is_documented_in_env_example() -> None:
    text = EXAMPLE.read_text()
    missing = [env_name(f) for f in Settings.model_fields if f"\n{env_name(f)}=" not in text]
    assert missing == []


def test_env_example_loads_as_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in Settings.model_fields:
        monkeypatch.delenv(env_name(field), raising=False)
    from_example = load_settings(EXAMPLE)
    defaults = load_settings(None)
    assert from_example.model_dump() == defaults.model_dump()
    assert from_example.telegram_token is None and from_example.admin_id_set == frozenset()


def test_environment_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CLIPBOT_TOP_K=3\nCLIPBOT_BATCH_SIZE=4\nTELEGRAM_BOT_TOKEN=1:abc\n")
    monkeypatch.setenv("CLIPBOT_TOP_K", "7")
    s = load_settings(env_file)
    assert (s.top_k, s.batch_size, s.telegram_token) == (7, 4, "1:abc")
    assert "1:abc" not in repr(s)  # the token never shows in logs or tracebacks


def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPBOT_DEVICE", "tpu")
    monkeypatch.setenv("CLIPBOT_MAX_IMAGE_PIXELS", "-5")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert "CLIPBOT_DEVICE" in str(info.value) and "CLIPBOT_MAX_IMAGE_PIXELS" in str(info.value)
