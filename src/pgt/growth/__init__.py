"""Progressive layer-wise growth: the trainer behind `pgt grow`, its baselines and scale-out.

    from pgt.growth import GrowthConfig, grow
    run_dir = grow(GrowthConfig(substrate=..., data=..., out="runs/grow", stages=3))

`grow` is imported lazily so that `import pgt.growth` (and `pgt --help`) stays light.
"""

from __future__ import annotations

from typing import Any

from pgt.growth.config import GrowthConfig

__all__ = ["GrowthConfig", "grow"]


def __getattr__(name: str) -> Any:
    if name == "grow":
        from pgt.growth.trainer import grow

        return grow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
