//! The audio rendition: decoded once, downmixed and resampled, encoded once
//! to AAC-LC, cut at the same segment boundaries as the video.
//!
//! Audio is placed on the video's timeline by its timestamps: the
//! rendition starts at the video's first frame (time zero), audio that
//! starts later is preceded by silence, a gap in the timestamps is filled
//! with silence, and audio that overlaps what was already placed (or comes
//! before zero) is trimmed. Running the samples on contiguously from the
//! first one instead would shift everything after a gap or a late start,
//! and audio would drift out of sync with the picture.

use std::sync::mpsc::Receiver;

use ff::format::Sample;
use ff::util::channel_layout::ChannelLayout;
use ff::Rational;
use ffmpeg_next as ff;
use videosync_hls::ladder::{AudioPlan, SegmentFormat};

use crate::error::StageError;
use crate::segmenter::{Finished, Segmenter};
use crate::stage::{ts_seconds, SegTiming};

/// AAC-LC frame length in samples.
const AAC_FRAME: usize = 1024;

/// Largest drift, in output samples, between where a frame's timestamp
/// puts it and where the samples so far end, that is left alone: half an
/// AAC frame (about 10 ms), well above resampler latency and timestamp
/// rounding, well below what anyone hears as out of sync.
const DRIFT_TOLERANCE: i64 = AAC_FRAME as i64 / 2;

/// Longest gap filled with silence, in seconds. A bigger jump is taken for
/// a broken or reset clock (a timestamp discontinuity), not a pause, and
/// the samples run on contiguously.
const MAX_GAP_S: i64 = 10;

/// Encoded packets of a segment not begun yet.
struct Held {
    seg: u32,
    start: i64,
    packets: Vec<ff::Packet>,
    samples: i64,
}

/// What a resampler was made for: sample format, channel layout bits, rate.
type AudioKey = (Sample, u64, u32);

/// Everything the audio thread needs besides its packets.
pub(crate) struct AudioJob {
    /// The source stream's codec parameters.
    pub(crate) params: ff::codec::Parameters,
    /// The source stream's time base.
    pub(crate) time_base: Rational,
    /// The source's start (the video's first timestamp) in seconds; audio
    /// timestamps are placed relative to it.
    pub(crate) start_s: f64,
    pub(crate) plan: AudioPlan,
    pub(crate) format: SegmentFormat,
    pub(crate) segment_seconds: u32,
    /// Whether the audio is the whole ladder (an audio-only source): then
    /// a stream of which no frame decodes is the input's fault, where
    /// beside video it only costs the audio rendition.
    pub(crate) required: bool,
}

/// Encodes the audio packets until the channel closes.
pub(crate) fn run_audio(
    job: &AudioJob,
    packets: &Receiver<ff::Packet>,
    emit: &mut dyn FnMut(Finished) -> Result<(), StageError>,
) -> Result<Vec<SegTiming>, StageError> {
    let mut decoder = ff::codec::Context::from_parameters(job.params.clone())
        .and_then(|c| c.decoder().audio())
        .map_err(|e| StageError::Unsupported(format!("audio decoder: {e}")))?;
    let codec = ff::encoder::find_by_name("aac").ok_or("AAC encoder not available")?;
    let mut enc = ff::codec::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .map_err(|e| format!("aac: {e}"))?;
    let channels = if job.plan.channels == 1 { 1 } else { 2 };
    let layout = if channels == 1 {
        ChannelLayout::MONO
    } else {
        ChannelLayout::STEREO
    };
    let rate = i32::try_from(job.plan.sample_rate).map_err(|_| "absurd sample rate")?;
    enc.set_rate(rate);
    enc.set_channel_layout(layout);
    enc.set_format(Sample::F32(ff::format::sample::Type::Planar));
    enc.set_bit_rate(usize::try_from(job.plan.bitrate).unwrap_or(128_000));
    enc.set_time_base(Rational::new(1, rate));
    if job.format == SegmentFormat::Fmp4 {
        enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    }
    let mut encoder = enc.open_as(codec).map_err(|e| format!("open aac: {e}"))?;
    let tb = Rational::new(1, rate);
    let mut segmenter = Segmenter::new(job.format, tb);
    let seg_samples = i64::from(job.segment_seconds) * i64::from(rate);

    // The resampler and the input it was made for; a stream that changes
    // format, layout or rate mid-way (a broadcast recording, joined files)
    // gets a new one instead of "input changed".
    let mut resampler: Option<(ff::software::resampling::Context, AudioKey)> = None;
    let mut fifo: Vec<Vec<f32>> = vec![Vec::new(); channels];
    // Output timestamp (samples from the source start) of the next sample
    // handed to the encoder; set by the first decoded frame.
    let mut next_pts: Option<i64> = None;
    let mut segments: Vec<(u32, i64)> = Vec::new();
    let mut end_pts = 0i64;

    // Packets of a segment that has begun but may turn out to be the
    // audio's last few milliseconds past the video's end: they are held
    // until they add up to MIN_TAIL, and at the end of the stream a shorter
    // tail joins the segment before instead of becoming a segment of its
    // own, which a playlist would list as lasting 0.000 s.
    let min_tail = i64::from(rate) / 4;
    let mut held: Option<Held> = None;
    let mut drain = |encoder: &mut ff::encoder::Audio,
                     segmenter: &mut Segmenter,
                     segments: &mut Vec<(u32, i64)>,
                     end_pts: &mut i64,
                     held: &mut Option<Held>|
     -> Result<(), StageError> {
        let mut packet = ff::Packet::empty();
        while encoder.receive_packet(&mut packet).is_ok() {
            let pts = packet.pts().unwrap_or(0);
            let samples = packet.duration().max(0);
            if let Some(h) = held.as_mut() {
                h.samples += samples;
                h.packets.push(packet.clone());
                if h.samples >= min_tail {
                    if let Some(done) = segmenter.finish()? {
                        emit(done)?;
                    }
                    if let Some(h) = held.take() {
                        segmenter.begin(h.seg, encoder)?;
                        segments.push((h.seg, h.start));
                        for mut p in h.packets {
                            *end_pts = p.pts().unwrap_or(0) + p.duration().max(0);
                            segmenter.write(&mut p)?;
                        }
                    }
                }
                continue;
            }
            let seg = u32::try_from(pts.max(0) / seg_samples).unwrap_or(u32::MAX);
            // The encoder's last packet can carry no samples of its own
            // (only what decoding the one before needs); it stays with that
            // one rather than opening an empty segment past the end.
            let carries_samples = samples > 0 || segmenter.current().is_none();
            if carries_samples && segmenter.current().is_none_or(|cur| seg > cur) {
                if segmenter.current().is_some() {
                    *held = Some(Held {
                        seg,
                        start: pts,
                        packets: vec![packet.clone()],
                        samples,
                    });
                    continue;
                }
                segmenter.begin(seg, encoder)?;
                segments.push((seg, pts));
            }
            *end_pts = pts + samples;
            segmenter.write(&mut packet)?;
        }
        Ok(())
    };

    let send = |encoder: &mut ff::encoder::Audio,
                fifo: &mut Vec<Vec<f32>>,
                next_pts: &mut i64,
                n: usize|
     -> Result<(), String> {
        let mut frame =
            ff::frame::Audio::new(Sample::F32(ff::format::sample::Type::Planar), n, layout);
        frame.set_rate(job.plan.sample_rate);
        for (ch, buf) in fifo.iter_mut().enumerate() {
            frame.plane_mut::<f32>(ch)[..n].copy_from_slice(&buf[..n]);
            buf.drain(..n);
        }
        frame.set_pts(Some(*next_pts));
        *next_pts += i64::try_from(n).unwrap_or(0);
        encoder
            .send_frame(&frame)
            .map_err(|e| format!("encode audio: {e}"))
    };

    let mut decoded = ff::frame::Audio::empty();
    let push = |decoded: &ff::frame::Audio,
                resampler: &mut Option<(ff::software::resampling::Context, AudioKey)>,
                fifo: &mut Vec<Vec<f32>>,
                next_pts: &mut Option<i64>|
     -> Result<(), StageError> {
        // The rendition starts at time zero of the video's timeline.
        let placed = next_pts.get_or_insert(0);
        let written = *placed + i64::try_from(fifo[0].len()).unwrap_or(i64::MAX);
        let at = decoded.timestamp().or(decoded.pts()).map(|t| {
            ((ts_seconds(t, job.time_base) - job.start_s) * f64::from(rate)).round() as i64
        });
        let in_layout = if decoded.channel_layout().bits() == 0 {
            ChannelLayout::default(i32::from(decoded.channels()))
        } else {
            decoded.channel_layout()
        };
        let mut input = decoded.clone();
        input.set_channel_layout(in_layout);
        let key = (input.format(), in_layout.bits(), input.rate());
        if resampler.as_ref().map(|r| r.1) != Some(key) {
            // What the old resampler still holds belongs before the change.
            if let Some((old, _)) = resampler.as_mut() {
                let mut rest = ff::frame::Audio::empty();
                if old.flush(&mut rest).is_ok() && rest.samples() > 0 {
                    append(fifo, &rest);
                }
            }
            let ctx = ff::software::resampling::Context::get(
                input.format(),
                in_layout,
                input.rate(),
                Sample::F32(ff::format::sample::Type::Planar),
                layout,
                job.plan.sample_rate,
            )
            .map_err(|e| StageError::Unsupported(format!("audio resampler for {key:?}: {e}")))?;
            *resampler = Some((ctx, key));
        }
        let mut out = ff::frame::Audio::empty();
        if let Some((r, _)) = resampler.as_mut() {
            r.run(&input, &mut out)
                .map_err(|e| format!("resample audio: {e}"))?;
        }
        let mut skip = 0;
        match at.map(|at| at - written) {
            Some(gap) if gap > DRIFT_TOLERANCE && gap <= MAX_GAP_S * i64::from(rate) => {
                let silence = usize::try_from(gap).unwrap_or(0);
                for buf in fifo.iter_mut() {
                    buf.resize(buf.len() + silence, 0.0);
                }
            }
            Some(overlap) if overlap < -DRIFT_TOLERANCE => {
                skip = usize::try_from(-overlap).unwrap_or(usize::MAX);
            }
            _ => {}
        }
        append_from(fifo, &out, skip);
        Ok(())
    };

    let (mut frames, mut corrupt) = (0u64, 0u64);
    for packet in packets {
        // A corrupt packet loses its samples, not the rendition.
        if decoder.send_packet(&packet).is_err() {
            corrupt += 1;
            continue;
        }
        while decoder.receive_frame(&mut decoded).is_ok() {
            frames += 1;
            push(&decoded, &mut resampler, &mut fifo, &mut next_pts)?;
            let mut pts = next_pts.unwrap_or(0);
            while fifo[0].len() >= AAC_FRAME {
                send(&mut encoder, &mut fifo, &mut pts, AAC_FRAME)?;
                drain(
                    &mut encoder,
                    &mut segmenter,
                    &mut segments,
                    &mut end_pts,
                    &mut held,
                )?;
            }
            next_pts = Some(pts);
        }
    }
    if decoder.send_eof().is_ok() {
        while decoder.receive_frame(&mut decoded).is_ok() {
            frames += 1;
            push(&decoded, &mut resampler, &mut fifo, &mut next_pts)?;
        }
    }
    if frames == 0 && job.required {
        return Err(StageError::Input(format!(
            "no audio frame could be decoded ({corrupt} corrupt packets)"
        )));
    }
    if let Some((r, _)) = resampler.as_mut() {
        let mut out = ff::frame::Audio::empty();
        if r.flush(&mut out).is_ok() && out.samples() > 0 {
            append(&mut fifo, &out);
        }
    }
    let mut pts = next_pts.unwrap_or(0);
    while !fifo[0].is_empty() {
        let n = fifo[0].len().min(AAC_FRAME);
        send(&mut encoder, &mut fifo, &mut pts, n)?;
        drain(
            &mut encoder,
            &mut segmenter,
            &mut segments,
            &mut end_pts,
            &mut held,
        )?;
    }
    encoder
        .send_eof()
        .map_err(|e| format!("flush audio encoder: {e}"))?;
    drain(
        &mut encoder,
        &mut segmenter,
        &mut segments,
        &mut end_pts,
        &mut held,
    )?;
    // A tail shorter than MIN_TAIL stays in the last segment.
    if let Some(h) = held.take() {
        for mut p in h.packets {
            end_pts = p.pts().unwrap_or(0) + p.duration().max(0);
            segmenter.write(&mut p)?;
        }
    }
    if let Some(done) = segmenter.finish()? {
        emit(done)?;
    }
    let mut out = Vec::with_capacity(segments.len());
    for (i, &(index, start)) in segments.iter().enumerate() {
        let end = segments.get(i + 1).map_or(end_pts, |s| s.1);
        out.push(SegTiming {
            index,
            duration_s: (end - start) as f64 / f64::from(rate),
        });
    }
    Ok(out)
}

fn append(fifo: &mut [Vec<f32>], frame: &ff::frame::Audio) {
    append_from(fifo, frame, 0);
}

/// Appends the samples of `frame` from sample `skip` on.
fn append_from(fifo: &mut [Vec<f32>], frame: &ff::frame::Audio, skip: usize) {
    let n = frame.samples();
    if n <= skip {
        return;
    }
    for (ch, buf) in fifo.iter_mut().enumerate() {
        if ch < frame.planes() {
            buf.extend_from_slice(&frame.plane::<f32>(ch)[skip..n]);
        }
    }
}
