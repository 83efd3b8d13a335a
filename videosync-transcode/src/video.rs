//! One rung: scale the shared decoded frames, encode them, cut segments.
//!
//! Each rung runs on its own thread with its own scaler, encoder and
//! segmenter, fed the decoder's frames through a bounded channel (the
//! frames are shared, never copied for the rungs that scale). Keyframes are
//! forced on the frames the decoder marked as segment starts, which are the
//! same source frames for every rung, so segments align across the ladder.

use std::collections::VecDeque;
use std::sync::mpsc::Receiver;
use std::sync::OnceLock;

use ff::format::Pixel;
use ff::Rational;
use ffmpeg_next as ff;
use serde::{Deserialize, Serialize};
use videosync_hls::codecs::H264Profile;
use videosync_hls::ladder::{Rung, SegmentFormat};

use crate::error::StageError;
use crate::segmenter::{Finished, Segmenter};
use crate::stage::FrameMsg;

/// Which H.264 encoder to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderChoice {
    /// NVENC when a usable NVIDIA GPU is present, else libx264.
    #[default]
    Auto,
    /// libx264 on the CPU.
    Software,
    /// NVENC (`h264_nvenc`); an error when no GPU can be used.
    Nvenc,
}

/// The H.264 encoder a transcode resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoEncoder {
    /// libx264.
    Libx264,
    /// NVIDIA NVENC.
    H264Nvenc,
}

impl VideoEncoder {
    /// FFmpeg's name of the encoder.
    pub fn ffmpeg_name(self) -> &'static str {
        match self {
            VideoEncoder::Libx264 => "libx264",
            VideoEncoder::H264Nvenc => "h264_nvenc",
        }
    }
}

/// Whether NVENC can open an encoder on this machine (checked once: the
/// driver is loaded and a session opened and closed).
pub fn nvenc_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let Some(codec) = ff::encoder::find_by_name("h264_nvenc") else {
            return false;
        };
        let Ok(mut enc) = ff::codec::Context::new_with_codec(codec).encoder().video() else {
            return false;
        };
        enc.set_width(256);
        enc.set_height(144);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(Rational::new(1, 30));
        enc.open_as(codec).is_ok()
    })
}

/// Resolves the caller's choice.
pub(crate) fn resolve_encoder(choice: EncoderChoice) -> Result<VideoEncoder, String> {
    match choice {
        EncoderChoice::Software => Ok(VideoEncoder::Libx264),
        EncoderChoice::Auto if nvenc_available() => Ok(VideoEncoder::H264Nvenc),
        EncoderChoice::Auto => Ok(VideoEncoder::Libx264),
        EncoderChoice::Nvenc if nvenc_available() => Ok(VideoEncoder::H264Nvenc),
        EncoderChoice::Nvenc => {
            Err("NVENC was asked for, but no NVIDIA GPU with NVENC can be used here".to_owned())
        }
    }
}

/// Everything a rung thread needs besides its frames.
#[derive(Debug, Clone)]
pub(crate) struct RungJob {
    pub(crate) rung: Rung,
    pub(crate) format: SegmentFormat,
    pub(crate) encoder: VideoEncoder,
    pub(crate) preset: String,
    /// Encoder threads; 0 lets the encoder choose.
    pub(crate) threads: usize,
}

/// What a rung produced.
#[derive(Debug, Default)]
pub(crate) struct RungOutput {
    /// Frames encoded.
    pub(crate) frames: u64,
}

/// Time base of every rung's encoder and segments: MPEG's 90 kHz, fine
/// enough to place a segment's first frame at its exact time.
pub(crate) const TIME_BASE: Rational = Rational(1, 90_000);

/// The encoder's frame rate as a fraction, snapping the broadcast rates
/// (29.97 is 30000/1001).
pub(crate) fn rate_of(fps: f64) -> Rational {
    for base in [24u32, 30, 60, 120] {
        let ntsc = f64::from(base) * 1000.0 / 1001.0;
        if (fps - ntsc).abs() < 0.005 {
            return Rational::new(i32::try_from(base * 1000).unwrap_or(30_000), 1001);
        }
    }
    let milli = (fps * 1000.0).round().clamp(1.0, 1.0e7) as i32;
    let g = gcd(milli, 1000);
    Rational::new(milli / g, 1000 / g)
}

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 {
        a.max(1)
    } else {
        gcd(b, a % b)
    }
}

fn profile_name(p: H264Profile) -> &'static str {
    match p {
        H264Profile::ConstrainedBaseline => "baseline",
        H264Profile::Main => "main",
        H264Profile::High => "high",
    }
}

/// Opens the rung's encoder; `global_header` for fMP4 (parameter sets in
/// `avcC`), in-band for TS.
pub(crate) fn open_encoder(job: &RungJob) -> Result<ff::encoder::Video, String> {
    let r = &job.rung;
    let name = job.encoder.ffmpeg_name();
    let codec =
        ff::encoder::find_by_name(name).ok_or_else(|| format!("encoder {name} not available"))?;
    let mut enc = ff::codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| format!("{name}: {e}"))?;
    let rate = rate_of(r.frame_rate);
    enc.set_width(r.width);
    enc.set_height(r.height);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base(TIME_BASE);
    enc.set_frame_rate(Some(rate));
    enc.set_aspect_ratio(Rational::new(1, 1));
    // SDR BT.709, limited range, said in the stream (H.264 VUI) so players
    // do not guess: untagged SD is often taken as BT.601 and untagged HD as
    // BT.709. The prefilter made the pixels BT.709 when the source was not.
    enc.set_colorspace(ff::color::Space::BT709);
    enc.set_color_primaries(ff::color::Primaries::BT709);
    enc.set_color_transfer_characteristic(ff::color::TransferCharacteristic::BT709);
    enc.set_color_range(ff::color::Range::MPEG);
    // Closed GOPs: every keyframe an IDR. FFmpeg's libx264 wrapper opens
    // GOPs unless told otherwise, and then the keyframes between segment
    // starts are I-frames that later frames may reach across; a player that
    // seeks to one (MSE starts decoding at the sync sample before the seek
    // target) fails to decode what follows it.
    let mut flags = ff::codec::Flags::CLOSED_GOP;
    if job.format == SegmentFormat::Fmp4 {
        flags |= ff::codec::Flags::GLOBAL_HEADER;
    }
    enc.set_flags(flags);
    let mut opts = ff::Dictionary::new();
    opts.set("b", &r.bitrate.to_string());
    opts.set("maxrate", &r.maxrate.to_string());
    opts.set("bufsize", &r.bufsize.to_string());
    opts.set("g", &r.keyint.to_string());
    opts.set("forced-idr", "1");
    opts.set("profile", profile_name(r.profile));
    opts.set("level", &r.level.to_string());
    match job.encoder {
        VideoEncoder::Libx264 => {
            opts.set("preset", &job.preset);
            opts.set("keyint_min", &r.keyint.to_string());
            opts.set("sc_threshold", "0");
            opts.set("threads", &job.threads.to_string());
        }
        VideoEncoder::H264Nvenc => {
            opts.set("preset", "p4");
            opts.set("rc", "vbr");
            opts.set("no-scenecut", "1");
        }
    }
    enc.open_as_with(codec, opts)
        .map_err(|e| format!("open {name} for {}: {e}", r.name))
}

/// Encodes one rung: consumes frames until the channel closes, hands every
/// finished segment to `emit`.
pub(crate) fn run_rung(
    job: &RungJob,
    frames: &Receiver<FrameMsg>,
    emit: &mut dyn FnMut(Finished) -> Result<(), StageError>,
) -> Result<RungOutput, StageError> {
    let r = &job.rung;
    let mut encoder = open_encoder(job)?;
    let rate = rate_of(r.frame_rate);
    let mut segmenter = Segmenter::new(job.format, TIME_BASE);
    let ticks = f64::from(TIME_BASE.denominator());
    let mut scaler: Option<(ff::software::scaling::Context, (Pixel, u32, u32))> = None;
    // Encoder timestamps of the forced keyframes not yet seen in output,
    // with their segment numbers.
    let mut boundaries: VecDeque<(i64, u32)> = VecDeque::new();
    let mut last_slot: Option<i64> = None;
    let mut last_pts: Option<i64> = None;
    let mut frames_in = 0u64;
    let fps = f64::from(rate.numerator()) / f64::from(rate.denominator());
    let mut out = ff::frame::Video::empty();

    let mut drain = |encoder: &mut ff::encoder::Video,
                     segmenter: &mut Segmenter,
                     boundaries: &mut VecDeque<(i64, u32)>|
     -> Result<(), StageError> {
        let mut packet = ff::Packet::empty();
        while encoder.receive_packet(&mut packet).is_ok() {
            let pts = packet.pts().unwrap_or(i64::MIN);
            if let Some(&(bpts, seg)) = boundaries.front() {
                if pts == bpts {
                    boundaries.pop_front();
                    if !packet.is_key() {
                        return Err(format!(
                            "{}: the encoder did not make segment {seg} start with a keyframe",
                            r.name
                        )
                        .into());
                    }
                    if let Some(done) = segmenter.finish()? {
                        emit(done)?;
                    }
                    segmenter.begin(seg, encoder)?;
                }
            }
            segmenter.write(&mut packet)?;
        }
        Ok(())
    };

    for msg in frames {
        // Frame-rate cap: frames on the rung's own frame grid; a frame
        // landing on an occupied slot is dropped, except a segment start,
        // which takes the next slot.
        let mut slot = (msg.time_s * fps + 1e-3).floor() as i64;
        if let Some(last) = last_slot {
            if slot <= last {
                if !msg.starts {
                    continue;
                }
                slot = last + 1;
            }
        }
        // A segment starts at its first frame's own time, which is what the
        // playlists say and the same on every rung; other frames sit on the
        // grid. On a grid alone a source whose frames are not on it (a
        // timestamp jump, variable rate, rungs at different rates) would
        // start its segments up to a frame away from the playlist and from
        // each other.
        let at = if msg.starts {
            msg.time_s * ticks
        } else {
            slot as f64 * ticks / fps
        };
        let pts = (at.round() as i64).max(last_pts.map_or(i64::MIN, |l| l + 1));
        let src = &*msg.frame;
        // One output picture, reused: the encoder copies a frame into its
        // own buffers before `send_frame` returns (every packet is drained
        // right after), so the next frame may overwrite it. Fresh buffers
        // per frame cost page faults and zeroing on every frame.
        if out.width() != r.width || out.height() != r.height {
            out = ff::frame::Video::new(Pixel::YUV420P, r.width, r.height);
        }
        if src.width() == r.width && src.height() == r.height && src.format() == Pixel::YUV420P {
            copy_picture(src, &mut out);
        } else {
            let key = (src.format(), src.width(), src.height());
            if scaler.as_ref().map(|s| s.1) != Some(key) {
                let ctx = ff::software::scaling::Context::get(
                    key.0,
                    key.1,
                    key.2,
                    Pixel::YUV420P,
                    r.width,
                    r.height,
                    ff::software::scaling::Flags::BICUBIC,
                )
                // swscale reads every pixel format a decoder we ship gives;
                // one it cannot is the source's format, not a passing fault.
                .map_err(|e| {
                    StageError::Unsupported(format!("{}: no scaler from {:?}: {e}", r.name, key.0))
                })?;
                scaler = Some((ctx, key));
            }
            if let Some((ctx, _)) = scaler.as_mut() {
                ctx.run(src, &mut out)
                    .map_err(|e| format!("{}: scale: {e}", r.name))?;
            }
        }
        out.set_pts(Some(pts));
        if msg.starts {
            out.set_kind(ff::picture::Type::I);
            boundaries.push_back((pts, msg.segment));
        } else {
            out.set_kind(ff::picture::Type::None);
        }
        last_slot = Some(slot);
        last_pts = Some(pts);
        encoder
            .send_frame(&out)
            .map_err(|e| format!("{}: encode: {e}", r.name))?;
        frames_in += 1;
        drain(&mut encoder, &mut segmenter, &mut boundaries)?;
    }
    encoder
        .send_eof()
        .map_err(|e| format!("{}: flush encoder: {e}", r.name))?;
    drain(&mut encoder, &mut segmenter, &mut boundaries)?;
    if let Some(done) = segmenter.finish()? {
        emit(done)?;
    }
    Ok(RungOutput { frames: frames_in })
}

/// Copies the pixels of a 4:2:0 8-bit picture into `dst` (same size and
/// format), plane by plane, row by row, and nothing else.
///
/// Not `clone_from`: ffmpeg-next's `clone_from` is `av_frame_copy` plus
/// `av_frame_copy_props`, and the latter appends the source's side data
/// (captions, MPEG-2 pan-scan, HDR metadata) to what the reused `dst`
/// already holds, so on a reused output frame the side data piled up
/// once per frame: memory that grows with the length and a copy that gets
/// slower with every frame. The encoder needs only pixels; timestamps and
/// picture type are set by the caller.
pub(crate) fn copy_picture(src: &ff::frame::Video, dst: &mut ff::frame::Video) {
    for plane in 0..src.planes().min(dst.planes()) {
        let width = src.plane_width(plane).min(dst.plane_width(plane)) as usize;
        let rows = src.plane_height(plane).min(dst.plane_height(plane)) as usize;
        let (src_stride, dst_stride) = (src.stride(plane), dst.stride(plane));
        let from = src.data(plane);
        let to = dst.data_mut(plane);
        for row in 0..rows {
            let (s, d) = (row * src_stride, row * dst_stride);
            if s + width <= from.len() && d + width <= to.len() {
                to[d..d + width].copy_from_slice(&from[s..s + width]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_output_frame_gathers_no_side_data() {
        use ff::util::frame::side_data::Type as SideData;
        let _ = crate::probe::init();
        let mut src = ff::frame::Video::new(Pixel::YUV420P, 64, 48);
        for (plane, value) in [(0, 200u8), (1, 90), (2, 160)] {
            src.data_mut(plane).fill(value);
        }
        // Closed captions ride on decoded H.264 and MPEG-2 frames.
        assert!(src.new_side_data(SideData::A53CC, 16).is_some());
        let mut out = ff::frame::Video::new(Pixel::YUV420P, 64, 48);
        for _ in 0..3 {
            copy_picture(&src, &mut out);
        }
        assert!(out.side_data(SideData::A53CC).is_none());
        for (plane, value) in [(0, 200u8), (1, 90), (2, 160)] {
            let w = out.plane_width(plane) as usize;
            let stride = out.stride(plane);
            for row in 0..out.plane_height(plane) as usize {
                let line = &out.data(plane)[row * stride..row * stride + w];
                assert!(line.iter().all(|&p| p == value), "plane {plane} row {row}");
            }
        }
        // What the old `clone_from` did: it carries the side data over, one
        // more copy on every frame of a reused output.
        let mut piled = ff::frame::Video::new(Pixel::YUV420P, 64, 48);
        for _ in 0..3 {
            piled.clone_from(&src);
        }
        assert!(piled.side_data(SideData::A53CC).is_some());
    }

    #[test]
    fn broadcast_rates_are_exact_fractions() {
        assert_eq!(rate_of(29.97), Rational::new(30_000, 1001));
        assert_eq!(rate_of(30000.0 / 1001.0), Rational::new(30_000, 1001));
        assert_eq!(rate_of(59.94), Rational::new(60_000, 1001));
        assert_eq!(rate_of(30.0), Rational::new(30, 1));
        assert_eq!(rate_of(25.0), Rational::new(25, 1));
        assert_eq!(rate_of(12.5), Rational::new(25, 2));
    }
}
