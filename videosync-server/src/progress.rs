//! Live processing progress over Server-Sent Events:
//! `GET /api/v1/videos/{id}/events`.
//!
//! The stream opens with a `snapshot` (the video and the latest progress
//! report), then relays the worker's `progress` events from the event log
//! (stage changes, the end, and at most one tick a second: the hot ticks
//! never touch the database), each with its log position as the event id,
//! so a reconnecting `EventSource` resumes with `Last-Event-ID` and misses
//! nothing. It ends with an `end` event carrying the video once it is ready
//! or failed. When the log lost what a reader needed, a fresh snapshot
//! comes instead.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use videosync_core::db::Videos;
use videosync_core::eventlog::{Epoch, StreamPosition, TailItem};
use videosync_core::{Topic, Video, VideoId, VideoStatus};
use videosync_transcode::worker::{progress_topic, ProgressEvent};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::state::{App, AppState};
use crate::videos::{load_video, VideoPath, VideoView};

/// The routes of this capability.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// How often a quiet stream checks the video itself (a worker without an
/// event log reports nothing there).
const RECHECK: Duration = Duration::from_secs(5);

/// One event of the stream, as an `EventSource` sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProgressStreamEvent {
    /// `snapshot` (`{video, progress}`), `progress` (the worker's report),
    /// `end` (the video, ready or failed) or `error` (reconnect).
    #[schema(pattern = "^(snapshot|progress|end|error)$")]
    pub event: String,
    /// The event's JSON.
    pub data: String,
    /// Its place in the log (`seq@epoch`): send it back as `Last-Event-ID`.
    pub id: Option<String>,
}

/// The first event: where the video stands.
#[derive(Debug, Serialize)]
struct Snapshot {
    video: VideoView,
    progress: Option<serde_json::Value>,
}

/// Live progress of a video's processing (Server-Sent Events: `snapshot`,
/// `progress`, `end`; resume with `Last-Event-ID`).
#[utoipa::path(get, path = "/videos/{id}/events", tag = "videos", security(("bearer" = []), ()),
    params(VideoPath),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = ProgressStreamEvent)))]
async fn events(
    State(app): State<AppState>,
    caller: Caller,
    Path(p): Path<VideoPath>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let (video, _) = load_video(&app, &caller, p.id).await?;
    let topic = progress_topic(video.id)?;
    let resume = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(id) => Some(parse_position(id)?),
        None => None,
    };
    let state = Relay {
        app: app.clone(),
        video: video.id,
        topic,
        resume,
        phase: Phase::Start,
        tail: None,
        epoch: None,
    };
    let stream = stream::unfold(state, Relay::step).flat_map(stream::iter);
    Ok(Sse::new(stream.map(Ok)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `seq@epoch`, as event ids carry it.
fn parse_position(id: &str) -> ApiResult<StreamPosition> {
    let bad = || ApiError::bad_request("Last-Event-ID must be an id this stream sent");
    let (seq, epoch) = id.split_once('@').ok_or_else(bad)?;
    Ok(StreamPosition {
        seq: seq.parse().map_err(|_| bad())?,
        epoch: Epoch::parse(epoch).map_err(|_| bad())?,
    })
}

enum Phase {
    Start,
    Live,
    Done,
}

struct Relay {
    app: AppState,
    video: VideoId,
    topic: Topic,
    resume: Option<StreamPosition>,
    phase: Phase,
    tail: Option<videosync_core::eventlog::LogStream>,
    /// The history the tail follows, for event ids.
    epoch: Option<Epoch>,
}

impl Relay {
    /// The next events to send, or the end of the stream.
    async fn step(mut self) -> Option<(Vec<Event>, Relay)> {
        match self.phase {
            Phase::Done => None,
            Phase::Start => {
                let events = self.start().await;
                Some((events, self))
            }
            Phase::Live => {
                let events = self.live().await;
                Some((events, self))
            }
        }
    }

    async fn start(&mut self) -> Vec<Event> {
        let since = match self.resume.take() {
            Some(pos) => pos,
            None => match self.snapshot().await {
                Ok((events, pos)) => {
                    if matches!(self.phase, Phase::Done) {
                        return events;
                    }
                    match self.app.backends.log.tail(&self.topic, Some(&pos)).await {
                        Ok(t) => {
                            self.tail = Some(t);
                            self.epoch = Some(pos.epoch.clone());
                        }
                        Err(e) => return self.fail(events, &e.to_string()),
                    }
                    self.phase = Phase::Live;
                    return events;
                }
                Err(e) => return self.fail(Vec::new(), &e.message),
            },
        };
        match self.app.backends.log.tail(&self.topic, Some(&since)).await {
            Ok(t) => {
                self.tail = Some(t);
                self.epoch = Some(since.epoch.clone());
                self.phase = Phase::Live;
                Vec::new()
            }
            Err(e) => self.fail(Vec::new(), &e.to_string()),
        }
    }

    /// The snapshot event and the log position it covers; ends the stream
    /// when the video is finished.
    async fn snapshot(&mut self) -> ApiResult<(Vec<Event>, StreamPosition)> {
        let pos = self.app.backends.log.position(&self.topic).await?;
        let last = if pos.seq > 0 {
            let since = StreamPosition {
                seq: pos.seq - 1,
                epoch: pos.epoch.clone(),
            };
            let read = self
                .app
                .backends
                .log
                .read(&self.topic, Some(&since), 1)
                .await?;
            read.entries
                .first()
                .and_then(|e| serde_json::from_slice::<serde_json::Value>(&e.payload).ok())
        } else {
            None
        };
        let video = current(&self.app, self.video).await?;
        let snap = Snapshot {
            video: VideoView::from(&video),
            progress: last,
        };
        let mut events =
            vec![json_event("snapshot", &snap).id(format!("{}@{}", pos.seq, pos.epoch))];
        if finished(&video) {
            events.push(json_event("end", &VideoView::from(&video)));
            self.phase = Phase::Done;
        }
        Ok((events, pos))
    }

    async fn live(&mut self) -> Vec<Event> {
        let Some(tail) = self.tail.as_mut() else {
            self.phase = Phase::Done;
            return Vec::new();
        };
        match tokio::time::timeout(RECHECK, tail.next()).await {
            Ok(Some(Ok(TailItem::Entry(entry)))) => {
                let epoch = self.epoch.as_ref().map(Epoch::as_str).unwrap_or_default();
                let id = format!("{}@{epoch}", entry.seq);
                let text = String::from_utf8_lossy(&entry.payload).into_owned();
                let mut events = vec![Event::default().event("progress").id(id).data(text)];
                // The worker's last word: done (without a progress report,
                // unlike the final tick) or failed.
                let terminal =
                    serde_json::from_slice::<ProgressEvent>(&entry.payload).is_ok_and(|e| {
                        e.error.is_some()
                            || (e.stage == videosync_transcode::Stage::Done && e.progress.is_none())
                    });
                if terminal {
                    events.extend(self.end_if_finished().await);
                }
                events
            }
            Ok(Some(Ok(TailItem::Lost { .. }))) => match self.snapshot().await {
                Ok((events, pos)) => {
                    if !matches!(self.phase, Phase::Done) {
                        match self.app.backends.log.tail(&self.topic, Some(&pos)).await {
                            Ok(t) => {
                                self.tail = Some(t);
                                self.epoch = Some(pos.epoch.clone());
                            }
                            Err(e) => return self.fail(events, &e.to_string()),
                        }
                    }
                    events
                }
                Err(e) => self.fail(Vec::new(), &e.message),
            },
            Ok(Some(Err(e))) => self.fail(Vec::new(), &e.to_string()),
            Ok(None) => {
                self.phase = Phase::Done;
                Vec::new()
            }
            // Quiet: the video may have finished without a word in the log.
            Err(_) => self.end_if_finished().await,
        }
    }

    async fn end_if_finished(&mut self) -> Vec<Event> {
        match current(&self.app, self.video).await {
            Ok(v) if finished(&v) => {
                self.phase = Phase::Done;
                vec![json_event("end", &VideoView::from(&v))]
            }
            Ok(_) => Vec::new(),
            Err(e) => self.fail(Vec::new(), &e.message),
        }
    }

    /// Ends the stream with an `error` event (the client reconnects).
    fn fail(&mut self, mut events: Vec<Event>, why: &str) -> Vec<Event> {
        tracing::warn!(video = %self.video, error = %why, "progress stream failed");
        self.phase = Phase::Done;
        events.push(Event::default().event("error").data(
            serde_json::json!({ "message": "the progress stream failed; reconnect" }).to_string(),
        ));
        events
    }
}

fn finished(v: &Video) -> bool {
    matches!(v.status, VideoStatus::Ready | VideoStatus::Failed)
}

async fn current(app: &App, id: VideoId) -> ApiResult<Video> {
    let mut tx = app.backends.db.read().await?;
    let v = tx.video(id).await?;
    tx.commit().await?;
    Ok(v)
}

fn json_event(name: &str, value: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
}
