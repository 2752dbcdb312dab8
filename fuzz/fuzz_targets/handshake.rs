//! A whole server handshake with a mutated client flight, in memory: a rustls
//! `ServerConnection` from the fixture's `TlsConfig` (test PKI generated at start-up, TLS 1.2
//! and 1.3, client certificates required and checked against a CRL) is fed the input through
//! `read_tls` / `process_new_packets`, inside `handshake_scope_sync` as the acceptor runs it.
//! Seeds are real rustls clients' flights (`fuzz/src/bin/seeds.rs`); with TLS 1.2 the client's
//! Certificate message travels in the clear, so mutated chains reach the crate's verifier.
//!
//! Properties: no panic; a connection whose handshake completes has a peer chain, and the
//! crate's `ConnectionInfo` can be taken from it.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use rustls::ServerConnection;

fuzz_target!(|data: &[u8]| {
    let config = tower_mtls_fuzz::fixture().config.server_config();
    tower_mtls::tls::handshake_scope_sync(|| {
        let Ok(mut conn) = ServerConnection::new(config) else {
            return;
        };
        let mut input = data;
        let mut sink = Vec::new();
        loop {
            match conn.read_tls(&mut input) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let failed = conn.process_new_packets().is_err();
            while conn.wants_write() {
                if conn.write_tls(&mut sink).is_err() {
                    break;
                }
            }
            sink.clear();
            if failed {
                return;
            }
        }
        if !conn.is_handshaking() {
            assert!(conn.peer_certificates().is_some_and(|c| !c.is_empty()));
            let mut plain = Vec::new();
            let _ = conn.reader().read_to_end(&mut plain);
        }
    });
});
