//! Master and media playlists, written and parsed through m3u8-rs.
//!
//! Bandwidths are measured, not planned: [`measure`] takes the produced
//! segments (size and duration) and gives the peak segment bit rate as
//! RFC 8216 section 4.1 defines it (`BANDWIDTH`: the highest bit rate of any
//! run of consecutive segments lasting 0.5 to 1.5 target durations) and the
//! average over the whole rendition (`AVERAGE-BANDWIDTH`), both rounded up.
//! Windows rather than single segments matter at the end of a rendition: a
//! short last segment still opens with an IDR, so its own bit rate can be
//! several times the rendition's, and a `BANDWIDTH` that large makes
//! players avoid the rung. A variant that plays with a
//! separate audio group declares video plus audio, as RFC 8216 section
//! 4.3.4.2 asks for the sum of the renditions a player would fetch together.
//!
//! Every playlist is VOD: `#EXT-X-PLAYLIST-TYPE:VOD`, `#EXT-X-ENDLIST`,
//! `#EXT-X-INDEPENDENT-SEGMENTS` (each segment opens with a keyframe). fMP4
//! playlists carry `#EXT-X-MAP:URI="init.mp4"` and version 7; MPEG-TS
//! playlists version 3 (decimal `EXTINF`).
//!
//! `#EXT-X-TARGETDURATION` is the largest segment duration rounded to the
//! nearest integer, which is exactly what section 4.3.3.1 requires.
//!
//! Each rung can also have an I-frame playlist ([`iframe_playlist`]: the
//! byte range of the keyframe that opens each segment) listed in the master
//! as `#EXT-X-I-FRAME-STREAM-INF` ([`iframe_variant`]), for trick play and
//! thumbnails while seeking.

use m3u8_rs::{
    AlternativeMedia, AlternativeMediaType, ByteRange, Map, MasterPlaylist, MediaPlaylist,
    MediaPlaylistType, MediaSegment, Resolution, VariantStream,
};
use serde::{Deserialize, Serialize};
use videosync_core::catalog::Rendition;

use crate::ladder::{AudioPlan, Rung, SegmentFormat};
use crate::Error;

/// URI of the fMP4 initialisation segment, relative to its media playlist.
pub const INIT_SEGMENT_URI: &str = "init.mp4";

/// One produced segment, as the muxer measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// URI relative to its media playlist (`seg_00000.m4s`).
    pub uri: String,
    /// Duration in seconds.
    pub duration: f64,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Whether its first video frame is a keyframe (true for audio).
    pub starts_with_keyframe: bool,
    /// Bytes from the segment's start that hold its opening keyframe (the
    /// fragment box and the first sample in fMP4; the tables and the first
    /// PES in MPEG-TS), for the I-frame playlist; `None` when unknown.
    #[serde(default)]
    pub keyframe_bytes: Option<u64>,
}

impl SegmentInfo {
    /// A segment that starts with a keyframe.
    pub fn new(uri: impl Into<String>, duration: f64, size_bytes: u64) -> Self {
        SegmentInfo {
            uri: uri.into(),
            duration,
            size_bytes,
            starts_with_keyframe: true,
            keyframe_bytes: None,
        }
    }
}

/// Measured bit rates of one rendition, bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Peak segment bit rate (RFC 8216 section 4.1): the highest bit rate
    /// of any run of consecutive segments lasting 0.5 to 1.5 target
    /// durations; the whole rendition's when it is shorter than half a
    /// target duration.
    pub peak: u64,
    /// Total bits over total duration.
    pub average: u64,
}

fn check_segments(segments: &[SegmentInfo]) -> Result<(), Error> {
    if segments.is_empty() {
        return Err(Error::InvalidInput(
            "a rendition has no segments".to_owned(),
        ));
    }
    for s in segments {
        if !s.duration.is_finite() || s.duration <= 0.0 {
            return Err(Error::InvalidInput(format!(
                "segment {} has duration {}, which is not positive",
                s.uri, s.duration
            )));
        }
    }
    Ok(())
}

/// Measures peak and average bit rate from produced segments.
///
/// The peak is taken over every run of consecutive segments whose total
/// duration lies between 0.5 and 1.5 times the playlist's target duration
/// ([`target_duration`]), as RFC 8216 section 4.1 defines the peak segment
/// bit rate. A rendition shorter than half a target duration has no such
/// run; its peak is then its average, the bit rate of the only window
/// there is.
///
/// # Errors
///
/// [`Error::InvalidInput`] when there are no segments or one has a duration
/// that is not a positive number.
pub fn measure(segments: &[SegmentInfo]) -> Result<Bandwidth, Error> {
    check_segments(segments)?;
    let bits_per_s = |bytes: u64, seconds: f64| (bytes as f64 * 8.0 / seconds).ceil() as u64;
    let target = target_duration(segments) as f64;
    // A little slack so that a window of exactly half or one and a half
    // target durations, written with millisecond EXTINF, still counts.
    let (lo, hi) = (0.5 * target - 1e-6, 1.5 * target + 1e-6);
    let mut peak = None;
    for start in 0..segments.len() {
        let (mut bytes, mut seconds) = (0u64, 0.0f64);
        for s in &segments[start..] {
            bytes += s.size_bytes;
            seconds += s.duration;
            if seconds > hi {
                break;
            }
            if seconds >= lo {
                peak = peak.max(Some(bits_per_s(bytes, seconds)));
            }
        }
    }
    let bytes: u64 = segments.iter().map(|s| s.size_bytes).sum();
    let seconds: f64 = segments.iter().map(|s| s.duration).sum();
    let average = bits_per_s(bytes, seconds);
    Ok(Bandwidth {
        peak: peak.unwrap_or(average),
        average,
    })
}

/// `#EXT-X-TARGETDURATION`: the largest duration rounded to the nearest
/// integer (halves away from zero), at least 1.
pub fn target_duration(segments: &[SegmentInfo]) -> u64 {
    segments
        .iter()
        .map(|s| s.duration.round() as u64)
        .max()
        .unwrap_or(1)
        .max(1)
}

/// Playlist version for a segment format.
pub fn version(format: SegmentFormat) -> usize {
    match format {
        SegmentFormat::Fmp4 => 7,
        SegmentFormat::Ts => 3,
    }
}

/// A VOD media playlist over `segments`.
///
/// # Errors
///
/// As [`measure`].
pub fn media_playlist(
    format: SegmentFormat,
    segments: &[SegmentInfo],
) -> Result<MediaPlaylist, Error> {
    check_segments(segments)?;
    let mut out: Vec<MediaSegment> = segments
        .iter()
        .map(|s| MediaSegment {
            uri: s.uri.clone(),
            // m3u8-rs holds EXTINF as f32; millisecond precision is plenty.
            duration: ((s.duration * 1000.0).round() / 1000.0) as f32,
            ..MediaSegment::default()
        })
        .collect();
    if let (SegmentFormat::Fmp4, Some(first)) = (format, out.first_mut()) {
        first.map = Some(Map {
            uri: INIT_SEGMENT_URI.to_owned(),
            ..Map::default()
        });
    }
    Ok(MediaPlaylist {
        version: Some(version(format)),
        target_duration: target_duration(segments),
        segments: out,
        end_list: true,
        playlist_type: Some(MediaPlaylistType::Vod),
        independent_segments: true,
        ..MediaPlaylist::default()
    })
}

/// One video variant of the master playlist.
#[derive(Debug, Clone, Copy)]
pub struct VariantInput<'a> {
    /// URI of its media playlist relative to the master (`720p/index.m3u8`).
    pub uri: &'a str,
    /// The rung it encodes.
    pub rung: &'a Rung,
    /// Its produced segments.
    pub segments: &'a [SegmentInfo],
}

/// The audio rendition of the master playlist.
#[derive(Debug, Clone, Copy)]
pub struct AudioInput<'a> {
    /// URI of its media playlist relative to the master (`audio/index.m3u8`).
    pub uri: &'a str,
    /// The planned audio.
    pub plan: &'a AudioPlan,
    /// Its produced segments.
    pub segments: &'a [SegmentInfo],
}

/// The master playlist of a ladder.
///
/// Variants are listed from the largest down, except that the start
/// variant ([`start_variant`], a middle rung) comes first: players that
/// have no bandwidth estimate yet begin with the first variant listed, and
/// a middle rung starts quickly without starting blurry, then climbs.
///
/// # Errors
///
/// [`Error::InvalidInput`] when there are no variants, or as [`measure`] for
/// any rendition.
pub fn master_playlist(
    format: SegmentFormat,
    variants: &[VariantInput<'_>],
    audio: Option<&AudioInput<'_>>,
) -> Result<MasterPlaylist, Error> {
    if variants.is_empty() {
        return Err(Error::InvalidInput(
            "a master playlist needs at least one variant".to_owned(),
        ));
    }
    let mut alternatives = Vec::new();
    if let Some(a) = audio {
        alternatives.push(AlternativeMedia {
            media_type: AlternativeMediaType::Audio,
            uri: Some(a.uri.to_owned()),
            group_id: a.plan.group_id.clone(),
            name: "Audio".to_owned(),
            default: true,
            autoselect: true,
            channels: Some(a.plan.channels.to_string()),
            ..AlternativeMedia::default()
        });
    }
    let mut order: Vec<usize> = (0..variants.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(variants[i].rung.short_side()));
    let first = order.remove(start_variant(variants.len()));
    order.insert(0, first);
    let mut streams = Vec::with_capacity(variants.len());
    for v in order.into_iter().map(|i| &variants[i]) {
        let r = rendition(v, audio)?;
        streams.push(VariantStream {
            uri: v.uri.to_owned(),
            bandwidth: r.bandwidth,
            average_bandwidth: Some(r.average_bandwidth),
            codecs: Some(r.codecs),
            resolution: Some(Resolution {
                width: r.width.into(),
                height: r.height.into(),
            }),
            frame_rate: Some(r.frame_rate),
            audio: audio.map(|a| a.plan.group_id.clone()),
            ..VariantStream::default()
        });
    }
    Ok(MasterPlaylist {
        version: Some(version(format)),
        variants: streams,
        independent_segments: true,
        alternatives,
        ..MasterPlaylist::default()
    })
}

/// The master playlist of an audio-only ladder: one variant, the audio
/// rendition itself (`CODECS="mp4a.40.2"`, no `RESOLUTION`), as RFC 8216
/// section 4.3.4.2 allows for a variant without video.
///
/// # Errors
///
/// As [`measure`].
pub fn audio_only_master(
    format: SegmentFormat,
    audio: &AudioInput<'_>,
) -> Result<MasterPlaylist, Error> {
    let bw = measure(audio.segments)?;
    Ok(MasterPlaylist {
        version: Some(version(format)),
        variants: vec![VariantStream {
            uri: audio.uri.to_owned(),
            bandwidth: bw.peak,
            average_bandwidth: Some(bw.average),
            codecs: Some(audio.plan.codecs().to_owned()),
            ..VariantStream::default()
        }],
        independent_segments: true,
        ..MasterPlaylist::default()
    })
}

/// Which of `n` variants, counted from the largest, a master lists first:
/// the middle one, rounding towards the smaller (480p of 1080p, 720p, 480p
/// and 360p; 360p of 720p and 360p).
pub fn start_variant(n: usize) -> usize {
    n / 2
}

/// The catalog row of one variant: the numbers its `EXT-X-STREAM-INF`
/// declares (bandwidths measured, video plus audio), named after its rung,
/// with `playlist` set to the variant URI.
///
/// # Errors
///
/// As [`measure`], for the variant or the audio.
pub fn rendition(
    variant: &VariantInput<'_>,
    audio: Option<&AudioInput<'_>>,
) -> Result<Rendition, Error> {
    let bw = measure(variant.segments)?;
    let mut codecs = variant.rung.codecs();
    let (mut peak, mut average) = (bw.peak, bw.average);
    if let Some(a) = audio {
        let abw = measure(a.segments)?;
        codecs.push(',');
        codecs.push_str(a.plan.codecs());
        peak += abw.peak;
        average += abw.average;
    }
    Ok(Rendition {
        name: variant.rung.name.clone(),
        width: variant.rung.width,
        height: variant.rung.height,
        bandwidth: peak,
        average_bandwidth: average,
        codecs,
        // FRAME-RATE is written with at most three decimals.
        frame_rate: (variant.rung.frame_rate * 1000.0).round() / 1000.0,
        playlist: variant.uri.to_owned(),
    })
}

/// The I-frame playlist of a video rendition (`#EXT-X-I-FRAMES-ONLY`): one
/// entry per segment, the byte range of the keyframe it opens with, lasting
/// until the next one (every segment holds exactly one). Players use it for
/// trick play and for thumbnails while seeking. `None` when a segment's
/// keyframe range is unknown. Version 4 at least (byte ranges).
///
/// # Errors
///
/// As [`measure`].
pub fn iframe_playlist(
    format: SegmentFormat,
    segments: &[SegmentInfo],
) -> Result<Option<MediaPlaylist>, Error> {
    let mut media = media_playlist(format, segments)?;
    for (out, s) in media.segments.iter_mut().zip(segments) {
        let Some(length) = s.keyframe_bytes.filter(|&b| b > 0 && b <= s.size_bytes) else {
            return Ok(None);
        };
        out.byte_range = Some(ByteRange {
            length,
            offset: Some(0),
        });
    }
    media.version = Some(version(format).max(4));
    media.i_frames_only = true;
    Ok(Some(media))
}

/// The `#EXT-X-I-FRAME-STREAM-INF` of a rendition's I-frame playlist at
/// `uri`: its peak bit rate (the keyframes' bytes over the time each
/// stands for, by the same windows as [`measure`]), the video's codecs and
/// resolution.
///
/// # Errors
///
/// [`Error::InvalidInput`] when a keyframe range is unknown; as
/// [`measure`].
pub fn iframe_variant(
    uri: &str,
    rung: &Rung,
    segments: &[SegmentInfo],
) -> Result<VariantStream, Error> {
    let mut keyframes = Vec::with_capacity(segments.len());
    for s in segments {
        let bytes = s.keyframe_bytes.ok_or_else(|| {
            Error::InvalidInput(format!("segment {} has no keyframe byte range", s.uri))
        })?;
        keyframes.push(SegmentInfo::new(s.uri.clone(), s.duration, bytes));
    }
    let bw = measure(&keyframes)?;
    Ok(VariantStream {
        is_i_frame: true,
        uri: uri.to_owned(),
        bandwidth: bw.peak,
        average_bandwidth: Some(bw.average),
        codecs: Some(rung.codecs()),
        resolution: Some(Resolution {
            width: rung.width.into(),
            height: rung.height.into(),
        }),
        ..VariantStream::default()
    })
}

/// The text of a master playlist.
pub fn master_to_string(playlist: &MasterPlaylist) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail; a failure would only lose text.
    let _ = playlist.write_to(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The text of a media playlist.
pub fn media_to_string(playlist: &MediaPlaylist) -> String {
    let mut buf = Vec::new();
    let _ = playlist.write_to(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Parses master playlist text.
///
/// # Errors
///
/// [`Error::Parse`] when the text is not a master playlist.
pub fn parse_master(text: &str) -> Result<MasterPlaylist, Error> {
    m3u8_rs::parse_master_playlist_res(text.as_bytes())
        .map_err(|e| Error::Parse(format!("master playlist: {e:?}")))
}

/// Parses media playlist text.
///
/// # Errors
///
/// [`Error::Parse`] when the text is not a media playlist.
pub fn parse_media(text: &str) -> Result<MediaPlaylist, Error> {
    m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .map_err(|e| Error::Parse(format!("media playlist: {e:?}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ladder::{plan, LadderOptions, SourceVideo};

    pub(crate) fn segs(prefix: &str, ext: &str, sizes: &[(f64, u64)]) -> Vec<SegmentInfo> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &(d, b))| SegmentInfo::new(format!("{prefix}{i:05}.{ext}"), d, b))
            .collect()
    }

    pub(crate) fn fixture_ladder() -> crate::ladder::Ladder {
        let source = SourceVideo {
            width: 1280,
            height: 720,
            rotation: 0,
            frame_rate: 30.0,
            bit_rate: Some(6_000_000),
            audio_channels: Some(2),
            sample_rate: Some(48_000),
        };
        let opts = LadderOptions {
            rungs: vec![720, 360],
            ..LadderOptions::default()
        };
        plan(&source, &opts).unwrap()
    }

    pub(crate) fn video_720() -> Vec<SegmentInfo> {
        segs(
            "seg_",
            "m4s",
            &[(4.0, 1_500_000), (4.0, 2_000_000), (2.0, 500_000)],
        )
    }
    pub(crate) fn video_360() -> Vec<SegmentInfo> {
        segs(
            "seg_",
            "m4s",
            &[(4.0, 400_000), (4.0, 450_000), (2.0, 150_000)],
        )
    }
    pub(crate) fn audio_segs() -> Vec<SegmentInfo> {
        segs(
            "seg_",
            "m4s",
            &[(4.0, 64_000), (4.0, 64_000), (2.0, 32_000)],
        )
    }

    pub(crate) fn fixture_master() -> MasterPlaylist {
        let ladder = fixture_ladder();
        let audio_plan = ladder.audio.clone().unwrap();
        let (v720, v360, a) = (video_720(), video_360(), audio_segs());
        let variants = [
            VariantInput {
                uri: "720p/index.m3u8",
                rung: &ladder.rungs[0],
                segments: &v720,
            },
            VariantInput {
                uri: "360p/index.m3u8",
                rung: &ladder.rungs[1],
                segments: &v360,
            },
        ];
        let audio = AudioInput {
            uri: "audio/index.m3u8",
            plan: &audio_plan,
            segments: &a,
        };
        master_playlist(SegmentFormat::Fmp4, &variants, Some(&audio)).unwrap()
    }

    const MASTER: &str = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,URI=\"audio/index.m3u8\",GROUP-ID=\"audio\",NAME=\"Audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\"
#EXT-X-STREAM-INF:BANDWIDTH=1028000,AVERAGE-BANDWIDTH=928000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=30,AUDIO=\"audio\"
360p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=4128000,AVERAGE-BANDWIDTH=3328000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30,AUDIO=\"audio\"
720p/index.m3u8
";

    const MEDIA_FMP4: &str = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-TARGETDURATION:4
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI=\"init.mp4\"
#EXTINF:4,
seg_00000.m4s
#EXTINF:4,
seg_00001.m4s
#EXTINF:2,
seg_00002.m4s
#EXT-X-ENDLIST
";

    const MEDIA_TS: &str = "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-TARGETDURATION:5
#EXT-X-PLAYLIST-TYPE:VOD
#EXTINF:4.004,
seg_00000.ts
#EXTINF:4.504,
seg_00001.ts
#EXTINF:1.335,
seg_00002.ts
#EXT-X-ENDLIST
";

    #[test]
    fn master_snapshot() {
        assert_eq!(master_to_string(&fixture_master()), MASTER);
    }

    #[test]
    fn media_snapshots() {
        let pl = media_playlist(SegmentFormat::Fmp4, &video_720()).unwrap();
        assert_eq!(media_to_string(&pl), MEDIA_FMP4);
        let ts = segs("seg_", "ts", &[(4.004, 1), (4.504, 1), (1.3347, 1)]);
        let pl = media_playlist(SegmentFormat::Ts, &ts).unwrap();
        assert_eq!(media_to_string(&pl), MEDIA_TS);
    }

    #[test]
    fn round_trips_through_m3u8_rs() {
        let master = fixture_master();
        assert_eq!(parse_master(&master_to_string(&master)).unwrap(), master);
        assert_eq!(parse_master(MASTER).unwrap(), master);
        for text in [MEDIA_FMP4, MEDIA_TS] {
            let parsed = parse_media(text).unwrap();
            assert_eq!(media_to_string(&parsed), text);
        }
        let pl = media_playlist(SegmentFormat::Fmp4, &video_720()).unwrap();
        assert_eq!(parse_media(&media_to_string(&pl)).unwrap(), pl);
    }

    #[test]
    fn bandwidth_is_measured() {
        assert_eq!(
            measure(&video_720()).unwrap(),
            Bandwidth {
                peak: 4_000_000,
                average: 3_200_000
            }
        );
        // A rounding remainder goes up, never down.
        assert_eq!(measure(&segs("s", "ts", &[(3.0, 1)])).unwrap().peak, 3);
    }

    #[test]
    fn peak_is_over_windows_of_half_to_one_and_a_half_targets() {
        // Target 4 s. The 0.2 s last segment is mostly an IDR: alone it
        // runs at 20 Mbit/s, but it is shorter than half a target, so it
        // only counts with its neighbour (4.2 s, 2.86 Mbit/s).
        let short_tail = segs(
            "s",
            "m4s",
            &[(4.0, 1_000_000), (4.0, 1_000_000), (0.2, 500_000)],
        );
        let bw = measure(&short_tail).unwrap();
        assert_eq!(bw.peak, 2_857_143);
        assert_eq!(bw.average, 2_439_025);
        // Target 3 s (2.5 rounds up): each segment is a window, the pair
        // (5 s, past 4.5 s) is not.
        let pairs = segs("s", "m4s", &[(2.5, 1_000_000), (2.5, 250_000)]);
        assert_eq!(measure(&pairs).unwrap().peak, 3_200_000);
        // Target 1 s: 0.4 s segments count in runs of 2 (0.8 s) or 3
        // (1.2 s), never alone; the densest run holds the burst and one
        // quiet neighbour.
        let mut burst = vec![(0.4, 10_000); 10];
        burst[4] = (0.4, 200_000);
        assert_eq!(measure(&segs("s", "ts", &burst)).unwrap().peak, 2_100_000);
        // A rendition shorter than half a target duration: its average.
        let tiny = segs("s", "ts", &[(0.25, 30_000)]);
        assert_eq!(measure(&tiny).unwrap().peak, 960_000);
    }

    #[test]
    fn rendition_row_matches_the_master() {
        let ladder = fixture_ladder();
        let audio_plan = ladder.audio.clone().unwrap();
        let (v, a) = (video_720(), audio_segs());
        let variant = VariantInput {
            uri: "720p/index.m3u8",
            rung: &ladder.rungs[0],
            segments: &v,
        };
        let audio = AudioInput {
            uri: "audio/index.m3u8",
            plan: &audio_plan,
            segments: &a,
        };
        let row = rendition(&variant, Some(&audio)).unwrap();
        assert_eq!(
            row,
            Rendition {
                name: "720p".into(),
                width: 1280,
                height: 720,
                bandwidth: 4_128_000,
                average_bandwidth: 3_328_000,
                codecs: "avc1.64001f,mp4a.40.2".into(),
                frame_rate: 30.0,
                playlist: "720p/index.m3u8".into(),
            }
        );
    }

    #[test]
    fn a_middle_rung_is_listed_first() {
        let source = SourceVideo {
            width: 1920,
            height: 1080,
            rotation: 0,
            frame_rate: 30.0,
            bit_rate: None,
            audio_channels: None,
            sample_rate: None,
        };
        let ladder = plan(&source, &LadderOptions::default()).unwrap();
        let segments = video_720();
        let uris: Vec<String> = ladder
            .rungs
            .iter()
            .map(|r| format!("{}/index.m3u8", r.name))
            .collect();
        // Given in any order, listed start rung first, then largest down.
        let variants: Vec<VariantInput<'_>> = ladder
            .rungs
            .iter()
            .zip(&uris)
            .rev()
            .map(|(rung, uri)| VariantInput {
                uri,
                rung,
                segments: &segments,
            })
            .collect();
        let master = master_playlist(SegmentFormat::Fmp4, &variants, None).unwrap();
        let listed: Vec<&str> = master.variants.iter().map(|v| v.uri.as_str()).collect();
        assert_eq!(
            listed,
            [
                "480p/index.m3u8",
                "1080p/index.m3u8",
                "720p/index.m3u8",
                "360p/index.m3u8"
            ]
        );
        assert_eq!(start_variant(1), 0);
        assert_eq!(start_variant(3), 1);
    }

    #[test]
    fn audio_only_master_snapshot() {
        let plan = fixture_ladder().audio.unwrap();
        let a = audio_segs();
        let audio = AudioInput {
            uri: "audio/index.m3u8",
            plan: &plan,
            segments: &a,
        };
        let master = audio_only_master(SegmentFormat::Fmp4, &audio).unwrap();
        assert_eq!(
            master_to_string(&master),
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=128000,AVERAGE-BANDWIDTH=128000,CODECS=\"mp4a.40.2\"\n\
             audio/index.m3u8\n"
        );
    }

    #[test]
    fn iframe_playlist_and_variant() {
        let ladder = fixture_ladder();
        let mut v = video_720();
        for (s, k) in v.iter_mut().zip([60_000, 50_000, 40_000]) {
            s.keyframe_bytes = Some(k);
        }
        let pl = iframe_playlist(SegmentFormat::Fmp4, &v).unwrap().unwrap();
        assert_eq!(
            media_to_string(&pl),
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-TARGETDURATION:4\n\
             #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-I-FRAMES-ONLY\n#EXT-X-MAP:URI=\"init.mp4\"\n\
             #EXT-X-BYTERANGE:60000@0\n#EXTINF:4,\nseg_00000.m4s\n\
             #EXT-X-BYTERANGE:50000@0\n#EXTINF:4,\nseg_00001.m4s\n\
             #EXT-X-BYTERANGE:40000@0\n#EXTINF:2,\nseg_00002.m4s\n#EXT-X-ENDLIST\n"
        );
        assert_eq!(parse_media(&media_to_string(&pl)).unwrap(), pl);
        // MPEG-TS playlists go up to version 4 for the byte ranges.
        let ts = iframe_playlist(SegmentFormat::Ts, &v).unwrap().unwrap();
        assert_eq!(ts.version, Some(4));
        let var = iframe_variant("720p/iframes.m3u8", &ladder.rungs[0], &v).unwrap();
        // Peak over 0.5-1.5 target windows: the last keyframe, 40 kB for
        // 2 s; average 150 kB over 10 s.
        assert_eq!(var.bandwidth, 160_000);
        assert_eq!(var.average_bandwidth, Some(120_000));
        let mut master = fixture_master();
        master.variants.push(var);
        let text = master_to_string(&master);
        assert!(
            text.contains(
                "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=160000,AVERAGE-BANDWIDTH=120000,\
                 CODECS=\"avc1.64001f\",RESOLUTION=1280x720,URI=\"720p/iframes.m3u8\""
            ),
            "{text}"
        );
        // Unknown ranges: no I-frame playlist.
        v[1].keyframe_bytes = None;
        assert_eq!(iframe_playlist(SegmentFormat::Fmp4, &v).unwrap(), None);
        assert!(iframe_variant("x", &ladder.rungs[0], &v).is_err());
    }

    #[test]
    fn master_without_audio() {
        let ladder = fixture_ladder();
        let v = video_720();
        let variants = [VariantInput {
            uri: "720p/index.m3u8",
            rung: &ladder.rungs[0],
            segments: &v,
        }];
        let text = master_to_string(&master_playlist(SegmentFormat::Ts, &variants, None).unwrap());
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=4000000,AVERAGE-BANDWIDTH=3200000,CODECS=\"avc1.64001f\",RESOLUTION=1280x720,FRAME-RATE=30\n\
             720p/index.m3u8\n"
        );
    }

    #[test]
    fn target_duration_rounds_to_nearest() {
        assert_eq!(target_duration(&segs("s", "ts", &[(4.4, 1), (3.0, 1)])), 4);
        assert_eq!(target_duration(&segs("s", "ts", &[(4.5, 1)])), 5);
        assert_eq!(target_duration(&segs("s", "ts", &[(0.2, 1)])), 1);
    }

    #[test]
    fn bad_segments_are_errors() {
        assert!(matches!(
            media_playlist(SegmentFormat::Ts, &[]),
            Err(Error::InvalidInput(_))
        ));
        let nan = segs("s", "ts", &[(f64::NAN, 1)]);
        assert!(matches!(measure(&nan), Err(Error::InvalidInput(_))));
        assert!(matches!(
            master_playlist(SegmentFormat::Ts, &[], None),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            parse_media("not a playlist"),
            Err(Error::Parse(_))
        ));
    }
}
