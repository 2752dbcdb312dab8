//! The acceptor's first-byte sniff and plain-HTTP answer (`tls/acceptor.rs`), through the
//! public `MtlsAcceptor::accept` on an in-memory stream that yields the input (in reads of a
//! size the first byte chooses) and then ends.
//!
//! Properties: no panic, no hang; empty input is `PeerClosed`; a first byte that is an
//! ASCII capital letter gets `PlainHttp` and exactly the 400 answer; any other byte but a
//! handshake record (0x16) gets `NotTls` and no answer; a handshake record never gets the
//! plain-HTTP answer.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower_mtls::MtlsAcceptor;
use tower_mtls::tls::HandshakeFailure;

struct Stream {
    input: Vec<u8>,
    at: usize,
    chunk: usize,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = (self.input.len() - self.at)
            .min(self.chunk)
            .min(buf.remaining());
        let at = self.at;
        buf.put_slice(&self.input[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.lock().expect("lock").extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static (tokio::runtime::Runtime, MtlsAcceptor) {
    static RT: OnceLock<(tokio::runtime::Runtime, MtlsAcceptor)> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let acceptor = MtlsAcceptor::new(tower_mtls_fuzz::fixture().config.clone());
        (rt, acceptor)
    })
}

fuzz_target!(|data: &[u8]| {
    // The first input byte picks the read size; the rest is what the client sends.
    let (chunk, input) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c).max(1) * 16, rest.to_vec()),
        None => (1, Vec::new()),
    };
    let first = input.first().copied();
    let written = Arc::new(Mutex::new(Vec::new()));
    let stream = Stream {
        input,
        at: 0,
        chunk,
        written: written.clone(),
    };
    let (rt, acceptor) = runtime();
    let result = rt.block_on(acceptor.accept(stream, None));
    let written = written.lock().expect("lock").clone();
    let plain = b"HTTP/1.1 400 Bad Request\r\n";
    match first {
        None => assert_eq!(
            result.err().map(|e| e.kind()),
            Some(HandshakeFailure::PeerClosed)
        ),
        Some(b) if b.is_ascii_uppercase() => {
            assert_eq!(
                result.err().map(|e| e.kind()),
                Some(HandshakeFailure::PlainHttp)
            );
            assert!(written.starts_with(plain), "{written:?}");
        }
        Some(0x16) => assert!(!written.starts_with(plain)),
        Some(_) => {
            assert_eq!(
                result.err().map(|e| e.kind()),
                Some(HandshakeFailure::NotTls)
            );
            assert!(written.is_empty());
        }
    }
});
