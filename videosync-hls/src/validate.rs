//! Checks a produced ladder against the HLS rules players rely on.
//!
//! What is checked comes from the produced bytes, not from the code that
//! wrote them: the caller parses the playlists as written (m3u8-rs) and
//! reads every segment back through [`crate::inspect`], which re-derives
//! each segment's presentation start, duration, size and keyframes from its
//! boxes or packets. A muxer that miscounted a duration, a segment that
//! does not open on an IDR, a gap in the timeline or a `BANDWIDTH` that
//! the segments do not bear out all show here.
//!
//! [`validate`] never stops at the first problem: it returns every
//! [`Violation`] it finds, each with a message that names the playlist, the
//! segment and the numbers involved. The rules:
//!
//! - every media playlist has segments, and as many as were read back;
//! - every `EXTINF` duration, rounded to the nearest integer, is at most
//!   `#EXT-X-TARGETDURATION` (RFC 8216 section 4.3.3.1);
//! - `EXTINF` agrees with the segment's measured duration (to the next
//!   segment's start, or to the end of the last sample) within the
//!   tolerance, and each segment ends where the next begins (no gap, no
//!   overlap);
//! - every video segment starts with an IDR picture, and no frame lies
//!   further than [`ValidateOptions::max_keyframe_interval_s`] after the
//!   keyframe before it (Apple's authoring specification: 2 s);
//! - MPEG-TS continuity counters run on across a rendition's segments;
//! - every video rendition has the same segment count as the first and its
//!   segments start within the tolerance of the first's, so a player can
//!   switch at any boundary;
//! - each variant's `BANDWIDTH` is within 10% of the peak the segments
//!   bear out (RFC 8216 section 4.1: the densest run of segments lasting
//!   0.5 to 1.5 target durations, video plus its audio group), and
//!   `AVERAGE-BANDWIDTH` within 10% of the whole rendition's;
//! - an I-frame playlist lists the rendition's segments, each with a byte
//!   range from the segment's start that covers its opening keyframe;
//! - fMP4 playlists carry `#EXT-X-MAP`, at `#EXT-X-VERSION` 6 or more;
//! - VOD playlists say `#EXT-X-PLAYLIST-TYPE:VOD` and end in
//!   `#EXT-X-ENDLIST`;
//! - the master declares `#EXT-X-INDEPENDENT-SEGMENTS`, lists every
//!   rendition, references only renditions that exist and audio groups it
//!   declares.

use std::fmt;

use m3u8_rs::{AlternativeMediaType, MasterPlaylist, MediaPlaylist, MediaPlaylistType};

use crate::inspect::Measured;

/// One produced media playlist with its segments as read back.
#[derive(Debug, Clone, Copy)]
pub struct ProducedRendition<'a> {
    /// Its URI as the master lists it (`720p/index.m3u8`).
    pub uri: &'a str,
    /// The media playlist as written.
    pub playlist: &'a MediaPlaylist,
    /// Each segment as [`crate::inspect`] read it, in playlist order.
    pub segments: &'a [Measured],
    /// Its I-frame playlist, when the master lists one.
    pub iframes: Option<&'a MediaPlaylist>,
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
    /// two renditions, between `EXTINF` and a measured duration, and
    /// between one segment's end and the next one's start.
    pub time_tolerance_s: f64,
    /// Largest allowed relative difference between a declared and a measured
    /// bandwidth (0.10 is 10%).
    pub bandwidth_tolerance: f64,
    /// Whether the ladder is VOD (playlist type and ENDLIST required).
    pub vod: bool,
    /// Longest time a video frame may lie after the keyframe before it;
    /// `None` leaves keyframes inside segments unchecked.
    pub max_keyframe_interval_s: Option<f64>,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            time_tolerance_s: 0.05,
            bandwidth_tolerance: 0.10,
            vod: true,
            max_keyframe_interval_s: Some(2.0),
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
    /// A segment's timeline does not meet the next one's: it ends before
    /// (a gap) or after (an overlap) the next segment starts.
    TimelineGap {
        /// Its playlist.
        playlist: String,
        /// Segment index.
        index: usize,
        /// Where its last sample ends, seconds.
        end: f64,
        /// Where the next segment's first sample starts, seconds.
        next_start: f64,
    },
    /// A frame lies further after the keyframe before it than allowed.
    SparseKeyframes {
        /// Its playlist.
        playlist: String,
        /// Segment index.
        index: usize,
        /// The longest time from a keyframe to a later frame, seconds.
        seconds: f64,
        /// The allowed longest time, seconds.
        limit: f64,
    },
    /// MPEG-TS packets whose continuity counter breaks the run of their PID.
    ContinuityBreak {
        /// Its playlist.
        playlist: String,
        /// Segment index.
        index: usize,
        /// Packets out of order.
        packets: u32,
    },
    /// An I-frame playlist does not match its rendition, or a byte range
    /// misses the keyframe it stands for.
    IFrameRange {
        /// The rendition's playlist.
        playlist: String,
        /// Segment index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The length of a segment cannot be told from its bytes (a one-frame
    /// MPEG-TS segment that is the rendition's last is the only case).
    UnknownDuration {
        /// Its playlist.
        playlist: String,
        /// Segment index.
        index: usize,
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
            Violation::TimelineGap { playlist, index, end, next_start } => write!(
                f,
                "{playlist} segment {index} ends at {end:.3} s but segment {} starts at {next_start:.3} s",
                index + 1
            ),
            Violation::SparseKeyframes { playlist, index, seconds, limit } => write!(
                f,
                "{playlist} segment {index} has a frame {seconds:.3} s after its keyframe; at most {limit:.3} s is allowed"
            ),
            Violation::ContinuityBreak { playlist, index, packets } => write!(
                f,
                "{playlist} segment {index} has {packets} MPEG-TS packets whose continuity counter breaks the run"
            ),
            Violation::IFrameRange { playlist, index, reason } => {
                write!(f, "{playlist} I-frame entry {index}: {reason}")
            }
            Violation::UnknownDuration { playlist, index } => write!(
                f,
                "{playlist} segment {index}: its duration cannot be told from its bytes"
            ),
            Violation::MissingEndList { playlist } => write!(f, "{playlist} lacks #EXT-X-ENDLIST"),
        }
    }
}

fn off_by_more_than(declared: u64, measured: u64, tolerance: f64) -> bool {
    (declared as f64 - measured as f64).abs() > tolerance * measured as f64
}

/// Each segment's length on the timeline: to the next segment's start,
/// or for the last, to the end of its own last sample.
fn lengths(segments: &[Measured]) -> Vec<Option<f64>> {
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| match segments.get(i + 1) {
            Some(next) => Some(next.start - s.start),
            None => s.duration,
        })
        .collect()
}

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
    let lengths = lengths(r.segments);
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
        match lengths.get(index) {
            Some(Some(measured)) if (duration - measured).abs() > opts.time_tolerance_s => {
                out.push(Violation::DurationMismatch {
                    playlist: name(),
                    index,
                    listed: duration,
                    measured: *measured,
                });
            }
            Some(None) => out.push(Violation::UnknownDuration {
                playlist: name(),
                index,
            }),
            _ => {}
        }
    }
    for (index, pair) in r.segments.windows(2).enumerate() {
        let Some(duration) = pair[0].duration else {
            continue;
        };
        let end = pair[0].start + duration;
        if (end - pair[1].start).abs() > opts.time_tolerance_s {
            out.push(Violation::TimelineGap {
                playlist: name(),
                index,
                end,
                next_start: pair[1].start,
            });
        }
    }
    for (index, m) in r.segments.iter().enumerate() {
        if m.continuity_errors > 0 {
            out.push(Violation::ContinuityBreak {
                playlist: name(),
                index,
                packets: m.continuity_errors,
            });
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
            if let Some(limit) = opts.max_keyframe_interval_s {
                if m.longest_without_keyframe > limit {
                    out.push(Violation::SparseKeyframes {
                        playlist: name(),
                        index,
                        seconds: m.longest_without_keyframe,
                        limit,
                    });
                }
            }
        }
        if let Some(iframes) = r.iframes {
            check_iframes(r, iframes, out);
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

fn check_iframes(r: &ProducedRendition<'_>, iframes: &MediaPlaylist, out: &mut Vec<Violation>) {
    let mut fail = |index: usize, reason: String| {
        out.push(Violation::IFrameRange {
            playlist: r.uri.to_owned(),
            index,
            reason,
        });
    };
    if !iframes.i_frames_only {
        fail(0, "the playlist lacks #EXT-X-I-FRAMES-ONLY".to_owned());
    }
    if iframes.segments.len() != r.playlist.segments.len() {
        fail(
            0,
            format!(
                "{} entries for {} segments",
                iframes.segments.len(),
                r.playlist.segments.len()
            ),
        );
    }
    for (index, ((entry, seg), m)) in iframes
        .segments
        .iter()
        .zip(&r.playlist.segments)
        .zip(r.segments)
        .enumerate()
    {
        if entry.uri != seg.uri {
            fail(
                index,
                format!("names {}, the segment is {}", entry.uri, seg.uri),
            );
        }
        let Some(range) = &entry.byte_range else {
            fail(index, "no #EXT-X-BYTERANGE".to_owned());
            continue;
        };
        let offset = range.offset.unwrap_or(0);
        let needed = m.keyframe_end.unwrap_or(0);
        if offset != 0 || range.length < needed || range.length > m.size_bytes {
            fail(
                index,
                format!(
                    "range {}@{offset} does not cover the keyframe's first {needed} bytes of {}",
                    range.length, m.size_bytes
                ),
            );
        }
    }
}

/// Peak and average bit rate the segments bear out: the peak over every
/// run of consecutive segments lasting 0.5 to 1.5 target durations (the
/// whole rendition's when none does), the average over all of them.
fn borne_out(segments: &[Measured], target: u64) -> Option<(u64, u64)> {
    let lengths: Vec<f64> = lengths(segments).into_iter().collect::<Option<_>>()?;
    let total: f64 = lengths.iter().sum();
    if segments.is_empty() || total <= 0.0 {
        return None;
    }
    let rate = |bytes: u64, seconds: f64| (bytes as f64 * 8.0 / seconds).ceil() as u64;
    let bytes: u64 = segments.iter().map(|s| s.size_bytes).sum();
    let (lo, hi) = (0.5 * target as f64 - 1e-3, 1.5 * target as f64 + 1e-3);
    // Every window, by the segment it ends with, grown backwards.
    let mut peak = None;
    for last in 0..segments.len() {
        let (mut b, mut t) = (0u64, 0.0f64);
        for first in (0..=last).rev() {
            b += segments[first].size_bytes;
            t += lengths[first];
            if t > hi {
                break;
            }
            if t >= lo {
                peak = peak.max(Some(rate(b, t)));
            }
        }
    }
    let average = rate(bytes, total);
    Some((peak.unwrap_or(average), average))
}

/// Every rule `ladder` breaks; empty when it is valid.
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
        for r in rest {
            if r.segments.len() != reference.segments.len() {
                out.push(Violation::MisalignedSegmentCount {
                    playlist: r.uri.to_owned(),
                    count: r.segments.len(),
                    reference: reference.uri.to_owned(),
                    reference_count: reference.segments.len(),
                });
            }
            for (index, (s, reference_s)) in r.segments.iter().zip(reference.segments).enumerate() {
                if (s.start - reference_s.start).abs() > opts.time_tolerance_s {
                    out.push(Violation::MisalignedBoundary {
                        playlist: r.uri.to_owned(),
                        index,
                        start: s.start,
                        reference: reference.uri.to_owned(),
                        reference_start: reference_s.start,
                    });
                }
            }
        }
    }

    let audio_bw = ladder
        .audio
        .as_ref()
        .and_then(|a| borne_out(a.segments, a.playlist.target_duration));
    for v in master.variants.iter().filter(|v| !v.is_i_frame) {
        let Some(r) = ladder.video.iter().find(|r| r.uri == v.uri) else {
            continue;
        };
        // Empty renditions and unknown durations are reported above.
        let Some((mut peak, mut average)) = borne_out(r.segments, r.playlist.target_duration)
        else {
            continue;
        };
        if let (Some(_), Some((a_peak, a_average))) = (&v.audio, audio_bw) {
            peak += a_peak;
            average += a_average;
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
    use crate::playlist::tests::{audio_segs, fixture_master, segs, video_360, video_720};
    use crate::playlist::{media_playlist, SegmentInfo};

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

    /// Segments laid end to end from 10 s, as the inspector would read
    /// them back.
    fn timeline(segments: &[SegmentInfo]) -> Vec<Measured> {
        let mut at = 10.0;
        segments
            .iter()
            .map(|s| {
                let mut m = Measured::new(at, s.duration, s.size_bytes);
                m.starts_with_keyframe = s.starts_with_keyframe;
                at += s.duration;
                m
            })
            .collect()
    }

    fn check(f: &Fixture) -> Vec<Violation> {
        let (m720, m360, audio) = (
            timeline(&f.v720.1),
            timeline(&f.v360.1),
            timeline(&f.audio.1),
        );
        check_measured(f, &m720, &m360, &audio)
    }

    fn check_measured(
        f: &Fixture,
        m720: &[Measured],
        m360: &[Measured],
        audio: &[Measured],
    ) -> Vec<Violation> {
        let ladder = ProducedLadder {
            master: &f.master,
            video: vec![
                ProducedRendition {
                    uri: "720p/index.m3u8",
                    playlist: &f.v720.0,
                    segments: m720,
                    iframes: None,
                },
                ProducedRendition {
                    uri: "360p/index.m3u8",
                    playlist: &f.v360.0,
                    segments: m360,
                    iframes: None,
                },
            ],
            audio: Some(ProducedRendition {
                uri: "audio/index.m3u8",
                playlist: &f.audio.0,
                segments: audio,
                iframes: None,
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
            "360p/index.m3u8 segment 1 starts at 13.500 s but 720p/index.m3u8 segment 1 at 14.000 s"
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
        let m720 = timeline(&f.v720.1);
        let ladder = ProducedLadder {
            master: &f.master,
            video: vec![ProducedRendition {
                uri: "720p/index.m3u8",
                playlist: &f.v720.0,
                segments: &m720,
                iframes: None,
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

    #[test]
    fn what_the_bytes_say_wins_over_what_the_playlist_says() {
        let f = good();
        // The muxer wrote 4 s, the bytes hold 3.9 s and then a gap of 0.1 s.
        let mut m720 = timeline(&f.v720.1);
        m720[0].duration = Some(3.9);
        let (m360, audio) = (timeline(&f.v360.1), timeline(&f.audio.1));
        assert_eq!(
            check_measured(&f, &m720, &m360, &audio),
            vec![Violation::TimelineGap {
                playlist: "720p/index.m3u8".into(),
                index: 0,
                end: 13.9,
                next_start: 14.0,
            }]
        );
        // The second segment starts late: the first is longer than listed
        // and the rungs no longer meet.
        let mut m720 = timeline(&f.v720.1);
        m720[1].start = 14.2;
        let v = check_measured(&f, &m720, &m360, &audio);
        assert!(
            v.iter().any(|x| matches!(x, Violation::DurationMismatch { index: 0, measured, .. } if (measured - 4.2).abs() < 1e-9)),
            "{v:#?}"
        );
        assert!(v.contains(&Violation::MisalignedBoundary {
            playlist: "360p/index.m3u8".into(),
            index: 1,
            start: 14.0,
            reference: "720p/index.m3u8".into(),
            reference_start: 14.2,
        }));
    }

    #[test]
    fn keyframes_continuity_and_unknown_lengths() {
        let f = good();
        let (m360, audio) = (timeline(&f.v360.1), timeline(&f.audio.1));
        let mut m720 = timeline(&f.v720.1);
        m720[1].longest_without_keyframe = 3.967;
        m720[2].continuity_errors = 2;
        m720[2].duration = None;
        let v = check_measured(&f, &m720, &m360, &audio);
        assert_eq!(
            v,
            vec![
                Violation::UnknownDuration {
                    playlist: "720p/index.m3u8".into(),
                    index: 2
                },
                Violation::ContinuityBreak {
                    playlist: "720p/index.m3u8".into(),
                    index: 2,
                    packets: 2
                },
                Violation::SparseKeyframes {
                    playlist: "720p/index.m3u8".into(),
                    index: 1,
                    seconds: 3.967,
                    limit: 2.0
                },
            ]
        );
        assert_eq!(
            v[2].to_string(),
            "720p/index.m3u8 segment 1 has a frame 3.967 s after its keyframe; at most 2.000 s is allowed"
        );
    }

    #[test]
    fn iframe_ranges_must_cover_the_keyframe() {
        use crate::playlist::iframe_playlist;
        let mut f = good();
        for s in &mut f.v720.1 {
            s.keyframe_bytes = Some(50_000);
        }
        let iframes = iframe_playlist(SegmentFormat::Fmp4, &f.v720.1)
            .unwrap()
            .unwrap();
        let mut m720 = timeline(&f.v720.1);
        for m in &mut m720 {
            m.keyframe_end = Some(50_000);
        }
        m720[1].keyframe_end = Some(60_000);
        let m360 = timeline(&f.v360.1);
        let ladder = ProducedLadder {
            master: &f.master,
            video: vec![
                ProducedRendition {
                    uri: "720p/index.m3u8",
                    playlist: &f.v720.0,
                    segments: &m720,
                    iframes: Some(&iframes),
                },
                ProducedRendition {
                    uri: "360p/index.m3u8",
                    playlist: &f.v360.0,
                    segments: &m360,
                    iframes: None,
                },
            ],
            audio: None,
        };
        let v: Vec<String> = validate(&ladder, &ValidateOptions::default())
            .iter()
            .filter(|v| matches!(v, Violation::IFrameRange { .. }))
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            v,
            ["720p/index.m3u8 I-frame entry 1: range 50000@0 does not cover the keyframe's first 60000 bytes of 2000000"]
        );
    }

    #[test]
    fn a_short_last_segment_does_not_set_the_peak() {
        // 4 s segments of 2 Mbit/s and a last one of 0.5 s holding a
        // 400 KB keyframe (6.4 Mbit/s on its own): windows of 2 to 6 s
        // never hold it alone; the densest is the last two (4.5 s).
        let sizes = [(4.0, 1_000_000), (4.0, 1_000_000), (0.5, 400_000)];
        let m: Vec<Measured> = timeline(&segs("s", "m4s", &sizes));
        let (peak, average) = borne_out(&m, 4).unwrap();
        assert_eq!(peak, (1_400_000.0f64 * 8.0 / 4.5).ceil() as u64);
        assert_eq!(average, (2_400_000.0f64 * 8.0 / 8.5).ceil() as u64);
    }
}
