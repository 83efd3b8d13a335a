//! What a produced segment really holds, read back from its bytes.
//!
//! The validator must not trust the code that wrote a ladder: a muxer that
//! miscounted a duration would otherwise be checked against its own
//! mistake. This module reads what a player reads and shares no code with
//! the segmenter:
//!
//! - fMP4: the init segment's tracks (`tkhd`, `mdhd` time scale, `hdlr`,
//!   the sample entry and its `avcC`/`hvcC`, `trex` defaults), then each
//!   fragment's `tfhd`, `tfdt` and `trun`: every sample's decode and
//!   presentation time, size and sync flag, and whether the first sample
//!   really holds an IDR picture;
//! - MPEG-TS: 188-byte packets, PAT and PMT, PES timestamps, the
//!   random-access indicator, the first video PES's NAL units, ADTS frames
//!   for AAC, and the continuity counter of every PID, which must run on
//!   from one segment of a rendition to the next.
//!
//! [`RenditionInspector`] reads one rendition's segments in order and gives
//! a [`Measured`] per segment. Malformed bytes give [`Error::InvalidInput`]
//! naming what was being read and where; nothing here panics on any input.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Error;

/// What one segment holds, as read from its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Presentation time of its earliest sample, seconds, on the track's
    /// own timeline (the same on every rendition of a ladder).
    pub start: f64,
    /// From its earliest presentation to the end of its last sample,
    /// seconds; `None` for an MPEG-TS video segment of one frame, whose
    /// frame length the bytes do not tell.
    pub duration: Option<f64>,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Samples (video frames or audio frames).
    pub samples: u32,
    /// Whether its first sample is a sync sample and, for H.264 and HEVC,
    /// holds an IDR (IRAP) picture. Always true for audio.
    pub starts_with_keyframe: bool,
    /// The longest time, seconds, from a keyframe to a later frame before
    /// the next keyframe (0 for audio and all-keyframe video).
    pub longest_without_keyframe: f64,
    /// Bytes from the segment's start through its first sample (fMP4) or
    /// through the last packet of its first video PES (MPEG-TS): what an
    /// I-frame playlist's byte range must cover.
    pub keyframe_end: Option<u64>,
    /// MPEG-TS packets whose continuity counter did not follow the
    /// previous packet of their PID (in this segment or the one before).
    #[serde(default)]
    pub continuity_errors: u32,
}

impl Measured {
    /// A segment of `duration` seconds from `start` that opens with a
    /// keyframe: for tests and callers that measured it some other way.
    pub fn new(start: f64, duration: f64, size_bytes: u64) -> Self {
        Measured {
            start,
            duration: Some(duration),
            size_bytes,
            samples: 1,
            starts_with_keyframe: true,
            longest_without_keyframe: 0.0,
            keyframe_end: None,
            continuity_errors: 0,
        }
    }
}

/// Reads one rendition's segments in playlist order.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionInspector {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Fmp4(Vec<Track>),
    Ts(BTreeMap<u16, u8>),
}

impl RenditionInspector {
    /// For fMP4 segments described by the init segment `init` (`ftyp moov`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when `init` has no `moov` with a track, or
    /// its boxes are malformed.
    pub fn fmp4(init: &[u8]) -> Result<Self, Error> {
        Ok(RenditionInspector {
            kind: Kind::Fmp4(parse_init(init)?),
        })
    }

    /// For MPEG-TS segments.
    pub fn ts() -> Self {
        RenditionInspector {
            kind: Kind::Ts(BTreeMap::new()),
        }
    }

    /// Reads the next segment of the rendition.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when the bytes are not a well-formed segment
    /// of this rendition's format, or hold no sample.
    pub fn segment(&mut self, bytes: &[u8]) -> Result<Measured, Error> {
        match &mut self.kind {
            Kind::Fmp4(tracks) => fragment(tracks, bytes),
            Kind::Ts(counters) => ts_segment(bytes, counters),
        }
    }
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::InvalidInput(what.to_string())
}

/// A bounds-checked big-endian reader.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], what: &'static str) -> Self {
        Reader { data, pos: 0, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(bad(format_args!(
                "{} is truncated: {n} bytes wanted at {} of {}",
                self.what,
                self.pos,
                self.data.len()
            )));
        };
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }
}

/// One ISO-BMFF box: its type, its body, and where the box starts in the
/// buffer it was read from.
struct Mp4Box<'a> {
    kind: [u8; 4],
    body: &'a [u8],
    start: usize,
    body_start: usize,
}

/// The boxes laid end to end in `data`, whose first byte is at `base` in
/// the segment.
fn children(data: &[u8], base: usize) -> Result<Vec<Mp4Box<'_>>, Error> {
    let mut out = Vec::new();
    let mut r = Reader::new(data, "an MP4 box header");
    while r.pos < data.len() {
        let start = r.pos;
        let size = r.u32()?;
        let kind: [u8; 4] = r.take(4)?.try_into().map_err(bad)?;
        let size = match size {
            0 => data.len() - start,
            1 => usize::try_from(r.u64()?).map_err(bad)?,
            n => n as usize,
        };
        let header = r.pos - start;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= data.len() && size >= header);
        let Some(end) = end else {
            return Err(bad(format_args!(
                "box '{}' at byte {} claims {size} bytes, {} are left",
                String::from_utf8_lossy(&kind),
                base + start,
                data.len() - start
            )));
        };
        out.push(Mp4Box {
            kind,
            body: &data[start + header..end],
            start: base + start,
            body_start: base + start + header,
        });
        r.pos = end;
    }
    Ok(out)
}

fn child<'a>(boxes: &'a [Mp4Box<'a>], kind: &[u8; 4]) -> Option<&'a Mp4Box<'a>> {
    boxes.iter().find(|b| &b.kind == kind)
}

fn need<'a>(
    boxes: &'a [Mp4Box<'a>],
    kind: &[u8; 4],
    inside: &str,
) -> Result<&'a Mp4Box<'a>, Error> {
    child(boxes, kind).ok_or_else(|| {
        bad(format_args!(
            "{inside} has no '{}' box",
            String::from_utf8_lossy(kind)
        ))
    })
}

/// A track of the init segment.
#[derive(Debug, Clone, PartialEq)]
struct Track {
    id: u32,
    timescale: u32,
    audio: bool,
    /// 4 for `avc*`, `hvc*`/`hev*` sample entries: the NAL length size.
    nal_length: Option<usize>,
    hevc: bool,
    default_duration: u32,
    default_size: u32,
    default_flags: u32,
}

fn parse_init(init: &[u8]) -> Result<Vec<Track>, Error> {
    let top = children(init, 0)?;
    let moov = need(&top, b"moov", "the init segment")?;
    let boxes = children(moov.body, moov.body_start)?;
    let mut tracks = Vec::new();
    for trak in boxes.iter().filter(|b| &b.kind == b"trak") {
        tracks.push(parse_trak(trak)?);
    }
    if let Some(mvex) = child(&boxes, b"mvex") {
        for trex in children(mvex.body, 0)?
            .iter()
            .filter(|b| &b.kind == b"trex")
        {
            let mut r = Reader::new(trex.body, "trex");
            r.u32()?;
            let id = r.u32()?;
            r.u32()?;
            let (duration, size, flags) = (r.u32()?, r.u32()?, r.u32()?);
            if let Some(t) = tracks.iter_mut().find(|t| t.id == id) {
                t.default_duration = duration;
                t.default_size = size;
                t.default_flags = flags;
            }
        }
    }
    if tracks.is_empty() {
        return Err(bad("the init segment's moov has no track"));
    }
    Ok(tracks)
}

fn parse_trak(trak: &Mp4Box<'_>) -> Result<Track, Error> {
    let boxes = children(trak.body, 0)?;
    let tkhd = need(&boxes, b"tkhd", "a trak")?;
    let mut r = Reader::new(tkhd.body, "tkhd");
    let version = r.u8()?;
    r.take(3)?;
    r.take(if version == 1 { 16 } else { 8 })?;
    let id = r.u32()?;
    let mdia = children(need(&boxes, b"mdia", "a trak")?.body, 0)?;
    let mdhd = need(&mdia, b"mdhd", "an mdia")?;
    let mut r = Reader::new(mdhd.body, "mdhd");
    let version = r.u8()?;
    r.take(3)?;
    r.take(if version == 1 { 16 } else { 8 })?;
    let timescale = r.u32()?;
    if timescale == 0 {
        return Err(bad(format_args!("track {id} has time scale 0")));
    }
    let hdlr = need(&mdia, b"hdlr", "an mdia")?;
    let handler = hdlr.body.get(8..12).unwrap_or_default();
    let mut nal_length = None;
    let mut hevc = false;
    if let Some(minf) = child(&mdia, b"minf") {
        let minf = children(minf.body, 0)?;
        if let Some(stbl) = child(&minf, b"stbl") {
            let stbl = children(stbl.body, 0)?;
            if let Some(stsd) = child(&stbl, b"stsd") {
                // version/flags and entry count, then the first entry.
                let entries = children(stsd.body.get(8..).unwrap_or_default(), 0)?;
                if let Some(entry) = entries.first() {
                    hevc = matches!(&entry.kind, b"hvc1" | b"hev1");
                    if matches!(&entry.kind, b"avc1" | b"avc3") || hevc {
                        nal_length = Some(nal_length_size(entry, hevc)?);
                    }
                }
            }
        }
    }
    Ok(Track {
        id,
        timescale,
        audio: handler == b"soun",
        nal_length,
        hevc,
        default_duration: 0,
        default_size: 0,
        default_flags: 0,
    })
}

/// The NAL length size from a visual sample entry's `avcC` or `hvcC`.
fn nal_length_size(entry: &Mp4Box<'_>, hevc: bool) -> Result<usize, Error> {
    // A visual sample entry's fixed fields take 78 bytes before its boxes.
    let boxes = children(entry.body.get(78..).unwrap_or_default(), 0)?;
    let (kind, at) = if hevc { (b"hvcC", 21) } else { (b"avcC", 4) };
    let config = need(&boxes, kind, "the video sample entry")?;
    let byte = config
        .body
        .get(at)
        .ok_or_else(|| bad("the decoder configuration is truncated"))?;
    Ok(usize::from(byte & 3) + 1)
}

const TRUN_DATA_OFFSET: u32 = 0x1;
const TRUN_FIRST_FLAGS: u32 = 0x4;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTO: u32 = 0x800;
const SAMPLE_NON_SYNC: u32 = 0x1_0000;

/// One sample in decode order: decode time, presentation time (ticks),
/// duration, sync, and its byte range in the segment.
struct Sample {
    dts: i64,
    pts: i64,
    duration: u32,
    sync: bool,
    offset: u64,
    size: u32,
}

fn fragment(tracks: &[Track], bytes: &[u8]) -> Result<Measured, Error> {
    let mut samples: Vec<Sample> = Vec::new();
    let mut track: Option<&Track> = None;
    let mut mdat_ranges = Vec::new();
    for top in children(bytes, 0)? {
        match &top.kind {
            b"mdat" => {
                let at = top.body_start as u64;
                mdat_ranges.push((at, at + top.body.len() as u64));
            }
            b"moof" => {
                for traf in children(top.body, top.body_start)?
                    .iter()
                    .filter(|b| &b.kind == b"traf")
                {
                    let t = traf_samples(tracks, traf, top.start as u64, &mut samples)?;
                    if track.is_some_and(|seen| seen.id != t.id) {
                        return Err(bad("a segment holds more than one track"));
                    }
                    track = Some(t);
                }
            }
            _ => {}
        }
    }
    let Some(track) = track else {
        return Err(bad("the segment has no moof with a track fragment"));
    };
    let Some(first) = samples.first() else {
        return Err(bad("the segment's fragments hold no sample"));
    };
    for s in &samples {
        let end = s.offset + u64::from(s.size);
        if !mdat_ranges.iter().any(|&(a, b)| s.offset >= a && end <= b) {
            return Err(bad(format_args!(
                "a sample at bytes {}..{end} lies outside every mdat",
                s.offset
            )));
        }
    }
    let idr = match track.nal_length {
        Some(len) => {
            let start = usize::try_from(first.offset).map_err(bad)?;
            let data = bytes
                .get(start..start + first.size as usize)
                .unwrap_or_default();
            length_prefixed_has_irap(data, len, track.hevc)
        }
        None => true,
    };
    let scale = f64::from(track.timescale);
    let start = samples.iter().map(|s| s.pts).min().unwrap_or(0);
    let end = samples
        .iter()
        .map(|s| s.pts + i64::from(s.duration))
        .max()
        .unwrap_or(start);
    let mut longest = 0i64;
    let mut last_sync = first.dts;
    for s in &samples {
        if s.sync {
            last_sync = s.dts;
        } else {
            longest = longest.max(s.dts - last_sync);
        }
    }
    Ok(Measured {
        start: start as f64 / scale,
        duration: Some((end - start) as f64 / scale),
        size_bytes: bytes.len() as u64,
        samples: u32::try_from(samples.len()).unwrap_or(u32::MAX),
        starts_with_keyframe: track.audio || (first.sync && idr),
        longest_without_keyframe: if track.audio {
            0.0
        } else {
            longest as f64 / scale
        },
        keyframe_end: Some(first.offset + u64::from(first.size)),
        continuity_errors: 0,
    })
}

/// Appends the samples of one `traf`; returns its track.
fn traf_samples<'t>(
    tracks: &'t [Track],
    traf: &Mp4Box<'_>,
    moof_start: u64,
    out: &mut Vec<Sample>,
) -> Result<&'t Track, Error> {
    let boxes = children(traf.body, 0)?;
    let tfhd = need(&boxes, b"tfhd", "a traf")?;
    let mut r = Reader::new(tfhd.body, "tfhd");
    let flags = r.u32()? & 0xff_ffff;
    let id = r.u32()?;
    let track = tracks.iter().find(|t| t.id == id).ok_or_else(|| {
        bad(format_args!(
            "a fragment of track {id}, which the init segment lacks"
        ))
    })?;
    let base = if flags & 0x1 != 0 {
        r.u64()?
    } else {
        moof_start
    };
    if flags & 0x2 != 0 {
        r.u32()?;
    }
    let default_duration = if flags & 0x8 != 0 {
        r.u32()?
    } else {
        track.default_duration
    };
    let default_size = if flags & 0x10 != 0 {
        r.u32()?
    } else {
        track.default_size
    };
    let default_flags = if flags & 0x20 != 0 {
        r.u32()?
    } else {
        track.default_flags
    };
    let tfdt = need(&boxes, b"tfdt", "a traf")?;
    let mut r = Reader::new(tfdt.body, "tfdt");
    let version = r.u8()?;
    r.take(3)?;
    let decode_time = if version == 1 {
        r.u64()?
    } else {
        u64::from(r.u32()?)
    };
    let mut dts = i64::try_from(decode_time).map_err(bad)?;
    let mut next_offset = base;
    for trun in boxes.iter().filter(|b| &b.kind == b"trun") {
        let mut r = Reader::new(trun.body, "trun");
        let word = r.u32()?;
        let (version, flags) = (word >> 24, word & 0xff_ffff);
        let count = r.u32()?;
        let mut offset = next_offset;
        if flags & TRUN_DATA_OFFSET != 0 {
            let delta = i64::from(r.u32()? as i32);
            offset = base
                .checked_add_signed(delta)
                .ok_or_else(|| bad("a trun data offset points before the segment"))?;
        }
        let first_flags = if flags & TRUN_FIRST_FLAGS != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        // Each sample takes at least 4 bytes when any field is present;
        // bound the count by what the box can hold before allocating.
        let per = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTO]
            .iter()
            .filter(|&&f| flags & f != 0)
            .count();
        if per > 0 && count as usize > trun.body.len() / (4 * per) {
            return Err(bad(format_args!(
                "a trun claims {count} samples it has no room for"
            )));
        }
        for i in 0..count {
            let duration = if flags & TRUN_DURATION != 0 {
                r.u32()?
            } else {
                default_duration
            };
            let size = if flags & TRUN_SIZE != 0 {
                r.u32()?
            } else {
                default_size
            };
            let sample_flags = if flags & TRUN_FLAGS != 0 {
                r.u32()?
            } else if i == 0 {
                first_flags.unwrap_or(default_flags)
            } else {
                default_flags
            };
            let cto = if flags & TRUN_CTO != 0 {
                let raw = r.u32()?;
                if version == 0 {
                    i64::from(raw)
                } else {
                    i64::from(raw as i32)
                }
            } else {
                0
            };
            out.push(Sample {
                dts,
                pts: dts + cto,
                duration,
                sync: sample_flags & SAMPLE_NON_SYNC == 0,
                offset,
                size,
            });
            dts += i64::from(duration);
            offset += u64::from(size);
        }
        next_offset = offset;
    }
    Ok(track)
}

/// Whether the length-prefixed NAL units of one sample hold an IDR (H.264)
/// or IRAP (HEVC) picture.
fn length_prefixed_has_irap(mut data: &[u8], len: usize, hevc: bool) -> bool {
    while data.len() > len {
        let size = data[..len]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        let Some(nal) = data.get(len..len.saturating_add(size)) else {
            return false;
        };
        if nal.first().is_some_and(|&h| is_irap(h, hevc)) {
            return true;
        }
        data = &data[len + size..];
    }
    false
}

fn is_irap(header: u8, hevc: bool) -> bool {
    if hevc {
        (16..=21).contains(&((header >> 1) & 0x3f))
    } else {
        header & 0x1f == 5
    }
}

const TS_PACKET: usize = 188;

/// One PES of the segment: timestamps (90 kHz), whether its first packet
/// set the random-access indicator, and the byte just past its last packet.
struct Pes {
    pts: i64,
    dts: i64,
    random_access: bool,
    end: usize,
}

#[derive(Default)]
struct Elementary {
    video: bool,
    hevc: bool,
    adts: bool,
    pes: Vec<Pes>,
    /// The first PES's payload (video) or every payload with the index of
    /// the PES it belongs to (ADTS audio).
    payload: Vec<u8>,
    starts: Vec<(usize, usize)>,
}

fn ts_segment(bytes: &[u8], counters: &mut BTreeMap<u16, u8>) -> Result<Measured, Error> {
    if bytes.is_empty() || bytes.len() % TS_PACKET != 0 {
        return Err(bad(format_args!(
            "an MPEG-TS segment of {} bytes is not a whole number of 188-byte packets",
            bytes.len()
        )));
    }
    let mut pmt_pid = None;
    let mut streams: BTreeMap<u16, Elementary> = BTreeMap::new();
    let mut continuity_errors = 0u32;
    for (n, packet) in bytes.chunks_exact(TS_PACKET).enumerate() {
        if packet[0] != 0x47 {
            return Err(bad(format_args!("MPEG-TS packet {n} has no sync byte")));
        }
        let start_indicator = packet[1] & 0x40 != 0;
        let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
        let control = (packet[3] >> 4) & 3;
        let cc = packet[3] & 0xf;
        let mut payload_at = 4;
        let (mut discontinuity, mut random_access) = (false, false);
        if control & 2 != 0 {
            let len = usize::from(packet[4]);
            if len > 183 {
                return Err(bad(format_args!(
                    "MPEG-TS packet {n} has an adaptation field of {len} bytes"
                )));
            }
            if len > 0 {
                discontinuity = packet[5] & 0x80 != 0;
                random_access = packet[5] & 0x40 != 0;
            }
            payload_at = 5 + len;
        }
        if control & 1 == 0 || pid == 0x1fff {
            continue;
        }
        if let Some(&last) = counters.get(&pid) {
            if cc != (last + 1) & 0xf && cc != last && !discontinuity {
                continuity_errors += 1;
            }
        }
        counters.insert(pid, cc);
        let payload = &packet[payload_at..];
        if pid == 0 && start_indicator {
            pmt_pid = Some(read_pat(payload)?);
        } else if Some(pid) == pmt_pid && start_indicator {
            read_pmt(payload, &mut streams)?;
        } else if let Some(es) = streams.get_mut(&pid) {
            es_packet(
                es,
                payload,
                start_indicator,
                random_access,
                (n + 1) * TS_PACKET,
            )?;
        }
    }
    if pmt_pid.is_none() {
        return Err(bad("the MPEG-TS segment has no PAT"));
    }
    let mut measured = if let Some(video) = streams.values().find(|s| s.video && !s.pes.is_empty())
    {
        ts_video(video)
    } else if let Some(audio) = streams.values().find(|s| s.adts && !s.pes.is_empty()) {
        ts_audio(audio)?
    } else {
        return Err(bad("the MPEG-TS segment holds no video or AAC audio PES"));
    };
    measured.size_bytes = bytes.len() as u64;
    measured.continuity_errors = continuity_errors;
    Ok(measured)
}

/// A PSI section after the pointer field: its body between the 8-byte
/// header and the CRC.
fn section(payload: &[u8], table: u8) -> Result<&[u8], Error> {
    let pointer = usize::from(*payload.first().ok_or_else(|| bad("an empty PSI packet"))?);
    let s = payload
        .get(1 + pointer..)
        .filter(|s| s.len() >= 8 && s[0] == table)
        .ok_or_else(|| bad(format_args!("a PSI packet without table {table}")))?;
    let length = (usize::from(s[1] & 0xf) << 8) | usize::from(s[2]);
    s.get(8..3 + length)
        .filter(|_| length >= 9)
        .map(|body| &body[..body.len() - 4])
        .ok_or_else(|| bad(format_args!("table {table} is longer than its packet")))
}

fn read_pat(payload: &[u8]) -> Result<u16, Error> {
    section(payload, 0)?
        .chunks_exact(4)
        .find(|e| e[0] != 0 || e[1] != 0)
        .map(|e| (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]))
        .ok_or_else(|| bad("the PAT lists no program"))
}

fn read_pmt(payload: &[u8], streams: &mut BTreeMap<u16, Elementary>) -> Result<(), Error> {
    let body = section(payload, 2)?;
    let mut r = Reader::new(body, "the PMT");
    r.u16()?;
    let info = usize::from(r.u16()? & 0xfff);
    r.take(info)?;
    while r.pos < body.len() {
        let kind = r.u8()?;
        let pid = r.u16()? & 0x1fff;
        let info = usize::from(r.u16()? & 0xfff);
        r.take(info)?;
        let es = streams.entry(pid).or_default();
        es.video = matches!(kind, 0x1b | 0x24);
        es.hevc = kind == 0x24;
        es.adts = kind == 0x0f;
    }
    Ok(())
}

fn es_packet(
    es: &mut Elementary,
    payload: &[u8],
    start: bool,
    random_access: bool,
    end: usize,
) -> Result<(), Error> {
    if start {
        let mut r = Reader::new(payload, "a PES header");
        if r.take(3)? != [0, 0, 1] {
            return Err(bad("a PES without its start code"));
        }
        r.take(3)?;
        let flags = r.u16()?;
        let header_len = usize::from(r.u8()?);
        let header = r.take(header_len)?;
        let timestamp = |b: &[u8]| -> Result<i64, Error> {
            let b = b
                .get(..5)
                .ok_or_else(|| bad("a PES timestamp is truncated"))?;
            Ok((i64::from(b[0] >> 1 & 7) << 30)
                | (i64::from(b[1]) << 22)
                | (i64::from(b[2] >> 1) << 15)
                | (i64::from(b[3]) << 7)
                | i64::from(b[4] >> 1))
        };
        let pts = match flags >> 6 & 3 {
            2 | 3 => timestamp(header)?,
            _ => return Err(bad("a PES without a presentation timestamp")),
        };
        let dts = if flags >> 6 & 3 == 3 {
            timestamp(header.get(5..).unwrap_or_default())?
        } else {
            pts
        };
        es.pes.push(Pes {
            pts,
            dts,
            random_access,
            end,
        });
        if es.adts || es.pes.len() == 1 {
            es.starts.push((es.payload.len(), es.pes.len() - 1));
            es.payload.extend_from_slice(&payload[r.pos..]);
        }
        return Ok(());
    }
    let Some(last) = es.pes.last_mut() else {
        // The tail of a PES begun in an earlier segment.
        return Ok(());
    };
    last.end = end;
    if es.adts || es.pes.len() == 1 {
        es.payload.extend_from_slice(payload);
    }
    Ok(())
}

fn ts_video(es: &Elementary) -> Measured {
    let mut pts: Vec<i64> = es.pes.iter().map(|p| p.pts).collect();
    pts.sort_unstable();
    let mut deltas: Vec<i64> = pts
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|&d| d > 0)
        .collect();
    deltas.sort_unstable();
    let frame = deltas.get(deltas.len() / 2).copied();
    let start = pts.first().copied().unwrap_or(0);
    let last = pts.last().copied().unwrap_or(0);
    let sync = |p: &Pes| p.random_access;
    let mut longest = 0;
    let mut last_sync = es.pes.first().map_or(0, |p| p.dts);
    for p in &es.pes {
        if sync(p) {
            last_sync = p.dts;
        } else {
            longest = longest.max(p.dts - last_sync);
        }
    }
    let first_sync = es.pes.first().is_some_and(sync);
    Measured {
        start: start as f64 / 90_000.0,
        duration: frame.map(|f| (last + f - start) as f64 / 90_000.0),
        size_bytes: 0,
        samples: u32::try_from(es.pes.len()).unwrap_or(u32::MAX),
        starts_with_keyframe: first_sync && annex_b_has_irap(&es.payload, es.hevc),
        longest_without_keyframe: longest as f64 / 90_000.0,
        keyframe_end: es.pes.first().map(|p| p.end as u64),
        continuity_errors: 0,
    }
}

/// Whether Annex B bytes (start-code delimited NAL units) hold an IDR or
/// IRAP picture.
fn annex_b_has_irap(data: &[u8], hevc: bool) -> bool {
    data.windows(4)
        .any(|w| w[0] == 0 && w[1] == 0 && w[2] == 1 && is_irap(w[3], hevc))
}

const ADTS_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

fn ts_audio(es: &Elementary) -> Result<Measured, Error> {
    let data = &es.payload;
    let mut pos = 0;
    let mut frames = 0u32;
    // Seconds from each PES's timestamp to the end of its last frame.
    let mut ends = vec![0.0f64; es.pes.len()];
    let mut pes_index = 0;
    while pos + 7 <= data.len() {
        while es
            .starts
            .get(pes_index + 1)
            .is_some_and(|&(at, _)| at <= pos)
        {
            pes_index += 1;
        }
        let h = &data[pos..pos + 7];
        if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
            return Err(bad(format_args!(
                "no ADTS sync word at byte {pos} of the audio"
            )));
        }
        let rate = ADTS_RATES
            .get(usize::from(h[2] >> 2 & 0xf))
            .ok_or_else(|| bad("an ADTS header with a reserved sampling rate"))?;
        let length =
            (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        if length < 7 {
            return Err(bad(format_args!("an ADTS frame of {length} bytes")));
        }
        let samples = 1024 * (u32::from(h[6] & 3) + 1);
        let pes = es.starts.get(pes_index).map_or(0, |&(_, i)| i);
        let slot = ends
            .get_mut(pes)
            .ok_or_else(|| bad("ADTS frames before any PES"))?;
        *slot += f64::from(samples) / f64::from(*rate);
        frames += 1;
        pos += length;
    }
    let start = es.pes.iter().map(|p| p.pts).min().unwrap_or(0) as f64 / 90_000.0;
    let end = es
        .pes
        .iter()
        .zip(&ends)
        .map(|(p, e)| p.pts as f64 / 90_000.0 + e)
        .fold(start, f64::max);
    Ok(Measured {
        start,
        duration: Some(end - start),
        size_bytes: 0,
        samples: frames,
        starts_with_keyframe: true,
        longest_without_keyframe: 0.0,
        keyframe_end: es.pes.first().map(|p| p.end as u64),
        continuity_errors: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// An init segment with one H.264 video track (id 1, 90 kHz).
    fn init() -> Vec<u8> {
        let tkhd = cat(&[&[0; 12], &1u32.to_be_bytes(), &[0; 64]]);
        let mdhd = cat(&[&[0; 12], &90_000u32.to_be_bytes(), &[0; 8]]);
        let hdlr = cat(&[&[0; 8], b"vide", &[0; 13]]);
        let avcc = bx(b"avcC", &[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0]);
        let avc1 = bx(b"avc1", &cat(&[&[0; 78], &avcc]));
        let stsd = bx(b"stsd", &cat(&[&[0; 4], &1u32.to_be_bytes(), &avc1]));
        let minf = bx(b"minf", &bx(b"stbl", &stsd));
        let mdia = bx(
            b"mdia",
            &cat(&[&bx(b"mdhd", &mdhd), &bx(b"hdlr", &hdlr), &minf]),
        );
        let trak = bx(b"trak", &cat(&[&bx(b"tkhd", &tkhd), &mdia]));
        let trex = bx(
            b"trex",
            &cat(&[&[0; 4], &1u32.to_be_bytes(), &[0, 0, 0, 1], &[0; 12]]),
        );
        let moov = bx(b"moov", &cat(&[&trak, &bx(b"mvex", &trex)]));
        cat(&[&bx(b"ftyp", b"iso6\0\0\0\0"), &moov])
    }

    /// One fragment from 10 s: `frames` frames of 3000 ticks, the first
    /// flagged sync; the first holds an IDR NAL when `idr`.
    fn fragment_bytes(frames: u32, idr: bool) -> Vec<u8> {
        let sample = |i: u32| {
            let header = if i == 0 && idr { 0x65 } else { 0x41 };
            cat(&[&5u32.to_be_bytes(), &[header, 1, 2, 3, 4]])
        };
        let samples: Vec<Vec<u8>> = (0..frames).map(sample).collect();
        let mut trun_body = cat(&[
            &(0x0000_0001u32 | TRUN_SIZE | TRUN_FLAGS).to_be_bytes(),
            &frames.to_be_bytes(),
            &0u32.to_be_bytes(),
        ]);
        for (i, s) in samples.iter().enumerate() {
            trun_body.extend_from_slice(&(s.len() as u32).to_be_bytes());
            let flags = if i == 0 { 0x0200_0000u32 } else { 0x0101_0000 };
            trun_body.extend_from_slice(&flags.to_be_bytes());
        }
        let tfhd = cat(&[
            &0x0002_0008u32.to_be_bytes(),
            &1u32.to_be_bytes(),
            &3000u32.to_be_bytes(),
        ]);
        let tfdt = cat(&[&0x0100_0000u32.to_be_bytes(), &900_000u64.to_be_bytes()]);
        let traf_len = 8 + (8 + tfhd.len()) + (8 + tfdt.len()) + (8 + trun_body.len());
        let moof_len = 8 + 16 + traf_len;
        // The data offset counts from the moof to the first sample.
        trun_body[8..12].copy_from_slice(&((moof_len + 8) as u32).to_be_bytes());
        let traf = bx(
            b"traf",
            &cat(&[
                &bx(b"tfhd", &tfhd),
                &bx(b"tfdt", &tfdt),
                &bx(b"trun", &trun_body),
            ]),
        );
        let moof = bx(
            b"moof",
            &cat(&[&bx(b"mfhd", &[0, 0, 0, 0, 0, 0, 0, 1]), &traf]),
        );
        assert_eq!(moof.len(), moof_len);
        cat(&[&moof, &bx(b"mdat", &samples.concat())])
    }

    #[test]
    fn fmp4_fragment_is_read_from_its_boxes() {
        let mut r = RenditionInspector::fmp4(&init()).unwrap();
        let bytes = fragment_bytes(60, true);
        let m = r.segment(&bytes).unwrap();
        assert_eq!(m.start, 10.0);
        assert_eq!(m.duration, Some(2.0));
        assert_eq!(m.samples, 60);
        assert!(m.starts_with_keyframe);
        assert_eq!(m.size_bytes, bytes.len() as u64);
        // The moof, the mdat header and the first 9-byte sample.
        assert_eq!(m.keyframe_end, Some(bytes.len() as u64 - 59 * 9));
        assert!((m.longest_without_keyframe - 59.0 * 3000.0 / 90_000.0).abs() < 1e-9);
    }

    #[test]
    fn a_sync_flag_without_an_idr_is_no_keyframe() {
        let mut r = RenditionInspector::fmp4(&init()).unwrap();
        let m = r.segment(&fragment_bytes(3, false)).unwrap();
        assert!(!m.starts_with_keyframe);
    }

    #[test]
    fn truncated_or_garbled_fmp4_is_an_error_never_a_panic() {
        let bytes = fragment_bytes(5, true);
        for cut in 0..bytes.len() {
            let mut r = RenditionInspector::fmp4(&init()).unwrap();
            assert!(r.segment(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let init = init();
        for cut in 0..init.len() {
            let _ = RenditionInspector::fmp4(&init[..cut]);
        }
        // Flip every byte in turn: any answer, no panic.
        for i in 0..bytes.len() {
            let mut garbled = bytes.clone();
            garbled[i] ^= 0xff;
            let mut r = RenditionInspector::fmp4(&init).unwrap();
            let _ = r.segment(&garbled);
        }
        let err = RenditionInspector::fmp4(b"not an mp4 at all").unwrap_err();
        assert!(err.to_string().contains("box"), "{err}");
    }

    fn ts_packet(pid: u16, start: bool, cc: u8, random_access: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x47, (u8::from(start) << 6) | (pid >> 8) as u8, pid as u8];
        let room = 184 - usize::from(random_access) * 2;
        let stuffing = room.saturating_sub(payload.len());
        if random_access || stuffing > 0 {
            p.push(0x30 | cc);
            let len = 183 - payload.len().min(183);
            p.push(len as u8);
            if len > 0 {
                p.push(if random_access { 0x40 } else { 0 });
                p.extend(std::iter::repeat_n(0xff, len - 1));
            }
        } else {
            p.push(0x10 | cc);
        }
        p.extend_from_slice(payload);
        assert_eq!(p.len(), 188);
        p
    }

    fn psi(table: u8, body: &[u8]) -> Vec<u8> {
        let length = body.len() + 5 + 4;
        let mut s = vec![
            0,
            table,
            0xb0 | (length >> 8) as u8,
            length as u8,
            0,
            1,
            0xc1,
            0,
            0,
        ];
        s.extend_from_slice(body);
        s.extend_from_slice(&[0; 4]);
        s
    }

    fn pes(pts: i64, data: &[u8]) -> Vec<u8> {
        let t = |v: i64| {
            [
                0x21 | ((v >> 29) & 0x0e) as u8,
                (v >> 22) as u8,
                ((v >> 14) & 0xfe) as u8 | 1,
                (v >> 7) as u8,
                ((v << 1) & 0xfe) as u8 | 1,
            ]
        };
        cat(&[&[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5], &t(pts), data])
    }

    /// A TS segment: tables, then `frames` video frames of 3000 ticks from
    /// `pts0`, the first a random-access IDR; counters start at `cc`.
    fn ts_bytes(frames: i64, pts0: i64, tables: u8, cc: u8) -> Vec<u8> {
        let mut out = ts_packet(0, true, tables, false, &psi(0, &[0, 1, 0xe0, 0x20]));
        out.extend(ts_packet(
            0x20,
            true,
            tables,
            false,
            &psi(2, &[0xe1, 0, 0xf0, 0, 0x1b, 0xe1, 0, 0xf0, 0]),
        ));
        for i in 0..frames {
            let nal: &[u8] = if i == 0 {
                &[0, 0, 0, 1, 0x65, 9]
            } else {
                &[0, 0, 0, 1, 0x41, 9]
            };
            let c = (cc + i as u8) & 0xf;
            out.extend(ts_packet(
                0x100,
                true,
                c,
                i == 0,
                &pes(pts0 + i * 3000, nal),
            ));
        }
        out
    }

    #[test]
    fn ts_segments_are_read_from_their_packets() {
        let mut r = RenditionInspector::ts();
        let first = ts_bytes(30, 900_000, 0, 0);
        let m = r.segment(&first).unwrap();
        assert_eq!(m.start, 10.0);
        assert_eq!(m.duration, Some(1.0));
        assert_eq!(m.samples, 30);
        assert!(m.starts_with_keyframe);
        assert_eq!(m.keyframe_end, Some(3 * 188));
        assert_eq!(m.continuity_errors, 0);
        // The next segment runs its counters on: the tables from 1, the
        // video from 30.
        let next = r.segment(&ts_bytes(30, 990_000, 1, 14)).unwrap();
        assert_eq!(next.continuity_errors, 0);
        // Counters that restart are caught.
        let restarted = r.segment(&ts_bytes(30, 1_080_000, 0, 0)).unwrap();
        assert_eq!(restarted.continuity_errors, 3);
        // One frame: its length is unknown.
        assert_eq!(
            RenditionInspector::ts()
                .segment(&ts_bytes(1, 0, 0, 0))
                .unwrap()
                .duration,
            None
        );
    }

    #[test]
    fn ts_audio_is_timed_by_its_adts_frames() {
        // Two ADTS frames of 1024 samples at 48 kHz, 10 bytes each.
        let adts = [0xff, 0xf1, 0x4c, 0x80, 0x01, 0x5f, 0xfc, 0, 0, 0];
        let data = cat(&[&adts, &adts]);
        let mut out = ts_packet(0, true, 0, false, &psi(0, &[0, 1, 0xe0, 0x20]));
        out.extend(ts_packet(
            0x20,
            true,
            0,
            false,
            &psi(2, &[0xe1, 1, 0xf0, 0, 0x0f, 0xe1, 1, 0xf0, 0]),
        ));
        out.extend(ts_packet(0x101, true, 0, false, &pes(900_000, &data)));
        let m = RenditionInspector::ts().segment(&out).unwrap();
        assert_eq!(m.samples, 2);
        assert!((m.duration.unwrap() - 2048.0 / 48_000.0).abs() < 1e-9);
    }

    #[test]
    fn hostile_ts_is_an_error_never_a_panic() {
        assert!(RenditionInspector::ts().segment(&[0x47; 100]).is_err());
        assert!(RenditionInspector::ts().segment(&[0; 188]).is_err());
        let bytes = ts_bytes(3, 0, 0, 0);
        for i in 0..bytes.len() {
            let mut garbled = bytes.clone();
            garbled[i] ^= 0xa5;
            let _ = RenditionInspector::ts().segment(&garbled);
        }
    }
}
