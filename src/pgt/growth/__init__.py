"""Progressive layer-wise growth: the trainer behind `pgt grow`, its baselines and scale-out.

    from pgt.growth import GrowthConfig, grow
    run_dir = grow(GrowthConfig(substrate=..., data=..., out="runs/grow", stages=3))

`grow` is imported lazily so that `import pgt.growth` (and `pgt --help`) stays light.
"""

from __future__ import annotations

from pgt.growth.config import GrowthConfig
from pgt.lazy import lazy_exports

__all__ = ["GrowthConfig", "grow"]

__getattr__ = lazy_exports(__name__, {"grow": "trainer"})
