//! The ladder benchmark: two generated 20 s 1080p30 sources with stereo
//! audio, each made into the same four-rung HLS ladder (1080p, 720p, 480p,
//! 360p; same bit rates, VBV, preset, GOP and 4 s segments) four ways:
//!
//! - **a**: one `ffmpeg` process per rung (plus one for the audio), one
//!   after another, as a queue of per-rung jobs runs them; each decodes the
//!   source itself. The same processes all at once are reported beside it
//!   (`a_parallel`).
//! - **b**: one `ffmpeg` process, `split` filter graph, one HLS muxer (the
//!   named baseline).
//! - **c**: `videosync transcode` (images off, as a and b make none; a
//!   second row with them on).
//! - **d**: the limit of any x264 ladder: the four encoders alone, in
//!   parallel, fed raw frames scaled beforehand (not timed), output
//!   discarded.
//!
//! The sources: `testsrc2` (smooth synthetic pattern, easy to encode) and
//! Conway's `life` with coloured mould under temporal film grain (sharp
//! detail that changes everywhere and grain in every frame: a heavy source
//! to decode and a hard one to encode), both x264 CRF 18.
//!
//! Each run goes through `/usr/bin/time` for wall time, CPU time (user +
//! system) and peak resident memory (for several processes, the sum of
//! their peaks). The commands run in one order in even rounds and in the
//! reverse order in odd ones (ABBA), over `VIDEOSYNC_LADDER_RUNS` rounds
//! (default 5); the report gives the median with the min and max, and the
//! ratios of medians. Quality: PSNR and SSIM of every rung of b and c
//! against the source scaled to the rung's size (bicubic). The FFmpeg and
//! x264 versions, the CPU model and its SIMD flags are recorded.
//!
//! Run with `make bench-ladder`, or build the binary first
//! (`cargo build --release -p videosync-server`) and run
//! `cargo bench --features transcode --bench ladder`. Writes
//! `benches/results/ladder.json` and `benches/results/ladder.md`.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use videosync::hls::ladder::{plan, Ladder, LadderOptions, Rung, SourceVideo};

#[path = "stats.rs"]
mod stats;
use stats::{spread, Spread};

const SECONDS: u32 = 20;
const FPS: u32 = 30;
const SEGMENT: u32 = 4;
const PRESET: &str = "veryfast";

#[derive(Debug, Clone, Serialize)]
struct Measure {
    wall_s: f64,
    cpu_s: f64,
    peak_rss_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Quality {
    rung: String,
    psnr_db: f64,
    ssim: f64,
}

/// One command's rounds: every sample, and median, min and max.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    wall_s: Spread,
    cpu_s: Spread,
    peak_rss_mib: Spread,
    samples: Vec<Measure>,
}

impl Summary {
    fn of(samples: Vec<Measure>) -> Self {
        let pick = |f: fn(&Measure) -> f64| spread(samples.iter().map(f).collect());
        Summary {
            wall_s: pick(|m| m.wall_s),
            cpu_s: pick(|m| m.cpu_s),
            peak_rss_mib: pick(|m| m.peak_rss_mib),
            samples,
        }
    }
}

#[derive(Debug, Serialize)]
struct SourceReport {
    name: String,
    description: String,
    a_per_rung_processes: Summary,
    a_parallel: Summary,
    b_split_filter: Summary,
    c_videosync: Summary,
    c_videosync_with_images: Summary,
    d_encoders_only: Summary,
    ratio_c_a: f64,
    ratio_c_b: f64,
    ratio_c_d: f64,
    quality_b: Vec<Quality>,
    quality_c: Vec<Quality>,
    targets: Vec<(String, String, bool)>,
    commands: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    cpu: String,
    cpu_flags: String,
    cores: usize,
    ffmpeg: String,
    x264: String,
    rungs: Vec<Rung>,
    runs: usize,
    order: String,
    sources: Vec<SourceReport>,
}

fn sh(cmd: &str) -> Result<String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Runs the commands one after another: summed wall and CPU, the largest
/// peak.
fn timed_in_turn(cmds: &[String], scratch: &Path) -> Result<Measure> {
    let mut total = Measure {
        wall_s: 0.0,
        cpu_s: 0.0,
        peak_rss_mib: 0.0,
    };
    for cmd in cmds {
        let m = timed(std::slice::from_ref(cmd), scratch)?;
        total.wall_s += m.wall_s;
        total.cpu_s += m.cpu_s;
        total.peak_rss_mib = total.peak_rss_mib.max(m.peak_rss_mib);
    }
    Ok(total)
}

/// Runs the commands at once, each under `/usr/bin/time`: wall time of the
/// whole group, summed CPU and summed peaks.
fn timed(cmds: &[String], scratch: &Path) -> Result<Measure> {
    let clock = videosync::core::SystemClock::new();
    let mut children = Vec::new();
    for (i, cmd) in cmds.iter().enumerate() {
        let stats = scratch.join(format!("time-{i}.txt"));
        let child = Command::new("/usr/bin/time")
            .arg("-f")
            .arg("%U %S %M")
            .arg("-o")
            .arg(&stats)
            .arg("bash")
            .arg("-c")
            .arg(format!("exec {cmd}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {cmd}"))?;
        children.push((child, stats, cmd));
    }
    let start = videosync::core::Clock::monotonic(&clock);
    let mut cpu = 0.0;
    let mut rss_kib = 0.0;
    for (child, stats, cmd) in children {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "`{cmd}` failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        let text = std::fs::read_to_string(&stats)?;
        let nums: Vec<f64> = text
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        if nums.len() < 3 {
            bail!("unreadable /usr/bin/time output: {text}");
        }
        cpu += nums[0] + nums[1];
        rss_kib += nums[2];
    }
    let wall = (videosync::core::Clock::monotonic(&clock) - start).as_secs_f64();
    Ok(Measure {
        wall_s: wall,
        cpu_s: cpu,
        peak_rss_mib: rss_kib / 1024.0,
    })
}

fn x264_args(r: &Rung, stream: Option<usize>) -> String {
    let s = |name: &str| match stream {
        Some(i) => format!("-{name}:v:{i}"),
        None => format!("-{name}:v"),
    };
    format!(
        "{} {} {} {} {} {} {} {} {} {} {} {} {} {}",
        format_args!("{} {}", s("b"), r.bitrate),
        format_args!("{} {}", s("maxrate"), r.maxrate),
        format_args!("{} {}", s("bufsize"), r.bufsize),
        format_args!("{} {}", s("g"), r.keyint),
        format_args!("{} {}", s("keyint_min"), r.keyint),
        format_args!("{} 0", s("sc_threshold")),
        format_args!("{} high", s("profile")),
        format_args!("{} {}", s("level"), r.level),
        format_args!("{} {PRESET}", s("preset")),
        format_args!("{} 1", s("forced-idr")),
        format_args!("{} yuv420p", s("pix_fmt")),
        format_args!("{} {}", s("r"), r.frame_rate),
        format_args!("{} 'expr:gte(t,n_forced*{SEGMENT})'", s("force_key_frames")),
        format_args!("{} libx264", s("c")),
    )
}

/// PSNR and SSIM of `distorted` against the source scaled to `w`x`h`.
fn quality(distorted: &Path, source: &Path, rung: &Rung) -> Result<Quality> {
    let graph = format!(
        "[0:v]setpts=PTS-STARTPTS[d];[1:v]scale={}:{}:flags=bicubic,setpts=PTS-STARTPTS[r];\
         [d]split[d1][d2];[r]split[r1][r2];[d1][r1]psnr[p];[d2][r2]ssim[s]",
        rung.width, rung.height
    );
    let out = sh(&format!(
        "ffmpeg -hide_banner -nostats -i {} -i {} -filter_complex '{graph}' -map '[p]' -f null - -map '[s]' -f null - 2>&1",
        distorted.display(),
        source.display()
    ))?;
    let grab = |key: &str| -> Result<f64> {
        let line = out
            .lines()
            .find(|l| l.contains(key))
            .with_context(|| format!("no {key} in ffmpeg output"))?;
        let after = &line[line.find(key).unwrap() + key.len()..];
        let num: String = after
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        num.parse()
            .with_context(|| format!("parsing {key} from {line}"))
    };
    Ok(Quality {
        rung: rung.name.clone(),
        psnr_db: grab("average:")?,
        ssim: grab("All:")?,
    })
}

/// Concatenates an fMP4 rendition (init + segments in order) into one file.
fn join_rendition(dir: &Path, out: &Path) -> Result<()> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "m4s"))
        .collect();
    names.sort();
    // ffmpeg's HLS muxer names it init_<variant>.mp4.
    let init = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("init") && n.ends_with(".mp4"))
        })
        .with_context(|| format!("no init segment in {}", dir.display()))?;
    let mut bytes = std::fs::read(init)?;
    for n in names {
        bytes.extend(std::fs::read(n)?);
    }
    std::fs::write(out, bytes)?;
    Ok(())
}

/// The commands of one source's runs, and where b and c write.
struct Commands {
    a: Vec<String>,
    b: String,
    c: String,
    c2: String,
    d: Vec<String>,
    bdir: PathBuf,
    cdir: PathBuf,
}

/// Builds every command for `source` in the scratch folder `s`, and the
/// pre-scaled raw frames d reads (made here, not timed).
fn commands(source: &Path, s: &Path, ladder: &Ladder, videosync: &Path) -> Result<Commands> {
    let audio = ladder.audio.clone().context("the plan has audio")?;
    let src = source.display().to_string();

    // a: one process per rung, plus the audio.
    let mut a = Vec::new();
    for r in &ladder.rungs {
        let dir = s.join(format!("a/{}", r.name));
        std::fs::create_dir_all(&dir)?;
        a.push(format!(
            "ffmpeg -v error -y -i {src} -map 0:v -vf scale={}:{}:flags=bicubic {} \
             -f hls -hls_time {SEGMENT} -hls_playlist_type vod -hls_segment_type fmp4 \
             -hls_segment_filename {d}/seg_%05d.m4s {d}/index.m3u8",
            r.width,
            r.height,
            x264_args(r, None),
            d = dir.display()
        ));
    }
    let adir = s.join("a/audio");
    std::fs::create_dir_all(&adir)?;
    a.push(format!(
        "ffmpeg -v error -y -i {src} -map 0:a -c:a aac -b:a {} -ac 2 -ar {} \
         -f hls -hls_time {SEGMENT} -hls_playlist_type vod -hls_segment_type fmp4 \
         -hls_segment_filename {d}/seg_%05d.m4s {d}/index.m3u8",
        audio.bitrate,
        audio.sample_rate,
        d = adir.display()
    ));

    // b: one process, split filter, one HLS muxer.
    let bdir = s.join("b");
    let n = ladder.rungs.len();
    let mut graph = format!("[0:v]split={n}");
    for i in 0..n {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, r) in ladder.rungs.iter().enumerate() {
        graph.push_str(&format!(
            ";[s{i}]scale={}:{}:flags=bicubic[v{i}]",
            r.width, r.height
        ));
    }
    let mut b = format!("ffmpeg -v error -y -i {src} -filter_complex '{graph}'");
    for (i, r) in ladder.rungs.iter().enumerate() {
        b.push_str(&format!(" -map '[v{i}]' {}", x264_args(r, Some(i))));
    }
    b.push_str(&format!(
        " -map 0:a -c:a aac -b:a {} -ac 2 -ar {}",
        audio.bitrate, audio.sample_rate
    ));
    let vmap: Vec<String> = (0..n).map(|i| format!("v:{i},agroup:aud")).collect();
    b.push_str(&format!(
        " -f hls -hls_time {SEGMENT} -hls_playlist_type vod -hls_segment_type fmp4 \
         -hls_flags independent_segments -master_pl_name master.m3u8 \
         -var_stream_map '{} a:0,agroup:aud' -hls_segment_filename {d}/%v/seg_%05d.m4s \
         -hls_fmp4_init_filename init.mp4 {d}/%v/index.m3u8",
        vmap.join(" "),
        d = bdir.display()
    ));

    // c: videosync.
    let cdir = s.join("c");
    let c = format!(
        "{} transcode {src} --out {} --encoder software --preset {PRESET} --no-images --quiet",
        videosync.display(),
        cdir.display()
    );
    let c2 = format!(
        "{} transcode {src} --out {} --encoder software --preset {PRESET} --quiet",
        videosync.display(),
        s.join("c2").display()
    );

    // d: raw frames, scaled beforehand.
    let mut d = Vec::new();
    for r in &ladder.rungs {
        let raw = s.join(format!("{}.yuv", r.name));
        sh(&format!(
            "ffmpeg -v error -y -i {src} -vf scale={}:{}:flags=bicubic -pix_fmt yuv420p -f rawvideo {}",
            r.width,
            r.height,
            raw.display()
        ))?;
        d.push(format!(
            "ffmpeg -v error -y -f rawvideo -pix_fmt yuv420p -s {}x{} -framerate {FPS} -i {} {} -f null -",
            r.width,
            r.height,
            raw.display(),
            x264_args(r, None)
        ));
    }
    Ok(Commands {
        a,
        b,
        c,
        c2,
        d,
        bdir,
        cdir,
    })
}

/// The runs of one source, in order; see [`run_source`].
const RUNS: [&str; 6] = ["a", "a'", "b", "c", "d", "c2"];

/// Generates a source with `generate` (its output path appended), runs
/// every command `runs` times in alternating order, measures quality.
fn run_source(
    name: &str,
    description: &str,
    generate: &str,
    s: &Path,
    ladder: &Ladder,
    videosync: &Path,
    runs: usize,
) -> Result<SourceReport> {
    std::fs::create_dir_all(s)?;
    let source = s.join("source.mp4");
    println!("{name}: generating the source ...");
    sh(&format!("{generate} {}", source.display()))?;
    println!("{name}: preparing raw frames for d ...");
    let cmd = commands(&source, s, ladder, videosync)?;
    let n = ladder.rungs.len();
    let mut samples: Vec<Vec<Measure>> = vec![Vec::new(); RUNS.len()];
    for round in 0..runs {
        let mut order: Vec<usize> = (0..RUNS.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        println!("{name}: round {} of {runs}", round + 1);
        for i in order {
            // Each run writes into a fresh folder of its own; the last
            // round's outputs of b and c stay for the quality measure.
            let out = match RUNS[i] {
                "b" => Some(s.join("b")),
                "c" => Some(s.join("c")),
                "c2" => Some(s.join("c2")),
                _ => None,
            };
            if let Some(p) = out.filter(|p| p.exists()) {
                std::fs::remove_dir_all(&p)?;
            }
            let m = match RUNS[i] {
                "a" => timed_in_turn(&cmd.a, s)?,
                "a'" => timed(&cmd.a, s)?,
                "b" => {
                    // ffmpeg's HLS muxer writes into a folder per variant
                    // but makes none.
                    for k in 0..=n {
                        std::fs::create_dir_all(cmd.bdir.join(k.to_string()))?;
                    }
                    timed(std::slice::from_ref(&cmd.b), s)?
                }
                "c" => timed(std::slice::from_ref(&cmd.c), s)?,
                "d" => timed(&cmd.d, s)?,
                _ => timed(std::slice::from_ref(&cmd.c2), s)?,
            };
            println!("  {:<3} {:.2} s", RUNS[i], m.wall_s);
            samples[i].push(m);
        }
    }
    let Ok([a, ap, b, c, d, c2]) =
        <[Summary; RUNS.len()]>::try_from(samples.into_iter().map(Summary::of).collect::<Vec<_>>())
    else {
        bail!("one summary per run");
    };

    println!("{name}: measuring quality ...");
    let mut quality_b = Vec::new();
    let mut quality_c = Vec::new();
    for (i, r) in ladder.rungs.iter().enumerate() {
        let bj = s.join(format!("b-{}.mp4", r.name));
        join_rendition(&cmd.bdir.join(i.to_string()), &bj)?;
        quality_b.push(quality(&bj, &source, r)?);
        let cj = s.join(format!("c-{}.mp4", r.name));
        join_rendition(&cmd.cdir.join(r.name.as_str()), &cj)?;
        quality_c.push(quality(&cj, &source, r)?);
    }

    let ratio = |x: &Summary, y: &Summary| x.wall_s.median / y.wall_s.median;
    let (rca, rcb, rcd) = (ratio(&c, &a), ratio(&c, &b), ratio(&c, &d));
    let worst_psnr = quality_b
        .iter()
        .zip(&quality_c)
        .map(|(b, c)| b.psnr_db - c.psnr_db)
        .fold(f64::MIN, f64::max);
    let targets = vec![
        ("c/b <= 0.92".to_owned(), format!("{rcb:.3}"), rcb <= 0.92),
        ("c/d <= 1.2".to_owned(), format!("{rcd:.3}"), rcd <= 1.2),
        (
            "PSNR per rung within 0.05 dB of b".to_owned(),
            format!("worst shortfall {worst_psnr:.3} dB"),
            worst_psnr <= 0.05,
        ),
    ];
    Ok(SourceReport {
        name: name.to_owned(),
        description: description.to_owned(),
        a_per_rung_processes: a,
        a_parallel: ap,
        b_split_filter: b,
        c_videosync: c,
        c_videosync_with_images: c2,
        d_encoders_only: d,
        ratio_c_a: rca,
        ratio_c_b: rcb,
        ratio_c_d: rcd,
        quality_b,
        quality_c,
        targets,
        commands: cmd
            .a
            .iter()
            .chain([&cmd.b, &cmd.c, &cmd.c2])
            .chain(&cmd.d)
            .cloned()
            .collect(),
    })
}

/// The first line of `cmd`'s output, or what went wrong.
fn first_line(cmd: &str) -> String {
    match sh(cmd) {
        Ok(out) => out.lines().next().unwrap_or("").trim().to_owned(),
        Err(e) => format!("unknown ({e})"),
    }
}

fn markdown(report: &Report) -> String {
    let mut md = String::from("# Ladder benchmark\n\n");
    md.push_str(&format!(
        "`make bench-ladder`; {}, {} cores ({}); {}; x264 {}; rungs {}; preset {PRESET}, {SEGMENT} s segments, GOP = one segment; {} rounds, {}; median (min..max).\n\nCPU flags: {}\n",
        report.machine,
        report.cores,
        report.cpu,
        report.ffmpeg,
        report.x264,
        report
            .rungs
            .iter()
            .map(|r| format!("{} {} kb/s", r.name, r.bitrate / 1000))
            .collect::<Vec<_>>()
            .join(", "),
        report.runs,
        report.order,
        report.cpu_flags,
    ));
    for src in &report.sources {
        md.push_str(&format!("\n## {}: {}\n\n", src.name, src.description));
        md.push_str(
            "| run | wall (s) | CPU (s) | peak memory (MiB) | c / this (medians) |\n|---|---|---|---|---|\n",
        );
        let c = src.c_videosync.wall_s.median;
        for (name, m) in [
            (
                "a: ffmpeg, one process per rung, in turn",
                &src.a_per_rung_processes,
            ),
            ("a': the same processes all at once", &src.a_parallel),
            (
                "b: ffmpeg, split filter, one HLS muxer (baseline)",
                &src.b_split_filter,
            ),
            ("c: videosync transcode", &src.c_videosync),
            (
                "c: videosync transcode, with poster and storyboard",
                &src.c_videosync_with_images,
            ),
            (
                "d: x264 encoders alone on pre-scaled frames (limit)",
                &src.d_encoders_only,
            ),
        ] {
            md.push_str(&format!(
                "| {name} | {:.2} | {:.2} | {:.0} | {:.3} |\n",
                m.wall_s,
                m.cpu_s,
                m.peak_rss_mib.median,
                c / m.wall_s.median
            ));
        }
        md.push_str(
            "\n| rung | PSNR b (dB) | PSNR c (dB) | SSIM b | SSIM c |\n|---|---|---|---|---|\n",
        );
        for (qb, qc) in src.quality_b.iter().zip(&src.quality_c) {
            md.push_str(&format!(
                "| {} | {:.3} | {:.3} | {:.5} | {:.5} |\n",
                qb.rung, qb.psnr_db, qc.psnr_db, qb.ssim, qc.ssim
            ));
        }
        md.push_str("\n| target | measured | met |\n|---|---|---|\n");
        for (t, m, ok) in &src.targets {
            md.push_str(&format!(
                "| {t} | {m} | {} |\n",
                if *ok { "yes" } else { "**no**" }
            ));
        }
    }
    md
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let videosync = target.join("release/videosync");
    if !videosync.exists() {
        bail!(
            "{} is missing: run `cargo build --release -p videosync-server` first",
            videosync.display()
        );
    }
    let runs: usize = std::env::var("VIDEOSYNC_LADDER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let scratch = tempfile::tempdir()?;
    let ladder = plan(
        &SourceVideo {
            width: 1920,
            height: 1080,
            rotation: 0,
            frame_rate: f64::from(FPS),
            bit_rate: None,
            audio_channels: Some(2),
            sample_rate: Some(48_000),
        },
        &LadderOptions::default(),
    )?;
    let audio = format!(
        "-f lavfi -i 'sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo' \
         -t {SECONDS} -c:v libx264 -preset veryfast -crf 18 -pix_fmt yuv420p -c:a aac -b:a 192k"
    );
    let sources = [
        (
            "testsrc2",
            format!("{SECONDS} s 1920x1080 {FPS} fps testsrc2 (x264 crf 18) + 48 kHz stereo sine (AAC)"),
            format!("ffmpeg -v error -y -f lavfi -i testsrc2=size=1920x1080:rate={FPS} {audio}"),
        ),
        (
            "life with grain",
            format!(
                "{SECONDS} s 1920x1080 {FPS} fps Conway's life (480x270 cells scaled bicubic, mould) under temporal grain (noise 5) (x264 crf 18) + 48 kHz stereo sine (AAC)"
            ),
            format!(
                "ffmpeg -v error -y -f lavfi -i 'life=size=480x270:rate={FPS}:ratio=0.1:mold=25:life_color=#e0e070:death_color=#204060:mold_color=#a04050,scale=1920:1080:flags=bicubic,format=yuv420p,noise=alls=5:allf=t' {audio}"
            ),
        ),
    ];
    let mut reports = Vec::new();
    for (i, (name, description, generate)) in sources.iter().enumerate() {
        reports.push(run_source(
            name,
            description,
            generate,
            &scratch.path().join(i.to_string()),
            &ladder,
            &videosync,
            runs,
        )?);
    }
    let flags = first_line("grep -m1 '^flags' /proc/cpuinfo");
    let simd: Vec<&str> = flags
        .split_whitespace()
        .filter(|f| {
            ["sse4", "avx", "fma", "bmi", "ssse3"]
                .iter()
                .any(|p| f.starts_with(p))
        })
        .collect();
    let report = Report {
        machine: first_line("uname -srm"),
        cpu: first_line("grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2"),
        cpu_flags: simd.join(" "),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ffmpeg: first_line("ffmpeg -version")
            .split(" Copyright")
            .next()
            .unwrap_or_default()
            .to_owned(),
        x264: first_line("dpkg-query -W -f '${Version}\\n' 'libx264-*' 2>/dev/null | head -1"),
        rungs: ladder.rungs.clone(),
        runs,
        order: format!(
            "each round runs {} and the next the reverse",
            RUNS.join(", ")
        ),
        sources: reports,
    };
    let dir = root.join("benches/results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("ladder.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = markdown(&report);
    std::fs::write(dir.join("ladder.md"), &md)?;
    println!("{md}");
    Ok(())
}
