//! The poster image and the storyboard (sprite sheets plus a WebVTT track
//! of `#xywh=` cues) for scrubbing previews.

use std::fmt::Write as _;
use std::sync::mpsc::Receiver;

use ff::format::Pixel;
use ff::Rational;
use ffmpeg_next as ff;
use serde::{Deserialize, Serialize};

use crate::error::StageError;
use crate::stage::FrameMsg;

/// Tiles per sheet row.
pub(crate) const STORYBOARD_COLUMNS: u32 = 10;
/// Tile rows per sheet.
pub(crate) const STORYBOARD_ROWS: u32 = 10;
/// Tile width in pixels (the height follows the display aspect ratio).
pub(crate) const TILE_WIDTH: u32 = 160;
/// Tallest tile: a 9:16 portrait tile, 160 x 284. Taller sources get
/// narrower tiles, so a sheet stays within 1600 x 2840 for any aspect
/// (JPEG cannot exceed 65 535 pixels a side, and a 1:250 source at 160
/// wide would need 40 000 per tile).
pub(crate) const TILE_MAX_HEIGHT: u32 = 284;
/// Most tiles in a storyboard; longer sources get longer intervals.
pub(crate) const MAX_TILES: u32 = 400;

/// The storyboard of a ladder, as written to the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Storyboard {
    /// The WebVTT track, relative to the ladder root.
    pub vtt: String,
    /// The sprite sheets, relative to the ladder root, in order.
    pub sheets: Vec<String>,
    /// Tile width in pixels.
    pub tile_width: u32,
    /// Tile height in pixels.
    pub tile_height: u32,
    /// Tiles per sheet row.
    pub columns: u32,
    /// Tile rows per full sheet.
    pub rows: u32,
    /// Seconds between tiles.
    pub interval_s: f64,
    /// Number of tiles.
    pub tiles: u32,
}

/// What the thumbnail thread made: encoded images, ready to store.
#[derive(Debug, Default)]
pub(crate) struct Thumbs {
    /// `poster.jpg`.
    pub(crate) poster: Option<Vec<u8>>,
    /// Sheets, in order.
    pub(crate) sheets: Vec<Vec<u8>>,
    /// The tile layout, when a storyboard was made.
    pub(crate) layout: Option<TileLayout>,
    /// Tile count.
    pub(crate) tiles: u32,
}

/// Tile geometry and timing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TileLayout {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) interval_s: f64,
}

/// What to make.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThumbJob {
    /// Display size of the source (after rotation).
    pub(crate) display: (u32, u32),
    /// Poster size (the top rung's).
    pub(crate) poster: Option<(u32, u32)>,
    /// Whether to make a storyboard.
    pub(crate) storyboard: bool,
    /// Source duration in seconds (for the poster time and tile interval).
    pub(crate) duration_s: f64,
}

/// Seconds between storyboard tiles for a source of `duration_s`: one a
/// second for short clips, longer so that no more than [`MAX_TILES`] are
/// made.
pub(crate) fn tile_interval(duration_s: f64) -> f64 {
    (duration_s / f64::from(MAX_TILES)).ceil().max(1.0)
}

/// When the poster is taken: the last frame at or before a tenth of the
/// source, or 10 s in.
pub(crate) fn poster_time(duration_s: f64) -> f64 {
    (duration_s * 0.1).min(10.0)
}

/// Every tile's time for a source of `duration_s` (known and positive).
pub(crate) fn tile_times(duration_s: f64) -> Vec<f64> {
    let interval = tile_interval(duration_s);
    (0..MAX_TILES + 1)
        .map(|k| f64::from(k) * interval)
        .take_while(|&t| t < duration_s)
        .collect()
}

/// Consumes the decoded frames, picks the poster and the tiles.
pub(crate) fn run_thumbs(
    job: &ThumbJob,
    frames: &Receiver<FrameMsg>,
) -> Result<Thumbs, StageError> {
    let poster_at = poster_time(job.duration_s);
    let interval = tile_interval(job.duration_s);
    let (tile_w, tile_h) = tile_size(job.display);
    let layout = TileLayout {
        width: tile_w,
        height: tile_h,
        interval_s: interval,
    };
    let mut out = Thumbs::default();
    let mut poster_frame: Option<std::sync::Arc<ff::frame::Video>> = None;
    let mut tile_scaler = Scaler::default();
    let mut sheet: Option<ff::frame::Video> = None;
    let mut next_tile = 0.0f64;
    let per_sheet = STORYBOARD_COLUMNS * STORYBOARD_ROWS;

    for msg in frames {
        if job.poster.is_some() && out.poster.is_none() {
            let take = poster_frame.is_none() || msg.time_s <= poster_at;
            if take {
                poster_frame = Some(msg.frame.clone());
            }
        }
        if job.storyboard && msg.time_s + 1e-6 >= next_tile {
            let tile = tile_scaler.scale(&msg.frame, tile_w, tile_h)?;
            let slot = out.tiles % per_sheet;
            if slot == 0 {
                if let Some(done) = sheet.take() {
                    out.sheets.push(encode_jpeg(&done)?);
                }
                sheet = Some(blank_sheet(tile_w, tile_h));
            }
            if let Some(s) = sheet.as_mut() {
                blit(
                    &tile,
                    s,
                    (slot % STORYBOARD_COLUMNS) * tile_w,
                    (slot / STORYBOARD_COLUMNS) * tile_h,
                );
            }
            out.tiles += 1;
            while next_tile <= msg.time_s + 1e-6 {
                next_tile += interval;
            }
        }
    }
    if let Some(done) = sheet.take() {
        // The last sheet keeps only the rows it uses.
        let used = (out.tiles - 1) % per_sheet / STORYBOARD_COLUMNS + 1;
        let mut cropped = ff::frame::Video::new(Pixel::YUVJ420P, done.width(), used * tile_h);
        blit(&done, &mut cropped, 0, 0);
        out.sheets.push(encode_jpeg(&cropped)?);
    }
    if job.storyboard && out.tiles > 0 {
        out.layout = Some(layout);
    }
    if let (Some((w, h)), Some(frame)) = (job.poster, poster_frame) {
        let mut scaler = Scaler::default();
        let img = scaler.scale(&frame, w, h)?;
        out.poster = Some(encode_jpeg(&img)?);
    }
    Ok(out)
}

/// The tile for a source displayed at `(w, h)`: [`TILE_WIDTH`] wide, or
/// [`TILE_MAX_HEIGHT`] tall when that is the tighter bound; even sides, at
/// least 2.
pub(crate) fn tile_size((w, h): (u32, u32)) -> (u32, u32) {
    let aspect = f64::from(w.max(1)) / f64::from(h.max(1));
    let height = f64::from(TILE_WIDTH) / aspect;
    if height <= f64::from(TILE_MAX_HEIGHT) {
        (TILE_WIDTH, even(height.round() as u32))
    } else {
        let width = (f64::from(TILE_MAX_HEIGHT) * aspect).round() as u32;
        (even(width), TILE_MAX_HEIGHT)
    }
}

/// Longest side of a poster made from cover art.
pub(crate) const COVER_MAX_SIDE: u32 = 1280;

/// The poster of an audio-only source: its attached picture (cover art,
/// usually JPEG or PNG), decoded from the one packet the demuxer gives and
/// re-encoded as a JPEG, scaled down to [`COVER_MAX_SIDE`] when larger.
pub(crate) fn cover_jpeg(
    params: ff::codec::Parameters,
    packet: &ff::Packet,
) -> Result<Vec<u8>, String> {
    let mut decoder = ff::codec::Context::from_parameters(params)
        .and_then(|c| c.decoder().video())
        .map_err(|e| format!("no decoder for the cover art: {e}"))?;
    let mut frame = ff::frame::Video::empty();
    decoder
        .send_packet(packet)
        .and_then(|()| decoder.send_eof())
        .and_then(|()| decoder.receive_frame(&mut frame))
        .map_err(|e| format!("cover art does not decode: {e}"))?;
    let (w, h) = (frame.width(), frame.height());
    if w == 0 || h == 0 {
        return Err("cover art has no size".to_owned());
    }
    let scale = (f64::from(COVER_MAX_SIDE) / f64::from(w.max(h))).min(1.0);
    let (w, h) = (
        even((f64::from(w) * scale).round() as u32),
        even((f64::from(h) * scale).round() as u32),
    );
    let img = Scaler::default().scale(&frame, w, h)?;
    encode_jpeg(&img)
}

/// The file name of storyboard sheet `n`, in the storyboard folder.
pub(crate) fn sheet_name(n: usize) -> String {
    format!("sheet_{n:03}.jpg")
}

impl Storyboard {
    /// The storyboard of `tiles` tiles laid out as `layout` on `sheets`
    /// sheets, under `storyboard/` in the ladder.
    pub(crate) fn new(layout: TileLayout, tiles: u32, sheets: usize) -> Self {
        Storyboard {
            vtt: "storyboard/storyboard.vtt".to_owned(),
            sheets: (0..sheets)
                .map(|i| format!("storyboard/{}", sheet_name(i)))
                .collect(),
            tile_width: layout.width,
            tile_height: layout.height,
            columns: STORYBOARD_COLUMNS,
            rows: STORYBOARD_ROWS,
            interval_s: layout.interval_s,
            tiles,
        }
    }

    /// The WebVTT track over the tiles of a source of `duration_s`; cues
    /// name the sheets relative to the track.
    pub(crate) fn webvtt(&self, duration_s: f64) -> String {
        let mut vtt = String::from("WEBVTT\n");
        let per_sheet = self.columns * self.rows;
        for i in 0..self.tiles {
            let start = f64::from(i) * self.interval_s;
            let end = if i + 1 == self.tiles {
                duration_s.max(start + 0.001)
            } else {
                f64::from(i + 1) * self.interval_s
            };
            let slot = i % per_sheet;
            let _ = write!(
                vtt,
                "\n{} --> {}\n{}#xywh={},{},{},{}\n",
                vtt_time(start),
                vtt_time(end),
                sheet_name((i / per_sheet) as usize),
                (slot % self.columns) * self.tile_width,
                (slot / self.columns) * self.tile_height,
                self.tile_width,
                self.tile_height
            );
        }
        vtt
    }
}

fn vtt_time(s: f64) -> String {
    let ms = (s * 1000.0).round().max(0.0) as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

fn even(v: u32) -> u32 {
    (v.max(2) + 1) & !1
}

/// A scaler to full-range 4:2:0 (what JPEG wants), rebuilt when the input
/// changes.
#[derive(Default)]
struct Scaler {
    ctx: Option<(ff::software::scaling::Context, ScaleKey)>,
}

/// Input format and size, output size.
type ScaleKey = (Pixel, u32, u32, u32, u32);

impl Scaler {
    fn scale(
        &mut self,
        src: &ff::frame::Video,
        w: u32,
        h: u32,
    ) -> Result<ff::frame::Video, String> {
        let key = (src.format(), src.width(), src.height(), w, h);
        if self.ctx.as_ref().map(|c| c.1) != Some(key) {
            let ctx = ff::software::scaling::Context::get(
                key.0,
                key.1,
                key.2,
                Pixel::YUVJ420P,
                w,
                h,
                ff::software::scaling::Flags::BICUBIC,
            )
            .map_err(|e| format!("thumbnail scaler: {e}"))?;
            self.ctx = Some((ctx, key));
        }
        let mut out = ff::frame::Video::empty();
        if let Some((ctx, _)) = self.ctx.as_mut() {
            ctx.run(src, &mut out)
                .map_err(|e| format!("thumbnail scale: {e}"))?;
        }
        Ok(out)
    }
}

fn blank_sheet(tile_w: u32, tile_h: u32) -> ff::frame::Video {
    let mut sheet = ff::frame::Video::new(
        Pixel::YUVJ420P,
        tile_w * STORYBOARD_COLUMNS,
        tile_h * STORYBOARD_ROWS,
    );
    for (plane, value) in [(0, 0u8), (1, 128), (2, 128)] {
        sheet.data_mut(plane).fill(value);
    }
    sheet
}

/// Copies a 4:2:0 picture into another at (`x`, `y`) (both even), clipped
/// to the target.
fn blit(tile: &ff::frame::Video, sheet: &mut ff::frame::Video, x: u32, y: u32) {
    for plane in 0..3 {
        let w = tile.width().min(sheet.width().saturating_sub(x));
        let h = tile.height().min(sheet.height().saturating_sub(y));
        let (sub, w, h) = if plane == 0 {
            (1, w, h)
        } else {
            (2, w / 2, h / 2)
        };
        let (src_stride, dst_stride) = (tile.stride(plane), sheet.stride(plane));
        let (px, py) = ((x / sub) as usize, (y / sub) as usize);
        let src = tile.data(plane);
        let dst = sheet.data_mut(plane);
        for row in 0..h as usize {
            let s = row * src_stride;
            let d = (py + row) * dst_stride + px;
            if s + w as usize <= src.len() && d + w as usize <= dst.len() {
                dst[d..d + w as usize].copy_from_slice(&src[s..s + w as usize]);
            }
        }
    }
}

/// Encodes a full-range 4:2:0 picture as a JPEG.
fn encode_jpeg(img: &ff::frame::Video) -> Result<Vec<u8>, String> {
    let codec = ff::encoder::find(ff::codec::Id::MJPEG).ok_or("JPEG encoder not available")?;
    let mut enc = ff::codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| format!("jpeg: {e}"))?;
    enc.set_width(img.width());
    enc.set_height(img.height());
    enc.set_format(Pixel::YUVJ420P);
    enc.set_time_base(Rational::new(1, 25));
    // A fixed quantiser of 3 (FFmpeg's `-q:v 3`): good quality at a few kB
    // per tile.
    enc.set_flags(ff::codec::Flags::QSCALE);
    enc.set_global_quality(3 * 118);
    enc.set_qmin(3);
    enc.set_qmax(3);
    let mut opened = enc.open_as(codec).map_err(|e| format!("open jpeg: {e}"))?;
    let mut frame = img.clone();
    frame.set_pts(Some(0));
    opened
        .send_frame(&frame)
        .and_then(|()| opened.send_eof())
        .map_err(|e| format!("jpeg encode: {e}"))?;
    let mut packet = ff::Packet::empty();
    opened
        .receive_packet(&mut packet)
        .map_err(|e| format!("jpeg encode: {e}"))?;
    Ok(packet.data().map(<[u8]>::to_vec).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_stay_bounded_for_any_aspect() {
        assert_eq!(tile_size((1920, 1080)), (160, 90));
        assert_eq!(tile_size((1080, 1920)), (160, 284));
        assert_eq!(tile_size((1440, 1080)), (160, 120));
        // 1:250 and 250:1, and a degenerate size.
        assert_eq!(tile_size((16, 4000)), (2, 284));
        assert_eq!(tile_size((4000, 16)), (160, 2));
        assert_eq!(tile_size((0, 0)), (160, 160));
        for w in [2u32, 16, 100, 720, 1920, 16_384] {
            for h in [2u32, 16, 100, 720, 1920, 16_384] {
                let (tw, th) = tile_size((w, h));
                assert!(tw <= TILE_WIDTH && th <= TILE_MAX_HEIGHT, "{w}x{h}");
                assert!(tw >= 2 && th >= 2 && tw % 2 == 0 && th % 2 == 0, "{w}x{h}");
                // A full sheet fits a JPEG.
                assert!(th * STORYBOARD_ROWS <= 65_535 && tw * STORYBOARD_COLUMNS <= 65_535);
            }
        }
    }

    #[test]
    fn interval_grows_with_length() {
        assert_eq!(tile_interval(20.0), 1.0);
        assert_eq!(tile_interval(400.0), 1.0);
        assert_eq!(tile_interval(401.0), 2.0);
        assert_eq!(tile_interval(7200.0), 18.0);
    }

    #[test]
    fn vtt_cues_address_tiles() {
        let layout = TileLayout {
            width: 160,
            height: 90,
            interval_s: 1.0,
        };
        let board = Storyboard::new(layout, 102, 2);
        assert_eq!(
            board.sheets,
            ["storyboard/sheet_000.jpg", "storyboard/sheet_001.jpg"]
        );
        let vtt = board.webvtt(101.5);
        assert!(vtt.starts_with(
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nsheet_000.jpg#xywh=0,0,160,90\n"
        ));
        assert!(vtt.contains("00:00:11.000 --> 00:00:12.000\nsheet_000.jpg#xywh=160,90,160,90\n"));
        assert!(vtt.contains("00:01:41.000 --> 00:01:41.500\nsheet_001.jpg#xywh=160,0,160,90\n"));
    }
}
