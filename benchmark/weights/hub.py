"""Reaching the Hugging Face hub, or failing fast: offline, only the local cache is asked.

Without a network and without HF_HUB_OFFLINE, huggingface_hub retries each request with back-off (tens of
seconds of retry lines before the error). One short connection attempt first tells whether the hub can be
reached; if not, the download runs in huggingface_hub's offline mode, so cached weights still load and
missing ones fail at once.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

CONNECT_SECONDS = 3.0  # one TCP connection to the hub's endpoint


def offline_requested() -> bool:
    return any(
        os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def reachable(timeout: float = CONNECT_SECONDS) -> bool:
    """Whether a TCP connection to the hub's endpoint (HF_ENDPOINT, default huggingface.co) opens."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def cache_only_unless_reachable() -> Iterator[bool]:
    """Within: huggingface_hub in offline mode (cache only) if the hub cannot be reached. Yields whether
    it is offline."""
    if offline_requested():
        yield True
        return
    if reachable():
        yield False
        return
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True  # read on every request (constants.is_offline_mode)
    try:
        yield True
    finally:
        constants.HF_HUB_OFFLINE = saved


def not_cached_note(offline: bool) -> str:
    """Why a download that found nothing in the cache did not ask the hub, in words ("" if it did)."""
    if not offline:
        return ""
    if offline_requested():
        return " (HF_HUB_OFFLINE is set and it is not cached)"
    return " (the hub cannot be reached and it is not in the local cache)"
