//! The public transcode API: a source file in, an HLS ladder in an
//! [`ObjectStore`] out.
//!
//! Layout under the destination prefix:
//!
//! ```text
//! master.m3u8                 written last: the ladder exists once it does
//! manifest.json               what was made, with measured bandwidths
//! 1080p/index.m3u8            one folder per rung
//! 1080p/iframes.m3u8          its I-frame playlist (byte ranges of the keyframes)
//! 1080p/init.mp4              (fMP4 only)
//! 1080p/seg_00000.m4s         (.ts for MPEG-TS)
//! audio/index.m3u8, audio/init.mp4, audio/seg_00000.m4s
//! poster.jpg
//! storyboard/storyboard.vtt, storyboard/sheet_000.jpg
//! ```
//!
//! Segments are stored as they are produced. Playlists, the manifest and
//! the master come at the end, after the ladder passed the validator; on
//! any failure or cancellation everything written is removed again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use videosync_core::catalog::Rendition;
use videosync_core::store::DynObjectStore;
use videosync_core::{ObjectKey, ObjectStore, ObjectStoreExt, SourceMeta};
use videosync_hls::inspect::Measured;
use videosync_hls::ladder::{plan, plan_audio_only, LadderOptions, SegmentFormat, SourceVideo};
use videosync_hls::playlist::{
    audio_only_master, iframe_playlist, iframe_variant, master_playlist, master_to_string, measure,
    media_playlist, media_to_string, rendition, AudioInput, SegmentInfo, VariantInput,
};
use videosync_hls::validate::{validate, ProducedLadder, ProducedRendition, ValidateOptions};

use crate::error::TranscodeError;
use crate::pipeline::{
    run_part, segment_name, Part, PartResult, RenditionPart, SegmentRange, UploadTx,
};
use crate::plan::Planned;
pub use crate::plan::SourceSummary;
use crate::probe::{probe_async, ProbeOptions};
use crate::progress::{CancelToken, Progress, ProgressFn, Stage};
use crate::stage::SegTiming;
use crate::thumbs::Storyboard;
use crate::video::{EncoderChoice, VideoEncoder};

const OP: &str = "transcode";

/// Objects stored at once.
const UPLOAD_CONCURRENCY: usize = 4;

/// How to transcode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscodeOptions {
    /// Rungs, segment length and segment format.
    pub ladder: LadderOptions,
    /// x264 preset (`ultrafast` .. `placebo`); ignored by NVENC.
    pub preset: String,
    /// Which H.264 encoder.
    pub encoder: EncoderChoice,
    /// Threads per x264 encoder; 0 lets x264 choose.
    pub threads: usize,
    /// Make `poster.jpg`.
    pub poster: bool,
    /// Make the storyboard.
    pub storyboard: bool,
    /// Give up after this long (`None`: no limit).
    pub timeout: Option<Duration>,
}

impl Default for TranscodeOptions {
    fn default() -> Self {
        TranscodeOptions {
            ladder: LadderOptions::default(),
            preset: "veryfast".to_owned(),
            encoder: EncoderChoice::Auto,
            threads: 0,
            poster: true,
            storyboard: true,
            timeout: None,
        }
    }
}

/// Where a ladder goes: a store and a key prefix (`None`: the store root).
#[derive(Debug, Clone)]
pub struct Destination {
    /// The store.
    pub store: DynObjectStore,
    /// The prefix every key starts with (`videos/<id>/hls`).
    pub prefix: Option<ObjectKey>,
}

impl Destination {
    /// A destination.
    pub fn new(store: DynObjectStore, prefix: Option<ObjectKey>) -> Self {
        Destination { store, prefix }
    }

    /// The key of `rel` under the prefix.
    pub(crate) fn key(&self, rel: &str) -> Result<ObjectKey, videosync_core::Error> {
        let full = match &self.prefix {
            Some(p) => format!("{}/{rel}", p.as_str()),
            None => rel.to_owned(),
        };
        ObjectKey::parse(&full).map_err(|e| videosync_core::Error::invalid_input(e.to_string()))
    }
}

/// The audio rendition in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestAudio {
    /// Its media playlist.
    pub playlist: String,
    /// RFC 6381 codecs string.
    pub codecs: String,
    /// Channels.
    pub channels: u32,
    /// Sample rate, Hz.
    pub sample_rate: u32,
    /// Target bit rate.
    pub bitrate: u64,
    /// Measured peak bandwidth.
    pub bandwidth: u64,
    /// Measured average bandwidth.
    pub average_bandwidth: u64,
    /// Segment count.
    pub segments: usize,
}

/// One video rendition in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRendition {
    /// As the catalog stores it (bandwidths include the audio).
    #[serde(flatten)]
    pub rendition: Rendition,
    /// Target video bit rate.
    pub bitrate: u64,
    /// Measured peak bandwidth of the video alone.
    pub video_bandwidth: u64,
    /// Segment count.
    pub segments: usize,
}

/// What a transcode made; stored as `manifest.json` beside the master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub version: u32,
    /// The master playlist, relative to the ladder root.
    pub master: String,
    /// The source.
    pub source: SourceSummary,
    /// Segment container.
    pub format: SegmentFormat,
    /// Target segment length, seconds.
    pub segment_seconds: u32,
    /// Duration of the ladder, seconds.
    pub duration_s: f64,
    /// The H.264 encoder used.
    pub encoder: VideoEncoder,
    /// The x264 preset.
    pub preset: String,
    /// Video rungs, largest first.
    pub renditions: Vec<ManifestRendition>,
    /// The audio rendition.
    pub audio: Option<ManifestAudio>,
    /// The poster, relative to the ladder root.
    pub poster: Option<String>,
    /// The storyboard.
    pub storyboard: Option<Storyboard>,
    /// Source frames decoded.
    pub frames: u64,
    /// Parts the ladder was encoded in (1: single pass).
    pub chunks: u32,
}

impl Manifest {
    /// The renditions as the catalog stores them.
    pub fn catalog_renditions(&self) -> Vec<Rendition> {
        self.renditions
            .iter()
            .map(|r| r.rendition.clone())
            .collect()
    }
}

/// Probes and plans.
pub(crate) async fn prepare(
    input: &Path,
    opts: &TranscodeOptions,
) -> Result<Planned, TranscodeError> {
    let path = input.display().to_string();
    let probe = probe_async(input, ProbeOptions::default()).await?;
    if probe.video.is_none() {
        if let Some(audio) = &probe.audio {
            return prepare_audio_only(&probe, audio, opts, path);
        }
    }
    let video = probe.require_video()?;
    if !video.decodable {
        return Err(TranscodeError::InvalidInput {
            op: OP,
            path,
            reason: format!("the {} video stream has no decodable frame", video.codec),
        });
    }
    let meta = SourceMeta::from(&probe);
    let mut source = SourceVideo::from_meta(&meta).map_err(|e| TranscodeError::InvalidInput {
        op: OP,
        path: path.clone(),
        reason: e.to_string(),
    })?;
    // A source without a usable audio decoder is treated as silent.
    if probe.audio.is_none() {
        source.audio_channels = None;
    }
    // Rungs are planned on square pixels: an anamorphic source (DVD, HDV,
    // broadcast) would otherwise play squeezed with a wrong RESOLUTION. The
    // scaler then maps the stored frame onto the rung's size, and the
    // encoder writes square pixels.
    (source.width, source.height) = video.square_pixel_size();
    let ladder = plan(&source, &opts.ladder).map_err(|e| TranscodeError::InvalidInput {
        op: OP,
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let encoder = opts.encoder;
    let display = video.display_dimensions();
    let interlaced = video.field_order.is_some_and(|o| o.is_interlaced());
    let duration_s = probe
        .duration_ms
        .or(video.duration_ms)
        .map_or(0.0, |ms| ms as f64 / 1000.0);
    let planned = Planned {
        source: SourceSummary {
            meta,
            interlaced,
            bit_depth: video.bit_depth,
        },
        ladder,
        encoder,
        preset: opts.preset.clone(),
        threads: opts.threads,
        interlaced,
        rotation: video.rotation,
        duration_s,
        display,
        poster: opts.poster,
        storyboard: opts.storyboard,
        timeout: opts.timeout,
        colour: crate::prefilter::colour_fix(
            video.pixel_format.as_deref(),
            &crate::prefilter::SourceColour {
                matrix: video.color_space.as_deref(),
                primaries: video.color_primaries.as_deref(),
                transfer: video.color_transfer.as_deref(),
            },
            video.height,
            video
                .frame_rate
                .average
                .or(video.frame_rate.real)
                .unwrap_or(0.0),
        ),
        max_pixels: ProbeOptions::default().max_pixels,
    };
    Ok(planned)
}

/// Plans the ladder of a source without video: the audio rendition alone,
/// with the cover art (when there is one) as the poster.
fn prepare_audio_only(
    probe: &crate::probe::Probe,
    audio: &crate::probe::AudioInfo,
    opts: &TranscodeOptions,
    path: String,
) -> Result<Planned, TranscodeError> {
    let ladder =
        plan_audio_only(audio.channels, Some(audio.sample_rate), &opts.ladder).map_err(|e| {
            TranscodeError::InvalidInput {
                op: OP,
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
    let meta = SourceMeta::from(probe);
    Ok(Planned {
        source: SourceSummary {
            meta,
            interlaced: false,
            bit_depth: None,
        },
        ladder,
        // No video is encoded.
        encoder: opts.encoder,
        preset: opts.preset.clone(),
        threads: opts.threads,
        interlaced: false,
        rotation: 0,
        duration_s: probe.duration_ms.map_or(0.0, |ms| ms as f64 / 1000.0),
        display: (0, 0),
        poster: opts.poster && probe.cover_art.is_some(),
        storyboard: false,
        timeout: opts.timeout,
        colour: None,
        max_pixels: ProbeOptions::default().max_pixels,
    })
}

/// Stores what the encoding threads produce, a few objects at a time, and
/// remembers every key written so a failure can remove them.
pub(crate) struct Uploader {
    tx: UploadTx,
    task: tokio::task::JoinHandle<Result<(), videosync_core::Error>>,
    written: Arc<Mutex<Vec<ObjectKey>>>,
}

impl Uploader {
    pub(crate) fn start(dest: &Destination) -> Uploader {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Bytes)>(UPLOAD_CONCURRENCY * 2);
        let written = Arc::new(Mutex::new(Vec::new()));
        let dest = dest.clone();
        let record = written.clone();
        let task = tokio::spawn(async move {
            let mut running: JoinSet<Result<ObjectKey, videosync_core::Error>> = JoinSet::new();
            let mut outcome = Ok(());
            while let Some((name, bytes)) = rx.recv().await {
                let key = match dest.key(&name) {
                    Ok(k) => k,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                };
                let store = dest.store.clone();
                running.spawn(async move { store.put(&key, bytes.into()).await.map(|_| key) });
                while running.len() >= UPLOAD_CONCURRENCY {
                    if let Some(done) = running.join_next().await {
                        if let Err(e) = collect(done, &record) {
                            outcome = Err(e);
                        }
                    }
                }
                if outcome.is_err() {
                    break;
                }
            }
            // Dropping the receiver makes every sender fail fast.
            drop(rx);
            while let Some(done) = running.join_next().await {
                if let Err(e) = collect(done, &record) {
                    outcome = outcome.and(Err(e));
                }
            }
            outcome
        });
        Uploader { tx, task, written }
    }

    pub(crate) fn sender(&self) -> UploadTx {
        self.tx.clone()
    }

    /// Waits for every queued object; the first store error.
    pub(crate) async fn finish(self) -> (Result<(), videosync_core::Error>, Vec<ObjectKey>) {
        drop(self.tx);
        let outcome = match self.task.await {
            Ok(r) => r,
            Err(e) => Err(videosync_core::Error::unavailable("upload task failed", e)),
        };
        let written =
            std::mem::take(&mut *self.written.lock().unwrap_or_else(PoisonError::into_inner));
        (outcome, written)
    }
}

fn collect(
    done: Result<Result<ObjectKey, videosync_core::Error>, tokio::task::JoinError>,
    record: &Mutex<Vec<ObjectKey>>,
) -> Result<(), videosync_core::Error> {
    match done {
        Ok(Ok(key)) => {
            record
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(key);
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(e) => Err(videosync_core::Error::unavailable("upload failed", e)),
    }
}

/// Removes what a failed run wrote; best effort, the run's error wins.
pub(crate) async fn remove_all(store: &dyn ObjectStore, keys: &[ObjectKey]) {
    for key in keys {
        let _ = store.delete(key).await;
    }
}

/// Runs one part: encoding on a blocking thread, storing on the runtime.
/// On failure, what the part stored is removed.
pub(crate) async fn run_part_stored(
    part: Part,
    dest: &Destination,
    progress: Option<ProgressFn>,
    cancel: &CancelToken,
) -> Result<(PartResult, Vec<ObjectKey>), TranscodeError> {
    let path = part.input.display().to_string();
    let uploader = Uploader::start(dest);
    let tx = uploader.sender();
    let cancel_enc = cancel.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let r = run_part(&part, &tx, progress.as_ref(), &cancel_enc);
        drop(tx);
        r
    })
    .await;
    let (stored, written) = uploader.finish().await;
    let result = match encoded {
        Ok(r) => r,
        Err(e) => Err(TranscodeError::Ffmpeg {
            op: OP,
            path: path.clone(),
            source: crate::error::FfmpegError::msg(format!("encoding thread failed: {e}")),
        }),
    };
    let result = match (result, stored) {
        (Ok(r), Ok(())) => Ok(r),
        // A store failure explains the encoder's "stopped taking objects".
        (Ok(_) | Err(TranscodeError::Ffmpeg { .. }), Err(e)) => Err(TranscodeError::Store {
            op: OP,
            path: path.clone(),
            source: e,
        }),
        (Err(e), _) => Err(e),
    };
    match result {
        Ok(r) => Ok((r, written)),
        Err(e) => {
            remove_all(dest.store.as_ref(), &written).await;
            Err(e)
        }
    }
}

/// Transcodes `input` into an HLS ladder at `dest`: probe, plan, decode
/// once, encode every rung in parallel, store segments as they are made,
/// then playlists, manifest and master.
///
/// `progress` is called a few times a second from the decoding thread;
/// `cancel` stops the run, which then removes what it wrote.
///
/// # Errors
///
/// [`TranscodeError::InvalidInput`] / [`TranscodeError::Unsupported`] /
/// [`TranscodeError::NotFound`] for a bad source,
/// [`TranscodeError::Cancelled`], [`TranscodeError::Timeout`],
/// [`TranscodeError::Store`] when the store fails,
/// [`TranscodeError::InvalidOutput`] when the produced ladder breaks an HLS
/// rule. Nothing stays in the store after an error.
pub async fn transcode(
    input: impl AsRef<Path>,
    dest: &Destination,
    opts: &TranscodeOptions,
    progress: Option<ProgressFn>,
    cancel: &CancelToken,
) -> Result<Manifest, TranscodeError> {
    let input = input.as_ref();
    report(progress.as_ref(), Stage::Probing, 0.0);
    let planned = prepare(input, opts).await?;
    let part = planned.part(input, Some(SegmentRange::ALL), true);
    let (result, written) = run_part_stored(part, dest, progress.clone(), cancel).await?;
    report(progress.as_ref(), Stage::Finishing, 100.0);
    match finish(input, &planned, &[result], dest).await {
        Ok(manifest) => {
            report(progress.as_ref(), Stage::Done, 100.0);
            Ok(manifest)
        }
        Err(e) => {
            remove_all(dest.store.as_ref(), &written).await;
            Err(e)
        }
    }
}

pub(crate) fn report(progress: Option<&ProgressFn>, stage: Stage, percent: f64) {
    if let Some(cb) = progress {
        cb(&Progress {
            stage,
            percent,
            frames: 0,
            fps: 0.0,
            speed: 0.0,
            elapsed_ms: 0,
        });
    }
}

/// Writes playlists, images' index, manifest and, last, the master over
/// the parts' results (one part, or every chunk in order plus the extras).
pub(crate) async fn finish(
    input: &Path,
    planned: &Planned,
    parts: &[PartResult],
    dest: &Destination,
) -> Result<Manifest, TranscodeError> {
    let path = input.display().to_string();
    let invalid = |reason: String| TranscodeError::InvalidOutput {
        op: OP,
        path: path.clone(),
        reason,
    };
    let store_err = |e: videosync_core::Error| TranscodeError::Store {
        op: OP,
        path: path.clone(),
        source: e,
    };
    let ladder = &planned.ladder;
    let encoder = agreed_encoder(parts.iter().filter_map(|p| p.encoder)).map_err(&invalid)?;
    let format = ladder.format;

    // The video timeline and every rung's segments, over all parts.
    let mut timeline: Vec<SegTiming> = Vec::new();
    let mut rungs: Vec<RenditionPart> = vec![RenditionPart::default(); ladder.rungs.len()];
    let mut audio: Option<(RenditionPart, Vec<SegTiming>)> = None;
    let mut poster = false;
    let mut storyboard = None;
    let mut frames = 0;
    for p in parts {
        timeline.extend_from_slice(&p.timeline);
        frames += p.frames;
        for (all, part) in rungs.iter_mut().zip(&p.rungs) {
            if let (Some(a), Some(b)) = (all.init_digest, part.init_digest) {
                if a != b {
                    return Err(invalid(
                        "chunks disagree on the init segment (encoder settings differ)".to_owned(),
                    ));
                }
            }
            all.init_digest = all.init_digest.or(part.init_digest);
            all.segments.extend_from_slice(&part.segments);
        }
        if p.audio.is_some() {
            audio.clone_from(&p.audio);
        }
        poster |= p.poster;
        if storyboard.is_none() {
            storyboard.clone_from(&p.storyboard);
        }
    }
    if ladder.rungs.is_empty() {
        let summary = AudioOnly {
            audio: audio.as_ref(),
            poster,
            chunks: parts.len(),
        };
        return finish_audio_only(&path, planned, &summary, dest).await;
    }
    if timeline.is_empty() {
        return Err(invalid("no video segment was produced".to_owned()));
    }
    let duration_s: f64 = timeline.iter().map(|t| t.duration_s).sum();

    let infos = |stored: &[crate::pipeline::SegStored], timing: &[SegTiming]| {
        let durations: HashMap<u32, f64> = timing.iter().map(|t| (t.index, t.duration_s)).collect();
        let mut out = Vec::with_capacity(stored.len());
        for s in stored {
            let Some(&duration) = durations.get(&s.index) else {
                return Err(format!("segment {} has no timing", s.index));
            };
            let mut info = SegmentInfo::new(segment_name(format, s.index), duration, s.size);
            info.starts_with_keyframe = s.keyframe;
            info.keyframe_bytes = s.keyframe_bytes;
            out.push(info);
        }
        Ok(out)
    };
    let mut rung_infos = Vec::with_capacity(rungs.len());
    let mut rung_measured = Vec::with_capacity(rungs.len());
    for (rung, r) in ladder.rungs.iter().zip(&rungs) {
        if r.segments.len() != timeline.len() {
            return Err(invalid(format!(
                "{} has {} segments, the timeline {}",
                rung.name,
                r.segments.len(),
                timeline.len()
            )));
        }
        rung_infos.push(infos(&r.segments, &timeline).map_err(&invalid)?);
        rung_measured.push(read_back(&rung.name, &r.segments).map_err(&invalid)?);
    }
    let (audio_infos, audio_measured) = match (&audio, &ladder.audio) {
        (Some((a, timing)), Some(_)) if !a.segments.is_empty() => (
            Some(infos(&a.segments, timing).map_err(&invalid)?),
            read_back("audio", &a.segments).map_err(&invalid)?,
        ),
        _ => (None, Vec::new()),
    };

    let uris: Vec<String> = ladder
        .rungs
        .iter()
        .map(|r| format!("{}/index.m3u8", r.name))
        .collect();
    let hls = |e: videosync_hls::Error| invalid(e.to_string());
    let medias = rung_infos
        .iter()
        .map(|s| media_playlist(format, s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(hls)?;
    let audio_media = audio_infos
        .as_ref()
        .map(|s| media_playlist(format, s))
        .transpose()
        .map_err(hls)?;
    let audio_input = match (&audio_infos, &ladder.audio) {
        (Some(segs), Some(plan)) => Some(AudioInput {
            uri: "audio/index.m3u8",
            plan,
            segments: segs,
        }),
        _ => None,
    };
    let variants: Vec<VariantInput<'_>> = ladder
        .rungs
        .iter()
        .zip(&uris)
        .zip(&rung_infos)
        .map(|((rung, uri), segments)| VariantInput {
            uri,
            rung,
            segments,
        })
        .collect();
    let mut master = master_playlist(format, &variants, audio_input.as_ref()).map_err(hls)?;
    // I-frame playlists for trick play and seek thumbnails, one per rung,
    // when every segment's keyframe range is known (it always is for what
    // this crate's segmenter makes; a chunk result from an older build may
    // lack it, and then there are none).
    let mut iframes = Vec::new();
    for v in &variants {
        let Some(playlist) = iframe_playlist(format, v.segments).map_err(hls)? else {
            break;
        };
        let uri = format!("{}/iframes.m3u8", v.rung.name);
        master
            .variants
            .push(iframe_variant(&uri, v.rung, v.segments).map_err(hls)?);
        iframes.push((uri, playlist));
    }
    if iframes.len() != variants.len() {
        iframes.clear();
        master.variants.retain(|v| !v.is_i_frame);
    }
    let produced = ProducedLadder {
        master: &master,
        video: uris
            .iter()
            .zip(&medias)
            .zip(&rung_measured)
            .enumerate()
            .map(|(i, ((uri, playlist), segments))| ProducedRendition {
                uri,
                playlist,
                segments,
                iframes: iframes.get(i).map(|(_, p)| p),
            })
            .collect(),
        audio: audio_media.as_ref().map(|playlist| ProducedRendition {
            uri: "audio/index.m3u8",
            playlist,
            segments: &audio_measured,
            iframes: None,
        }),
    };
    let violations = validate(&produced, &ValidateOptions::default());
    if !violations.is_empty() {
        let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Err(invalid(text.join("; ")));
    }

    let mut renditions = Vec::with_capacity(variants.len());
    for v in &variants {
        let r = rendition(v, audio_input.as_ref()).map_err(hls)?;
        let video_bw = measure(v.segments).map_err(hls)?;
        renditions.push(ManifestRendition {
            rendition: r,
            bitrate: v.rung.bitrate,
            video_bandwidth: video_bw.peak,
            segments: v.segments.len(),
        });
    }
    let manifest_audio = match (&audio_input, &audio_infos) {
        (Some(a), Some(segs)) => {
            let bw = measure(segs).map_err(hls)?;
            Some(ManifestAudio {
                playlist: a.uri.to_owned(),
                codecs: a.plan.codecs().to_owned(),
                channels: a.plan.channels,
                sample_rate: a.plan.sample_rate,
                bitrate: a.plan.bitrate,
                bandwidth: bw.peak,
                average_bandwidth: bw.average,
                segments: segs.len(),
            })
        }
        _ => None,
    };
    let manifest = Manifest {
        version: 1,
        master: "master.m3u8".to_owned(),
        source: planned.source.clone(),
        format,
        segment_seconds: ladder.segment_seconds,
        duration_s,
        encoder,
        preset: planned.preset.clone(),
        renditions,
        audio: manifest_audio,
        poster: poster.then(|| "poster.jpg".to_owned()),
        storyboard: storyboard.clone(),
        frames,
        chunks: u32::try_from(parts.len()).unwrap_or(u32::MAX),
    };

    // Media playlists and side files first, the master last.
    let mut files: Vec<(String, Bytes)> = Vec::new();
    for (uri, media) in uris.iter().zip(&medias) {
        files.push((uri.clone(), Bytes::from(media_to_string(media))));
    }
    for (uri, media) in &iframes {
        files.push((uri.clone(), Bytes::from(media_to_string(media))));
    }
    if let Some(m) = &audio_media {
        files.push((
            "audio/index.m3u8".to_owned(),
            Bytes::from(media_to_string(m)),
        ));
    }
    if let Some(sb) = &storyboard {
        files.push((sb.vtt.clone(), Bytes::from(sb.webvtt(duration_s))));
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| invalid(e.to_string()))?;
    files.push(("manifest.json".to_owned(), Bytes::from(json)));
    files.push((
        "master.m3u8".to_owned(),
        Bytes::from(master_to_string(&master)),
    ));
    store_files(dest, files).await.map_err(store_err)?;
    Ok(manifest)
}

/// Stores `files` in order; on a failure removes those already stored.
async fn store_files(
    dest: &Destination,
    files: Vec<(String, Bytes)>,
) -> Result<(), videosync_core::Error> {
    let mut written = Vec::new();
    for (name, bytes) in files {
        let key = dest.key(&name)?;
        if let Err(e) = dest.store.put(&key, bytes.into()).await {
            remove_all(dest.store.as_ref(), &written).await;
            return Err(e);
        }
        written.push(key);
    }
    Ok(())
}

/// The one encoder every video part used. Parts run on different workers
/// resolve the encoder each on its own machine; parts made by different
/// encoders cannot form one rendition (their parameter sets differ), so
/// that is refused with the encoders named.
fn agreed_encoder(used: impl Iterator<Item = VideoEncoder>) -> Result<VideoEncoder, String> {
    let mut agreed: Option<VideoEncoder> = None;
    for e in used {
        match agreed {
            Some(a) if a != e => {
                return Err(format!(
                    "the chunks were encoded by {} and {}; ask for one encoder (software or nvenc) when the workers differ",
                    a.ffmpeg_name(),
                    e.ffmpeg_name()
                ))
            }
            _ => agreed = Some(e),
        }
    }
    // No part says: chunk results from a build that did not record it.
    Ok(agreed.unwrap_or(VideoEncoder::Libx264))
}

/// The segments of rendition `name` as they were read back when stored.
fn read_back(name: &str, stored: &[crate::pipeline::SegStored]) -> Result<Vec<Measured>, String> {
    stored
        .iter()
        .map(|s| {
            s.measured.clone().ok_or_else(|| {
                format!(
                    "{name} segment {} was not read back (a chunk from an older build)",
                    s.index
                )
            })
        })
        .collect()
}

/// What the parts of an audio-only ladder produced.
struct AudioOnly<'a> {
    audio: Option<&'a (RenditionPart, Vec<SegTiming>)>,
    poster: bool,
    chunks: usize,
}

/// Finishes an audio-only ladder: the audio playlist, a master whose one
/// variant is that playlist, the manifest (no video rendition).
async fn finish_audio_only(
    path: &str,
    planned: &Planned,
    parts: &AudioOnly<'_>,
    dest: &Destination,
) -> Result<Manifest, TranscodeError> {
    let invalid = |reason: String| TranscodeError::InvalidOutput {
        op: OP,
        path: path.to_owned(),
        reason,
    };
    let hls = |e: videosync_hls::Error| invalid(e.to_string());
    let format = planned.ladder.format;
    let (Some(plan), Some((rendition, timing))) = (&planned.ladder.audio, parts.audio) else {
        return Err(invalid("no audio segment was produced".to_owned()));
    };
    if rendition.segments.is_empty() {
        return Err(invalid("no audio segment was produced".to_owned()));
    }
    let durations: HashMap<u32, f64> = timing.iter().map(|t| (t.index, t.duration_s)).collect();
    let measured = read_back("audio", &rendition.segments).map_err(&invalid)?;
    let mut segments = Vec::with_capacity(rendition.segments.len());
    for s in &rendition.segments {
        let Some(&duration) = durations.get(&s.index) else {
            return Err(invalid(format!("audio segment {} has no timing", s.index)));
        };
        segments.push(SegmentInfo::new(
            segment_name(format, s.index),
            duration,
            s.size,
        ));
    }
    let uri = "audio/index.m3u8";
    let media = media_playlist(format, &segments).map_err(hls)?;
    let input = AudioInput {
        uri,
        plan,
        segments: &segments,
    };
    let master = audio_only_master(format, &input).map_err(hls)?;
    // The audio playlist is the master's only variant, so it is checked as
    // one (its segments all start on an AAC frame, which stands alone).
    let produced = ProducedLadder {
        master: &master,
        video: vec![ProducedRendition {
            uri,
            playlist: &media,
            segments: &measured,
            iframes: None,
        }],
        audio: None,
    };
    let violations = validate(&produced, &ValidateOptions::default());
    if !violations.is_empty() {
        let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Err(invalid(text.join("; ")));
    }
    let bw = measure(&segments).map_err(hls)?;
    let manifest = Manifest {
        version: 1,
        master: "master.m3u8".to_owned(),
        source: planned.source.clone(),
        format,
        segment_seconds: planned.ladder.segment_seconds,
        duration_s: segments.iter().map(|s| s.duration).sum(),
        // No video was encoded.
        encoder: VideoEncoder::Libx264,
        preset: planned.preset.clone(),
        renditions: Vec::new(),
        audio: Some(ManifestAudio {
            playlist: uri.to_owned(),
            codecs: plan.codecs().to_owned(),
            channels: plan.channels,
            sample_rate: plan.sample_rate,
            bitrate: plan.bitrate,
            bandwidth: bw.peak,
            average_bandwidth: bw.average,
            segments: segments.len(),
        }),
        poster: parts.poster.then(|| "poster.jpg".to_owned()),
        storyboard: None,
        frames: 0,
        chunks: u32::try_from(parts.chunks).unwrap_or(u32::MAX),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| invalid(e.to_string()))?;
    let files = vec![
        (uri.to_owned(), Bytes::from(media_to_string(&media))),
        ("manifest.json".to_owned(), Bytes::from(json)),
        (
            "master.m3u8".to_owned(),
            Bytes::from(master_to_string(&master)),
        ),
    ];
    store_files(dest, files)
        .await
        .map_err(|e| TranscodeError::Store {
            op: OP,
            path: path.to_owned(),
            source: e,
        })?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_must_agree_on_the_encoder() {
        use VideoEncoder::{H264Nvenc, Libx264};
        assert_eq!(
            agreed_encoder([H264Nvenc, H264Nvenc].into_iter()),
            Ok(H264Nvenc)
        );
        assert_eq!(agreed_encoder(std::iter::empty()), Ok(Libx264));
        let e = agreed_encoder([Libx264, H264Nvenc, Libx264].into_iter()).unwrap_err();
        assert!(e.contains("libx264 and h264_nvenc"), "{e}");
    }
}
