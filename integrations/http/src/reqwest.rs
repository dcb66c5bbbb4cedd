//! The reqwest middleware.

use std::sync::Arc;

use reqwest::ResponseBuilderExt;
use reqwest_middleware::{Middleware, Next};
use upbit_limiter_tokio::RateLimiter;

use crate::{inflight, Refused};

/// A [`reqwest_middleware::Middleware`]: every request waits for its group's
/// permit, and every response (or its absence) is reported.
///
/// A refusal is `reqwest_middleware::Error::Middleware` holding a
/// [`Refused`] ([`Refused::from_middleware`] finds it). Add this middleware
/// last (innermost), after any retry middleware, so that every attempt is
/// acquired and reported.
#[derive(Clone, Debug)]
pub struct RateLimitMiddleware {
    limiter: Arc<RateLimiter>,
}

impl RateLimitMiddleware {
    /// A middleware that acquires from `limiter` (share one limiter per IP and pocket).
    pub fn new(limiter: Arc<RateLimiter>) -> Self {
        Self { limiter }
    }

    /// The limiter.
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }
}

impl Refused {
    /// The refusal inside a middleware client's error, if that is what it is.
    pub fn from_middleware(error: &reqwest_middleware::Error) -> Option<&Refused> {
        match error {
            reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<Refused>(),
            reqwest_middleware::Error::Reqwest(_) => None,
        }
    }
}

#[async_trait::async_trait]
impl Middleware for RateLimitMiddleware {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let req = inflight::request_for(
            request.method(),
            request.url().path(),
            request.headers(),
            extensions,
        );
        let mut flight = inflight::acquire(&self.limiter, req)
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let response = match next.run(request, extensions).await {
            Ok(response) => response,
            Err(e) => {
                flight.report_no_response();
                return Err(e);
            }
        };
        if !flight.report_head(response.status().as_u16(), response.headers()) {
            return Ok(response);
        }
        // A 418: read the start of its body, then hand on an equivalent response.
        let url = response.url().clone();
        let (mut parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        let body = flight.report_418(body).await;
        // `From<http::Response>` takes the URL from an extension only the builder sets.
        if let Ok(mut with_url) = http::Response::builder().url(url).body(()) {
            parts.extensions.extend(std::mem::take(with_url.extensions_mut()));
        }
        Ok(reqwest::Response::from(http::Response::from_parts(
            parts,
            reqwest::Body::wrap(body),
        )))
    }
}
