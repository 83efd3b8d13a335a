//! Chunked mode: a long source split at segment boundaries into parts that
//! different workers encode; a final step writes the playlists over all of
//! them.
//!
//! Chunks cut at segment boundaries, which are keyframes on every rung. A
//! chunk seeks to its first segment's time, decodes from the keyframe
//! before it, drops what comes earlier and stops at the first frame of the
//! next chunk, applying the same rule as a single pass ("a segment starts
//! at the first frame at or after `n x segment length`"). Segments carry
//! their place on the timeline (fMP4 `tfdt`, TS timestamps), so the ladder
//! is one continuous track per rendition, as a player sees a single-pass
//! ladder. The audio and the images are one more part over the whole
//! source: they are cheap, and one AAC encoder keeps the audio free of
//! priming gaps at chunk borders.
//!
//! The plan carries the encoder asked for, not the one found on the
//! planning machine: the worker that runs a video part resolves it on its
//! own machine (NVENC where it has a usable GPU, for `Auto`). Parts made by
//! different encoders cannot form one rendition, so [`finish`] refuses
//! them with both named; on a fleet of mixed machines, ask for `Software`
//! or `Nvenc` and route the parts accordingly.
//!
//! ```no_run
//! # async fn run(dest: videosync_transcode::Destination) -> Result<(), videosync_transcode::TranscodeError> {
//! use videosync_transcode::{chunked, CancelToken, TranscodeOptions};
//! let plan = chunked::plan("movie.mp4", &TranscodeOptions::default(), 30).await?;
//! let mut results = Vec::new();
//! for i in 0..plan.parts().len() {
//!     // On any worker, in any order.
//!     results.push(chunked::run(&plan, i, "movie.mp4", &dest, None, &CancelToken::new()).await?);
//! }
//! let manifest = chunked::finish(&plan, &results, &dest).await?;
//! # Ok(()) }
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TranscodeError;
use crate::pipeline::{PartResult, SegmentRange};
use crate::plan::Planned;
use crate::progress::{CancelToken, ProgressFn};
use crate::transcode::{
    finish as finish_ladder, prepare, run_part_stored, Destination, Manifest, TranscodeOptions,
};

const OP: &str = "transcode";

/// One part of a chunked transcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSpec {
    /// The segments of every rung this part encodes, if any.
    pub video: Option<SegmentRange>,
    /// Whether this part makes the audio, the poster and the storyboard.
    pub extras: bool,
}

/// A chunked transcode, decided once (probe and ladder) and shared by
/// every part's worker; serialisable to travel in job payloads or the
/// store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkPlan {
    planned: Planned,
    parts: Vec<PartSpec>,
    source_name: String,
}

impl ChunkPlan {
    /// The parts, video chunks in timeline order, then the extras.
    pub fn parts(&self) -> &[PartSpec] {
        &self.parts
    }
}

/// What one part produced; hand every part's result to [`finish`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartOutput {
    index: usize,
    result: PartResult,
}

impl PartOutput {
    /// The part's index in [`ChunkPlan::parts`].
    pub fn index(&self) -> usize {
        self.index
    }
}

/// The video chunks of a source of `duration_s`: ranges of
/// `segments_per_chunk` segments, the last one open-ended.
pub fn chunk_ranges(
    duration_s: f64,
    segment_seconds: u32,
    segments_per_chunk: u32,
) -> Vec<SegmentRange> {
    let per = segments_per_chunk.max(1);
    let total = (duration_s / f64::from(segment_seconds.max(1)))
        .ceil()
        .max(1.0) as u32;
    let mut out = Vec::new();
    let mut start = 0;
    while start + per < total {
        out.push(SegmentRange {
            start,
            end: Some(start + per),
        });
        start += per;
    }
    out.push(SegmentRange { start, end: None });
    out
}

/// Probes `input` and plans a chunked transcode of `segments_per_chunk`
/// segments per video chunk.
///
/// # Errors
/// As [`crate::transcode`] for a bad source.
pub async fn plan(
    input: impl AsRef<Path>,
    opts: &TranscodeOptions,
    segments_per_chunk: u32,
) -> Result<ChunkPlan, TranscodeError> {
    let input = input.as_ref();
    let planned = prepare(input, opts).await?;
    // An audio-only source has no video to split: the extras part is all.
    let video_chunks = if planned.ladder.rungs.is_empty() {
        Vec::new()
    } else {
        chunk_ranges(
            planned.duration_s,
            planned.ladder.segment_seconds,
            segments_per_chunk,
        )
    };
    let mut parts: Vec<PartSpec> = video_chunks
        .into_iter()
        .map(|r| PartSpec {
            video: Some(r),
            extras: false,
        })
        .collect();
    parts.push(PartSpec {
        video: None,
        extras: true,
    });
    Ok(ChunkPlan {
        planned,
        parts,
        source_name: input.display().to_string(),
    })
}

/// Encodes part `index` of `plan` from `input` (the same source, perhaps
/// downloaded again on another machine) into `dest`.
///
/// # Errors
/// As [`crate::transcode`]; [`TranscodeError::InvalidInput`] for an index
/// outside the plan. On error the part's objects are removed.
pub async fn run(
    plan: &ChunkPlan,
    index: usize,
    input: impl AsRef<Path>,
    dest: &Destination,
    progress: Option<ProgressFn>,
    cancel: &CancelToken,
) -> Result<PartOutput, TranscodeError> {
    let input = input.as_ref();
    let spec = plan
        .parts
        .get(index)
        .ok_or_else(|| TranscodeError::InvalidInput {
            op: OP,
            path: input.display().to_string(),
            reason: format!("part {index} of a plan with {} parts", plan.parts.len()),
        })?;
    let part = plan.planned.part(input, spec.video, spec.extras);
    let (result, _) = run_part_stored(part, dest, progress, cancel).await?;
    Ok(PartOutput { index, result })
}

/// Writes the playlists, the manifest and the master over every part's
/// output (in any order; each part exactly once).
///
/// # Errors
/// [`TranscodeError::InvalidOutput`] when parts are missing, repeated or
/// disagree; as [`crate::transcode`] otherwise.
pub async fn finish(
    plan: &ChunkPlan,
    outputs: &[PartOutput],
    dest: &Destination,
) -> Result<Manifest, TranscodeError> {
    let path = Path::new(&plan.source_name);
    let mut ordered: Vec<Option<&PartOutput>> = vec![None; plan.parts.len()];
    for o in outputs {
        match ordered.get_mut(o.index) {
            Some(slot @ None) => *slot = Some(o),
            _ => {
                return Err(TranscodeError::InvalidOutput {
                    op: OP,
                    path: plan.source_name.clone(),
                    reason: format!("part {} is unknown or given twice", o.index),
                })
            }
        }
    }
    let results: Vec<PartResult> = ordered
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            o.map(|o| o.result.clone())
                .ok_or_else(|| TranscodeError::InvalidOutput {
                    op: OP,
                    path: plan.source_name.clone(),
                    reason: format!("part {i} is missing"),
                })
        })
        .collect::<Result<_, _>>()?;
    finish_ladder(path, &plan.planned, &results, dest).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_source() {
        let r = chunk_ranges(20.0, 4, 2);
        assert_eq!(
            r,
            [
                SegmentRange {
                    start: 0,
                    end: Some(2)
                },
                SegmentRange {
                    start: 2,
                    end: Some(4)
                },
                SegmentRange {
                    start: 4,
                    end: None
                },
            ]
        );
        assert_eq!(chunk_ranges(3.0, 4, 2), [SegmentRange::ALL]);
        assert_eq!(chunk_ranges(0.0, 4, 0), [SegmentRange::ALL]);
    }
}
