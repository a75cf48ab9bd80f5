"""`push_model`: upload a model directory to the Hugging Face Hub (only when the user asks)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from pgt.errors import PgtError, one_line
from pgt.model.loading import read_model_config

HTTP_CLIENTS = ("httpx", "httpx2")  # huggingface_hub 1.x and 2.x; requests (0.x) raises OSErrors


def _transport_errors() -> tuple[type[Exception], ...]:
    """The network errors of the HTTP clients huggingface_hub uses, which are not OSErrors."""
    errors = []
    for name in HTTP_CLIENTS:
        try:
            errors.append(importlib.import_module(name).HTTPError)
        except ImportError:
            continue
    return tuple(errors)


def push_model(model_dir: str | os.PathLike, repo_id: str, *, private: bool = False) -> str:
    """Upload `model_dir` (checked with `load_model` first) as the model repository `repo_id`;
    return the repository's URL. Needs a network and a Hugging Face token (`hf auth login`)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    model_dir = Path(model_dir)
    read_model_config(model_dir)  # a pgt model directory, not any folder
    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(model_dir), repo_id=repo_id, repo_type="model", commit_message=f"pgt push {model_dir.name}"
        )
    except OfflineModeIsEnabled:
        raise PgtError("cannot push: Hugging Face offline mode is on (HF_HUB_OFFLINE=1)") from None
    except (HfHubHTTPError, OSError, ValueError, *_transport_errors()) as exc:  # no network, token or permission
        raise PgtError(f"cannot push {model_dir} to {repo_id}: {one_line(exc)}") from None
    return str(url)
