"""Free text (model ids, revisions, adapter and file names, presets, notes) made inert for LEADERBOARD.md.

A submission's strings are written by whoever made it: in Markdown, `[x](http://evil)` is a link,
`![i](y)` an image, `|` a new table cell, `<b>` HTML and a newline the end of the row. Every field that
reaches the Markdown goes through `markdown_text`, which leaves only plain text.
"""

from __future__ import annotations

import html
import re

# Characters that make Markdown (GitHub flavour) syntax; each is backslash-escaped, the backslash first.
_SYNTAX = re.compile(r"([\\`*_\[\]()!|~#])")
_NEWLINES = re.compile(r"[\r\n\u2028\u2029]+")


def markdown_text(value: object) -> str:
    """`value` as inert Markdown text: HTML escaped, Markdown punctuation escaped, line breaks as spaces."""
    text = _NEWLINES.sub(" ", str(value))
    return _SYNTAX.sub(r"\\\1", html.escape(text, quote=False))
