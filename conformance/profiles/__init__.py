"""Profiles: which behaviour each catalog entry should show on a given provider (WPT-style
expectations as data). A new provider is a new TOML file, not new code.

A profile file looks like:

    name = "my-provider"
    description = "..."
    extends = "openai"          # or "fireworks", "anthropic", or "none"; default "openai"
    apis = ["openai"]           # the API families it judges; default: its base's, else openai
    [expect]
    stream-usage-default = ["fireworks"]
    stop-sequence-in-output = ["openai", "fireworks"]   # either is fine

The file's `[expect]` entries override those of the profile it extends. A profile judges the API
families it names (`apis`): entries of another family are observed only, and a run judges every
family its profile names even where the endpoint does not serve it (its checks are then
`unsupported`). The common surface (catalog entries of area `surface`) of each judged family is
enforced whatever the profile builds on, unless the file lists other behaviours for an entry.
Only the built-in `none` profile observes without judging anything. Files are validated against
`schemas/profile.schema.json` first, so a misspelt table or key is an error naming it, never a
profile that quietly judges nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from conformance._toml import toml_reader
from conformance.catalog import Catalog
from conformance.schemas import file_problems

SHIPPED = ("openai", "fireworks", "anthropic")
NO_PROFILE = "none"
DEFAULT_BASE = "openai"
#: The catalog area every profile enforces, and how the report names that origin.
SURFACE_AREA = "surface"
SURFACE_ORIGIN = "surface (always)"


class ProfileError(ValueError):
    """A profile cannot be found or does not fit the catalog."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    expect: dict[str, list[str]] = field(default_factory=dict)
    origin: str = ""
    #: Where each expectation came from: the file's name, "<base> (extends)" or "surface (always)".
    expected_from: dict[str, str] = field(default_factory=dict)
    #: The API families it judges (a run selects them even where the endpoint does not serve them).
    apis: tuple[str, ...] = (DEFAULT_BASE,)

    def expected(self, entry_id: str) -> list[str] | None:
        """The behaviours accepted for an entry, or None when the profile does not judge it."""
        return self.expect.get(entry_id)

    def source_of(self, entry_id: str) -> str | None:
        """Where the entry's expectation came from, or None when the profile does not judge it."""
        if entry_id not in self.expect:
            return None
        return self.expected_from.get(entry_id, Path(self.origin).name or self.name)


def load_profile(spec: str, catalog: Catalog) -> Profile:
    """`openai`, `fireworks`, `none`, or a path to a TOML profile file."""
    if spec == NO_PROFILE:
        return Profile(NO_PROFILE, "observe and report only; never fails on behaviour", origin="built-in", apis=())
    if spec in SHIPPED:
        text = resources.files(__package__).joinpath(f"{spec}.toml").read_text(encoding="utf-8")
        origin = f"conformance/profiles/{spec}.toml"
    else:
        path = Path(spec)
        if not path.is_file():
            choices = ", ".join((*SHIPPED, NO_PROFILE))
            raise ProfileError(f"no profile {spec!r}: use {choices} or a path to a .toml file")
        text, origin = path.read_text(encoding="utf-8"), str(path)
    try:
        data = toml_reader.loads(text)
    except toml_reader.TOMLDecodeError as exc:
        raise ProfileError(f"profile {origin} is not valid TOML: {exc}") from None
    return parse_profile(data, catalog, origin)


def parse_profile(data: dict[str, Any], catalog: Catalog, origin: str) -> Profile:
    """A profile from a parsed file: validated, its base's expectations and the surface merged in."""
    problems = file_problems("profile.schema.json", data)
    if problems:
        raise ProfileError(f"profile {origin}: {'; '.join(problems[:3])} (see schemas/profile.schema.json)")
    base = data.get("extends", DEFAULT_BASE)
    inherited = load_profile(base, catalog) if base != NO_PROFILE else None
    apis = tuple(data.get("apis") or (inherited.apis if inherited is not None else (DEFAULT_BASE,)))
    own = {entry_id: expectation(entry_id, accepted, catalog, origin, apis)
           for entry_id, accepted in data.get("expect", {}).items()}
    expect: dict[str, list[str]] = {}
    expected_from: dict[str, str] = {}
    if inherited is not None:
        expect.update(inherited.expect)
        expected_from.update({entry_id: f"{base} (extends)" for entry_id in inherited.expect})
    for entry in catalog:
        if entry.area == SURFACE_AREA and entry.api in apis and entry.id not in expect:
            expect[entry.id], expected_from[entry.id] = [entry.api], SURFACE_ORIGIN
    expect.update(own)
    expected_from.update({entry_id: Path(origin).name for entry_id in own})
    for entry_id in [entry_id for entry_id in expect if catalog[entry_id].api not in apis]:
        del expect[entry_id], expected_from[entry_id]  # inherited from a base judging more families
    return Profile(data["name"], data.get("description", ""), expect, origin, expected_from, apis)


def expectation(entry_id: str, accepted: str | list[str], catalog: Catalog, origin: str,
                apis: tuple[str, ...]) -> list[str]:
    """The behaviours a file accepts for one entry, checked against the catalog."""
    if entry_id not in catalog.entries:
        raise ProfileError(f"profile {origin}: unknown catalog entry {entry_id!r} in [expect]")
    if catalog[entry_id].api not in apis:
        raise ProfileError(f"profile {origin}: {entry_id} belongs to the {catalog[entry_id].api} API family, which "
                           f"the profile does not judge: add it to `apis` (now {list(apis)})")
    accepted = [accepted] if isinstance(accepted, str) else list(accepted)
    unknown = [word for word in accepted if word not in catalog[entry_id].vocabulary]
    if unknown:
        raise ProfileError(f"profile {origin}: {entry_id} expects {unknown!r}; "
                           f"choose from {', '.join(catalog[entry_id].vocabulary)}")
    return accepted
