//! What every rung needs done to a decoded frame once, before scaling:
//! deinterlacing (`bwdif`) and display rotation (`transpose`, `hflip` +
//! `vflip`), through a libavfilter graph built on the first frame.

use ff::Rational;
use ffmpeg_next as ff;

/// The filter chain for a source, or `None` when frames go through as
/// decoded.
pub(crate) fn chain(interlaced: bool, rotation: u32) -> Option<String> {
    let mut parts = Vec::new();
    if interlaced {
        // One output frame per input frame, fields detected per frame.
        parts.push("bwdif=mode=send_frame:parity=auto:deint=all");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_only_what_is_needed() {
        assert_eq!(chain(false, 0), None);
        assert_eq!(chain(false, 90).as_deref(), Some("transpose=clock"));
        assert_eq!(chain(false, 270).as_deref(), Some("transpose=cclock"));
        assert_eq!(
            chain(true, 180).as_deref(),
            Some("bwdif=mode=send_frame:parity=auto:deint=all,hflip,vflip")
        );
    }
}
