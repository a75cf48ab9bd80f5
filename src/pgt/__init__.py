"""pgt: Progressive Growth Transformers on a frozen visual Unicode substrate.

Importing `pgt` registers the `pgt` model types with transformers' Auto* classes
(lazily: the registration runs when transformers is imported), so
`AutoModelForCausalLM.from_pretrained(DIR)` works without `trust_remote_code`.
"""

from pgt.errors import PgtError
from pgt.model import register_auto_classes

__version__ = "0.1.0"
__all__ = ["PgtError", "__version__"]

register_auto_classes()
