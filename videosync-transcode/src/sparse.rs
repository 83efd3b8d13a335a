//! The frames the images need, and few others.
//!
//! The extras part of a chunked transcode makes the poster and the
//! storyboard but encodes no video, so decoding the whole source for them
//! would cost the work of a whole single pass's decoder again. Instead the
//! images get their own demuxer and decoder, which decode forward to each
//! wanted time and seek over any gap longer than the longest keyframe
//! interval seen so far (and at least [`SEEK_GAP_S`]): a seek lands on the
//! keyframe before the wanted time, so it never decodes more than reading
//! on would. Dense storyboards of short clips decode straight through;
//! the storyboard of a two-hour film decodes a few frames per tile.
//!
//! The frames delivered are those a full decode would give the images
//! stage: for each tile time the first frame at or after it, and for the
//! poster the last frame at or before its time, each through the same
//! prefilter (deinterlace, colour, rotation), in time order.

use std::path::Path;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use ffmpeg_next as ff;

use crate::error::StageError;
use crate::prefilter::Prefilter;
use crate::stage::{ts_seconds, FrameMsg};

/// A gap shorter than this is decoded through, whatever the keyframe
/// interval seen so far: a seek and a decoder flush cost about that much.
pub(crate) const SEEK_GAP_S: f64 = 2.0;

/// Opens a threaded decoder for a video stream whose frames may not exceed
/// `max_pixels` (the decoder refuses a frame past it before allocating).
pub(crate) fn open_video_decoder(
    params: ff::codec::Parameters,
    max_pixels: u64,
) -> Result<ff::decoder::Video, String> {
    let mut ctx =
        ff::codec::Context::from_parameters(params).map_err(|e| format!("video stream: {e}"))?;
    ctx.set_threading(ff::codec::threading::Config {
        kind: ff::codec::threading::Type::Frame,
        count: 0,
        ..Default::default()
    });
    let codec = ff::codec::decoder::find(ctx.id())
        .ok_or("no decoder for the video stream: decoder not found")?;
    let mut dict = ff::Dictionary::new();
    dict.set("max_pixels", &max_pixels.min(i32::MAX as u64).to_string());
    ctx.decoder()
        .open_as_with(codec, dict)
        .and_then(ff::codec::decoder::Opened::video)
        .map_err(|e| format!("no decoder for the video stream: {e}"))
}

/// What the images want from the source.
pub(crate) struct SparseJob<'a> {
    pub(crate) input: &'a Path,
    /// Storyboard tile times, seconds from the source's start, ascending.
    pub(crate) tiles: Vec<f64>,
    /// The poster's time, when a poster is wanted.
    pub(crate) poster_at: Option<f64>,
    /// The prefilter chain, when the frames need one.
    pub(crate) prefilter: Option<String>,
    pub(crate) max_pixels: u64,
}

/// Decodes what `job` wants and sends it to `out`; returns the frames
/// decoded (the cost) and the frames sent.
///
/// # Errors
/// The source cannot be opened or decoded, or the prefilter fails;
/// [`StageError::Stopped`] when `interrupt` says so (the caller knows why).
pub(crate) fn sparse_frames(
    job: &SparseJob<'_>,
    interrupt: impl FnMut() -> bool + Clone + Send + 'static,
    out: &SyncSender<FrameMsg>,
) -> Result<(u64, u64), StageError> {
    let mut stopped = interrupt.clone();
    let mut input = ff::format::input_with_interrupt(job.input, interrupt)
        .map_err(|e| format!("open for the images: {e}"))?;
    let stream = crate::probe::best_video(&input).ok_or_else(|| "no video stream".to_owned())?;
    let (index, tb) = (stream.index(), stream.time_base());
    let t0 = if stream.start_time() == ff::ffi::AV_NOPTS_VALUE {
        0
    } else {
        stream.start_time()
    };
    let t0_s = ts_seconds(t0, tb);
    let mut decoder = open_video_decoder(stream.parameters(), job.max_pixels)?;

    let mut next_tile = 0;
    let mut poster_at = job.poster_at;
    // The poster's candidate: the latest frame at or before its time.
    let mut poster: Option<(f64, ff::frame::Video)> = None;
    let (mut decoded, mut sent) = (0u64, 0u64);
    let mut longest_gop = 0.0f64;
    let mut last_key: Option<f64> = None;
    let mut frame = ff::frame::Video::empty();
    let mut packet = ff::Packet::empty();
    // Sends one frame through the prefilter; false once the images stage
    // is gone.
    let deliver = |time_s: f64, f: &ff::frame::Video, sent: &mut u64| -> Result<bool, String> {
        let shown = match &job.prefilter {
            Some(spec) => {
                let mut p = Prefilter::new(spec.clone(), tb);
                let mut frames = p.run(Some(f))?;
                frames.extend(p.run(None)?);
                frames.into_iter().next()
            }
            None => Some(f.clone()),
        };
        let Some(shown) = shown else {
            return Ok(true);
        };
        *sent += 1;
        Ok(out
            .send(FrameMsg {
                frame: Arc::new(shown),
                time_s,
                segment: 0,
                starts: false,
            })
            .is_ok())
    };
    // The target of the last seek: a seek that lands before where the
    // decoder already was (a keyframe interval longer than any seen) is
    // not repeated for the same target.
    let mut sought: Option<f64> = None;
    let mut at_eof = false;
    loop {
        if stopped() {
            return Err(StageError::Stopped);
        }
        if !at_eof {
            match packet.read(&mut input) {
                Ok(()) => {}
                Err(ff::Error::Eof) => {
                    at_eof = true;
                    // Draining a decoder twice is harmless; a refusal means
                    // it has nothing left.
                    let _ = decoder.send_eof();
                }
                Err(_) => continue,
            }
            if !at_eof {
                if packet.stream() != index {
                    continue;
                }
                if packet.is_key() {
                    if let Some(pts) = packet.pts() {
                        let t = ts_seconds(pts - t0, tb);
                        if let Some(k) = last_key.filter(|&k| t > k) {
                            longest_gop = longest_gop.max(t - k);
                        }
                        last_key = Some(t);
                    }
                }
                // A corrupt packet costs its frames, not the images.
                let _ = decoder.send_packet(&packet);
            }
        }
        let mut seek_to = None;
        let mut got = false;
        while decoder.receive_frame(&mut frame).is_ok() {
            got = true;
            decoded += 1;
            let Some(ts) = frame.timestamp().or(frame.pts()) else {
                continue;
            };
            let time = ts_seconds(ts - t0, tb);
            if poster_at.is_some_and(|at| time > at + 1e-6) {
                if let Some((t, f)) = poster.take() {
                    if !deliver(t, &f, &mut sent)? {
                        return Ok((decoded, sent));
                    }
                }
                poster_at = None;
            }
            if job.tiles.get(next_tile).is_some_and(|&t| time + 1e-6 >= t) {
                if !deliver(time, &frame, &mut sent)? {
                    return Ok((decoded, sent));
                }
                while job.tiles.get(next_tile).is_some_and(|&t| t <= time + 1e-6) {
                    next_tile += 1;
                }
            }
            if poster_at.is_some() {
                // The decoder fills a fresh frame next time: keep this one.
                poster = Some((
                    time,
                    std::mem::replace(&mut frame, ff::frame::Video::empty()),
                ));
            }
            let next = match (job.tiles.get(next_tile), poster_at) {
                (Some(&t), Some(p)) => Some(t.min(p)),
                (Some(&t), None) => Some(t),
                (None, Some(p)) => Some(p),
                (None, None) => return Ok((decoded, sent)),
            };
            let far = |n: f64| n - time > longest_gop.max(SEEK_GAP_S) && sought != Some(n);
            if let Some(next) = next.filter(|&n| far(n)) {
                seek_to = Some(next);
                break;
            }
        }
        if let Some(t) = seek_to {
            sought = Some(t);
            let ts = ((t + t0_s) * 1_000_000.0) as i64;
            if input.seek(ts, ..ts).is_ok() {
                decoder.flush();
                last_key = None;
                at_eof = false;
            }
            continue;
        }
        if at_eof && !got {
            break;
        }
    }
    if let Some((t, f)) = poster.take() {
        deliver(t, &f, &mut sent)?;
    }
    Ok((decoded, sent))
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::sync::mpsc::sync_channel;

    use super::*;

    /// A 60 s clip at 25 fps with a keyframe every second.
    fn clip(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("long.mp4");
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=160x120:rate=25:duration=60")
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success());
        path
    }

    fn run(job: &SparseJob<'_>) -> (u64, Vec<f64>) {
        crate::probe::init().expect("FFmpeg initialises");
        let (tx, rx) = sync_channel(1000);
        let (decoded, sent) = sparse_frames(job, || false, &tx).expect("the frames decode");
        drop(tx);
        let times: Vec<f64> = rx.iter().map(|m| m.time_s).collect();
        assert_eq!(times.len() as u64, sent);
        (decoded, times)
    }

    #[test]
    fn far_apart_frames_cost_a_keyframe_interval_each_not_the_whole_source() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let input = clip(dir.path());
        let tiles: Vec<f64> = (0..6).map(|k| f64::from(k) * 10.0 + 0.5).collect();
        let job = SparseJob {
            input: &input,
            tiles,
            poster_at: Some(6.02),
            prefilter: None,
            max_pixels: 1 << 30,
        };
        let (decoded, times) = run(&job);
        // The first frame at or after each tile time, and the last one at
        // or before the poster's, in time order.
        let want = [0.52, 6.0, 10.52, 20.52, 30.52, 40.52, 50.52];
        assert_eq!(times.len(), want.len(), "{times:?}");
        for (t, w) in times.iter().zip(want) {
            assert!((t - w).abs() < 0.021, "{times:?}");
        }
        // 1500 frames in all; each tile needs at most a second's worth.
        assert!(decoded < 400, "decoded {decoded} frames");

        // Tiles a second apart are decoded straight through: every frame
        // once, none twice.
        let dense = SparseJob {
            tiles: (0..60).map(f64::from).collect(),
            poster_at: None,
            ..job
        };
        let (decoded, times) = run(&dense);
        assert_eq!(times.len(), 60);
        assert!(decoded <= 1500, "decoded {decoded} frames");
    }
}
