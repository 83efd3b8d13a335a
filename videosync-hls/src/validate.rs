//! Checks a produced ladder against the HLS rules players rely on.
//!
//! [`validate`] never stops at the first problem: it returns every
//! [`Violation`] it finds, each with a message that names the playlist, the
//! segment and the numbers involved. The rules:
//!
//! - every media playlist has segments, and as many as were measured;
//! - every `EXTINF` duration, rounded to the nearest integer, is at most
//!   `#EXT-X-TARGETDURATION` (RFC 8216 section 4.3.3.1);
//! - `EXTINF` agrees with the measured duration within the tolerance;
//! - every video segment starts with a keyframe;
//! - every video rendition has the same segment count as the first and its
//!   segment boundaries lie within the tolerance of the first's, so a player
//!   can switch at any boundary;
//! - each variant's `BANDWIDTH` is within 10% of the measured peak (video
//!   plus its audio group), and `AVERAGE-BANDWIDTH` within 10% of the
//!   measured average;
//! - fMP4 playlists carry `#EXT-X-MAP`, at `#EXT-X-VERSION` 6 or more;
//! - VOD playlists say `#EXT-X-PLAYLIST-TYPE:VOD` and end in
//!   `#EXT-X-ENDLIST`;
//! - the master declares `#EXT-X-INDEPENDENT-SEGMENTS`, lists every
//!   rendition, references only renditions that exist and audio groups it
//!   declares.

use std::fmt;

use m3u8_rs::{AlternativeMediaType, MasterPlaylist, MediaPlaylist, MediaPlaylistType};

use crate::playlist::{measure, SegmentInfo};

/// One produced media playlist with what the muxer measured.
#[derive(Debug, Clone, Copy)]
pub struct ProducedRendition<'a> {
    /// Its URI as the master lists it (`720p/index.m3u8`).
    pub uri: &'a str,
    /// The media playlist as written.
    pub playlist: &'a MediaPlaylist,
    /// The measured segments, in playlist order.
    pub segments: &'a [SegmentInfo],
}

/// A produced ladder: the master and every media playlist.
#[derive(Debug, Clone)]
pub struct ProducedLadder<'a> {
    /// The master playlist.
    pub master: &'a MasterPlaylist,
    /// Video renditions; the first is the reference for alignment.
    pub video: Vec<ProducedRendition<'a>>,
    /// The audio rendition, when there is one.
    pub audio: Option<ProducedRendition<'a>>,
}

/// Tolerances of [`validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidateOptions {
    /// Largest allowed difference, in seconds, between segment boundaries of
    /// two renditions, and between `EXTINF` and a measured duration.
    pub time_tolerance_s: f64,
    /// Largest allowed relative difference between a declared and a measured
    /// bandwidth (0.10 is 10%).
    pub bandwidth_tolerance: f64,
    /// Whether the ladder is VOD (playlist type and ENDLIST required).
    pub vod: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            time_tolerance_s: 0.05,
            bandwidth_tolerance: 0.10,
            vod: true,
        }
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Violation {
    /// The master lacks `#EXT-X-INDEPENDENT-SEGMENTS`.
    MissingIndependentSegments,
    /// The master lists a variant whose media playlist was not produced.
    UnknownVariant {
        /// The variant URI.
        uri: String,
    },
    /// A produced video rendition is not listed in the master.
    UnlistedRendition {
        /// Its URI.
        uri: String,
    },
    /// A variant names an audio group the master does not declare.
    MissingAudioGroup {
        /// The variant URI.
        uri: String,
        /// The group it names.
        group: String,
    },
    /// A media playlist has no segments.
    EmptyPlaylist {
        /// Its URI.
        playlist: String,
    },
    /// The playlist and the measurements disagree on the segment count.
    SegmentCountMismatch {
        /// Its URI.
        playlist: String,
        /// Segments in the playlist.
        listed: usize,
        /// Segments measured.
        measured: usize,
    },
    /// A segment, rounded, is longer than the target duration.
    SegmentExceedsTarget {
        /// Its playlist.
        playlist: String,
        /// Segment index.
        index: usize,
        /// Its `EXTINF` duration.
        duration: f64,
        /// `#EXT-X-TARGETDURATION`.
        target: u64,
    },
    /// `EXTINF` differs from the measured duration.
    DurationMismatch {
        /// Its playlist.
        playlist: String,
        /// Segment index.
        index: usize,
        /// `EXTINF`.
        listed: f64,
        /// Measured.
        measured: f64,
    },
    /// A video segment does not start with a keyframe.
    MissingKeyframe {
        /// Its playlist.
        playlist: String,
        /// Segment index.
        index: usize,
    },
    /// A rendition has a different segment count from the reference.
    MisalignedSegmentCount {
        /// Its playlist.
        playlist: String,
        /// Its count.
        count: usize,
        /// The reference playlist.
        reference: String,
        /// The reference count.
        reference_count: usize,
    },
    /// A segment starts at a different time from the reference's.
    MisalignedBoundary {
        /// Its playlist.
        playlist: String,
        /// Segment index.
        index: usize,
        /// Its start time, seconds.
        start: f64,
        /// The reference playlist.
        reference: String,
        /// The reference start time, seconds.
        reference_start: f64,
    },
    /// `BANDWIDTH` is not within tolerance of the measured peak.
    BandwidthMismatch {
        /// The variant URI.
        uri: String,
        /// Declared.
        declared: u64,
        /// Measured peak (video plus audio).
        measured: u64,
    },
    /// `AVERAGE-BANDWIDTH` is not within tolerance of the measured average.
    AverageBandwidthMismatch {
        /// The variant URI.
        uri: String,
        /// Declared.
        declared: u64,
        /// Measured average (video plus audio).
        measured: u64,
    },
    /// An fMP4 playlist (`.m4s`/`.mp4` segments) has no `#EXT-X-MAP`.
    MissingInitSegment {
        /// Its URI.
        playlist: String,
    },
    /// `#EXT-X-VERSION` is below what the playlist's tags need
    /// (`EXT-X-MAP` needs 6).
    VersionTooLow {
        /// Its URI.
        playlist: String,
        /// Declared version (0 when absent).
        version: usize,
        /// Version the tags need.
        required: usize,
    },
    /// A VOD playlist lacks `#EXT-X-PLAYLIST-TYPE:VOD`.
    NotVod {
        /// Its URI.
        playlist: String,
    },
    /// A VOD playlist lacks `#EXT-X-ENDLIST`.
    MissingEndList {
        /// Its URI.
        playlist: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::MissingIndependentSegments => {
                write!(f, "master playlist lacks #EXT-X-INDEPENDENT-SEGMENTS")
            }
            Violation::UnknownVariant { uri } => {
                write!(f, "master lists variant {uri}, but no such media playlist was produced")
            }
            Violation::UnlistedRendition { uri } => {
                write!(f, "media playlist {uri} was produced but the master does not list it")
            }
            Violation::MissingAudioGroup { uri, group } => {
                write!(f, "variant {uri} names audio group \"{group}\", which the master does not declare")
            }
            Violation::EmptyPlaylist { playlist } => write!(f, "{playlist} has no segments"),
            Violation::SegmentCountMismatch { playlist, listed, measured } => {
                write!(f, "{playlist} lists {listed} segments but {measured} were measured")
            }
            Violation::SegmentExceedsTarget { playlist, index, duration, target } => write!(
                f,
                "{playlist} segment {index} lasts {duration:.3} s, longer than the target duration {target} s once rounded"
            ),
            Violation::DurationMismatch { playlist, index, listed, measured } => write!(
                f,
                "{playlist} segment {index} is listed as {listed:.3} s but measured {measured:.3} s"
            ),
            Violation::MissingKeyframe { playlist, index } => {
                write!(f, "{playlist} segment {index} does not start with a keyframe")
            }
            Violation::MisalignedSegmentCount { playlist, count, reference, reference_count } => write!(
                f,
                "{playlist} has {count} segments but {reference} has {reference_count}; rungs must align"
            ),
            Violation::MisalignedBoundary { playlist, index, start, reference, reference_start } => write!(
                f,
                "{playlist} segment {index} starts at {start:.3} s but {reference} segment {index} at {reference_start:.3} s"
            ),
            Violation::BandwidthMismatch { uri, declared, measured } => write!(
                f,
                "variant {uri} declares BANDWIDTH={declared} but its measured peak is {measured} bit/s"
            ),
            Violation::AverageBandwidthMismatch { uri, declared, measured } => write!(
                f,
                "variant {uri} declares AVERAGE-BANDWIDTH={declared} but its measured average is {measured} bit/s"
            ),
            Violation::MissingInitSegment { playlist } => write!(
                f,
                "{playlist} has fMP4 segments but no #EXT-X-MAP initialisation segment"
            ),
            Violation::VersionTooLow { playlist, version, required } => write!(
                f,
                "{playlist} declares #EXT-X-VERSION:{version} but its tags need version {required}"
            ),
            Violation::NotVod { playlist } => write!(f, "{playlist} lacks #EXT-X-PLAYLIST-TYPE:VOD"),
            Violation::MissingEndList { playlist } => write!(f, "{playlist} lacks #EXT-X-ENDLIST"),
        }
    }
}

fn off_by_more_than(declared: u64, measured: u64, tolerance: f64) -> bool {
    (declared as f64 - measured as f64).abs() > tolerance * measured as f64
}

/// Checks one media playlist on its own.
fn check_media(
    r: &ProducedRendition<'_>,
    video: bool,
    opts: &ValidateOptions,
    out: &mut Vec<Violation>,
) {
    let name = || r.uri.to_owned();
    let pl = r.playlist;
    if pl.segments.is_empty() {
        out.push(Violation::EmptyPlaylist { playlist: name() });
    }
    if pl.segments.len() != r.segments.len() {
        out.push(Violation::SegmentCountMismatch {
            playlist: name(),
            listed: pl.segments.len(),
            measured: r.segments.len(),
        });
    }
    for (index, seg) in pl.segments.iter().enumerate() {
        let duration = f64::from(seg.duration);
        if duration.round() > pl.target_duration as f64 {
            out.push(Violation::SegmentExceedsTarget {
                playlist: name(),
                index,
                duration,
                target: pl.target_duration,
            });
        }
        if let Some(m) = r.segments.get(index) {
            if (duration - m.duration).abs() > opts.time_tolerance_s {
                out.push(Violation::DurationMismatch {
                    playlist: name(),
                    index,
                    listed: duration,
                    measured: m.duration,
                });
            }
        }
    }
    let has_map = pl.segments.iter().any(|s| s.map.is_some());
    let fmp4 = pl.segments.first().is_some_and(|s| {
        let path = s.uri.split(['?', '#']).next().unwrap_or("");
        path.ends_with(".m4s") || path.ends_with(".mp4")
    });
    if fmp4 && !has_map {
        out.push(Violation::MissingInitSegment { playlist: name() });
    }
    if has_map && pl.version.unwrap_or(0) < 6 {
        out.push(Violation::VersionTooLow {
            playlist: name(),
            version: pl.version.unwrap_or(0),
            required: 6,
        });
    }
    if video {
        for (index, m) in r.segments.iter().enumerate() {
            if !m.starts_with_keyframe {
                out.push(Violation::MissingKeyframe {
                    playlist: name(),
                    index,
                });
            }
        }
    }
    if opts.vod {
        if pl.playlist_type != Some(MediaPlaylistType::Vod) {
            out.push(Violation::NotVod { playlist: name() });
        }
        if !pl.end_list {
            out.push(Violation::MissingEndList { playlist: name() });
        }
    }
}

fn starts(segments: &[SegmentInfo]) -> Vec<f64> {
    segments
        .iter()
        .scan(0.0, |t, s| {
            let start = *t;
            *t += s.duration;
            Some(start)
        })
        .collect()
}

/// Checks `ladder` and returns every violation, in a stable order (master,
/// then each media playlist, then alignment, then bandwidth). An empty
/// vector means the ladder passes.
pub fn validate(ladder: &ProducedLadder<'_>, opts: &ValidateOptions) -> Vec<Violation> {
    let mut out = Vec::new();
    let master = ladder.master;
    if !master.independent_segments {
        out.push(Violation::MissingIndependentSegments);
    }
    let audio_groups: Vec<&str> = master
        .alternatives
        .iter()
        .filter(|a| a.media_type == AlternativeMediaType::Audio)
        .map(|a| a.group_id.as_str())
        .collect();
    for v in master.variants.iter().filter(|v| !v.is_i_frame) {
        if !ladder.video.iter().any(|r| r.uri == v.uri) {
            out.push(Violation::UnknownVariant { uri: v.uri.clone() });
        }
        if let Some(group) = &v.audio {
            if !audio_groups.contains(&group.as_str()) {
                out.push(Violation::MissingAudioGroup {
                    uri: v.uri.clone(),
                    group: group.clone(),
                });
            }
        }
    }
    for r in &ladder.video {
        if !master.variants.iter().any(|v| v.uri == r.uri) {
            out.push(Violation::UnlistedRendition {
                uri: r.uri.to_owned(),
            });
        }
    }

    for r in &ladder.video {
        check_media(r, true, opts, &mut out);
    }
    if let Some(a) = &ladder.audio {
        check_media(a, false, opts, &mut out);
    }

    if let Some((reference, rest)) = ladder.video.split_first() {
        let ref_starts = starts(reference.segments);
        for r in rest {
            if r.segments.len() != reference.segments.len() {
                out.push(Violation::MisalignedSegmentCount {
                    playlist: r.uri.to_owned(),
                    count: r.segments.len(),
                    reference: reference.uri.to_owned(),
                    reference_count: reference.segments.len(),
                });
            }
            for (index, (start, reference_start)) in
                starts(r.segments).into_iter().zip(&ref_starts).enumerate()
            {
                if (start - reference_start).abs() > opts.time_tolerance_s {
                    out.push(Violation::MisalignedBoundary {
                        playlist: r.uri.to_owned(),
                        index,
                        start,
                        reference: reference.uri.to_owned(),
                        reference_start: *reference_start,
                    });
                }
            }
        }
    }

    let audio_bw = ladder.audio.as_ref().and_then(|a| measure(a.segments).ok());
    for v in master.variants.iter().filter(|v| !v.is_i_frame) {
        let Some(r) = ladder.video.iter().find(|r| r.uri == v.uri) else {
            continue;
        };
        // Empty or broken measurements are reported above.
        let Ok(bw) = measure(r.segments) else {
            continue;
        };
        let (mut peak, mut average) = (bw.peak, bw.average);
        if let (Some(_), Some(a)) = (&v.audio, audio_bw) {
            peak += a.peak;
            average += a.average;
        }
        if off_by_more_than(v.bandwidth, peak, opts.bandwidth_tolerance) {
            out.push(Violation::BandwidthMismatch {
                uri: v.uri.clone(),
                declared: v.bandwidth,
                measured: peak,
            });
        }
        if let Some(declared) = v.average_bandwidth {
            if off_by_more_than(declared, average, opts.bandwidth_tolerance) {
                out.push(Violation::AverageBandwidthMismatch {
                    uri: v.uri.clone(),
                    declared,
                    measured: average,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::SegmentFormat;
    use crate::playlist::media_playlist;
    use crate::playlist::tests::{audio_segs, fixture_master, segs, video_360, video_720};

    struct Fixture {
        master: MasterPlaylist,
        v720: (MediaPlaylist, Vec<SegmentInfo>),
        v360: (MediaPlaylist, Vec<SegmentInfo>),
        audio: (MediaPlaylist, Vec<SegmentInfo>),
    }

    fn good() -> Fixture {
        let media = |s: Vec<SegmentInfo>| (media_playlist(SegmentFormat::Fmp4, &s).unwrap(), s);
        Fixture {
            master: fixture_master(),
            v720: media(video_720()),
            v360: media(video_360()),
            audio: media(audio_segs()),
        }
    }

    fn check(f: &Fixture) -> Vec<Violation> {
        let ladder = ProducedLadder {
            master: &f.master,
            video: vec![
                ProducedRendition {
                    uri: "720p/index.m3u8",
                    playlist: &f.v720.0,
                    segments: &f.v720.1,
                },
                ProducedRendition {
                    uri: "360p/index.m3u8",
                    playlist: &f.v360.0,
                    segments: &f.v360.1,
                },
            ],
            audio: Some(ProducedRendition {
                uri: "audio/index.m3u8",
                playlist: &f.audio.0,
                segments: &f.audio.1,
            }),
        };
        validate(&ladder, &ValidateOptions::default())
    }

    #[test]
    fn good_ladder_passes() {
        assert_eq!(check(&good()), vec![]);
    }

    #[test]
    fn segment_longer_than_target() {
        let mut f = good();
        f.v720.0.segments[1].duration = 4.6;
        f.v720.1[1].duration = 4.6;
        f.v360.0.segments[1].duration = 4.6;
        f.v360.1[1].duration = 4.6;
        let v = check(&f);
        assert!(v.contains(&Violation::SegmentExceedsTarget {
            playlist: "720p/index.m3u8".into(),
            index: 1,
            duration: f64::from(4.6f32),
            target: 4,
        }));
        assert_eq!(
            v.iter()
                .filter(|v| matches!(v, Violation::SegmentExceedsTarget { .. }))
                .count(),
            2
        );
        // 4.4 rounds to 4, which the target covers.
        let mut f = good();
        f.v720.0.segments[1].duration = 4.4;
        assert!(!check(&f)
            .iter()
            .any(|v| matches!(v, Violation::SegmentExceedsTarget { .. })));
    }

    #[test]
    fn missing_keyframes_are_each_reported() {
        let mut f = good();
        f.v360.1[1].starts_with_keyframe = false;
        f.v360.1[2].starts_with_keyframe = false;
        let v = check(&f);
        assert_eq!(
            v,
            vec![
                Violation::MissingKeyframe {
                    playlist: "360p/index.m3u8".into(),
                    index: 1
                },
                Violation::MissingKeyframe {
                    playlist: "360p/index.m3u8".into(),
                    index: 2
                },
            ]
        );
        assert_eq!(
            v[0].to_string(),
            "360p/index.m3u8 segment 1 does not start with a keyframe"
        );
    }

    #[test]
    fn misaligned_rungs() {
        let mut f = good();
        let s = segs(
            "seg_",
            "m4s",
            &[(3.5, 400_000), (4.5, 450_000), (2.0, 150_000)],
        );
        f.v360 = (media_playlist(SegmentFormat::Fmp4, &s).unwrap(), s);
        let v = check(&f);
        let boundary = v
            .iter()
            .find(|v| matches!(v, Violation::MisalignedBoundary { .. }))
            .unwrap();
        assert_eq!(
            boundary.to_string(),
            "360p/index.m3u8 segment 1 starts at 3.500 s but 720p/index.m3u8 segment 1 at 4.000 s"
        );
        // One more segment in one rung.
        let mut f = good();
        let s = segs(
            "seg_",
            "m4s",
            &[(4.0, 400_000), (4.0, 450_000), (1.0, 75_000), (1.0, 75_000)],
        );
        f.v360 = (media_playlist(SegmentFormat::Fmp4, &s).unwrap(), s);
        assert!(check(&f).contains(&Violation::MisalignedSegmentCount {
            playlist: "360p/index.m3u8".into(),
            count: 4,
            reference: "720p/index.m3u8".into(),
            reference_count: 3,
        }));
    }

    #[test]
    fn bandwidth_must_be_within_ten_percent() {
        let mut f = good();
        // The master lists 360p (the start rung) first, then 720p.
        // Measured peak is 4_128_000: 9% low passes, 11% low fails.
        f.master.variants[1].bandwidth = 3_760_000;
        assert_eq!(check(&f), vec![]);
        f.master.variants[1].bandwidth = 3_670_000;
        f.master.variants[0].average_bandwidth = Some(2_000_000);
        assert_eq!(
            check(&f),
            vec![
                Violation::AverageBandwidthMismatch {
                    uri: "360p/index.m3u8".into(),
                    declared: 2_000_000,
                    measured: 928_000,
                },
                Violation::BandwidthMismatch {
                    uri: "720p/index.m3u8".into(),
                    declared: 3_670_000,
                    measured: 4_128_000
                },
            ]
        );
    }

    #[test]
    fn fmp4_needs_a_map_and_version_6() {
        let mut f = good();
        f.v720.0.segments[0].map = None;
        f.audio.0.version = Some(3);
        assert_eq!(
            check(&f),
            vec![
                Violation::MissingInitSegment {
                    playlist: "720p/index.m3u8".into()
                },
                Violation::VersionTooLow {
                    playlist: "audio/index.m3u8".into(),
                    version: 3,
                    required: 6
                },
            ]
        );
        // MPEG-TS needs neither.
        let mut f = good();
        let s = segs(
            "seg_",
            "ts",
            &[(4.0, 1_500_000), (4.0, 2_000_000), (2.0, 500_000)],
        );
        f.v720 = (media_playlist(SegmentFormat::Ts, &s).unwrap(), s);
        assert_eq!(check(&f), vec![]);
    }

    #[test]
    fn vod_rules() {
        let mut f = good();
        f.v720.0.end_list = false;
        f.audio.0.playlist_type = None;
        assert_eq!(
            check(&f),
            vec![
                Violation::MissingEndList {
                    playlist: "720p/index.m3u8".into()
                },
                Violation::NotVod {
                    playlist: "audio/index.m3u8".into()
                },
            ]
        );
        let ladder = ProducedLadder {
            master: &f.master,
            video: vec![ProducedRendition {
                uri: "720p/index.m3u8",
                playlist: &f.v720.0,
                segments: &f.v720.1,
            }],
            audio: None,
        };
        let live = ValidateOptions {
            vod: false,
            ..ValidateOptions::default()
        };
        let v = validate(&ladder, &live);
        assert!(!v
            .iter()
            .any(|v| matches!(v, Violation::MissingEndList { .. })));
    }

    #[test]
    fn master_consistency_and_measurements() {
        let mut f = good();
        f.master.independent_segments = false;
        f.master.alternatives.clear();
        // The 360p variant, listed first as the start rung.
        f.master.variants[0].uri = "240p/index.m3u8".into();
        f.v720.1.pop();
        f.v360.0.segments[0].duration = 3.5;
        let v = check(&f);
        for expected in [
            Violation::MissingIndependentSegments,
            Violation::MissingAudioGroup {
                uri: "720p/index.m3u8".into(),
                group: "audio".into(),
            },
            Violation::UnknownVariant {
                uri: "240p/index.m3u8".into(),
            },
            Violation::UnlistedRendition {
                uri: "360p/index.m3u8".into(),
            },
            Violation::SegmentCountMismatch {
                playlist: "720p/index.m3u8".into(),
                listed: 3,
                measured: 2,
            },
            Violation::DurationMismatch {
                playlist: "360p/index.m3u8".into(),
                index: 0,
                listed: 3.5,
                measured: 4.0,
            },
        ] {
            assert!(v.contains(&expected), "{expected} not in {v:#?}");
        }
        let mut f = good();
        f.audio.0.segments.clear();
        f.audio.1.clear();
        assert!(check(&f).contains(&Violation::EmptyPlaylist {
            playlist: "audio/index.m3u8".into()
        }));
    }
}
