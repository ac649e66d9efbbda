"""Turning user input into prompt ids, and choosing the expert/amateur roles."""
from cold_ms.errors import InputError
from cold_ms.formats.chat import chat_prompt_ids


def text_prompt_ids(tokenizer, text, chat=False, system=None, template=None):
    """Ids of a text prompt, wrapped in the chat template when `chat` is set."""
    if tokenizer is None:
        raise InputError("this model ships no tokenizer: give token ids instead of text")
    if not text or not text.strip():
        raise InputError("empty prompt")
    if not chat:
        return tokenizer.encode(text)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return chat_prompt_ids(tokenizer, messages, template)


def parse_ids(raw):
    """'1,5,7' -> [1, 5, 7]; an empty item ('1,,2', a trailing comma) is refused, not dropped."""
    if not raw.strip():
        raise InputError("empty prompt")
    items = [x.strip() for x in raw.split(",")]
    try:
        return [int(x) for x in items]
    except ValueError:
        bad = next(x for x in items if not x.lstrip("-").isdigit())
        raise InputError(f"prompt ids must be comma-separated integers, got {raw!r} "
                         f"(item {items.index(bad) + 1} is {bad!r})") from None


def choose_roles(names, expert=None, amateur="base", beta=0.5, no_adapter=False):
    """(expert, amateur) adapter names; expert None = base model, amateur None = plain greedy."""
    if no_adapter:
        return None, None
    if expert is None and len(names) > 1:
        raise InputError(f"several adapters loaded ({', '.join(names)}): choose the expert")
    expert = expert or (names[0] if names else None)
    return expert, (None if expert is None or beta == 0 else amateur)
