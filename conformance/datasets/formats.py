"""Which training format an example is in, from its top-level keys.

- `sft`: OpenAI's chat format (`messages`), which Fireworks accepts unchanged;
- `dpo`: the preference format (`input`, `preferred_output`, `non_preferred_output`);
- `completion`: the legacy `prompt` / `completion` pairs.
"""

from __future__ import annotations

from typing import Any

FORMATS = ("sft", "dpo", "completion")
DESCRIPTIONS = {"sft": "chat (`messages`)", "dpo": "preference (`input` / `preferred_output` / `non_preferred_output`)",
                "completion": "legacy completions (`prompt` / `completion`)"}


def detect(example: dict[str, Any]) -> str | None:
    """The example's format, or None when its keys match none."""
    if "messages" in example:
        return "sft"
    if "input" in example or "preferred_output" in example or "non_preferred_output" in example:
        return "dpo"
    if "prompt" in example or "completion" in example:
        return "completion"
    return None
