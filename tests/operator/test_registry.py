"""What the operator registers with kopf: one pass per kind for every cause, under stable ids."""

from __future__ import annotations

from typing import Any

from codeintel.operator import build_registry
from codeintel.operator import settings as settings_mod


def _handlers(registry: Any, kind: str) -> list[tuple[str, Any, str]]:
    return sorted(
        (str(h.id), h.param, h.fn.__name__) for h in getattr(registry, kind).get_all_handlers()
    )


def test_the_poll_timers_keep_their_ids_and_the_codeindex_timer_skips_the_children() -> None:
    registry = build_registry(settings_mod.OperatorSettings())
    timers = _handlers(registry, "_spawning")
    assert timers == [
        ("build_registry.<locals>.tick", False, "apply_spec"),
        ("register_pool_handlers.<locals>.tick_pool", None, "apply_pool"),
    ]
    changes = [h for h in _handlers(registry, "_changing") if h[2] == "apply_spec"]
    assert len(changes) == 3 and all(param is True for _, param, _ in changes)
