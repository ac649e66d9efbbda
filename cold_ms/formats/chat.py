"""Chat prompts: the checkpoint's Jinja chat template, or a named built-in one."""
from cold_ms.errors import ConfigError, InputError

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
          "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set system = '<<SYS>>\\n' + messages[0]['content'] "
          "+ '\\n<</SYS>>\\n\\n' %}{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
          "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('roles must alternate user/assistant/user/...') }}{% endif %}"
          "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + (system if loop.first else '') "
          "+ message['content'] | trim + ' [/INST]' }}{% else %}{{ ' ' + message['content'] | trim + ' ' "
          "+ eos_token }}{% endif %}{% endfor %}")
# Gemma's turns (its instruction models' template): the assistant's role is "model", a system
# message opens the first user turn
GEMMA = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}"
         "{% set messages = messages[1:] %}{% else %}{% set first = '' %}{% endif %}{% for message in messages %}"
         "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' "
         "+ (first if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")
BUILTIN = {"chatml": CHATML, "llama2": LLAMA2, "gemma": GEMMA}


def _raise(message):
    raise InputError(f"chat template: {message}")


def render_chat(template, messages, bos_token="", eos_token="", add_generation_prompt=True):
    """Render messages [{"role", "content"}] with a Jinja chat template, as HF does."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    try:
        return env.from_string(template).render(messages=messages, bos_token=bos_token, eos_token=eos_token,
                                                add_generation_prompt=add_generation_prompt)
    except TemplateError as e:
        raise ConfigError(f"chat template failed: {e}") from None


def chat_prompt_ids(tokenizer, messages, template_name=None, add_generation_prompt=True):
    """Token ids of a chat prompt: the named built-in template, else the checkpoint's own."""
    template = BUILTIN.get(template_name) if template_name else tokenizer.chat_template
    if template_name and template is None:
        raise ConfigError(f"unknown chat template '{template_name}' (built in: {', '.join(BUILTIN)})")
    if not template:
        raise ConfigError("this checkpoint has no chat template: choose one with --chat-template "
                          f"({', '.join(BUILTIN)})")
    bos = tokenizer.token(tokenizer.bos_id) if tokenizer.bos_id is not None else ""
    eos = tokenizer.token(tokenizer.eos_ids[0]) if tokenizer.eos_ids else ""
    text = render_chat(template, messages, bos or "", eos or "", add_generation_prompt)
    return tokenizer.encode(text, add_bos=False)  # the template writes BOS itself where wanted
