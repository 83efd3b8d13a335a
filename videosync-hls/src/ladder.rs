//! Ladder planning: which rungs to encode, at what size, rate and bit rate.
//!
//! [`plan`] turns a [`SourceVideo`] (usually made from a probed
//! [`SourceMeta`] by [`SourceVideo::from_meta`]) and [`LadderOptions`] into a
//! [`Ladder`]. The rules, in order:
//!
//! 1. **Display size.** Rotation 90 or 270 swaps width and height: a phone
//!    clip coded 1920x1080 with rotation 90 is displayed 1080x1920.
//! 2. **Rung size by the short side.** A rung named `720p` has a short side
//!    of 720, so a portrait source gets 720x1280, not 405x720.
//! 3. **Never upscale.** Rungs at or above the source's short side collapse
//!    into one top rung at the source's own short side.
//! 4. **Aspect and even sizes.** The long side keeps the display aspect
//!    ratio; both sides are rounded to the nearest even number (4:2:0 needs
//!    even sizes), never below 2.
//! 5. **Frame rate.** A variable rate is planned at its average. A rate
//!    within 0.1% of a broadcast rate snaps to it (29.97... -> 30000/1001).
//!    Every rung is capped at [`MAX_RUNG_FRAME_RATE`] (60, Apple's HLS
//!    authoring limit) and rungs with a short side below 720 at 30, by
//!    keeping every n-th frame (120 -> 60, 100 -> 50, 240 -> 60; 60 -> 30,
//!    50 -> 25, 90 -> 30 on the small rungs) so output frames are an evenly
//!    spaced subset of the source's; a rate just above a cap, whose n-th
//!    frames would come to under three quarters of it (a variable-rate
//!    clip averaging 30.04 or 40 fps), runs at the cap instead of at 15 or
//!    20. 24, 25 and 30 are kept as they are.
//! 6. **Bit rate.** From [`BITRATE_TABLE`] (30 fps, 16:9 pixel counts),
//!    linear in pixel count between rows, proportional below the smallest,
//!    `x (pixels/1080p)^0.75` above the largest; x1.5 above 30 fps; never
//!    above [`SOURCE_BITRATE_CAP`] x the source bit rate; never below
//!    [`MIN_VIDEO_BITRATE`].
//! 7. **VBV.** `maxrate = 1.1 x bitrate`, `bufsize = 1.5 x maxrate`.
//! 8. **GOP.** A keyframe at every segment boundary, forced by time (not
//!    count) so fractional rates stay aligned, and at most
//!    [`MAX_KEYFRAME_INTERVAL_S`] (2 s, Apple's HLS authoring
//!    specification) apart inside longer segments:
//!    `keyint = round(fps x min(segment_seconds, 2))`.
//! 9. **Profile and level.** H.264 High at the smallest level (from 3.0 up)
//!    whose frame size, macroblock rate and bit rate limits hold the rung,
//!    so each rung declares what it needs, not the top rung's level: 360p30
//!    is 3.0, 720p30 3.1, 1080p30 4.0 and 1080p60 4.2, within Apple's "High
//!    4.2 at most" for everything up to 1080p60.
//! 10. **Audio.** A separate AAC-LC group, downmixed to stereo (mono stays
//!     mono), 128 kbit/s (64 kbit/s mono), 48 kHz unless the source is
//!     44.1 kHz; none when the source has no audio.

use serde::{Deserialize, Serialize};
use videosync_core::catalog::SourceMeta;

use crate::codecs::{H264Level, H264Profile};
use crate::Error;

/// Largest width or height accepted (8K is 7680; 16384 is the H.264 limit).
pub const MAX_DIMENSION: u32 = 16_384;
/// Highest source frame rate accepted.
pub const MAX_FRAME_RATE: f64 = 240.0;
/// Highest frame rate of any rung (Apple's HLS authoring specification
/// allows at most 60); faster sources are halved until they fit.
pub const MAX_RUNG_FRAME_RATE: f64 = 60.0;
/// Longest time between two keyframes, in seconds (Apple: an IDR every two
/// seconds); longer segments get keyframes inside them too.
pub const MAX_KEYFRAME_INTERVAL_S: u32 = 2;
/// Rungs never exceed this multiple of the source bit rate.
pub const SOURCE_BITRATE_CAP: f64 = 1.3;
/// No rung is planned below this video bit rate, in bits per second.
pub const MIN_VIDEO_BITRATE: u64 = 100_000;

/// Reference video bit rates at 30 fps: `(name, pixels, bits per second)`.
///
/// | rung  | size      | bit rate    |
/// |-------|-----------|-------------|
/// | 1080p | 1920x1080 | 5.0 Mbit/s  |
/// | 720p  | 1280x720  | 3.0 Mbit/s  |
/// | 480p  | 854x480   | 1.4 Mbit/s  |
/// | 360p  | 640x360   | 0.8 Mbit/s  |
///
/// Above 30 fps every value is multiplied by 1.5.
pub const BITRATE_TABLE: [(&str, u64, u64); 4] = [
    ("360p", 640 * 360, 800_000),
    ("480p", 854 * 480, 1_400_000),
    ("720p", 1280 * 720, 3_000_000),
    ("1080p", 1920 * 1080, 5_000_000),
];

/// The video facts planning needs, already checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceVideo {
    /// Width in square pixels: the coded width, times the sample aspect
    /// ratio for an anamorphic source (720x576 at 64:45 is planned as
    /// 1024x576), so rungs get the displayed shape.
    pub width: u32,
    /// Height in square pixels (the coded height).
    pub height: u32,
    /// Display rotation in degrees (any multiple of 90, negative allowed).
    pub rotation: i32,
    /// Frame rate; for a variable-rate source, its average.
    pub frame_rate: f64,
    /// Overall bit rate in bits per second, when known.
    pub bit_rate: Option<u64>,
    /// Audio channels; `None` or `Some(0)` when there is no audio.
    pub audio_channels: Option<u32>,
    /// Audio sample rate in Hz, when known.
    pub sample_rate: Option<u32>,
}

impl SourceVideo {
    /// Takes the planning facts from probed metadata. A source with an audio
    /// codec but no channel count is taken as stereo; one without an audio
    /// codec as silent; a missing rotation as 0.
    ///
    /// # Errors
    ///
    /// [`Error::MissingField`] when width, height or frame rate is absent
    /// (an audio-only file has no ladder).
    pub fn from_meta(meta: &SourceMeta) -> Result<Self, Error> {
        Ok(SourceVideo {
            width: meta.width.ok_or(Error::MissingField("width"))?,
            height: meta.height.ok_or(Error::MissingField("height"))?,
            rotation: meta.rotation.unwrap_or(0),
            frame_rate: meta.frame_rate.ok_or(Error::MissingField("frame_rate"))?,
            bit_rate: meta.bit_rate,
            audio_channels: meta
                .audio_codec
                .as_ref()
                .and(meta.audio_channels.or(Some(2))),
            sample_rate: meta.sample_rate,
        })
    }

    /// Width and height as displayed, after rotation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDimensions`] or [`Error::InvalidRotation`].
    pub fn display_size(&self) -> Result<(u32, u32), Error> {
        if self.width == 0
            || self.height == 0
            || self.width > MAX_DIMENSION
            || self.height > MAX_DIMENSION
        {
            return Err(Error::InvalidDimensions {
                width: self.width,
                height: self.height,
            });
        }
        match self.rotation.rem_euclid(360) {
            0 | 180 => Ok((self.width, self.height)),
            90 | 270 => Ok((self.height, self.width)),
            _ => Err(Error::InvalidRotation(self.rotation)),
        }
    }
}

/// Segment container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentFormat {
    /// Fragmented MP4 (CMAF) with an `init.mp4`; playlists at version 7.
    #[default]
    Fmp4,
    /// MPEG transport stream; playlists at version 3.
    Ts,
}

impl SegmentFormat {
    /// File extension of a media segment (`m4s`, `ts`).
    pub fn extension(self) -> &'static str {
        match self {
            SegmentFormat::Fmp4 => "m4s",
            SegmentFormat::Ts => "ts",
        }
    }
}

/// How to plan a ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LadderOptions {
    /// Rung short sides, in any order (`[1080, 720, 480, 360]`).
    pub rungs: Vec<u32>,
    /// Target segment length in whole seconds.
    pub segment_seconds: u32,
    /// Segment container.
    pub format: SegmentFormat,
}

impl Default for LadderOptions {
    fn default() -> Self {
        LadderOptions {
            rungs: vec![1080, 720, 480, 360],
            segment_seconds: 4,
            format: SegmentFormat::Fmp4,
        }
    }
}

/// One planned video rung.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rung {
    /// Name by short side (`720p`).
    pub name: String,
    /// Output width, even.
    pub width: u32,
    /// Output height, even.
    pub height: u32,
    /// Output frame rate.
    pub frame_rate: f64,
    /// Target average video bit rate, bits per second.
    pub bitrate: u64,
    /// VBV maximum rate, bits per second.
    pub maxrate: u64,
    /// VBV buffer size, bits.
    pub bufsize: u64,
    /// Most frames between two keyframes (at most
    /// [`MAX_KEYFRAME_INTERVAL_S`], and never more than a segment).
    pub keyint: u32,
    /// Seconds between forced keyframes (the segment length).
    pub keyframe_interval_s: u32,
    /// H.264 profile.
    pub profile: H264Profile,
    /// H.264 level.
    pub level: H264Level,
}

impl Rung {
    /// The short side, which names the rung.
    pub fn short_side(&self) -> u32 {
        self.width.min(self.height)
    }

    /// RFC 6381 codecs string of the video (`avc1.64001f`).
    pub fn codecs(&self) -> String {
        crate::codecs::avc_codec_string(self.profile, self.level)
    }
}

/// The planned audio rendition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioPlan {
    /// `GROUP-ID` of the `EXT-X-MEDIA` group (`audio`).
    pub group_id: String,
    /// Output channels (1 or 2).
    pub channels: u32,
    /// Bit rate, bits per second.
    pub bitrate: u64,
    /// Sample rate, Hz.
    pub sample_rate: u32,
}

impl AudioPlan {
    /// RFC 6381 codecs string (`mp4a.40.2`, AAC-LC).
    pub fn codecs(&self) -> &'static str {
        crate::codecs::AAC_LC
    }
}

/// A planned ladder: video rungs from the top down, and audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ladder {
    /// Video rungs, largest first.
    pub rungs: Vec<Rung>,
    /// The audio group, or `None` for a silent source.
    pub audio: Option<AudioPlan>,
    /// Segment length in seconds.
    pub segment_seconds: u32,
    /// Segment container.
    pub format: SegmentFormat,
}

/// Broadcast rates a measured average snaps to.
const NOMINAL_RATES: [f64; 10] = [
    24000.0 / 1001.0,
    24.0,
    25.0,
    30000.0 / 1001.0,
    30.0,
    50.0,
    60000.0 / 1001.0,
    60.0,
    120000.0 / 1001.0,
    120.0,
];

fn snap_rate(fps: f64) -> f64 {
    // The nearest broadcast rate, so 24 stays 24 rather than 24000/1001.
    NOMINAL_RATES
        .into_iter()
        .filter(|n| (fps - n).abs() <= n * 0.001)
        .min_by(|a, b| (fps - a).abs().total_cmp(&(fps - b).abs()))
        .unwrap_or((fps * 1000.0).round() / 1000.0)
}

fn round_even(x: f64) -> u32 {
    // Saturating float-to-int casts: inputs are bounded by MAX_DIMENSION.
    (((x / 2.0).round() as u32) * 2).max(2)
}

/// The even number at or below `x`, at least 2 (a 1-pixel source is the
/// one case that grows, to the smallest size an encoder accepts).
fn even_floor(x: u32) -> u32 {
    (x & !1).max(2)
}

/// Video bit rate at 30 fps for a rung of `pixels` pixels.
pub fn reference_bitrate(pixels: u64) -> u64 {
    let (_, p0, b0) = BITRATE_TABLE[0];
    if pixels <= p0 {
        return b0 * pixels / p0;
    }
    for pair in BITRATE_TABLE.windows(2) {
        let ((_, pa, ba), (_, pb, bb)) = (pair[0], pair[1]);
        if pixels <= pb {
            return ba + (bb - ba) * (pixels - pa) / (pb - pa);
        }
    }
    let (_, pt, bt) = BITRATE_TABLE[BITRATE_TABLE.len() - 1];
    (bt as f64 * (pixels as f64 / pt as f64).powf(0.75)).round() as u64
}

/// Plans a ladder for `source`.
///
/// # Errors
///
/// [`Error::InvalidDimensions`], [`Error::InvalidFrameRate`] and
/// [`Error::InvalidRotation`] for absurd sources; [`Error::InvalidInput`]
/// for options without rungs, with a zero rung or a zero segment length.
pub fn plan(source: &SourceVideo, opts: &LadderOptions) -> Result<Ladder, Error> {
    let (dw, dh) = source.display_size()?;
    let fps = source.frame_rate;
    if !fps.is_finite() || fps <= 0.0 || fps > MAX_FRAME_RATE {
        return Err(Error::InvalidFrameRate(fps));
    }
    if opts.rungs.is_empty() || opts.rungs.contains(&0) {
        return Err(Error::InvalidInput(format!(
            "ladder rungs {:?} must be non-empty and positive",
            opts.rungs
        )));
    }
    if opts.segment_seconds == 0 || opts.segment_seconds > 60 {
        return Err(Error::InvalidInput(format!(
            "segment length {} s must be between 1 and 60",
            opts.segment_seconds
        )));
    }
    let fps = snap_rate(fps);
    let (short, long) = (dw.min(dh), dw.max(dh));
    let portrait = dh > dw;

    // Short sides to encode, largest first, no upscaling.
    let mut sides: Vec<u32> = opts.rungs.iter().map(|&r| r.min(short)).collect();
    sides.sort_unstable_by(|a, b| b.cmp(a));
    let mut planned: Vec<Rung> = Vec::new();
    for side in sides {
        // Round to even, but never past the source: 817 lines give 816.
        let s = round_even(f64::from(side)).min(even_floor(short));
        if planned.iter().any(|r| r.short_side() == s) {
            continue;
        }
        let l = round_even(f64::from(s) * f64::from(long) / f64::from(short)).min(even_floor(long));
        let (width, height) = if portrait { (s, l) } else { (l, s) };
        let frame_rate = if s < 720 {
            cap_rate(fps, 30.0)
        } else {
            cap_rate(fps, MAX_RUNG_FRAME_RATE)
        };
        let pixels = u64::from(width) * u64::from(height);
        let mut bitrate = reference_bitrate(pixels) as f64;
        if frame_rate > 30.5 {
            bitrate *= 1.5;
        }
        if let Some(src) = source.bit_rate.filter(|&b| b > 0) {
            bitrate = bitrate.min(src as f64 * SOURCE_BITRATE_CAP);
        }
        let bitrate = (bitrate.round() as u64).max(MIN_VIDEO_BITRATE);
        let maxrate = bitrate * 11 / 10;
        let bufsize = maxrate * 3 / 2;
        let level = H264Level::for_stream(width, height, frame_rate, maxrate);
        planned.push(Rung {
            name: format!("{s}p"),
            width,
            height,
            frame_rate,
            bitrate,
            maxrate,
            bufsize,
            keyint: ((frame_rate * f64::from(opts.segment_seconds.min(MAX_KEYFRAME_INTERVAL_S)))
                .round() as u32)
                .max(1),
            keyframe_interval_s: opts.segment_seconds,
            profile: H264Profile::High,
            level,
        });
    }

    Ok(Ladder {
        rungs: planned,
        audio: plan_audio(source.audio_channels, source.sample_rate),
        segment_seconds: opts.segment_seconds,
        format: opts.format,
    })
}

/// The audio rendition for a source with `channels` channels at
/// `sample_rate`; `None` without channels.
fn plan_audio(channels: Option<u32>, sample_rate: Option<u32>) -> Option<AudioPlan> {
    let channels = channels.filter(|&c| c > 0)?.min(2);
    Some(AudioPlan {
        group_id: "audio".to_owned(),
        channels,
        bitrate: if channels == 2 { 128_000 } else { 64_000 },
        sample_rate: if sample_rate == Some(44_100) {
            44_100
        } else {
            48_000
        },
    })
}

/// Plans the ladder of an audio-only source (a podcast, a song with its
/// cover art): no video rung, the audio rendition alone, by the same audio
/// rules as [`plan`].
///
/// # Errors
///
/// [`Error::InvalidInput`] when `channels` is 0 or the segment length is
/// out of range.
pub fn plan_audio_only(
    channels: u32,
    sample_rate: Option<u32>,
    opts: &LadderOptions,
) -> Result<Ladder, Error> {
    if opts.segment_seconds == 0 || opts.segment_seconds > 60 {
        return Err(Error::InvalidInput(format!(
            "segment length {} s must be between 1 and 60",
            opts.segment_seconds
        )));
    }
    let audio = plan_audio(Some(channels), sample_rate)
        .ok_or_else(|| Error::InvalidInput("an audio-only source has no channels".to_owned()))?;
    Ok(Ladder {
        rungs: Vec::new(),
        audio: Some(audio),
        segment_seconds: opts.segment_seconds,
        format: opts.format,
    })
}

/// Brings `fps` to at most `cap` by keeping every n-th frame, the
/// smallest n that fits (60 -> 30, 50 -> 25, 90 -> 30, 120 -> 60), so
/// output frames are a regular subset of input frames; unless that falls
/// below three quarters of the cap, when the rung runs at the cap itself.
/// A rate just above the cap (a variable-rate phone clip averaging 30.04 or
/// 40 fps) would otherwise get 15 or 20 fps, far below what the rung can
/// show; its frames are not evenly spaced anyway.
fn cap_rate(fps: f64, cap: f64) -> f64 {
    if fps <= cap + 0.01 {
        return fps;
    }
    let n = (fps / (cap + 0.01)).ceil();
    let kept = fps / n;
    if kept < cap * 0.75 {
        cap
    } else {
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(w: u32, h: u32, fps: f64) -> SourceVideo {
        SourceVideo {
            width: w,
            height: h,
            rotation: 0,
            frame_rate: fps,
            bit_rate: Some(20_000_000),
            audio_channels: Some(2),
            sample_rate: Some(48_000),
        }
    }

    fn sizes(l: &Ladder) -> Vec<(u32, u32)> {
        l.rungs.iter().map(|r| (r.width, r.height)).collect()
    }

    #[test]
    fn default_ladder_for_1080p30() {
        let l = plan(&src(1920, 1080, 30.0), &LadderOptions::default()).unwrap();
        assert_eq!(
            sizes(&l),
            vec![(1920, 1080), (1280, 720), (854, 480), (640, 360)]
        );
        let names: Vec<_> = l.rungs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["1080p", "720p", "480p", "360p"]);
        let rates: Vec<_> = l.rungs.iter().map(|r| r.bitrate).collect();
        assert_eq!(rates, [5_000_000, 3_000_000, 1_400_000, 800_000]);
        assert_eq!(l.rungs[0].maxrate, 5_500_000);
        assert_eq!(l.rungs[0].bufsize, 8_250_000);
        assert!(l
            .rungs
            .iter()
            .all(|r| r.keyint == 60 && r.keyframe_interval_s == 4));
        assert_eq!(l.rungs[0].codecs(), "avc1.640028");
        assert_eq!(l.rungs[1].codecs(), "avc1.64001f");
        assert_eq!(l.rungs[3].codecs(), "avc1.64001e");
        let audio = l.audio.unwrap();
        assert_eq!(
            (audio.channels, audio.bitrate, audio.codecs()),
            (2, 128_000, "mp4a.40.2")
        );
    }

    #[test]
    fn never_upscales_and_small_source_keeps_its_height() {
        let l = plan(&src(1024, 576, 25.0), &LadderOptions::default()).unwrap();
        assert_eq!(sizes(&l), vec![(1024, 576), (854, 480), (640, 360)]);
        let l = plan(&src(320, 240, 25.0), &LadderOptions::default()).unwrap();
        assert_eq!(sizes(&l), vec![(320, 240)]);
    }

    #[test]
    fn odd_sizes_become_even_and_keep_aspect() {
        // Odd sources round down, never up past the source.
        let l = plan(&src(1279, 719, 30.0), &LadderOptions::default()).unwrap();
        assert_eq!(sizes(&l)[0], (1278, 718));
        let l = plan(&src(1918, 817, 30.0), &LadderOptions::default()).unwrap();
        assert_eq!(
            sizes(&l),
            vec![(1916, 816), (1690, 720), (1126, 480), (846, 360)]
        );
        assert!(l
            .rungs
            .iter()
            .all(|r| r.width % 2 == 0 && r.height % 2 == 0));
        // 4:3 source.
        let l = plan(&src(1440, 1080, 30.0), &LadderOptions::default()).unwrap();
        assert_eq!(
            sizes(&l),
            vec![(1440, 1080), (960, 720), (640, 480), (480, 360)]
        );
    }

    #[test]
    fn portrait_and_rotation_use_the_short_side() {
        let l = plan(&src(1080, 1920, 30.0), &LadderOptions::default()).unwrap();
        assert_eq!(
            sizes(&l),
            vec![(1080, 1920), (720, 1280), (480, 854), (360, 640)]
        );
        let mut rotated = src(1920, 1080, 30.0);
        rotated.rotation = 90;
        assert_eq!(plan(&rotated, &LadderOptions::default()).unwrap(), l);
        rotated.rotation = -90;
        assert_eq!(
            sizes(&plan(&rotated, &LadderOptions::default()).unwrap())[1],
            (720, 1280)
        );
        rotated.rotation = 180;
        assert_eq!(
            sizes(&plan(&rotated, &LadderOptions::default()).unwrap())[1],
            (1280, 720)
        );
        rotated.rotation = 45;
        assert_eq!(
            plan(&rotated, &LadderOptions::default()),
            Err(Error::InvalidRotation(45))
        );
    }

    #[test]
    fn frame_rate_rules() {
        let l = plan(&src(1920, 1080, 60.0), &LadderOptions::default()).unwrap();
        let rates: Vec<_> = l.rungs.iter().map(|r| r.frame_rate).collect();
        assert_eq!(rates, [60.0, 60.0, 30.0, 30.0]);
        assert_eq!(l.rungs[0].bitrate, 7_500_000);
        assert_eq!(l.rungs[2].bitrate, 1_400_000);
        assert_eq!(l.rungs[0].keyint, 120);
        assert_eq!(l.rungs[0].codecs(), "avc1.64002a");
        let l = plan(&src(1920, 1080, 50.0), &LadderOptions::default()).unwrap();
        assert_eq!(l.rungs[3].frame_rate, 25.0);
        for fps in [24.0, 25.0, 30.0] {
            let l = plan(&src(1920, 1080, fps), &LadderOptions::default()).unwrap();
            assert!(l.rungs.iter().all(|r| r.frame_rate == fps));
        }
        // A variable-rate phone clip averaging 29.971 fps snaps to NTSC.
        let l = plan(&src(1920, 1080, 29.971), &LadderOptions::default()).unwrap();
        assert_eq!(l.rungs[0].frame_rate, 30000.0 / 1001.0);
        let l = plan(&src(1920, 1080, 59.94), &LadderOptions::default()).unwrap();
        assert_eq!(l.rungs[3].frame_rate, 30000.0 / 1001.0);
    }

    #[test]
    fn a_keyframe_at_least_every_two_seconds() {
        for (seg, fps, keyint) in [(1, 30.0, 30), (2, 25.0, 50), (4, 30.0, 60), (6, 60.0, 120)] {
            let opts = LadderOptions {
                segment_seconds: seg,
                ..LadderOptions::default()
            };
            let l = plan(&src(1920, 1080, fps), &opts).unwrap();
            assert_eq!(l.rungs[0].keyint, keyint, "{seg} s at {fps}");
            assert_eq!(l.rungs[0].keyframe_interval_s, seg);
        }
    }

    #[test]
    fn rates_just_above_a_cap_are_capped_not_halved() {
        // (source, large rungs, small rungs).
        for (fps, large, small) in [
            (30.04, 30.04, 30.0),
            (40.0, 40.0, 30.0),
            (48.0, 48.0, 24.0),
            (70.0, 60.0, 70.0 / 3.0),
            (90.0, 45.0, 30.0),
            (75.0, 60.0, 25.0),
        ] {
            let l = plan(&src(1920, 1080, fps), &LadderOptions::default()).unwrap();
            let rates: Vec<f64> = l.rungs.iter().map(|r| r.frame_rate).collect();
            assert_eq!(rates, [large, large, small, small], "{fps} fps");
        }
    }

    #[test]
    fn no_rung_above_sixty_fps() {
        // (source, large rungs, small rungs): halved until they fit.
        for (fps, large, small) in [
            (120.0, 60.0, 30.0),
            (100.0, 50.0, 25.0),
            (240.0, 60.0, 30.0),
            (119.88, 59.94, 29.97),
            (60.0, 60.0, 30.0),
        ] {
            let l = plan(&src(1920, 1080, fps), &LadderOptions::default()).unwrap();
            let rates: Vec<f64> = l
                .rungs
                .iter()
                .map(|r| (r.frame_rate * 100.0).round() / 100.0)
                .collect();
            assert_eq!(rates, [large, large, small, small], "{fps} fps");
            // A keyframe every 2 s at the rung's own rate.
            assert_eq!(l.rungs[0].keyint, (large * 2.0).round() as u32, "{fps}");
        }
    }

    #[test]
    fn levels_fit_each_rung_and_stay_within_high_4_2_up_to_1080p60() {
        let l = plan(&src(1920, 1080, 60.0), &LadderOptions::default()).unwrap();
        let codecs: Vec<String> = l.rungs.iter().map(Rung::codecs).collect();
        // 1080p60 4.2, 720p60 3.2, 480p30 3.1 (1620 macroblocks at 30 fps
        // pass 3.0's rate), 360p30 3.0.
        assert_eq!(
            codecs,
            ["avc1.64002a", "avc1.640020", "avc1.64001f", "avc1.64001e"]
        );
        for (w, h) in [(1920, 1080), (1080, 1920), (1440, 1080), (1918, 817)] {
            for fps in [23.976, 25.0, 30.0, 50.0, 59.94, 60.0, 120.0, 240.0] {
                let l = plan(&src(w, h, fps), &LadderOptions::default()).unwrap();
                for r in &l.rungs {
                    assert_eq!(r.profile, H264Profile::High);
                    assert!(r.level <= H264Level(42), "{w}x{h}@{fps}: {r:?}");
                    // The level is the smallest that holds the rung.
                    let need = H264Level::for_stream(r.width, r.height, r.frame_rate, r.maxrate);
                    assert_eq!(r.level, need, "{w}x{h}@{fps}: {r:?}");
                }
            }
        }
    }

    #[test]
    fn bitrate_capped_by_source() {
        let mut s = src(1920, 1080, 30.0);
        s.bit_rate = Some(2_000_000);
        let l = plan(&s, &LadderOptions::default()).unwrap();
        let rates: Vec<_> = l.rungs.iter().map(|r| r.bitrate).collect();
        assert_eq!(rates, [2_600_000, 2_600_000, 1_400_000, 800_000]);
        s.bit_rate = Some(10_000);
        let l = plan(&s, &LadderOptions::default()).unwrap();
        assert!(l.rungs.iter().all(|r| r.bitrate == MIN_VIDEO_BITRATE));
    }

    #[test]
    fn reference_bitrate_interpolates() {
        assert_eq!(reference_bitrate(1280 * 720), 3_000_000);
        assert_eq!(reference_bitrate(320 * 180), 200_000);
        let mid = reference_bitrate(1024 * 576);
        assert!(mid > 1_400_000 && mid < 3_000_000, "{mid}");
        assert!(reference_bitrate(3840 * 2160) > 5_000_000);
    }

    #[test]
    fn audio_rules() {
        let mut s = src(1280, 720, 30.0);
        s.audio_channels = Some(6);
        s.sample_rate = Some(44_100);
        let a = plan(&s, &LadderOptions::default()).unwrap().audio.unwrap();
        assert_eq!((a.channels, a.sample_rate), (2, 44_100));
        s.audio_channels = Some(1);
        let a = plan(&s, &LadderOptions::default()).unwrap().audio.unwrap();
        assert_eq!((a.channels, a.bitrate), (1, 64_000));
        s.audio_channels = None;
        assert_eq!(plan(&s, &LadderOptions::default()).unwrap().audio, None);
    }

    #[test]
    fn audio_only_ladder() {
        let l = plan_audio_only(6, Some(44_100), &LadderOptions::default()).unwrap();
        assert!(l.rungs.is_empty());
        let a = l.audio.unwrap();
        assert_eq!((a.channels, a.sample_rate, a.bitrate), (2, 44_100, 128_000));
        assert!(matches!(
            plan_audio_only(0, None, &LadderOptions::default()),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn absurd_input_is_a_typed_error() {
        let o = LadderOptions::default();
        assert_eq!(
            plan(&src(0, 1080, 30.0), &o),
            Err(Error::InvalidDimensions {
                width: 0,
                height: 1080
            })
        );
        assert_eq!(
            plan(&src(100_000, 1080, 30.0), &o),
            Err(Error::InvalidDimensions {
                width: 100_000,
                height: 1080
            })
        );
        assert!(matches!(
            plan(&src(1920, 1080, f64::NAN), &o),
            Err(Error::InvalidFrameRate(_))
        ));
        assert!(matches!(
            plan(&src(1920, 1080, 0.0), &o),
            Err(Error::InvalidFrameRate(_))
        ));
        assert!(matches!(
            plan(&src(1920, 1080, 1000.0), &o),
            Err(Error::InvalidFrameRate(_))
        ));
        let bad = LadderOptions {
            rungs: vec![],
            ..LadderOptions::default()
        };
        assert!(matches!(
            plan(&src(1920, 1080, 30.0), &bad),
            Err(Error::InvalidInput(_))
        ));
        let bad = LadderOptions {
            segment_seconds: 0,
            ..LadderOptions::default()
        };
        assert!(matches!(
            plan(&src(1920, 1080, 30.0), &bad),
            Err(Error::InvalidInput(_))
        ));
        let err = plan(&src(0, 1080, 30.0), &o).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ladder planning failed: source dimensions 0x1080 are out of range"
        );
    }

    #[test]
    fn invariants_hold_over_a_grid_of_sources() {
        for (w, h) in [
            (3840, 2160),
            (1920, 1080),
            (1080, 1920),
            (1918, 817),
            (720, 576),
            (1000, 1000),
            (641, 359),
            (176, 144),
            (2, 2),
            (16384, 16),
        ] {
            for rotation in [0, 90, 180, 270] {
                for fps in [12.5, 23.976, 25.0, 29.97, 50.0, 60.0, 120.0] {
                    let s = SourceVideo {
                        rotation,
                        ..src(w, h, fps)
                    };
                    let l = plan(&s, &LadderOptions::default()).unwrap();
                    let (dw, dh) = s.display_size().unwrap();
                    let aspect = f64::from(dw) / f64::from(dh);
                    assert!(!l.rungs.is_empty());
                    for (i, r) in l.rungs.iter().enumerate() {
                        let ctx = format!("{w}x{h} rot {rotation} @ {fps}: {r:?}");
                        assert!(r.width % 2 == 0 && r.height % 2 == 0, "{ctx}");
                        assert!(r.short_side() <= dw.min(dh).max(2), "{ctx}");
                        assert_eq!(dw > dh, r.width > r.height, "{ctx}");
                        // Aspect kept within what even rounding allows.
                        let got = f64::from(r.width) / f64::from(r.height);
                        let slack =
                            2.0 / f64::from(r.short_side()) * aspect.max(1.0 / aspect) + 1e-9;
                        assert!((got / aspect - 1.0).abs() <= slack, "{ctx}");
                        assert!(r.frame_rate <= fps * 1.001, "{ctx}");
                        assert!(r.frame_rate <= MAX_RUNG_FRAME_RATE + 1e-9, "{ctx}");
                        if r.short_side() < 720 {
                            assert!(r.frame_rate <= 30.0 + 1e-9, "{ctx}");
                        }
                        assert!(
                            r.bitrate as f64 <= 20_000_000.0 * SOURCE_BITRATE_CAP,
                            "{ctx}"
                        );
                        assert!(r.maxrate > r.bitrate && r.bufsize > r.maxrate, "{ctx}");
                        if let Some(next) = l.rungs.get(i + 1) {
                            assert!(next.short_side() < r.short_side(), "{ctx}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn from_meta_needs_video() {
        let meta = SourceMeta {
            width: Some(1920),
            height: Some(1080),
            frame_rate: Some(30.0),
            ..Default::default()
        };
        let s = SourceVideo::from_meta(&meta).unwrap();
        assert_eq!(s.audio_channels, None);
        let audio_only = SourceMeta {
            audio_codec: Some("aac".into()),
            ..Default::default()
        };
        assert_eq!(
            SourceVideo::from_meta(&audio_only),
            Err(Error::MissingField("width"))
        );
    }
}
