//! The request path every client shares: classify, acquire, and report the
//! response exactly once.
//!
//! [`acquire`] gives an [`InFlight`]: the permit of a request on its way.
//! It is consumed by one report ([`InFlight::report_head`] for the response
//! head, [`InFlight::report_418`] once a 418's body is buffered,
//! [`InFlight::report_no_response`] for a transport error); dropped without
//! one, it reports `no_response`, so a request whose future was dropped
//! counts as what a client timeout is: sent, no answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderName, Method};
use upbit_limiter_tokio::{Group, OwnedPermit, RateLimiter, Request, Response};

use crate::body::ResponseBody;
use crate::{AcquireTimeout, Refused};

/// The most bytes of a 418 body that are read before the response is handed
/// on: enough for any ban message, small enough to never matter.
pub const MAX_BAN_BODY: usize = 16 * 1024;

/// How long a 418 body is waited for before it is reported without its end
/// (the caller still gets the whole body).
pub const BAN_BODY_WAIT: Duration = Duration::from_secs(2);

const REMAINING_REQ: HeaderName = HeaderName::from_static("remaining-req");

/// The limiter's request for `method path`: its group (a Quotation request
/// with an `Origin` header counts in `origin`, as on Upbit), and the
/// deadline from an [`AcquireTimeout`] extension or the group's default.
pub(crate) fn request_for(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Request {
    let mut request = Request::http(method.as_str(), path);
    if request.group.is_quotation() && headers.contains_key(http::header::ORIGIN) {
        request.group = Group::Origin;
    }
    match extensions.get::<AcquireTimeout>() {
        Some(AcquireTimeout(timeout)) => request.timeout(*timeout),
        None => request,
    }
}

/// Waits for a permit for `request`, or says why not and when to retry.
pub(crate) async fn acquire(limiter: &Arc<RateLimiter>, request: Request) -> Result<InFlight, Refused> {
    match Arc::clone(limiter).acquire_request_owned(request).await {
        Ok(permit) => Ok(InFlight {
            permit: Some(permit),
            head: None,
        }),
        Err(error) => Err(Refused::new(error, limiter.retry_at(&error))),
    }
}

/// The headers the limiter reads, owned (a 418's are kept while its body is read).
#[derive(Debug, Default)]
struct Head {
    status: u16,
    remaining_req: Option<String>,
    retry_after: Option<String>,
    date: Option<String>,
}

impl Head {
    fn new(status: u16, headers: &HeaderMap) -> Self {
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Self {
            status,
            remaining_req: text(&REMAINING_REQ),
            retry_after: text(&http::header::RETRY_AFTER),
            date: text(&http::header::DATE),
        }
    }

    fn response<'a>(&'a self, body: Option<&'a str>) -> Response<'a> {
        let mut r = Response::status(self.status);
        if let Some(v) = &self.remaining_req {
            r = r.with_remaining_req(v);
        }
        if let Some(v) = &self.retry_after {
            r = r.with_retry_after(v);
        }
        if let Some(v) = &self.date {
            r = r.with_date(v);
        }
        if let Some(b) = body {
            r = r.with_body(b);
        }
        r
    }
}

/// A request on its way, holding its permit until the response is reported.
#[derive(Debug)]
#[must_use = "report the response; dropped, it reports no response"]
pub(crate) struct InFlight {
    permit: Option<OwnedPermit>,
    /// A 418's head while its body is read: what a drop reports then.
    head: Option<Head>,
}

impl InFlight {
    fn report(&mut self, body: Option<&str>) {
        let Some(permit) = self.permit.take() else { return };
        match &self.head {
            Some(head) => permit.report(head.response(body)),
            None => permit.report(Response::no_response()),
        }
    }

    /// No response: a transport error or a client timeout.
    pub(crate) fn report_no_response(mut self) {
        self.head = None;
        self.report(None);
    }

    /// Reports a response head, except a 418's (its body says how long the
    /// ban lasts): `true` says the body is wanted, for
    /// [`InFlight::report_418`].
    pub(crate) fn report_head(&mut self, status: u16, headers: &HeaderMap) -> bool {
        self.head = Some(Head::new(status, headers));
        if status == 418 {
            return true;
        }
        self.report(None);
        false
    }

    /// Reports a response whose body was already read whole (only a 418's
    /// is passed on, at most [`MAX_BAN_BODY`] bytes of it).
    #[cfg(feature = "tungstenite")]
    pub(crate) fn report_read(mut self, status: u16, headers: &HeaderMap, body: &[u8]) {
        self.head = Some(Head::new(status, headers));
        let text = (status == 418)
            .then(|| ban_text(&[Bytes::copy_from_slice(&body[..body.len().min(MAX_BAN_BODY)])]));
        self.report(text.as_deref());
    }

    /// Reads up to [`MAX_BAN_BODY`] bytes of a 418's body (for at most
    /// [`BAN_BODY_WAIT`]), reports them, and gives back a body that yields
    /// the same bytes, then the rest, then the inner body's trailers or error.
    pub(crate) async fn report_418<B>(mut self, body: B) -> ResponseBody<B>
    where
        B: http_body::Body,
    {
        let mut body = Box::pin(body);
        let mut prefix = Vec::new();
        let mut len = 0;
        let mut trailers = None;
        let mut error = None;
        let mut ended = false;
        let read = async {
            while len < MAX_BAN_BODY {
                let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
                match frame {
                    None => {
                        ended = true;
                        break;
                    }
                    Some(Err(e)) => {
                        error = Some(e);
                        break;
                    }
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(mut data) => {
                            let bytes = data.copy_to_bytes(data.remaining());
                            len += bytes.len();
                            prefix.push(bytes);
                        }
                        Err(frame) => {
                            trailers = frame.into_trailers().ok();
                            ended = true;
                            break;
                        }
                    },
                }
            }
        };
        // Cut short after the wait: what was read so far is reported.
        let _ = tokio::time::timeout(BAN_BODY_WAIT, read).await;
        let text = ban_text(&prefix);
        self.report(Some(&text));
        let rest = if ended || error.is_some() {
            None
        } else {
            Some(body)
        };
        ResponseBody::replay(prefix, rest, trailers, error)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Dropped before its response was reported: the request may have
        // reached the server, no answer came back to us.
        self.report(None);
    }
}

/// The first [`MAX_BAN_BODY`] bytes of `chunks` as text (invalid UTF-8 replaced).
fn ban_text(chunks: &[Bytes]) -> String {
    let mut bytes = Vec::with_capacity(MAX_BAN_BODY.min(chunks.iter().map(Bytes::len).sum()));
    for c in chunks {
        let room = MAX_BAN_BODY - bytes.len();
        bytes.extend_from_slice(&c[..c.len().min(room)]);
        if bytes.len() == MAX_BAN_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_moves_quotation_requests_only() {
        let mut headers = HeaderMap::new();
        let ext = http::Extensions::new();
        assert_eq!(
            request_for(&Method::GET, "/v1/ticker", &headers, &ext).group,
            Group::Ticker
        );
        headers.insert(http::header::ORIGIN, "https://example.com".parse().unwrap());
        assert_eq!(
            request_for(&Method::GET, "/v1/ticker", &headers, &ext).group,
            Group::Origin
        );
        assert_eq!(
            request_for(&Method::POST, "/v1/orders", &headers, &ext).group,
            Group::Order
        );
    }

    #[test]
    fn the_timeout_extension_sets_the_deadline() {
        let headers = HeaderMap::new();
        let mut ext = http::Extensions::new();
        assert_eq!(
            request_for(&Method::GET, "/v1/ticker", &headers, &ext).deadline,
            None
        );
        ext.insert(AcquireTimeout(Duration::from_millis(250)));
        assert_eq!(
            request_for(&Method::GET, "/v1/ticker", &headers, &ext).deadline,
            Some(upbit_limiter_tokio::Deadline::After(Duration::from_millis(250)))
        );
    }

    #[test]
    fn ban_text_is_bounded_and_survives_bad_utf8() {
        let big = vec![Bytes::from(vec![b'a'; MAX_BAN_BODY]), Bytes::from_static(b"more")];
        assert_eq!(ban_text(&big).len(), MAX_BAN_BODY);
        let bad = vec![Bytes::from_static(b"blocked \xff\xfe for 3 seconds")];
        assert_eq!(ban_text(&bad), "blocked \u{fffd}\u{fffd} for 3 seconds");
    }

    #[test]
    fn unreadable_headers_are_left_out() {
        let mut headers = HeaderMap::new();
        headers.insert(
            REMAINING_REQ,
            http::HeaderValue::from_bytes(b"group=\xffx").unwrap(),
        );
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        let head = Head::new(418, &headers);
        assert_eq!(head.remaining_req, None);
        assert_eq!(head.response(None).retry_after, Some("7"));
    }
}
