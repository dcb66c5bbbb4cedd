//! The response body handed to the caller: the server's body as it came, or
//! for a 418 whose start was read to find the ban's length, the same bytes
//! replayed, then the rest.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

pin_project_lite::pin_project! {
    /// A response body: the inner body unchanged (its data as [`Bytes`]), or
    /// a 418's body with its first bytes read and replayed. The caller sees
    /// the same bytes, trailers and errors either way.
    pub struct ResponseBody<B: Body> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = InnerProj]
    enum Inner<B: Body> {
        Plain {
            #[pin]
            body: B,
        },
        Replay {
            prefix: VecDeque<Bytes>,
            rest: Option<Pin<Box<B>>>,
            trailers: Option<HeaderMap>,
            error: Option<B::Error>,
        },
    }
}

impl<B: Body> ResponseBody<B> {
    /// The inner body, unchanged.
    pub(crate) fn plain(body: B) -> Self {
        Self {
            inner: Inner::Plain { body },
        }
    }

    /// `prefix`, then `rest` (if the body did not end), then `trailers` or
    /// `error` (whichever ended the read of the prefix).
    pub(crate) fn replay(
        prefix: Vec<Bytes>,
        rest: Option<Pin<Box<B>>>,
        trailers: Option<HeaderMap>,
        error: Option<B::Error>,
    ) -> Self {
        Self {
            inner: Inner::Replay {
                prefix: prefix.into_iter().filter(|b| !b.is_empty()).collect(),
                rest,
                trailers,
                error,
            },
        }
    }
}

impl<B: Body> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Plain { .. } => f.write_str("ResponseBody::Plain"),
            Inner::Replay { prefix, rest, .. } => f
                .debug_struct("ResponseBody::Replay")
                .field("buffered", &prefix.iter().map(Bytes::len).sum::<usize>())
                .field("more", &rest.is_some())
                .finish(),
        }
    }
}

fn to_bytes<D: Buf>(frame: Frame<D>) -> Frame<Bytes> {
    frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().inner.project() {
            InnerProj::Plain { body } => body.poll_frame(cx).map(|f| f.map(|r| r.map(to_bytes))),
            InnerProj::Replay {
                prefix,
                rest,
                trailers,
                error,
            } => {
                if let Some(bytes) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                if let Some(body) = rest {
                    match body.as_mut().poll_frame(cx) {
                        Poll::Ready(None) => *rest = None,
                        other => return other.map(|f| f.map(|r| r.map(to_bytes))),
                    }
                }
                if let Some(e) = error.take() {
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Plain { body } => body.is_end_stream(),
            Inner::Replay {
                prefix,
                rest,
                trailers,
                error,
            } => {
                prefix.is_empty()
                    && rest.as_ref().is_none_or(|b| b.is_end_stream())
                    && trailers.is_none()
                    && error.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Plain { body } => body.size_hint(),
            Inner::Replay { prefix, rest, .. } => {
                let buffered = prefix.iter().map(|b| b.len() as u64).sum::<u64>();
                let more = rest
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint());
                let mut hint = SizeHint::new();
                hint.set_lower(buffered.saturating_add(more.lower()));
                if let Some(upper) = more.upper() {
                    hint.set_upper(buffered.saturating_add(upper));
                }
                hint
            }
        }
    }
}
