"""The webhook sender's HTTP/1.1 (h11 over the guarded socket) against scripted receivers.

Each receiver here is a real socket on 127.0.0.1 that reads one request at a time and
writes the bytes a test scripts: answers a well-behaved web server gives (chunked, with
trailers, an interim 100, HTTP/1.0), and ones it must survive (too long, not HTTP).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from trustledger.cascades import Egress
from trustledger.cascades.egress import ProtocolError, Sender

LOOPBACK = Egress.parse("127.0.0.1")
HEADERS = {"content-type": "application/json", "webhook-id": "msg_a",
           "webhook-timestamp": "0", "webhook-signature": "v1,x"}


class Scripted:
    """A receiver answering each request with the next of ``answers`` (raw bytes)."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook?x=1"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                reader = conn.makefile("rb")
                while self.answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = reader.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:"))
                    self.requests.append(head + reader.read(length))
                    answer = self.answers.pop(0)
                    conn.sendall(answer)
                    if b"Connection: close" in answer or b"HTTP/1.0" in answer:
                        break

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


@contextmanager
def scripted(answers: list[bytes]) -> Iterator[tuple[Scripted, Sender]]:
    receiver = Scripted(answers)
    sender = Sender(LOOPBACK, timeout=5.0)
    try:
        yield receiver, sender
    finally:
        sender.close()
        receiver.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_the_request_is_one_http_post_with_the_body_and_headers() -> None:
    with scripted([OK]) as (receiver, sender):
        host, port = receiver.listener.getsockname()
        assert sender.post(receiver.url, b'{"a":1}', HEADERS) == 200
    (request,) = receiver.requests
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hook?x=1 HTTP/1.1" and body == b'{"a":1}'
    fields = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    assert fields[b"host"] == f"{host}:{port}".encode()
    assert fields[b"content-length"] == b"7" and fields[b"webhook-id"] == b"msg_a"


def test_chunked_answers_with_trailers_and_an_interim_100_keep_the_connection() -> None:
    chunked = (b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: yes\r\n\r\n")
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    with scripted([chunked, interim, OK]) as (receiver, sender):
        assert [sender.post(receiver.url, b"{}", HEADERS) for _ in range(3)] == [202, 200, 200]
    assert receiver.connections == 1 and len(receiver.requests) == 3


def test_a_closing_or_http_1_0_answer_is_not_kept() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    old = b"HTTP/1.0 204 No Content\r\n\r\n"
    with scripted([closing, old, OK]) as (receiver, sender):
        assert [sender.post(receiver.url, b"{}", HEADERS) for _ in range(3)] == [200, 204, 200]
    assert receiver.connections == 3


def test_an_answer_longer_than_the_limit_is_cut_and_its_connection_closed() -> None:
    size = Sender.MAX_BODY + 10
    long = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
    with scripted([long, OK]) as (receiver, sender):
        assert sender.post(receiver.url, b"{}", HEADERS) == 200
        assert sender.post(receiver.url, b"{}", HEADERS) == 200
    assert receiver.connections == 2


def test_an_answer_that_is_not_http_is_a_protocol_error() -> None:
    with scripted([b"SMTP ready\r\n\r\n"]) as (receiver, sender), \
            pytest.raises(ProtocolError):
        sender.post(receiver.url, b"{}", HEADERS)


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    with scripted([OK]) as (receiver, sender):
        with pytest.raises(ValueError, match="h11 will not send"):
            sender.post(receiver.url, b"{}", {**HEADERS, "webhook-id": "a\r\nX-Evil: 1"})
        assert receiver.requests == []
        assert sender.post(receiver.url, b"{}", HEADERS) == 200  # and the sender goes on
