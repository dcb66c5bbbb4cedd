//! WebSocket: `websocket-connect` around the handshake, `websocket-message`
//! per message sent.
//!
//! Upbit counts messages per connection (5/s and 100/min each), so every
//! [`MessageSink`] has a limiter of its own, made with the shared limiter's
//! `websocket-message` configuration; connects are counted per IP or pocket,
//! so [`connect`] acquires from the shared limiter.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::{error, fmt};

use futures_core::Stream;
use futures_sink::Sink;
use tokio_tungstenite::tungstenite::handshake::client::Response as Handshake;
use tokio_tungstenite::tungstenite::{self, Message};
use upbit_limiter_tokio::{
    AcquireOwned, ConfigError, Group, LimiterConfig, OwnedPermit, RateLimiter, Request,
};

use crate::{inflight, Refused};

/// Why a limited connect failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The limiter refused the connect: it was not attempted.
    Refused(Refused),
    /// The handshake failed (reported to the limiter: an HTTP answer with
    /// its status, anything else as no response).
    WebSocket(tungstenite::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(r) => fmt::Display::fmt(r, f),
            Self::WebSocket(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        match self {
            Self::Refused(r) => Some(r),
            Self::WebSocket(e) => Some(e),
        }
    }
}

/// Acquires `websocket-connect` from `limiter`, then runs `handshake` (any
/// tokio-tungstenite connect call, e.g. `connect_async(url)`) and reports
/// its outcome: the upgrade's status and `Remaining-Req`, a refused
/// handshake's status, headers and (for 418) body, or no response.
pub async fn connect<S, F>(limiter: &Arc<RateLimiter>, handshake: F) -> Result<(S, Handshake), ConnectError>
where
    F: Future<Output = Result<(S, Handshake), tungstenite::Error>>,
{
    let mut flight = inflight::acquire(limiter, Request::group(Group::WebsocketConnect))
        .await
        .map_err(ConnectError::Refused)?;
    match handshake.await {
        Ok((stream, response)) => {
            // An upgrade is never a 418: the head is the whole answer.
            flight.report_head(response.status().as_u16(), response.headers());
            Ok((stream, response))
        }
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            flight.report_read(response.status().as_u16(), response.headers(), body);
            Err(ConnectError::WebSocket(tungstenite::Error::Http(response)))
        }
        Err(e) => {
            flight.report_no_response();
            Err(ConnectError::WebSocket(e))
        }
    }
}

/// Whether a message is a data request Upbit counts: text and binary
/// messages are; ping, pong and close frames are not.
pub fn is_counted(message: &Message) -> bool {
    matches!(message, Message::Text(_) | Message::Binary(_))
}

/// A WebSocket (any `Sink<Message>`, e.g. tokio-tungstenite's
/// `WebSocketStream`) whose counted messages wait for this connection's
/// `websocket-message` permit.
///
/// `poll_ready` returns ready only once every message accepted before has
/// been handed to the inner sink, so messages leave in the order they were
/// given and none is dropped: a message waits for its permit (and, should
/// the limiter refuse, for the retry time it names) instead. Frames that are
/// not counted ([`is_counted`]) wait only for the messages before them.
/// Received messages pass through unchanged (`Stream`).
///
/// A message has no response, so its permit is not reported: its slot is
/// spent when the message is handed on.
pub struct MessageSink<S> {
    inner: S,
    limiter: Arc<RateLimiter>,
    pending: VecDeque<Message>,
    acquiring: Option<Pin<Box<AcquireOwned>>>,
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
    permit: Option<OwnedPermit>,
}

impl<S> fmt::Debug for MessageSink<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageSink")
            .field("pending", &self.pending.len())
            .field("waiting", &self.acquiring.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> MessageSink<S> {
    /// Wraps one connection, with a limiter of its own that has `shared`'s
    /// `websocket-message` configuration.
    pub fn new(inner: S, shared: &RateLimiter) -> Result<Self, ConfigError> {
        let mut config = LimiterConfig::default();
        *config.group_mut(Group::WebsocketMessage) = shared.limiter().group(Group::WebsocketMessage).config();
        Self::with_config(inner, &config)
    }

    /// Wraps one connection, with a limiter of its own made from `config`
    /// (its `websocket-message` group is the one used).
    pub fn with_config(inner: S, config: &LimiterConfig) -> Result<Self, ConfigError> {
        Ok(Self::with_limiter(inner, Arc::new(RateLimiter::new(config)?)))
    }

    /// Wraps one connection with `limiter`, which must be this connection's
    /// alone (Upbit counts messages per connection).
    pub fn with_limiter(inner: S, limiter: Arc<RateLimiter>) -> Self {
        Self {
            inner,
            limiter,
            pending: VecDeque::new(),
            acquiring: None,
            retry: None,
            permit: None,
        }
    }

    /// The connection's limiter.
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }

    /// The inner sink.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner sink, mutably (sending on it directly bypasses the limiter).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Messages accepted and not yet handed to the inner sink.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl<S: Sink<Message> + Unpin> MessageSink<S> {
    /// A permit for the next message, waiting for one (or after a refusal,
    /// for its retry time).
    fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.permit.is_some() {
                return Poll::Ready(());
            }
            if let Some(retry) = self.retry.as_mut() {
                ready!(retry.as_mut().poll(cx));
                self.retry = None;
            }
            let limiter = &self.limiter;
            let acquiring = self.acquiring.get_or_insert_with(|| {
                Box::pin(Arc::clone(limiter).acquire_request_owned(Request::group(Group::WebsocketMessage)))
            });
            let result = ready!(acquiring.as_mut().poll(cx));
            self.acquiring = None;
            match result {
                Ok(permit) => self.permit = Some(permit),
                Err(e) => {
                    let at = self.limiter.retry_at(&e);
                    self.retry = Some(Box::pin(tokio::time::sleep_until(at)));
                }
            }
        }
    }

    /// Hands every pending message to the inner sink, in order.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        while let Some(next) = self.pending.front() {
            if is_counted(next) {
                ready!(self.poll_permit(cx));
            }
            ready!(Pin::new(&mut self.inner).poll_ready(cx))?;
            let Some(message) = self.pending.pop_front() else {
                break;
            };
            if is_counted(&message) {
                // Spent: a message has no response to report.
                drop(self.permit.take());
            }
            Pin::new(&mut self.inner).start_send(message)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: Sink<Message> + Unpin> Sink<Message> for MessageSink<S> {
    type Error = S::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), S::Error> {
        // Queued, never dropped, even if `poll_ready` was skipped.
        self.get_mut().pending.push_back(message);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

impl<S: Stream + Unpin> Stream for MessageSink<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.get_mut().inner).poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}
