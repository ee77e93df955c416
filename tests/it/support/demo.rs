//! `enforcer demo` for the tests that watch it (the dashboard's end-to-end test, the demo's
//! own run): started on a copy of the shipped config with free ports, in its own process
//! group, killed with everything it started when the test ends.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::bin;

/// A child process killed when the test ends, however it ends. Started as the leader of
/// its own process group (see [`grouped`]), the whole group goes: chromedriver's Chromium
/// would otherwise outlive a failed test.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cmd` as the leader of a new process group.
pub fn grouped(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
}

/// `enforcer demo <args>` on a copy of the shipped config with every port picked by the
/// kernel.
/// Returns the process, the management address and the config copy (kept alive).
pub fn start_demo(args: &[&str]) -> (Killed, SocketAddr, tempfile::TempDir) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let conf = std::fs::read_to_string(root.join("config/ase.conf")).unwrap();
    let mut out = String::new();
    for line in conf.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim()).unwrap_or("");
        match key {
            "http_ws_port" | "https_wss_port" | "management_port" => {
                out.push_str(&format!("{key}=0\n"))
            }
            "bind_address" => out.push_str("bind_address=127.0.0.1\n"),
            "tls_cert_path" | "tls_key_path" => {
                let value = line.split_once('=').unwrap().1.trim();
                let abs = root.join("config").join(value);
                out.push_str(&format!("{key}={}\n", abs.display()));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    std::fs::write(dir.path().join("ase.conf"), out).unwrap();
    std::fs::create_dir_all(dir.path().join("api")).unwrap();
    for e in std::fs::read_dir(root.join("config/api")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join("api").join(p.file_name().unwrap())).unwrap();
    }
    let mut child = Command::new(bin())
        .args(["demo", "--config"])
        .arg(dir.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let child = Killed(child);
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the demo printed its dashboard address");
        if let Some(rest) = line.strip_prefix("enforcer demo: dashboard http://") {
            let addr = rest.split('/').next().unwrap().parse().unwrap();
            return (child, addr, dir);
        }
    }
}
