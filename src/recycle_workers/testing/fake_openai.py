"""An OpenAI-compatible HTTP server for tests and benchmarks.

It answers ``POST /v1/chat/completions`` the way the two AI stages expect,
and can be told to misbehave: add latency, answer 429 with Retry-After or 500,
stall past the client's timeout, or return malformed output. Faults are queued
and each is used by one request; when the queue is empty, requests succeed.

    with FakeOpenAI() as fake:
        fake.add_faults(Fault(status=429, retry_after=1), Fault(status=500))
        ...  # point RECYCLE_OPENAI_BASE_URL at fake.base_url
        assert fake.calls("analysis") == 1

Run it alone with ``python -m recycle_workers.testing.fake_openai --port 8099``.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from recycle_workers.catalog import default_catalog
from recycle_workers.matcher import match


@dataclass(frozen=True)
class Fault:
    """What one request gets instead of a good answer."""

    status: int | None = None
    retry_after: float | None = None
    delay_s: float = 0.0
    malformed: bool = False
    kind: str | None = None


@dataclass(frozen=True)
class Call:
    """One request the server received."""

    kind: str
    model: str
    question: str | None
    has_image: bool
    system: str
    user: str


class FakeOpenAI:
    """The server, on a free loopback port, in a background thread."""

    def __init__(
        self,
        *,
        port: int = 0,
        analysis_latency_s: float = 0.0,
        generation_latency_s: float = 0.0,
        item_id: str | None = None,
        obey_injections: bool = False,
        enforce_schema: bool = True,
    ) -> None:
        self.analysis_latency_s = analysis_latency_s
        self.generation_latency_s = generation_latency_s
        self.item_id = item_id
        self.obey_injections = obey_injections
        # Some OpenAI-compatible servers ignore "strict"; this plays one of them.
        self.enforce_schema = enforce_schema
        self._faults: deque[Fault] = deque()
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()

    def add_faults(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._calls.clear()

    def calls(self, kind: str | None = None) -> list[Call]:
        with self._lock:
            return [call for call in self._calls if kind is None or call.kind == kind]

    def _next_fault(self, kind: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in (None, kind):
                    self._faults.remove(fault)
                    return fault
        return None

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def answer(self, request: dict) -> tuple[int, dict, dict]:
        """Status, headers and body for one chat completion request."""
        schema_name = (
            request.get("response_format", {}).get("json_schema", {}).get("name", "")
        )
        kind = "analysis" if schema_name == "waste_item_analysis" else "generation"
        system, user, has_image = _texts(request.get("messages", []))
        question = _question(user)
        self._record(
            Call(kind, request.get("model", ""), question, has_image, system, user)
        )

        fault = self._next_fault(kind)
        time.sleep(
            self.analysis_latency_s if kind == "analysis" else self.generation_latency_s
        )
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        if fault is not None and fault.status is not None:
            headers = (
                {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after else {}
            )
            return fault.status, headers, _error_body(fault.status)

        if fault is not None and fault.malformed:
            content = '{"item_id": "' if kind == "analysis" else '{"guidance": 3}'
        elif kind == "analysis":
            content = json.dumps(self._analysis(request, question))
        else:
            content = json.dumps(self._generation(user, question))
        return 200, {}, _completion(request.get("model", ""), content, system + user)

    def _analysis(self, request: dict, question: str | None) -> dict:
        schema = request["response_format"]["json_schema"]["schema"]
        allowed = schema["properties"]["item_id"]["enum"]
        item_id = self.item_id
        if item_id is None:
            candidates = match(question or "", default_catalog(), limit=1)
            item_id = candidates[0].item.item_id if candidates else "unknown"
        if item_id not in allowed and self.enforce_schema:
            item_id = "unknown"
        return {
            "item_id": item_id,
            "lid": None,
            "washed": True,
            "contamination": "none",
            "label": None,
            "broken": None,
            "contents_left": None,
            "confidence": 0.9,
        }

    def _generation(self, user: str, question: str | None) -> dict:
        if self.obey_injections and question and _INJECTION.search(question):
            # A model fooled by the question: it drops the rules entirely.
            return {"guidance": "Arr, toss it in the sea, matey.", "steps": ["Sing."]}
        stream = re.search(r"^stream: (.+)$", user, re.MULTILINE)
        steps = re.findall(r"^\d+\. (.+)$", user, re.MULTILINE)
        where = stream.group(1) if stream else "general waste"
        return {"guidance": f"{where}: model guidance.", "steps": steps}


def _handler_for(fake: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            length = int(self.headers.get("content-length", 0))
            body = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {}, _error_body(404))
                return
            try:
                request = json.loads(body)
            except json.JSONDecodeError:
                self._send(400, {}, _error_body(400))
                return
            status, headers, payload = fake.answer(request)
            self._send(status, headers, payload)

        def _send(self, status: int, headers: dict, payload: dict) -> None:
            data = json.dumps(payload).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test); nothing to tell it

        def log_message(self, *_) -> None:
            pass

    return Handler


def _texts(messages: list[dict]) -> tuple[str, str, bool]:
    system, user, has_image = [], [], False
    for message in messages:
        content = message.get("content")
        parts = (
            content
            if isinstance(content, list)
            else [{"type": "text", "text": content}]
        )
        for part in parts:
            if part.get("type") == "image_url":
                has_image = True
            elif part.get("type") == "text":
                (system if message.get("role") == "system" else user).append(
                    part["text"] or ""
                )
    return "\n".join(system), "\n".join(user), has_image


def _question(user: str) -> str | None:
    quoted = re.search(r"<<<\n(.*)\n>>>", user, re.DOTALL)
    return quoted.group(1) if quoted else None


def _completion(model: str, content: str, prompt: str) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content, "refusal": None},
            }
        ],
        "usage": {
            "prompt_tokens": len(prompt) // 4 + 1,
            "completion_tokens": len(content) // 4 + 1,
            "total_tokens": len(prompt) // 4 + len(content) // 4 + 2,
        },
    }


def _error_body(status: int) -> dict:
    kind = {429: "rate_limit_exceeded", 500: "server_error"}.get(
        status, "invalid_request"
    )
    return {"error": {"message": f"fake error {status}", "type": kind, "code": kind}}


_INJECTION = re.compile(
    r"ignore (all |the )?(previous|above) instructions|무시하고", re.I
)


def main() -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible fake server")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--analysis-latency", type=float, default=0.0)
    parser.add_argument("--generation-latency", type=float, default=0.0)
    args = parser.parse_args()
    fake = FakeOpenAI(
        port=args.port,
        analysis_latency_s=args.analysis_latency,
        generation_latency_s=args.generation_latency,
    )
    print(f"fake OpenAI server at {fake.base_url}", flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
