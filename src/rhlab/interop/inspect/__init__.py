"""rhlab inside Inspect AI (the ``inspect`` extra): tasks out, models in, logs both ways.

- ``tasks``: ``rhlab/hackable_code``, ``rhlab/betley``, ``rhlab/goals``, ``rhlab/alignment_questions``
  and ``rhlab/probes`` as Inspect tasks, graded by rhlab's own oracle, judges and probe scoring
  (``scorers``); ``agentic``: the scenarios on Inspect's native tool calling;
- ``provider``: ``--model rhlab/SPEC`` runs any Inspect task on an rhlab model (``rhlab/embedded``,
  ``rhlab/hf:PATH``, ...);
- ``sandbox``: ``sandbox="rhlab"`` runs Inspect's ``exec``/``read_file``/``write_file`` in rhlab's
  bubblewrap sandbox;
- ``logs``: rhlab eval results written as Inspect eval logs, and Inspect logs read back into a
  score table for ``rhlab report``.

``registry`` is the module Inspect's entry point loads; it registers all of the above. Importing
this package needs ``inspect_ai`` (``pip install "rhlab[inspect]"``). Nothing here is named
``inspect_ai``, and the standard library's ``inspect`` is never shadowed (imports are absolute).
See docs/inspect.md.
"""

from __future__ import annotations

try:
    import inspect_ai  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('rhlab.interop.inspect needs Inspect AI: pip install "rhlab[inspect]"') from exc
