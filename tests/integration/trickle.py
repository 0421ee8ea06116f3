#!/usr/bin/env python3
# Slow-client tooling for vmcryptd's denial-of-service test and benchmark (loopback only).
#
#   trickle.py attack --connect ADDR:PORT --source IP --count N [--phase hello|headers|body]
#                     [--interval S] [--duration S] [--reconnect] [--ready FILE] [--out FILE]
#       Opens N connections from source address IP and sends one byte every S seconds, for
#       DURATION seconds: of a TLS ClientHello (hello: the handshake never completes), of request
#       headers after a full handshake (headers), or of a body after complete headers (body).
#       Writes a JSON summary: how many the server refused (closed within --refused-within
#       seconds), when it closed the others (seconds after connect), how many were still open.
#   trickle.py keepalive --connect ADDR:PORT --source IP --path PATH --auth-file FILE --ca-file FILE
#                     --count N --interval S [--out FILE]
#       N requests on one keep-alive connection, S seconds apart; writes how many were answered.
#   trickle.py abort --connect ADDR:PORT --source IP --auth-file FILE
#       Sends a secret PUT's headers, bearer credential included, and part of its body, then
#       closes the connection: the request ends without an answer.
#   trickle.py client --connect ADDR:PORT --source IP --path PATH --auth-file FILE --ca-file FILE
#                     [--duration S] [--out FILE]
#       A well-behaved client: one fresh TLS connection per GET (what a booting VM does), for
#       DURATION seconds; writes requests, errors, p50 and p99 latency in milliseconds.
import argparse
import json
import select
import socket
import ssl
import sys
import time


def hostport(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def client_hello():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="vmcryptd")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class Conn:
    def __init__(self, args, payload):
        self.args, self.payload, self.pos = args, payload, 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((args.source, 0))
        self.t0 = time.monotonic()
        self.closed_at = None
        self.tls = None
        if args.phase == "hello":
            self.sock.setblocking(False)
            try:
                self.sock.connect(hostport(args.connect))
            except BlockingIOError:
                pass
        else:
            self.sock.settimeout(10)
            self.sock.connect(hostport(args.connect))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            # wrap_socket() takes over the descriptor.
            self.tls = self.sock = ctx.wrap_socket(self.sock)
            self.tls.setblocking(False)
        self.next_send = time.monotonic()

    def fileno(self):
        return self.sock.fileno()

    def send_byte(self):
        if self.pos >= len(self.payload):
            return
        b = self.payload[self.pos:self.pos + 1]
        try:
            self.sock.send(b)
            self.pos += 1
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            pass
        except OSError:
            self.close()

    def readable(self):
        # The server sends nothing before the request is complete, except TLS 1.3 session
        # tickets: anything else readable is the close.
        try:
            data = self.sock.recv(4096)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()

    def close(self):
        if self.closed_at is None:
            self.closed_at = time.monotonic() - self.t0
            self.sock.close()


def attack(args):
    hello = client_hello()
    pad = b"X-Pad: " + b"a" * 4000 + b"\r\n\r\n"
    payload = {
        "hello": hello,
        "headers": b"GET /v1/vm/goal HTTP/1.1\r\nHost: vmcryptd\r\n" + pad,
        "body": b"",
    }[args.phase]
    head = b"POST /v1/vm/status HTTP/1.1\r\nHost: vmcryptd\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
    conns, done = [], []
    end = time.monotonic() + args.duration

    def open_one():
        c = Conn(args, payload if args.phase != "body" else b"{" + b" " * 3998)
        if args.phase == "body":
            c.tls.setblocking(True)
            c.tls.sendall(head)
            c.tls.setblocking(False)
        conns.append(c)

    for _ in range(args.count):
        try:
            open_one()
        except OSError as e:
            print(f"trickle: connect failed: {e}", file=sys.stderr)
            break
    if args.ready:
        open(args.ready, "w").close()
    while time.monotonic() < end:
        now = time.monotonic()
        live = [c for c in conns if c.closed_at is None]
        for c in live:
            if now >= c.next_send:
                c.send_byte()
                c.next_send = now + args.interval
        live = [c for c in conns if c.closed_at is None]
        if live:
            for c in poll_readable(live):
                c.readable()
        else:
            time.sleep(0.1)
        for c in [c for c in conns if c.closed_at is not None]:
            conns.remove(c)
            done.append(c)
            if args.reconnect:
                try:
                    open_one()
                except OSError:
                    pass
    still = len(conns)
    for c in conns:
        c.sock.close()
    closes = sorted(round(c.closed_at, 2) for c in done)
    refused = [t for t in closes if t < args.refused_within]
    summary = {"attempted": args.count, "refused": len(refused), "closed": len(closes) - len(refused),
               "close_times": [t for t in closes if t >= args.refused_within], "still_open": still}
    if args.reconnect:
        summary.pop("close_times")
    print(json.dumps(summary), file=open(args.out, "w") if args.out else sys.stdout)


def poll_readable(live):
    p = select.poll()
    by_fd = {c.fileno(): c for c in live}
    for fd in by_fd:
        p.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in p.poll(100)]


def client(args):
    host, port = hostport(args.connect)
    auth = open(args.auth_file).read().strip()
    ctx = ssl.create_default_context(cafile=args.ca_file)
    ctx.check_hostname = False
    req = f"GET {args.path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {auth}\r\nConnection: close\r\n\r\n".encode()
    lat, errors = [], 0
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(args.timeout)
            # Without it Nagle holds the request behind the client Finished until the
            # server's delayed ACK: 40 ms a request.
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.bind((args.source, 0))
            s.connect((host, port))
            with ctx.wrap_socket(s) as t:
                t.sendall(req)
                data = b""
                while True:
                    chunk = t.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                errors += 1
            else:
                lat.append((time.monotonic() - t0) * 1000)
        except OSError:
            errors += 1
    lat.sort()
    pick = lambda q: round(lat[min(len(lat) - 1, int(len(lat) * q))], 2) if lat else None
    out = {"requests": len(lat), "errors": errors, "p50_ms": pick(0.5), "p99_ms": pick(0.99),
           "max_ms": round(lat[-1], 2) if lat else None}
    print(json.dumps(out), file=open(args.out, "w") if args.out else sys.stdout)


def read_response(t):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = t.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = t.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head


def keepalive(args):
    host, port = hostport(args.connect)
    auth = open(args.auth_file).read().strip()
    ctx = ssl.create_default_context(cafile=args.ca_file)
    ctx.check_hostname = False
    req = f"GET {args.path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {auth}\r\n\r\n".encode()
    answered = 0
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(args.timeout)
    s.bind((args.source, 0))
    s.connect((host, port))
    try:
        with ctx.wrap_socket(s) as t:
            for i in range(args.count):
                if i:
                    time.sleep(args.interval)
                t.sendall(req)
                head = read_response(t)
                if not head or not head.startswith(b"HTTP/1.1 200"):
                    break
                answered += 1
    except OSError:
        pass
    print(json.dumps({"answered": answered}), file=open(args.out, "w") if args.out else sys.stdout)


def abort(args):
    host, port = hostport(args.connect)
    auth = open(args.auth_file).read().strip()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(args.timeout)
    s.bind((args.source, 0))
    s.connect((host, port))
    with ctx.wrap_socket(s) as t:
        t.sendall(f"PUT /v1/vm/secrets/os HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {auth}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"value\":\"QUJD".encode())
        time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["attack", "client", "keepalive", "abort"])
    ap.add_argument("--connect", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--phase", choices=["hello", "headers", "body"], default="hello")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--refused-within", type=float, default=1.0)
    ap.add_argument("--reconnect", action="store_true")
    ap.add_argument("--ready")
    ap.add_argument("--out")
    ap.add_argument("--path", default="/v1/vm/goal")
    ap.add_argument("--auth-file")
    ap.add_argument("--ca-file")
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    if not (args.connect.startswith("127.") and args.source.startswith("127.")):
        sys.exit("trickle.py: loopback addresses only")
    {"attack": attack, "client": client, "keepalive": keepalive, "abort": abort}[args.mode](args)


if __name__ == "__main__":
    main()
