"""Profiles: which behaviour each catalog entry should show on a given provider (WPT-style
expectations as data). A new provider is a new TOML file, not new code.

A profile file looks like:

    name = "my-provider"
    description = "..."
    [expect]
    stream-usage-default = ["fireworks"]
    stop-sequence-in-output = ["openai", "fireworks"]   # either is fine

Entries a profile does not list are observed and reported, never failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from conformance._toml import toml_reader
from conformance.catalog import Catalog

SHIPPED = ("openai", "fireworks")
NO_PROFILE = "none"


class ProfileError(ValueError):
    """A profile cannot be found or does not fit the catalog."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    expect: dict[str, list[str]] = field(default_factory=dict)
    origin: str = ""

    def expected(self, entry_id: str) -> list[str] | None:
        """The behaviours accepted for an entry, or None when the profile does not judge it."""
        return self.expect.get(entry_id)


def load_profile(spec: str, catalog: Catalog) -> Profile:
    """`openai`, `fireworks`, `none`, or a path to a TOML profile file."""
    if spec == NO_PROFILE:
        return Profile(NO_PROFILE, "observe and report only; never fails on behaviour", origin="built-in")
    if spec in SHIPPED:
        text = resources.files(__package__).joinpath(f"{spec}.toml").read_text(encoding="utf-8")
        origin = f"conformance/profiles/{spec}.toml"
    else:
        path = Path(spec)
        if not path.is_file():
            raise ProfileError(f"no profile {spec!r}: use {', '.join((*SHIPPED, NO_PROFILE))} or a path to a .toml file")
        text, origin = path.read_text(encoding="utf-8"), str(path)
    try:
        data = toml_reader.loads(text)
    except toml_reader.TOMLDecodeError as exc:
        raise ProfileError(f"profile {origin} is not valid TOML: {exc}") from None
    return parse_profile(data, catalog, origin)


def parse_profile(data: dict, catalog: Catalog, origin: str) -> Profile:
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ProfileError(f"profile {origin}: `name` must be a non-empty string")
    if not isinstance(data.get("description", ""), str):
        raise ProfileError(f"profile {origin}: `description` must be a string")
    if not isinstance(data.get("expect", {}), dict):
        raise ProfileError(f"profile {origin}: `[expect]` must be a table of entry = [behaviours]")
    expect: dict[str, list[str]] = {}
    for entry_id, accepted in data.get("expect", {}).items():
        if not isinstance(accepted, (str, list)) or not all(isinstance(word, str) for word in (
                [accepted] if isinstance(accepted, str) else accepted)):
            raise ProfileError(f"profile {origin}: {entry_id} must be a behaviour or a list of behaviours")
        if entry_id not in catalog.entries:
            raise ProfileError(f"profile {origin}: unknown catalog entry {entry_id!r}")
        accepted = [accepted] if isinstance(accepted, str) else list(accepted)
        unknown = [word for word in accepted if word not in catalog[entry_id].vocabulary]
        if unknown or not accepted:
            raise ProfileError(
                f"profile {origin}: {entry_id} expects {unknown or accepted!r}; "
                f"choose from {', '.join(catalog[entry_id].vocabulary)}"
            )
        expect[entry_id] = accepted
    return Profile(data["name"], data.get("description", ""), expect, origin)
