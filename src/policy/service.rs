//! The service a [`ClientCertLayer`](crate::ClientCertLayer) wraps around the inner one, its
//! future and its response body.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::decide::Shared;
use super::response::Rejection;

/// The middleware [`ClientCertLayer`](crate::ClientCertLayer) applies: checks each request's
/// client certificate, then calls the inner service or answers the rejection itself.
#[derive(Clone)]
pub struct ClientCertService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ClientCertService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for ClientCertService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertService")
            .field("inner", &self.inner)
            .field("required", &self.shared.required)
            .field("rules", &self.shared.policy.rules().len())
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ClientCertService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.shared.authorize(&mut req) {
            Ok(()) => ResponseFuture {
                state: State::Inner {
                    future: self.inner.call(req),
                },
            },
            Err(rejection) => ResponseFuture {
                state: State::Rejected {
                    rejection,
                    shared: self.shared.clone(),
                },
            },
        }
    }
}

pin_project! {
    /// The response future of [`ClientCertService`]: the inner service's, or the rejection.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F },
        Rejected { rejection: Rejection, shared: Arc<Shared> },
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => future
                .poll(cx)
                .map_ok(|response| response.map(ResponseBody::inner)),
            // Built on poll, so the future holds no response it could hand out twice.
            StateProj::Rejected { rejection, shared } => Poll::Ready(Ok(shared
                .respond(rejection)
                .map(|body| ResponseBody::rejection(Full::new(body))))),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "Inner",
            State::Rejected { .. } => "Rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

pin_project! {
    /// The response body of [`ClientCertService`]: the inner service's body, or the rejection's.
    ///
    /// Its data is [`Bytes`] and its error the inner body's, so it works wherever the inner
    /// body does (axum, hyper, the crate's [`MtlsServer`](crate::MtlsServer)).
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Rejection { #[pin] body: Full<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    fn rejection(body: Full<Bytes>) -> Self {
        Self {
            kind: Kind::Rejection { body },
        }
    }
}

/// An empty body, for middleware that answers on its own (tower-http's `TimeoutLayer` answers
/// `408` with `ResponseBody::default()`).
impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::rejection(Full::new(Bytes::new()))
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Rejection { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Rejection { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Rejection { body } => body.size_hint(),
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { body } => f.debug_tuple("ResponseBody::Inner").field(body).finish(),
            Kind::Rejection { body } => f
                .debug_tuple("ResponseBody::Rejection")
                .field(body)
                .finish(),
        }
    }
}
