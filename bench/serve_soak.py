#!/usr/bin/env python3
"""A bounded soak of `kvsqueeze serve` on the loopback: for --seconds, --clients threads
send a random mix of what users send (completions and chats, whole and streamed, some
with a press; clients that hang up mid-stream or before a whole answer; saved contexts
created, persisted, asked and deleted; listings, metrics; malformed and unauthorised
requests), while the server's resident memory, open descriptors and threads are sampled.

It fails (exit 1) on any 5xx, any answer other than the one expected, a server that
dies, or growth after warm-up: descriptors above the warm level + 4, or resident memory
rising through the second half of the run by more than --max-growth-mib. Prints the
samples (one a minute, or every sample for short runs) and the request counts.

Standard library only. Example (docs/SERVER.md):
  bench/serve_soak.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf --seconds 1800
"""
import argparse
import collections
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "soak-key"
WORDS = ("the cat sat on a mat while Tom went to the shop to buy milk and bread for his mother "
         "Lily liked to play outside in the park with her dog Max every sunny day").split()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    """VmRSS (KiB), open descriptors, threads of a process."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return int(fields["VmRSS"][0]), len(os.listdir(f"/proc/{pid}/fd")), int(fields["Threads"][0])


class Soak:
    def __init__(self, args):
        self.args = args
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="kvsqueeze-soak-")
        cmd = [args.cli, "serve", "-m", args.model, "--port", str(self.port), "-t", str(args.threads),
               "--parallel", "4", "--max-queue", "32", "--api-key", KEY, "--context-dir", self.dir,
               "--context-memory-mib", "8", "--max-context", str(args.max_context)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.counts = collections.Counter()
        self.failures = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.samples = []  # (seconds, rss KiB, fds, threads)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"serve exited at start: {self.proc.stderr.read()}")
            try:
                if self.call("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        sys.exit("serve did not answer /health within 60 s")

    # ---- requests ----------------------------------------------------------------------

    def connection(self, timeout=120):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def call(self, method, path, body=None, key=KEY, raw=None):
        c = self.connection()
        try:
            data = raw if raw is not None else (json.dumps(body) if body is not None else None)
            headers = {"Authorization": f"Bearer {key}"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def expect(self, action, status, body, allowed):
        with self.lock:
            self.counts[(action, status)] += 1
            if status not in allowed:
                self.failures.append(f"{action}: {status} {body[:300]!r}")

    def prompt(self, rng, n):
        return " ".join(rng.choice(WORDS) for _ in range(n))

    def press(self, rng):
        return rng.choice([None, {"preset": "snapkv", "budget": 32, "window": 8},
                           {"preset": "ada-snapkv", "budget": 24, "window": 4}, {"preset": "none"}])

    def completion_body(self, rng, chat):
        body = {"max_tokens": rng.randint(4, 48), "temperature": rng.choice([0, 0.8])}
        if chat:
            body["messages"] = [{"role": "user", "content": self.prompt(rng, rng.randint(3, 60))}]
        else:
            body["prompt"] = self.prompt(rng, rng.randint(3, 120))
        if (p := self.press(rng)) is not None:
            body["kv_press"] = p
        return body

    def stream(self, rng, chat, hang_up):
        body = self.completion_body(rng, chat)
        body["stream"] = True
        path = "/v1/chat/completions" if chat else "/v1/completions"
        c = self.connection()
        try:
            c.request("POST", path, body=json.dumps(body), headers={"Authorization": f"Bearer {KEY}",
                                                                   "Content-Type": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                return self.expect("stream", r.status, r.read(), {429})
            if hang_up:
                r.read(rng.randint(1, 200))  # a few bytes, then gone
                c.sock.shutdown(socket.SHUT_RDWR)
                return self.expect("stream hang-up", 200, b"", {200})
            text = r.read().decode()
            done = text.rstrip().endswith("data: [DONE]")
            self.expect("stream", 200 if done else 599, text[-200:].encode(), {200})
        finally:
            c.close()

    def whole_hang_up(self, rng):
        # Sends a whole request and closes at once: the answer is written to nobody.
        body = json.dumps(self.completion_body(rng, False)).encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
                      b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        self.expect("whole hang-up", 200, b"", {200})

    def contexts(self, rng):
        persist = rng.random() < 0.5
        body = {"text": self.prompt(rng, rng.randint(20, 150)), "persist": persist,
                "kv_press": rng.choice([{"preset": "snapkv", "budget": 16, "window": 4}, {"preset": "none"}])}
        status, raw = self.call("POST", "/v1/contexts", body)
        self.expect("context create", status, raw, {200, 429})
        if status != 200:
            return
        cid = json.loads(raw)["id"]
        for _ in range(rng.randint(1, 3)):
            status, raw = self.call("POST", "/v1/completions", {"context_id": cid, "prompt": " " + self.prompt(rng, 5),
                                                                 "max_tokens": 8})
            # 404: a context that was not persisted may have left memory under the cap.
            self.expect("context ask", status, raw, {200, 429} | ({404} if not persist else set()))
        if rng.random() < 0.9:  # some stay behind, to be listed and evicted
            status, raw = self.call("DELETE", f"/v1/contexts/{cid}")
            self.expect("context delete", status, raw, {200} | ({404} if not persist else set()))

    def misc(self, rng):
        kind = rng.randrange(6)
        if kind == 0:
            status, raw = self.call("GET", "/v1/contexts")
            self.expect("list contexts", status, raw, {200})
        elif kind == 1:
            status, raw = self.call("GET", "/metrics")
            self.expect("metrics", status, raw, {200})
        elif kind == 2:
            status, raw = self.call("POST", "/v1/completions", raw="{not json")
            self.expect("malformed", status, raw, {400})
        elif kind == 3:
            status, raw = self.call("GET", "/v1/models", key="wrong")
            self.expect("wrong key", status, raw, {401})
        elif kind == 4:
            status, raw = self.call("POST", "/v1/completions", {"prompt": "x", "kv_press": {"preset": "snapkv", "budget": 2}})
            self.expect("impossible budget", status, raw, {400})
        else:
            status, raw = self.call("GET", "/health")
            self.expect("health", status, raw, {200})

    def client(self, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            r = rng.random()
            try:
                if r < 0.25:
                    chat = rng.random() < 0.4
                    status, raw = self.call("POST", "/v1/chat/completions" if chat else "/v1/completions",
                                            self.completion_body(rng, chat))
                    self.expect("whole", status, raw, {200, 429})
                elif r < 0.50:
                    self.stream(rng, rng.random() < 0.4, hang_up=False)
                elif r < 0.60:
                    self.stream(rng, False, hang_up=True)
                elif r < 0.65:
                    self.whole_hang_up(rng)
                elif r < 0.80:
                    self.contexts(rng)
                else:
                    self.misc(rng)
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failures.append(f"connection: {e!r}")
            if self.proc.poll() is not None:
                with self.lock:
                    self.failures.append(f"serve died with {self.proc.returncode}: {self.proc.stderr.read()[-2000:]}")
                self.stop.set()

    def sampler(self, t0):
        while not self.stop.wait(self.args.sample_every):
            if self.proc.poll() is None:
                self.samples.append((time.monotonic() - t0, *proc_status(self.proc.pid)))

    def run(self):
        t0 = time.monotonic()
        self.samples.append((0.0, *proc_status(self.proc.pid)))
        threads = [threading.Thread(target=self.client, args=(i,)) for i in range(self.args.clients)]
        threads.append(threading.Thread(target=self.sampler, args=(t0,)))
        for t in threads:
            t.start()
        self.stop.wait(self.args.seconds)
        self.stop.set()
        for t in threads:
            t.join()
        time.sleep(1.0)  # hung-up sessions leave at their next step
        if self.proc.poll() is None:
            self.samples.append((time.monotonic() - t0, *proc_status(self.proc.pid)))
        alive = self.proc.poll() is None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        return alive

    def report(self, alive):
        a = self.args
        print(f"soak: {a.seconds:.0f} s, {a.clients} clients, model {os.path.basename(a.model)}")
        every = 60 if a.seconds >= 600 else a.sample_every
        print(f"{'t (s)':>7} {'RSS MiB':>8} {'fds':>5} {'threads':>7}")
        last = -every
        for t, rss, fds, thr in self.samples:
            if t - last >= every or (t, rss, fds, thr) == self.samples[-1]:
                print(f"{t:7.0f} {rss / 1024:8.1f} {fds:5d} {thr:7d}")
                last = t
        total = sum(self.counts.values())
        print(f"requests: {total}")
        for (action, status), n in sorted(self.counts.items()):
            print(f"  {action:18s} {status}: {n}")
        problems = list(self.failures)
        if not alive:
            problems.append("the server was not running at the end")
        # Growth after warm-up: the first quarter of the run warms pools and caches.
        warm = [s for s in self.samples if s[0] >= a.seconds / 4]
        if len(warm) >= 2:
            half = [s for s in self.samples if s[0] >= a.seconds / 2]
            rss_rise = (max(s[1] for s in half) - half[0][1]) / 1024 if half else 0.0
            fds_rise = self.samples[-1][2] - warm[0][2]
            print(f"after warm-up: RSS {warm[0][1] / 1024:.1f} -> {self.samples[-1][1] / 1024:.1f} MiB "
                  f"(rise through the second half {rss_rise:.1f} MiB), descriptors {warm[0][2]} -> {self.samples[-1][2]}")
            if fds_rise > 4:
                problems.append(f"descriptors grew by {fds_rise}")
            if rss_rise > a.max_growth_mib:
                problems.append(f"resident memory rose {rss_rise:.1f} MiB through the second half")
        for p in problems[:20]:
            print("FAIL", p)
        print("soak passed" if not problems else f"soak failed: {len(problems)} problems")
        return not problems


def main():
    default_cli = os.environ.get("KVSQUEEZE_CLI") or shutil.which("kvsqueeze") or os.path.join(ROOT, "build/release/src/kvsqueeze")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(ROOT, "..", "shared", "models", "stories260K", "stories260K.gguf"))
    p.add_argument("--cli", default=default_cli)
    p.add_argument("--seconds", type=float, default=1800)
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-context", type=int, default=512)
    p.add_argument("--sample-every", type=float, default=5.0)
    p.add_argument("--max-growth-mib", type=float, default=16.0)
    args = p.parse_args()
    soak = Soak(args)
    alive = soak.run()
    sys.exit(0 if soak.report(alive) else 1)


if __name__ == "__main__":
    main()
