"""Every kind of conversation state the chat keeps, and what a gallery's move to another database
(``clipbot migrate``) does with it: what an operator would miss is carried over, what points at
the old gallery's ids or expires soon anyway stays behind.

Kept here, above the storage wing, because only the chat knows its kinds and which keys name an
image: :func:`core.storage.copy_gallery` takes this list as it is.
"""

from __future__ import annotations

from core.chat import groups, ratelimit, reposts, switches, threads
from core.storage.migrate import StateKind

STATE_KINDS: tuple[StateKind, ...] = (
    # Carried: admins switched these by hand and would not know to switch them again.
    StateKind(switches.KIND, "chat switches"),
    StateKind(switches.MEMBER_KIND, "inline search members"),
    # A file id stays valid (the platform holds the picture); its key names the image, whose id
    # the new gallery assigns afresh.
    StateKind(groups.FILE_KIND, "inline file ids", rekey=groups.moved_file_key),
    # Left behind: a thread holds the old gallery's image ids, and the rest lasts minutes or a
    # day. (threads.INDEX_KIND, each user's thread tokens for /forget, goes with the threads.)
    StateKind(threads.KIND, "result threads", carry=False),
    StateKind(ratelimit.KIND, "rate-limit counters", carry=False),
    StateKind(groups.FORGET_KIND, "/forget confirmations", carry=False),
    StateKind(reposts.ALERT_KIND, "repost alert pauses", carry=False),
)
