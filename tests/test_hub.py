"""Offline, a pretrained tag fails fast with a whole message (issue 17, item 2).

A stub hub on the loopback interface accepts each connection and closes it without an
answer (or a closed port refuses it); the loading runs in a child process whose
``HF_ENDPOINT`` points there and whose ``HF_HOME`` is an empty folder, as a user's
first offline run would see it.
"""

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("open_clip")
pytest.importorskip("huggingface_hub")

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys, time
import open_clip  # imported first: the clock measures the failure, not the imports
try:
    import timm
except ImportError:
    pass
from skvlm.models import WeightsUnavailableError, load_model
start = time.perf_counter()
try:
    if sys.argv[2] == "timm":
        load_model(sys.argv[1], "default", device="cpu", kind="timm")
    else:
        load_model(sys.argv[1], sys.argv[2], device="cpu")
    outcome = {"error": None}
except WeightsUnavailableError as exc:
    outcome = {"error": str(exc), "type": type(exc).__name__}
outcome["elapsed"] = time.perf_counter() - start
print(json.dumps(outcome))
"""


class _StubHub:
    """Accepts TCP connections on 127.0.0.1, counts them and closes each at once."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.server.close()


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _load_offline(tmp_path, port, model="ViT-B-32", tag="openai", **extra_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{port}",
        HF_HOME=str(tmp_path / "hf"),
        HOME=str(tmp_path),
        PYTHONPATH=str(REPO),
        **extra_env,
    )
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(proxy, None)
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, model, tag],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def _assert_whole_message(message, model, tag):
    assert f"{tag!r} of {model!r}" in message
    assert "not in the local cache" in message
    assert "pretrained='/path/to/open_clip_model.safetensors'" in message
    assert "HF_HUB_OFFLINE" in message
    assert message.endswith(".") and "\n" not in message


def test_unreachable_hub_fails_in_one_probe_with_a_whole_message(tmp_path):
    hub = _StubHub()
    try:
        outcome, stderr = _load_offline(tmp_path, hub.port)
    finally:
        hub.close()
    assert outcome["type"] == "WeightsUnavailableError", outcome
    _assert_whole_message(outcome["error"], "ViT-B-32", "openai")
    assert f"127.0.0.1:{hub.port} cannot be reached" in outcome["error"]
    assert hub.connections == 1  # one probe, no retry storm
    assert "Retrying" not in stderr
    assert outcome["elapsed"] < 5.0  # the bound; offline it was 50 s


def test_timm_weights_offline_fail_fast_too(tmp_path):
    pytest.importorskip("timm")
    hub = _StubHub()
    try:
        outcome, stderr = _load_offline(
            tmp_path, hub.port, model="vit_small_patch14_dinov2", tag="timm"
        )
    finally:
        hub.close()
    message = outcome["error"]
    assert outcome["type"] == "WeightsUnavailableError", outcome
    assert "timm model 'vit_small_patch14_dinov2'" in message
    assert "not in the local cache" in message and "HF_HUB_OFFLINE" in message
    assert "ImageEncoder(model='vit_small_patch14_dinov2', pretrained='/path/to/" in message
    assert hub.connections == 1 and "Retrying" not in stderr
    assert outcome["elapsed"] < 5.0


def test_refused_connection_fails_fast(tmp_path):
    outcome, _ = _load_offline(tmp_path, _closed_port(), model="RN50", tag="openai")
    assert outcome["type"] == "WeightsUnavailableError", outcome
    _assert_whole_message(outcome["error"], "RN50", "openai")
    assert "ConnectionRefusedError" in outcome["error"]
    assert outcome["elapsed"] < 5.0


def test_hf_hub_offline_asks_nothing(tmp_path):
    hub = _StubHub()
    try:
        outcome, _ = _load_offline(tmp_path, hub.port, HF_HUB_OFFLINE="1")
    finally:
        hub.close()
    assert hub.connections == 0
    _assert_whole_message(outcome["error"], "ViT-B-32", "openai")
    assert "HF_HUB_OFFLINE is set" in outcome["error"]


_CACHED_CHILD = r"""
import json, sys, time
import open_clip
from huggingface_hub import constants, hf_hub_download
from skvlm.models._hub import check_weights_reachable
start = time.perf_counter()
with check_weights_reachable("ViT-B-32", "openai"):
    inside = constants.HF_HUB_OFFLINE
    path = hf_hub_download("timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors")
print(json.dumps({"path": path, "inside": inside, "after": constants.HF_HUB_OFFLINE,
                  "elapsed": time.perf_counter() - start}))
"""


def test_cached_weights_load_without_retries_when_the_hub_is_down(tmp_path):
    repo = tmp_path / "hf" / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    cached = repo / "snapshots" / "0123abcd" / "open_clip_model.safetensors"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    hub = _StubHub()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{hub.port}",
        HF_HOME=str(tmp_path / "hf"),
        PYTHONPATH=str(REPO),
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", _CACHED_CHILD],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        hub.close()
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert os.path.samefile(outcome["path"], cached)
    assert outcome["inside"] is True and outcome["after"] is False
    assert hub.connections == 1 and "Retrying" not in result.stderr
    assert outcome["elapsed"] < 5.0


def test_cached_weights_with_a_reachable_hub_load_as_usual(monkeypatch):
    from huggingface_hub import constants

    from skvlm.models import _hub

    monkeypatch.setattr(_hub, "_cached", lambda *args: True)
    monkeypatch.setattr(_hub, "probe", lambda *args: None)  # the hub answers
    with _hub.check_weights_reachable("ViT-B-32", "openai"):
        assert constants.HF_HUB_OFFLINE is False
    monkeypatch.setattr(_hub, "probe", lambda *args: pytest.fail("probed random weights"))
    with _hub.check_weights_reachable("skvlm-tiny", None):  # random weights: nothing to fetch
        pass


def test_probe_treats_any_http_answer_as_reachable(tmp_path):
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from skvlm.models._hub import probe

    class NotFound(BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        assert probe(f"http://127.0.0.1:{server.server_port}/x/resolve/main/f.bin") is None
    finally:
        thread.join(10)
        server.server_close()
