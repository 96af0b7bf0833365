#!/usr/bin/env python3
"""Two attacks on `kvsqueeze serve` that cost nothing to send (docs/SERVER.md, issue 22):
a request head of a million header fields, and more trickling clients (a header line
every half second, never the end of the head) than the server has connection threads,
while `/health` is asked. Prints the server's resident memory around the first and how
long `/health` took beside the second.

Standard library only. Example:
  bench/serve_abuse.py --model ../shared/models/stories260K/stories260K.gguf --trickling 400 --request-timeout 5
"""
import argparse
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

from serve_soak import free_port, proc_status

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default=os.environ.get("KVSQUEEZE_CLI") or shutil.which("kvsqueeze")
                    or os.path.join(ROOT, "build/release/src/kvsqueeze"))
    ap.add_argument("--model", required=True)
    ap.add_argument("--fields", type=int, default=1000000, help="header fields of the flood")
    ap.add_argument("--trickling", type=int, default=400, help="trickling clients")
    ap.add_argument("--request-timeout", default=None, help="passed to serve (left out: the server's default)")
    ap.add_argument("--wait", type=float, default=60, help="longest wait for /health (s)")
    a = ap.parse_args()

    port = free_port()
    extra = ["--request-timeout", a.request_timeout] if a.request_timeout else []
    proc = subprocess.Popen([a.cli, "serve", "-m", a.model, "--port", str(port), "-t", "2", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def rss_mib():
        return proc_status(proc.pid)[0] / 1024

    def health_seconds():
        t0 = time.monotonic()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=a.wait).read()
            return f"{time.monotonic() - t0:.2f} s"
        except OSError as e:
            return f"no answer after {time.monotonic() - t0:.1f} s ({e})"

    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        print(f"idle: resident {rss_mib():.1f} MiB")

        flood = b"GET /health HTTP/1.1\r\n" + b"X-Flood: 0123\r\n" * a.fields
        peak, sampling = [rss_mib()], [True]

        def sample():
            while sampling[0]:
                peak[0] = max(peak[0], rss_mib())
                time.sleep(0.002)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", port)) as s:
            try:
                s.sendall(flood)
            except OSError:
                pass  # the server closed: expected once it has refused
            s.settimeout(5)
            try:
                answer = s.recv(64).split(b"\r\n")[0].decode(errors="replace")
            except OSError as e:
                answer = f"no answer ({e})"
        time.sleep(0.3)
        sampling[0] = False
        sampler.join()
        print(f"{a.fields} header fields ({len(flood) >> 20} MiB): '{answer}' after {time.monotonic() - t0:.2f} s; "
              f"peak resident {peak[0]:.1f} MiB")

        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(a.trickling)]
        for c in slow:
            c.send(b"GET /health HTTP/1.1\r\n")
        trickling = [True]

        def trickle():
            while trickling[0]:
                for c in slow:
                    try:
                        c.send(b"X-Slow: y\r\n")
                    except OSError:
                        pass
                time.sleep(0.5)

        trickler = threading.Thread(target=trickle)
        trickler.start()
        time.sleep(1)
        print(f"/health beside {a.trickling} trickling clients: {health_seconds()}")
        trickling[0] = False
        trickler.join()
        for c in slow:
            c.close()
        print(f"/health after them: {health_seconds()}; resident {rss_mib():.1f} MiB")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
