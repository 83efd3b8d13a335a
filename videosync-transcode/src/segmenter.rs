//! One HLS segment at a time, muxed in memory.
//!
//! Every segment gets its own muxer writing into a byte buffer (FFmpeg's
//! custom I/O), so a segment is complete and in hand the moment it ends and
//! can go straight to the object store; memory holds one segment per
//! rendition, whatever the length of the source.
//!
//! - MPEG-TS: each segment starts with PAT and PMT and carries the
//!   timestamps it was given (`mpegts_copyts`), so segments made by
//!   different muxers, workers or chunks line up. Every segment's muxer
//!   starts its continuity counters afresh; they are renumbered to run on
//!   from the previous segment's ([`ContinuityCounters`]), so a player or
//!   validator reading the segments in a row sees no discontinuity (except
//!   at the border of two chunks of a chunked transcode, made apart).
//! - fMP4: each muxer writes `ftyp moov moof mdat`; the `ftyp moov` part is
//!   the rendition's `init.mp4` (identical for every segment of a
//!   rendition), and the fragment's `tfdt` and sequence number are
//!   rewritten to the segment's place on the track timeline (see
//!   [`crate::mp4`]).
//!
//! Packets arrive in the encoder's time base with timestamps relative to
//! the source's start; the segmenter adds [`TIMELINE_OFFSET_S`] so that no
//! decode timestamp (B-frame reordering, AAC priming) is negative.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use ff::format::context::StreamIo;
use ff::Rational;
use ffmpeg_next as ff;
use videosync_hls::ladder::SegmentFormat;

use crate::mp4;

/// Seconds added to every output timestamp: presentation starts at this
/// time on every rendition, which keeps all decode timestamps positive.
pub const TIMELINE_OFFSET_S: i64 = 10;

/// A `Write` into a shared buffer the segmenter takes back after the
/// muxer is done.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A finished segment.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Segment number (its place on the timeline, `start / segment length`).
    pub(crate) index: u32,
    /// The media bytes (`moof mdat`, or the TS packets).
    pub(crate) bytes: Vec<u8>,
    /// For fMP4: the rendition's init segment (`ftyp moov`).
    pub(crate) init: Option<Vec<u8>>,
    /// Whether the first packet was a keyframe.
    pub(crate) starts_with_keyframe: bool,
    /// Bytes from the start of `bytes` that hold the opening keyframe (for
    /// I-frame playlists), when it could be told.
    pub(crate) keyframe_bytes: Option<u64>,
}

/// An error from the segmenter, as text for the pipeline's error.
pub(crate) type SegError = String;

struct Open {
    index: u32,
    output: ff::format::context::Output,
    buf: SharedBuf,
    out_tb: Rational,
    /// [`TIMELINE_OFFSET_S`] in `out_tb`.
    offset: i64,
    first_dts: Option<i64>,
    first_key: bool,
}

/// Muxes one rendition's packets into a sequence of segments.
pub(crate) struct Segmenter {
    format: SegmentFormat,
    in_tb: Rational,
    open: Option<Open>,
    counters: ContinuityCounters,
}

/// MPEG-TS packet size.
const TS_PACKET: usize = 188;

/// How many bytes from the start of a TS segment hold its tables and its
/// first PES packet (the keyframe it opens with): everything before the
/// second packet that starts a PES on the PID of the first one.
pub(crate) fn first_pes_end(bytes: &[u8]) -> Option<u64> {
    let mut pid_of_first = None;
    for (n, p) in bytes.chunks_exact(TS_PACKET).enumerate() {
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let starts_unit = p[1] & 0x40 != 0;
        if !starts_unit {
            continue;
        }
        // Payload after the adaptation field, if any.
        let mut at = 4;
        if p[3] & 0x20 != 0 {
            at += 1 + usize::from(p[4]);
        }
        let is_pes = p.get(at..at + 3) == Some(&[0, 0, 1][..]);
        match pid_of_first {
            None if is_pes => pid_of_first = Some(pid),
            Some(first) if first == pid && is_pes => return Some((n * TS_PACKET) as u64),
            _ => {}
        }
    }
    pid_of_first.map(|_| bytes.len() as u64)
}

/// The continuity counter of every PID across the segments of one
/// rendition.
#[derive(Debug, Default)]
pub(crate) struct ContinuityCounters {
    last: std::collections::HashMap<u16, u8>,
}

impl ContinuityCounters {
    /// Renumbers the 4-bit continuity counters of the TS packets in
    /// `bytes` to continue from the last ones seen: +1 per packet with a
    /// payload, unchanged for one with only an adaptation field. Bytes that
    /// are not whole sync-aligned packets are left alone.
    pub(crate) fn renumber(&mut self, bytes: &mut [u8]) {
        if bytes.len() % TS_PACKET != 0 {
            return;
        }
        for packet in bytes.chunks_exact_mut(TS_PACKET) {
            if packet[0] != 0x47 {
                continue;
            }
            let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
            if pid == 0x1fff {
                continue; // Null packets carry no counter worth keeping.
            }
            let has_payload = packet[3] & 0x10 != 0;
            let cc = match self.last.get(&pid) {
                Some(&last) if has_payload => (last + 1) & 0x0f,
                Some(&last) => last,
                None => packet[3] & 0x0f,
            };
            packet[3] = (packet[3] & 0xf0) | cc;
            self.last.insert(pid, cc);
        }
    }
}

impl Segmenter {
    /// A segmenter for packets in time base `in_tb`.
    pub(crate) fn new(format: SegmentFormat, in_tb: Rational) -> Self {
        Segmenter {
            format,
            in_tb,
            open: None,
            counters: ContinuityCounters::default(),
        }
    }

    /// Starts segment `index` for the stream of `encoder`; the previous
    /// segment must have been finished.
    pub(crate) fn begin(
        &mut self,
        index: u32,
        encoder: &ff::codec::Context,
    ) -> Result<(), SegError> {
        if self.open.is_some() {
            return Err("segment begun twice".to_owned());
        }
        let buf = SharedBuf::default();
        let io = StreamIo::from_write(buf.clone()).map_err(|e| format!("custom I/O: {e}"))?;
        let name = match self.format {
            SegmentFormat::Fmp4 => "mp4",
            SegmentFormat::Ts => "mpegts",
        };
        let mut output = ff::format::output_to_stream(io, None, Some(name))
            .map_err(|e| format!("{name} muxer: {e}"))?;
        {
            let mut stream = output
                .add_stream_with(encoder)
                .map_err(|e| format!("{name} stream: {e}"))?;
            stream.set_time_base(self.in_tb);
        }
        let mut opts = ff::Dictionary::new();
        match self.format {
            SegmentFormat::Fmp4 => {
                // One fragment per segment, written at the trailer; no
                // `mfra` index (dropped anyway).
                opts.set("movflags", "frag_custom+empty_moov+default_base_moof");
            }
            SegmentFormat::Ts => {
                opts.set("mpegts_copyts", "1");
            }
        }
        opts.set("avoid_negative_ts", "disabled");
        output
            .write_header_with(opts)
            .map_err(|e| format!("{name} header: {e}"))?;
        let out_tb = output
            .stream(0)
            .map(|s| s.time_base())
            .ok_or_else(|| "muxer lost its stream".to_owned())?;
        self.open = Some(Open {
            index,
            output,
            buf,
            out_tb,
            offset: TIMELINE_OFFSET_S * i64::from(out_tb.denominator())
                / i64::from(out_tb.numerator().max(1)),
            first_dts: None,
            first_key: false,
        });
        Ok(())
    }

    /// The number of the open segment.
    pub(crate) fn current(&self) -> Option<u32> {
        self.open.as_ref().map(|o| o.index)
    }

    /// Writes one packet (encoder time base, source-relative timestamps)
    /// to the open segment.
    pub(crate) fn write(&mut self, packet: &mut ff::Packet) -> Result<(), SegError> {
        let in_tb = self.in_tb;
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| "packet outside a segment".to_owned())?;
        packet.rescale_ts(in_tb, open.out_tb);
        let offset = open.offset;
        packet.set_pts(packet.pts().map(|p| p + offset));
        packet.set_dts(packet.dts().map(|d| d + offset));
        if open.first_dts.is_none() {
            open.first_dts = packet.dts().or(packet.pts());
            open.first_key = packet.is_key();
        }
        packet.set_stream(0);
        packet.set_position(-1);
        packet
            .write(&mut open.output)
            .map(|_| ())
            .map_err(|e| format!("mux segment {}: {e}", open.index))
    }

    /// Ends the open segment and returns it; `None` when no segment is
    /// open or the open one got no packet.
    pub(crate) fn finish(&mut self) -> Result<Option<Finished>, SegError> {
        let Some(mut open) = self.open.take() else {
            return Ok(None);
        };
        open.output
            .write_trailer()
            .map_err(|e| format!("finish segment {}: {e}", open.index))?;
        drop(open.output);
        let mut bytes = open.buf.take();
        let Some(first_dts) = open.first_dts else {
            return Ok(None);
        };
        match self.format {
            SegmentFormat::Ts => {
                self.counters.renumber(&mut bytes);
                let keyframe_bytes = open.first_key.then(|| first_pes_end(&bytes)).flatten();
                Ok(Some(Finished {
                    index: open.index,
                    bytes,
                    init: None,
                    starts_with_keyframe: open.first_key,
                    keyframe_bytes,
                }))
            }
            SegmentFormat::Fmp4 => {
                let (init, mut media) = mp4::split_segment(&bytes).map_err(|e| e.to_string())?;
                let base = u64::try_from(first_dts)
                    .map_err(|_| format!("segment {} starts before zero", open.index))?;
                mp4::patch_fragments(&mut media, open.index.wrapping_add(1), base)
                    .map_err(|e| e.to_string())?;
                let keyframe_bytes = open
                    .first_key
                    .then(|| mp4::first_sample_end(&media).ok())
                    .flatten();
                Ok(Some(Finished {
                    index: open.index,
                    bytes: media,
                    init: Some(init),
                    starts_with_keyframe: open.first_key,
                    keyframe_bytes,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, payload: bool, cc: u8) -> [u8; TS_PACKET] {
        let mut p = [0xffu8; TS_PACKET];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8 & 0x1f;
        p[2] = pid as u8;
        p[3] = if payload { 0x10 } else { 0x20 } | cc;
        p
    }

    #[test]
    fn continuity_counters_run_on_across_segments() {
        let mut counters = ContinuityCounters::default();
        let cc = |bytes: &[u8]| -> Vec<(u16, u8)> {
            bytes
                .chunks(TS_PACKET)
                .map(|p| ((u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]), p[3] & 0x0f))
                .collect()
        };
        // Every segment's muxer starts at 0 for the PAT, the PMT and the
        // video.
        let segment = |n: u8| -> Vec<u8> {
            let mut v = Vec::new();
            v.extend(packet(0, true, 0));
            v.extend(packet(0x1000, true, 0));
            for i in 0..n {
                v.extend(packet(0x100, true, i));
            }
            // An adaptation-field-only packet keeps the counter.
            v.extend(packet(0x100, false, n - 1));
            v
        };
        let mut a = segment(3);
        counters.renumber(&mut a);
        assert_eq!(
            cc(&a),
            [
                (0, 0),
                (0x1000, 0),
                (0x100, 0),
                (0x100, 1),
                (0x100, 2),
                (0x100, 2)
            ]
        );
        let mut b = segment(15);
        counters.renumber(&mut b);
        let got = cc(&b);
        assert_eq!(got[0], (0, 1));
        assert_eq!(got[1], (0x1000, 1));
        // 0x100 runs on from 2 and wraps after 15.
        let video: Vec<u8> = got[2..].iter().map(|&(_, c)| c).collect();
        assert_eq!(
            video,
            [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 1]
        );
        // Not whole packets: untouched.
        let mut odd = vec![0x47u8; 100];
        counters.renumber(&mut odd);
        assert!(odd.iter().all(|&b| b == 0x47));
    }
}
