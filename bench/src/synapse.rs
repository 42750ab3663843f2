//! Matrix Synapse, the peer of issue 20: found in a virtualenv the operator made, started as a
//! child process on loopback with a configuration of the run's own, and spoken to over the
//! Matrix client-server API.
//!
//! **Nothing is installed silently.** The harness looks for a Python that can import `synapse`
//! ([`PYTHON_ENV`], default [`DEFAULT_PYTHON`] under the workspace) and, if there is none,
//! fails with the two lines that install one ([`missing_message`]).
//!
//! **Configuration.** `python -m synapse.app.homeserver --generate-config` writes the default
//! configuration of a fresh homeserver into a temporary directory; a second file that the
//! harness writes ([`overrides`], JSON, which is YAML) is passed after it, so its top-level keys
//! win: SQLite in the temporary directory, one plain-HTTP client listener on 127.0.0.1 (TLS would
//! be a reverse proxy in front of it, which is work Synapse does not do here and Confide does),
//! every rate limit lifted, registration open without verification (bcrypt at its cheapest
//! cost, so that registering a hundred users takes no time), presence off, no statistics
//! reported, no key servers. Nothing federates: the run has one server.

use anyhow::{Context as _, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

/// Environment variable naming the Python that runs Synapse.
pub const PYTHON_ENV: &str = "CONFIDE_BENCH_SYNAPSE_PYTHON";
/// The Python used without [`PYTHON_ENV`], relative to the workspace.
pub const DEFAULT_PYTHON: &str = "target/peer/venv/bin/python";
/// The server name the homeserver is generated with (user ids end in `:bench.localhost`).
const SERVER_NAME: &str = "bench.localhost";
/// How long Synapse may take to answer `/health` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How often `/health` is asked while Synapse starts.
const HEALTH_POLL: Duration = Duration::from_millis(250);
/// A rate limit nobody in a benchmark reaches: requests per second, and the burst (an integer:
/// Synapse parses it with `int()`).
const UNLIMITED: u64 = 1_000_000_000;
/// How long any request may take: a long-polling `/sync` waits up to
/// the peer scenario's sync timeout and must not be cut short.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// What Synapse logs once the schema's background updates of a fresh database are done.
const UPDATES_DONE: &str = "No more background updates to do";
/// How many lines of Synapse's output a failure shows.
const LOG_TAIL_LINES: usize = 30;

/// The workspace this harness was built in.
fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// What to install, and where, when `python` (taken from [`PYTHON_ENV`] if `from_env`) cannot
/// import Synapse.
pub fn missing_message(python: &Path, from_env: bool) -> String {
    let whence = if from_env {
        format!("{} (from {PYTHON_ENV})", python.display())
    } else {
        python.display().to_string()
    };
    format!(
        "the peer scenario needs Matrix Synapse, and {whence} cannot import it. Install it, in \
         the workspace ({}):\n\n    python3 -m venv target/peer/venv && \
         target/peer/venv/bin/pip install matrix-synapse\n\nor set {PYTHON_ENV} to a Python \
         that can import synapse",
        workspace().display()
    )
}

/// The Python that runs Synapse: [`PYTHON_ENV`], or [`DEFAULT_PYTHON`] under the workspace.
/// Fails, saying how to install Synapse, unless it exists and can import `synapse`.
pub async fn find_python() -> anyhow::Result<PathBuf> {
    let (python, from_env) = match std::env::var_os(PYTHON_ENV) {
        Some(path) => (PathBuf::from(path), true),
        None => (workspace().join(DEFAULT_PYTHON), false),
    };
    let imports = tokio::process::Command::new(&python)
        .args(["-c", "import synapse.app.homeserver"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|status| status.success())
        .unwrap_or(false);
    if !imports {
        bail!("{}", missing_message(&python, from_env));
    }
    Ok(python)
}

/// The configuration that overrides the generated one, for a listener on `port` and a database
/// at `database`.
pub fn overrides(port: u16, database: &Path) -> Value {
    let unlimited = json!({"per_second": UNLIMITED, "burst_count": UNLIMITED});
    json!({
        "listeners": [{
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": false,
            "x_forwarded": false,
            "resources": [{"names": ["client"], "compress": false}],
        }],
        "database": {"name": "sqlite3", "args": {"database": database}},
        "report_stats": false,
        "presence": {"enabled": false},
        "enable_registration": true,
        "enable_registration_without_verification": true,
        "bcrypt_rounds": 4,
        "trusted_key_servers": [],
        "suppress_key_server_warning": true,
        "url_preview_enabled": false,
        "enable_metrics": false,
        "rc_message": unlimited,
        "rc_registration": unlimited,
        "rc_registration_token_validity": unlimited,
        "rc_login": {"address": unlimited, "account": unlimited, "failed_attempts": unlimited},
        "rc_joins": {"local": unlimited, "remote": unlimited},
        "rc_joins_per_room": unlimited,
        "rc_invites": {"per_room": unlimited, "per_user": unlimited, "per_issuer": unlimited},
        "rc_room_creation": unlimited,
        "rc_3pid_validation": unlimited,
        "rc_admin_redaction": unlimited,
        "rc_key_requests": unlimited,
        "rc_presence": {"per_user": unlimited},
        "rc_delayed_event_mgmt": unlimited,
        "rc_reports": unlimited,
        // A fresh database has background updates to run; back to back, they are over before
        // the run starts (see `Synapse::wait_healthy`).
        "background_updates": {"sleep_enabled": false},
    })
}

/// A Synapse homeserver running as a child process, with its directory.
pub struct Synapse {
    child: tokio::process::Child,
    /// Where the client API is, e.g. `http://127.0.0.1:40123`.
    base: String,
    /// Its configuration, database, media and output; removed when dropped.
    dir: tempfile::TempDir,
}

impl Synapse {
    /// Generates a configuration, starts Synapse with `python` and waits until it is healthy.
    pub async fn start(python: &Path, http: &reqwest::Client) -> anyhow::Result<Synapse> {
        let dir = tempfile::Builder::new()
            .prefix("confide-bench-synapse")
            .tempdir()?;
        let config = dir.path().join("homeserver.yaml");
        let generated = tokio::process::Command::new(python)
            .args(["-m", "synapse.app.homeserver", "--server-name", SERVER_NAME])
            .arg("--config-path")
            .arg(&config)
            .arg("--data-directory")
            .arg(dir.path())
            .args(["--generate-config", "--report-stats=no"])
            .current_dir(dir.path())
            .output()
            .await
            .context("running synapse --generate-config")?;
        if !generated.status.success() {
            bail!(
                "synapse --generate-config failed: {}",
                String::from_utf8_lossy(&generated.stderr)
            );
        }
        let port = free_port()?;
        let bench = dir.path().join("bench.yaml");
        let settings = overrides(port, &dir.path().join("homeserver.db"));
        std::fs::write(&bench, serde_json::to_vec_pretty(&settings)?)?;
        let output = std::fs::File::create(dir.path().join("output.log"))?;
        let child = tokio::process::Command::new(python)
            .args(["-m", "synapse.app.homeserver"])
            .arg("--config-path")
            .arg(&config)
            .arg("--config-path")
            .arg(&bench)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .context("starting synapse")?;
        let mut synapse = Synapse {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        synapse.wait_healthy(http).await?;
        synapse.wait_for_background_updates().await?;
        Ok(synapse)
    }

    async fn wait_healthy(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let url = format!("{}/health", self.base);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "synapse exited with {status} while starting:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "synapse did not answer /health within {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// Waits until Synapse says its background updates are done, so that they do not compete
    /// with the run for the CPU.
    async fn wait_for_background_updates(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let log = self.dir.path().join("homeserver.log");
        loop {
            let text = tokio::fs::read_to_string(&log).await.unwrap_or_default();
            if text.contains(UPDATES_DONE) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "synapse exited with {status} while starting:\n{}",
                    self.log_tail()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "synapse did not finish its background updates within {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// The last lines of Synapse's output and log, for a failure message.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for name in ["output.log", "homeserver.log"] {
            if let Ok(text) = std::fs::read_to_string(self.dir.path().join(name)) {
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(LOG_TAIL_LINES);
                out.push_str(&format!("--- {name}\n{}\n", lines[from..].join("\n")));
            }
        }
        out
    }

    /// Where its client API is.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Its process id (for its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills it and removes its directory.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// A port nothing listens on now (Synapse binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The HTTP client for Synapse: keep-alive connections without limit (a hundred long-polling
/// syncs and the posts in flight), no proxy, no overall timeout shorter than a long poll.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// Percent-encodes `text` for one path segment (room ids hold `!` and `:`).
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A user logged in on Synapse.
#[derive(Clone, Debug)]
pub struct User {
    /// `@name:bench.localhost`.
    pub user_id: String,
    /// The device the registration logged in.
    pub device_id: String,
    /// `Bearer …`, the value of the Authorization header.
    pub authorization: String,
}

/// Sends a JSON request and returns the JSON answer, failing on any status but 2xx.
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let mut request = http.request(method.clone(), url);
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(body)?);
    }
    let response = request.send().await?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        bail!(
            "{method} {}: {status}: {}",
            url.split('?').next().unwrap_or(url),
            String::from_utf8_lossy(&bytes)
                .chars()
                .take(300)
                .collect::<String>()
        );
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// Registers `name` (with the dummy authentication that registration without verification
/// accepts) and returns the logged-in user.
pub async fn register(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<User> {
    let body = json!({
        "username": name,
        "password": format!("bench-{name}"),
        "auth": {"type": "m.login.dummy"},
        "initial_device_display_name": "confide-bench",
    });
    let url = format!("{base}/_matrix/client/v3/register");
    let answer = call(http, reqwest::Method::POST, &url, None, Some(&body)).await?;
    let text = |key: &str| -> anyhow::Result<String> {
        answer
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("registration answer without {key}"))
    };
    Ok(User {
        user_id: text("user_id")?,
        device_id: text("device_id")?,
        authorization: format!("Bearer {}", text("access_token")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_escaped_for_a_path() {
        assert_eq!(
            path_segment("!AbC-1_x:bench.localhost"),
            "%21AbC-1_x%3Abench.localhost"
        );
    }

    #[test]
    fn the_overrides_lift_every_rate_limit_and_keep_the_listener_on_loopback() {
        let config = overrides(8448, Path::new("/tmp/x/homeserver.db"));
        let listener = &config["listeners"][0];
        assert_eq!(listener["bind_addresses"], json!(["127.0.0.1"]));
        assert_eq!(listener["port"], json!(8448));
        assert_eq!(listener["tls"], json!(false));
        assert_eq!(config["database"]["name"], json!("sqlite3"));
        let limits: Vec<&String> = config
            .as_object()
            .map(|o| o.keys().filter(|k| k.starts_with("rc_")).collect())
            .unwrap_or_default();
        assert!(limits.len() >= 8);
        assert_eq!(config["rc_message"]["per_second"], json!(UNLIMITED));
        assert_eq!(config["presence"]["enabled"], json!(false));
    }

    #[test]
    fn a_missing_synapse_is_reported_with_the_lines_that_install_it() {
        let message = missing_message(Path::new("/nowhere/python"), true);
        assert!(message.contains("/nowhere/python (from CONFIDE_BENCH_SYNAPSE_PYTHON)"));
        assert!(message.contains(
            "python3 -m venv target/peer/venv && target/peer/venv/bin/pip install matrix-synapse"
        ));
        assert!(DEFAULT_PYTHON.starts_with("target/peer/venv/"));
    }
}
