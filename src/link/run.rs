//! A registered link, kept alive: pings, the master's silence, the application's
//! messages both ways, and a bounded buffer between the master and a slow application.

use std::collections::VecDeque;
use std::future::Future;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::error::{Bound, Ended, LinkFailure, Outgoing};
use super::protocol::{DecodeError, FromMaster, MasterSetAgentOptions, ToMaster};
use super::LinkSettings;
use crate::dial::{Peer, Stream};

/// Sees a link's traffic as it happens (for metrics). Called from the link's own task:
/// every call must be cheap and must not block.
pub trait Tap: Send + Sync {
    /// Any frame arrived from the master (a message, a ping, a pong, a close).
    fn frame(&self);
    /// An agent-protocol message arrived from the master.
    fn message_in(&self);
    /// An agent-protocol message was sent to the master.
    fn message_out(&self);
}

/// A registered link to the master.
pub struct Link {
    ws: WebSocketStream<Stream>,
    peer: Peer,
    options: MasterSetAgentOptions,
    settings: LinkSettings,
    client_cert: bool,
    tap: Option<std::sync::Arc<dyn Tap>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("peer", &self.peer).finish_non_exhaustive()
    }
}

impl Link {
    pub(super) fn new(
        ws: WebSocketStream<Stream>,
        peer: Peer,
        options: MasterSetAgentOptions,
        settings: LinkSettings,
        client_cert: bool,
    ) -> Link {
        Link { ws, peer, options, settings, client_cert, tap: None }
    }

    /// The same link, telling `tap` about its traffic.
    pub fn tapped(mut self, tap: std::sync::Arc<dyn Tap>) -> Link {
        self.tap = Some(tap);
        self
    }

    /// What was reached and how it was verified.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The master's `MasterSetAgentOptions`.
    pub fn options(&self) -> &MasterSetAgentOptions {
        &self.options
    }

    /// Keeps the link alive: pings every `ping_interval`, gives up after `read_deadline`
    /// without a frame, hands the master's messages to `inbound` and sends what arrives
    /// on `outbound`.
    ///
    /// The link never stops reading, so the master's pings are answered whatever the
    /// application does. Messages the application has not yet taken wait in the link, up
    /// to `inbound_buffer_messages` and `inbound_buffer_bytes` (one message always fits);
    /// past either bound the link closes and returns [`Ended::Overflow`], so the master
    /// sees the agent leave instead of a link gone quiet. A message whose name is unknown
    /// (from a newer master) is logged and skipped; any other message that cannot be read
    /// ends the link, so that the master, on the reconnect, learns what became of it.
    /// When `stop` completes, closes the websocket (bounded by `close_timeout`) and
    /// returns [`Ended::Stopped`] with its output.
    pub async fn run<S>(
        mut self,
        inbound: &mpsc::Sender<FromMaster>,
        outbound: &mut mpsc::Receiver<ToMaster>,
        stop: impl Future<Output = S>,
    ) -> Ended<S> {
        let s = self.settings;
        tokio::pin!(stop);
        let mut ping = tokio::time::interval_at(Instant::now() + s.ping_interval, s.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_frame = Instant::now();
        let mut waiting = Inbox::new(&s);
        let mut outbound_open = true;
        loop {
            tokio::select! {
                biased;
                why = &mut stop => {
                    self.close(CloseCode::Normal, "agent stopping").await;
                    return Ended::Stopped(why);
                }
                permit = inbound.reserve(), if !waiting.is_empty() => match permit {
                    Ok(permit) => permit.send(waiting.pop()),
                    Err(_) => waiting.clear(), // nobody listens: drop, as the daemon would
                },
                frame = self.ws.next() => {
                    last_frame = Instant::now();
                    if let (Some(tap), Some(Ok(_))) = (&self.tap, &frame) {
                        tap.frame();
                    }
                    let message = match frame {
                        None => return Ended::Failed(LinkFailure::ClosedWithoutClose),
                        Some(Err(e)) => return Ended::Failed(LinkFailure::from_ws(e, self.client_cert)),
                        Some(Ok(message)) => message,
                    };
                    match message {
                        Message::Text(text) => match FromMaster::decode(&text) {
                            Ok(FromMaster::Shutdown { err_msg }) => {
                                self.close(CloseCode::Normal, "agent stopping").await;
                                return Ended::MasterShutdown { err_msg };
                            }
                            Ok(message) => {
                                if let Some(tap) = &self.tap {
                                    tap.message_in();
                                }
                                if let Err(bound) = waiting.push(message, text.len()) {
                                    let (messages, bytes) = (waiting.len(), waiting.bytes());
                                    self.close(CloseCode::Error, "det-agent: the application fell behind").await;
                                    return Ended::Overflow { messages, bytes, bound };
                                }
                            }
                            Err(error @ DecodeError::NoKnownMessage { .. }) => {
                                tracing::warn!(%error, "skipping a message from the master");
                            }
                            Err(error) => {
                                self.close(CloseCode::Unsupported, "det-agent: unreadable message").await;
                                return Ended::Failed(LinkFailure::Undecodable(error));
                            }
                        },
                        Message::Ping(_) => {
                            // tungstenite queued the pong; send it now, not on the next write.
                            if let Some(failure) = self.bounded(Outgoing::Pong, None).await {
                                return Ended::Failed(failure);
                            }
                        }
                        Message::Close(frame) => {
                            let (code, reason) = match frame {
                                Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                                None => (None, String::new()),
                            };
                            // Finish the close handshake politely; the master is leaving anyway.
                            let _ = timeout(s.close_timeout, self.ws.flush()).await;
                            return Ended::MasterClosed { code, reason };
                        }
                        _ => {} // pongs and binary frames: liveness only
                    }
                }
                message = outbound.recv(), if outbound_open => match message {
                    Some(message) => {
                        let frame = Message::text(message.encode());
                        if let Some(failure) = self.bounded(Outgoing::Message, Some(frame)).await {
                            return Ended::Failed(failure);
                        }
                        if let Some(tap) = &self.tap {
                            tap.message_out();
                        }
                    }
                    None => outbound_open = false,
                },
                _ = ping.tick() => {
                    if let Some(failure) = self.bounded(Outgoing::Ping, Some(Message::Ping(Default::default()))).await {
                        return Ended::Failed(failure);
                    }
                }
                _ = sleep_until(last_frame + s.read_deadline) => {
                    return Ended::Silent { after: s.read_deadline };
                }
            }
        }
    }

    /// Sends `frame` (or flushes what tungstenite queued), within `handshake_timeout`.
    async fn bounded(&mut self, what: Outgoing, frame: Option<Message>) -> Option<LinkFailure> {
        let after = self.settings.handshake_timeout;
        let write = async {
            match frame {
                Some(frame) => self.ws.send(frame).await,
                None => self.ws.flush().await,
            }
        };
        match timeout(after, write).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(LinkFailure::from_ws(e, self.client_cert)),
            Err(_) => Some(LinkFailure::WriteTimedOut { what, after }),
        }
    }

    /// Sends a close frame and waits (bounded) for the master's answer.
    async fn close(&mut self, code: CloseCode, reason: &'static str) {
        let limit = self.settings.close_timeout;
        let _ = timeout(limit, async {
            if self.ws.close(Some(CloseFrame { code, reason: reason.into() })).await.is_err() {
                return;
            }
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// The master's messages the application has not taken yet, bounded.
struct Inbox {
    queue: VecDeque<(FromMaster, usize)>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
}

impl Inbox {
    fn new(s: &LinkSettings) -> Inbox {
        Inbox {
            queue: VecDeque::new(),
            bytes: 0,
            max_messages: s.inbound_buffer_messages,
            max_bytes: s.inbound_buffer_bytes,
        }
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn len(&self) -> usize {
        self.queue.len()
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues `message` (`size` bytes as received), or says which bound it would pass.
    /// One message always fits: its size is already bounded by `max_message_size`.
    fn push(&mut self, message: FromMaster, size: usize) -> Result<(), Bound> {
        if !self.queue.is_empty() {
            if self.queue.len() >= self.max_messages {
                return Err(Bound::Messages(self.max_messages));
            }
            if self.bytes.saturating_add(size) > self.max_bytes {
                return Err(Bound::Bytes(self.max_bytes));
            }
        }
        self.bytes = self.bytes.saturating_add(size);
        self.queue.push_back((message, size));
        Ok(())
    }

    fn pop(&mut self) -> FromMaster {
        let (message, size) = self.queue.pop_front().expect("pop is only called when not empty");
        self.bytes -= size;
        message
    }

    fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox(messages: usize, bytes: usize) -> Inbox {
        Inbox::new(&LinkSettings {
            inbound_buffer_messages: messages,
            inbound_buffer_bytes: bytes,
            ..LinkSettings::default()
        })
    }

    fn message() -> FromMaster {
        FromMaster::Shutdown { err_msg: String::new() }
    }

    #[test]
    fn the_inbox_holds_up_to_its_bounds_and_always_one() {
        let mut a = inbox(2, 1000);
        assert_eq!(a.push(message(), 400), Ok(()));
        assert_eq!(a.push(message(), 400), Ok(()));
        assert_eq!(a.push(message(), 1), Err(Bound::Messages(2)));
        a.pop();
        assert_eq!(a.push(message(), 601), Err(Bound::Bytes(1000)));
        assert_eq!(a.push(message(), 600), Ok(()));
        assert_eq!((a.len(), a.bytes()), (2, 1000));
        a.clear();
        // A single message larger than the byte bound still fits alone.
        let mut b = inbox(0, 10);
        assert_eq!(b.push(message(), 5000), Ok(()));
        assert_eq!(b.push(message(), 1), Err(Bound::Messages(0)));
    }
}
