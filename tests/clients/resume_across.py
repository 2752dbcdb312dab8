"""Session resumption across servers with Python's ssl module, driven line by line.

Usage: python3 resume_across.py CA_PEM CERT_PEM KEY_PEM TLS_VERSION

Reads commands on stdin, one per line, and answers each with one line on stdout:

  connect PORT USE SAVE   connect to 127.0.0.1:PORT offering the session named USE ("-": none),
                          send one GET, read the answer, and keep the newest session as SAVE
                          ("-": keep none). Answers "RESUMED <True|False> STATUS <code>" or
                          "ERROR <exception>".
  quit                    exit.

The sessions live in this process, so a ticket issued by one server can be offered to another
(the same SSLContext, as Python requires). TLS_VERSION is 1.2 or 1.3.
"""
import socket
import ssl
import sys


def request(context, port, session):
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    tls = context.wrap_socket(raw, server_hostname="localhost", session=session)
    try:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
        status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "none"
        # On TLS 1.3 the tickets arrive after the handshake: read the session only now.
        return tls.session_reused, status, tls.session
    finally:
        tls.close()


def main() -> int:
    ca, cert, key, version = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    pinned = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    context.minimum_version = pinned
    context.maximum_version = pinned
    sessions = {}
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            return 0
        if words[0] != "connect" or len(words) != 4:
            print("ERROR unknown command", flush=True)
            continue
        port, use, save = int(words[1]), words[2], words[3]
        try:
            reused, status, newest = request(context, port, sessions.get(use))
            if save != "-" and newest is not None:
                sessions[save] = newest
            print("RESUMED", reused, "STATUS", status, flush=True)
        except Exception as error:  # the test reads the message
            print("ERROR", repr(error), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
