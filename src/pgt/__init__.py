"""pgt: Progressive Growth Transformers on a frozen visual Unicode substrate.

Every single model pgt writes is a standard transformers `arcee` checkpoint, so
`AutoModelForCausalLM.from_pretrained(DIR)` needs neither pgt nor `trust_remote_code`.
"""

from pgt.errors import PgtError

__version__ = "0.1.0"
__all__ = ["PgtError", "__version__"]
