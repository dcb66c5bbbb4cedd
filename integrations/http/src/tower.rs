//! The tower layer: for any `Service<http::Request<B>>` that answers
//! `http::Response<B2>`, such as hyper-util's legacy client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::{error, fmt};

use tower_layer::Layer;
use tower_service::Service;
use upbit_limiter_tokio::RateLimiter;

use crate::body::ResponseBody;
use crate::{inflight, Refused};

/// Puts a limiter in front of an HTTP service: every request waits for its
/// group's permit, and every response (or its absence) is reported.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    limiter: Arc<RateLimiter>,
}

impl RateLimitLayer {
    /// A layer that acquires from `limiter` (share one limiter per IP and pocket).
    pub fn new(limiter: Arc<RateLimiter>) -> Self {
        Self { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limiter: Arc::clone(&self.limiter),
        }
    }
}

/// The service [`RateLimitLayer`] makes.
///
/// `poll_ready` is the inner service's; the future then waits for a permit
/// and calls the inner service at once, so nothing stands between the
/// admission and the send.
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<RateLimiter>,
}

impl<S> RateLimit<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, limiter: Arc<RateLimiter>) -> Self {
        Self { inner, limiter }
    }
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The limiter.
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }
}

/// What [`RateLimit`] fails with.
#[derive(Debug)]
pub enum Error<E> {
    /// The limiter refused the request: it was not sent.
    Refused(Refused),
    /// The inner service failed (reported to the limiter as no response).
    Service(E),
}

impl<E> Error<E> {
    /// The refusal, if the limiter refused.
    pub fn refused(&self) -> Option<&Refused> {
        match self {
            Self::Refused(r) => Some(r),
            Self::Service(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(r) => fmt::Display::fmt(r, f),
            Self::Service(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<E: error::Error + 'static> error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        match self {
            Self::Refused(r) => Some(r),
            Self::Service(e) => Some(e),
        }
    }
}

/// The future of [`RateLimit::call`].
pub type ResponseFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody<B>>, Error<E>>> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RateLimit<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: http_body::Body + Send + 'static,
    ResBody::Error: Send,
{
    type Response = http::Response<ResponseBody<ResBody>>;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Service)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // The clone takes the place of the service that was made ready, which
        // goes into the future (tower's usual hand-over).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = Arc::clone(&self.limiter);
        Box::pin(async move {
            let req = inflight::request_for(
                request.method(),
                request.uri().path(),
                request.headers(),
                request.extensions(),
            );
            let mut flight = inflight::acquire(&limiter, req).await.map_err(Error::Refused)?;
            match inner.call(request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let body = if flight.report_head(parts.status.as_u16(), &parts.headers) {
                        flight.report_418(body).await
                    } else {
                        ResponseBody::plain(body)
                    };
                    Ok(http::Response::from_parts(parts, body))
                }
                Err(e) => {
                    flight.report_no_response();
                    Err(Error::Service(e))
                }
            }
        })
    }
}
