"""The openai: backend against a real OpenAI-compatible HTTP server started on loopback."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rhlab.models import ModelError, SamplingParams, load_model
from rhlab.models.openai_compat import parse_openai_spec

ASK = [{"role": "user", "content": "ping"}]
FAST = {"backoff": 0.01, "timeout": 5.0}


class FakeServer:
    """A chat-completions server whose behaviour depends on the requested model name.

    ``echo`` answers "echo: <last message>" (honouring stop and max_tokens as words); ``flaky``
    fails with 503 twice per conversation before answering; ``ratelimited`` answers 429 once;
    ``slow`` sleeps past the client's timeout; ``broken`` answers 400. A key is required when
    ``required_key`` is set.
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.failures: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.required_key: str | None = None
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, payload, headers = server.answer(self.path, self.headers, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def answer(self, path, headers, body):
        if path != "/v1/chat/completions":
            return 404, {"error": "not found"}, {}
        if self.required_key and headers.get("Authorization") != f"Bearer {self.required_key}":
            return 401, {"error": "bad key"}, {}
        model = body["model"]
        key = f"{model}:{body['messages'][-1]['content']}"
        with self.lock:
            self.failures[key] = self.failures.get(key, 0) + 1
            attempt = self.failures[key]
        if model == "flaky" and attempt <= 2:
            return 503, {"error": "warming up"}, {}
        if model == "ratelimited" and attempt == 1:
            return 429, {"error": "slow down"}, {"Retry-After": "0"}
        if model == "slow":
            time.sleep(1.0)
        if model == "broken":
            return 400, {"error": "context too long"}, {}
        time.sleep(0.05)  # long enough for concurrent requests to overlap
        words = f"echo: {body['messages'][-1]['content']} seed={body.get('seed')}".split(" ")
        reason = "length" if len(words) > body["max_tokens"] else "stop"
        text = " ".join(words[: body["max_tokens"]])
        for stop in body.get("stop") or []:
            if stop in text:
                text, reason = text[: text.index(stop)], "stop"
        message = {"role": "assistant", "content": text, "reasoning_content": "thought about it"}
        choice = {"index": 0, "message": message, "finish_reason": reason}
        return 200, {"choices": [choice], "usage": {"completion_tokens": len(text.split())}}, {}


@pytest.fixture
def server():
    fake = FakeServer()
    fake.thread.start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def test_spec_names_model_and_base_url():
    assert parse_openai_spec("gpt-4o-mini@https://api.example.com/v1") == (
        "gpt-4o-mini",
        "https://api.example.com/v1",
    )
    assert parse_openai_spec("llama3.2:1b") == ("llama3.2:1b", None)


def test_answers_each_conversation_n_times_in_order(server):
    model = load_model(f"openai:echo@{server.url}", **FAST)
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    out = model.generate(convs, SamplingParams(n=2, seed=10, max_new_tokens=50))
    assert [[c.text for c in row] for row in out] == [[f"echo: q{i} seed=10", f"echo: q{i} seed=11"] for i in range(3)]
    assert out[0][0].token_ids is None
    assert out[0][0].metadata["reasoning"] == "thought about it"
    sent = server.requests[0]
    assert sent["model"] == "echo" and sent["max_tokens"] == 50 and sent["temperature"] == 1.0


def test_requests_run_concurrently_up_to_the_bound(server):
    model = load_model(f"openai:echo@{server.url}", max_concurrency=3, **FAST)
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(9)]
    model.generate(convs, SamplingParams())
    assert server.max_in_flight == 3


def test_stop_strings_and_length_limit(server):
    model = load_model(f"openai:echo@{server.url}", **FAST)
    stopped = model.generate([ASK], SamplingParams(stop=(" seed",)))[0][0]
    assert (stopped.text, stopped.finish_reason) == ("echo: ping", "stop")
    # More than four stop strings: the server gets four, the rest are applied on our side.
    many = model.generate([ASK], SamplingParams(stop=("x", "y", "z", "q", "ping")))[0][0]
    assert len(server.requests[-1]["stop"]) == 4
    assert many.text == "echo: "
    cut = model.generate([ASK], SamplingParams(max_new_tokens=2))[0][0]
    assert (cut.text, cut.finish_reason) == ("echo: ping", "length")


def test_server_errors_and_rate_limits_are_retried(server):
    flaky = load_model(f"openai:flaky@{server.url}", **FAST).generate([ASK], SamplingParams())[0][0]
    assert flaky.text.startswith("echo: ping")
    limited = load_model(f"openai:ratelimited@{server.url}", **FAST).generate([ASK], SamplingParams())[0][0]
    assert limited.text.startswith("echo: ping")


def test_a_rejected_request_becomes_an_error_completion_not_an_exception(server):
    completion = load_model(f"openai:broken@{server.url}", **FAST).generate([ASK], SamplingParams())[0][0]
    assert completion.finish_reason == "error"
    assert "HTTP 400" in completion.error


def test_api_key_comes_from_the_environment(server, monkeypatch):
    server.required_key = "sekrit"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelError, match="set OPENAI_API_KEY to a valid key"):
        load_model(f"openai:echo@{server.url}", **FAST).generate([ASK], SamplingParams())
    monkeypatch.setenv("MY_KEY", "sekrit")
    model = load_model(f"openai:echo@{server.url}", api_key_env="MY_KEY", **FAST)
    assert model.generate([ASK], SamplingParams())[0][0].text.startswith("echo: ping")


def test_wrong_path_names_the_fix(server):
    base = server.url.removesuffix("/v1")
    with pytest.raises(ModelError, match="ends with /v1"):
        load_model(f"openai:echo@{base}", **FAST).generate([ASK], SamplingParams())


def test_unreachable_server_is_one_clear_error():
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = load_model(f"openai:echo@http://127.0.0.1:{port}/v1", max_retries=2, **FAST)
    started = time.monotonic()
    with pytest.raises(ModelError, match="Cannot reach the OpenAI-compatible server .* start the server"):
        model.generate([ASK] * 4, SamplingParams())
    assert time.monotonic() - started < 5


def test_slow_server_times_out_with_a_clear_error(server):
    model = load_model(f"openai:slow@{server.url}", timeout=0.2, max_retries=1, backoff=0.01)
    with pytest.raises(ModelError, match="did not answer within 0.2 s"):
        model.generate([ASK], SamplingParams())
