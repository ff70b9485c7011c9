"""Which modules a run starts with, and how the pytest-based grader gets pytest back.

The warm server imports pytest (and pluggy, iniconfig, packaging, ``py``) once for all runs.
Left in ``sys.modules``, they would shadow the workspace: a correct answer whose helper module
is called ``pytest.py``, ``pluggy.py`` or ``py.py`` would import the server's copy instead of
its own. So the run child sets every module that is neither standard library nor harness
aside (:func:`set_aside`) before the program starts. The conftest grader takes them back with
:func:`load_pytest`, except those whose top-level name a workspace file claims: the grader
keeps its own references to pytest's machinery, and the workspace's module answers the name.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STDLIB = os.path.dirname(os.__file__)
SET_ASIDE = {}
"""Modules taken out of ``sys.modules`` by :func:`set_aside` (name -> module)."""


def _under(path, folder):
    return isinstance(path, str) and (path == folder or path.startswith(folder + os.sep))


def _stdlib_or_harness(module):
    origin = getattr(module, "__file__", None)
    if origin is None:  # builtin, frozen, or a namespace package: judge it by where it looks
        places = list(getattr(module, "__path__", None) or [])
        return all(_under(p, STDLIB) or _under(p, HERE) for p in places)
    return _under(origin, STDLIB) or _under(origin, HERE)


def set_aside():
    """Take every module that is neither standard library nor harness out of ``sys.modules``."""
    for name, module in list(sys.modules.items()):
        if module is not None and not _stdlib_or_harness(module):
            SET_ASIDE[name] = sys.modules.pop(name)


def workspace_names(root):
    """Top-level module names that files in ``root`` provide (``x.py``, a folder ``x/``)."""
    names = set()
    try:
        entries = os.listdir(root)
    except OSError:
        return names
    for entry in entries:
        stem, dot, ext = entry.partition(".")
        if stem and (not dot or ext in ("py", "pyc", "so") or ext.endswith(".so")):
            names.add(stem)
    return names


def _claimed(name, claimed):
    return name.partition(".")[0] in claimed


def load_pytest(extra_path):
    """pytest's ``main`` for the conftest grader; workspace modules keep the names they claim.

    pytest and its dependencies come back from :data:`SET_ASIDE` where the warm server loaded
    them, or are imported from ``extra_path`` (never from the workspace). Afterwards every
    module under a name the workspace claims is the workspace's again (or not loaded yet).
    """
    workspace = os.getcwd()
    claimed = workspace_names(workspace)
    for name, module in SET_ASIDE.items():
        if not _claimed(name, claimed):
            sys.modules.setdefault(name, module)
    theirs = {n: sys.modules.pop(n) for n in list(sys.modules) if _claimed(n, claimed)}
    saved = sys.path[:]
    sys.path[:] = [p for p in saved if p not in ("", ".", workspace)] + [p for p in extra_path if p not in saved]
    try:
        import importlib

        import _pytest.config
        import pytest  # noqa: F401 - pytest's plugins import it by name

        for name in _pytest.config.default_plugins:  # as the warm server does: none is imported later
            importlib.import_module("_pytest." + name)
        main = _pytest.config.main
    finally:
        sys.path[:] = saved
        for name in [n for n in sys.modules if _claimed(n, claimed)]:
            del sys.modules[name]  # pytest keeps its own references; the name is the workspace's
        sys.modules.update(theirs)
    return main
