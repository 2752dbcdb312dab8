"""Chained session resumption with Python's ssl module.

Usage: python3 resume_chain.py PORT CA_PEM CERT_PEM KEY_PEM TLS_VERSION WAIT_UNTIL

Connects once (a full handshake), resumes that session once (on TLS 1.3 the server issues a
new ticket on the resumed connection; the client keeps the newest), waits on the wall clock
until WAIT_UNTIL (Unix seconds), then resumes with the newest session. Prints one line per
connection: "CONN <n> RESUMED <True|False> STATUS <code> AT <Unix time it ended>" or
"CONN <n> ERROR <exception>".
TLS_VERSION is 1.2 or 1.3.
"""
import socket
import ssl
import sys
import time


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
        # The newest session: on TLS 1.3 the tickets arrive after the handshake, so read it
        # only now that the response has been read.
        return tls.session_reused, status, tls.session
    finally:
        tls.close()


def main() -> int:
    port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    version, wait_until = sys.argv[5], float(sys.argv[6])
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    pinned = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    context.minimum_version = pinned
    context.maximum_version = pinned
    session = None
    for n in (1, 2, 3):
        if n == 3:
            left = wait_until - time.time()
            if left > 0:
                time.sleep(left)
        try:
            reused, status, newest = request(context, port, session)
            print("CONN", n, "RESUMED", reused, "STATUS", status, "AT", f"{time.time():.3f}", flush=True)
            if newest is not None:
                session = newest
        except Exception as error:  # the test reads the message
            print("CONN", n, "ERROR", repr(error), flush=True)
            if n < 3:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
