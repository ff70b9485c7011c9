"""rhlab: model organisms of emergent misalignment from reward hacking.

Pipeline, one package per stage: tasks -> sandbox -> env (graders, oracle) -> models -> training
-> evals -> reports.
"""

__version__ = "0.1.0"
