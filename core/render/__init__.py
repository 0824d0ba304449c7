"""Rendering: result cards, charts and reply-sized previews.

The face of the wing: front ends and ``bot/`` import from here, never from a module inside.
"""

from core.render.visuals import collage_png, colors_text, palette_png, scores_png

__all__ = [
    "collage_png",
    "colors_text",
    "palette_png",
    "scores_png",
]
