//! `GET /api/live`: Server-Sent Events with everything that changes.
//!
//! Events: `meters` (~20 Hz, a JSON list of input meters, sent when they changed), `status`
//! (1 Hz, the full status), `event` (each history event as it happens) and `log` (each log
//! line). A comment every 10 s keeps proxies from closing an idle stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use super::ApiState;
use super::logs;
use crate::gateway::PUBLISH_PERIOD;

const STATUS_PERIOD: Duration = Duration::from_secs(1);
/// Messages queued for one client; a client that falls this far behind loses meters frames.
const CLIENT_QUEUE: usize = 64;

/// The live stream (text/event-stream).
#[utoipa::path(get, path = "/api/live", tag = "status",
    responses((status = 200, description = "Server-Sent Events: `meters`, `status`, `event`, `log`",
        content_type = "text/event-stream", body = String)))]
pub async fn live(
    State(s): State<ApiState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    tokio::spawn(feed(s, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}

fn sse<T: Serialize>(name: &str, data: &T) -> Option<SseEvent> {
    SseEvent::default().event(name).json_data(data).ok()
}

/// Sends one client its events until it goes away.
async fn feed(s: ApiState, tx: mpsc::Sender<SseEvent>) {
    let mut events = s.gateway().subscribe_events();
    let mut log_lines = logs::subscribe();
    let mut meters_tick = tokio::time::interval(PUBLISH_PERIOD);
    let mut status_tick = tokio::time::interval(STATUS_PERIOD);
    meters_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_meters = None;
    loop {
        let message = tokio::select! {
            _ = meters_tick.tick() => {
                let meters = s.gateway().meters();
                // Only new frames: the supervisor publishes a new list each period.
                if last_meters.as_ref().is_some_and(|m| Arc::ptr_eq(m, &meters)) {
                    continue;
                }
                let event = sse("meters", &*meters);
                last_meters = Some(meters);
                event
            }
            _ = status_tick.tick() => sse("status", &*s.gateway().status()),
            event = events.recv() => match event {
                Ok(e) => sse("event", &e),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            line = log_lines.recv() => match line {
                Ok(l) => sse("log", &l),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = tx.closed() => return,
        };
        let Some(message) = message else { continue };
        // A full queue means a slow client: drop this message rather than wait.
        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(message) {
            return;
        }
    }
}
