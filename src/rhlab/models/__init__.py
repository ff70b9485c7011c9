"""Model backends behind one chat interface (see ``base``).

``load_model(spec)`` is the entry point: ``embedded`` (default, SmolLM2-135M-Instruct from a pip
package), ``embedded:gemma3-270m``, ``hf:PATH``, ``openai:MODEL@BASE_URL``, ``vllm:PATH``, ``scripted``.
"""

from rhlab.models.base import (
    ChatModel,
    Completion,
    Conversation,
    LocalChatModel,
    Message,
    ModelError,
    SamplingParams,
)
from rhlab.models.loading import ModelConfig, available_models, load_model
from rhlab.models.reasoning import THINKING_INSTRUCTION, split_reasoning, with_thinking_instruction
from rhlab.models.scripted import ScriptedModel
from rhlab.models.testing import tiny_test_model

__all__ = [
    "THINKING_INSTRUCTION",
    "ChatModel",
    "Completion",
    "Conversation",
    "LocalChatModel",
    "Message",
    "ModelConfig",
    "ModelError",
    "SamplingParams",
    "ScriptedModel",
    "available_models",
    "load_model",
    "split_reasoning",
    "tiny_test_model",
    "with_thinking_instruction",
]
