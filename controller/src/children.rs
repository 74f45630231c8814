//! Child processes the controller starts (local agents, the embedded simulator), tied to its
//! life: each is started with `--stop-on-stdin-eof` and a pipe on stdin, so it exits when the
//! controller does, even when the controller is killed; and it is killed when its guard drops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use stampede_common::handshake::parse_listening_line;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// How long a child may take to print its listening line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running child; killed when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    // Held open so the child sees EOF only when the controller goes away.
    _stdin: Option<ChildStdin>,
}

impl ChildGuard {
    /// Process id, when the child is still running.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Finds a sibling binary of the running controller (`agent`, `sim`), or the one named by
/// the environment variable `env_var`.
///
/// # Errors
/// When neither exists.
pub fn sibling_binary(name: &str, env_var: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("cannot locate the controller's own executable")?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        bail!(
            "cannot find the {name} binary next to the controller at {} (build it with `cargo build --release`, or set {env_var})",
            path.display()
        )
    }
}

/// Starts `binary args... --listen 127.0.0.1:0 --stop-on-stdin-eof` and waits for its
/// `listening on ADDR` line.
///
/// # Errors
/// When it cannot start, exits, or does not report an address in time.
pub async fn spawn_listening(
    name: &str,
    binary: &PathBuf,
    args: &[String],
) -> anyhow::Result<ChildGuard> {
    let mut child = Command::new(binary)
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--stop-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        // Its own process group: a terminal's Ctrl-C (SIGINT to the whole foreground group)
        // reaches only the controller, which stops the agents over gRPC and lets the requests in
        // flight finish. An agent that took the SIGINT itself would shut its server down
        // gracefully, refuse the controller's Stop and go on sending to the planned end. The
        // child still ends with the controller: its stdin closes, and it is killed on drop.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {name} ({})", binary.display()))?;
    let stdin = child.stdin.take();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("{name}: no stdout pipe"))?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(READY_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = parse_listening_line(&line) {
                return Ok(Some(addr));
            }
        }
        Ok::<_, std::io::Error>(None)
    })
    .await;
    let addr = match addr {
        Ok(Ok(Some(addr))) => addr,
        Ok(Ok(None)) => {
            let status = child.wait().await.ok();
            bail!(
                "{name} exited before it was listening ({})",
                status.map_or("unknown status".into(), |s| s.to_string())
            )
        }
        Ok(Err(e)) => bail!("{name}: cannot read its output: {e}"),
        Err(_) => bail!(
            "{name} did not report its address within {}s",
            READY_TIMEOUT.as_secs()
        ),
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(ChildGuard {
        name: name.to_string(),
        addr,
        child,
        _stdin: stdin,
    })
}
