"""Uses of the `openai` Python SDK in one source file, found with `ast` (the code is never run).

What is found:
- calls: any method chain ending in `create`, `parse` or `stream` through `chat.completions`,
  `completions`, `responses` or `embeddings` (whatever the client is called: `client`,
  `self.client`, `get_client()`), the openai<1.0 `openai.ChatCompletion.create` / `acreate` family,
  `with_raw_response` in such a chain, and a streamed response
  closed early (`break` out of the loop over it, or `.close()`);
- arguments: every keyword, with its value when `ast.literal_eval` can read it, and the keys of a
  literal `extra_body`, `**{...}`, or `**params` where `params` is a dict built in the same scope
  (`params = {...}` or `dict(...)`; a dict changed afterwards is read as first built);
- reads: attributes (`chunk.usage`, `choice.finish_reason`) and string keys (`data["usage"]`,
  `.get("usage")`) named by a read rule, and every header read by name (`raw.headers["x"]`,
  `.headers.get("x")`). A read is traced to its call through local names (an
  assignment, `with ... as`, `for ... in`, attribute and index steps); one that cannot be traced
  (the response came in as a parameter) is kept only in a file that uses the SDK, marked untraced,
  and streamed if every call in the file streams (unknown if the file has both kinds).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from typing import Any

from conformance.audit.uses import Use, api_of_method

API_WORDS = ("beta", "chat", "completions", "responses", "embeddings")
REQUEST_METHODS = ("create", "parse", "stream")
#: The openai<1.0 module-level API (`openai.ChatCompletion.create`, `acreate`), still common in code being migrated.
LEGACY_RESOURCES = {"ChatCompletion": "chat.completions", "Completion": "completions", "Embedding": "embeddings"}
WRAPPERS = ("with_raw_response", "with_streaming_response")
CLOSERS = ("close", "aclose")


@dataclass(frozen=True)
class Origin:
    """The SDK call a value comes from: its API and whether it streams (None: unknown)."""

    api: str | None
    stream: bool | None
    fields: frozenset[str]


def method_chain(node: ast.expr) -> list[str]:
    """`a.b.c(...).d` as ["a", "b", "c", "d"] (calls and subscripts in the chain are stepped through)."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, (ast.Call, ast.Subscript)):
            node = node.func if isinstance(node, ast.Call) else node.value
        else:
            if isinstance(node, ast.Name):
                parts.append(node.id)
            return parts[::-1]


def sdk_method(call: ast.Call) -> tuple[str, bool] | None:
    """The SDK method a call makes (`chat.completions.create`) and whether it goes through
    `with_raw_response`; None for any other call."""
    if not isinstance(call.func, ast.Attribute):
        return None
    chain = method_chain(call.func)
    if call.func.attr in ("create", "acreate") and len(chain) >= 2 and chain[-2] in LEGACY_RESOURCES:
        return f"{LEGACY_RESOURCES[chain[-2]]}.create", False
    if call.func.attr not in REQUEST_METHODS:
        return None
    starts = [i for i, part in enumerate(chain[:-1]) if part in API_WORDS]
    if not starts:
        return None
    method = [part for part in chain[starts[0]:] if part not in WRAPPERS]
    if not all(part in API_WORDS for part in method[:-1]):
        return None
    return ".".join(method), "with_raw_response" in chain


def literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


class Scanner(ast.NodeVisitor):
    """One pass over a module, in source order, with one scope of names per function."""

    def __init__(self, path: str, read_names: frozenset[str]):
        self.path, self.read_names = path, read_names
        self.scopes: list[dict[str, Origin]] = [{}]
        #: Per scope, names bound to a dict display or `dict(...)`: what `create(**params)` sends.
        self.dicts: list[dict[str, list[tuple[ast.AST, str, ast.expr]]]] = [{}]
        self.uses: list[Use] = []
        self.streams: set[bool | None] = set()
        self.imports_openai = False

    def where(self, node: ast.AST) -> str:
        return f"{self.path}:{getattr(node, 'lineno', 0)}"

    # ---------------------------------------------------------------- what a value is

    def origin(self, node: ast.expr | None) -> Origin | None:
        while node is not None:
            if isinstance(node, ast.Call):
                found = sdk_method(node)
                if found is not None:
                    return Origin(api_of_method(found[0]), self.stream_of(node, found[0]), self.request_fields(node))
                node = node.func.value if isinstance(node.func, ast.Attribute) else None
            elif isinstance(node, (ast.Attribute, ast.Subscript, ast.Await, ast.Starred)):
                node = node.value
            elif isinstance(node, ast.Name):
                return next((scope[node.id] for scope in reversed(self.scopes) if node.id in scope), None)
            else:
                return None
        return None

    def stream_of(self, call: ast.Call, method: str) -> bool | None:
        """Whether the call streams: `.stream(...)`, or the `stream` field it sends (None: not a literal)."""
        if method.endswith(".stream"):
            return True
        for _, name, value in self.sent_fields(call):
            if name == "stream":
                known, parsed = literal(value)
                return bool(parsed) if known else None
        return False

    def bind(self, target: ast.expr, origin: Origin | None) -> None:
        if isinstance(target, ast.Name):
            if origin is None:
                self.scopes[-1].pop(target.id, None)
            else:
                self.scopes[-1][target.id] = origin
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:  # `for i, choice in enumerate(r.choices)`: each name may be it
                self.bind(element, origin)

    # ---------------------------------------------------------------- scopes and bindings

    def visit_scope(self, node: ast.AST) -> None:
        self.scopes.append({})
        self.dicts.append({})
        self.generic_visit(node)
        self.scopes.pop()
        self.dicts.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = visit_scope

    def visit_Import(self, node: ast.Import) -> None:
        self.imports_openai |= any(alias.name.split(".")[0] == "openai" for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.imports_openai |= (node.module or "").split(".")[0] == "openai"

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        origin = self.origin(node.value)
        fields = dict_fields(node.value)
        for target in node.targets:
            self.visit(target)
            self.bind(target, origin)
            if isinstance(target, ast.Name):
                if fields is None:
                    self.dicts[-1].pop(target.id, None)
                else:
                    self.dicts[-1][target.id] = fields

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self.bind(node.target, self.origin(node.value))

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.bind(node.target, self.origin(node.value))

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.bind(item.optional_vars, self.origin(item.context_expr))
        for statement in node.body:
            self.visit(statement)

    visit_AsyncWith = visit_With

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        origin = self.origin(iterated(node.iter))
        self.bind(node.target, origin)
        exit_node = early_exit(node.body) if origin is not None and origin.stream is not False else None
        if origin is not None and exit_node is not None:
            self.uses.append(Use("call", "close", self.where(exit_node), origin.api, True))
        for statement in (*node.body, *node.orelse):
            self.visit(statement)

    visit_AsyncFor = visit_For

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.visit(node.iter)
        self.bind(node.target, self.origin(iterated(node.iter)))
        for condition in node.ifs:
            self.visit(condition)

    def visit_ListComp(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp) -> None:
        for generator in node.generators:  # the generators bind the names the element reads
            self.visit(generator)
        self.visit(node.elt)

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> None:
        for generator in node.generators:
            self.visit(generator)
        self.visit(node.key)
        self.visit(node.value)

    # ---------------------------------------------------------------- calls and reads

    def visit_Call(self, node: ast.Call) -> None:
        found = sdk_method(node)
        if found is not None:
            self.sdk_call(node, *found)
        elif isinstance(node.func, ast.Attribute):
            if node.func.attr in CLOSERS and not node.args:
                origin = self.origin(node.func.value)
                if origin is not None and origin.stream is not False:
                    self.uses.append(Use("call", "close", self.where(node), origin.api, True))
            elif node.func.attr == "get" and node.args and isinstance(node.args[0], ast.Constant):
                self.key_read(node, node.args[0].value, node.func.value)
        self.generic_visit(node)

    def sdk_call(self, node: ast.Call, method: str, raw: bool) -> None:
        api, stream, fields = api_of_method(method), self.stream_of(node, method), self.request_fields(node)
        self.streams.add(stream)
        self.uses.append(Use("call", method, self.where(node), api, stream, request_fields=fields))
        if raw:
            self.uses.append(Use("call", "with_raw_response", self.where(node), api, stream, request_fields=fields))
        for node_of_field, name, value in self.sent_fields(node):
            self.argument(node_of_field, name, value, api, stream, fields)

    def request_fields(self, call: ast.Call) -> frozenset[str]:
        return frozenset(name for _, name, _ in self.sent_fields(call))

    def sent_fields(self, call: ast.Call) -> list[tuple[ast.AST, str, ast.expr]]:
        """Each field a call sends, with the node that names it: its keywords, and the keys of
        `extra_body={...}` and `**{...}` / `**params` (a dict built in the same scope)."""
        sent: list[tuple[ast.AST, str, ast.expr]] = []
        for keyword in call.keywords:
            if keyword.arg is not None and keyword.arg != "extra_body":
                sent.append((keyword, keyword.arg, keyword.value))
                continue
            if isinstance(keyword.value, ast.Name):
                sent += next((scope[keyword.value.id] for scope in reversed(self.dicts)
                              if keyword.value.id in scope), [])
            else:
                sent += dict_fields(keyword.value) or []
        return sent

    def argument(self, node: ast.AST, name: str, value: ast.expr, api: str | None, stream: bool | None,
                 fields: frozenset[str]) -> None:
        known, parsed = literal(value)
        self.uses.append(Use("argument", name, self.where(node), api, stream, known, parsed, request_fields=fields))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.read(node, node.attr, node.value)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.slice, ast.Constant):
            self.key_read(node, node.slice.value, node.value)
        self.generic_visit(node)

    def key_read(self, node: ast.AST, key: Any, base: ast.expr) -> None:
        """`x["usage"]`, `x.get("usage")`; on `.headers` (`raw.headers.get("fireworks-prompt-tokens")`)
        a header read."""
        if isinstance(base, ast.Attribute) and base.attr == "headers" and isinstance(key, str):
            origin = self.origin(base.value)
            self.uses.append(Use("header", key.lower(), self.where(node), origin.api if origin else None,
                                 origin.stream if origin else None, traced=origin is not None))
        else:
            self.read(node, key, base)

    def read(self, node: ast.AST, name: Any, base: ast.expr) -> None:
        if isinstance(name, str) and name in self.read_names:
            origin = self.origin(base)
            if origin is None:
                self.uses.append(Use("read", name, self.where(node), traced=False))
            else:
                self.uses.append(Use("read", name, self.where(node), origin.api, origin.stream,
                                     request_fields=origin.fields))

    def result(self) -> list[Use]:
        """The uses, untraced reads settled: dropped in a file without the SDK, else given the file's stream kind."""
        uses_sdk = self.imports_openai or bool(self.streams)
        stream = next(iter(self.streams)) if len(self.streams) == 1 else None
        return [use if use.traced else replace(use, stream=stream) for use in self.uses if use.traced or uses_sdk]


def dict_fields(node: ast.expr) -> list[tuple[ast.AST, str, ast.expr]] | None:
    """The string keys of a dict display or `dict(key=...)` call, with their values; None for anything else."""
    if isinstance(node, ast.Dict):
        return [(key, key.value, value) for key, value in zip(node.keys, node.values, strict=True)
                if isinstance(key, ast.Constant) and isinstance(key.value, str)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return [(keyword, keyword.arg, keyword.value) for keyword in node.keywords if keyword.arg is not None]
    return None


def iterated(node: ast.expr) -> ast.expr:
    """What a loop walks: the argument of `enumerate(...)`, `list(...)`, `reversed(...)`, or the iterable itself."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("enumerate", "list", "reversed", "iter") and node.args):
        return node.args[0]
    return node


def early_exit(body: list[ast.stmt]) -> ast.stmt | None:
    """The first `break` or `return` that leaves a loop early (nested loops' breaks are theirs)."""
    pending: list[ast.AST] = list(reversed(body))
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Break, ast.Return)):
            return node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            pending.extend(child for statement in reversed(node.body) for child in ast.walk(statement)
                           if isinstance(child, ast.Return))
            pending.extend(reversed(node.orelse))
            continue
        pending.extend(reversed(list(ast.iter_child_nodes(node))))
    return None


#: Lines that cannot start a top-level statement of their own, though they sit at column 0.
CONTINUATIONS = (")", "]", "}", "else", "elif", "except", "finally", "#")
#: Syntax errors recovered from in one file before the rest is given up.
MAX_SYNTAX_ERRORS = 20


def top_level_starts(lines: list[str]) -> list[int]:
    """The 0-based indexes of lines that start a top-level statement (column 0, not a continuation)."""
    return [i for i, line in enumerate(lines)
            if line[:1] not in ("", " ", "\t", "\n", "\r") and not line.startswith(CONTINUATIONS)]


def parse_recovering(path: str, source: str) -> tuple[ast.Module, list[SyntaxError]]:
    """The module with every top-level statement that has a syntax error blanked out (line numbers
    kept), and those errors: one broken function does not hide the rest of the file."""
    errors: list[SyntaxError] = []
    lines = source.splitlines(keepends=True)
    while True:
        try:
            return ast.parse("".join(lines), filename=path), errors
        except SyntaxError as error:
            errors.append(error)
            starts = top_level_starts(lines)
            broken = max((i for i in starts if i < (error.lineno or 1)), default=0)
            end = min((i for i in starts if i > broken), default=len(lines))
            if len(errors) >= MAX_SYNTAX_ERRORS or all(not line.strip() for line in lines[broken:end]):
                return ast.Module(body=[], type_ignores=[]), errors
            lines[broken:end] = ["\n"] * (end - broken)


def scan_python(path: str, source: str, read_names: frozenset[str]) -> tuple[list[Use], list[SyntaxError]]:
    """Every use in one file, and the syntax errors of the statements left out."""
    scanner = Scanner(path, read_names)
    module, errors = parse_recovering(path, source)
    scanner.visit(module)
    return scanner.result(), errors
