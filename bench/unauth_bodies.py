"""Memory of the server while unauthenticated clients send large bodies (issue 21, item 4).

    .venv/bin/python bench/unauth_bodies.py                         # this tree's src/
    .venv/bin/python bench/unauth_bodies.py --src /tmp/old/src      # another tree, to compare

Starts `trustledger serve` (one process) on 127.0.0.1 over a fresh SQLite ledger with the
Sesame policy, reads its resident memory (VmRSS), then lets `--clients` clients at once each
send `POST /v1/events/batch` with a made-up API key and a `--megabytes` MiB body (declared in
`Content-Length`, sent as fast as the server takes it, stopping as soon as it answers).
Prints the server's resident memory before, its peak during the flood (sampled every 20 ms,
and the kernel's high-water mark VmHWM), and what the clients were answered. Bounded in
count and time (`--timeout`); loopback only.
"""

from __future__ import annotations

import argparse
import collections
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNKNOWN = "tl_" + "A" * 43


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A ``/proc/PID/status`` memory field, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found for process {pid}")


def flood_one(port: int, size: int, deadline: float) -> str:
    """Send one unauthenticated request announcing ``size`` body bytes; the status line."""
    head = (f"POST /v1/events/batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {UNKNOWN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    chunk = b"x" * 65536
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while time.monotonic() < deadline:
            events = selector.select(timeout=0.5)
            readable = any(mask & selectors.EVENT_READ for _, mask in events)
            if readable:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, ConnectionError):
                    data = b""
                answer += data
                if b"\r\n" in answer or not data:
                    break
            elif any(mask & selectors.EVENT_WRITE for _, mask in events) and sent < size:
                try:
                    sent += sock.send(chunk[: size - sent])
                except BlockingIOError:
                    pass
                except ConnectionError:
                    break
            elif sent >= size:
                selector.modify(sock, selectors.EVENT_READ)
        selector.close()
    status = answer.split(b"\r\n", 1)[0].decode("latin-1") or "(no answer)"
    return f"{status} after {sent / 2 ** 20:.1f} MiB sent"


def main() -> None:
    """Run the measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="the source tree to serve (default: this tree's src/)")
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--megabytes", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    size = int(args.megabytes * 2 ** 20)
    with tempfile.TemporaryDirectory(prefix="tl-bench-unauth-") as folder:
        url = f"sqlite:///{Path(folder) / 'ledger.db'}"
        env = {**os.environ, "PYTHONPATH": str(args.src), "TRUSTLEDGER_DATA": folder}
        setup = ("from trustledger.principals import ServiceLedger\n"
                 "from trustledger.scoring import publish_policy\n"
                 f"with ServiceLedger.open({url!r}) as ledger:\n"
                 f"    publish_policy(ledger, {str(ROOT / 'policies' / 'sesame.yaml')!r})\n")
        subprocess.run([sys.executable, "-c", setup], env=env, check=True)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-c", "from trustledger.cli import app; app()", "serve",
             "--host", "127.0.0.1", "--port", str(port), "--database-url", url],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            start = time.monotonic()
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() - start > 60 or server.poll() is not None:
                        raise RuntimeError("the server did not start") from None
                    time.sleep(0.1)
            with socket.create_connection(("127.0.0.1", port)) as warm:  # one request first
                warm.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while warm.recv(65536):
                    pass
            time.sleep(1.0)
            before = memory_kib(server.pid)
            peak = [before]
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.02):
                    peak[0] = max(peak[0], memory_kib(server.pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            deadline = time.monotonic() + args.timeout
            results: list[str] = []
            lock = threading.Lock()

            def client() -> None:
                outcome = flood_one(port, size, deadline)
                with lock:
                    results.append(outcome)

            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            began = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=args.timeout + 30)
            elapsed = time.monotonic() - began
            time.sleep(0.5)
            done.set()
            sampler.join()
            high = memory_kib(server.pid, "VmHWM")
            after = memory_kib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    answers = collections.Counter(r.split(" after ")[0] for r in results)
    sent = sorted(float(r.split(" after ")[1].split()[0]) for r in results)
    print(f"source tree: {args.src}")
    print(f"{args.clients} clients x {args.megabytes:g} MiB, unknown key, {elapsed:.1f} s")
    print(f"answers: {dict(answers)}")
    print(f"MiB sent per client: min {sent[0]:.1f}, max {sent[-1]:.1f}")
    print(f"server RSS before {before / 1024:.0f} MiB, peak sampled {peak[0] / 1024:.0f} MiB, "
          f"VmHWM {high / 1024:.0f} MiB, after {after / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
