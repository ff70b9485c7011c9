"""``rhlab models list`` and ``rhlab chat``: let a person see and try the models.

The lead wires these into the main app with ``app.add_typer(models_app, name="models")`` and
``app.command("chat")(chat)``.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rhlab.models.base import ChatModel, Conversation, ModelError, SamplingParams
from rhlab.models.loading import SPEC_FORMS, available_models, load_model
from rhlab.models.reasoning import split_reasoning, with_thinking_instruction

models_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Model backends available here.")
console = Console()
errors = Console(stderr=True)


@models_app.command("list")
def list_models() -> None:
    """Show every model spec, whether it can run on this machine, and why not if it cannot."""
    table = Table("spec", "available", "details")
    for row in available_models():
        table.add_row(escape(row.spec), "yes" if row.available else "[red]no[/red]", escape(row.detail))
    console.print(table)


def chat(
    prompt: str | None = typer.Argument(None, help="One message to answer; omit for an interactive chat."),
    model: str = typer.Option("embedded", "--model", "-m", help=f"Model spec: {SPEC_FORMS}."),
    system: str | None = typer.Option(None, "--system", "-s", help="System prompt."),
    think: bool = typer.Option(False, "--think", help="Ask for <thinking> reasoning and show it apart."),
    temperature: float = typer.Option(0.7, "--temperature", "-t", help="0 means greedy."),
    top_p: float = typer.Option(1.0, "--top-p"),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", "-n"),
    seed: int | None = typer.Option(None, "--seed"),
) -> None:
    """Chat with a model: answer PROMPT once, or talk interactively when no prompt is given."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    try:
        with console.status(f"Loading {model} ..."):
            chat_model = load_model(model)
        conversation: Conversation = [{"role": "system", "content": system}] if system else []
        if prompt is not None:
            _reply(chat_model, conversation, prompt, params, think)
            return
        console.print(f"[dim]Chatting with {chat_model.spec}; empty line or Ctrl-D ends.[/dim]")
        while True:
            try:
                message = console.input("[bold]you>[/bold] ")
            except (EOFError, KeyboardInterrupt):
                break
            if not message.strip():
                break
            _reply(chat_model, conversation, message, params, think)
    except ModelError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _reply(
    chat_model: ChatModel, conversation: Conversation, message: str, params: SamplingParams, think: bool
) -> None:
    """Answer ``message`` and append both turns to ``conversation`` (so interactive chats have memory)."""
    conversation.append({"role": "user", "content": message})
    request = with_thinking_instruction(conversation) if think else conversation
    completion = chat_model.generate([request], params)[0][0]
    if completion.error:
        raise ModelError(f"The model returned an error: {completion.error}")
    conversation.append({"role": "assistant", "content": completion.text})
    if think:
        reasoning, answer = split_reasoning(completion.text)
        if reasoning:
            console.print(f"[dim italic]{escape(reasoning)}[/dim italic]", highlight=False)
        console.print(answer, markup=False, highlight=False)
    else:
        console.print(completion.text, markup=False, highlight=False)
    if completion.finish_reason == "length":
        console.print("[dim](cut at --max-new-tokens)[/dim]")
