//! The encode step: demux and decode once, fan the frames out to every
//! rung, the audio and the thumbnails, each on its own thread, and hand
//! every finished segment to the uploader.
//!
//! One [`Part`] is a piece of work over one source: a range of segments of
//! every rung (the whole source in single-pass mode, one chunk in chunked
//! mode), and optionally the audio rendition and the images. It runs on
//! plain threads (never on the async runtime) and returns a [`PartResult`]
//! that the finishing step (`transcode::finish`) turns into playlists.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ff::media::Type as MediaType;
use ffmpeg_next as ff;
use serde::{Deserialize, Serialize};
use videosync_core::{Clock, SystemClock};
use videosync_hls::inspect::{Measured, RenditionInspector};
use videosync_hls::ladder::SegmentFormat;

use crate::audio::{run_audio, AudioJob};
use crate::error::{FfmpegError, StageError, TranscodeError};
use crate::plan::Planned;
use crate::prefilter::{chain, Prefilter};
use crate::progress::{CancelToken, Progress, ProgressFn, Stage};
use crate::segmenter::Finished;
use crate::sparse::{open_video_decoder, sparse_frames, SparseJob};
use crate::stage::{ts_seconds, FrameMsg, SegTiming};
use crate::thumbs::{poster_time, run_thumbs, tile_times, Storyboard, ThumbJob};
use crate::video::{resolve_encoder, run_rung, RungJob, VideoEncoder};

const OP: &str = "transcode";

/// Frames queued per consumer: enough to keep every encoder busy while
/// the decoder waits on the slowest, little enough to keep memory flat.
const FRAME_QUEUE: usize = 8;

/// A segment range `[start, end)`; `end == None` runs to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRange {
    /// First segment number.
    pub start: u32,
    /// One past the last segment number, or `None` for the source's end.
    pub end: Option<u32>,
}

impl SegmentRange {
    /// Every segment.
    pub const ALL: SegmentRange = SegmentRange {
        start: 0,
        end: None,
    };
}

/// Where produced objects go: relative names (`720p/seg_00000.m4s`) and
/// their bytes, in production order.
pub(crate) type UploadTx = tokio::sync::mpsc::Sender<(String, Bytes)>;

/// What a part does.
pub(crate) struct Part {
    pub(crate) input: PathBuf,
    /// The ladder and the source facts, decided once for every part.
    pub(crate) plan: Planned,
    /// Segments of every rung to encode; `None` encodes no video.
    pub(crate) video: Option<SegmentRange>,
    /// Whether this part makes the audio and the images the plan asks for.
    pub(crate) extras: bool,
}

/// One stored segment of a rendition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SegStored {
    pub(crate) index: u32,
    pub(crate) size: u64,
    pub(crate) keyframe: bool,
    /// Bytes holding the opening keyframe, for the I-frame playlist.
    #[serde(default)]
    pub(crate) keyframe_bytes: Option<u64>,
    /// What its bytes hold, read back independently of the segmenter, for
    /// the validator; `None` only in a chunk result from an older build.
    #[serde(default)]
    pub(crate) measured: Option<Measured>,
}

/// One rendition's output in a part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RenditionPart {
    pub(crate) segments: Vec<SegStored>,
    /// FNV-1a of the init segment (fMP4), to check chunks agree.
    pub(crate) init_digest: Option<u64>,
    /// Reads each segment back as it is stored.
    #[serde(skip)]
    inspector: Option<RenditionInspector>,
}

impl RenditionPart {
    /// Records a finished segment of the rendition in folder `dir` and
    /// queues it for the store; the init segment goes too, the first time,
    /// when `store_init`, and must stay the same.
    fn store(
        &mut self,
        done: Finished,
        dir: &str,
        format: SegmentFormat,
        store_init: bool,
        uploads: &UploadTx,
        stop: &AtomicBool,
    ) -> Result<(), StageError> {
        if stop.load(Ordering::SeqCst) {
            return Err(StageError::Stopped);
        }
        if let Some(init) = done.init {
            let digest = fnv(&init);
            match self.init_digest {
                None => {
                    self.init_digest = Some(digest);
                    let inspector = RenditionInspector::fmp4(&init)
                        .map_err(|e| format!("{dir}: the init segment reads back wrong: {e}"))?;
                    self.inspector = Some(inspector);
                    if store_init {
                        send(uploads, format!("{dir}/init.mp4"), init)?;
                    }
                }
                Some(d) if d != digest => {
                    return Err(format!("{dir}: the init segment changed mid-stream").into());
                }
                Some(_) => {}
            }
        }
        let inspector = self.inspector.get_or_insert_with(RenditionInspector::ts);
        let measured = inspector.segment(&done.bytes).map_err(|e| {
            format!(
                "{dir}/{}: the segment reads back wrong: {e}",
                segment_name(format, done.index)
            )
        })?;
        self.segments.push(SegStored {
            index: done.index,
            size: done.bytes.len() as u64,
            keyframe: done.starts_with_keyframe,
            keyframe_bytes: done.keyframe_bytes,
            measured: Some(measured),
        });
        send(
            uploads,
            format!("{dir}/{}", segment_name(format, done.index)),
            done.bytes,
        )
    }
}

impl Planned {
    pub(crate) fn part(&self, input: &Path, video: Option<SegmentRange>, extras: bool) -> Part {
        Part {
            input: input.to_path_buf(),
            plan: self.clone(),
            video,
            extras,
        }
    }
}

/// What a part produced; stored as JSON between chunk jobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartResult {
    pub(crate) timeline: Vec<SegTiming>,
    pub(crate) rungs: Vec<RenditionPart>,
    pub(crate) audio: Option<(RenditionPart, Vec<SegTiming>)>,
    pub(crate) poster: bool,
    pub(crate) storyboard: Option<Storyboard>,
    pub(crate) frames: u64,
    /// The encoder this part's worker resolved, when it encoded video.
    #[serde(default)]
    pub(crate) encoder: Option<VideoEncoder>,
}

/// The relative name of a segment of a rendition.
pub(crate) fn segment_name(format: SegmentFormat, index: u32) -> String {
    format!("seg_{index:05}.{}", format.extension())
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs a part to the end. Blocking: call it from a thread of its own.
pub(crate) fn run_part(
    part: &Part,
    uploads: &UploadTx,
    progress: Option<&ProgressFn>,
    cancel: &CancelToken,
) -> Result<PartResult, TranscodeError> {
    let path = part.input.display().to_string();
    let plan = &part.plan;
    let make_poster = part.extras && plan.poster;
    let make_storyboard = part.extras && plan.storyboard;
    let ff_err = |msg: String| TranscodeError::Ffmpeg {
        op: OP,
        path: path.clone(),
        source: FfmpegError::msg(msg),
    };
    crate::probe::init().map_err(|e| TranscodeError::Ffmpeg {
        op: OP,
        path: path.clone(),
        source: e,
    })?;
    let clock = SystemClock::new();
    let started = clock.monotonic();
    let deadline = plan.timeout.map(|t| started + t);
    // Stops every thread: the caller's cancel, the time limit, or a
    // failure anywhere in the part.
    let stop = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let interrupt = {
        let (cancel, stop, timed_out) = (cancel.clone(), stop.clone(), timed_out.clone());
        move || {
            if deadline.is_some_and(|d| clock.monotonic() > d) {
                timed_out.store(true, Ordering::SeqCst);
            }
            cancel.is_cancelled() || stop.load(Ordering::SeqCst) || timed_out.load(Ordering::SeqCst)
        }
    };
    // Why the part was stopped from outside (the caller or the clock);
    // `None` when it runs on, or stops for a failure of its own, which a
    // thread reports.
    let stopped = |interrupt: &dyn Fn() -> bool| -> Option<TranscodeError> {
        // Evaluated for its side effect: it notices a passed deadline.
        let _ = interrupt();
        if timed_out.load(Ordering::SeqCst) {
            Some(TranscodeError::Timeout {
                op: OP,
                path: path.clone(),
                after: plan.timeout.unwrap_or_default(),
            })
        } else if cancel.is_cancelled() {
            Some(TranscodeError::Cancelled {
                op: OP,
                path: path.clone(),
            })
        } else {
            None
        }
    };

    let mut input = ff::format::input_with_interrupt(&part.input, interrupt.clone())
        .map_err(|e| crate::probe::map_error(OP, &path, plan.timeout, e))?;
    // An audio-only ladder has no rung; its timeline is the audio's, and
    // its poster is the cover art. Attached pictures are never the video.
    let audio_only = plan.ladder.rungs.is_empty();
    let vstream = if audio_only {
        None
    } else {
        Some(
            crate::probe::best_video(&input).ok_or_else(|| TranscodeError::InvalidInput {
                op: OP,
                path: path.clone(),
                reason: "no video stream".to_owned(),
            })?,
        )
    };
    let astream = input.streams().best(MediaType::Audio);
    let timing_stream = match (&vstream, &astream) {
        (Some(v), _) => v,
        (None, Some(a)) => a,
        (None, None) => {
            return Err(TranscodeError::InvalidInput {
                op: OP,
                path: path.clone(),
                reason: "no video or audio stream".to_owned(),
            })
        }
    };
    let vindex = vstream.as_ref().map(ff::format::stream::Stream::index);
    let vtb = timing_stream.time_base();
    let t0 = if timing_stream.start_time() == ff::ffi::AV_NOPTS_VALUE {
        0
    } else {
        timing_stream.start_time()
    };
    let t0_s = ts_seconds(t0, vtb);
    let avg = timing_stream.avg_frame_rate();
    let nominal_frame_s = if avg.numerator() > 0 && avg.denominator() > 0 {
        f64::from(avg.denominator()) / f64::from(avg.numerator())
    } else {
        1.0 / 30.0
    };
    let vparams = vstream.as_ref().map(ff::format::stream::Stream::parameters);
    let audio_stream = if part.extras && plan.ladder.audio.is_some() {
        astream.map(|s| (s.index(), s.parameters(), s.time_base()))
    } else {
        None
    };
    let cover = if audio_only && make_poster {
        input
            .streams()
            .find(|s| crate::probe::is_attached_picture(s))
            .map(|s| (s.index(), s.parameters()))
    } else {
        None
    };
    let mut cover_jpeg: Option<Vec<u8>> = None;
    // A part that encodes no video gets its images from a decoder of their
    // own that seeks between the frames they need ([`crate::sparse`]),
    // when the source's length is known to place them.
    let images = vstream.is_some() && (make_poster || make_storyboard);
    let sparse_images = images && part.video.is_none() && plan.duration_s > 0.0;
    let need_frames = vstream.is_some() && (part.video.is_some() || images && !sparse_images);
    let range = part.video.unwrap_or(SegmentRange::ALL);
    let seg_s = f64::from(plan.ladder.segment_seconds);
    let start_s = f64::from(range.start) * seg_s;
    let end_s = range.end.map(|e| f64::from(e) * seg_s);
    if range.start > 0 {
        let ts = ((start_s + t0_s) * 1_000_000.0) as i64;
        input
            .seek(ts, ..ts)
            .map_err(|e| ff_err(format!("seek to {start_s} s: {e}")))?;
    }

    let mut decoder = if let (true, Some(vparams)) = (need_frames, vparams) {
        // The probe checked the declared size against the pixel budget; a
        // stream that later grows past it (a new sequence header) gets its
        // frames refused by the decoder itself, before it allocates them.
        Some(
            open_video_decoder(vparams, plan.max_pixels).map_err(|reason| {
                TranscodeError::Unsupported {
                    op: OP,
                    path: path.clone(),
                    reason,
                }
            })?,
        )
    } else {
        None
    };
    let mut prefilter = chain(plan.interlaced, plan.colour.as_deref(), plan.rotation)
        .map(|s| Prefilter::new(s, vtb));

    // The encoder is this machine's choice, made where the part runs.
    let encoder = match part.video {
        Some(_) if !plan.ladder.rungs.is_empty() => Some(resolve_encoder(plan.encoder).map_err(
            |reason| TranscodeError::Unsupported {
                op: OP,
                path: path.clone(),
                reason,
            },
        )?),
        _ => None,
    };
    let rung_jobs: Vec<RungJob> = match encoder {
        Some(encoder) => plan
            .ladder
            .rungs
            .iter()
            .map(|r| RungJob {
                rung: r.clone(),
                format: plan.ladder.format,
                encoder,
                preset: plan.preset.clone(),
                threads: plan.threads,
            })
            .collect(),
        None => Vec::new(),
    };

    std::thread::scope(|scope| -> Result<PartResult, TranscodeError> {
        let fail = |stop: &AtomicBool, e: StageError| {
            stop.store(true, Ordering::SeqCst);
            e
        };
        // Rungs.
        let mut frame_txs: Vec<SyncSender<FrameMsg>> = Vec::new();
        let mut rung_handles = Vec::new();
        for job in &rung_jobs {
            let (tx, rx): (SyncSender<FrameMsg>, Receiver<FrameMsg>) = sync_channel(FRAME_QUEUE);
            frame_txs.push(tx);
            let uploads = uploads.clone();
            let stop = stop.clone();
            let fmt = plan.ladder.format;
            rung_handles.push(scope.spawn(move || {
                let mut rendition = RenditionPart::default();
                let mut emit = |done: Finished| {
                    rendition.store(done, &job.rung.name, fmt, range.start == 0, &uploads, &stop)
                };
                let out = run_rung(job, &rx, &mut emit).map_err(|e| fail(&stop, e));
                drop(rx);
                out.map(|o| (rendition, o.frames))
            }));
        }
        // Thumbnails.
        let mut thumb_tx = None;
        let thumb_handle = if images {
            let (tx, rx) = sync_channel::<FrameMsg>(FRAME_QUEUE);
            thumb_tx = Some(tx);
            let job = ThumbJob {
                display: plan.display,
                poster: make_poster
                    .then(|| plan.ladder.rungs.first().map(|r| (r.width, r.height)))
                    .flatten(),
                storyboard: make_storyboard,
                duration_s: plan.duration_s,
            };
            let stop = stop.clone();
            Some(scope.spawn(move || run_thumbs(&job, &rx).map_err(|e| fail(&stop, e))))
        } else {
            None
        };
        let sparse_handle = match thumb_tx.take() {
            Some(tx) if sparse_images => {
                let job = SparseJob {
                    input: &part.input,
                    tiles: if make_storyboard {
                        tile_times(plan.duration_s)
                    } else {
                        Vec::new()
                    },
                    poster_at: make_poster.then(|| poster_time(plan.duration_s)),
                    prefilter: chain(plan.interlaced, plan.colour.as_deref(), plan.rotation),
                    max_pixels: plan.max_pixels,
                };
                let (stop, interrupt) = (stop.clone(), interrupt.clone());
                Some(scope.spawn(move || {
                    let out = sparse_frames(&job, interrupt, &tx);
                    drop(tx);
                    match out {
                        Ok((_, 0)) => Err(fail(
                            &stop,
                            "no video frame could be decoded for the images"
                                .to_owned()
                                .into(),
                        )),
                        Ok(_) => Ok(()),
                        Err(e) => Err(fail(&stop, e)),
                    }
                }))
            }
            tx => {
                thumb_tx = tx;
                None
            }
        };
        // Audio.
        let mut audio_tx = None;
        let audio_handle = match (&audio_stream, &plan.ladder.audio) {
            (Some((_, params, tb)), Some(audio_plan)) => {
                let (tx, rx) = sync_channel::<ff::Packet>(64);
                audio_tx = Some(tx);
                let job = AudioJob {
                    params: params.clone(),
                    time_base: *tb,
                    start_s: t0_s,
                    plan: audio_plan.clone(),
                    format: plan.ladder.format,
                    segment_seconds: plan.ladder.segment_seconds,
                    required: audio_only,
                };
                let uploads = uploads.clone();
                let stop = stop.clone();
                let fmt = plan.ladder.format;
                Some(scope.spawn(move || {
                    let mut rendition = RenditionPart::default();
                    let mut emit =
                        |done: Finished| rendition.store(done, "audio", fmt, true, &uploads, &stop);
                    let timing = run_audio(&job, &rx, &mut emit).map_err(|e| fail(&stop, e));
                    drop(rx);
                    timing.map(|t| (rendition, t))
                }))
            }
            _ => None,
        };

        // The decode loop, on this thread.
        let mut state = Decode {
            t0,
            vtb,
            start_s,
            end_s,
            seg_s,
            nominal_frame_s,
            last_time: None,
            current: None,
            timeline: Vec::new(),
            end_time: None,
            frames: 0,
            done: false,
        };
        let total_s = end_s.unwrap_or(plan.duration_s).max(start_s) - start_s;
        let mut last_report = started;
        let mut report = |frames: u64, media_s: f64, stage: Stage, force: bool| {
            let Some(cb) = progress else { return };
            let now = clock.monotonic();
            if !force && now.saturating_sub(last_report) < Duration::from_millis(250) {
                return;
            }
            last_report = now;
            let wall = now.saturating_sub(started).as_secs_f64().max(1e-6);
            let media = (media_s - start_s).max(0.0);
            cb(&Progress {
                stage,
                percent: if total_s > 0.0 {
                    (media / total_s * 100.0).clamp(0.0, 100.0)
                } else {
                    0.0
                },
                frames,
                fps: frames as f64 / wall,
                speed: media / wall,
                elapsed_ms: u64::try_from(now.saturating_sub(started).as_millis())
                    .unwrap_or(u64::MAX),
            });
        };
        report(0, start_s, Stage::Encoding, true);

        let mut decoded = ff::frame::Video::empty();
        let mut read_errors = 0u32;
        let mut decode_errors = 0u64;
        let mut packet = ff::Packet::empty();
        let loop_result: Result<(), TranscodeError> = (|| {
            loop {
                if let Some(e) = stopped(&interrupt) {
                    return Err(e);
                }
                // A consumer failed: stop feeding; its error is reported.
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                match packet.read(&mut input) {
                    Ok(()) => read_errors = 0,
                    Err(ff::Error::Eof) => break,
                    Err(e) => {
                        if let Some(err) = stopped(&interrupt) {
                            return Err(err);
                        }
                        if stop.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        read_errors += 1;
                        if read_errors > 64 {
                            return Err(TranscodeError::InvalidInput {
                                op: OP,
                                path: path.clone(),
                                reason: format!("unreadable past this point ({e})"),
                            });
                        }
                        continue;
                    }
                }
                let index = packet.stream();
                if let (Some(tx), Some((aidx, ..))) = (&audio_tx, &audio_stream) {
                    if index == *aidx && tx.send(packet.clone()).is_err() {
                        break;
                    }
                }
                // The demuxer hands the attached picture over as one packet
                // at the start.
                // A cover that does not decode costs the poster, not the
                // audio, which is what the upload is for.
                if let Some((cidx, params)) = &cover {
                    if index == *cidx && cover_jpeg.is_none() {
                        match crate::thumbs::cover_jpeg(params.clone(), &packet) {
                            Ok(jpeg) => cover_jpeg = Some(jpeg),
                            Err(e) => tracing::warn!(path = %path, "cover art skipped: {e}"),
                        }
                    }
                }
                if Some(index) != vindex {
                    continue;
                }
                let Some(dec) = decoder.as_mut() else {
                    continue;
                };
                if dec.send_packet(&packet).is_err() {
                    decode_errors += 1;
                    continue;
                }
                while dec.receive_frame(&mut decoded).is_ok() {
                    let frames = filtered(&mut prefilter, &mut decoded).map_err(&ff_err)?;
                    for f in frames {
                        if !state.push(f, &frame_txs, thumb_tx.as_ref()) {
                            return Ok(());
                        }
                    }
                    report(state.frames, state.media_s(), Stage::Encoding, false);
                }
                if state.done {
                    return Ok(());
                }
            }
            if let Some(dec) = decoder.as_mut() {
                if dec.send_eof().is_ok() {
                    while dec.receive_frame(&mut decoded).is_ok() {
                        let frames = filtered(&mut prefilter, &mut decoded).map_err(&ff_err)?;
                        for f in frames {
                            if !state.push(f, &frame_txs, thumb_tx.as_ref()) {
                                return Ok(());
                            }
                        }
                    }
                }
                if let Some(p) = prefilter.as_mut() {
                    for f in p.run(None).map_err(&ff_err)? {
                        if !state.push(f, &frame_txs, thumb_tx.as_ref()) {
                            return Ok(());
                        }
                    }
                }
            }
            Ok(())
        })();
        if loop_result.is_err() {
            stop.store(true, Ordering::SeqCst);
        }
        // Closing the channels ends every consumer.
        drop(frame_txs);
        drop(thumb_tx);
        drop(audio_tx);
        // The cause, not a stage that stopped because of it.
        let mut first_err: Option<StageError> = None;
        let mut note = |e: StageError| {
            if first_err.as_ref().is_none_or(|f| *f == StageError::Stopped) {
                first_err = Some(e);
            }
        };
        let mut rungs = Vec::new();
        let mut frames_encoded = 0u64;
        for h in rung_handles {
            match h.join() {
                Ok(Ok((r, n))) => {
                    frames_encoded = frames_encoded.max(n);
                    rungs.push(r);
                }
                Ok(Err(e)) => note(e),
                Err(_) => note("a rung thread panicked".to_owned().into()),
            }
        }
        match sparse_handle.map(|h| h.join()) {
            None | Some(Ok(Ok(()))) => {}
            Some(Ok(Err(e))) => note(e),
            Some(Err(_)) => note("the images' decoder thread panicked".to_owned().into()),
        }
        let thumbs = match thumb_handle.map(|h| h.join()) {
            None => None,
            Some(Ok(Ok(t))) => Some(t),
            Some(Ok(Err(e))) => {
                note(e);
                None
            }
            Some(Err(_)) => {
                note("the thumbnail thread panicked".to_owned().into());
                None
            }
        };
        let audio = match audio_handle.map(|h| h.join()) {
            None => None,
            Some(Ok(Ok(a))) => Some(a),
            Some(Ok(Err(e))) => {
                note(e);
                None
            }
            Some(Err(_)) => {
                note("the audio thread panicked".to_owned().into());
                None
            }
        };
        loop_result?;
        if let Some(e) = stopped(&interrupt) {
            return Err(e);
        }
        if let Some(e) = first_err {
            return Err(e.into_transcode(OP, &path));
        }
        if need_frames && state.frames == 0 {
            return Err(TranscodeError::InvalidInput {
                op: OP,
                path: path.clone(),
                reason: if decode_errors > 0 {
                    format!("no video frame could be decoded ({decode_errors} corrupt packets)")
                } else {
                    "no video frame in range".to_owned()
                },
            });
        }
        report(state.frames, state.media_s(), Stage::Encoding, true);

        let mut result = PartResult {
            timeline: state.timeline(),
            rungs,
            audio,
            frames: state.frames.max(frames_encoded),
            encoder,
            ..PartResult::default()
        };
        if part.video.is_none() {
            result.timeline.clear();
        }
        if let Some(poster) = cover_jpeg {
            send(uploads, "poster.jpg".to_owned(), poster)
                .map_err(|e| e.into_transcode(OP, &path))?;
            result.poster = true;
        }
        if let Some(t) = thumbs {
            if let Some(poster) = t.poster {
                send(uploads, "poster.jpg".to_owned(), poster)
                    .map_err(|e| e.into_transcode(OP, &path))?;
                result.poster = true;
            }
            if let Some(layout) = t.layout {
                let board = Storyboard::new(layout, t.tiles, t.sheets.len());
                for (name, sheet) in board.sheets.iter().zip(t.sheets) {
                    send(uploads, name.clone(), sheet).map_err(|e| e.into_transcode(OP, &path))?;
                }
                result.storyboard = Some(board);
            }
        }
        Ok(result)
    })
}

fn send(uploads: &UploadTx, name: String, bytes: Vec<u8>) -> Result<(), StageError> {
    uploads
        .blocking_send((name, Bytes::from(bytes)))
        .map_err(|_| StageError::Store)
}

fn filtered(
    prefilter: &mut Option<Prefilter>,
    frame: &mut ff::frame::Video,
) -> Result<Vec<ff::frame::Video>, String> {
    match prefilter {
        Some(p) => p.run(Some(frame)),
        // The decoder refills its own frame next time: take this one.
        None => Ok(vec![std::mem::replace(frame, ff::frame::Video::empty())]),
    }
}

/// The decoder side's bookkeeping: frame times, segment starts, the
/// timeline.
struct Decode {
    t0: i64,
    vtb: ff::Rational,
    start_s: f64,
    end_s: Option<f64>,
    seg_s: f64,
    nominal_frame_s: f64,
    last_time: Option<f64>,
    current: Option<u32>,
    /// Segment starts: (segment, time of its first frame).
    timeline: Vec<(u32, f64)>,
    /// Where the last segment ends: the first frame past the range, or the
    /// last frame's end.
    end_time: Option<f64>,
    frames: u64,
    done: bool,
}

impl Decode {
    fn media_s(&self) -> f64 {
        self.last_time.unwrap_or(self.start_s)
    }

    /// Places one frame; `false` when the range is done or a consumer is
    /// gone.
    fn push(
        &mut self,
        frame: ff::frame::Video,
        rungs: &[SyncSender<FrameMsg>],
        thumbs: Option<&SyncSender<FrameMsg>>,
    ) -> bool {
        let ts = frame.timestamp().or(frame.pts());
        let time = match ts {
            Some(t) => ts_seconds(t - self.t0, self.vtb),
            None => self.last_time.map_or(0.0, |l| l + self.nominal_frame_s),
        };
        // Frames before the start (edit-list pre-roll, a seek's lead-in)
        // and repeated or backward timestamps are not shown.
        if time < self.start_s - 1e-6 || self.last_time.is_some_and(|l| time <= l + 1e-9) {
            return true;
        }
        if self.end_s.is_some_and(|e| time >= e - 1e-9) {
            self.end_time = Some(time);
            self.done = true;
            return false;
        }
        let segment = ((time / self.seg_s) + 1e-9).floor().max(0.0) as u32;
        let starts = self.current != Some(segment);
        if starts {
            self.current = Some(segment);
            self.timeline.push((segment, time));
        }
        self.last_time = Some(time);
        self.frames += 1;
        let msg = FrameMsg {
            frame: Arc::new(frame),
            time_s: time,
            segment,
            starts,
        };
        for tx in rungs {
            if tx.send(msg.clone()).is_err() {
                return false;
            }
        }
        if let Some(tx) = thumbs {
            // The images are optional: a failed thumbnail thread reports
            // its own error.
            let _ = tx.send(msg);
        }
        true
    }

    fn timeline(&self) -> Vec<SegTiming> {
        let end = self
            .end_time
            .or(self.last_time.map(|l| l + self.nominal_frame_s))
            .unwrap_or(0.0);
        self.timeline
            .iter()
            .enumerate()
            .map(|(i, &(index, start))| {
                let next = self.timeline.get(i + 1).map_or(end, |n| n.1);
                SegTiming {
                    index,
                    duration_s: next - start,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_order() {
        assert_eq!(segment_name(SegmentFormat::Fmp4, 7), "seg_00007.m4s");
        assert_eq!(segment_name(SegmentFormat::Ts, 12345), "seg_12345.ts");
    }
}
