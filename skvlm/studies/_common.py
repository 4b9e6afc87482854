"""What every study shares: the pandas import, method-list checks and progress logging.

Progress goes through :mod:`logging` (logger ``"skvlm.studies"``, level INFO), as any
library should report it: configure that logger to route the lines anywhere. A study
called with ``verbose`` > 0 writes them to stderr instead (not propagated while it runs),
each stamped with the seconds since the outermost study began (a nested study shares
its caller's clock).
"""

import contextlib
import logging
import sys
import time

logger = logging.getLogger("skvlm.studies")


def pandas():
    """The pandas module, or an ImportError saying which extra to install."""
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "skvlm's studies write pandas tables; install the extra: pip install 'skvlm[pandas]'"
        ) from exc
    return pandas


def check_methods(methods, known, default):
    """The method list (``default`` when None), every key checked against ``known``."""
    methods = list(default if methods is None else methods)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; choose from {list(known)}.")
    if not methods:
        raise ValueError(f"methods is empty; choose at least one of {list(known)}.")
    return methods


class _ElapsedFormatter(logging.Formatter):
    """``[  12.3 s] message``: seconds since the formatter was made."""

    def __init__(self):
        super().__init__("[%(elapsed)6.1f s] %(message)s")
        self.start = time.time()

    def format(self, record):
        record.elapsed = record.created - self.start
        return super().format(record)


@contextlib.contextmanager
def progress_to_stderr(verbose):
    """While the block runs, the studies' INFO records also go to stderr if ``verbose``.

    Nested studies reuse the handler of the outermost one, so its clock keeps running.
    """
    if not verbose or any(getattr(h, "skvlm_study", False) for h in logger.handlers):
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.skvlm_study = True
    handler.setFormatter(_ElapsedFormatter())
    handler.setLevel(logging.INFO)
    level, propagate = logger.level, logger.propagate
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    # Not also to the root logger's handlers: a library that logs through the module
    # functions (open_clip's ``logging.info``) installs one, which would print each line
    # twice.
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
