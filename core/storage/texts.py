"""The picture text part of the storage seam: what the text reader (OCR) found in each image,
kept by the gallery's database next to its images, and the substring search over it.

An image's text is stored once, when its picture is read; no lines means "read, no text", so it
is not read again. The text goes with its image: deleting the image deletes it, and giving the
image a new picture (``replace_picture``) drops it, so the new picture is read again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from core.records import ImageRecord, PictureText

__all__ = ["ImageTexts"]


class ImageTexts(ABC):
    """The text read in each image's picture, as :class:`PictureText`, and search over it."""

    @abstractmethod
    async def set_texts(self, texts: Sequence[tuple[int, PictureText]]) -> int:
        """Store ``(image id, text)`` pairs in one transaction; returns how many were stored.

        An image deleted meanwhile, or whose text is stored already, is skipped (the first
        reading stays). A text with no lines is stored too: the picture was read and holds none.
        """

    @abstractmethod
    async def texts_for(self, ids: Sequence[int]) -> dict[int, PictureText]:
        """The stored texts of those images; an image not read yet is not in the answer."""

    @abstractmethod
    async def awaiting_text(self, collection: str | None = None) -> list[ImageRecord]:
        """Images with a stored picture (``file`` set) whose text was not read yet, oldest
        first; every collection when ``None``."""

    @abstractmethod
    async def text_search(self, collections: Sequence[str], folded: str) -> list[int]:
        """Ids, in order, of the images of ``collections`` whose stored folded text contains
        ``folded`` (folded by the caller: core.search.ocr_text.fold) as a substring.

        Made for queries of two characters or more (a shorter one scans every text): both
        backends index each text's 2- and 3-character substrings.
        """
