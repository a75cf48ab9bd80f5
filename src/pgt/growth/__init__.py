"""Progressive layer-wise growth: the trainer behind `pgt grow`, its baselines and scale-out.

    from pgt.growth import GrowthConfig, grow
    run_dir = grow(GrowthConfig(substrate=..., data=..., out="runs/grow", stages=3))

Names are imported on first use (pgt.lazy), so `import pgt.growth` (and `pgt --help`) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgt.lazy import lazy_exports

if TYPE_CHECKING:
    from pgt.growth.config import GrowthConfig
    from pgt.growth.trainer import grow

_EXPORTS = {
    "GrowthConfig": "config",
    "grow": "trainer",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
