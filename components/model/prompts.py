"""The prompts of an LREM model, kept in one place and saved with the model.

Two styles:
- ``chat`` (the paper's, for Hugging Face chat checkpoints): ChatML with a system line,
  then an instruction to reason about the search intent from several angles, list related
  phrases, not repeat the query, and answer as ``<think>...</think><emb>``; items are
  ``Item: {title}`` with ``<emb>`` as the answer. About 100 tokens around a 6-token query.
- ``short`` (for the tiny backbone built from config): ``q: {query}:<think>`` and
  ``i: {title}<emb>``, so a small model spends its compute on the query and the CoT
  rather than on a fixed preamble it cannot use. The query template ends with a colon, as
  the backbone's knowledge sentences do ("<use>: a <type> does that."), so the CoT continues
  the query the way the backbone learnt to continue what it knows.

The spec (style and templates) is saved in ``lrem_config.json`` next to the weights, so a
loaded model always embeds with the prompts it was trained with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

THINK = "<think>"
THINK_END = "</think>"
EMB = "<emb>"
SPECIAL_TOKENS = (THINK, THINK_END, EMB)
PROMPT_STYLES = ("chat", "short")

# ChatML, the format of Qwen2/2.5 instruct models; the tiny tokenizer is given the same.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SHORT_QUERY_TEMPLATE = "q: {query}:"
SHORT_ITEM_TEMPLATE = "i: {title}"


@dataclass
class PromptSpec:
    style: str = "chat"
    system: str = (
        "You are a query assistant for an e-commerce search platform. "
        "You help the search engine understand what a shopper is looking for."
    )
    query_instruction: str = (
        "Think about the search intent of the query from several angles and list related "
        "phrases, such as product types, uses and attributes. Do not repeat the query. "
        "Answer as <think>phrases</think><emb>.\nQuery: {query}"
    )
    item_template: str = "Item: {title}"

    def __post_init__(self) -> None:
        if self.style not in PROMPT_STYLES:
            raise ValueError(f"prompt style {self.style!r} is not one of {PROMPT_STYLES}")

    @classmethod
    def short(cls, query_template: str = SHORT_QUERY_TEMPLATE, item_template: str = SHORT_ITEM_TEMPLATE) -> "PromptSpec":
        return cls(style="short", system="", query_instruction=query_template, item_template=item_template)

    def to_dict(self) -> dict:
        return asdict(self)


def query_messages(spec: PromptSpec, query: str) -> list[dict]:
    return [
        {"role": "system", "content": spec.system},
        {"role": "user", "content": spec.query_instruction.format(query=query)},
    ]


def item_messages(spec: PromptSpec, title: str) -> list[dict]:
    return [
        {"role": "system", "content": spec.system},
        {"role": "user", "content": spec.item_template.format(title=title)},
    ]


def render(tokenizer, messages: list[dict]) -> str:
    """The chat prompt up to and including the assistant turn's header."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def query_prompt(tokenizer, spec: PromptSpec, query: str) -> str:
    """Prompt whose continuation is the CoT: ends with ``<think>``."""
    if spec.style == "short":
        return spec.query_instruction.format(query=query) + THINK
    return render(tokenizer, query_messages(spec, query)) + THINK


def item_prompt(tokenizer, spec: PromptSpec, title: str) -> str:
    """Item text whose last token is ``<emb>``: no reasoning on the item side."""
    if spec.style == "short":
        return spec.item_template.format(title=title) + EMB
    return render(tokenizer, item_messages(spec, title)) + EMB
