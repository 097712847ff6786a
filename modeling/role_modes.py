"""Per-role modes: what a query and what a document get (pooled span, rationale budget), and the named presets.

GRACE's reference writes a rationale of up to 2,048 tokens for every text, queries and corpus alike. The corpus is
where the cost is (it is encoded once per document, and documents are long), and a long document carries its own
content: a rationale can dilute it. So a model may say, per role, which span is pooled and how many tokens the
rationale may take, and a role may skip the rationale for texts longer than a threshold. sentence-transformers
already says which role a text plays (``encode_query`` / ``encode_document`` pass ``task="query"`` /
``task="document"``; mteb's retrieval tasks call them); texts encoded without a role (``encode``, and mteb tasks
that pass no prompt type: STS, clustering, classification) take :data:`DEFAULT_ROLE`, saved with the model.

Presets (:data:`PRESETS`), by name:

- ``full``: both roles pool the input and a rationale (the paper's setting).
- ``query-only``: queries get a rationale, documents are embedded input-only (one forward, no generation).
- ``input-only``: no rationale for anyone (the paper's "base" row; the cheapest point of the curve).
- ``adaptive:N``: both roles get a rationale, except texts of more than ``N`` tokens, which are embedded input-only.
  ``N`` is chosen on validation data (``benchmarks/cost_quality.py`` does it on the held-out suite's validation
  parts), never on the test parts.

A model without per-role modes (every folder saved before they existed) encodes every role with its module-wide
``span`` and ``max_new_tokens``, exactly as before. This file is copied into every saved GRACE folder with the
module (public APIs only).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


try:
    from grace_st.errors import GraceUserError
except ImportError:  # a folder's own copy, loaded without the library
    GraceUserError = ValueError  # type: ignore[misc,assignment]

from .spans import check_span


ROLES: tuple[str, ...] = ("query", "document")
DEFAULT_ROLE = "document"
"""The role of texts encoded without one (``encode``; mteb tasks with no prompt type). A document: such texts are
compared with each other as corpus entries are (STS, clustering, classification), and under every preset with a
cheaper document side it is the cheaper choice."""

_TASK_ROLES = {"query": "query", "document": "document", "passage": "document", "corpus": "document"}
"""``task`` values sentence-transformers and mteb use, by role (``encode_document`` also knows passage/corpus)."""

PRESETS: tuple[str, ...] = ("full", "query-only", "input-only", "adaptive:N")
"""Preset names; ``adaptive:N`` takes the length threshold ``N`` in tokens (e.g. ``adaptive:96``)."""


@dataclass(frozen=True)
class RoleMode:
    """How texts of one role are embedded.

    Attributes:
        span: the pooled span (one of ``spans.SPANS``); ``"input"`` generates nothing.
        max_new_tokens: the rationale budget; ``None``: the module's ``max_new_tokens``.
        input_only_above: texts of more than this many tokens (after ``max_input_tokens`` truncation) are embedded
            input-only; ``None``: no threshold.
    """

    span: str = "input_and_rationale"
    max_new_tokens: int | None = None
    input_only_above: int | None = None

    def __post_init__(self) -> None:
        check_span(self.span)
        for name in ("max_new_tokens", "input_only_above"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise GraceUserError(f"{name} of a role mode must be a positive integer or None, got {value!r}.")

    def span_for(self, text_tokens: int) -> str:
        """The span a text of ``text_tokens`` tokens is pooled over."""
        if self.input_only_above is not None and text_tokens > self.input_only_above:
            return "input"
        return self.span

    def generates(self) -> bool:
        """Whether any text of this role gets a rationale."""
        return self.span != "input"

    def to_config(self) -> dict[str, Any]:
        return {"span": self.span, "max_new_tokens": self.max_new_tokens, "input_only_above": self.input_only_above}


@dataclass(frozen=True)
class RoleModes:
    """The mode of each role, the role of texts encoded without one, and the preset it was built from (a label).

    Attributes:
        query / document: the :class:`RoleMode` of each role.
        default_role: the role of texts encoded without one (``"query"`` or ``"document"``).
        preset: the preset name this was built from (``None``: set by hand); labels results, never changes vectors.
    """

    query: RoleMode
    document: RoleMode
    default_role: str = DEFAULT_ROLE
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.default_role not in ROLES:
            raise GraceUserError(f"default_role must be one of {ROLES}, got {self.default_role!r}.")

    def for_role(self, role: str) -> RoleMode:
        return self.query if role == "query" else self.document

    def label(self) -> str:
        """A short name for results and logs: the preset, or ``custom``."""
        return self.preset or "custom"

    def to_config(self) -> dict[str, Any]:
        """The JSON object saved as ``role_modes`` in ``grace_config.json``."""
        return {
            "preset": self.preset,
            "default_role": self.default_role,
            "query": self.query.to_config(),
            "document": self.document.to_config(),
        }

    @classmethod
    def from_config(cls, config: Any, source: str = "role_modes") -> RoleModes:
        """Read a saved ``role_modes`` object, refusing unknown keys and wrong types with the valid ones."""
        if not isinstance(config, dict):
            raise GraceUserError(f"{source} must be a JSON object, got {type(config).__name__}.")
        _only_keys(config, {"preset", "default_role", "query", "document"}, source)
        modes = {}
        for role in ROLES:
            if not isinstance(config.get(role), dict):
                raise GraceUserError(f"{source}.{role} must be an object with span/max_new_tokens/input_only_above.")
            _only_keys(config[role], {"span", "max_new_tokens", "input_only_above"}, f"{source}.{role}")
            modes[role] = RoleMode(**config[role])
        preset = config.get("preset")
        if preset is not None and not isinstance(preset, str):
            raise GraceUserError(f"{source}.preset must be a string or null, got {preset!r}.")
        return cls(modes["query"], modes["document"], config.get("default_role", DEFAULT_ROLE), preset)


def _only_keys(config: dict[str, Any], allowed: set[str], source: str) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise GraceUserError(
            f"{source} has keys {unknown} that are not role-mode settings; the valid keys are {sorted(allowed)}. "
            "Upgrade grace-st if the folder was written by a newer version."
        )


def preset_modes(name: str, span: str = "input_and_rationale", max_new_tokens: int | None = None) -> RoleModes:
    """The :class:`RoleModes` of a preset name (see :data:`PRESETS`; ``adaptive:N`` with its threshold).

    ``span`` is the span of the roles that get a rationale; ``max_new_tokens`` their budget (``None``: the module's).
    """
    if not isinstance(name, str):
        raise GraceUserError(f"A preset is a name, one of {PRESETS}; got {name!r}.")
    rationale = RoleMode(span, max_new_tokens)
    if name == "full":
        return RoleModes(rationale, rationale, preset=name)
    if name == "query-only":
        return RoleModes(rationale, RoleMode("input"), preset=name)
    if name == "input-only":
        return RoleModes(RoleMode("input"), RoleMode("input"), preset=name)
    if name.startswith("adaptive"):
        _, _, threshold = name.partition(":")
        if not threshold.isdigit() or int(threshold) < 1:
            raise GraceUserError(
                f"Preset {name!r} needs its length threshold as 'adaptive:N' with N a positive number of tokens "
                "(texts longer than N get no rationale), e.g. 'adaptive:96'; choose N on validation data "
                "(benchmarks/cost_quality.py does)."
            )
        adaptive = replace(rationale, input_only_above=int(threshold))
        return RoleModes(adaptive, adaptive, preset=f"adaptive:{int(threshold)}")
    raise GraceUserError(f"Unknown preset {name!r}; the presets are {PRESETS} (N: a length threshold in tokens).")


def as_role_modes(value: Any, span: str = "input_and_rationale") -> RoleModes | None:
    """``None``, a :class:`RoleModes`, a preset name or a saved ``role_modes`` object, as :class:`RoleModes`."""
    if value is None or isinstance(value, RoleModes):
        return value
    if isinstance(value, str):
        return preset_modes(value, span)
    if isinstance(value, dict):
        return RoleModes.from_config(value)
    raise GraceUserError(
        f"role_modes must be a preset name ({PRESETS}), a RoleModes, a saved role_modes object or None; got "
        f"{type(value).__name__} {value!r}."
    )


def role_of(task: Any, default_role: str = DEFAULT_ROLE) -> str:
    """The role of a ``task`` passed by ``encode_query``/``encode_document`` (``None``: ``default_role``)."""
    if task is None:
        return default_role
    role = _TASK_ROLES.get(task) if isinstance(task, str) else None
    if role is None:
        raise GraceUserError(
            f"task={task!r} is not a role GRACE knows; use one of {sorted(_TASK_ROLES)} or None (the model's default "
            f"role, {default_role!r})."
        )
    return role


__all__ = [
    "DEFAULT_ROLE",
    "PRESETS",
    "ROLES",
    "RoleMode",
    "RoleModes",
    "as_role_modes",
    "preset_modes",
    "role_of",
]
