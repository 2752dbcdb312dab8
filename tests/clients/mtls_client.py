"""Python's ssl module as an mTLS client.

Usage: python3 mtls_client.py PORT PATH CA_PEM [CERT_PEM KEY_PEM]
Prints "STATUS <code>" and the body, or "ERROR <exception>"; exits 0 on HTTP 200.
"""
import http.client
import ssl
import sys


def main() -> int:
    port, path, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    context = ssl.create_default_context(cafile=ca)
    if len(sys.argv) >= 6:
        context.load_cert_chain(sys.argv[4], sys.argv[5])
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=20)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        print("STATUS", response.status)
        print(response.read().decode())
        return 0 if response.status == 200 else 1
    except Exception as error:  # the test reads the message
        print("ERROR", repr(error))
        return 1
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
