#!/usr/bin/env bash
# Regenerates identity.rs from identity.proto with tonic-prost-build, in a throw-away project,
# so the tower-mtls crate needs no build script (it would run for every user of the library)
# and building the example needs no protoc. Needs protoc (Debian: protobuf-compiler).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cat >"$work/Cargo.toml" <<'TOML'
[package]
name = "regenerate-grpc-example"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
tonic-prost-build = "0.14"
TOML
cat >"$work/src/main.rs" <<'RS'
fn main() {
    let dir = std::env::args().nth(1).expect("directory of identity.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&dir)
        .compile_protos(&[format!("{dir}/identity.proto")], &[dir.clone()])
        .expect("protoc and tonic-prost-build");
}
RS
cargo run --quiet --manifest-path "$work/Cargo.toml" -- "$here"
mv "$here/tower_mtls.example.v1.rs" "$here/identity.rs"
