//! The hyper service of one connection: what [`AddConnectionInfo`](crate::peer::AddConnectionInfo)
//! under hyper-util's `TowerToHyperService` does, without cloning the connection's info for
//! every request.
//!
//! `TowerToHyperService` clones the whole tower service for each request (hyper calls through
//! `&self`; a tower service wants `&mut self` and `poll_ready`). Wrapped around
//! `AddConnectionInfo`, that clone copies the [`ConnectionInfo`] (its `Arc`s and span) only to
//! drop it after the call. Here the info stays in the connection's service and only the
//! application's service is cloned.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;
use tracing::Span;

use crate::peer::ConnectionInfo;

/// Serves one connection's requests with `inner`, each carrying `info` (and run in its span).
pub(super) struct ConnectionService<S> {
    inner: S,
    info: Option<ConnectionInfo>,
}

impl<S> ConnectionService<S> {
    /// `info` is `None` for plain-HTTP connections (no TLS, nothing to attach).
    pub(super) fn new(inner: S, info: Option<ConnectionInfo>) -> Self {
        Self { inner, info }
    }
}

impl<S, B> hyper::service::Service<http::Request<B>> for ConnectionService<S>
where
    S: Service<http::Request<B>> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = InSpan<Oneshot<S, http::Request<B>>>;

    #[inline]
    fn call(&self, mut req: http::Request<B>) -> Self::Future {
        let span = self.info.as_ref().and_then(|info| {
            req.extensions_mut().insert(info.clone());
            InSpan::<()>::live(info.span())
        });
        InSpan {
            span,
            inner: Oneshot::new(self.inner.clone(), req),
        }
    }
}

pin_project! {
    /// `F`, polled inside `span` when there is one: `tracing`'s `Instrumented`, minus the
    /// enter and exit on every poll when the span is disabled (no subscriber wants it), which
    /// it then stays for good.
    pub(super) struct InSpan<F> {
        span: Option<Span>,
        #[pin]
        inner: F,
    }
}

impl<F> InSpan<F> {
    /// Runs `inner` in `span`, or as it is when the span is disabled.
    pub(super) fn new(inner: F, span: &Span) -> Self {
        Self {
            span: Self::live(span),
            inner,
        }
    }

    fn live(span: &Span) -> Option<Span> {
        (!span.is_disabled()).then(|| span.clone())
    }
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.as_ref().map(Span::enter);
        this.inner.poll(cx)
    }
}

pin_project! {
    /// Waits for the service to be ready, then calls it with the request and drives its future.
    pub(super) struct Oneshot<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        state: State<S, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, R>
    where
        S: Service<R>,
    {
        NotReady { service: S, request: Option<R> },
        Called { #[pin] future: S::Future },
    }
}

impl<S: Service<R>, R> Oneshot<S, R> {
    #[inline]
    fn new(service: S, request: R) -> Self {
        Self {
            state: State::NotReady {
                service,
                request: Some(request),
            },
        }
    }
}

impl<S: Service<R>, R> Future for Oneshot<S, R> {
    type Output = Result<S::Response, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::NotReady { service, request } => {
                    ready!(service.poll_ready(cx))?;
                    // Taken exactly once: the state moves on to `Called` right here.
                    let Some(request) = request.take() else {
                        return Poll::Pending;
                    };
                    let future = service.call(request);
                    state.set(State::Called { future });
                }
                StateProj::Called { future } => return future.poll(cx),
            }
        }
    }
}
