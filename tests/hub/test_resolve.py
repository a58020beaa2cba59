"""Hub conventions: canonical and legacy model ids resolve in mirrors and the HF cache, and the
reachability check goes through huggingface_hub's session (HF_ENDPOINT with its port, proxies)."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from engine.hub import resolve as hub


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_HEAD(self):  # noqa: N802 - http.server's naming
        type(self).seen.append((self.command, self.path, self.headers.get("Host")))
        self.send_response(401)  # any HTTP answer means "reachable"
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Handler", (_Recorder,), {"seen": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv, handler.seen
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def online(monkeypatch):
    """Tests run with HF_HUB_OFFLINE=1; these check the path taken when it is not set."""
    from huggingface_hub import close_session, constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    hub._reachable.cache_clear()
    close_session()  # the session reads proxy variables when it is created
    yield
    hub._reachable.cache_clear()
    close_session()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reachable_through_hf_endpoint_with_its_port(server, online, monkeypatch):
    srv, seen = server
    port = srv.server_address[1]
    assert port != 443
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}/")
    assert hub.hub_reachable() is True
    assert seen and seen[0][0] == "HEAD" and seen[0][1].startswith("/api/models/")
    assert seen[0][2] == f"127.0.0.1:{port}"


def test_unreachable_endpoint_answers_within_seconds(online, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    t0 = time.monotonic()
    assert hub.hub_reachable() is False
    assert time.monotonic() - t0 < 4
    # A black-holed address (TEST-NET-1, never routed) is bounded by the timeout too.
    hub._reachable.cache_clear()
    monkeypatch.setenv("HF_ENDPOINT", "http://192.0.2.1:8080")
    t0 = time.monotonic()
    assert hub.hub_reachable(timeout=1.0) is False
    assert time.monotonic() - t0 < 3


def test_proxy_variables_are_honoured(server, online, monkeypatch):
    """The endpoint's host does not resolve; only the proxy (our local server) can answer."""
    from huggingface_hub import close_session

    srv, seen = server
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.lmconsole.invalid:8080")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{srv.server_address[1]}")
    close_session()
    assert hub.hub_reachable() is True
    assert seen[0][1].startswith("http://hub.lmconsole.invalid:8080/api/models/")  # absolute URI: a proxy request


def test_offline_flag_short_circuits(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    assert hub.hub_reachable() is False
    assert time.monotonic() - t0 < 0.1


def test_canonical_and_legacy_ids():
    assert hub.canonical_id("bert-base-uncased") == "google-bert/bert-base-uncased"
    assert hub.canonical_id("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"
    assert hub.canonical_id("someone/model") == "someone/model"
    assert hub.id_spellings("bert-base-uncased") == ["google-bert/bert-base-uncased", "bert-base-uncased"]
    assert hub.id_spellings("google-bert/bert-base-uncased") == ["google-bert/bert-base-uncased", "bert-base-uncased"]


@pytest.mark.parametrize("folder", ["google-bert/bert-base-uncased", "bert-base-uncased"])
@pytest.mark.parametrize("spec", ["google-bert/bert-base-uncased", "bert-base-uncased"])
def test_mirror_found_under_either_id(tmp_path, folder, spec):
    (tmp_path / folder).mkdir(parents=True)
    (tmp_path / folder / "config.json").write_text("{}")
    assert hub.resolve_model_path(spec, str(tmp_path)) == str(tmp_path / folder)


@pytest.mark.parametrize("cached_as", ["google-bert/bert-base-uncased", "bert-base-uncased"])
@pytest.mark.parametrize("spec", ["google-bert/bert-base-uncased", "bert-base-uncased"])
def test_hf_cache_found_under_either_id(tmp_path, monkeypatch, cached_as, spec):
    """A snapshot in the HF cache layout (models--owner--name/snapshots/<rev>, refs/main)."""
    from huggingface_hub import constants

    repo = tmp_path / ("models--" + cached_as.replace("/", "--"))
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text('{"model_type": "bert"}')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.resolve_model_path(spec, "") == str(snap)


def test_unresolvable_model_names_hf_download(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(hub.ResolveError) as err:
        hub.resolve_model_path("google-bert/bert-base-uncased", str(tmp_path))
    assert "hf download google-bert/bert-base-uncased" in str(err.value)
