//! RFC 6381 codecs strings for the `CODECS` attribute.
//!
//! An `avc1` string is `avc1.PPCCLL`: profile_idc, the constraint flags byte
//! and level_idc, each as two hex digits. H.264 High at level 3.1 is
//! `avc1.64001f`; Constrained Baseline 3.0 is `avc1.42e01e`. AAC-LC is
//! `mp4a.40.2` (MPEG-4 audio, object type 2).

use std::fmt;

use serde::{Deserialize, Serialize};

/// RFC 6381 string of AAC-LC.
pub const AAC_LC: &str = "mp4a.40.2";

/// H.264 profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum H264Profile {
    /// Constrained Baseline (profile_idc 66, constraint_set0+1).
    ConstrainedBaseline,
    /// Main (profile_idc 77).
    Main,
    /// High (profile_idc 100), what the ladder encodes.
    High,
}

impl H264Profile {
    /// `(profile_idc, constraint flags byte)`.
    pub fn idc_and_constraints(self) -> (u8, u8) {
        match self {
            H264Profile::ConstrainedBaseline => (66, 0xe0),
            H264Profile::Main => (77, 0x40),
            H264Profile::High => (100, 0x00),
        }
    }

    /// Multiplier of the level's MaxBR (Table A-1 gives it for Baseline and
    /// Main; High allows 1.25 times as much).
    fn bitrate_factor(self) -> u64 {
        match self {
            H264Profile::High => 1250,
            _ => 1000,
        }
    }
}

/// H.264 level, held as level_idc (`31` for 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct H264Level(pub u8);

/// `(level_idc, MaxMBPS, MaxFS, MaxBR in 1000 or 1200 bit/s units)` from
/// ITU-T H.264 Table A-1, from level 3.0 up (the floor every player we
/// target decodes).
const LEVELS: [(u8, u64, u64, u64); 9] = [
    (30, 40_500, 1_620, 10_000),
    (31, 108_000, 3_600, 14_000),
    (32, 216_000, 5_120, 20_000),
    (40, 245_760, 8_192, 20_000),
    (41, 245_760, 8_192, 50_000),
    (42, 522_240, 8_704, 50_000),
    (50, 589_824, 22_080, 135_000),
    (51, 983_040, 36_864, 240_000),
    (52, 2_073_600, 36_864, 240_000),
];

impl H264Level {
    /// The smallest High-profile level (from 3.0 up) whose frame size,
    /// macroblock rate and bit rate limits hold a stream; 5.2 when none does.
    pub fn for_stream(width: u32, height: u32, fps: f64, maxrate: u64) -> H264Level {
        let mbs = u64::from(width.div_ceil(16)) * u64::from(height.div_ceil(16));
        let mbps = (mbs as f64 * fps).ceil() as u64;
        let factor = H264Profile::High.bitrate_factor();
        LEVELS
            .iter()
            .find(|&&(_, max_mbps, max_fs, max_br)| {
                mbs <= max_fs && mbps <= max_mbps && maxrate <= max_br * factor
            })
            .map_or(H264Level(52), |&(idc, ..)| H264Level(idc))
    }
}

impl fmt::Display for H264Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// RFC 6381 codecs string of an H.264 stream (`avc1.64001f`).
pub fn avc_codec_string(profile: H264Profile, level: H264Level) -> String {
    let (idc, constraints) = profile.idc_and_constraints();
    format!("avc1.{idc:02x}{constraints:02x}{:02x}", level.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_strings() {
        assert_eq!(
            avc_codec_string(H264Profile::High, H264Level(31)),
            "avc1.64001f"
        );
        assert_eq!(
            avc_codec_string(H264Profile::High, H264Level(40)),
            "avc1.640028"
        );
        assert_eq!(
            avc_codec_string(H264Profile::Main, H264Level(30)),
            "avc1.4d401e"
        );
        assert_eq!(
            avc_codec_string(H264Profile::ConstrainedBaseline, H264Level(30)),
            "avc1.42e01e"
        );
        assert_eq!(H264Level(31).to_string(), "3.1");
    }

    #[test]
    fn levels_from_stream() {
        assert_eq!(
            H264Level::for_stream(640, 360, 30.0, 880_000),
            H264Level(30)
        );
        assert_eq!(
            H264Level::for_stream(1280, 720, 30.0, 3_300_000),
            H264Level(31)
        );
        assert_eq!(
            H264Level::for_stream(1280, 720, 60.0, 4_950_000),
            H264Level(32)
        );
        assert_eq!(
            H264Level::for_stream(1920, 1080, 30.0, 5_500_000),
            H264Level(40)
        );
        // 1080p30 above 25 Mbit/s needs 4.1.
        assert_eq!(
            H264Level::for_stream(1920, 1080, 30.0, 30_000_000),
            H264Level(41)
        );
        assert_eq!(
            H264Level::for_stream(1920, 1080, 60.0, 8_250_000),
            H264Level(42)
        );
        assert_eq!(
            H264Level::for_stream(3840, 2160, 30.0, 20_000_000),
            H264Level(51)
        );
    }
}
