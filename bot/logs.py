"""Logging for the ``clipbot`` process: one handler, every library routed through it once.

transformers and huggingface_hub each install their own stderr handler when imported;
huggingface_hub's also propagates to the root logger, so every hub warning (its retries, say)
printed twice. Here both hand their records to the root handler instead, at ERROR unless
``--debug``. The libraries are configured when they are first imported, not here: importing
transformers costs half a second, and most commands never need it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType

FORMAT = "%(levelname)s %(name)s: %(message)s"
_HANDLER_NAME = "clipbot"
_state_lock = threading.Lock()
_library_level = logging.ERROR


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time, as ``logging.lastResort`` does: a
    redirected or captured stderr still gets the records."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record).rstrip() + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def configure_logging(*, debug: bool, level: str) -> None:
    """Configure the process's logging once the command line is known; calling it again (say,
    once the settings are read) only changes the levels.

    ``level`` (``WARNING``, ``INFO``, ...) applies to clipbot's own loggers; transformers and
    huggingface_hub log at ERROR and above only, unless ``debug`` (then everything from DEBUG on,
    and the libraries from INFO on). Python warnings go through the same handler, once.
    """
    global _library_level
    root = logging.getLogger()
    # Like logging.basicConfig, a root logger someone already set up (a test runner) is left alone.
    if not root.handlers:
        handler = _StderrHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else level.upper())
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    for extra in list(warnings_logger.handlers):  # transformers.utils.logging.captureWarnings adds one
        warnings_logger.removeHandler(extra)
    warnings_logger.propagate = True
    with _state_lock:
        _library_level = logging.INFO if debug else logging.ERROR
    _when_imported("huggingface_hub.utils.logging", _route_hub)
    _when_imported("transformers.utils.logging", _route_transformers)


def _route_hub(module: ModuleType) -> None:
    hub_logger = logging.getLogger("huggingface_hub")
    for handler in list(hub_logger.handlers):
        hub_logger.removeHandler(handler)
    hub_logger.propagate = True
    hub_logger.setLevel(_library_level)


def _route_transformers(module: ModuleType) -> None:
    module.set_verbosity(_library_level)  # creates its handler first, so the next line finds it
    module.disable_default_handler()
    module.enable_propagation()


def _when_imported(name: str, configure: Callable[[ModuleType], None]) -> None:
    """Run ``configure(module)`` now if ``name`` is imported, else right after its import."""
    module = sys.modules.get(name)
    if module is not None:
        configure(module)
        return
    finder = next((f for f in sys.meta_path if isinstance(f, _AfterImport)), None)
    if finder is None:
        finder = _AfterImport()
        sys.meta_path.insert(0, finder)
    finder.hooks[name] = configure


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the module's own loader so a hook runs once it has executed."""

    def __init__(self) -> None:
        self.hooks: dict[str, Callable[[ModuleType], None]] = {}

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.hooks:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return None
        hook = self.hooks.pop(fullname)
        loader = spec.loader
        run_module = loader.exec_module

        def exec_then_configure(module: ModuleType) -> None:
            run_module(module)
            try:
                hook(module)
            except Exception:  # a library that changed its logging API must not break the import
                logging.getLogger(__name__).debug("configuring %s's logging failed", fullname, exc_info=True)

        loader.exec_module = exec_then_configure  # type: ignore[method-assign]  # this module's loader only
        return spec
