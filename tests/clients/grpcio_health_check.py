"""Python's grpcio as a gRPC client over mutual TLS: one grpc.health.v1 Check.

Usage: python grpcio_health_check.py PORT CA_PEM [CERT_PEM KEY_PEM]
       python grpcio_health_check.py unix:/PATH
Connects to 127.0.0.1:PORT, checking the server certificate against CA_PEM for the name
"localhost", presenting CERT_PEM/KEY_PEM when given (grpc.ssl_channel_credentials); or to
the Unix socket at PATH with plain gRPC (h2c).
Prints "HEALTH <serving status>" (exit 0) or "STATUS <code> <details>" (exit 1).
Needs grpcio and grpcio-health-checking (.ci/run installs them into a venv).
"""
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def read(path):
    with open(path, "rb") as f:
        return f.read()


def check(channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=20)
    except grpc.RpcError as error:  # the test reads the code and the message
        print("STATUS", error.code().name, error.details())
        return 1
    print("HEALTH", health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return 0


def main() -> int:
    if sys.argv[1].startswith("unix:"):
        # grpc-core (1.57 on) sends the %-encoded socket path as :authority, which is no valid
        # HTTP/2 authority and which hyper's h2 (tonic's server) refuses with PROTOCOL_ERROR
        # (grpc/grpc#38142, hyperium/h2#442): name the server, as grpc-go does for sockets.
        options = [("grpc.default_authority", "localhost")]
        with grpc.insecure_channel(sys.argv[1], options=options) as channel:
            return check(channel)
    port, ca = int(sys.argv[1]), sys.argv[2]
    chain = key = None
    if len(sys.argv) >= 5:
        chain, key = read(sys.argv[3]), read(sys.argv[4])
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(ca), private_key=key, certificate_chain=chain
    )
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        return check(channel)


if __name__ == "__main__":
    sys.exit(main())
