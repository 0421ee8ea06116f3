#!/usr/bin/env python3
"""A tiny HTTPS (CONNECT) proxy for the enrollment tests: listens on 127.0.0.1 on a port the
kernel chooses, writes it to PORT_FILE, logs each CONNECT target to LOG, relays bytes both ways.
--deny answers every CONNECT with 403. It exits after --lifetime seconds whatever happens, so a
test that forgets it leaves nothing running.

    connect-proxy.py PORT_FILE LOG [--deny] [--lifetime SECONDS]
"""
import argparse
import os
import select
import socket
import sys
import threading


def relay(a, b):
    socks = [a, b]
    try:
        while True:
            r, _, _ = select.select(socks, [], [], 30)
            if not r:
                return
            for s in r:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        return
    finally:
        a.close()
        b.close()


def handle(conn, args, log_lock):
    conn.settimeout(10)
    try:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 8192:
            chunk = conn.recv(4096)
            if not chunk:
                conn.close()
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        with log_lock, open(args.log, "a") as f:
            f.write(line + "\n")
        if len(parts) != 3 or parts[0] != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        if args.deny:
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        host, _, port = parts[1].rpartition(":")
        try:
            up = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        conn.settimeout(None)
        up.settimeout(None)
        relay(conn, up)
    except OSError:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port_file")
    p.add_argument("log")
    p.add_argument("--deny", action="store_true")
    p.add_argument("--lifetime", type=float, default=120)
    args = p.parse_args()

    threading.Timer(args.lifetime, lambda: os._exit(0)).start()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.getsockname()[1])
    os.rename(tmp, args.port_file)
    log_lock = threading.Lock()
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn, args, log_lock), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
