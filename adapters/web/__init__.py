"""The web front end: ``clipbot web``, and ``clipbot run`` when CLIPBOT_WEB_PORT is set (Gradio).

Importing this package does not import Gradio; :meth:`WebPlatform.start` does.
"""

from adapters.web.server import DEFAULT_PORT, WebLimits, WebPlatform
from adapters.web.session import PLATFORM, WebStyle
from adapters.web.sessions import parse_proxies
from adapters.web.users import WebUsers

__all__ = ["DEFAULT_PORT", "PLATFORM", "WebLimits", "WebPlatform", "WebStyle", "WebUsers", "parse_proxies"]
