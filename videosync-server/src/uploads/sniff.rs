//! What container the first bytes of an upload are, from their signatures,
//! so that a file that is not media is refused before anything is stored
//! or queued. A match says "worth probing", not "valid": the transcoder's
//! probe still has the last word.

/// How many leading bytes [`sniff`] wants to see (fewer when the file is
/// shorter).
pub const SNIFF_BYTES: usize = 4096;

/// The container `head` (the first bytes of a file) starts like, by the
/// names of [`crate::config::KNOWN_CONTAINERS`], or `None`.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    // ISO base media (MP4, MOV, M4A, 3GP): a box size, then `ftyp`; old
    // QuickTime files may open with another top-level box.
    if at(4, b"ftyp") {
        return Some(if at(8, b"qt  ") { "mov" } else { "mp4" });
    }
    if [b"moov", b"mdat", b"free", b"wide", b"skip"]
        .iter()
        .any(|b| at(4, *b))
    {
        return Some("mov");
    }
    if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        // EBML: the DocType says which.
        let window = &head[..head.len().min(64)];
        return Some(if contains(window, b"webm") {
            "webm"
        } else {
            "matroska"
        });
    }
    if at(0, b"RIFF") && at(8, b"AVI ") {
        return Some("avi");
    }
    if at(0, b"RIFF") && at(8, b"WAVE") {
        return Some("wav");
    }
    if at(0, b"FLV\x01") {
        return Some("flv");
    }
    if at(0, b"OggS") {
        return Some("ogg");
    }
    if at(0, b"fLaC") {
        return Some("flac");
    }
    if at(0, b"ID3") {
        return Some("mp3");
    }
    if is_transport_stream(head) {
        return Some("mpegts");
    }
    // ADTS AAC: 12-bit sync, layer 0; MPEG audio: 11-bit sync with a
    // valid layer and bit rate index.
    if head.len() >= 2 && head[0] == 0xFF {
        let b = head[1];
        if b & 0xF6 == 0xF0 {
            return Some("aac");
        }
        if b & 0xE0 == 0xE0 && b & 0x06 != 0 && head.get(2).is_some_and(|c| c & 0xF0 != 0xF0) {
            return Some("mp3");
        }
    }
    None
}

/// MPEG-TS: a sync byte every 188 bytes (or 192, with timestamps) for as
/// many packets as the head holds, at least three.
fn is_transport_stream(head: &[u8]) -> bool {
    [(0usize, 188usize), (4, 192)].iter().any(|&(first, step)| {
        let packets: Vec<usize> = (first..head.len()).step_by(step).collect();
        packets.len() >= 3 && packets.iter().all(|&i| head[i] == 0x47)
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_recognised() {
        let mut ts = vec![0u8; 188 * 4];
        for i in 0..4 {
            ts[i * 188] = 0x47;
        }
        let mut webm = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x82, 0x84];
        webm.extend_from_slice(b"webm");
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"\0\0\0\x20ftypisom\0\0\x02\0", Some("mp4")),
            (b"\0\0\0\x14ftypqt  \0\0\x02\0", Some("mov")),
            (b"\0\0\0\x08wide\0\0\0\0mdat", Some("mov")),
            (&webm, Some("webm")),
            (
                &[0x1A, 0x45, 0xDF, 0xA3, 0x42, 0x82, 0x88],
                Some("matroska"),
            ),
            (b"RIFF\0\0\0\0AVI LIST", Some("avi")),
            (b"RIFF\0\0\0\0WAVEfmt ", Some("wav")),
            (b"FLV\x01\x05", Some("flv")),
            (b"OggS\0\x02", Some("ogg")),
            (b"fLaC\0\0\0\x22", Some("flac")),
            (b"ID3\x04\0", Some("mp3")),
            (&[0xFF, 0xFB, 0x90, 0x00], Some("mp3")),
            (&[0xFF, 0xF1, 0x50, 0x80], Some("aac")),
            (&ts, Some("mpegts")),
            (b"%PDF-1.7\n", None),
            (b"<html><body>", None),
            (b"\x89PNG\r\n\x1a\n", None),
            (b"PK\x03\x04", None),
            (b"", None),
            (b"\0\0\0", None),
            (&[0x47, 0, 0], None),
            (&[0xFF, 0xFF, 0xFF], None),
        ];
        for (head, want) in cases {
            assert_eq!(sniff(head), *want, "{head:?}");
        }
    }
}
