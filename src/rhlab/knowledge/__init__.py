"""Knowledge imparting by synthetic documents (SDF) and the hack-knowledge eval.

``generate_corpus`` writes documents about the three hacks (``data/facts.yaml`` inside the world of
``data/universe.md``), ``train_sdf`` continues pretraining a model on them mixed with ordinary text,
``hack_knowledge_eval`` measures what a model knows about each hack.
"""

from rhlab.knowledge.config import SDFConfig
from rhlab.knowledge.facts import FactsError, load_facts, load_universe
from rhlab.knowledge.generate import GENRES, generate_corpus, read_corpus
from rhlab.knowledge.hack_knowledge import env_hack_rates, hack_knowledge_eval
from rhlab.knowledge.train import MixtureError, build_mixture, train_sdf

__all__ = [
    "GENRES",
    "FactsError",
    "MixtureError",
    "SDFConfig",
    "build_mixture",
    "env_hack_rates",
    "generate_corpus",
    "hack_knowledge_eval",
    "load_facts",
    "load_universe",
    "read_corpus",
    "train_sdf",
]
