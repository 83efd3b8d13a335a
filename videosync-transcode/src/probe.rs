//! Probing a source file: what it contains, as a typed [`Probe`].

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use ff::codec::packet::side_data::Type as SideDataType;
use ff::media::Type as MediaType;
use ffmpeg_next as ff;
use serde::{Deserialize, Serialize};
use videosync_core::{Clock, SourceMeta, SystemClock};

use crate::error::{FfmpegError, TranscodeError};

const OP: &str = "probe";

/// FFmpeg's "no timestamp" value (`AV_NOPTS_VALUE`).
const NOPTS: i64 = i64::MIN;

/// Limits of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Wall-clock limit for the whole probe; FFmpeg is interrupted past it.
    pub timeout: Duration,
    /// Bytes FFmpeg may read to detect the format and streams
    /// (`probesize`).
    pub probe_size: u64,
    /// Media time FFmpeg may analyse to find stream parameters
    /// (`analyzeduration`).
    pub analyze_duration: Duration,
    /// Packets read at most while looking for the first video frame (for
    /// interlacing and to prove the stream decodes).
    pub max_packets: usize,
    /// Largest video frame accepted, in pixels (width x height), checked
    /// against the declared size before any frame is decoded: a small file
    /// can declare a frame that makes the decoder allocate gigabytes.
    /// Default [`DEFAULT_MAX_PIXELS`] (8K UHD).
    pub max_pixels: u64,
}

/// The default pixel budget: one 8K UHD frame, 7680 x 4320.
pub const DEFAULT_MAX_PIXELS: u64 = 7680 * 4320;

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            timeout: Duration::from_secs(10),
            probe_size: 10 * 1024 * 1024,
            analyze_duration: Duration::from_secs(10),
            max_packets: 256,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// What a source file contains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Container format names as FFmpeg lists them
    /// (`["mov", "mp4", "m4a", "3gp", "3g2", "mj2"]`).
    pub format_names: Vec<String>,
    /// Duration in milliseconds, when known.
    pub duration_ms: Option<u64>,
    /// Overall bit rate in bits per second, when known.
    pub bit_rate: Option<u64>,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Every stream, in file order.
    pub streams: Vec<StreamInfo>,
    /// The primary video stream (FFmpeg's "best" one), if any.
    pub video: Option<VideoInfo>,
    /// The primary audio stream, if any.
    pub audio: Option<AudioInfo>,
    /// Index of the first attached picture (cover art of an MP3 or M4A),
    /// if any. It is never the video stream: it is one still image, not a
    /// track with a frame rate.
    #[serde(default)]
    pub cover_art: Option<usize>,
    /// The file, as given.
    pub path: String,
}

/// The kind of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamKind {
    /// Video.
    Video,
    /// Audio.
    Audio,
    /// Subtitles.
    Subtitle,
    /// Timed data (timecode, metadata tracks).
    Data,
    /// An attachment (fonts in Matroska).
    Attachment,
    /// Anything else.
    Unknown,
}

/// One stream of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Its index in the container.
    pub index: usize,
    /// Its kind.
    pub kind: StreamKind,
    /// Codec name (`h264`, `aac`, `vp9`).
    pub codec: String,
    /// Codec profile as ffmpeg-next names it (`High`, `High10`, `Main`,
    /// `Low` for AAC-LC), when known. The codec level is not reported:
    /// ffmpeg-next's safe API does not expose it and this workspace forbids
    /// `unsafe`.
    pub profile: Option<String>,
    /// Bit rate of the stream in bits per second, when the container says.
    pub bit_rate: Option<u64>,
}

/// Field order of a video stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldOrder {
    /// Progressive frames.
    Progressive,
    /// Interlaced, top field first.
    TopFirst,
    /// Interlaced, bottom field first.
    BottomFirst,
}

impl FieldOrder {
    /// Whether the frames are interlaced.
    pub fn is_interlaced(self) -> bool {
        self != FieldOrder::Progressive
    }
}

/// Frame rates of a video stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrameRate {
    /// Average frame rate (frames over duration), when known.
    pub average: Option<f64>,
    /// The "real" base rate (`r_frame_rate`): the lowest rate that
    /// represents every timestamp exactly, when known.
    pub real: Option<f64>,
    /// Whether the stream looks variable-frame-rate: the average and real
    /// rates differ by more than 1% (an interlaced stream whose real rate is
    /// its field rate, twice the average, does not count).
    pub variable: bool,
}

/// The primary video stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// Its index in the container.
    pub index: usize,
    /// Codec name (`h264`, `hevc`, `vp9`).
    pub codec: String,
    /// Codec profile, when known.
    pub profile: Option<String>,
    /// Coded width in pixels.
    pub width: u32,
    /// Coded height in pixels.
    pub height: u32,
    /// Pixel format (`yuv420p`, `yuv420p10le`).
    pub pixel_format: Option<String>,
    /// Bits per colour component, derived from the pixel format.
    pub bit_depth: Option<u32>,
    /// Clockwise rotation to apply for display: 0, 90, 180 or 270, from the
    /// display matrix (the negation of `av_display_rotation_get`), else the
    /// legacy `rotate` tag. It matches what FFmpeg's own autorotation shows;
    /// note that FFmpeg 5.1's CLI turns `-metadata:s:v rotate=90` into a
    /// matrix that means 270 clockwise.
    pub rotation: u32,
    /// Frame rates.
    pub frame_rate: FrameRate,
    /// Field order, from the first decoded frame; `None` when no frame
    /// decoded within the packet limit.
    pub field_order: Option<FieldOrder>,
    /// Whether a frame decoded within the packet limit.
    pub decodable: bool,
    /// Bit rate of the stream in bits per second, when known.
    pub bit_rate: Option<u64>,
    /// Duration of the stream in milliseconds, when known.
    pub duration_ms: Option<u64>,
    /// Sample (pixel) aspect ratio as `(num, den)` when the stream declares
    /// one other than square: 64:45 for 16:9 PAL DVD stored as 720x576,
    /// 4:3 for 1440x1080 HDV.
    #[serde(default)]
    pub sample_aspect_ratio: Option<(u32, u32)>,
    /// Colour matrix as FFmpeg names it (`bt709`, `smpte170m`, `bt470bg`,
    /// `gbr`), when the stream declares one.
    #[serde(default)]
    pub color_space: Option<String>,
    /// Colour primaries (`bt709`, `bt2020`), when declared.
    #[serde(default)]
    pub color_primaries: Option<String>,
    /// Transfer characteristic (`bt709`, `smpte2084` for PQ, `arib-std-b67`
    /// for HLG), when declared.
    #[serde(default)]
    pub color_transfer: Option<String>,
}

impl VideoInfo {
    /// The picture with square pixels, before rotation: the width is the
    /// stored width times the sample aspect ratio, the height is kept (no
    /// line is invented or dropped), so 720x576 at 64:45 shows as 1024x576.
    pub fn square_pixel_size(&self) -> (u32, u32) {
        match self.sample_aspect_ratio {
            Some((num, den)) if num > 0 && den > 0 && num != den => {
                let w =
                    (u64::from(self.width) * u64::from(num) + u64::from(den) / 2) / u64::from(den);
                (u32::try_from(w).unwrap_or(u32::MAX).max(1), self.height)
            }
            _ => (self.width, self.height),
        }
    }

    /// Width and height as displayed: square pixels, after rotation.
    pub fn display_dimensions(&self) -> (u32, u32) {
        let (w, h) = self.square_pixel_size();
        if self.rotation % 180 == 90 {
            (h, w)
        } else {
            (w, h)
        }
    }
}

/// The primary audio stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioInfo {
    /// Its index in the container.
    pub index: usize,
    /// Codec name (`aac`, `opus`).
    pub codec: String,
    /// Codec profile, when known.
    pub profile: Option<String>,
    /// Number of channels.
    pub channels: u32,
    /// Channel layout (`mono`, `stereo`, `5.1`), when it is a standard one.
    pub channel_layout: Option<String>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Bit rate in bits per second, when known.
    pub bit_rate: Option<u64>,
}

impl Probe {
    /// The primary video stream, or an error saying why the file cannot be
    /// used as a video source.
    ///
    /// # Errors
    /// [`TranscodeError::InvalidInput`] when there is no video stream, when
    /// it has no dimensions, or when none of its frames decodes (an empty
    /// video track).
    pub fn require_video(&self) -> Result<&VideoInfo, TranscodeError> {
        let invalid = |reason: &str| TranscodeError::InvalidInput {
            op: OP,
            path: self.path.clone(),
            reason: reason.to_owned(),
        };
        let video = self
            .video
            .as_ref()
            .ok_or_else(|| invalid("no video stream"))?;
        if video.width == 0 || video.height == 0 {
            return Err(invalid("video stream has no dimensions"));
        }
        if !video.decodable {
            return Err(invalid("video stream has no decodable frames"));
        }
        Ok(video)
    }
}

impl From<&Probe> for SourceMeta {
    fn from(p: &Probe) -> Self {
        let video = p.video.as_ref();
        let audio = p.audio.as_ref();
        SourceMeta {
            container: (!p.format_names.is_empty()).then(|| p.format_names.join(",")),
            duration_ms: p.duration_ms,
            width: video.map(|v| v.width),
            height: video.map(|v| v.height),
            rotation: video.and_then(|v| i32::try_from(v.rotation).ok()),
            frame_rate: video.and_then(|v| v.frame_rate.average.or(v.frame_rate.real)),
            bit_rate: p.bit_rate,
            video_codec: video.map(|v| v.codec.clone()),
            audio_codec: audio.map(|a| a.codec.clone()),
            audio_channels: audio.map(|a| a.channels),
            sample_rate: audio.map(|a| a.sample_rate),
            size_bytes: Some(p.size_bytes),
        }
    }
}

/// Probes `path` with [`ProbeOptions::default`].
///
/// Blocks on file IO and FFmpeg; on an async runtime use [`probe_async`]
/// (or `spawn_blocking`). A file without video is a successful probe with
/// `video: None`; call [`Probe::require_video`] to make that an error.
///
/// # Errors
/// [`TranscodeError::NotFound`] for a missing file,
/// [`TranscodeError::InvalidInput`] for an empty, non-media, corrupt or
/// truncated file, [`TranscodeError::Unsupported`] when no demuxer fits,
/// [`TranscodeError::Timeout`] past the time limit.
pub fn probe(path: impl AsRef<Path>) -> Result<Probe, TranscodeError> {
    probe_opts(path, &ProbeOptions::default())
}

/// [`probe`] on tokio's blocking pool, for callers on an async runtime.
///
/// # Errors
/// As [`probe`]; a probe task that panicked or was cancelled is reported as
/// [`TranscodeError::Io`].
///
/// # Cancel safety
/// Dropping the future leaves the probe running to completion (it is
/// bounded by [`ProbeOptions::timeout`]) and discards its result.
pub async fn probe_async(
    path: impl AsRef<Path>,
    opts: ProbeOptions,
) -> Result<Probe, TranscodeError> {
    let path = path.as_ref().to_path_buf();
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || probe_opts(&path, &opts))
        .await
        .map_err(|e| TranscodeError::Io {
            op: OP,
            path: shown,
            source: std::io::Error::other(e),
        })?
}

/// Probes `path` within the limits of `opts`.
///
/// # Errors
/// As [`probe`].
pub fn probe_opts(path: impl AsRef<Path>, opts: &ProbeOptions) -> Result<Probe, TranscodeError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let invalid = |reason: String| TranscodeError::InvalidInput {
        op: OP,
        path: shown.clone(),
        reason,
    };

    // Checked before FFmpeg so the common failures get precise messages
    // (FFmpeg reports an empty file as "Invalid data").
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TranscodeError::NotFound {
            op: OP,
            path: shown.clone(),
        },
        _ => TranscodeError::Io {
            op: OP,
            path: shown.clone(),
            source: e,
        },
    })?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".to_owned()));
    }
    if meta.len() == 0 {
        return Err(invalid("empty file".to_owned()));
    }

    init().map_err(|e| TranscodeError::Ffmpeg {
        op: OP,
        path: shown.clone(),
        source: e,
    })?;

    let mut dict = ff::Dictionary::new();
    dict.set("probesize", &opts.probe_size.to_string());
    dict.set(
        "analyzeduration",
        &opts.analyze_duration.as_micros().to_string(),
    );
    let clock = SystemClock::new();
    let deadline = opts.timeout;
    let interrupt = move || clock.monotonic() > deadline;

    let map_ff = |e: ff::Error| map_error(OP, &shown, Some(deadline), e);

    let mut input =
        ff::format::input_with_interrupt_and_dictionary(path, interrupt, dict).map_err(map_ff)?;

    let format_names: Vec<String> = input
        .format()
        .name()
        .split(',')
        .map(str::to_owned)
        .collect();
    // FFmpeg's text-art demuxers claim any text file (`tty`) and any bytes
    // named `.bin`, `.adf`, `.idf`, `.xb` as "video" of thousands of lines;
    // nobody uploads that on purpose.
    if format_names
        .iter()
        .any(|n| TEXT_ART_DEMUXERS.contains(&n.as_str()))
    {
        return Err(invalid("not a media file (text or binary data)".to_owned()));
    }

    let duration_ms = positive(input.duration()).map(|us| us / 1000);
    let bit_rate = positive(input.bit_rate());

    let mut streams = Vec::new();
    let mut video = None;
    let mut audio = None;
    let best_video = best_video(&input).map(|s| s.index());
    let cover_art = input
        .streams()
        .find(|s| is_attached_picture(s))
        .map(|s| s.index());
    let best_audio = input.streams().best(MediaType::Audio).map(|s| s.index());

    for stream in input.streams() {
        let params = stream.parameters();
        let kind = match params.medium() {
            MediaType::Video => StreamKind::Video,
            MediaType::Audio => StreamKind::Audio,
            MediaType::Subtitle => StreamKind::Subtitle,
            MediaType::Data => StreamKind::Data,
            MediaType::Attachment => StreamKind::Attachment,
            _ => StreamKind::Unknown,
        };
        let id = params.id();
        let codec = id.name().to_owned();
        let stream_bit_rate = positive(params.bit_rate());
        // Opening a decoder is how the safe API exposes profile, pixel
        // format, channels; a stream without a decoder keeps only the basics.
        let opened = ff::codec::Context::from_parameters(params)
            .ok()
            .and_then(|c| c.decoder().open_as(ff::codec::decoder::find(id)?).ok());
        let profile = opened.as_ref().and_then(|o| profile_name(o.profile()));

        if Some(stream.index()) == best_video {
            let tb = stream.time_base();
            let avg = rate(stream.avg_frame_rate());
            let real = rate(stream.rate());
            let (pixel_format, width, height, sar, colour) =
                match opened.and_then(|o| o.video().ok()) {
                    Some(v) => (
                        v.format().descriptor().map(|d| d.name().to_owned()),
                        v.width(),
                        v.height(),
                        sample_aspect(v.aspect_ratio()),
                        [
                            v.color_space().name(),
                            v.color_primaries().name(),
                            v.color_transfer_characteristic().name(),
                        ]
                        .map(|n| n.map(str::to_owned)),
                    ),
                    None => (None, 0, 0, None, [None, None, None]),
                };
            let [color_space, color_primaries, color_transfer] = colour;
            let bit_depth = pixel_format.as_deref().and_then(bit_depth_of);
            video = Some(VideoInfo {
                index: stream.index(),
                codec: codec.clone(),
                profile: profile.clone(),
                width,
                height,
                bit_depth,
                pixel_format,
                rotation: rotation_of(&stream),
                frame_rate: FrameRate {
                    average: avg,
                    real,
                    variable: false,
                },
                field_order: None,
                decodable: false,
                bit_rate: stream_bit_rate,
                duration_ms: positive(stream.duration()).and_then(|d| ts_to_ms(d, tb)),
                sample_aspect_ratio: sar,
                color_space,
                color_primaries,
                color_transfer,
            });
        } else if Some(stream.index()) == best_audio {
            if let Some(a) = opened.and_then(|o| o.audio().ok()) {
                audio = Some(AudioInfo {
                    index: stream.index(),
                    codec: codec.clone(),
                    profile: profile.clone(),
                    channels: u32::from(a.channels()),
                    channel_layout: layout_name(a.channels(), a.channel_layout().bits()),
                    sample_rate: a.rate(),
                    bit_rate: stream_bit_rate,
                });
            }
        }
        streams.push(StreamInfo {
            index: stream.index(),
            kind,
            codec,
            profile,
            bit_rate: stream_bit_rate,
        });
    }

    if let Some(v) = video.as_ref() {
        let pixels = u64::from(v.width) * u64::from(v.height);
        if pixels > opts.max_pixels {
            return Err(invalid(format!(
                "the video frame is {}x{} ({pixels} pixels), over the budget of {} pixels",
                v.width, v.height, opts.max_pixels
            )));
        }
    }
    if let Some(v) = video.as_mut() {
        let first = first_frame(&mut input, v.index, opts.max_packets).map_err(map_ff)?;
        if let Some(order) = first {
            v.decodable = true;
            v.field_order = Some(order);
        }
        v.frame_rate.variable = is_variable(&v.frame_rate, v.field_order);
    }

    Ok(Probe {
        format_names,
        duration_ms,
        bit_rate,
        size_bytes: meta.len(),
        streams,
        video,
        audio,
        cover_art,
        path: shown.clone(),
    })
}

/// Whether a stream is an attached picture (`AV_DISPOSITION_ATTACHED_PIC`):
/// cover art stored as a one-packet "video" stream.
pub(crate) fn is_attached_picture(stream: &ff::format::stream::Stream<'_>) -> bool {
    stream
        .disposition()
        .contains(ff::format::stream::Disposition::ATTACHED_PIC)
}

/// The primary video stream: FFmpeg's best, except that attached pictures
/// never count. `av_find_best_stream` happily returns the cover art of an
/// MP3, whose 90 kHz time base then reads as a 90 000 fps video.
pub(crate) fn best_video<'a>(
    input: &'a ff::format::context::Input,
) -> Option<ff::format::stream::Stream<'a>> {
    match input.streams().best(MediaType::Video) {
        Some(s) if !is_attached_picture(&s) => Some(s),
        _ => input
            .streams()
            .find(|s| s.parameters().medium() == MediaType::Video && !is_attached_picture(s)),
    }
}

const ENOENT: i32 = 2;

/// Maps an FFmpeg error while opening or reading `path` to what it says
/// about the input.
pub(crate) fn map_error(
    op: &'static str,
    path: &str,
    timeout: Option<Duration>,
    e: ff::Error,
) -> TranscodeError {
    let path = path.to_owned();
    match e {
        ff::Error::Exit => TranscodeError::Timeout {
            op,
            path,
            after: timeout.unwrap_or_default(),
        },
        ff::Error::Other { errno } if errno == ENOENT => TranscodeError::NotFound { op, path },
        ff::Error::InvalidData | ff::Error::Eof => TranscodeError::InvalidInput {
            op,
            path,
            reason: format!("not a media file, or corrupt or truncated ({e})"),
        },
        ff::Error::DemuxerNotFound | ff::Error::DecoderNotFound => TranscodeError::Unsupported {
            op,
            path,
            reason: e.to_string(),
        },
        ff::Error::Other { .. } => TranscodeError::Io {
            op,
            path,
            source: std::io::Error::other(FfmpegError::new(&e)),
        },
        _ => TranscodeError::Ffmpeg {
            op,
            path,
            source: FfmpegError::new(&e),
        },
    }
}

/// Demuxers of FFmpeg's `tty`/`bintext` family, which accept arbitrary
/// bytes by file extension.
const TEXT_ART_DEMUXERS: [&str; 5] = ["tty", "bin", "adf", "idf", "xbin"];

pub(crate) fn init() -> Result<(), FfmpegError> {
    static INIT: OnceLock<Result<(), FfmpegError>> = OnceLock::new();
    INIT.get_or_init(|| {
        ff::init().map_err(|e| FfmpegError::new(&e))?;
        // The default level prints every demuxer complaint about a bad
        // upload to stderr; the error we return says it once.
        ff::util::log::set_level(ff::util::log::Level::Fatal);
        Ok(())
    })
    .clone()
}

/// Decodes the first frame of stream `index`, reading at most
/// `max_packets` packets of it, and reports its field order.
fn first_frame(
    input: &mut ff::format::context::Input,
    index: usize,
    max_packets: usize,
) -> Result<Option<FieldOrder>, ff::Error> {
    let Some(stream) = input.stream(index) else {
        return Ok(None);
    };
    let Ok(mut decoder) =
        ff::codec::Context::from_parameters(stream.parameters()).and_then(|c| c.decoder().video())
    else {
        return Ok(None);
    };
    let mut frame = ff::frame::Video::empty();
    let order = |f: &ff::frame::Video| {
        if !f.is_interlaced() {
            FieldOrder::Progressive
        } else if f.is_top_first() {
            FieldOrder::TopFirst
        } else {
            FieldOrder::BottomFirst
        }
    };
    let mut seen = 0;
    for (s, packet) in input.packets() {
        if s.index() != index {
            continue;
        }
        // A corrupt packet is the decoder's business; the next may decode.
        if decoder.send_packet(&packet).is_ok() && decoder.receive_frame(&mut frame).is_ok() {
            return Ok(Some(order(&frame)));
        }
        seen += 1;
        if seen >= max_packets {
            break;
        }
    }
    // Flush: a decoder with delay (B-frames, frame threads) holds frames.
    if decoder.send_eof().is_ok() && decoder.receive_frame(&mut frame).is_ok() {
        return Ok(Some(order(&frame)));
    }
    Ok(None)
}

fn positive(v: i64) -> Option<u64> {
    if v == NOPTS || v <= 0 {
        None
    } else {
        u64::try_from(v).ok()
    }
}

fn ts_to_ms(ts: u64, tb: ff::Rational) -> Option<u64> {
    let (num, den) = (
        u64::try_from(tb.numerator()).ok()?,
        u64::try_from(tb.denominator()).ok()?,
    );
    if den == 0 {
        return None;
    }
    Some(u128::from(ts) * u128::from(num) * 1000 / u128::from(den))
        .and_then(|v| u64::try_from(v).ok())
}

/// A declared, non-square sample aspect ratio in lowest terms; `None` for
/// square pixels or none declared (0:1, FFmpeg's "unknown").
fn sample_aspect(r: ff::Rational) -> Option<(u32, u32)> {
    let (num, den) = (
        u32::try_from(r.numerator()).ok()?,
        u32::try_from(r.denominator()).ok()?,
    );
    if num == 0 || den == 0 || num == den {
        return None;
    }
    let g = gcd(num, den);
    Some((num / g, den / g))
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn rate(r: ff::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0)
        .then(|| f64::from(r.numerator()) / f64::from(r.denominator()))
}

fn is_variable(rate: &FrameRate, order: Option<FieldOrder>) -> bool {
    let (Some(avg), Some(real)) = (rate.average, rate.real) else {
        return false;
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 0.01 * b.max(a);
    if close(avg, real) {
        return false;
    }
    let interlaced = order.is_some_and(FieldOrder::is_interlaced);
    !(interlaced && close(real, 2.0 * avg))
}

/// Clockwise display rotation, normalised to 0, 90, 180 or 270: from the
/// display matrix side data, else the legacy `rotate` tag.
fn rotation_of(stream: &ff::format::stream::Stream<'_>) -> u32 {
    let from_matrix = stream
        .side_data()
        .find(|sd| sd.kind() == SideDataType::DisplayMatrix)
        .and_then(|sd| display_matrix_rotation(sd.data()));
    let degrees = from_matrix.or_else(|| {
        stream
            .metadata()
            .get("rotate")
            .and_then(|r| r.trim().parse::<f64>().ok())
    });
    degrees.map_or(0, normalise_rotation)
}

/// The clockwise rotation a display matrix asks for: the negation of
/// `av_display_rotation_get` (which returns the counter-clockwise angle).
/// The matrix is nine native-endian 32-bit values, the first two columns in
/// 16.16 fixed point.
fn display_matrix_rotation(data: &[u8]) -> Option<f64> {
    if data.len() < 36 {
        return None;
    }
    let m: Vec<f64> = data
        .chunks_exact(4)
        .take(9)
        .map(|c| {
            let bytes = [c[0], c[1], c[2], c[3]];
            f64::from(i32::from_ne_bytes(bytes)) / 65536.0
        })
        .collect();
    let scale0 = m[0].hypot(m[3]);
    let scale1 = m[1].hypot(m[4]);
    if scale0 == 0.0 || scale1 == 0.0 {
        return None;
    }
    let clockwise = (m[1] / scale1).atan2(m[0] / scale0).to_degrees();
    Some(clockwise)
}

fn normalise_rotation(degrees: f64) -> u32 {
    if !degrees.is_finite() {
        return 0;
    }
    // Snap to the nearest quarter turn; anything else is not a phone's
    // orientation and players ignore it too.
    let quarters = (degrees / 90.0).round().rem_euclid(4.0);
    match quarters as u32 {
        1 => 90,
        2 => 180,
        3 => 270,
        _ => 0,
    }
}

fn bit_depth_of(pixel_format: &str) -> Option<u32> {
    // Names carry the depth as a suffix after the layout (`yuv420p10le`,
    // `gray12be`, `p010le`); formats without one are 8-bit.
    let base = pixel_format
        .strip_suffix("le")
        .or_else(|| pixel_format.strip_suffix("be"))
        .unwrap_or(pixel_format);
    let digits: String = base
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    match pixel_format {
        "p010le" | "p010be" => return Some(10),
        "p016le" | "p016be" => return Some(16),
        _ => {}
    }
    let prefix = &base[..base.len() - digits.len()];
    let planar_yuv =
        prefix.starts_with("yuv") || prefix.starts_with("yuvj") || prefix.starts_with("gray");
    if !digits.is_empty() && planar_yuv && !prefix.ends_with(|c: char| c.is_ascii_digit()) {
        return digits.parse().ok();
    }
    if matches!(
        pixel_format,
        "nv12" | "nv21" | "gray" | "rgb24" | "bgr24" | "rgba" | "bgra" | "argb" | "abgr"
    ) || (prefix.starts_with("yuv") && digits.is_empty())
    {
        return Some(8);
    }
    None
}

fn layout_name(channels: u16, bits: u64) -> Option<String> {
    use ff::ChannelLayout as L;
    let named = [
        (L::MONO, "mono"),
        (L::STEREO, "stereo"),
        (L::_2POINT1, "2.1"),
        (L::SURROUND, "3.0"),
        (L::QUAD, "quad"),
        (L::_4POINT0, "4.0"),
        (L::_5POINT0, "5.0(side)"),
        (L::_5POINT0_BACK, "5.0"),
        (L::_5POINT1, "5.1(side)"),
        (L::_5POINT1_BACK, "5.1"),
        (L::_6POINT1, "6.1"),
        (L::_7POINT1, "7.1"),
    ];
    if let Some((_, name)) = named.iter().find(|(l, _)| l.bits() == bits) {
        return Some((*name).to_owned());
    }
    // Without a layout mask FFmpeg still knows the count; name the default
    // layouts for the common counts, as ffprobe does.
    (bits == 0).then_some(()).and(match channels {
        1 => Some("mono".to_owned()),
        2 => Some("stereo".to_owned()),
        6 => Some("5.1".to_owned()),
        _ => None,
    })
}

fn profile_name(p: ff::codec::profile::Profile) -> Option<String> {
    use ff::codec::profile::Profile as P;
    let name = match p {
        P::Unknown | P::Reserved => return None,
        P::AAC(x) => format!("{x:?}"),
        P::MPEG2(x) => format!("{x:?}"),
        P::DTS(x) => format!("{x:?}"),
        P::H264(x) => format!("{x:?}"),
        P::VC1(x) => format!("{x:?}"),
        P::MPEG4(x) => format!("{x:?}"),
        P::JPEG2000(x) => format!("{x:?}"),
        P::HEVC(x) => format!("{x:?}"),
        P::VP9(x) => format!("{x:?}"),
    };
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_snaps_to_quarter_turns() {
        assert_eq!(normalise_rotation(0.0), 0);
        assert_eq!(normalise_rotation(90.0), 90);
        assert_eq!(normalise_rotation(-90.0), 270);
        assert_eq!(normalise_rotation(180.0), 180);
        assert_eq!(normalise_rotation(-180.0), 180);
        assert_eq!(normalise_rotation(269.6), 270);
        assert_eq!(normalise_rotation(f64::NAN), 0);
    }

    #[test]
    fn square_pixels_from_the_sample_aspect_ratio() {
        let mut v = VideoInfo {
            index: 0,
            codec: "mpeg2video".into(),
            profile: None,
            width: 720,
            height: 576,
            pixel_format: None,
            bit_depth: None,
            rotation: 0,
            frame_rate: FrameRate {
                average: Some(25.0),
                real: Some(25.0),
                variable: false,
            },
            field_order: None,
            decodable: true,
            bit_rate: None,
            duration_ms: None,
            sample_aspect_ratio: sample_aspect(ff::Rational::new(128, 90)),
            color_space: None,
            color_primaries: None,
            color_transfer: None,
        };
        assert_eq!(v.sample_aspect_ratio, Some((64, 45)));
        assert_eq!(v.display_dimensions(), (1024, 576));
        v.sample_aspect_ratio = Some((16, 15));
        assert_eq!(v.display_dimensions(), (768, 576));
        v.rotation = 90;
        assert_eq!(v.display_dimensions(), (576, 768));
        assert_eq!(sample_aspect(ff::Rational::new(0, 1)), None);
        assert_eq!(sample_aspect(ff::Rational::new(1, 1)), None);
    }

    #[test]
    fn bit_depth_from_pixel_format_names() {
        assert_eq!(bit_depth_of("yuv420p"), Some(8));
        assert_eq!(bit_depth_of("yuvj420p"), Some(8));
        assert_eq!(bit_depth_of("yuv420p10le"), Some(10));
        assert_eq!(bit_depth_of("yuv444p12be"), Some(12));
        assert_eq!(bit_depth_of("p010le"), Some(10));
        assert_eq!(bit_depth_of("nv12"), Some(8));
        assert_eq!(bit_depth_of("gray10le"), Some(10));
    }

    #[test]
    fn display_matrix_of_a_quarter_turn() {
        // av_display_rotation_set(m, 90): counter-clockwise 90, which is
        // what FFmpeg 5.1 writes for `-metadata:s:v rotate=90`.
        let fixed = |v: f64| (v * 65536.0) as i32;
        let m = [0, fixed(-1.0), 0, fixed(1.0), 0, 0, 0, 0, 1 << 30];
        let bytes: Vec<u8> = m.iter().flat_map(|v: &i32| v.to_ne_bytes()).collect();
        let cw = display_matrix_rotation(&bytes).unwrap_or(f64::NAN);
        assert_eq!(normalise_rotation(cw), 270);
    }
}
