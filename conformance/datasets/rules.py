"""One small function per dataset rule, registered under the rule's id in `datasets.toml`.

A function looks at one part of an example and calls `judge.emit(rule_id, pointer, explanation,
targets, subject)` for each violation; `targets` (default: every target the rule binds) says which
providers the violation breaks when their documents differ, and `subject` groups the conversion
advice ("drop `weight` from 12 user messages"). Explanations quote example values through `show`,
so they stay one short line whatever the data holds.

Scopes: `message` functions run for every message of a conversation, `always` or only when the
message has their `trigger` key (the common case pays for no absent feature); `conversation`
functions see a whole message list with its `tools` (a chat example, or a preference example's
`input`); `sft`, `dpo` and `completion` functions see a whole example of that format; `file`
functions run once at the end. `walker` functions (`message_shape`, `messages_nonempty`, `dpo_input`)
decide whether the rest can look further and are called by `judge.py` directly, as are the `line`
rules, judged while parsing.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conformance.datasets.judge import FileJudge


@dataclass(frozen=True)
class RuleFunction:
    function: Callable[..., Any] | None  # None: a `line` rule, judged while parsing
    scope: str
    trigger: str | None = None


REGISTRY: dict[str, RuleFunction] = {}
PARAMETERS: dict[str, frozenset[str]] = {}


def rule(rule_id: str, scope: str, params: tuple[str, ...] = (), trigger: str | None = None):
    def register(function):
        REGISTRY[rule_id] = RuleFunction(function, scope, trigger)
        PARAMETERS[rule_id] = frozenset(params)
        return function
    return register


for _line_rule, _params in (("line-utf8", ()), ("line-bom", ()), ("line-json", ()), ("line-object", ()),
                            ("line-blank", ()), ("line-size", ("max_bytes",)), ("file-complete", ()),
                            ("format-known", ()), ("format-consistent", ())):
    REGISTRY[_line_rule] = RuleFunction(None, "line")
    PARAMETERS[_line_rule] = frozenset(_params)


def show(value: Any, limit: int = 60) -> str:
    """A value as short, one-line, ASCII JSON (it may come from anyone's dataset)."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def token(key: str) -> str:
    """A key as a JSON-pointer reference token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# ---------------------------------------------------------------- messages

def message_shape(judge: FileJudge, message: Any, pointer: str) -> str | None:
    """The message's role, or None (with a finding) when the message cannot be judged further."""
    if not isinstance(message, dict):
        judge.emit("message-shape", pointer, f"a message must be an object, found {kind(message)}")
        return None
    role = message.get("role")
    if not isinstance(role, str):
        judge.emit("message-shape", pointer + "/role" if "role" in message else pointer,
                   f"a message needs a string `role`, found {show(role) if 'role' in message else 'none'}")
        return None
    return role


rule("message-shape", "walker")(message_shape)


@rule("message-role", "message", params=("roles",))
def message_role(judge: FileJudge, message: dict, role: str, pointer: str) -> None:
    if role in judge.common["message-role", "roles"]:
        return
    broken = [target for target, params in judge.params["message-role"].items() if role not in params["roles"]]
    if broken:
        judge.emit("message-role", pointer + "/role", f"role {show(role)} is not documented for {', '.join(broken)}",
                   broken, subject=show(role, 20).strip('"'))


@rule("message-content", "message")
def message_content(judge: FileJudge, message: dict, role: str, pointer: str) -> None:
    content = message.get("content")
    if isinstance(content, str) or (isinstance(content, list) and content):
        return
    if content is None and role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
        return
    if content is None and role == "function" and "content" in message:  # the spec's function message: string or null
        return
    if isinstance(content, list):
        judge.emit("message-content", pointer + "/content", "`content` is an empty array (at least one part)")
    elif "content" not in message:
        judge.emit("message-content", pointer, f"a {show(role, 20)} message without `content`")
    else:
        judge.emit("message-content", pointer + "/content",
                   f"`content` must be a string or an array of parts, found {kind(content)}")


@rule("content-part-type", "message", params=("parts",), trigger="content")
def content_part_type(judge: FileJudge, message: dict, role: str, pointer: str) -> None:
    content = message["content"]
    if not isinstance(content, list):
        return
    allowed = next(iter(judge.params["content-part-type"].values()))["parts"].get(role)
    for index, part in enumerate(content):
        where = f"{pointer}/content/{index}"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            judge.emit("content-part-type", where, f"a content part must be an object with a string `type`, "
                                                   f"found {show(part)}", subject="untyped")
        elif allowed is not None and part["type"] not in allowed:
            judge.emit("content-part-type", where + "/type",
                       f"a {show(role, 20)} message takes parts of type {', '.join(allowed) or 'none'}, "
                       f"found {show(part['type'])}", subject=show(part["type"], 20).strip('"'))
        elif part["type"] == "text" and not isinstance(part.get("text"), str):
            judge.emit("content-part-type", where, "a text part needs a string `text`", subject="text")


DATA_URL = re.compile(r"data:([^;,]*)((?:;[^;,]*)*),", re.ASCII)


@rule("image-url", "message", params=("remote", "mime_types", "decode"), trigger="content")
def image_url(judge: FileJudge, message: dict, role: str, pointer: str) -> None:
    content = message["content"]
    if not isinstance(content, list):
        return
    for index, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "image_url":
            check_image(judge, part.get("image_url"), f"{pointer}/content/{index}/image_url")


def check_image(judge: FileJudge, image: Any, pointer: str) -> None:
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        judge.emit("image-url", pointer, "an image part needs `image_url.url`, a string", subject="add `image_url.url`")
        return
    problems: dict[str, list[str]] = {}
    header = DATA_URL.match(url[:300])
    for target, params in judge.params["image-url"].items():
        problem = remote_url_problem(url, params) if header is None else data_url_problem(header, url, params)
        if problem is not None:
            problems.setdefault(problem, []).append(target)
    for problem, targets in problems.items():
        judge.emit("image-url", pointer + "/url", f"{problem} ({', '.join(targets)})", targets,
                   subject="embed the image as a base64 PNG or JPEG data URL" if "remote" in problem else problem)


def remote_url_problem(url: str, params: dict) -> str | None:
    if not url.startswith(("https://", "http://")):
        return "the URL is neither http(s) nor a data URL"
    if not params["remote"]:
        return "only base64 data URLs are documented, not remote images"
    return None


def data_url_problem(header: re.Match, url: str, params: dict) -> str | None:
    mime = header.group(1).lower()
    if ";base64" not in header.group(2).lower():
        return "the data URL is not base64-encoded"
    if not mime.startswith("image/"):
        return f"the data URL's MIME type {show(mime, 30)} is not an image"
    if params["mime_types"] and mime not in params["mime_types"]:
        return f"MIME type {show(mime, 30)} is not one of {', '.join(params['mime_types'])}"
    if params["decode"]:
        try:
            base64.b64decode(url[header.end():], validate=True)
        except (binascii.Error, ValueError):
            return "the base64 image data does not decode"
    return None


@rule("weight-role", "message", trigger="weight")
def weight_role(judge: FileJudge, message: dict, role: str, pointer: str) -> None:
    if role != "assistant":
        judge.emit("weight-role", pointer + "/weight", f"`weight` on a {show(role, 20)} message (assistant only)",
                   subject=show(role, 20).strip('"'))


@rule("weight-value", "message", trigger="weight")
def weight_value(judge: FileJudge, message: dict, role: str, pointer: str) -> None:
    weight = message["weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight not in (0, 1):
        judge.emit("weight-value", pointer + "/weight", f"`weight` must be the integer 0 or 1, found {show(weight)}")


@rule("message-unknown-key", "message", params=("keys",))
def message_unknown_key(judge: FileJudge, message: dict, role: str, pointer: str) -> None:
    keys = message.keys()
    if keys <= judge.common["message-unknown-key", "keys"]:
        return
    found: dict[str, list[str]] = {}
    for target, params in judge.params["message-unknown-key"].items():
        if keys <= params["keys"]:
            continue
        for key in keys - params["keys"]:
            found.setdefault(key, []).append(target)
    for key, targets in found.items():
        judge.emit("message-unknown-key", f"{pointer}/{token(key)}",
                   f"key {show(key, 40)} is not in the message format of {', '.join(targets)}", targets,
                   subject=show(key, 40).strip('"'))


@rule("reasoning-content-role", "message", trigger="reasoning_content")
def reasoning_content_role(judge: FileJudge, message: dict, role: str, pointer: str) -> None:
    value = message["reasoning_content"]
    if role != "assistant":
        judge.emit("reasoning-content-role", pointer + "/reasoning_content",
                   f"`reasoning_content` on a {show(role, 20)} message (assistant only)")
    elif not isinstance(value, str):
        judge.emit("reasoning-content-role", pointer + "/reasoning_content",
                   f"`reasoning_content` must be a string, found {kind(value)}")


@rule("tool-call-shape", "message", trigger="tool_calls")
def tool_call_shape(judge: FileJudge, message: dict, role: str, pointer: str) -> None:
    calls = message["tool_calls"]
    if role != "assistant" or not isinstance(calls, list):
        judge.emit("tool-call-shape", pointer + "/tool_calls",
                   "`tool_calls` must be an array on an assistant message")
        return
    for index, call in enumerate(calls):
        where = f"{pointer}/tool_calls/{index}"
        if not isinstance(call, dict):
            judge.emit("tool-call-shape", where, f"a tool call must be an object, found {kind(call)}")
            continue
        if not isinstance(call.get("id"), str) or not call["id"]:
            judge.emit("tool-call-shape", where + "/id", f"a tool call needs a non-empty string `id`, "
                                                         f"found {show(call.get('id'))}")
        if call.get("type") != "function":
            judge.emit("tool-call-shape", where + "/type",
                       f"`type` must be \"function\", found {show(call.get('type'))}")
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            judge.emit("tool-call-shape", where + "/function", "`function` must be an object with a string `name`")
        elif not isinstance(function.get("arguments"), str):
            judge.emit("tool-call-shape", where + "/function/arguments",
                       f"`arguments` must be a string, found {kind(function.get('arguments'))}")


@rule("tool-call-arguments", "message", trigger="tool_calls")
def tool_call_arguments(judge: FileJudge, message: dict, role: str, pointer: str) -> None:
    calls = message["tool_calls"]
    if not isinstance(calls, list):
        return
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if not isinstance(arguments, str):
            continue
        try:
            parsed = json.loads(arguments)
        except (ValueError, RecursionError):
            parsed = None
            problem = "is not JSON"
        else:
            problem = "" if isinstance(parsed, dict) else f"holds {kind(parsed)}, not an object"
        if problem:
            judge.emit("tool-call-arguments", f"{pointer}/tool_calls/{index}/function/arguments",
                       f"`arguments` {problem}: {show(arguments, 40)}")


# ---------------------------------------------------------------- conversations (chat messages + tools)

@rule("tools-shape", "conversation")
def tools_shape(judge: FileJudge, messages: list, tools: Any, pointer: str) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        judge.emit("tools-shape", pointer + "/tools", f"`tools` must be an array, found {kind(tools)}")
        return
    for index, tool in enumerate(tools):
        where = f"{pointer}/tools/{index}"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            judge.emit("tools-shape", where, "a tool must be an object with `type: \"function\"`")
        elif not isinstance(tool.get("function"), dict) or not isinstance(tool["function"].get("name"), str):
            judge.emit("tools-shape", where + "/function", "a tool needs `function`, an object with a string `name`")
        elif "parameters" in tool["function"] and not isinstance(tool["function"]["parameters"], dict):
            judge.emit("tools-shape", where + "/function/parameters",
                       f"`parameters` must be a JSON Schema object, found {kind(tool['function']['parameters'])}")


@rule("tool-name-pattern", "conversation", params=("pattern",))
def tool_name_pattern(judge: FileJudge, messages: list, tools: Any, pointer: str) -> None:
    pattern = judge.compiled(next(iter(judge.params["tool-name-pattern"].values()))["pattern"])
    for where, name in function_names(messages, tools, pointer):
        if not pattern.fullmatch(name):
            judge.emit("tool-name-pattern", where, f"function name {show(name, 40)} does not match {pattern.pattern}")


def function_names(messages: list, tools: Any, pointer: str):
    """(pointer, name) of every function a conversation defines or calls."""
    if isinstance(tools, list):
        for index, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                yield f"{pointer}/tools/{index}/function/name", function["name"]
    for position, message in enumerate(messages):
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if isinstance(calls, list):
            for index, call in enumerate(calls):
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("name"), str):
                    yield f"{pointer}/messages/{position}/tool_calls/{index}/function/name", function["name"]


@rule("tool-call-answered", "conversation")
def tool_call_answered(judge: FileJudge, messages: list, tools: Any, pointer: str) -> None:
    called: set[str] = set()
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            called.update(call["id"] for call in calls if isinstance(call, dict) and isinstance(call.get("id"), str))
        if message.get("role") == "tool":
            answer = message.get("tool_call_id")
            if answer not in called:
                where = f"{pointer}/messages/{position}" + ("/tool_call_id" if "tool_call_id" in message else "")
                judge.emit("tool-call-answered", where,
                           f"`tool_call_id` {show(answer) if 'tool_call_id' in message else '(missing)'} "
                           f"answers no earlier tool call")


@rule("system-first", "conversation")
def system_first(judge: FileJudge, messages: list, tools: Any, pointer: str) -> None:
    for position, message in enumerate(messages):
        if position and isinstance(message, dict) and message.get("role") == "system":
            judge.emit("system-first", f"{pointer}/messages/{position}/role",
                       f"a system message at position {position}, not first")


# ---------------------------------------------------------------- chat (SFT) examples

def messages_nonempty(judge: FileJudge, example: dict) -> bool:
    """Whether `messages` can be judged further (a non-empty array)."""
    messages = example["messages"]
    if isinstance(messages, list) and messages:
        return True
    found = "an empty array" if isinstance(messages, list) else kind(messages)
    judge.emit("messages-nonempty", "/messages", f"`messages` must be a non-empty array, found {found}")
    return False


rule("messages-nonempty", "walker")(messages_nonempty)


def roles(messages: list) -> list[Any]:
    return [message.get("role") if isinstance(message, dict) else None for message in messages]


@rule("assistant-present", "sft")
def assistant_present(judge: FileJudge, example: dict) -> None:
    if "assistant" not in roles(example["messages"]):
        judge.emit("assistant-present", "/messages", "no assistant message: the example teaches nothing")


@rule("assistant-last", "sft")
def assistant_last(judge: FileJudge, example: dict) -> None:
    messages = example["messages"]
    last = messages[-1]
    if isinstance(last, dict) and last.get("role") != "assistant" and "assistant" in roles(messages):
        judge.emit("assistant-last", f"/messages/{len(messages) - 1}",
                   f"the last message is {show(last.get('role'), 20)}, not the assistant's reply")


@rule("weight-all-zero", "sft")
def weight_all_zero(judge: FileJudge, example: dict) -> None:
    replies = [m for m in example["messages"] if isinstance(m, dict) and m.get("role") == "assistant"]
    if replies and all("weight" in m and m["weight"] == 0 and not isinstance(m["weight"], bool) for m in replies):
        judge.emit("weight-all-zero", "/messages", f"all {len(replies)} assistant messages have `weight: 0`")


@rule("reasoning-content-partial", "sft")
def reasoning_content_partial(judge: FileJudge, example: dict) -> None:
    replies = [(i, m) for i, m in enumerate(example["messages"])
               if isinstance(m, dict) and m.get("role") == "assistant"]
    having = [i for i, m in replies if "reasoning_content" in m]
    if having and len(having) < len(replies):
        missing = next(i for i, m in replies if "reasoning_content" not in m)
        judge.emit("reasoning-content-partial", f"/messages/{missing}",
                   f"{len(having)} of {len(replies)} assistant messages have `reasoning_content`")


@rule("sample-weight", "sft", params=("allowed",))
def sample_weight(judge: FileJudge, example: dict) -> None:
    judge.note_sample_weight("weight" in example)
    if "weight" not in example:
        return
    weight = example["weight"]
    number = isinstance(weight, (int, float)) and not isinstance(weight, bool)
    forbidden, wrong = [], []
    for target, params in judge.params["sample-weight"].items():
        if not params["allowed"]:
            forbidden.append(target)
        elif not number:
            wrong.append(target)
    if forbidden:
        judge.emit("sample-weight", "/weight", f"a per-sample `weight` is not part of the format of "
                                               f"{', '.join(forbidden)}", forbidden, subject="drop")
    if wrong:
        judge.emit("sample-weight", "/weight", f"a per-sample `weight` must be a number, found {show(weight)}",
                   wrong, subject="make a number the")


@rule("sample-weight-consistent", "file")
def sample_weight_consistent(judge: FileJudge) -> None:
    state = judge.sample_weights
    if state.with_weight and state.without_weight:
        deviates = max(state.first_with, state.first_without)  # the first line unlike the first example
        missing = state.without_weight if deviates == state.first_without else state.with_weight
        judge.emit_at(deviates, "sample-weight-consistent", "/weight" if deviates == state.first_with else "",
                      f"{state.with_weight} examples have a per-sample `weight`, {state.without_weight} do not "
                      f"(line 1 sets the pattern; line {deviates} is the first to break it)", count=missing)


# ---------------------------------------------------------------- preference (DPO) examples

def dpo_input(judge: FileJudge, example: dict) -> bool:
    """Whether `input.messages` can be judged further."""
    value = example.get("input")
    if not isinstance(value, dict):
        judge.emit("dpo-input", "/input" if "input" in example else "",
                   f"`input` must be an object with `messages`, found {kind(value) if 'input' in example else 'none'}")
        return False
    messages = value.get("messages")
    if not isinstance(messages, list) or not messages:
        judge.emit("dpo-input", "/input/messages" if "messages" in value else "/input",
                   "`input.messages` must be a non-empty array")
        return False
    return True


rule("dpo-input", "walker")(dpo_input)


@rule("dpo-outputs", "dpo")
def dpo_outputs(judge: FileJudge, example: dict) -> None:
    for key in ("preferred_output", "non_preferred_output"):
        output = example.get(key)
        if not isinstance(output, list) or not output:
            judge.emit("dpo-outputs", f"/{key}" if key in example else "",
                       f"`{key}` must be a non-empty array of assistant messages")
            continue
        for index, message in enumerate(output):
            if not isinstance(message, dict) or message.get("role") != "assistant":
                judge.emit("dpo-outputs", f"/{key}/{index}", f"`{key}` holds a message that is not the assistant's")


@rule("dpo-outputs-identical", "dpo")
def dpo_outputs_identical(judge: FileJudge, example: dict) -> None:
    preferred = example.get("preferred_output")
    if preferred and preferred == example.get("non_preferred_output"):
        judge.emit("dpo-outputs-identical", "/non_preferred_output", "the two outputs are identical")


# ---------------------------------------------------------------- legacy completions

@rule("completion-fields", "completion")
def completion_fields(judge: FileJudge, example: dict) -> None:
    for key in ("prompt", "completion"):
        if not isinstance(example.get(key), str):
            judge.emit("completion-fields", f"/{key}" if key in example else "",
                       f"`{key}` must be a string, found {kind(example[key]) if key in example else 'none'}")


# ---------------------------------------------------------------- files

@rule("format-documented", "file", params=("formats",))
def format_documented(judge: FileJudge) -> None:
    for fmt, count in judge.examples.items():
        if not count:
            continue
        broken = [t for t, params in judge.params["format-documented"].items() if fmt not in params["formats"]]
        if broken:
            judge.emit_at(judge.first_line[fmt], "format-documented", "",
                          f"{count} examples in the {fmt} format, which {', '.join(broken)} does not document "
                          f"for training", broken, subject=fmt, count=count)


@rule("example-count", "file", params=("min", "max"))
def example_count(judge: FileJudge) -> None:
    total = sum(judge.examples.values())
    for target, params in judge.params["example-count"].items():
        low, high = params["min"], params["max"]
        if total < low or (high and total > high):
            wanted = f"at least {low}" + (f" and at most {high:,}" if high else "")
            judge.emit_at(0, "example-count", "", f"{total} examples; {target} needs {wanted}", [target],
                          subject=f"{wanted} for {target} (has {total})")
