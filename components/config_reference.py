"""The reference of every config field, generated from ``components/config.py``.

``lrem config --reference`` prints it as markdown; ``docs/config.md`` is that output, and
``tests/test_config_reference.py`` fails when the file is stale or a field has no description.
A field's description is its ``help`` metadata (``field(..., metadata={"help": ...})``) or,
failing that, the comment on its line or the comment block right above it; a section's is its
dataclass's docstring. Allowed values: ``CHOICES`` of the config module, ``gate.metric``'s metrics,
and the numeric bounds ``check_config`` enforces (``RANGES`` below; a test checks each).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import tokenize
from dataclasses import dataclass
from typing import Any, get_type_hints

from components import config as config_module
from components.config import CHOICES, PipelineConfig, gate_metrics

REGENERATE = ".venv/bin/lrem config --reference > docs/config.md"

# Numeric bounds check_config enforces ("section.field" -> text); a test builds a config just
# outside and on each bound, so this list cannot claim a bound the code does not check.
RANGES: dict[str, str] = {
    "cold_start.sft_warmup_ratio": "0 to 1",
    "cold_start.self_cot_ratio": "0 to 1",
    "cold_start.wrong_cot_ratio": "0 to 1",
    "grpo.rl_query_share": "0 to 0.99",
    "routing.holdout_share": "0 to 0.9",
    "routing.reason_share": "0 to 1 (or null)",
    "world.dev_fraction": "0 to 1",
    "cold_start.lm_replay_weight": ">= 0",
    "cold_start.lm_replay_batch": ">= 1",
    "cold_start.lm_replay_seq_len": ">= 2",
    "grpo.lm_replay_weight": ">= 0",
    "grpo.lm_replay_batch": ">= 1",
    "grpo.lm_replay_seq_len": ">= 2",
    "backbone.knowledge_repeats": ">= 0",
    "grpo.reward_pool_size": ">= 0 (0: the whole catalog)",
    "grpo.reward_refresh_steps": ">= 1",
    "grpo.num_iterations": ">= 1",
    "grpo.save_every": ">= 0 (0: no checkpoints), a multiple of grpo.num_iterations",
    "index.shards": ">= 1",
    "compute.gpus": ">= 0",
    "grpo.reward_weights": "one weight per entry of grpo.reward_funcs",
    "validation.min_relevance": "1 <= min_relevance <= max_relevance",
    "validation.max_relevance": ">= min_relevance",
}


@dataclass
class FieldDoc:
    key: str  # "section.field" ("name" for the top-level field)
    type: str
    default: str  # markdown
    allowed: str
    help: str


@dataclass
class SectionDoc:
    name: str
    cls: type
    doc: str
    fields: list[FieldDoc]


def _comments_by_class() -> dict[str, dict[str, str]]:
    """Class name -> field name -> the comment on the field's lines or the block right above it."""
    source = inspect.getsource(config_module)
    lines = source.splitlines()
    comments: dict[int, str] = {}  # line number -> comment text (without '#')
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.ENCODING, tokenize.ENDMARKER):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    out: dict[str, dict[str, str]] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        per_field: dict[str, str] = {}
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            trailing = [comments[n] for n in range(stmt.lineno, stmt.end_lineno + 1)
                        if n in comments and n in code_lines]
            above: list[str] = []
            n = stmt.lineno - 1
            while n in comments and n not in code_lines and lines[n - 1].strip().startswith("#"):
                above.insert(0, comments[n])
                n -= 1
            per_field[stmt.target.id] = " ".join([*above, *trailing]).strip()
        out[node.name] = per_field
    return out


def _type_name(hint: Any) -> str:
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    text = text.replace("typing.", "")
    return re.sub(r"Optional\[(.*)\]$", r"\1 | None", text)


def _code(text: str) -> str:
    return f"`{text}`"


def _default(f: dataclasses.Field) -> str:
    """The default as markdown: a literal in code; a factory named, with its docstring's first line."""
    if f.default is not dataclasses.MISSING:
        return _code(repr(f.default))
    factory = f.default_factory
    if factory is dataclasses.MISSING:
        return "(required)"
    if isinstance(factory, type):  # list, dict, a section's dataclass
        return _code(f"{factory.__name__}()" if dataclasses.is_dataclass(factory) else repr(factory()))
    if getattr(factory, "__name__", "") != "<lambda>":
        doc = (inspect.getdoc(factory) or "").split("\n")[0].replace("`", "")
        return _code(f"{factory.__name__}()") + (f": {doc}" if doc else "")
    body = inspect.getsource(factory).strip()
    body = body[body.index("lambda"):]
    body = re.sub(r"^lambda\s*:\s*", "", body)
    if "environ" in body or "(" in body.split("[")[0]:  # reads the environment or calls something: as written
        depth, end = 0, len(body)
        for i, ch in enumerate(body):  # cut at the field(...) call's closing parenthesis
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth < 0:
                end = i
                break
        return _code(body[:end].strip())
    return _code(repr(factory()))


def _allowed(key: str) -> str:
    if key in CHOICES:
        return ", ".join(f"`{v}`" for v in CHOICES[key]) + (" (each entry)" if key == "grpo.reward_funcs" else "")
    if key == "gate.metric":
        return ", ".join(f"`{m}`" for m in gate_metrics(PipelineConfig())) + " (from eval.hit_ks, precision_k)"
    return RANGES.get(key, "")


def _field_help(f: dataclasses.Field, comment: str) -> str:
    return str(f.metadata.get("help") or comment or "").strip()


def reference() -> list[SectionDoc]:
    """Every section of PipelineConfig with every field, in declaration order."""
    comments = _comments_by_class()
    top = comments.get(PipelineConfig.__name__, {})
    hints = get_type_hints(PipelineConfig)
    sections = [SectionDoc("(top level)", PipelineConfig, "The config file's own keys.", [])]
    for f in dataclasses.fields(PipelineConfig):
        cls = hints[f.name]
        if not dataclasses.is_dataclass(cls):
            sections[0].fields.append(FieldDoc(f.name, _type_name(hints[f.name]), _default(f), _allowed(f.name),
                                               _field_help(f, top.get(f.name, ""))))
            continue
        cls_hints = get_type_hints(cls)
        per = comments.get(cls.__name__, {})
        docs = [FieldDoc(f"{f.name}.{g.name}", _type_name(cls_hints[g.name]), _default(g),
                         _allowed(f"{f.name}.{g.name}"), _field_help(g, per.get(g.name, "")))
                for g in dataclasses.fields(cls)]
        doc = cls.__doc__ or ""
        if doc.startswith(f"{cls.__name__}("):  # the signature dataclasses writes when there is no docstring
            doc = ""
        sections.append(SectionDoc(f.name, cls, " ".join(doc.split()), docs))
    return sections


def undocumented() -> list[str]:
    """Fields with neither help metadata nor a comment."""
    return [fd.key for s in reference() for fd in s.fields if not fd.help]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _prose(text: str) -> str:
    """A table cell of prose: ``<name>`` placeholders in code, so markdown does not take them for HTML."""
    return _cell(re.sub(r"(?<!`)<([A-Za-z][^<>\s`]*)>(?!`)", r"`<\1>`", text))


def markdown() -> str:
    """The reference as markdown: one table per section."""
    sections = reference()
    n = sum(len(s.fields) for s in sections)
    lines = ["# Config reference", "",
             "<!-- generated from components/config.py by components/config_reference.py; do not edit: run",
             f"     {REGENERATE} -->", "",
             f"Every field of the pipeline config ({n} fields). A YAML file in `configs/` sets any subset of them "
             "by section (`cold_start: {max_steps: 300}`); an unknown key, a wrong type or a value outside the "
             "allowed ones is an error when the config loads, naming the field. A top-level `extends: other.yaml` "
             "(relative to the file's folder) starts from that config, each section updated field by field "
             "(`configs/gate-pair-bagged.yaml`). `lrem --config FILE config --show` prints a file's resolved values.", "",
             "Sections: " + ", ".join(f"[`{s.name}`](#{s.name})" if s.cls is not PipelineConfig
                                      else "[top level](#top-level)" for s in sections), ""]
    for s in sections:
        lines += [f"## {s.name if s.cls is not PipelineConfig else 'top level'}", ""]
        lines += [f"{_prose(s.doc) + ' ' if s.doc else ''}(`{s.cls.__name__}`)", ""]
        lines += ["| field | type | default | allowed | what it does |", "|---|---|---|---|---|"]
        for fd in s.fields:
            lines.append(f"| `{fd.key}` | `{_cell(fd.type)}` | {_cell(fd.default)} | {_prose(fd.allowed)} | "
                         f"{_prose(fd.help)} |")
        lines.append("")
    return "\n".join(lines)
