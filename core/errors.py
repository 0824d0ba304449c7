"""The typed error tree of clipbot's engine.

Every error carries a message a chat user or an operator can read as it is; adapters and the
CLI turn these into replies or one-line messages, never into tracebacks.
"""

from __future__ import annotations


class ClipbotError(Exception):
    """Base of every error the engine raises on purpose."""


class InputError(ClipbotError):
    """Something a user or operator gave us is unusable; nothing was stored."""


class ImageError(InputError):
    """An image could not be accepted."""


class FileMissingError(ImageError):
    """A path names no readable file."""


class NotAnImageError(ImageError):
    """The data is not an image at all."""


class UnsupportedFormatError(ImageError):
    """An image, but of a format outside the allow-list."""


class CorruptImageError(ImageError):
    """An image of an allowed format that is truncated or damaged."""


class ImageTooLargeError(ImageError):
    """An image over the byte or pixel limit; refused before decoding."""


class VideoError(ImageError):
    """A video, animation or sticker could not be accepted (core.media.video)."""


class CorruptVideoError(VideoError):
    """A video or animation that is truncated or damaged, or holds no pictures we can read."""

    USER_MESSAGE = "I can't read this video."


class VideoTooLargeError(VideoError):
    """A video over the byte limit (CLIPBOT_VIDEO_MAX_MB) or with frames over the pixel limit."""


class VideoTooLongError(VideoError):
    """A video or animation longer than CLIPBOT_VIDEO_MAX_SECONDS."""


class VideoTimeoutError(VideoError):
    """Not one frame could be decoded within CLIPBOT_VIDEO_DECODE_SECONDS."""

    USER_MESSAGE = "I can't read this video in time."


class AnimatedStickerError(VideoError):
    """A Telegram animated sticker (TGS: gzip'd Lottie JSON), which is drawn, not decoded."""

    USER_MESSAGE = "Animated stickers (TGS) aren't supported; send it as a GIF or video."


class PickleRefusedError(InputError):
    """A pickled database holds something other than plain data and numpy arrays."""


class DimensionMismatchError(InputError):
    """Vectors whose dimension differs from the configured model's."""


class NotFoundError(InputError):
    """No image with the given id."""


class ModelLoadError(ClipbotError):
    """A model could not be found, downloaded or loaded."""


class ConfigError(ClipbotError):
    """A setting has an unusable value."""


class ModelChangedError(ConfigError):
    """The gallery's vectors were made by another model than the configured one: searches would
    find nothing until `clipbot reindex` encodes the images again."""


class StoreError(ClipbotError):
    """The database is unusable (for example written by a newer clipbot)."""


class BusyError(ClipbotError):
    """The inference queue is full; the user should try again in a moment."""


class PermissionDeniedError(InputError):
    """The user may not do this here."""


class CaptionsOffError(InputError):
    """Captioning was asked for, but CLIPBOT_CAPTION_MODEL turns it off."""


class TextReadingOffError(InputError):
    """Reading the text in pictures was asked for, but CLIPBOT_OCR turns it off (or its extra is missing)."""


class StorageUnavailableError(ClipbotError):
    """The disk or database refuses writes (full, read-only, failing, locked); reads still work.

    ``str()`` is the sentence for chat users; :attr:`detail` says what and where, for operators.
    """

    USER_MESSAGE = "I can't store anything right now (storage full or unavailable); searching still works."

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(self.USER_MESSAGE)
        self.where = where
        self.reason = reason

    @property
    def detail(self) -> str:
        return f"{self.reason}: {self.where}"
