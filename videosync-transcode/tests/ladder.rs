//! The ladder pipeline end to end, on media the `ffmpeg` CLI generates
//! during the test: every rung checked with ffprobe (codec, size, keyframe
//! at every segment start, durations), the playlists read back through
//! m3u8-rs and validated, and bad input refused with nothing left behind.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use videosync_core::store::fs::FsStore;
use videosync_core::{ObjectStore, ObjectStoreExt};
use videosync_hls::inspect::{Measured, RenditionInspector};
use videosync_hls::ladder::{LadderOptions, SegmentFormat};
use videosync_hls::playlist::{parse_master, parse_media};
use videosync_hls::validate::{
    validate, ProducedLadder, ProducedRendition, ValidateOptions, Violation,
};
use videosync_transcode::{
    nvenc_available, transcode, CancelToken, Destination, EncoderChoice, Manifest, Progress,
    ProgressFn, Stage, TranscodeError, TranscodeOptions, VideoEncoder, TIMELINE_OFFSET_S,
};

mod common;
use common::{ffmpeg, has_encoder, strs, video_src};

struct Out {
    _dir: tempfile::TempDir,
    root: PathBuf,
    dest: Destination,
}

async fn out_dir() -> Out {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    let store = FsStore::open_dirs(&root, dir.path().join("staging"))
        .await
        .unwrap();
    Out {
        root,
        dest: Destination::new(Arc::new(store), None),
        _dir: dir,
    }
}

fn opts(rungs: &[u32], seg: u32, format: SegmentFormat) -> TranscodeOptions {
    TranscodeOptions {
        ladder: LadderOptions {
            rungs: rungs.to_vec(),
            segment_seconds: seg,
            format,
        },
        preset: "ultrafast".to_owned(),
        encoder: EncoderChoice::Software,
        timeout: Some(Duration::from_secs(120)),
        ..TranscodeOptions::default()
    }
}

fn ffprobe_json(args: &[&str], file: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(file)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe {args:?} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One rendition joined into a single file (init + segments for fMP4).
fn joined(root: &Path, dir: &str, format: SegmentFormat, segments: &[String]) -> PathBuf {
    let mut bytes = Vec::new();
    if format == SegmentFormat::Fmp4 {
        bytes.extend(std::fs::read(root.join(dir).join("init.mp4")).unwrap());
    }
    for s in segments {
        bytes.extend(std::fs::read(root.join(dir).join(s)).unwrap());
    }
    let ext = if format == SegmentFormat::Fmp4 {
        "mp4"
    } else {
        "ts"
    };
    let path = root.join(format!("{dir}-joined.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Reads the segments of the media playlist at `uri` back from disk, as
/// the validator needs them: from their bytes, not from the playlist.
fn read_back(
    root: &Path,
    uri: &str,
    format: SegmentFormat,
    media: &m3u8_rs::MediaPlaylist,
) -> Vec<Measured> {
    let dir = root.join(Path::new(uri).parent().unwrap());
    let mut inspector = match format {
        SegmentFormat::Fmp4 => {
            RenditionInspector::fmp4(&std::fs::read(dir.join("init.mp4")).unwrap()).unwrap()
        }
        SegmentFormat::Ts => RenditionInspector::ts(),
    };
    media
        .segments
        .iter()
        .map(|s| {
            let bytes = std::fs::read(dir.join(&s.uri)).unwrap();
            inspector
                .segment(&bytes)
                .unwrap_or_else(|e| panic!("{uri} {}: {e}", s.uri))
        })
        .collect()
}

/// The master playlist under `root` and its media playlists with their
/// URIs: the video variants in the master's order, then the audio.
fn playlists_of(
    root: &Path,
) -> (
    m3u8_rs::MasterPlaylist,
    Vec<(String, m3u8_rs::MediaPlaylist)>,
) {
    let master_text = std::fs::read_to_string(root.join("master.m3u8")).unwrap();
    let master = parse_master(&master_text).unwrap();
    let medias = master
        .variants
        .iter()
        .filter(|v| !v.is_i_frame)
        .map(|v| v.uri.clone())
        .chain(master.alternatives.iter().filter_map(|a| a.uri.clone()))
        .map(|uri| {
            let text = std::fs::read_to_string(root.join(&uri)).unwrap();
            (uri, parse_media(&text).unwrap())
        })
        .collect();
    (master, medias)
}

/// Every rule the ladder under `root` breaks, judged from its files as a
/// player would fetch them (playlists as written, segments read back).
fn violations_of(root: &Path, format: SegmentFormat) -> Vec<Violation> {
    let (master, playlists) = playlists_of(root);
    let medias: Vec<(String, m3u8_rs::MediaPlaylist, Vec<Measured>)> = playlists
        .into_iter()
        .map(|(uri, media)| {
            let measured = read_back(root, &uri, format, &media);
            (uri, media, measured)
        })
        .collect();
    let n_video = master.variants.iter().filter(|v| !v.is_i_frame).count();
    let iframes: Vec<Option<m3u8_rs::MediaPlaylist>> = medias[..n_video]
        .iter()
        .map(|(uri, _, _)| {
            let dir = Path::new(uri).parent().unwrap();
            master
                .variants
                .iter()
                .find(|v| v.is_i_frame && Path::new(&v.uri).parent() == Some(dir))
                .map(|v| parse_media(&std::fs::read_to_string(root.join(&v.uri)).unwrap()).unwrap())
        })
        .collect();
    let produced = ProducedLadder {
        master: &master,
        video: medias[..n_video]
            .iter()
            .zip(&iframes)
            .map(|((uri, playlist, segments), iframes)| ProducedRendition {
                uri,
                playlist,
                segments,
                iframes: iframes.as_ref(),
            })
            .collect(),
        audio: medias
            .get(n_video)
            .map(|(uri, playlist, segments)| ProducedRendition {
                uri,
                playlist,
                segments,
                iframes: None,
            }),
    };
    validate(&produced, &ValidateOptions::default())
}

/// Reads the ladder back from disk and checks it the way a player would
/// see it; returns the master text.
fn check_ladder(root: &Path, manifest: &Manifest) -> String {
    let format = manifest.format;
    let violations = violations_of(root, format);
    assert!(violations.is_empty(), "{violations:?}");
    let master_text = std::fs::read_to_string(root.join("master.m3u8")).unwrap();
    let (master, medias) = playlists_of(root);
    let n_video = master.variants.iter().filter(|v| !v.is_i_frame).count();
    check_iframes(root, format, &master, n_video);
    assert_eq!(manifest.renditions.len(), n_video);

    // Every rung: codec, size, a keyframe exactly at every segment start
    // and nowhere else, the frame count the segments add up to.
    let mut counts = Vec::new();
    for (uri, media) in &medias[..n_video] {
        // The master lists a middle rung first; the manifest goes largest
        // first: match them by playlist.
        let r = manifest
            .renditions
            .iter()
            .find(|r| &r.rendition.playlist == uri)
            .unwrap_or_else(|| panic!("{uri} is not in the manifest"));
        let dir = Path::new(uri).parent().unwrap().to_str().unwrap();
        let names: Vec<String> = media.segments.iter().map(|s| s.uri.clone()).collect();
        let file = joined(root, dir, format, &names);
        let info = ffprobe_json(
            &[
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=codec_name,profile,level,width,height,pix_fmt,color_space,color_primaries,color_transfer,color_range:frame=pts_time,key_frame",
            ],
            &file,
        );
        let stream = &info["streams"][0];
        assert_eq!(stream["codec_name"], "h264", "{uri}");
        assert_eq!(stream["pix_fmt"], "yuv420p", "{uri}");
        // SDR BT.709, limited range, declared in the stream.
        for key in ["color_space", "color_primaries", "color_transfer"] {
            assert_eq!(stream[key], "bt709", "{uri}: {key}");
        }
        assert_eq!(stream["color_range"], "tv", "{uri}");
        // The stream fits what CODECS declares: High at the rung's level.
        // x264's `profile` is a ceiling: the tests' `ultrafast` preset
        // switches High's tools off and writes Constrained Baseline, which
        // every High decoder plays.
        let profile = stream["profile"].as_str().unwrap();
        assert!(
            ["High", "Main", "Constrained Baseline"].contains(&profile),
            "{uri}: {profile}"
        );
        let declared_level = u64::from_str_radix(&r.rendition.codecs[9..11], 16).unwrap();
        assert_eq!(stream["level"].as_u64(), Some(declared_level), "{uri}");
        assert_eq!(
            stream["width"].as_u64().unwrap(),
            u64::from(r.rendition.width)
        );
        assert_eq!(
            stream["height"].as_u64().unwrap(),
            u64::from(r.rendition.height)
        );
        let frames = info["frames"].as_array().unwrap();
        let keys: Vec<f64> = frames
            .iter()
            .filter(|f| f["key_frame"] == 1)
            .map(|f| f["pts_time"].as_str().unwrap().parse::<f64>().unwrap())
            .collect();
        let mut start = TIMELINE_OFFSET_S as f64;
        let mut expected = Vec::new();
        for s in &media.segments {
            expected.push(start);
            start += f64::from(s.duration);
        }
        // A keyframe at every segment start, and never more than 2 s
        // without one (Apple), so longer segments have some inside.
        for e in &expected {
            assert!(
                keys.iter().any(|k| (k - e).abs() < 0.002),
                "{uri}: keyframes {keys:?}, segment starts {expected:?}"
            );
        }
        let last = frames
            .last()
            .and_then(|f| f["pts_time"].as_str())
            .map_or(0.0, |t| t.parse::<f64>().unwrap());
        for pair in keys
            .windows(2)
            .chain([[keys[keys.len() - 1], last].as_slice()])
        {
            assert!(
                pair[1] - pair[0] <= 2.0 + 0.002,
                "{uri}: keyframes {keys:?} more than 2 s apart"
            );
        }
        counts.push(frames.len());
        // MPEG-TS segments must each start with PAT/PMT and decode alone.
        if format == SegmentFormat::Ts {
            let first = root.join(dir).join(&names[0]);
            let alone = ffprobe_json(&["-show_entries", "stream=codec_name"], &first);
            assert_eq!(alone["streams"][0]["codec_name"], "h264");
        }
    }
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    if let Some((uri, media)) = medias.get(n_video) {
        // The audio's few milliseconds past the video's end join its last
        // segment; no audio segment after the first is a sliver.
        for (i, seg) in media.segments.iter().enumerate().skip(1) {
            assert!(seg.duration >= 0.249, "{uri} segment {i}: {}", seg.duration);
        }
        let dir = Path::new(uri).parent().unwrap().to_str().unwrap();
        let names: Vec<String> = media.segments.iter().map(|s| s.uri.clone()).collect();
        let file = joined(root, dir, format, &names);
        let info = ffprobe_json(
            &["-show_entries", "stream=codec_name,channels,sample_rate"],
            &file,
        );
        assert_eq!(info["streams"][0]["codec_name"], "aac");
        assert_eq!(
            info["streams"][0]["channels"].as_u64(),
            manifest.audio.as_ref().map(|a| u64::from(a.channels))
        );
    }
    master_text
}

/// Every rung has an I-frame playlist, listed in the master with its
/// rung's codecs and size, whose byte ranges are exactly the keyframes:
/// joined (after the init segment), they decode to one key frame per
/// segment, each at its segment's start.
fn check_iframes(
    root: &Path,
    format: SegmentFormat,
    master: &m3u8_rs::MasterPlaylist,
    n_video: usize,
) {
    let iframes: Vec<&m3u8_rs::VariantStream> =
        master.variants.iter().filter(|v| v.is_i_frame).collect();
    assert_eq!(iframes.len(), n_video, "one I-frame playlist per rung");
    for v in iframes {
        let dir = Path::new(&v.uri).parent().unwrap();
        let rung = master
            .variants
            .iter()
            .find(|r| !r.is_i_frame && Path::new(&r.uri).parent() == Some(dir))
            .unwrap();
        assert_eq!(v.resolution, rung.resolution, "{}", v.uri);
        assert_eq!(
            v.codecs.as_deref(),
            rung.codecs.as_deref().map(|c| c.split(',').next().unwrap()),
            "{}",
            v.uri
        );
        let pl = parse_media(&std::fs::read_to_string(root.join(&v.uri)).unwrap()).unwrap();
        assert!(pl.i_frames_only, "{}", v.uri);
        let init = if format == SegmentFormat::Fmp4 {
            std::fs::read(root.join(dir).join("init.mp4")).unwrap()
        } else {
            Vec::new()
        };
        let ext = if format == SegmentFormat::Fmp4 {
            "mp4"
        } else {
            "ts"
        };
        let mut start = TIMELINE_OFFSET_S as f64;
        // Each range on its own (a player fetches one at a time; an fMP4
        // range ends inside its mdat, so ranges do not join).
        for seg in &pl.segments {
            let range = seg.byte_range.as_ref().expect("a byte range");
            let data = std::fs::read(root.join(dir).join(&seg.uri)).unwrap();
            let from = usize::try_from(range.offset.unwrap_or(0)).unwrap();
            let to = from + usize::try_from(range.length).unwrap();
            // Within the segment; exactly one frame in it is checked below.
            assert!(
                to <= data.len(),
                "{}: the range runs past the segment",
                seg.uri
            );
            let mut bytes = init.clone();
            bytes.extend_from_slice(&data[from..to]);
            let file = root.join(format!("{}-iframes.{ext}", dir.display()));
            std::fs::write(&file, bytes).unwrap();
            let info = ffprobe_json(
                &[
                    "-select_streams",
                    "v:0",
                    "-show_entries",
                    "frame=pts_time,key_frame",
                ],
                &file,
            );
            let frames = info["frames"].as_array().unwrap();
            assert_eq!(frames.len(), 1, "{} {}: {frames:?}", v.uri, seg.uri);
            assert_eq!(frames[0]["key_frame"], 1, "{} {}", v.uri, seg.uri);
            let pts: f64 = frames[0]["pts_time"].as_str().unwrap().parse().unwrap();
            assert!((pts - start).abs() < 0.002, "{}: {pts} vs {start}", v.uri);
            start += f64::from(seg.duration);
        }
    }
}

/// Every object under the output root, relative.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn clip(dir: &Path, name: &str, size: &str, rate: &str, secs: &str, extra: &[&str]) -> PathBuf {
    let mut args = video_src(size, rate, secs);
    args.extend(
        [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            secs,
        ]
        .map(String::from),
    );
    let mut all = strs(&args);
    all.extend_from_slice(extra);
    ffmpeg(dir, name, &all)
}

fn mask_bandwidths(text: &str) -> String {
    text.split(',')
        .map(|part| match part.split_once("BANDWIDTH=") {
            Some((head, digits)) if digits.chars().all(|c| c.is_ascii_digit()) => {
                format!("{head}BANDWIDTH=N")
            }
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Compares with `tests/snapshots/NAME`; `VIDEOSYNC_BLESS=1` rewrites it.
fn snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var("VIDEOSYNC_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: bless with VIDEOSYNC_BLESS=1", path.display()));
    assert_eq!(actual, expected, "snapshot {name} differs");
}

#[tokio::test]
async fn fmp4_ladder_with_audio_images_and_snapshots() {
    let media = tempfile::tempdir().unwrap();
    let src = clip(
        media.path(),
        "clip.mp4",
        "854x480",
        "30",
        "5",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ac",
            "2",
        ],
    );
    let out = out_dir().await;
    let events: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = events.clone();
    let progress: ProgressFn = Arc::new(move |p: &Progress| sink.lock().unwrap().push(p.clone()));
    let manifest = transcode(
        &src,
        &out.dest,
        &opts(&[1080, 720, 480, 360], 2, SegmentFormat::Fmp4),
        Some(progress),
        &CancelToken::new(),
    )
    .await
    .unwrap();
    let names: Vec<&str> = manifest
        .renditions
        .iter()
        .map(|r| r.rendition.name.as_str())
        .collect();
    assert_eq!(names, ["480p", "360p"], "never upscaled");
    assert_eq!(manifest.encoder, VideoEncoder::Libx264);
    assert!(
        (manifest.duration_s - 5.0).abs() < 0.05,
        "{}",
        manifest.duration_s
    );
    assert_eq!(manifest.renditions[0].segments, 3);
    let master = check_ladder(&out.root, &manifest);

    // The images and the manifest.
    let files = listing(&out.root);
    for f in [
        "poster.jpg",
        "storyboard/sheet_000.jpg",
        "storyboard/storyboard.vtt",
        "manifest.json",
        "480p/init.mp4",
        "audio/init.mp4",
    ] {
        assert!(files.contains(&f.to_owned()), "{f} missing from {files:?}");
    }
    let poster = ffprobe_json(
        &["-show_entries", "stream=codec_name,width,height"],
        &out.root.join("poster.jpg"),
    );
    assert_eq!(poster["streams"][0]["codec_name"], "mjpeg");
    assert_eq!(poster["streams"][0]["width"], 854);
    let vtt = std::fs::read_to_string(out.root.join("storyboard/storyboard.vtt")).unwrap();
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    assert_eq!(vtt.matches("#xywh=").count(), 5, "{vtt}");
    let stored: Manifest =
        serde_json::from_slice(&std::fs::read(out.root.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(stored, manifest);

    // Progress: encoding reports that only go up, then finishing and done.
    let ev = events.lock().unwrap().clone();
    assert_eq!(ev.first().map(|p| p.stage), Some(Stage::Probing));
    assert_eq!(ev.last().map(|p| p.stage), Some(Stage::Done));
    let enc: Vec<f64> = ev
        .iter()
        .filter(|p| p.stage == Stage::Encoding)
        .map(|p| p.percent)
        .collect();
    assert!(enc.windows(2).all(|w| w[0] <= w[1]), "{enc:?}");
    assert!(enc.last().copied().unwrap_or(0.0) > 95.0, "{enc:?}");

    snapshot("fmp4_master.m3u8", &mask_bandwidths(&master));
    snapshot(
        "fmp4_480p.m3u8",
        &std::fs::read_to_string(out.root.join("480p/index.m3u8")).unwrap(),
    );
    snapshot(
        "fmp4_audio.m3u8",
        &std::fs::read_to_string(out.root.join("audio/index.m3u8")).unwrap(),
    );
}

/// The validator reads the segments' bytes, so a ladder whose files were
/// tampered with after its playlists were written fails it: the muxer's
/// own bookkeeping cannot vouch for them.
#[tokio::test]
async fn tampered_ladders_fail_the_validator_from_their_bytes() {
    let media = tempfile::tempdir().unwrap();
    let src = clip(
        media.path(),
        "clip.mkv",
        "320x240",
        "25",
        "3",
        &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
    );
    for format in [SegmentFormat::Fmp4, SegmentFormat::Ts] {
        let out = out_dir().await;
        let manifest = transcode(
            &src,
            &out.dest,
            &opts(&[240, 144], 1, format),
            None,
            &CancelToken::new(),
        )
        .await
        .unwrap();
        check_ladder(&out.root, &manifest);
        let ext = if format == SegmentFormat::Fmp4 {
            "m4s"
        } else {
            "ts"
        };
        let seg = |i: u32| out.root.join("144p").join(format!("seg_{i:05}.{ext}"));
        let (first, second) = (
            std::fs::read(seg(0)).unwrap(),
            std::fs::read(seg(1)).unwrap(),
        );

        // Two segments swapped: the playlist still says what it said.
        std::fs::write(seg(0), &second).unwrap();
        std::fs::write(seg(1), &first).unwrap();
        let v = violations_of(&out.root, format);
        assert!(
            v.iter()
                .any(|v| matches!(v, Violation::MisalignedBoundary { index: 0, .. })),
            "{format:?}: {v:?}"
        );
        assert!(
            v.iter()
                .any(|v| matches!(v, Violation::TimelineGap { index: 0, .. })),
            "{format:?}: {v:?}"
        );
        std::fs::write(seg(0), &first).unwrap();
        std::fs::write(seg(1), &second).unwrap();
        assert_eq!(violations_of(&out.root, format), vec![]);

        // A segment that opens on a later frame, not on its keyframe.
        // Every packet of the first video PES dropped (MPEG-TS): the
        // segment now starts on a later frame.
        let video_pid = |p: &[u8]| ((u16::from(p[1] & 0x1f) << 8) | u16::from(p[2])) == 0x100;
        let mut pes_seen = 0;
        let mut truncated_gop = Vec::new();
        for p in first.chunks(188) {
            if video_pid(p) && p[1] & 0x40 != 0 {
                pes_seen += 1;
            }
            if !video_pid(p) || pes_seen >= 2 {
                truncated_gop.extend_from_slice(p);
            }
        }
        if format == SegmentFormat::Ts {
            std::fs::write(seg(0), &truncated_gop).unwrap();
            let v = violations_of(&out.root, format);
            assert!(
                v.contains(&Violation::MissingKeyframe {
                    playlist: "144p/index.m3u8".into(),
                    index: 0
                }),
                "{v:?}"
            );
            std::fs::write(seg(0), &first).unwrap();
            // One packet lost inside the next segment: its counters jump.
            let lost = second
                .chunks(188)
                .position(|p| video_pid(p) && p[1] & 0x40 == 0)
                .unwrap();
            let mut holed = second.clone();
            holed.drain(lost * 188..(lost + 1) * 188);
            std::fs::write(seg(1), &holed).unwrap();
            let v = violations_of(&out.root, format);
            assert!(
                v.contains(&Violation::ContinuityBreak {
                    playlist: "144p/index.m3u8".into(),
                    index: 1,
                    packets: 1
                }),
                "{v:?}"
            );
            std::fs::write(seg(1), &second).unwrap();
        }

        // A playlist that lies about a duration.
        let playlist = out.root.join("144p/index.m3u8");
        let text = std::fs::read_to_string(&playlist).unwrap();
        let at = text.find("#EXTINF:").unwrap() + "#EXTINF:".len();
        let end = at + text[at..].find(',').unwrap();
        let listed: f64 = text[at..end].parse().unwrap();
        let lie = format!("{}{:.3}{}", &text[..at], listed + 0.2, &text[end..]);
        std::fs::write(&playlist, lie).unwrap();
        let v = violations_of(&out.root, format);
        assert!(
            v.iter()
                .any(|v| matches!(v, Violation::DurationMismatch { index: 0, .. })),
            "{format:?}: {v:?}"
        );
    }
}

#[tokio::test]
async fn mpeg_ts_ladder() {
    let media = tempfile::tempdir().unwrap();
    let src = clip(
        media.path(),
        "clip.mkv",
        "640x360",
        "25",
        "3",
        &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
    );
    let out = out_dir().await;
    let manifest = transcode(
        &src,
        &out.dest,
        &opts(&[360, 240], 1, SegmentFormat::Ts),
        None,
        &CancelToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(manifest.format, SegmentFormat::Ts);
    assert_eq!(manifest.renditions.len(), 2);
    let master = check_ladder(&out.root, &manifest);
    assert!(master.contains("#EXT-X-VERSION:3"), "{master}");
    let files = listing(&out.root);
    assert!(files.contains(&"360p/seg_00002.ts".to_owned()), "{files:?}");
    assert!(!files.iter().any(|f| f.ends_with("init.mp4")), "{files:?}");
    // Continuity counters run on from segment to segment, per PID, as in
    // one transport stream: +1 per packet with a payload.
    for dir in ["360p", "240p", "audio"] {
        let mut last: std::collections::HashMap<u16, u8> = Default::default();
        for i in 0..3 {
            let bytes = std::fs::read(out.root.join(dir).join(format!("seg_{i:05}.ts"))).unwrap();
            assert_eq!(bytes.len() % 188, 0);
            for (n, p) in bytes.chunks(188).enumerate() {
                assert_eq!(p[0], 0x47);
                let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
                let (cc, payload) = (p[3] & 0x0f, p[3] & 0x10 != 0);
                if let Some(&prev) = last.get(&pid) {
                    let want = if payload { (prev + 1) & 0x0f } else { prev };
                    assert_eq!(cc, want, "{dir} segment {i} packet {n} PID {pid:#x}");
                }
                last.insert(pid, cc);
            }
        }
    }
}

async fn transcodes_to_valid_ladder(src: &Path, rungs: &[u32]) -> (Manifest, Out) {
    let out = out_dir().await;
    let manifest = transcode(
        src,
        &out.dest,
        &opts(rungs, 1, SegmentFormat::Fmp4),
        None,
        &CancelToken::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    check_ladder(&out.root, &manifest);
    (manifest, out)
}

#[tokio::test]
async fn odd_dimensions_give_even_rungs() {
    let media = tempfile::tempdir().unwrap();
    let src = clip(
        media.path(),
        "odd.mp4",
        "853x479",
        "30",
        "2",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv444p",
        ],
    );
    let (m, _out) = transcodes_to_valid_ladder(&src, &[720, 480, 360]).await;
    for r in &m.renditions {
        assert_eq!(r.rendition.width % 2, 0);
        assert_eq!(r.rendition.height % 2, 0);
    }
}

/// The first frame of `file` as 8-bit gray, scaled to `w`x`h`, with
/// FFmpeg's own autorotation.
fn gray_frame(file: &Path, w: u32, h: u32) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args([
            "-frames:v",
            "1",
            "-vf",
            &format!("scale={w}:{h}"),
            "-pix_fmt",
            "gray",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success());
    out.stdout
}

/// Which quarter of a `w`x`h` gray picture is brightest (0 top left, 1 top
/// right, 2 bottom left, 3 bottom right).
fn brightest_quarter(px: &[u8], w: usize, h: usize) -> usize {
    let mut sums = [0u64; 4];
    for y in 0..h {
        for x in 0..w {
            let q = usize::from(y >= h / 2) * 2 + usize::from(x >= w / 2);
            sums[q] += u64::from(px[y * w + x]);
        }
    }
    (0..4).max_by_key(|&q| sums[q]).unwrap()
}

#[tokio::test]
async fn rotated_phone_video_is_upright() {
    let media = tempfile::tempdir().unwrap();
    // A white box in the top-left corner, then a quarter-turn display
    // matrix added by a stream copy (the way phones store portrait video).
    let plain = ffmpeg(
        media.path(),
        "plain.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "color=black:size=640x360:rate=30",
            "-vf",
            "drawbox=x=0:y=0:w=80:h=80:color=white:t=fill",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    );
    let plain_s = plain.to_string_lossy().into_owned();
    let phone = ffmpeg(
        media.path(),
        "phone.mp4",
        &["-i", &plain_s, "-c", "copy", "-metadata:s:v:0", "rotate=90"],
    );
    let (m, out) = transcodes_to_valid_ladder(&phone, &[360]).await;
    let r = &m.renditions[0].rendition;
    assert_eq!((r.width, r.height), (360, 640), "portrait");
    // The picture is turned the way FFmpeg shows the source.
    let ours = joined(
        &out.root,
        "360p",
        SegmentFormat::Fmp4,
        &["seg_00000.m4s".to_owned()],
    );
    let (w, h) = (36, 64);
    assert_eq!(
        brightest_quarter(&gray_frame(&ours, w, h), w as usize, h as usize),
        brightest_quarter(&gray_frame(&phone, w, h), w as usize, h as usize)
    );
}

#[tokio::test]
async fn ten_bit_hevc_vp9_sources() {
    let media = tempfile::tempdir().unwrap();
    let mut sources = vec![clip(
        media.path(),
        "10bit.mkv",
        "640x360",
        "30",
        "2",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p10le",
        ],
    )];
    if has_encoder("libx265") {
        sources.push(clip(
            media.path(),
            "hevc.mp4",
            "640x360",
            "24",
            "2",
            &[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "log-level=none",
            ],
        ));
    }
    if has_encoder("libvpx-vp9") {
        sources.push(clip(
            media.path(),
            "vp9.webm",
            "640x360",
            "30",
            "2",
            &[
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-c:a",
                "libopus",
            ],
        ));
    }
    for src in sources {
        let (m, _out) = transcodes_to_valid_ladder(&src, &[360]).await;
        assert_eq!(m.renditions.len(), 1, "{}", src.display());
    }
}

#[tokio::test]
async fn interlaced_source_is_deinterlaced() {
    let media = tempfile::tempdir().unwrap();
    let src = clip(
        media.path(),
        "interlaced.ts",
        "720x576",
        "25",
        "2",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-flags",
            "+ildct+ilme",
            "-x264opts",
            "tff=1",
            "-c:a",
            "aac",
        ],
    );
    let (m, _out) = transcodes_to_valid_ladder(&src, &[576, 360]).await;
    assert!(m.source.interlaced);
}

#[tokio::test]
async fn five_one_audio_is_downmixed() {
    let media = tempfile::tempdir().unwrap();
    let mut args = video_src("640x360", "30", "2");
    args.extend(
        [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:sample_rate=48000",
            "-filter_complex",
            "[1:a]pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0[a]",
            "-map",
            "0:v",
            "-map",
            "[a]",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
        ]
        .map(String::from),
    );
    let src = ffmpeg(media.path(), "surround.mp4", &strs(&args));
    let (m, _out) = transcodes_to_valid_ladder(&src, &[360]).await;
    assert_eq!(m.audio.as_ref().map(|a| a.channels), Some(2));
}

#[tokio::test]
async fn single_frame_and_variable_rate_and_sixty_fps() {
    let media = tempfile::tempdir().unwrap();
    let single = ffmpeg(
        media.path(),
        "one.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
            "-frames:v",
            "1",
            "-c:v",
            "libx264",
        ],
    );
    let (m, _out) = transcodes_to_valid_ladder(&single, &[360]).await;
    assert_eq!(m.renditions[0].segments, 1);
    assert_eq!(m.frames, 1);

    // Variable rate: frames dropped unevenly, timestamps kept.
    let vfr = ffmpeg(
        media.path(),
        "vfr.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
            "-t",
            "3",
            "-vf",
            "select='not(mod(n\\,3))+gt(n\\,45)'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    );
    transcodes_to_valid_ladder(&vfr, &[360]).await;

    // 60 fps: the small rung is capped at 30.
    let sixty = clip(
        media.path(),
        "sixty.mp4",
        "1280x720",
        "60",
        "2",
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    let (m, out) = transcodes_to_valid_ladder(&sixty, &[720, 360]).await;
    let rates: Vec<f64> = m
        .renditions
        .iter()
        .map(|r| r.rendition.frame_rate)
        .collect();
    assert_eq!(rates, [60.0, 30.0]);
    let small = joined(
        &out.root,
        "360p",
        SegmentFormat::Fmp4,
        &["seg_00000.m4s".to_owned(), "seg_00001.m4s".to_owned()],
    );
    let info = ffprobe_json(
        &["-count_frames", "-show_entries", "stream=nb_read_frames"],
        &small,
    );
    assert_eq!(info["streams"][0]["nb_read_frames"], "60");

    // 120 fps: even the large rung is halved to 60 (Apple's limit).
    let fast = clip(
        media.path(),
        "fast.mp4",
        "1280x720",
        "120",
        "1",
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    let (m, out) = transcodes_to_valid_ladder(&fast, &[720]).await;
    assert_eq!(m.renditions[0].rendition.frame_rate, 60.0);
    let top = joined(
        &out.root,
        "720p",
        SegmentFormat::Fmp4,
        &["seg_00000.m4s".to_owned()],
    );
    let info = ffprobe_json(
        &[
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames,r_frame_rate",
        ],
        &top,
    );
    assert_eq!(info["streams"][0]["nb_read_frames"], "60");
}

/// A bad source: the error kind, a message naming the file, a bounded
/// time, an empty output.
async fn refused(src: &Path, want: fn(&TranscodeError) -> bool) {
    let out = out_dir().await;
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        transcode(
            src,
            &out.dest,
            &opts(&[360], 2, SegmentFormat::Fmp4),
            None,
            &CancelToken::new(),
        ),
    )
    .await
    .expect("bounded time")
    .expect_err("refused");
    assert!(want(&e), "{}: unexpected {e:?}", src.display());
    assert!(e.to_string().contains(&src.display().to_string()), "{e}");
    assert_eq!(
        listing(&out.root),
        Vec::<String>::new(),
        "{}: output left behind",
        src.display()
    );
}

fn invalid(e: &TranscodeError) -> bool {
    matches!(e, TranscodeError::InvalidInput { .. }) && e.is_permanent()
}

#[tokio::test]
async fn bad_inputs_are_refused_cleanly() {
    let media = tempfile::tempdir().unwrap();
    let dir = media.path();
    let empty = dir.join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    refused(&empty, invalid).await;

    let good = clip(
        dir,
        "good.mp4",
        "320x240",
        "30",
        "2",
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    refused(&truncated, invalid).await;

    let noise = dir.join("noise.mp4");
    std::fs::write(
        &noise,
        (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    refused(&noise, invalid).await;

    let text = dir.join("notes.txt");
    std::fs::write(&text, "not a video\n".repeat(100)).unwrap();
    refused(&text, invalid).await;

    let zero = ffmpeg(
        dir,
        "zero.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-frames:v",
            "0",
            "-c:v",
            "libx264",
        ],
    );
    refused(&zero, invalid).await;

    refused(&dir.join("missing.mp4"), |e| {
        matches!(e, TranscodeError::NotFound { .. })
    })
    .await;
}

#[tokio::test]
async fn absurd_dimensions_are_refused() {
    let media = tempfile::tempdir().unwrap();
    // 20 000 x 8 pixels: a real stream, wider than any H.264 level allows.
    let wide = ffmpeg(
        media.path(),
        "wide.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=red:size=20000x8:rate=1",
            "-frames:v",
            "1",
            "-c:v",
            "ffv1",
        ],
    );
    refused(&wide, invalid).await;
}

#[tokio::test]
async fn frames_over_the_pixel_budget_are_refused_before_decoding() {
    let media = tempfile::tempdir().unwrap();
    // 9000 x 4000 = 36 Mpixel, over 8K UHD (33.2 Mpixel), in a file of a
    // few kB: within every dimension limit, so only the budget stops it.
    let big = ffmpeg(
        media.path(),
        "big.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:size=9000x4000:rate=1",
            "-frames:v",
            "1",
            "-c:v",
            "ffv1",
        ],
    );
    assert!(std::fs::metadata(&big).unwrap().len() < 1_000_000);
    refused(&big, |e| {
        invalid(e) && e.to_string().contains("over the budget of 33177600 pixels")
    })
    .await;
}

#[tokio::test]
async fn undecodable_audio_only_upload_fails_once_with_the_reason() {
    let media = tempfile::tempdir().unwrap();
    // An M4A whose index is intact and whose AAC frames are all garbage:
    // the probe is happy, the audio thread finds nothing to decode.
    let good = ffmpeg(
        media.path(),
        "good.m4a",
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            "2",
            "-c:a",
            "aac",
            "-movflags",
            "+faststart",
        ],
    );
    let mut bytes = std::fs::read(&good).unwrap();
    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    bytes[mdat + 4..].fill(0xff);
    let bad = media.path().join("garbage.m4a");
    std::fs::write(&bad, bytes).unwrap();
    videosync_transcode::probe(&bad).unwrap();
    refused(&bad, |e| {
        invalid(e) && e.to_string().contains("no audio frame could be decoded")
    })
    .await;
}

#[tokio::test]
async fn very_tall_source_gets_a_bounded_storyboard() {
    let media = tempfile::tempdir().unwrap();
    // 1:250. At 160 px wide a tile would be 40 000 px tall and two rows of
    // tiles past JPEG's 65 535.
    let tall = ffmpeg(
        media.path(),
        "tall.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=16x4000:rate=1",
            "-t",
            "12",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    );
    let out = out_dir().await;
    let manifest = transcode(
        &tall,
        &out.dest,
        &opts(&[360], 2, SegmentFormat::Fmp4),
        None,
        &CancelToken::new(),
    )
    .await
    .unwrap();
    check_ladder(&out.root, &manifest);
    let sb = manifest.storyboard.as_ref().expect("a storyboard");
    assert_eq!(sb.tiles, 12);
    assert!(sb.tile_height <= 284 && sb.tile_width >= 2, "{sb:?}");
    for sheet in &sb.sheets {
        let info = ffprobe_json(
            &["-show_entries", "stream=width,height"],
            &out.root.join(sheet),
        );
        let h = info["streams"][0]["height"].as_u64().unwrap();
        assert!(h <= u64::from(sb.tile_height) * 10, "{sheet}: {h}");
    }
}

#[tokio::test]
async fn audio_format_change_mid_stream_is_resampled_not_fatal() {
    let media = tempfile::tempdir().unwrap();
    let dir = media.path();
    // Two MPEG-TS recordings joined byte for byte, as a broadcast capture
    // or `cat` gives: 2 s of 44.1 kHz mono, then 2 s of 48 kHz stereo, the
    // second's timestamps following on. (Audio only: with video, x264's
    // and the TS muxer's start offsets leave a 17 ms hole at the join that
    // is a different matter.)
    let part = |name: &str, rate: &str, channels: &str, offset: &str| {
        let path = ffmpeg(
            dir,
            name,
            &[
                "-f",
                "lavfi",
                "-i",
                &format!("sine=frequency=440:sample_rate={rate}"),
                "-t",
                "2",
                "-ac",
                channels,
                "-c:a",
                "aac",
                "-output_ts_offset",
                offset,
            ],
        );
        std::fs::read(path).unwrap()
    };
    let mut joined_ts = part("a.ts", "44100", "1", "0");
    joined_ts.extend(part("b.ts", "48000", "2", "2"));
    let src = dir.join("joined.ts");
    std::fs::write(&src, joined_ts).unwrap();

    let out = out_dir().await;
    let manifest = transcode(
        &src,
        &out.dest,
        &opts(&[240], 1, SegmentFormat::Fmp4),
        None,
        &CancelToken::new(),
    )
    .await
    .unwrap();
    // Both halves are there: about 4 s of audio, not a failure at 2 s.
    check_audio_only(&out.root, &manifest, 4.0);
}

#[tokio::test]
async fn corrupt_middle_still_gives_a_valid_ladder_or_a_clean_error() {
    let media = tempfile::tempdir().unwrap();
    let src = clip(
        media.path(),
        "clip.ts",
        "640x360",
        "30",
        "3",
        &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
    );
    let mut bytes = std::fs::read(&src).unwrap();
    let (a, b) = (bytes.len() / 3, bytes.len() / 2);
    for (i, byte) in bytes[a..b].iter_mut().enumerate() {
        *byte = (i.wrapping_mul(31) >> 2) as u8;
    }
    let bad = media.path().join("damaged.ts");
    std::fs::write(&bad, bytes).unwrap();
    let out = out_dir().await;
    match transcode(
        &bad,
        &out.dest,
        &opts(&[360], 1, SegmentFormat::Fmp4),
        None,
        &CancelToken::new(),
    )
    .await
    {
        Ok(m) => {
            check_ladder(&out.root, &m);
        }
        Err(e) => {
            assert!(e.to_string().contains("damaged.ts"), "{e}");
            assert_eq!(listing(&out.root), Vec::<String>::new());
        }
    }
}

#[tokio::test]
async fn cancelling_removes_everything() {
    let media = tempfile::tempdir().unwrap();
    let src = clip(
        media.path(),
        "long.mp4",
        "640x360",
        "30",
        "20",
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    let out = out_dir().await;
    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    let progress: ProgressFn = Arc::new(move |p: &Progress| {
        if p.stage == Stage::Encoding && p.percent > 10.0 {
            trigger.cancel();
        }
    });
    let mut o = opts(&[360], 1, SegmentFormat::Fmp4);
    o.preset = "veryfast".to_owned();
    let e = transcode(&src, &out.dest, &o, Some(progress), &cancel)
        .await
        .unwrap_err();
    assert!(matches!(e, TranscodeError::Cancelled { .. }), "{e:?}");
    assert_eq!(listing(&out.root), Vec::<String>::new());
}

#[tokio::test]
async fn time_limit_stops_the_run() {
    let media = tempfile::tempdir().unwrap();
    let src = clip(
        media.path(),
        "long.mp4",
        "640x360",
        "30",
        "20",
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    let out = out_dir().await;
    let mut o = opts(&[360], 1, SegmentFormat::Fmp4);
    o.preset = "medium".to_owned();
    o.timeout = Some(Duration::from_millis(300));
    let e = transcode(&src, &out.dest, &o, None, &CancelToken::new())
        .await
        .unwrap_err();
    assert!(matches!(e, TranscodeError::Timeout { .. }), "{e:?}");
    assert_eq!(listing(&out.root), Vec::<String>::new());
}

#[tokio::test]
async fn encoder_choice_falls_back_without_a_gpu() {
    let media = tempfile::tempdir().unwrap();
    let src = clip(
        media.path(),
        "clip.mp4",
        "320x240",
        "30",
        "1",
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    let out = out_dir().await;
    let mut o = opts(&[240], 1, SegmentFormat::Fmp4);
    o.encoder = EncoderChoice::Auto;
    let m = transcode(&src, &out.dest, &o, None, &CancelToken::new())
        .await
        .unwrap();
    let want = if nvenc_available() {
        VideoEncoder::H264Nvenc
    } else {
        VideoEncoder::Libx264
    };
    assert_eq!(m.encoder, want);
    if !nvenc_available() {
        let out = out_dir().await;
        o.encoder = EncoderChoice::Nvenc;
        let e = transcode(&src, &out.dest, &o, None, &CancelToken::new())
            .await
            .unwrap_err();
        assert!(matches!(e, TranscodeError::Unsupported { .. }), "{e:?}");
        assert!(listing(&out.root).is_empty());

        // The planner needs no GPU: the choice travels in the plan and
        // the worker that runs a video part resolves it on its machine
        // (here: none, so the part fails and leaves nothing; the extras
        // part, which encodes no video, runs).
        let plan = videosync_transcode::chunked::plan(&src, &o, 1)
            .await
            .unwrap();
        let out = out_dir().await;
        let e =
            videosync_transcode::chunked::run(&plan, 0, &src, &out.dest, None, &CancelToken::new())
                .await
                .unwrap_err();
        assert!(
            matches!(&e, TranscodeError::Unsupported { reason, .. } if reason.contains("NVENC")),
            "{e:?}"
        );
        assert!(listing(&out.root).is_empty());
        let extras = plan.parts().len() - 1;
        videosync_transcode::chunked::run(
            &plan,
            extras,
            &src,
            &out.dest,
            None,
            &CancelToken::new(),
        )
        .await
        .unwrap();
    }
}

/// A store that fails every put after the first `n`.
#[derive(Debug)]
struct FailingStore {
    inner: videosync_core::store::memory::MemoryStore,
    left: Mutex<usize>,
}

impl std::fmt::Display for FailingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Failing")
    }
}

#[async_trait::async_trait]
impl ObjectStore for FailingStore {
    async fn put_opts(
        &self,
        key: &videosync_core::ObjectKey,
        payload: videosync_core::store::PutPayload,
        opts: videosync_core::store::PutOptions,
    ) -> videosync_core::Result<videosync_core::store::ObjectMeta> {
        {
            let mut left = self.left.lock().unwrap();
            if *left == 0 {
                return Err(videosync_core::Error::unavailable(
                    "disk full",
                    std::io::Error::other("ENOSPC"),
                ));
            }
            *left -= 1;
        }
        self.inner.put_opts(key, payload, opts).await
    }
    async fn get_opts(
        &self,
        key: &videosync_core::ObjectKey,
        opts: videosync_core::store::GetOptions,
    ) -> videosync_core::Result<videosync_core::store::GetResult> {
        self.inner.get_opts(key, opts).await
    }
    async fn head(
        &self,
        key: &videosync_core::ObjectKey,
    ) -> videosync_core::Result<videosync_core::store::ObjectMeta> {
        self.inner.head(key).await
    }
    fn list_stream(
        &self,
        prefix: Option<&videosync_core::ObjectKey>,
        start_after: Option<&videosync_core::ObjectKey>,
    ) -> futures::stream::BoxStream<
        'static,
        videosync_core::Result<videosync_core::store::ObjectMeta>,
    > {
        self.inner.list_stream(prefix, start_after)
    }
    async fn delete(&self, key: &videosync_core::ObjectKey) -> videosync_core::Result<()> {
        self.inner.delete(key).await
    }
    async fn copy(
        &self,
        from: &videosync_core::ObjectKey,
        to: &videosync_core::ObjectKey,
    ) -> videosync_core::Result<()> {
        self.inner.copy(from, to).await
    }
    async fn create_multipart(
        &self,
        key: &videosync_core::ObjectKey,
    ) -> videosync_core::Result<videosync_core::store::MultipartId> {
        self.inner.create_multipart(key).await
    }
    async fn put_part(
        &self,
        key: &videosync_core::ObjectKey,
        upload: &videosync_core::store::MultipartId,
        number: u32,
        data: bytes::Bytes,
    ) -> videosync_core::Result<videosync_core::store::PartId> {
        self.inner.put_part(key, upload, number, data).await
    }
    async fn complete_multipart(
        &self,
        key: &videosync_core::ObjectKey,
        upload: &videosync_core::store::MultipartId,
        parts: Vec<videosync_core::store::PartId>,
    ) -> videosync_core::Result<videosync_core::store::ObjectMeta> {
        self.inner.complete_multipart(key, upload, parts).await
    }
    async fn list_parts(
        &self,
        key: &videosync_core::ObjectKey,
        upload: &videosync_core::store::MultipartId,
    ) -> videosync_core::Result<Vec<videosync_core::store::StoredPart>> {
        self.inner.list_parts(key, upload).await
    }
    async fn abort_multipart(
        &self,
        key: &videosync_core::ObjectKey,
        upload: &videosync_core::store::MultipartId,
    ) -> videosync_core::Result<()> {
        self.inner.abort_multipart(key, upload).await
    }
}

#[tokio::test]
async fn a_failing_store_fails_the_run_and_leaves_nothing() {
    let media = tempfile::tempdir().unwrap();
    let src = clip(
        media.path(),
        "clip.mp4",
        "640x360",
        "30",
        "4",
        &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
    );
    let store = Arc::new(FailingStore {
        inner: videosync_core::store::memory::MemoryStore::new(),
        left: Mutex::new(5),
    });
    let dest = Destination::new(
        store.clone(),
        Some(videosync_core::ObjectKey::parse("videos/x").unwrap()),
    );
    let e = transcode(
        &src,
        &dest,
        &opts(&[360], 1, SegmentFormat::Fmp4),
        None,
        &CancelToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, TranscodeError::Store { .. }), "{e:?}");
    assert!(e.to_string().contains("disk full"), "{e}");
    assert_eq!(store.inner.list(None).await.unwrap(), vec![]);
}

/// Presentation times of every video frame of a rendition.
fn frame_times(file: &Path) -> Vec<String> {
    let info = ffprobe_json(
        &["-select_streams", "v:0", "-show_entries", "frame=pts_time"],
        file,
    );
    info["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["pts_time"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn chunked_ladder_matches_a_single_pass() {
    use videosync_transcode::chunked;
    let media = tempfile::tempdir().unwrap();
    let src = clip(
        media.path(),
        "long.mp4",
        "640x360",
        "30",
        "7.5",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "45",
            "-c:a",
            "aac",
        ],
    );
    let o = opts(&[360, 240], 1, SegmentFormat::Fmp4);

    let single = out_dir().await;
    let m1 = transcode(&src, &single.dest, &o, None, &CancelToken::new())
        .await
        .unwrap();

    let chunked_out = out_dir().await;
    let plan = chunked::plan(&src, &o, 3).await.unwrap();
    assert_eq!(plan.parts().len(), 4, "three video chunks and the extras");
    // Parts may finish in any order, on any worker.
    let mut outputs = Vec::new();
    for i in (0..plan.parts().len()).rev() {
        outputs.push(
            chunked::run(&plan, i, &src, &chunked_out.dest, None, &CancelToken::new())
                .await
                .unwrap(),
        );
    }
    // A part missing or given twice is refused.
    let e = chunked::finish(&plan, &outputs[1..], &chunked_out.dest)
        .await
        .unwrap_err();
    assert!(matches!(e, TranscodeError::InvalidOutput { .. }), "{e:?}");
    let twice = [outputs.clone(), vec![outputs[0].clone()]].concat();
    assert!(chunked::finish(&plan, &twice, &chunked_out.dest)
        .await
        .is_err());

    let m2 = chunked::finish(&plan, &outputs, &chunked_out.dest)
        .await
        .unwrap();
    assert_eq!(m2.chunks, 4);
    check_ladder(&chunked_out.root, &m2);
    // Same playlists (timing, names), same frames at the same times.
    for rel in ["360p/index.m3u8", "240p/index.m3u8", "audio/index.m3u8"] {
        assert_eq!(
            std::fs::read_to_string(single.root.join(rel)).unwrap(),
            std::fs::read_to_string(chunked_out.root.join(rel)).unwrap(),
            "{rel}"
        );
    }
    let names: Vec<String> = (0..8).map(|i| format!("seg_{i:05}.m4s")).collect();
    for rung in ["360p", "240p"] {
        let a = joined(&single.root, rung, SegmentFormat::Fmp4, &names);
        let b = joined(&chunked_out.root, rung, SegmentFormat::Fmp4, &names);
        assert_eq!(frame_times(&a), frame_times(&b), "{rung}");
    }
    assert_eq!(m1.duration_s, m2.duration_s);
    let files = |root: &Path| {
        listing(root)
            .into_iter()
            .filter(|f| !f.contains("joined") && !f.contains("-iframes."))
            .collect::<Vec<_>>()
    };
    assert_eq!(files(&single.root), files(&chunked_out.root));
    // The extras part seeks for the images' frames instead of decoding
    // the whole source, and picks the same ones.
    for rel in [
        "poster.jpg",
        "storyboard/sheet_000.jpg",
        "storyboard/storyboard.vtt",
    ] {
        assert!(
            std::fs::read(single.root.join(rel)).unwrap()
                == std::fs::read(chunked_out.root.join(rel)).unwrap(),
            "{rel} differs"
        );
    }
}

/// RFC 8216 section 4.1 peak, recomputed here from the stored files: the
/// highest bit rate of any run of consecutive segments lasting 0.5 to 1.5
/// target durations.
fn windowed_peak(durations: &[f64], sizes: &[u64], target: f64) -> u64 {
    let mut peak = 0u64;
    for i in 0..durations.len() {
        let (mut bytes, mut secs) = (0u64, 0.0);
        for j in i..durations.len() {
            bytes += sizes[j];
            secs += durations[j];
            if secs > 1.5 * target + 1e-6 {
                break;
            }
            if secs >= 0.5 * target - 1e-6 {
                peak = peak.max((bytes as f64 * 8.0 / secs).ceil() as u64);
            }
        }
    }
    peak
}

#[tokio::test]
async fn short_last_segment_does_not_inflate_bandwidth() {
    let media = tempfile::tempdir().unwrap();
    // 4.2 s at 2 s segments: the last segment is 0.2 s (6 frames) and
    // opens with an IDR, so alone it runs far above the rendition's rate.
    // A still picture makes that stark, as in a slide or a talking head:
    // nearly every bit of a segment is its IDR.
    let src = ffmpeg(
        media.path(),
        "tail.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "smptebars=size=640x360:rate=30",
            "-t",
            "4.2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    );
    let out = out_dir().await;
    let manifest = transcode(
        &src,
        &out.dest,
        &opts(&[360], 2, SegmentFormat::Fmp4),
        None,
        &CancelToken::new(),
    )
    .await
    .unwrap();
    check_ladder(&out.root, &manifest);
    let master =
        parse_master(&std::fs::read_to_string(out.root.join("master.m3u8")).unwrap()).unwrap();
    let media_pl =
        parse_media(&std::fs::read_to_string(out.root.join("360p/index.m3u8")).unwrap()).unwrap();
    let durations: Vec<f64> = media_pl
        .segments
        .iter()
        .map(|s| f64::from(s.duration))
        .collect();
    assert_eq!(durations.len(), 3, "{durations:?}");
    assert!((durations[2] - 0.2).abs() < 0.01, "{durations:?}");
    let sizes: Vec<u64> = media_pl
        .segments
        .iter()
        .map(|s| {
            std::fs::metadata(out.root.join("360p").join(&s.uri))
                .unwrap()
                .len()
        })
        .collect();
    let declared = master.variants[0].bandwidth;
    let expected = windowed_peak(&durations, &sizes, media_pl.target_duration as f64);
    // EXTINF is written to the millisecond; allow for that rounding.
    assert!(
        declared.abs_diff(expected) <= expected / 1000,
        "BANDWIDTH={declared}, RFC 8216 peak {expected}"
    );
    // The short tail alone would have set BANDWIDTH well above that.
    let tail_alone = (sizes[2] as f64 * 8.0 / durations[2]).ceil() as u64;
    assert!(
        tail_alone > declared * 3,
        "tail {tail_alone} bit/s vs BANDWIDTH {declared}: the test no longer has a heavy tail"
    );
    let average = master.variants[0].average_bandwidth.unwrap();
    let total: u64 = sizes.iter().sum();
    let secs: f64 = durations.iter().sum();
    let want_avg = (total as f64 * 8.0 / secs).ceil() as u64;
    assert!(
        average.abs_diff(want_avg) <= want_avg / 1000,
        "{average} vs {want_avg}"
    );
}

/// Reads an audio-only ladder back: one variant (the audio playlist, AAC,
/// no RESOLUTION), valid, and the audio it holds lasts as long as the
/// source.
fn check_audio_only(root: &Path, manifest: &Manifest, secs: f64) {
    assert!(manifest.renditions.is_empty(), "{manifest:?}");
    let audio = manifest.audio.as_ref().expect("an audio rendition");
    let master_text = std::fs::read_to_string(root.join("master.m3u8")).unwrap();
    let master = parse_master(&master_text).unwrap();
    assert_eq!(master.variants.len(), 1, "{master_text}");
    let v = &master.variants[0];
    assert_eq!(v.uri, "audio/index.m3u8");
    assert_eq!(v.codecs.as_deref(), Some("mp4a.40.2"));
    assert!(v.resolution.is_none() && v.audio.is_none(), "{master_text}");
    let media = parse_media(&std::fs::read_to_string(root.join(&v.uri)).unwrap()).unwrap();
    let measured = read_back(root, &v.uri, manifest.format, &media);
    let produced = ProducedLadder {
        master: &master,
        video: vec![ProducedRendition {
            uri: &v.uri,
            playlist: &media,
            segments: &measured,
            iframes: None,
        }],
        audio: None,
    };
    let violations = validate(&produced, &ValidateOptions::default());
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(audio.segments, media.segments.len());
    let names: Vec<String> = media.segments.iter().map(|s| s.uri.clone()).collect();
    let file = joined(root, "audio", manifest.format, &names);
    let info = ffprobe_json(
        &[
            "-show_entries",
            "stream=codec_name:packet=pts_time,duration_time",
        ],
        &file,
    );
    assert_eq!(info["streams"][0]["codec_name"], "aac");
    let last = info["packets"].as_array().unwrap().last().unwrap();
    let time = |k: &str| last[k].as_str().unwrap().parse::<f64>().unwrap();
    let end = time("pts_time") + time("duration_time") - TIMELINE_OFFSET_S as f64;
    assert!(
        (end - secs).abs() < 0.1,
        "audio ends at {end} s, source {secs} s"
    );
    assert!(
        (manifest.duration_s - secs).abs() < 0.1,
        "{}",
        manifest.duration_s
    );
}

#[tokio::test]
async fn audio_only_uploads_get_an_audio_ladder_and_their_cover_as_poster() {
    let media = tempfile::tempdir().unwrap();
    let dir = media.path();
    // An MP3 with a 320x240 JPEG cover: FFmpeg's best "video" stream is the
    // cover, a one-packet stream with a 90 kHz time base.
    let mp3 = ffmpeg(
        dir,
        "song.mp3",
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=1",
            "-t",
            "3",
            "-map",
            "0:a",
            "-map",
            "1:v",
            "-frames:v",
            "1",
            "-c:a",
            "libmp3lame",
            "-c:v",
            "mjpeg",
            "-disposition:v",
            "attached_pic",
            "-id3v2_version",
            "3",
        ],
    );
    let probed = videosync_transcode::probe(&mp3).unwrap();
    assert!(probed.video.is_none(), "cover taken for video: {probed:?}");
    assert!(probed.cover_art.is_some(), "{probed:?}");
    assert!(probed.require_video().is_err());

    let out = out_dir().await;
    let manifest = transcode(
        &mp3,
        &out.dest,
        &opts(&[720, 360], 2, SegmentFormat::Fmp4),
        None,
        &CancelToken::new(),
    )
    .await
    .unwrap();
    check_audio_only(&out.root, &manifest, 3.0);
    assert_eq!(manifest.poster.as_deref(), Some("poster.jpg"));
    let poster = ffprobe_json(
        &["-show_entries", "stream=codec_name,width,height"],
        &out.root.join("poster.jpg"),
    );
    assert_eq!(poster["streams"][0]["codec_name"], "mjpeg");
    assert_eq!(poster["streams"][0]["width"], 320);
    assert_eq!(poster["streams"][0]["height"], 240);
    assert_eq!(manifest.audio.as_ref().unwrap().sample_rate, 44_100);

    // An M4A with a PNG cover, as TS: same ladder shape.
    let m4a = ffmpeg(
        dir,
        "song.m4a",
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=200x200:rate=1",
            "-t",
            "2.5",
            "-map",
            "0:a",
            "-map",
            "1:v",
            "-frames:v",
            "1",
            "-c:a",
            "aac",
            "-c:v",
            "png",
            "-disposition:v",
            "attached_pic",
        ],
    );
    let out = out_dir().await;
    let manifest = transcode(
        &m4a,
        &out.dest,
        &opts(&[360], 1, SegmentFormat::Ts),
        None,
        &CancelToken::new(),
    )
    .await
    .unwrap();
    check_audio_only(&out.root, &manifest, 2.5);
    assert!(listing(&out.root).contains(&"poster.jpg".to_owned()));

    // No cover: the audio ladder alone, no poster, no storyboard.
    let plain = ffmpeg(
        dir,
        "audio.m4a",
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            "1",
            "-c:a",
            "aac",
        ],
    );
    let out = out_dir().await;
    let manifest = transcode(
        &plain,
        &out.dest,
        &opts(&[360], 2, SegmentFormat::Fmp4),
        None,
        &CancelToken::new(),
    )
    .await
    .unwrap();
    check_audio_only(&out.root, &manifest, 1.0);
    assert_eq!(manifest.poster, None);
    assert_eq!(
        listing(&out.root)
            .into_iter()
            .filter(|f| !f.contains("joined"))
            .collect::<Vec<_>>(),
        [
            "audio/index.m3u8",
            "audio/init.mp4",
            "audio/seg_00000.m4s",
            "manifest.json",
            "master.m3u8"
        ]
    );
}

#[tokio::test]
async fn anamorphic_sources_get_square_pixels_and_the_right_resolution() {
    let media = tempfile::tempdir().unwrap();
    // PAL DVD frames, 720x576, at 16:9 (SAR 64:45) and at 4:3 (SAR 16:15).
    for (sar, top) in [("64/45", (1024, 576)), ("16/15", (768, 576))] {
        let mut args = video_src("720x576", "25", "1");
        args.extend(
            [
                "-vf",
                &format!("setsar={sar}"),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
            ]
            .map(String::from),
        );
        let name = format!("dvd_{}.mkv", sar.replace('/', "_"));
        let src = ffmpeg(media.path(), &name, &strs(&args));
        let probed = videosync_transcode::probe(&src).unwrap();
        let v = probed.video.as_ref().unwrap();
        assert_eq!((v.width, v.height), (720, 576));
        assert_eq!(v.display_dimensions(), top, "{sar}");

        let (m, out) = transcodes_to_valid_ladder(&src, &[576, 360]).await;
        let sizes: Vec<(u32, u32)> = m
            .renditions
            .iter()
            .map(|r| (r.rendition.width, r.rendition.height))
            .collect();
        let small = (
            ((f64::from(top.0) * 360.0 / 576.0 / 2.0).round() as u32) * 2,
            360,
        );
        assert_eq!(sizes, [top, small], "{sar}");
        let master = std::fs::read_to_string(out.root.join("master.m3u8")).unwrap();
        assert!(
            master.contains(&format!("RESOLUTION={}x{}", top.0, top.1)),
            "{master}"
        );
        // The encoded pictures have square pixels at the rung's size.
        let file = joined(
            &out.root,
            "576p",
            SegmentFormat::Fmp4,
            &["seg_00000.m4s".to_owned()],
        );
        let info = ffprobe_json(
            &[
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=width,height,sample_aspect_ratio",
            ],
            &file,
        );
        let s = &info["streams"][0];
        assert_eq!(s["width"].as_u64(), Some(u64::from(top.0)), "{sar}");
        assert_eq!(s["sample_aspect_ratio"], "1:1", "{sar}");
        let poster = ffprobe_json(
            &["-show_entries", "stream=width,height"],
            &out.root.join("poster.jpg"),
        );
        assert_eq!(
            poster["streams"][0]["width"].as_u64(),
            Some(u64::from(top.0))
        );
    }
}

/// The RGB of the centre pixel of the first frame of `file`, decoded with
/// the matrix given here (not the one the file declares).
fn centre_rgb(file: &Path, matrix: &str, w: usize, h: usize) -> [u8; 3] {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(file)
        .args([
            "-frames:v",
            "1",
            "-vf",
            &format!("scale=in_color_matrix={matrix}:in_range=tv,format=rgb24"),
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let i = ((h / 2) * w + w / 2) * 3;
    [out.stdout[i], out.stdout[i + 1], out.stdout[i + 2]]
}

#[tokio::test]
async fn bt601_source_is_converted_to_the_bt709_it_is_tagged() {
    let media = tempfile::tempdir().unwrap();
    // Pure red PAL SD, encoded with the BT.601 matrix and tagged so.
    let src = ffmpeg(
        media.path(),
        "pal.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=red:size=720x576:rate=25",
            "-t",
            "1",
            "-vf",
            "format=rgb24,scale=out_color_matrix=bt601:out_range=tv,format=yuv420p",
            "-colorspace",
            "bt470bg",
            "-color_primaries",
            "bt470bg",
            "-color_trc",
            "gamma28",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "0",
        ],
    );
    let v = videosync_transcode::probe(&src).unwrap().video.unwrap();
    assert_eq!(v.color_space.as_deref(), Some("bt470bg"));
    let [r, g, b] = centre_rgb(&src, "bt601", 720, 576);
    assert!(r > 240 && g < 8 && b < 8, "source as BT.601: {r},{g},{b}");
    // Read with the wrong matrix, the same pixels are visibly not red.
    let [_, g_wrong, _] = centre_rgb(&src, "bt709", 720, 576);
    assert!(g_wrong > 16, "control: {g_wrong}");

    let (_m, out) = transcodes_to_valid_ladder(&src, &[576]).await;
    let top = joined(
        &out.root,
        "576p",
        SegmentFormat::Fmp4,
        &["seg_00000.m4s".to_owned()],
    );
    let [r, g, b] = centre_rgb(&top, "bt709", 720, 576);
    assert!(
        r > 230 && g < 12 && b < 12,
        "the BT.709-tagged rung decodes as {r},{g},{b}, not red"
    );
}

/// `(start, end)` of every stretch of silence of 0.3 s or more in the
/// audio of `file`, in its own timestamps.
fn silences(file: &Path) -> Vec<(f64, f64)> {
    let out = Command::new("ffmpeg")
        .args(["-v", "info", "-nostdin", "-i"])
        .arg(file)
        .args(["-af", "silencedetect=n=-40dB:d=0.3", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let text = String::from_utf8_lossy(&out.stderr);
    let value = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    let mut found = Vec::new();
    let mut start = None;
    for line in text.lines() {
        if let Some(s) = value(line, "silence_start: ") {
            start = Some(s);
        }
        if let (Some(e), Some(s)) = (value(line, "silence_end: "), start) {
            found.push((s, e));
            start = None;
        }
    }
    found
}

/// Transcodes `src` (video and audio) and returns the audio rendition
/// joined, the silences in it and the audio's and the video's ends, all on
/// the output timeline (seconds from the video's first frame).
async fn av_ladder(src: &Path) -> (Out, Vec<(f64, f64)>, f64, f64) {
    let (m, out) = transcodes_to_valid_ladder(src, &[240]).await;
    let names = |dir: &str| -> Vec<String> {
        parse_media(&std::fs::read_to_string(out.root.join(dir).join("index.m3u8")).unwrap())
            .unwrap()
            .segments
            .iter()
            .map(|s| s.uri.clone())
            .collect()
    };
    let audio = joined(&out.root, "audio", SegmentFormat::Fmp4, &names("audio"));
    let video = joined(&out.root, "240p", SegmentFormat::Fmp4, &names("240p"));
    // The end of the last packet; one without a duration lasts `fallback`
    // (a 25 fps frame).
    let end = |file: &Path, stream: &str, fallback: f64| {
        let info = ffprobe_json(
            &[
                "-select_streams",
                stream,
                "-show_entries",
                "packet=pts_time,duration_time",
            ],
            file,
        );
        let packets = info["packets"].as_array().unwrap();
        packets
            .iter()
            .map(|p| {
                p["pts_time"].as_str().unwrap().parse::<f64>().unwrap()
                    + p["duration_time"]
                        .as_str()
                        .and_then(|d| d.parse::<f64>().ok())
                        .unwrap_or(fallback)
            })
            .fold(0.0, f64::max)
    };
    let zero = TIMELINE_OFFSET_S as f64;
    let (a_end, v_end) = (
        end(&audio, "a:0", 0.0) - zero,
        end(&video, "v:0", 0.04) - zero,
    );
    assert!(m.audio.is_some());
    // silencedetect counts from the first decoded sample, which is the
    // first packet's time (the AAC encoder's priming sits just before the
    // timeline's zero).
    let info = ffprobe_json(
        &[
            "-select_streams",
            "a:0",
            "-show_entries",
            "packet=pts_time",
            "-read_intervals",
            "%+#1",
        ],
        &audio,
    );
    let first: f64 = info["packets"][0]["pts_time"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let shift = first - zero;
    let quiet = silences(&audio)
        .into_iter()
        .map(|(s, e)| (s + shift, e + shift))
        .collect();
    (out, quiet, a_end, v_end)
}

#[tokio::test]
async fn late_audio_is_placed_on_the_video_timeline() {
    let media = tempfile::tempdir().unwrap();
    // 4 s of video; the audio starts 1 s in (its first timestamp is 1 s).
    let src = ffmpeg(
        media.path(),
        "late.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-itsoffset",
            "1",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
        ],
    );
    let (_out, quiet, a_end, v_end) = av_ladder(&src).await;
    let frame = 1024.0 / 48_000.0;
    // Silence from the start of the timeline (and the priming before it)
    // until the tone at 1 s.
    assert!(
        quiet
            .first()
            .is_some_and(|&(s, e)| s <= 0.0 && (e - 1.0).abs() <= frame),
        "silences {quiet:?}"
    );
    // Audio and video end together, within one audio frame.
    assert!(
        (a_end - v_end).abs() <= frame,
        "audio ends {a_end}, video {v_end}"
    );
}

#[tokio::test]
async fn audio_gap_is_filled_with_silence_and_stays_in_sync() {
    let media = tempfile::tempdir().unwrap();
    // 5 s of video; the audio has no samples (and no timestamps) from 2 s
    // to 3 s, as a capture that dropped audio has.
    let src = ffmpeg(
        media.path(),
        "gap.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "5",
            "-af",
            "aselect='not(between(t,2,3))'",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
        ],
    );
    let (_out, quiet, a_end, v_end) = av_ladder(&src).await;
    let frame = 1024.0 / 48_000.0;
    // The source's gap runs from its last packet before 2 s to its first
    // after 3 s, whole AAC frames: allow two frames either side.
    assert!(
        quiet
            .iter()
            .any(|&(s, e)| (s - 2.0).abs() <= 2.0 * frame && (e - 3.0).abs() <= 2.0 * frame),
        "silences {quiet:?}"
    );
    assert!(
        (a_end - v_end).abs() <= frame,
        "audio ends {a_end}, video {v_end}"
    );
}

#[tokio::test]
async fn long_segments_get_a_keyframe_every_two_seconds() {
    let media = tempfile::tempdir().unwrap();
    let mut args = video_src("320x240", "25", "9");
    args.extend(["-an", "-c:v", "libx264", "-preset", "ultrafast"].map(String::from));
    let src = ffmpeg(media.path(), "nine.mp4", &strs(&args));
    let out = out_dir().await;
    // The default preset (B-frames: where FFmpeg's libx264 opens GOPs).
    let options = TranscodeOptions {
        preset: TranscodeOptions::default().preset,
        ..opts(&[240], 4, SegmentFormat::Fmp4)
    };
    let manifest = transcode(&src, &out.dest, &options, None, &CancelToken::new())
        .await
        .unwrap();
    check_ladder(&out.root, &manifest);
    let names: Vec<String> = (0..3).map(|i| format!("seg_{i:05}.m4s")).collect();
    let file = joined(&out.root, "240p", SegmentFormat::Fmp4, &names);
    let info = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time,key_frame",
        ],
        &file,
    );
    let keys: Vec<f64> = info["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["key_frame"] == 1)
        .map(|f| f["pts_time"].as_str().unwrap().parse::<f64>().unwrap() - TIMELINE_OFFSET_S as f64)
        .collect();
    // Segments start at 0, 4 and 8 s; keyframes also at 2 and 6 s.
    let want = [0.0, 2.0, 4.0, 6.0, 8.0];
    assert_eq!(keys.len(), want.len(), "{keys:?}");
    for (k, w) in keys.iter().zip(want) {
        assert!((k - w).abs() < 0.002, "{keys:?}");
    }
    // Every keyframe an IDR (closed GOPs): a player that seeks to the one at
    // 2 s decodes from it alone. One slice per frame, so IDR slices count
    // IDR frames.
    let trace = Command::new("ffmpeg")
        .args(["-v", "trace", "-nostdin", "-i"])
        .arg(&file)
        .args([
            "-map",
            "0:v",
            "-c",
            "copy",
            "-bsf:v",
            "trace_headers",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    let log = String::from_utf8_lossy(&trace.stderr);
    let idr = log
        .lines()
        .filter(|l| l.contains("nal_unit_type") && l.trim_end().ends_with("= 5"))
        .count();
    assert_eq!(idr, want.len(), "IDR slices in {keys:?}");
}

/// `(YLOW, YAVG, YHIGH)` of the first frame of `file` (FFmpeg's
/// signalstats: the 10th and 90th percentile and the mean of the luma, in
/// 8-bit code values), after the filter `vf` (empty for none).
fn luma_stats(file: &Path, vf: &str) -> (f64, f64, f64) {
    let chain = if vf.is_empty() {
        "signalstats,metadata=print:file=-".to_owned()
    } else {
        format!("{vf},signalstats,metadata=print:file=-")
    };
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(file)
        .args(["-frames:v", "1", "-vf", &chain, "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("lavfi.signalstats.{key}=")))
            .unwrap_or_else(|| panic!("{key} missing in {text}"))
            .parse()
            .unwrap()
    };
    (get("YLOW"), get("YAVG"), get("YHIGH"))
}

#[tokio::test]
async fn hdr_pq_source_is_tone_mapped_not_washed_out() {
    let media = tempfile::tempdir().unwrap();
    // The same pattern as SDR, and as HDR10 (PQ, BT.2020, 10-bit) with its
    // white at 203 nits (ITU-R BT.2408's HDR reference white), lossless.
    let pattern = "testsrc2=size=640x360:rate=25";
    let sdr = ffmpeg(
        media.path(),
        "sdr.mkv",
        &[
            "-f", "lavfi", "-i", pattern, "-t", "1", "-pix_fmt", "yuv420p", "-c:v", "ffv1",
        ],
    );
    let pq = ffmpeg(
        media.path(),
        "pq.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            pattern,
            "-t",
            "1",
            "-vf",
            "format=gbrpf32le,zscale=tin=bt709:pin=bt709:min=bt709:rin=full:\
             t=smpte2084:p=bt2020:m=bt2020nc:r=tv:npl=203,format=yuv420p10le",
            "-color_trc",
            "smpte2084",
            "-color_primaries",
            "bt2020",
            "-colorspace",
            "bt2020nc",
            "-c:v",
            "ffv1",
        ],
    );
    let v = videosync_transcode::probe(&pq).unwrap().video.unwrap();
    assert_eq!(v.color_transfer.as_deref(), Some("smpte2084"));

    let (lo, _, hi) = luma_stats(&sdr, "");
    let sdr_spread = hi - lo;
    // The PQ code values squeezed into 8 bits as they are: washed out.
    let (lo, _, hi) = luma_stats(&pq, "format=yuv420p");
    assert!(
        hi - lo < 0.5 * sdr_spread,
        "control: {lo}..{hi} vs {sdr_spread}"
    );

    let (_m, out) = transcodes_to_valid_ladder(&pq, &[360]).await;
    let top = joined(
        &out.root,
        "360p",
        SegmentFormat::Fmp4,
        &["seg_00000.m4s".to_owned()],
    );
    let (lo, avg, hi) = luma_stats(&top, "");
    assert!(
        hi - lo > 0.85 * sdr_spread,
        "tone-mapped luma spans {lo}..{hi} (mean {avg}), SDR spans {sdr_spread}"
    );
    let (_, sdr_avg, _) = luma_stats(&sdr, "");
    assert!((avg - sdr_avg).abs() < 15.0, "mean {avg} vs SDR {sdr_avg}");
}

#[tokio::test]
async fn segments_start_at_the_same_time_on_rungs_of_different_rates() {
    let media = tempfile::tempdir().unwrap();
    let dir = media.path();
    // Two MPEG-TS recordings joined byte for byte: the muxers' start
    // offsets leave a 17 ms hole in the video timestamps at the join, so
    // the segment that starts there starts off the 50 and 25 fps grids.
    let part = |name: &str, offset: &str| {
        let mut args = video_src("1280x720", "50", "2");
        args.extend(
            [
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
                "-output_ts_offset",
                offset,
            ]
            .map(String::from),
        );
        std::fs::read(ffmpeg(dir, name, &strs(&args))).unwrap()
    };
    let mut bytes = part("a.ts", "0");
    bytes.extend(part("b.ts", "2"));
    let src = dir.join("joined.ts");
    std::fs::write(&src, bytes).unwrap();

    // check_ladder: every rung's keyframes within 2 ms of where its
    // playlist says each segment starts.
    let (m, out) = transcodes_to_valid_ladder(&src, &[720, 360]).await;
    let rates: Vec<f64> = m
        .renditions
        .iter()
        .map(|r| r.rendition.frame_rate)
        .collect();
    assert_eq!(rates, [50.0, 25.0]);
    let starts = |rung: &str| -> Vec<f64> {
        let pl =
            parse_media(&std::fs::read_to_string(out.root.join(rung).join("index.m3u8")).unwrap())
                .unwrap();
        let names: Vec<String> = pl.segments.iter().map(|s| s.uri.clone()).collect();
        let file = joined(&out.root, rung, SegmentFormat::Fmp4, &names);
        let info = ffprobe_json(
            &[
                "-select_streams",
                "v:0",
                "-show_entries",
                "frame=pts_time,key_frame",
            ],
            &file,
        );
        info["frames"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["key_frame"] == 1)
            .map(|f| f["pts_time"].as_str().unwrap().parse::<f64>().unwrap())
            .collect()
    };
    let (a, b) = (starts("720p"), starts("360p"));
    assert_eq!(a.len(), b.len(), "{a:?} {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 0.0005, "720p {a:?}, 360p {b:?}");
    }
    // The join really is off the grid (else this test proves nothing).
    assert!(
        a.iter()
            .any(|t| ((t * 25.0) - (t * 25.0).round()).abs() > 0.1),
        "{a:?}"
    );
}
