#!/usr/bin/env python3
# Sends one raw HTTP request, read byte for byte from stdin, to vmcryptd over TLS and prints the
# response to stdout. For requests curl refuses to make: NUL bytes, duplicate Content-Length.
# The request travels through stdin so a token in it never shows in a process's arguments.
#
#   rawtls.py HOST:PORT CA-FILE <request >response
import socket
import ssl
import sys


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    ctx.check_hostname = False
    request = sys.stdin.buffer.read()
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(request)
            response = b""
            try:
                while True:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    response += chunk
                    # One response is all we want: stop once its body is complete.
                    head, sep, body = response.partition(b"\r\n\r\n")
                    if sep:
                        for line in head.split(b"\r\n")[1:]:
                            name, _, value = line.partition(b":")
                            if name.strip().lower() == b"content-length" and len(body) >= int(value):
                                raise EOFError
            except (EOFError, ConnectionError, ssl.SSLError, socket.timeout):
                pass
    sys.stdout.buffer.write(response)


main()
