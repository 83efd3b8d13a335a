//! What every rung needs done to a decoded frame once, before scaling:
//! deinterlacing (`bwdif`), conversion to BT.709 colour ([`colour_fix`])
//! and display rotation (`transpose`, `hflip` + `vflip`), through a
//! libavfilter graph built on the first frame.

use ff::Rational;
use ffmpeg_next as ff;

/// The filter chain for a source, or `None` when frames go through as
/// decoded. `colour` is what [`colour_fix`] asked for.
pub(crate) fn chain(interlaced: bool, colour: Option<&str>, rotation: u32) -> Option<String> {
    let mut parts = Vec::new();
    if interlaced {
        // One output frame per input frame, fields detected per frame.
        parts.push("bwdif=mode=send_frame:parity=auto:deint=all");
    }
    if let Some(c) = colour {
        parts.push(c);
    }
    match rotation % 360 {
        90 => parts.push("transpose=clock"),
        180 => parts.push("hflip,vflip"),
        270 => parts.push("transpose=cclock"),
        _ => {}
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// A running filter graph.
pub(crate) struct Prefilter {
    spec: String,
    time_base: Rational,
    graph: Option<(ff::filter::Graph, (ff::format::Pixel, u32, u32))>,
}

impl Prefilter {
    pub(crate) fn new(spec: String, time_base: Rational) -> Self {
        Prefilter {
            spec,
            time_base,
            graph: None,
        }
    }

    fn build(&mut self, frame: &ff::frame::Video) -> Result<(), String> {
        let key = (frame.format(), frame.width(), frame.height());
        if self.graph.as_ref().map(|g| g.1) == Some(key) {
            return Ok(());
        }
        let pix = frame
            .format()
            .descriptor()
            .map(|d| d.name().to_owned())
            .ok_or("frame without a pixel format")?;
        let args = format!(
            "video_size={}x{}:pix_fmt={pix}:time_base={}/{}:pixel_aspect=1/1",
            frame.width(),
            frame.height(),
            self.time_base.numerator(),
            self.time_base.denominator().max(1)
        );
        let mut graph = ff::filter::Graph::new();
        let buffer = ff::filter::find("buffer").ok_or("libavfilter lacks `buffer`")?;
        let sink = ff::filter::find("buffersink").ok_or("libavfilter lacks `buffersink`")?;
        graph
            .add(&buffer, "in", &args)
            .and_then(|_| graph.add(&sink, "out", ""))
            .and_then(|_| graph.output("in", 0)?.input("out", 0)?.parse(&self.spec))
            .and_then(|()| graph.validate())
            .map_err(|e| format!("filter graph `{}`: {e}", self.spec))?;
        self.graph = Some((graph, key));
        Ok(())
    }

    /// Feeds one frame (or `None` at the end) and returns what came out.
    pub(crate) fn run(
        &mut self,
        frame: Option<&ff::frame::Video>,
    ) -> Result<Vec<ff::frame::Video>, String> {
        if let Some(f) = frame {
            self.build(f)?;
        }
        let Some((graph, _)) = self.graph.as_mut() else {
            return Ok(Vec::new());
        };
        {
            let mut src = graph.get("in").ok_or("filter graph lost its input")?;
            match frame {
                Some(f) => src.source().add(f),
                None => src.source().flush(),
            }
            .map_err(|e| format!("filter `{}`: {e}", self.spec))?;
        }
        let mut out = Vec::new();
        let mut sink = graph.get("out").ok_or("filter graph lost its output")?;
        loop {
            let mut f = ff::frame::Video::empty();
            if sink.sink().frame(&mut f).is_err() {
                break;
            }
            out.push(f);
        }
        Ok(out)
    }
}

/// The colour a source declares, as FFmpeg names it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SourceColour<'a> {
    /// Matrix (`bt709`, `bt470bg`, `bt2020nc`).
    pub(crate) matrix: Option<&'a str>,
    /// Primaries (`bt709`, `bt2020`).
    pub(crate) primaries: Option<&'a str>,
    /// Transfer (`bt709`, `smpte2084`, `arib-std-b67`).
    pub(crate) transfer: Option<&'a str>,
}

/// HDR to SDR: to linear light (100 nits as 1.0, SDR's reference white),
/// BT.2020 to BT.709 primaries in float RGB, the Möbius curve (which
/// keeps what fits in SDR as it is and rolls off only the highlights;
/// Hable darkens the whole picture), then BT.709 limited range 4:2:0.
/// A stream that declares no matrix or primaries is taken as BT.2020, as
/// every PQ and HLG format specifies.
fn tone_map(transfer: &str, matrix: Option<&str>, primaries: Option<&str>) -> String {
    format!(
        "zscale=tin={transfer}:min={}:pin={}:t=linear:npl=100,format=gbrpf32le,\
         zscale=p=bt709,tonemap=tonemap=mobius,zscale=t=bt709:m=bt709:r=tv,format=yuv420p",
        matrix.unwrap_or("bt2020nc"),
        primaries.unwrap_or("bt2020"),
    )
}

/// RGB sources: the rungs' scalers would convert with swscale's default
/// BT.601 matrix; this converts once with BT.709's, to limited range, at
/// full chroma so each rung subsamples from the best picture.
const RGB_TO_BT709: &str = "scale=out_color_matrix=bt709:out_range=tv,format=yuv444p";

/// The conversion a source needs so that its pixels are BT.709, which is
/// what every rung is tagged (SDR output); `None` when they already are.
///
/// - RGB pixel formats: [`RGB_TO_BT709`].
/// - A BT.601 matrix (`bt470bg` for 625-line PAL, `smpte170m` or `fcc` for
///   525-line NTSC), or no matrix at all on a standard-definition source
///   (players take untagged SD as BT.601, so that is how it looked):
///   `colorspace` from that system to BT.709.
/// - HDR, a PQ (`smpte2084`) or HLG (`arib-std-b67`) transfer: tone-mapped
///   to SDR BT.709 ([`tone_map`]), since squeezing PQ or HLG code values
///   into 8-bit BT.709 as they are looks washed out.
/// - Anything else (BT.709, untagged HD, BT.2020 SDR) is left as it is.
pub(crate) fn colour_fix(
    pixel_format: Option<&str>,
    colour: &SourceColour<'_>,
    height: u32,
    fps: f64,
) -> Option<String> {
    if let Some(t @ ("smpte2084" | "arib-std-b67")) = colour.transfer {
        return Some(tone_map(t, colour.matrix, colour.primaries));
    }
    let matrix = colour.matrix;
    let rgb = matrix == Some("gbr")
        || pixel_format.is_some_and(|p| {
            ["rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr"]
                .iter()
                .any(|prefix| p.starts_with(prefix))
        });
    if rgb {
        return Some(RGB_TO_BT709.to_owned());
    }
    let system = match matrix {
        Some("bt470bg") => "bt601-6-625",
        Some("smpte170m" | "fcc") => "bt601-6-525",
        // Untagged SD: PAL rates are 625-line, the rest 525-line.
        None if height < 720 => {
            if (fps - 25.0).abs() < 0.5 || (fps - 50.0).abs() < 0.5 {
                "bt601-6-625"
            } else {
                "bt601-6-525"
            }
        }
        _ => return None,
    };
    Some(format!("colorspace=all=bt709:iall={system}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_only_what_is_needed() {
        assert_eq!(chain(false, None, 0), None);
        assert_eq!(chain(false, None, 90).as_deref(), Some("transpose=clock"));
        assert_eq!(chain(false, None, 270).as_deref(), Some("transpose=cclock"));
        assert_eq!(
            chain(true, None, 180).as_deref(),
            Some("bwdif=mode=send_frame:parity=auto:deint=all,hflip,vflip")
        );
        assert_eq!(
            chain(true, Some("colorspace=all=bt709:iall=bt601-6-625"), 90).as_deref(),
            Some(
                "bwdif=mode=send_frame:parity=auto:deint=all,\
                 colorspace=all=bt709:iall=bt601-6-625,transpose=clock"
            )
        );
    }

    #[test]
    fn colour_is_converted_to_bt709_only_when_needed() {
        let fix = |pix, m, h, fps| {
            let colour = SourceColour {
                matrix: m,
                ..SourceColour::default()
            };
            colour_fix(pix, &colour, h, fps)
        };
        assert_eq!(fix(Some("yuv420p"), Some("bt709"), 1080, 30.0), None);
        assert_eq!(fix(Some("yuv420p"), None, 1080, 30.0), None);
        assert_eq!(fix(Some("yuv420p10le"), Some("bt2020nc"), 2160, 30.0), None);
        assert_eq!(
            fix(Some("yuv420p"), Some("bt470bg"), 576, 25.0).as_deref(),
            Some("colorspace=all=bt709:iall=bt601-6-625")
        );
        assert_eq!(
            fix(Some("yuv420p"), Some("smpte170m"), 1080, 30.0).as_deref(),
            Some("colorspace=all=bt709:iall=bt601-6-525")
        );
        assert_eq!(
            fix(Some("yuv420p"), None, 480, 29.97).as_deref(),
            Some("colorspace=all=bt709:iall=bt601-6-525")
        );
        assert_eq!(
            fix(Some("yuv420p"), None, 576, 25.0).as_deref(),
            Some("colorspace=all=bt709:iall=bt601-6-625")
        );
        assert_eq!(
            fix(Some("rgb24"), None, 1080, 30.0).as_deref(),
            Some(RGB_TO_BT709)
        );
        assert_eq!(
            fix(Some("gbrp"), Some("gbr"), 720, 30.0).as_deref(),
            Some(RGB_TO_BT709)
        );
        // HDR is tone-mapped whatever its matrix, from what it declares.
        let pq = SourceColour {
            matrix: Some("bt2020nc"),
            primaries: Some("bt2020"),
            transfer: Some("smpte2084"),
        };
        let chain = colour_fix(Some("yuv420p10le"), &pq, 2160, 30.0).unwrap();
        assert!(
            chain.starts_with("zscale=tin=smpte2084:min=bt2020nc:pin=bt2020:t=linear"),
            "{chain}"
        );
        assert!(chain.ends_with("m=bt709:r=tv,format=yuv420p"), "{chain}");
        let hlg = SourceColour {
            transfer: Some("arib-std-b67"),
            ..SourceColour::default()
        };
        let chain = colour_fix(Some("yuv420p10le"), &hlg, 1080, 50.0).unwrap();
        assert!(
            chain.starts_with("zscale=tin=arib-std-b67:min=bt2020nc:pin=bt2020:"),
            "{chain}"
        );
    }
}
