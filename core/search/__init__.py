"""Search: the searcher, the /find query language, feedback vectors, word ranking, video-frame
results and score calibration.

The face of the wing: front ends and ``bot/`` import from here, never from a module inside.
"""

from core.search.calibration import CalibrationConfig
from core.search.ocr_text import fold
from core.search.query import QuerySyntaxError, parse_refinement
from core.search.words import SearchResult, matches_words, query_words, shown_path

__all__ = [
    "CalibrationConfig",
    "QuerySyntaxError",
    "SearchResult",
    "fold",
    "matches_words",
    "parse_refinement",
    "query_words",
    "shown_path",
]
