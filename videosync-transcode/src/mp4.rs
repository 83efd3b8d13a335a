//! The few ISO-BMFF (MP4) box operations the fMP4 segmenter needs.
//!
//! Every segment is muxed by its own fragmented-MP4 muxer, which writes
//! `ftyp moov moof mdat` (and perhaps `mfra`). [`split_segment`] keeps the
//! init part (`ftyp moov`) and the media part (`moof mdat`) apart, and
//! [`patch_fragments`] rewrites what a fresh muxer cannot know: the
//! fragment sequence number (`mfhd`) and the track's decode time at the
//! start of the segment (`tfdt`), so that segments from different muxers,
//! workers or chunks form one continuous track.

use std::fmt;

/// A malformed box structure; the segmenter reports it as an internal
/// error, since the bytes come from FFmpeg's own muxer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BoxError(pub(crate) String);

impl fmt::Display for BoxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed MP4 boxes: {}", self.0)
    }
}

impl std::error::Error for BoxError {}

/// One box: its type and the byte range of the whole box (header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BoxRef {
    kind: [u8; 4],
    start: usize,
    header: usize,
    end: usize,
}

/// The boxes laid end to end in `data[start..end]`.
fn boxes(data: &[u8], start: usize, end: usize) -> Result<Vec<BoxRef>, BoxError> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        if end - pos < 8 {
            return Err(BoxError(format!("{} trailing bytes at {pos}", end - pos)));
        }
        let size32 = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let kind = [data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]];
        let (size, header) = match size32 {
            0 => (end - pos, 8),
            1 => {
                if end - pos < 16 {
                    return Err(BoxError(format!("short large-size box at {pos}")));
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[pos + 8..pos + 16]);
                let size = usize::try_from(u64::from_be_bytes(b))
                    .map_err(|_| BoxError(format!("box too large at {pos}")))?;
                (size, 16)
            }
            n => (n as usize, 8),
        };
        if size < header || size > end - pos {
            return Err(BoxError(format!(
                "box {} at {pos} has size {size}, {} bytes left",
                String::from_utf8_lossy(&kind),
                end - pos
            )));
        }
        out.push(BoxRef {
            kind,
            start: pos,
            header,
            end: pos + size,
        });
        pos += size;
    }
    Ok(out)
}

/// A muxed segment split into its init part (`ftyp`, `moov`) and its media
/// part (every `moof` and `mdat`, in order). Anything else the muxer wrote
/// at the top level (`mfra`, `free`, `sidx`) is dropped.
pub(crate) fn split_segment(data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), BoxError> {
    let mut init = Vec::new();
    let mut media = Vec::new();
    for b in boxes(data, 0, data.len())? {
        match &b.kind {
            b"ftyp" | b"moov" => init.extend_from_slice(&data[b.start..b.end]),
            b"moof" | b"mdat" => media.extend_from_slice(&data[b.start..b.end]),
            _ => {}
        }
    }
    if init.is_empty() || media.is_empty() {
        return Err(BoxError("segment without moov or moof".to_owned()));
    }
    Ok((init, media))
}

fn be32(data: &[u8], at: usize) -> Result<u32, BoxError> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| BoxError(format!("truncated field at {at}")))
}

/// How many bytes from the start of a segment's media part (`moof mdat`)
/// hold its first fragment's box and its first sample, the keyframe a
/// segment opens with: the byte range an I-frame playlist lists. The
/// fragment must use `default-base-is-moof` (the segmenter's muxer flags),
/// so the sample data offset counts from the `moof`.
pub(crate) fn first_sample_end(media: &[u8]) -> Result<u64, BoxError> {
    let moof = boxes(media, 0, media.len())?
        .into_iter()
        .find(|b| &b.kind == b"moof")
        .ok_or_else(|| BoxError("no moof".to_owned()))?;
    let traf = boxes(media, moof.start + moof.header, moof.end)?
        .into_iter()
        .find(|b| &b.kind == b"traf")
        .ok_or_else(|| BoxError("moof without traf".to_owned()))?;
    let mut default_size = None;
    let mut first = None;
    for b in boxes(media, traf.start + traf.header, traf.end)? {
        let body = b.start + b.header;
        match &b.kind {
            b"tfhd" => {
                let flags = be32(media, body)? & 0x00ff_ffff;
                // track_ID, then the optional fields in flag order.
                let mut at = body + 8;
                for (flag, width) in [(0x01, 8), (0x02, 4), (0x08, 4)] {
                    if flags & flag != 0 {
                        at += width;
                    }
                }
                if flags & 0x10 != 0 {
                    default_size = Some(be32(media, at)?);
                }
            }
            b"trun" if first.is_none() => {
                let flags = be32(media, body)? & 0x00ff_ffff;
                if flags & 0x01 == 0 {
                    return Err(BoxError("trun without a data offset".to_owned()));
                }
                let offset = be32(media, body + 8)?;
                let mut at = body + 12;
                if flags & 0x04 != 0 {
                    at += 4;
                }
                if flags & 0x100 != 0 {
                    at += 4;
                }
                let size = if flags & 0x200 != 0 {
                    Some(be32(media, at)?)
                } else {
                    None
                };
                first = Some((offset, size));
            }
            _ => {}
        }
    }
    let (offset, size) = first.ok_or_else(|| BoxError("traf without trun".to_owned()))?;
    let size = size
        .or(default_size)
        .ok_or_else(|| BoxError("no size for the first sample".to_owned()))?;
    let end = moof.start as u64 + u64::from(offset) + u64::from(size);
    if end > media.len() as u64 {
        return Err(BoxError(format!(
            "first sample ends at {end}, past the segment"
        )));
    }
    Ok(end)
}

/// Rewrites the fragments of one segment's media part in place: the first
/// `moof` gets sequence number `sequence` (the next ones count on), and
/// the first fragment's `tfdt` gets `base_decode_time`, later fragments
/// keep their offset from it.
pub(crate) fn patch_fragments(
    media: &mut [u8],
    sequence: u32,
    base_decode_time: u64,
) -> Result<(), BoxError> {
    let mut seq = sequence;
    let mut shift: Option<i128> = None;
    let len = media.len();
    for top in boxes(media, 0, len)? {
        if &top.kind != b"moof" {
            continue;
        }
        for child in boxes(media, top.start + top.header, top.end)? {
            match &child.kind {
                b"mfhd" => {
                    let at = child.start + child.header + 4;
                    if at + 4 > child.end {
                        return Err(BoxError("short mfhd".to_owned()));
                    }
                    media[at..at + 4].copy_from_slice(&seq.to_be_bytes());
                }
                b"traf" => {
                    for leaf in boxes(media, child.start + child.header, child.end)? {
                        if &leaf.kind == b"tfdt" {
                            patch_tfdt(media, leaf, base_decode_time, &mut shift)?;
                        }
                    }
                }
                _ => {}
            }
        }
        seq = seq.wrapping_add(1);
    }
    if shift.is_none() {
        return Err(BoxError("no tfdt in the segment".to_owned()));
    }
    Ok(())
}

fn patch_tfdt(
    data: &mut [u8],
    b: BoxRef,
    base: u64,
    shift: &mut Option<i128>,
) -> Result<(), BoxError> {
    let at = b.start + b.header;
    if at + 4 > b.end {
        return Err(BoxError("short tfdt".to_owned()));
    }
    let version = data[at];
    let field = at + 4;
    let old: u64 = match version {
        1 if field + 8 <= b.end => {
            let mut v = [0u8; 8];
            v.copy_from_slice(&data[field..field + 8]);
            u64::from_be_bytes(v)
        }
        0 if field + 4 <= b.end => u64::from(u32::from_be_bytes([
            data[field],
            data[field + 1],
            data[field + 2],
            data[field + 3],
        ])),
        _ => return Err(BoxError(format!("tfdt version {version}"))),
    };
    let delta = *shift.get_or_insert(i128::from(base) - i128::from(old));
    let new = u64::try_from(i128::from(old) + delta)
        .map_err(|_| BoxError("decode time out of range".to_owned()))?;
    match version {
        1 => data[field..field + 8].copy_from_slice(&new.to_be_bytes()),
        _ => {
            let small = u32::try_from(new)
                .map_err(|_| BoxError("decode time too large for tfdt v0".to_owned()))?;
            data[field..field + 4].copy_from_slice(&small.to_be_bytes());
        }
    }
    Ok(())
}

/// The decode times (`tfdt`) of every fragment, in order; for tests and
/// the chunk checks.
#[cfg(test)]
pub(crate) fn decode_times(media: &[u8]) -> Result<Vec<u64>, BoxError> {
    let mut out = Vec::new();
    for top in boxes(media, 0, media.len())? {
        if &top.kind != b"moof" {
            continue;
        }
        for child in boxes(media, top.start + top.header, top.end)? {
            if &child.kind != b"traf" {
                continue;
            }
            for leaf in boxes(media, child.start + child.header, child.end)? {
                if &leaf.kind == b"tfdt" {
                    let at = leaf.start + leaf.header + 4;
                    let mut v = [0u8; 8];
                    v.copy_from_slice(&media[at..at + 8]);
                    out.push(u64::from_be_bytes(v));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn fragment(seq: u32, tfdt: u64) -> Vec<u8> {
        let mut mfhd = vec![0, 0, 0, 0];
        mfhd.extend_from_slice(&seq.to_be_bytes());
        let mut tfdt_body = vec![1, 0, 0, 0];
        tfdt_body.extend_from_slice(&tfdt.to_be_bytes());
        let traf = bx(
            b"traf",
            &[bx(b"tfhd", &[0; 8]), bx(b"tfdt", &tfdt_body)].concat(),
        );
        let moof = bx(b"moof", &[bx(b"mfhd", &mfhd), traf].concat());
        [moof, bx(b"mdat", &[7; 5])].concat()
    }

    #[test]
    fn splits_and_patches() {
        let file = [
            bx(b"ftyp", b"iso5"),
            bx(b"moov", &[1, 2, 3]),
            fragment(1, 0),
            fragment(2, 900),
            bx(b"mfra", &[0; 4]),
        ]
        .concat();
        let (init, mut media) = split_segment(&file).unwrap();
        assert_eq!(
            init,
            [bx(b"ftyp", b"iso5"), bx(b"moov", &[1, 2, 3])].concat()
        );
        patch_fragments(&mut media, 41, 90_000).unwrap();
        assert_eq!(decode_times(&media).unwrap(), [90_000, 90_900]);
        assert_eq!(&media[20..24], &41u32.to_be_bytes());
    }

    #[test]
    fn rejects_truncated_boxes() {
        let mut file = [bx(b"ftyp", b"iso5"), fragment(1, 0)].concat();
        file.truncate(file.len() - 2);
        assert!(split_segment(&file).is_err());
        assert!(split_segment(&[0, 0, 0, 4, b'f']).is_err());
        assert!(split_segment(&bx(b"ftyp", b"x")).is_err());
    }
}
