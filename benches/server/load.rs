//! HTTP load with `oha`: one process per run, its JSON summary parsed.
//! Fixed-rate runs use `-q` with `--latency-correction`, so a request that
//! waited for its turn counts from when it should have been sent (no
//! coordinated omission); saturation runs keep a fixed number of requests
//! in flight and report what the server sustained.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// The load tool.
#[derive(Debug, Clone)]
pub(crate) struct Oha {
    bin: PathBuf,
    pub(crate) version: String,
}

impl Oha {
    /// `oha` on `PATH`, else the one `scripts/deps.sh bench` installs
    /// under `$VIDEOSYNC_CACHE/tools/bin`.
    pub(crate) fn find() -> Result<Oha, String> {
        let mut candidates: Vec<PathBuf> = vec!["oha".into()];
        let cache = std::env::var_os("VIDEOSYNC_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/videosync"))
            });
        if let Some(c) = cache {
            candidates.push(c.join("tools/bin/oha"));
        }
        for bin in candidates {
            if let Ok(out) = Command::new(&bin).arg("--version").output() {
                if out.status.success() {
                    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                    return Ok(Oha { bin, version });
                }
            }
        }
        Err(
            "the server benchmark needs `oha` (https://github.com/hatoo/oha): \
             `make bench BENCH=server` installs it (scripts/deps.sh bench), \
             or `cargo install oha --locked`"
                .to_owned(),
        )
    }

    /// Runs `req` for `window` with `concurrency` connections, at `rate`
    /// requests per second (or as fast as they come back when `None`).
    pub(crate) async fn run(
        &self,
        req: &Request,
        window: Duration,
        concurrency: usize,
        rate: Option<u32>,
    ) -> Run {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--no-tui", "--output-format", "json"])
            .arg("-z")
            .arg(format!("{}ms", window.as_millis()))
            .arg("-c")
            .arg(concurrency.to_string())
            .arg("-m")
            .arg(req.method);
        if let Some(q) = rate {
            cmd.arg("-q").arg(q.to_string()).arg("--latency-correction");
        }
        for (k, v) in &req.headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if let Some(b) = &req.body {
            cmd.arg("-d").arg(b);
        }
        cmd.arg(&req.url);
        let shown = format!("{cmd:?}");
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("running {shown}: {e}"));
        assert!(
            out.status.success(),
            "oha failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "oha's output is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        Run::from_json(&json, rate)
    }
}

/// One kind of request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: &'static str,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<String>,
}

/// What one oha run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Run {
    /// The offered rate, or `None` for a saturation run.
    pub(crate) offered_rps: Option<u32>,
    /// 2xx answers per second of the run.
    pub(crate) ok_rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) ok: u64,
    /// Answers that were not 2xx.
    pub(crate) not_ok: u64,
    /// Connection errors and timeouts (requests cut off by the end of the
    /// window not included).
    pub(crate) errors: u64,
}

fn ms(v: &Value) -> f64 {
    v.as_f64().map_or(f64::NAN, |s| s * 1000.0)
}

impl Run {
    fn from_json(j: &Value, rate: Option<u32>) -> Run {
        let mut ok = 0;
        let mut not_ok = 0;
        if let Some(codes) = j["statusCodeDistribution"].as_object() {
            for (code, n) in codes {
                let n = n.as_u64().unwrap_or(0);
                if code.starts_with('2') {
                    ok += n;
                } else {
                    not_ok += n;
                }
            }
        }
        let errors = j["errorDistribution"].as_object().map_or(0, |e| {
            e.iter()
                .filter(|(k, _)| !k.contains("deadline"))
                .map(|(_, n)| n.as_u64().unwrap_or(0))
                .sum()
        });
        let secs = j["summary"]["total"].as_f64().unwrap_or(f64::NAN);
        Run {
            offered_rps: rate,
            ok_rps: ok as f64 / secs,
            p50_ms: ms(&j["latencyPercentiles"]["p50"]),
            p99_ms: ms(&j["latencyPercentiles"]["p99"]),
            max_ms: ms(&j["summary"]["slowest"]),
            ok,
            not_ok,
            errors,
        }
    }

    /// Whether the run kept up with its offered rate within `p99_ms`:
    /// nothing but 2xx, at least 97 % of the offered rate served.
    pub(crate) fn sustained(&self, p99_ms: f64) -> bool {
        let Some(rate) = self.offered_rps else {
            return false;
        };
        self.not_ok == 0
            && self.errors == 0
            && self.ok_rps >= 0.97 * f64::from(rate)
            && self.p99_ms <= p99_ms
    }
}
