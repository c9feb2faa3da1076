#!/usr/bin/env python3
"""Memory per idle keep-alive connection: opens N connections to a running proxy,
sends one request on each (Host 127.0.0.1:PORT, the bench config's), keeps them
open and idle, and reports the proxy's VmRSS before and after.

    python3 benches/idle-conns.py PID N PORT      # e.g. PID of `waypoint run ...`, 3000, 18195

Needs `ulimit -n` above N and backends answering `hello from ...` (the shared
harness's backends.nginx.conf).
"""
import socket
import sys
import time


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def main():
    pid, n, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    before = rss_kib(pid)
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    held = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        got = b""
        while b"hello from" not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("connection closed before the response")
            got += chunk
        held.append(s)
    time.sleep(1)
    after = rss_kib(pid)
    print(f"VmRSS {before / 1024:.1f} MiB idle, {after / 1024:.1f} MiB with {n} idle "
          f"keep-alive connections: {(after - before) / n:.2f} KiB per connection")


if __name__ == "__main__":
    main()
