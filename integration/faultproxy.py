#!/usr/bin/python3
"""A fault-injecting HTTP/1.1 proxy on loopback, in front of a real registry.

    faultproxy.py --target 127.0.0.1:5000 --port-file F [--log L] [RULE...]

It relays every connection to the target byte for byte, reading the requests
(request line, headers, Content-Length body) on their way so that rules can
pick them. Rules, each for the Nth..(N+COUNT-1)th request matching METHOD
(a regex, or '*') and PATH (a regex searched in the request target):

    --drop 'METHOD PATH N BYTES [COUNT]'
        forward the request and BYTES bytes of its body, then close both
        connections (the registry sees a truncated body, the client a reset)
    --status 'METHOD PATH N CODE [COUNT]'
        answer CODE (e.g. 503) without forwarding, and close the connection

N is 1-based; COUNT defaults to 1 (0 = every one from the Nth on). The log
gets one line per request: "METHOD TARGET content-range=R -> forwarded |
dropped after B | status CODE". The listening port (chosen by the system) is
written to --port-file once it accepts. Stdlib only; stops on SIGTERM.
"""
import argparse
import os
import re
import signal
import socket
import sys
import threading

lock = threading.Lock()


class Rule:
    def __init__(self, kind, spec):
        parts = spec.split()
        if len(parts) not in (4, 5):
            raise SystemExit("faultproxy: bad rule %r" % spec)
        self.kind = kind
        self.method = None if parts[0] == "*" else re.compile("^(%s)$" % parts[0])
        self.path = re.compile(parts[1])
        self.first = int(parts[2])
        self.arg = int(parts[3])
        self.count = int(parts[4]) if len(parts) == 5 else 1
        self.seen = 0

    def hit(self, method, target):
        """Counts a matching request; True when this one gets the fault."""
        if self.method and not self.method.match(method):
            return False
        if not self.path.search(target):
            return False
        with lock:
            self.seen += 1
            n = self.seen
        if n < self.first:
            return False
        return self.count == 0 or n < self.first + self.count


class Proxy:
    def __init__(self, target, rules, log):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.rules = rules
        self.log = log

    def record(self, line):
        if self.log:
            with lock, open(self.log, "a") as f:
                f.write(line + "\n")

    def serve(self, port_file):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen(64)
        with open(port_file + ".tmp", "w") as f:
            f.write("%d\n" % srv.getsockname()[1])
        os.rename(port_file + ".tmp", port_file)
        while True:
            c, _ = srv.accept()
            threading.Thread(target=self.connection, args=(c,), daemon=True).start()

    @staticmethod
    def pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (dst,):
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    @staticmethod
    def kill(*socks):
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def connection(self, client):
        try:
            server = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        threading.Thread(target=self.pipe, args=(server, client), daemon=True).start()
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = client.recv(65536)
                    if not data:
                        server.shutdown(socket.SHUT_WR)
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target = (lines[0].split(" ") + ["", ""])[:2]
                headers = {}
                for l in lines[1:]:
                    k, _, v = l.partition(":")
                    headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                chunked = "chunked" in headers.get("transfer-encoding", "").lower()
                desc = "%s %s content-range=%s" % (method, target, headers.get("content-range", "-"))
                fault = None
                for r in self.rules:
                    if r.hit(method, target):
                        fault = r
                        break
                if fault and fault.kind == "status":
                    self.record("%s -> status %d" % (desc, fault.arg))
                    client.sendall(("HTTP/1.1 %d Injected Fault\r\nContent-Type: application/json\r\n"
                                    "Content-Length: 2\r\nConnection: close\r\n\r\n{}" % fault.arg).encode())
                    self.kill(client, server)
                    return
                server.sendall(head + b"\r\n\r\n")
                if chunked:
                    # Not parsed: relay the rest of the connection as it comes.
                    self.record("%s -> forwarded (chunked, unparsed)" % desc)
                    server.sendall(buf)
                    self.pipe(client, server)
                    return
                limit = fault.arg if fault else None
                left, sent = length, 0
                while left > 0:
                    if not buf:
                        buf = client.recv(65536)
                        if not buf:
                            return
                    piece, buf = buf[:left], buf[left:]
                    if limit is not None and sent + len(piece) >= limit:
                        server.sendall(piece[:limit - sent])
                        self.record("%s -> dropped after %d" % (desc, limit))
                        self.kill(client, server)
                        return
                    server.sendall(piece)
                    sent += len(piece)
                    left -= len(piece)
                if limit is not None:
                    # A body shorter than BYTES: drop right after it.
                    self.record("%s -> dropped after %d" % (desc, sent))
                    self.kill(client, server)
                    return
                self.record("%s -> forwarded" % desc)
        except OSError:
            self.kill(client, server)


def main():
    ap = argparse.ArgumentParser(description="fault-injecting HTTP proxy for tests")
    ap.add_argument("--target", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--drop", action="append", default=[])
    ap.add_argument("--status", action="append", default=[])
    a = ap.parse_args()
    rules = [Rule("drop", s) for s in a.drop] + [Rule("status", s) for s in a.status]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Proxy(a.target, rules, a.log).serve(a.port_file)


if __name__ == "__main__":
    main()
