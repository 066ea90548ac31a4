"""How the reference server behaves: one word per catalog entry, plus a few knobs.

`ServerConfig.for_vendor("fireworks")` makes it act as Fireworks documents on every entry (where
Fireworks' own revisions disagree, as the revision that differs from OpenAI); overrides make it
deviate on single entries, which is how the project's tests prove each check can fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conformance.catalog import load_catalog

VENDORS = ("openai", "fireworks")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServerConfig:
    behaviours: dict[str, str] = field(default_factory=dict)
    api_key: str | None = None
    context_window: int = 4096
    latency_ms: int = 0
    model_name: str = "reference-model"

    def acts(self, entry_id: str) -> str:
        """The behaviour this server shows for a catalog entry (`openai` when unset)."""
        return self.behaviours.get(entry_id, "openai")

    def is_(self, entry_id: str, behaviour: str) -> bool:
        return self.acts(entry_id) == behaviour

    @property
    def model_id(self) -> str:
        if self.is_("model-identifiers", "fireworks"):
            return f"accounts/fireworks/models/{self.model_name}"
        return self.model_name

    @classmethod
    def for_vendor(cls, vendor: str, overrides: dict[str, str] | None = None, **knobs) -> "ServerConfig":
        if vendor not in VENDORS:
            raise ConfigError(f"unknown behaviour {vendor!r}: choose {' or '.join(VENDORS)}")
        catalog = load_catalog()
        behaviours = {}
        for entry in catalog:
            promised = entry.vendor_behaviours(vendor) or ["openai"]
            distinct = [b for b in promised if b != "openai"]
            behaviours[entry.id] = distinct[0] if vendor != "openai" and distinct else promised[0]
        for entry_id, behaviour in (overrides or {}).items():
            if entry_id not in catalog.entries:
                raise ConfigError(f"unknown catalog entry {entry_id!r}")
            if behaviour not in catalog[entry_id].vocabulary:
                raise ConfigError(f"{entry_id} cannot behave as {behaviour!r}: choose from "
                                  f"{', '.join(catalog[entry_id].vocabulary)}")
            behaviours[entry_id] = behaviour
        return cls(behaviours=behaviours, **knobs)
