"""Line generator for the Spark-vs-Brooklet word-count comparison.

Listens on 127.0.0.1:PORT, accepts one client (the engine's socket
receiver), and sends it lines of WORDS random words (from a vocabulary of
VOCAB words, Zipf-distributed by default) at RATE lines per second for
DURATION seconds, paced in 10 ms slices. Python 3 standard library only.

To keep up with hundreds of thousands of lines per second in Python, the
lines are generated once into a pool (a byte string) and each slice sends
the next run of whole lines from it, wrapping around.

It writes one line per event on stdout, flushed, for compare.sh to read:

    listening port=9999 pool_lines=100000 pool_bytes=7512345
    connected t_ms=1795575341000
    second=1 t_ms=1795575342000 sent=50000
    ...
    done t_ms=... target=2000000 sent=2000000 sent_pct=100.00 seconds=40.00 kept_up=yes

`kept_up=no` (and a warning on stderr) when it sent less than 99% of
RATE x DURATION lines: the receiver did not read fast enough (TCP pushed
back) or this process lacked CPU. After DURATION it closes the connection.

    python3 linegen.py --port 9999 --rate 50000 --duration 40
"""

import argparse
import itertools
import random
import select
import socket
import string
import sys
import time

TICK = 0.01  # seconds per pacing slice


def log(text):
    print(text, flush=True)


def now_ms():
    return int(time.time() * 1000)


def make_pool(lines, words_per_line, vocab_size, zipf, seed):
    """Returns (pool bytes, offsets): line i is pool[offsets[i]:offsets[i+1]]."""
    rng = random.Random(seed)
    vocab = set()
    while len(vocab) < vocab_size:
        length = rng.randint(3, 10)
        vocab.add("".join(rng.choices(string.ascii_lowercase, k=length)))
    vocab = sorted(vocab)
    # Zipf-ish: the word of rank r has weight 1 / r^zipf (zipf=0: uniform).
    cum = list(itertools.accumulate(1.0 / (r ** zipf) for r in range(1, vocab_size + 1)))
    words = rng.choices(vocab, cum_weights=cum, k=lines * words_per_line)
    text = [
        " ".join(words[i * words_per_line:(i + 1) * words_per_line]) + "\n"
        for i in range(lines)
    ]
    pool = "".join(text).encode()
    offsets = [0, *itertools.accumulate(len(t) for t in text)]
    return pool, offsets


def send_until(sock, data, deadline):
    """Sends data on a non-blocking socket until done or the deadline; returns bytes sent."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        _, writable, _ = select.select([], [sock], [], min(left, 0.1))
        if not writable:
            continue
        try:
            done += sock.send(view[done:done + (1 << 20)])
        except BlockingIOError:
            continue
    return done


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=int, required=True, help="lines per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds of sending")
    parser.add_argument("--words", type=int, default=10, help="words per line")
    parser.add_argument("--vocab", type=int, default=1000, help="distinct words")
    parser.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent (0 = uniform)")
    parser.add_argument("--pool-lines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--accept-timeout", type=float, default=180, help="seconds to wait for the client")
    args = parser.parse_args()

    pool, offsets = make_pool(args.pool_lines, args.words, args.vocab, args.zipf, args.seed)
    n_pool = args.pool_lines
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.port))
    server.listen(1)
    server.settimeout(args.accept_timeout)
    log(f"listening port={args.port} pool_lines={n_pool} pool_bytes={len(pool)}")
    try:
        peer, _ = server.accept()
    except socket.timeout:
        print(f"linegen: no client connected within {args.accept_timeout:.0f} s", file=sys.stderr)
        return 2
    server.close()  # one client only: later reconnects are refused
    peer.setblocking(False)
    log(f"connected t_ms={now_ms()}")

    total = int(args.rate * args.duration)
    per_slice_cap = max(1, min(args.rate // 10, n_pool))  # at most 100 ms of lines per send
    start = time.monotonic()
    deadline = start + args.duration
    sent = 0          # whole lines sent
    at = 0            # next line of the pool
    next_tick = start
    next_report = 1
    closed = False
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        while now - start >= next_report:
            log(f"second={next_report} t_ms={now_ms()} sent={sent}")
            next_report += 1
        want = min(total, int(args.rate * (now - start))) - sent
        if want > 0:
            k = min(want, per_slice_cap)
            end = at + k
            if end <= n_pool:
                data = pool[offsets[at]:offsets[end]]
            else:
                data = pool[offsets[at]:] + pool[:offsets[end - n_pool]]
            try:
                done = send_until(peer, data, deadline)
                if done < len(data):
                    # Deadline hit mid-slice: count the whole lines, then
                    # finish the line cut short so the receiver sees no fragment.
                    whole = data.count(b"\n", 0, done)
                    if done > 0 and data[done - 1:done] != b"\n":
                        rest_end = data.index(b"\n", done) + 1
                        if send_until(peer, data[done:rest_end], time.monotonic() + 5) == rest_end - done:
                            whole += 1
                    k = whole
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sent += k
            at = (at + k) % n_pool
        next_tick += TICK
        pause = next_tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            next_tick = time.monotonic()  # behind: do not try to catch up in a burst of ticks
    elapsed = time.monotonic() - start
    try:
        peer.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    peer.close()
    pct = 100.0 * sent / total if total else 100.0
    kept_up = pct >= 99.0 and not closed
    log(
        f"done t_ms={now_ms()} target={total} sent={sent} sent_pct={pct:.2f} "
        f"seconds={elapsed:.2f} kept_up={'yes' if kept_up else 'no'}"
    )
    if closed:
        print(f"linegen: the client closed the connection after {sent} lines", file=sys.stderr)
        return 1
    if not kept_up:
        print(
            f"linegen: could not keep up: sent {sent} of {total} lines ({pct:.1f}%) "
            f"in {elapsed:.1f} s; the receiver pushed back or this process lacked CPU",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
