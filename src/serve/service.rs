//! The hyper service of one connection: what [`AddConnectionInfo`](crate::peer::AddConnectionInfo)
//! under hyper-util's `TowerToHyperService` does, without cloning the connection's info for
//! every request.
//!
//! `TowerToHyperService` clones the whole tower service for each request (hyper calls through
//! `&self`; a tower service wants `&mut self` and `poll_ready`). Wrapped around
//! `AddConnectionInfo`, that clone copies the [`ConnectionInfo`] (its `Arc`s and span) only to
//! drop it after the call. Here the info stays in the connection's service, and the
//! application's service is called in place when it is ready at once (see
//! [`ConnectionService`]): no clone at all.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use pin_project_lite::pin_project;
use tower_service::Service;
use tracing::Span;

use crate::peer::ConnectionInfo;

/// Serves one connection's requests with `inner`, each carrying `info` (and run in its span).
///
/// hyper calls through `&self`; a tower service wants `&mut self` and `poll_ready` first.
/// When the service is ready at once (most are: routers, `service_fn`, this crate's layer),
/// it is called in place, with no clone; one that is not goes into the request's future, which
/// waits for it, and the connection carries on with a fresh clone (hyper-util's
/// `TowerToHyperService` clones for every request).
pub(super) struct ConnectionService<S> {
    inner: RefCell<S>,
    /// Cloned to replace the instance a waiting request takes along.
    template: S,
    info: Option<ConnectionInfo>,
}

impl<S> ConnectionService<S> {
    /// `info` is `None` for plain-HTTP connections (no TLS, nothing to attach).
    pub(super) fn new(inner: S, info: Option<ConnectionInfo>) -> Self
    where
        S: Clone,
    {
        Self {
            inner: RefCell::new(inner.clone()),
            template: inner,
            info,
        }
    }
}

impl<S, B> hyper::service::Service<http::Request<B>> for ConnectionService<S>
where
    S: Service<http::Request<B>> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = InSpan<Call<S, http::Request<B>>>;

    #[inline]
    fn call(&self, mut req: http::Request<B>) -> Self::Future {
        let span = self.info.as_ref().and_then(|info| {
            req.extensions_mut().insert(info.clone());
            InSpan::<()>::live(info.span())
        });
        let _entered = span.as_ref().map(Span::enter);
        let waiting = match self.inner.try_borrow_mut() {
            Ok(mut service) => {
                // A readiness check that cannot wait (no waker). Ready: called in place.
                if let Poll::Ready(Ok(())) =
                    service.poll_ready(&mut Context::from_waker(Waker::noop()))
                {
                    // Built in place: the future (with the request in it) is large, and every
                    // move of it is a copy.
                    return InSpan {
                        span: span.clone(),
                        inner: Call::Called {
                            future: service.call(req),
                        },
                    };
                }
                // Not ready: this very instance may hold a place in a queue (a concurrency
                // limit's semaphore), so it is the one that waits, polled with the
                // connection's waker; the connection keeps a fresh clone. An error (it need
                // not be `Send`, so it is not kept) is asked for again the same way.
                std::mem::replace(&mut *service, self.template.clone())
            }
            // Not reachable (hyper does not call back into a service from its call), but
            // never a panic: a clone waits.
            Err(_) => self.template.clone(),
        };
        drop(_entered);
        InSpan {
            span,
            inner: Call::waiting(waiting, req),
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
    /// A request's call: made already, or waiting for its instance of the service to be ready.
    #[project = CallProj]
    pub(super) enum Call<S, R>
    where
        S: Service<R>,
    {
        Called { #[pin] future: S::Future },
        Waiting { service: S, request: Option<R> },
    }
}

impl<S: Service<R>, R> Call<S, R> {
    #[cold]
    fn waiting(service: S, request: R) -> Self {
        Self::Waiting {
            service,
            request: Some(request),
        }
    }
}

impl<S: Service<R>, R> Future for Call<S, R> {
    type Output = Result<S::Response, S::Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                CallProj::Called { future } => return future.poll(cx),
                CallProj::Waiting { service, request } => {
                    ready!(service.poll_ready(cx))?;
                    // Taken exactly once: the state moves on to `Called` right here.
                    let Some(request) = request.take() else {
                        return Poll::Pending;
                    };
                    let future = service.call(request);
                    self.set(Self::Called { future });
                }
            }
        }
    }
}
