"""Fail fast, and say why, when pretrained weights must come from a hub that is out of reach.

open_clip fetches a pretrained tag through ``huggingface_hub``, which retries each
candidate file with back-off: offline, one tag costs about 50 s before an error whose
text is truncated. :func:`check_weights_reachable` runs first: for weights that are
not in the local cache, ``HF_HUB_OFFLINE`` stops at once, and a single HTTP request
with a short timeout (no retry) decides whether the download is worth trying; weights
in the cache load from it, in huggingface_hub's offline mode when the hub does not
answer that request (instead of after the same retries).
"""

import contextlib
import os
import threading
from pathlib import Path

from ._registry import WeightsUnavailableError

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "ON", "YES", "TRUE"}
_HF_PREFIX = "hf-hub:"


def hub_offline():
    """True when ``HF_HUB_OFFLINE`` is set to 1/ON/YES/TRUE (now, or when the hub was imported)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _weights_source(model, tag):
    """(kind, where, cached files to look for) of an open_clip name and tag, or None.

    ``kind`` is "hf" (``where`` is a repo id) or "url"; None when open_clip has no
    download for it (an unknown tag is open_clip's to report).
    """
    from open_clip import pretrained as oc_pretrained
    from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if model.startswith(_HF_PREFIX):
        return "hf", model[len(_HF_PREFIX) :], (HF_CONFIG_NAME,)
    cfg = oc_pretrained.get_pretrained_cfg(model, tag)
    if not cfg or "file" in cfg:
        return None
    hub = cfg.get("hf_hub", "")
    if hub and oc_pretrained.has_hf_hub():
        repo_id, filename = os.path.split(hub)
        filename = filename or HF_WEIGHTS_NAME
        names = (filename,)
        if filename == HF_WEIGHTS_NAME:
            names = (HF_SAFE_WEIGHTS_NAME, filename)
        elif filename.endswith((".bin", ".pth")):
            names = (filename[:-4] + ".safetensors", filename)
        return "hf", repo_id, names
    if cfg.get("url"):
        return "url", cfg["url"], (os.path.basename(cfg["url"]),)
    return None


def _timm_source(model):
    """(kind, where, files) of a timm model's pretrained weights, as timm resolves them."""
    from timm.models import get_pretrained_cfg
    from timm.models._hub import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME, has_hf_hub

    cfg = get_pretrained_cfg(model)
    if cfg is None:
        return None
    if cfg.hf_hub_id and has_hf_hub():
        names = (
            (cfg.hf_hub_filename,)
            if cfg.hf_hub_filename
            else (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME)
        )
        return "hf", cfg.hf_hub_id, names
    if cfg.url:
        return "torch-hub", cfg.url, (os.path.basename(cfg.url),)
    return None


def _torch_hub_folder():
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _cached(kind, where, names):
    """Whether one of the files is already in the local cache open_clip reads."""
    if kind in ("url", "torch-hub"):
        folder = Path("~/.cache/clip").expanduser() if kind == "url" else _torch_hub_folder()
        return any((folder / name).is_file() for name in names)
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(where, name), str) for name in names)


def _cache_location(kind):
    if kind == "url":
        return str(Path("~/.cache/clip").expanduser())
    if kind == "torch-hub":
        return str(_torch_hub_folder())
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _probe_url(kind, where, names):
    if kind != "hf":
        return where
    from huggingface_hub import constants

    return f"{constants.ENDPOINT.rstrip('/')}/{where}/resolve/main/{names[0]}"


def probe(url, timeout=PROBE_TIMEOUT_S):
    """None when ``url``'s server answers one HEAD request (any status), else the reason.

    One attempt, no retry; the request runs in a daemon thread so that a name lookup
    that hangs is bounded by ``timeout`` too.
    """
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # a 3xx answer: the hub is there
            return None

    outcome = {}

    def ask():
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        except urllib.error.HTTPError:
            pass  # the server answered
        except Exception as exc:  # noqa: BLE001 - refused, reset, DNS, TLS, timeout ...
            reason = getattr(exc, "reason", exc)
            text = " ".join(str(reason).split())
            outcome["error"] = f"{type(reason).__name__}: {text}" if text else type(reason).__name__

    thread = threading.Thread(target=ask, name="skvlm-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if thread.is_alive():
        return f"no answer within {timeout:g} s"
    return outcome.get("error")


def unavailable_error(model, tag, reason, *, cache=None, kind="clip"):
    """The WeightsUnavailableError for ``model``/``tag``: one complete line, what to do."""
    where = f" ({cache})" if cache else ""
    what, example = (
        f"{tag!r} of {model!r}",
        (
            f"CLIPEncoder(model={model!r}, pretrained='/path/to/open_clip_model.safetensors') "
            "(on the command line: --pretrained /path/to/file)"
        ),
    )
    if kind == "timm":
        what = f"of the timm model {model!r}"
        example = f"ImageEncoder(model={model!r}, pretrained='/path/to/model.safetensors')"
    return WeightsUnavailableError(
        f"Cannot load the pretrained weights {what}: they are not in the local "
        f"cache{where}, and {reason}. Without network access, download the checkpoint "
        f"on another machine and pass its local path, e.g. {example}, or "
        f"pretrained=None for random weights. Set HF_HUB_OFFLINE=1 to fail at once "
        f"without asking the hub, and to load cached weights without network access."
    )


@contextlib.contextmanager
def _hub_offline_mode():
    """huggingface_hub's offline mode while open_clip reads cached weights.

    huggingface_hub reads the flag on every request; set process-wide for the load,
    it spares the retries of a hub that did not answer the probe (other threads'
    requests would fail against it anyway).
    """
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def check_weights_reachable(model, tag, timeout=PROBE_TIMEOUT_S, kind="clip"):
    """Raise WeightsUnavailableError now if ``tag`` of ``model`` can be neither read nor fetched.

    Otherwise return the context to load the weights in. Weights that are not in
    the local cache: ``HF_HUB_OFFLINE`` raises without any network access, a hub
    that does not answer one request within ``timeout`` seconds raises, a hub that
    answers lets open_clip download. Weights in the cache load as they are, except
    that a hub that does not answer is not asked again (huggingface_hub's offline
    mode for the load). ``kind="timm"``: ``model`` is a timm name, ``tag`` True.
    """
    if not tag and not model.startswith(_HF_PREFIX):
        return contextlib.nullcontext()  # random weights: nothing to fetch
    source = _timm_source(model) if kind == "timm" else _weights_source(model, tag)
    if source is None:
        return contextlib.nullcontext()
    source_kind, where, names = source
    if _cached(source_kind, where, names):
        if (
            source_kind == "hf"
            and not hub_offline()
            and probe(_probe_url(source_kind, where, names), timeout)
        ):
            return _hub_offline_mode()
        return contextlib.nullcontext()
    cache = _cache_location(source_kind)
    if source_kind == "hf" and hub_offline():
        raise unavailable_error(
            model, tag, "HF_HUB_OFFLINE is set, so the hub was not asked", cache=cache, kind=kind
        )
    url = _probe_url(source_kind, where, names)
    reason = probe(url, timeout)
    if reason is not None:
        from urllib.parse import urlsplit

        host = urlsplit(url).netloc
        raise unavailable_error(
            model, tag, f"{host} cannot be reached ({reason})", cache=cache, kind=kind
        )
    return contextlib.nullcontext()
