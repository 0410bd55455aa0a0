"""Real English text that ships with CPython: the help topics in `pydoc_data.topics`.

`pydoc_data.topics.topics` maps a help topic ("assert", "class", "formatstrings", ...) to its
documentation text. The zoo uses it as a labelled corpus with no download:

- `topic_paragraphs()` splits every topic into prose paragraphs labelled by topic, for sentence
  embeddings (MiniLM) and a leave-one-out 1-nearest-neighbour topic task.
- `pydoc_bytes()` is the whole corpus as UTF-8 bytes, i.e. token ids of a 256-symbol byte vocabulary,
  for the byte-level tiny Llama.

The split, in order:
1. split each topic's text at blank lines into blocks;
2. drop indented blocks (code examples, grammar productions, indented notes and lists);
3. drop headings, tables and separators: blocks with a line made only of rule characters
   (`*=-^~+|`, e.g. a heading's underline or a grid table's border);
4. collapse whitespace and keep blocks of at least `min_chars` characters;
5. keep the first `max_per_topic` paragraphs of each topic (so no topic dominates), and drop topics
   with fewer than `min_per_topic` (a leave-one-out neighbour task needs two per topic).
With the defaults (40, 8, 2) on CPython 3.11.7 this gives 398 paragraphs over 72 of the 79 topics.
FACTS.md quotes 389 paragraphs over 62 topics for an earlier, unrecorded split; counts depend on
the split rules and on the CPython version (the topics text changes between releases).
"""

from __future__ import annotations

import functools
import re

RULE_CHARS = frozenset("*=-^~+|")


def _topics() -> dict[str, str]:
    from pydoc_data.topics import topics

    return topics


def _has_rule_line(lines: list[str]) -> bool:
    """True for headings (underlined), grid tables (bordered) and separator lines."""
    return any(line.strip() and set(line.strip()) <= RULE_CHARS for line in lines)


def _prose_blocks(text: str) -> list[str]:
    """The prose paragraphs of one topic text (steps 1-3 and the whitespace collapse of step 4)."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.strip("\n").split("\n")
        if not lines[0] or lines[0].startswith((" ", "\t")):
            continue
        if _has_rule_line(lines):
            continue
        paragraphs.append(" ".join(block.split()))
    return paragraphs


@functools.cache
def _topic_paragraphs_cached(
    min_chars: int, max_per_topic: int, min_per_topic: int
) -> tuple[tuple[str, str], ...]:
    labelled = []
    for topic, text in sorted(_topics().items()):
        kept = [p for p in _prose_blocks(text) if len(p) >= min_chars][:max_per_topic]
        if len(kept) >= min_per_topic:
            labelled.extend((topic, paragraph) for paragraph in kept)
    return tuple(labelled)


def topic_paragraphs(
    min_chars: int = 40, max_per_topic: int = 8, min_per_topic: int = 2
) -> list[tuple[str, str]]:
    """(topic, paragraph) pairs from CPython's help topics, topics in sorted order.

    See the module docstring for the split. Deterministic for a given CPython version.
    """
    if min_chars < 1 or max_per_topic < 1 or min_per_topic < 1:
        raise ValueError("min_chars, max_per_topic and min_per_topic must be positive")
    return list(_topic_paragraphs_cached(min_chars, max_per_topic, min_per_topic))


@functools.cache
def pydoc_bytes() -> bytes:
    """All help-topic texts, in sorted topic order, joined by blank lines, as UTF-8 bytes."""
    topics = _topics()
    return "\n\n".join(topics[name] for name in sorted(topics)).encode("utf-8")
