"""pgt: Progressive Growth Transformers on a frozen visual Unicode substrate.

Importing `pgt` registers the `pgt` model types with transformers' Auto* classes,
so `AutoModelForCausalLM.from_pretrained(DIR)` works without `trust_remote_code`.
"""

from pgt.errors import PgtError

__version__ = "0.1.0"
__all__ = ["PgtError", "__version__"]


def _register_auto_classes() -> None:
    try:
        from pgt.model import register_auto_classes
    except ImportError:  # the model package is optional while importing light CLI pieces
        return
    register_auto_classes()


_register_auto_classes()
