"""Private reasoning is requested one standard way and split tolerantly."""

from rhlab.models import THINKING_INSTRUCTION, split_reasoning, with_thinking_instruction


def test_closed_block_splits_into_reasoning_and_answer():
    assert split_reasoning("<thinking>plan it</thinking>\nThe answer is 4.") == ("plan it", "The answer is 4.")


def test_no_tags_means_no_reasoning():
    assert split_reasoning("  just an answer ") == ("", "just an answer")


def test_unclosed_block_is_all_reasoning_and_no_answer():
    assert split_reasoning("<thinking>I ran out of tok") == ("I ran out of tok", "")


def test_closing_tag_alone_marks_everything_before_it_as_reasoning():
    # Models prefilled with "<thinking>" only ever write the closing tag.
    assert split_reasoning("weigh options</thinking>Go with B.") == ("weigh options", "Go with B.")


def test_text_around_several_blocks_is_the_answer_and_blocks_are_joined():
    text = "Intro. <thinking>a</thinking> middle <THINKING >b</ thinking> end"
    assert split_reasoning(text) == ("a\n\nb", "Intro.\n\nmiddle\n\nend")


def test_empty_completion():
    assert split_reasoning("") == ("", "")


def test_instruction_is_appended_to_an_existing_system_prompt_without_mutating_input():
    conversation = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}]
    asked = with_thinking_instruction(conversation)
    assert asked[0]["content"] == "You are terse.\n\n" + THINKING_INSTRUCTION
    assert asked[1] == {"role": "user", "content": "hi"}
    assert conversation[0]["content"] == "You are terse."


def test_instruction_becomes_the_system_prompt_when_there_is_none():
    asked = with_thinking_instruction([{"role": "user", "content": "hi"}])
    assert asked[0] == {"role": "system", "content": THINKING_INSTRUCTION}
    assert "<thinking>" in THINKING_INSTRUCTION and "</thinking>" in THINKING_INSTRUCTION
