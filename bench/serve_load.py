#!/usr/bin/env python3
"""Concurrent clients against `kvsqueeze serve` and llama.cpp's `llama-server`.

For each server setting and number of clients, starts the server afresh (so its peak
memory is this run's), warms it up, then lets N clients at once stream one completion
each (a different text of about --prompt-tokens tokens, --gen tokens generated past any
end-of-generation token, greedy) and reports:

  output tok/s             every generated token over the whole run (first request sent to
                           last token received): what the server delivers, prompts included
  decode tok/s             tokens streamed while every client is streaming (from the last
                           first token to the first last token): batched decode speed; "-"
                           when the clients' streams never overlap (prompts read one after
                           another take longer than a stream)
  TTFT p50/p99             request sent -> first streamed token
  gap p50/p99              time between consecutive streamed tokens of one client
  peak RSS                 VmHWM of the server process at the end

Standard library only. Example (docs/BENCHMARKS.md):
  bench/serve_load.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf --prompt-tokens 1024 \\
      --clients 1,2,4,8,16 --setting none --setting ada-snapkv:256 --setting llama
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


class Server:
    """One server process for one setting: 'none', 'PRESET:BUDGET' (kvsqueeze) or 'llama'."""

    def __init__(self, setting, args, clients):
        self.setting = setting
        self.port = free_port()
        # Prompts are cut to about --prompt-tokens by characters per token, so a slot gets
        # 5% more room than that (llama-server refuses a prompt its slot cannot hold).
        ctx = int(args.prompt_tokens * 1.05) + args.gen + 64
        if setting == "llama":
            binary = os.path.join(args.llama_bin, "llama-server")
            cmd = [binary, "-m", args.model, "--host", "127.0.0.1", "--port", str(self.port), "-t", str(args.threads),
                   "-tb", str(args.threads), "-np", str(clients), "-c", str(ctx * clients), "-fa", "on",
                   "--cont-batching", "--no-webui", "-b", "2048", "-ub", "512"]
        else:
            cmd = [args.kvsqueeze, "serve", "-m", args.model, "--port", str(self.port), "-t", str(args.threads),
                   "--parallel", str(clients), "--max-queue", str(clients)]
            if setting != "none":
                preset, budget = setting.split(":")
                cmd += ["--default-press", preset, "--default-budget", budget]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{setting}: server exited: {self.proc.stderr.read()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{setting}: server did not come up")

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def stream_completion(port, prompt, gen, out):
    """Streams one completion; out gets start, token times and the token count."""
    body = json.dumps({"prompt": prompt, "max_tokens": gen, "temperature": 0, "stream": True, "ignore_eos": True,
                       "stream_options": {"include_usage": True}, "cache_prompt": False})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    out["start"] = time.perf_counter()
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        out["error"] = f"HTTP {r.status}: {r.read()[:300]!r}"
        return
    times, usage = [], None
    buf = b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            if not event.startswith(b"data: ") or event == b"data: [DONE]":
                continue
            j = json.loads(event[6:])
            if j.get("usage"):
                usage = j["usage"]
            if j.get("choices") and j["choices"][0].get("text"):
                times.append(time.perf_counter())
    out["times"] = times
    out["tokens"] = usage["completion_tokens"] if usage else len(times)


def texts(path, n, chars):
    with open(path, encoding="utf-8", errors="replace") as f:
        corpus = f.read()
    step = max(1, (len(corpus) - chars) // max(1, n))
    return [corpus[i * step:i * step + chars] for i in range(n)]


def run_clients(server, prompts, gen):
    results = [dict() for _ in prompts]
    threads = [threading.Thread(target=stream_completion, args=(server.port, p, gen, r)) for p, r in zip(prompts, results)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if "error" in r:
            raise RuntimeError(f"{server.setting}: {r['error']}")
    return results


def summarize(results):
    firsts = [r["times"][0] for r in results if r["times"]]
    lasts = [r["times"][-1] for r in results if r["times"]]
    start = min(r["start"] for r in results)
    everyone = max(firsts), min(lasts)  # the window where every client streams
    in_window = sum(1 for r in results for t in r["times"] if everyone[0] < t <= everyone[1])
    window = everyone[1] - everyone[0]
    ttft = [r["times"][0] - r["start"] for r in results if r["times"]]
    gaps = [b - a for r in results for a, b in zip(r["times"], r["times"][1:])]
    return {
        "output_tps": sum(r["tokens"] for r in results) / (max(lasts) - start),
        "decode_tps": in_window / window if window > 0.5 else None,
        "ttft_p50": percentile(ttft, 50), "ttft_p99": percentile(ttft, 99),
        "gap_p50": percentile(gaps, 50) * 1000, "gap_p99": percentile(gaps, 99) * 1000,
        "tokens": sum(r["tokens"] for r in results),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=1024)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--clients", default="1,2,4,8,16")
    ap.add_argument("--setting", action="append", help="none | PRESET:BUDGET | llama (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--text", default=os.path.join(ROOT, "models", "paul_graham_essays.txt"))
    ap.add_argument("--kvsqueeze", default=os.path.join(ROOT, "build", "release", "src", "kvsqueeze"))
    ap.add_argument("--llama-bin", default=os.path.expanduser("~/.cache/kvsqueeze/llama.cpp-native-3.22.1/bin"))
    ap.add_argument("--json", help="append one JSON line per row to this file")
    args = ap.parse_args()
    settings = args.setting or ["none", "ada-snapkv:256", "llama"]
    counts = [int(c) for c in args.clients.split(",")]

    # Characters per token of this text under this model, from one request's usage.
    probe = Server("none", args, 1)
    try:
        sample = texts(args.text, 1, 8000)[0]
        c = http.client.HTTPConnection("127.0.0.1", probe.port)
        c.request("POST", "/v1/completions", json.dumps({"prompt": sample, "max_tokens": 1}), {"Content-Type": "application/json"})
        chars_per_token = len(sample) / json.loads(c.getresponse().read())["usage"]["prompt_tokens"]
    finally:
        probe.stop()
    chars = int(args.prompt_tokens * chars_per_token)

    print(f"model {os.path.basename(args.model)}, prompts of ~{args.prompt_tokens} tokens, {args.gen} generated, "
          f"{args.threads} threads")
    print("| server | clients | decode tok/s (all streaming) | output tok/s | TTFT p50 / p99 (s) | gap p50 / p99 (ms) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for setting in settings:
        for n in counts:
            server = Server(setting, args, n)
            try:
                run_clients(server, texts(args.text, 1, 400), 8)  # warm-up
                s = summarize(run_clients(server, texts(args.text, n, chars), args.gen))
                s.update(setting=setting, clients=n, peak_rss_mib=server.peak_rss_mib(), prompt_tokens=args.prompt_tokens,
                         model=os.path.basename(args.model))
            finally:
                server.stop()
            name = "llama-server" if setting == "llama" else f"kvsqueeze {setting}"
            decode = "-" if s["decode_tps"] is None else f"{s['decode_tps']:.1f}"
            print(f"| {name} | {n} | {decode} | {s['output_tps']:.1f} | {s['ttft_p50']:.2f} / {s['ttft_p99']:.2f} | "
                  f"{s['gap_p50']:.1f} / {s['gap_p99']:.1f} | {s['peak_rss_mib']:.0f} |", flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(s) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
