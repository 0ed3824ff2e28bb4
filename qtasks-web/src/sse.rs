//! Live updates as server-sent events (`GET /api/events`): the server reads the figures once
//! a second and sends a `stats` event when they changed (and at once on connect), so the
//! pages refresh what they show on a push, never by polling from the page.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures::stream::{self, Stream};

use crate::api::stats::stats_value;
use crate::Shared;

/// How often the figures are read for the live updates.
const TICK: Duration = Duration::from_secs(1);

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/events", get(events))
}

/// What the stream remembers between ticks.
struct Watch {
    shared: Shared,
    last: Option<String>,
    ticks: tokio::time::Interval,
}

async fn events(
    State(shared): State<Shared>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch = Watch {
        shared,
        last: None,
        ticks,
    };
    let stream = stream::unfold(watch, |mut w| async move {
        loop {
            w.ticks.tick().await;
            let data = match stats_value(&w.shared).await {
                Ok(v) => v.to_string(),
                Err(e) => {
                    let event = Event::default().event("problem").data(e.message);
                    return Some((Ok(event), w));
                }
            };
            if w.last.as_deref() != Some(data.as_str()) {
                w.last = Some(data.clone());
                return Some((Ok(Event::default().event("stats").data(data)), w));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
