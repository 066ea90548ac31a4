"""Uses of the `openai` npm package in JavaScript/TypeScript: request arguments, by a small scan.

Not a parser. A regular expression finds calls such as `openai.chat.completions.create(` (any
client name; `responses`, `embeddings`, `completions`, `.parse`, `.stream`, `beta.`, and v3's
`createChatCompletion`), and when
the first argument is an object literal, a character scanner that knows strings, template
literals and comments walks it to its closing brace and reads its top-level keys (`key:`,
`"key":`, shorthand `key,`; `...spread` is skipped). A value is read as a literal when it is
JSON or a Python-style literal once bare keys are quoted and `true`/`false`/`null` are spelt the
Python way (so `["\\n"]`, `'x'`, `0.2`, `{ include_usage: true }` are literal, and anything
holding a name or a call is not; a string holding `, key:` or the word `true` may be misread).

Robustness: a call or read spelt inside a string or comment is skipped; arguments built elsewhere
(`create(params)`) are found as the call only; a regular-expression literal holding a quote or
brace inside the object can confuse the walk (it stops at the end of the file, never loops);
reads are matched by name (`.usage`, `.finish_reason`, `.headers.get("name")`) in files that call the SDK, untraced, as
the Python scan does for what it cannot trace.
"""

from __future__ import annotations

import ast
import bisect
import json
import re
from typing import Any

from conformance.audit.uses import Use, api_of_method

CALL = re.compile(r"\.((?:beta\.)?(?:chat\.completions|completions|responses|embeddings)\.(?:create|parse|stream)"
                  r"|createChatCompletion|createCompletion|createEmbedding)\s*\(\s*")
#: The openai npm package before v4 (`openai.createChatCompletion({...})`), still common in code being migrated.
LEGACY_METHODS = {"createChatCompletion": "chat.completions.create", "createCompletion": "completions.create",
                  "createEmbedding": "embeddings.create"}
KEY = re.compile(r"\s*(?:(?P<bare>[A-Za-z_$][\w$]*)|\"(?P<double>[^\"\\]*)\"|'(?P<single>[^'\\]*)')\s*(?P<sep>[:,}])")
#: Strings, template literals and comments: a call spelt inside one is not a call.
INERT = re.compile(r"//[^\n]*|/\*.*?(?:\*/|\Z)|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`", re.DOTALL)
BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_$][\w$]*)\s*:")
HEADER_READ = re.compile(r"\.headers\s*(?:\.get\(\s*|\[\s*)([\"'])([^\"'\n]+)\1")
PYTHON_WORDS = re.compile(r"\b(true|false|null)\b")
PYTHON_SPELLING = {"true": "True", "false": "False", "null": "None"}
CLOSING = {"{": "}", "[": "]", "(": ")"}


def skip_string(text: str, start: int) -> int:
    """The index just past the string (or template literal) that opens at `start`."""
    quote, index = text[start], start + 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == quote:
            return index + 1
        if quote != "`" and char == "\n":  # an unterminated string ends at the line's end
            return index
        index += 1
    return index


def skip_comment(text: str, start: int) -> int:
    """The index just past a comment at `start` (`//` or `/* */`), or `start` when there is none."""
    if text.startswith("//", start):
        end = text.find("\n", start)
        return len(text) if end < 0 else end
    if text.startswith("/*", start):
        end = text.find("*/", start + 2)
        return len(text) if end < 0 else end + 2
    return start


def value_end(text: str, start: int) -> int:
    """The index of the `,` or `}` that ends the value starting at `start`, brackets balanced."""
    depth, index = 0, start
    while index < len(text):
        char = text[index]
        if char in "\"'`":
            index = skip_string(text, index)
            continue
        after_comment = skip_comment(text, index)
        if after_comment != index:
            index = after_comment
            continue
        if char in CLOSING:
            depth += 1
        elif char in ")]}":
            if depth == 0:
                return index
            depth -= 1
        elif char == "," and depth == 0:
            return index
        index += 1
    return index


def read_literal(source: str) -> tuple[bool, Any]:
    source = source.strip()
    try:
        return True, json.loads(source)
    except ValueError:
        pass
    source = BARE_KEY.sub(lambda key: f'{key.group(1)}"{key.group(2)}":', source)
    try:
        return True, ast.literal_eval(PYTHON_WORDS.sub(lambda word: PYTHON_SPELLING[word.group()], source))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def object_keys(text: str, start: int) -> list[tuple[int, str, bool, Any]]:
    """The top-level keys of the object literal whose `{` is at `start`: (offset, key, literal?, value)."""
    keys, index = [], start + 1
    while index < len(text):
        while True:  # whitespace and comments before a key
            while index < len(text) and text[index] in " \t\r\n,":
                index += 1
            after = skip_comment(text, index)
            if after == index:
                break
            index = after
        if index >= len(text) or text[index] == "}":
            break
        if text.startswith("...", index):
            keys.append((index, "...", False, None))  # a spread: the object may hold any field
            index = value_end(text, index + 3)
            continue
        match = KEY.match(text, index)
        if match is None:  # a computed key or a method: skip its whole member
            index = value_end(text, index)
            continue
        name = match.group("bare") or match.group("double") or match.group("single") or ""
        if match.group("sep") == ":":
            end = value_end(text, match.end())
            keys.append((match.start(), name, *read_literal(text[match.end():end])))
            index = end
        else:  # shorthand `{ model, messages }`: the value is a variable
            keys.append((match.start(), name, False, None))
            index = match.end() - 1 if match.group("sep") == "}" else match.end()
    return keys


def scan_javascript(path: str, source: str, read_names: frozenset[str]) -> list[Use]:
    line_starts = [0] + [match.end() for match in re.finditer("\n", source)]

    def where(offset: int) -> str:
        return f"{path}:{bisect.bisect_right(line_starts, offset)}"

    inert = [(match.start(), match.end()) for match in INERT.finditer(source)]
    inert_starts = [start for start, _ in inert]

    def in_inert_text(offset: int) -> bool:
        index = bisect.bisect_right(inert_starts, offset) - 1
        return index >= 0 and offset < inert[index][1]

    uses: list[Use] = []
    streams: set[bool | None] = set()
    for call in CALL.finditer(source):
        if in_inert_text(call.start()):
            continue
        method = LEGACY_METHODS.get(call.group(1), call.group(1))
        api = api_of_method(method)
        keys = object_keys(source, call.end()) if source.startswith("{", call.end()) else []
        stream: bool | None = method.endswith(".stream")
        for _, name, known, value in keys:
            if name == "stream":
                stream = bool(value) if known else None
        streams.add(stream)
        # A spread or a variable argument may send any field: then the request's fields are unknown.
        spread = not source.startswith("{", call.end()) or any(name == "..." for _, name, _, _ in keys)
        fields = None if spread else frozenset(name for _, name, _, _ in keys)
        uses.append(Use("call", method, where(call.start(1)), api, stream, request_fields=fields))
        uses += [Use("argument", name, where(offset), api, stream, known, value, request_fields=fields)
                 for offset, name, known, value in keys if name != "..."]
    if not uses:
        return uses
    stream_kind = next(iter(streams)) if len(streams) == 1 else None
    uses += [Use("header", match.group(2).lower(), where(match.start(2)), None, stream_kind, traced=False)
             for match in HEADER_READ.finditer(source) if not in_inert_text(match.start())]
    if not read_names:
        return uses
    reads = re.compile(r"(?:\?\.|\.)\s*(" + "|".join(sorted(map(re.escape, read_names))) + r")\b")
    uses += [Use("read", match.group(1), where(match.start(1)), None, stream_kind, traced=False)
             for match in reads.finditer(source) if not in_inert_text(match.start())]
    return uses
