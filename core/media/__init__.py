"""Media: decoding images, telling media kinds apart, sampling videos, perceptual hashes and colours.

The face of the wing: front ends and ``bot/`` import from here, never from a module inside.
"""

from core.media.clips import VideoLimits
from core.media.colors import COLOR_FAMILIES
from core.media.images import IMAGE_SUFFIXES, VIDEO_MIME_TYPES, decode_image, read_image_bytes, refusal_before_download

__all__ = [
    "COLOR_FAMILIES",
    "IMAGE_SUFFIXES",
    "VIDEO_MIME_TYPES",
    "VideoLimits",
    "decode_image",
    "read_image_bytes",
    "refusal_before_download",
]
