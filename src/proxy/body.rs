//! Bodies on the inline path, streamed both ways without buffering, and the
//! [`Completion`] that guarantees `on_complete` runs exactly once per exchange.
//!
//! * [`UpstreamBody`]: the client's request body on its way to the backend, with a byte
//!   count shared with the completion.
//! * [`ProxyBody`]: what the client receives: a small local answer, or the backend's body
//!   counted as it streams.
//!
//! A `Completion` owns the [`Exchange`] from the moment the pipeline accepted it. Whatever
//! ends the exchange (the last body frame, a body error, the client going away mid-body,
//! a tunnel closing, or the handler future being dropped before a response) drops the
//! completion, and its `Drop` calls `on_complete`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use pin_project_lite::pin_project;

use crate::app::App;
use crate::pipeline::Exchange;

/// Runs `on_complete` for its exchange when dropped.
pub struct Completion {
    app: Arc<App>,
    /// Boxed: the completion moves with the handler's futures and the response body, and
    /// the exchange is a few hundred bytes.
    ex: Option<Box<Exchange>>,
    request_bytes: Option<Arc<AtomicU64>>,
    /// Set when the client's body failed to parse while it was forwarded.
    request_failed: Option<Arc<AtomicBool>>,
    /// The server's connection-quota slot, released after the exchange completes.
    lease: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The backend connection this exchange holds, and its place among its client's
    /// requests in flight (see `limits`), given back when it completes.
    slot: Option<crate::limits::UpstreamSlot>,
    in_flight: Option<crate::limits::InFlight>,
}

impl Completion {
    pub fn new(app: Arc<App>, ex: Box<Exchange>) -> Completion {
        Completion {
            app,
            ex: Some(ex),
            request_bytes: None,
            request_failed: None,
            lease: None,
            slot: None,
            in_flight: None,
        }
    }

    /// Keeps the exchange's backend slot until it completes.
    pub fn hold_slot(&mut self, slot: crate::limits::UpstreamSlot) {
        self.slot = Some(slot);
    }

    /// Keeps the exchange counted among its client's requests in flight until it completes.
    pub fn hold_in_flight(&mut self, in_flight: crate::limits::InFlight) {
        self.in_flight = Some(in_flight);
    }

    /// Keeps a connection-quota slot until the exchange completes.
    pub fn hold(&mut self, lease: Option<tokio::sync::OwnedSemaphorePermit>) {
        self.lease = lease;
    }

    /// The exchange, for the phases still to run.
    pub fn exchange(&mut self) -> Option<&mut Exchange> {
        self.ex.as_deref_mut()
    }

    /// Counts the request body as it is forwarded.
    pub fn count_request(&mut self, body: Incoming) -> UpstreamBody {
        if body.is_end_stream() {
            return UpstreamBody::Empty;
        }
        let count = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        self.request_bytes = Some(count.clone());
        self.request_failed = Some(failed.clone());
        UpstreamBody::Stream {
            body,
            count,
            failed,
            sent: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Whether the client's own body was malformed (bad chunked framing, a body cut
    /// short): the client's fault, not the backend's.
    pub fn client_body_failed(&self) -> bool {
        self.request_failed
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    fn add_response_bytes(&mut self, n: usize) {
        if let Some(ex) = self.ex.as_mut() {
            ex.response_bytes += n as u64;
        }
    }

    /// Adds bytes that went through a tunnel (WebSocket) in each direction.
    pub fn add_tunnel_bytes(&mut self, from_client: u64, to_client: u64) {
        if let Some(ex) = self.ex.as_mut() {
            ex.request_bytes += from_client;
            ex.response_bytes += to_client;
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(mut ex) = self.ex.take() {
            if let Some(count) = &self.request_bytes {
                ex.request_bytes += count.load(Ordering::Relaxed);
            }
            self.app.pipeline().on_complete(*ex);
        }
    }
}

pin_project! {
    /// The request body sent to a backend.
    #[project = UpstreamBodyProj]
    pub enum UpstreamBody {
        /// No body (also what a retried request carries).
        Empty,
        /// The client's body, counted as it streams; `sent` turns true once it has all
        /// been handed on (the backend's answer is timed from then).
        Stream {
            #[pin] body: Incoming,
            count: Arc<AtomicU64>,
            failed: Arc<AtomicBool>,
            sent: tokio::sync::watch::Sender<bool>,
        },
    }
}

impl UpstreamBody {
    /// Resolves once the whole body has been handed on to the backend (at once for no
    /// body; also when the body is dropped unfinished, as the request is over then).
    pub fn sent(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let rx = match self {
            UpstreamBody::Empty => None,
            UpstreamBody::Stream { sent, .. } => Some(sent.subscribe()),
        };
        async move {
            if let Some(mut rx) = rx {
                let _ = rx.wait_for(|done| *done).await;
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            UpstreamBodyProj::Empty => Poll::Ready(None),
            UpstreamBodyProj::Stream {
                body,
                count,
                failed,
                sent,
            } => {
                let frame = ready!(body.poll_frame(cx));
                match &frame {
                    Some(Ok(f)) => {
                        if let Some(data) = f.data_ref() {
                            count.fetch_add(data.len() as u64, Ordering::Relaxed);
                        }
                    }
                    Some(Err(_)) => {
                        failed.store(true, Ordering::Relaxed);
                        sent.send_replace(true);
                    }
                    None => {
                        sent.send_replace(true);
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Stream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Stream { body, .. } => body.size_hint(),
        }
    }
}

pin_project! {
    /// The response body the client receives.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        /// A small answer enforcer makes itself.
        Local { data: Option<Bytes> },
        /// The backend's body; the exchange completes when it ends or is dropped.
        Upstream { #[pin] body: Incoming, done: Option<Completion> },
    }
}

impl ProxyBody {
    pub fn local(data: impl Into<Bytes>) -> ProxyBody {
        let data: Bytes = data.into();
        ProxyBody::Local {
            data: (!data.is_empty()).then_some(data),
        }
    }

    pub fn upstream(body: Incoming, done: Completion) -> ProxyBody {
        ProxyBody::Upstream {
            body,
            done: Some(done),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ProxyBodyProj::Local { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBodyProj::Upstream { body, done } => {
                let frame = ready!(body.poll_frame(cx));
                match &frame {
                    Some(Ok(f)) => {
                        if let (Some(data), Some(c)) = (f.data_ref(), done.as_mut()) {
                            c.add_response_bytes(data.len());
                        }
                    }
                    // The end of the body (or a backend error mid-body) ends the exchange.
                    Some(Err(_)) | None => drop(done.take()),
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local { data } => data.is_none(),
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Upstream { body, .. } => body.size_hint(),
        }
    }
}
