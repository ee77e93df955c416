//! Faults around enforcer rather than in its input: backends that reset, hang or answer
//! garbage, HTTP/2 clients that abuse stream resets and flow control, and a data directory
//! that stops accepting writes. Each time the process keeps serving a well-behaved client
//! and loses no record.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::support::backend::Backend;
use crate::support::{Enforcer, Setup, Watcher, api, client, eventually, manage};

/// A backend that reads one request head per connection and then does `act` to the
/// socket, for as long as the test runs.
fn raw_backend(act: fn(&mut TcpStream)) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                act(&mut s);
            });
        }
    });
    addr
}

/// Closes with a TCP reset (SO_LINGER 0) instead of a FIN.
fn reset(s: &mut TcpStream) {
    let _ = socket2::SockRef::from(&*s).set_linger(Some(Duration::ZERO));
    let _ = s.shutdown(std::net::Shutdown::Read);
}

/// Backends that fail in every way a server can; each answer is the documented one and
/// the good client on another API notices nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_backends_get_documented_answers_while_others_are_served() {
    let good = Backend::start("good").await;
    let mid_body = raw_backend(|s| {
        // Promises 100 000 bytes, sends 1 000, then resets the connection.
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n");
        let _ = s.write_all(&[b'x'; 1000]);
        let _ = s.flush();
        std::thread::sleep(Duration::from_millis(50));
        reset(s);
    });
    let garbage = raw_backend(|s| {
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02 not http at all\r\n\r\n");
    });
    let bad_length = raw_backend(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 12, 13\r\n\r\nhello world!");
    });
    let reset_at_once = raw_backend(reset);
    let closes_at_once = raw_backend(|_| {});
    let e = Enforcer::start(
        &Setup::inline()
            .set("upstream_timeout", "2s")
            .api("w", api("/w", "*", &[good.addr]))
            .api("midbody", api("/midbody", "*", &[mid_body]))
            .api("garbage", api("/garbage", "*", &[garbage]))
            .api("badlen", api("/badlen", "*", &[bad_length]))
            .api("rst", api("/rst", "*", &[reset_at_once]))
            .api("eof", api("/eof", "*", &[closes_at_once])),
    );
    let watcher = Watcher::echo(e.url("/w/echo"));
    let c = client();

    for _ in 0..3 {
        // The head was already forwarded when the backend broke: the client sees the
        // status, then a body that ends early with an error, never a hang.
        let started = Instant::now();
        let r = c.get(e.url("/midbody/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.bytes().await;
        assert!(
            body.as_ref().map(|b| b.len() < 100_000).unwrap_or(true),
            "a truncated body must not look complete"
        );
        assert!(body.is_err(), "the client is told the body broke");
        assert!(started.elapsed() < Duration::from_secs(2));

        for (path, method) in [
            ("/garbage/x", Method::GET),
            ("/badlen/x", Method::GET),
            ("/rst/x", Method::GET),
            ("/rst/x", Method::POST),
            ("/eof/x", Method::GET),
            ("/eof/x", Method::POST),
        ] {
            let r = c
                .request(method.clone(), e.url(path))
                .body("payload")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 502, "{method} {path}");
            assert_eq!(r.text().await.unwrap(), "Error: Bad Gateway");
        }
    }
    watcher.finish().await;

    // Every one of those exchanges is in the report, with the status the client got.
    for (name, total, success) in [
        ("midbody", 3, 3),
        ("garbage", 3, 0),
        ("badlen", 3, 0),
        ("rst", 6, 0),
        ("eof", 6, 0),
    ] {
        let m = manage(
            &e,
            Method::GET,
            &format!("/v4/abs/metrics?api={name}"),
            None,
        )
        .await;
        let s = &m["req_resp_summary"];
        assert_eq!(s["total_requests"], total, "{name}: {m}");
        assert_eq!(s["success"], success, "{name}: {m}");
    }
}

/// Just enough HTTP/2 to misbehave: frames written by hand on a plain (h2c prior
/// knowledge) connection.
mod h2raw {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    /// HEADERS flags: END_STREAM | END_HEADERS.
    pub const END: u8 = 0x5;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A GET for `path` as an HPACK block of static-table entries and literals that are
    /// never indexed, so every stream can reuse it whatever the server's table holds.
    pub fn get(path: &str) -> Vec<u8> {
        let mut b = vec![0x82, 0x86]; // :method GET, :scheme http
        b.push(0x04); // :path, literal without indexing
        b.push(path.len() as u8);
        b.extend_from_slice(path.as_bytes());
        b.push(0x01); // :authority, literal without indexing
        b.push(9);
        b.extend_from_slice(b"127.0.0.1");
        b
    }

    /// Connects and sends the preface and `settings` (id, value pairs).
    pub fn connect(addr: SocketAddr, settings: &[(u16, u32)]) -> TcpStream {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut payload = Vec::new();
        for (id, v) in settings {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&v.to_be_bytes());
        }
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(frame(SETTINGS, 0, 0, &payload));
        out.extend(frame(SETTINGS, 1, 0, &[])); // acknowledges the server's settings
        s.write_all(&out).unwrap();
        s
    }

    /// Reads frames until EOF or `limit`; returns (kind, flags, stream, payload) of each.
    pub fn read_all(mut s: TcpStream, limit: Duration) -> Vec<(u8, u8, u32, Vec<u8>)> {
        s.set_read_timeout(Some(limit)).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let mut frames = Vec::new();
        let mut at = 0;
        while buf.len() >= at + 9 {
            let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
            if buf.len() < at + 9 + len {
                break;
            }
            let stream = u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]]);
            frames.push((
                buf[at + 3],
                buf[at + 4],
                stream & 0x7fff_ffff,
                buf[at + 9..at + 9 + len].to_vec(),
            ));
            at += 9 + len;
        }
        frames
    }
}

/// A good API `/w` with a client checking every answer, and an API `/a` to attack.
async fn under_attack() -> (Backend, Backend, Enforcer, Watcher) {
    let good = Backend::start("good").await;
    let target = Backend::start("target").await;
    let e = Enforcer::start(
        &Setup::inline()
            .api("w", api("/w", "*", &[good.addr]))
            .api("a", api("/a", "*", &[target.addr])),
    );
    let watcher = Watcher::echo(e.url("/w/echo"));
    (good, target, e, watcher)
}

/// HTTP/2 rapid reset (CVE-2023-44487): a client that opens streams and cancels them at
/// once, thousands of times, is sent GOAWAY and cut off long before it has made the
/// backend do that much work; others are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_is_cut_off() {
    let (_good, target, e, watcher) = under_attack().await;
    let addr = e.http;
    const STREAMS: u32 = 20_000;
    let (sent, frames) = tokio::task::spawn_blocking(move || {
        let mut s = h2raw::connect(addr, &[]);
        let reader = s.try_clone().unwrap();
        let frames = std::thread::spawn(move || h2raw::read_all(reader, Duration::from_secs(10)));
        let block = h2raw::get("/a/echo");
        let mut sent = 0;
        'out: for batch in 0..STREAMS / 100 {
            let mut out = Vec::new();
            for i in 0..100 {
                let id = 2 * (batch * 100 + i) + 1;
                out.extend(h2raw::frame(h2raw::HEADERS, h2raw::END, id, &block));
                out.extend(h2raw::frame(h2raw::RST_STREAM, 0, id, &8u32.to_be_bytes()));
            }
            if s.write_all(&out).is_err() {
                break 'out;
            }
            sent += 100;
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        (sent, frames.join().unwrap())
    })
    .await
    .unwrap();
    let goaway = frames
        .iter()
        .find(|f| f.0 == h2raw::GOAWAY)
        .expect("the abuser is sent GOAWAY");
    let code = u32::from_be_bytes(goaway.3[4..8].try_into().unwrap());
    let seen = target.requests();
    eprintln!("sent {sent} streams before the cut, the backend saw {seen}");
    assert_eq!(code, 11, "GOAWAY with ENHANCE_YOUR_CALM");
    assert!(
        sent < STREAMS,
        "the connection was cut before the attack ended"
    );
    assert!(
        seen < 1_000,
        "the backend was made to answer {seen} cancelled streams"
    );
    watcher.finish().await;
}

/// HTTP/2 flow-control abuse: a client that grants no window (SETTINGS_INITIAL_WINDOW_SIZE
/// 0) and asks for 100 large downloads cannot make enforcer buffer them: memory stays
/// bounded by the per-stream send buffer, and others are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_zero_window_cannot_make_the_proxy_buffer() {
    let (_good, target, e, watcher) = under_attack().await;
    let before = e.peak_rss();
    const STREAMS: u32 = 100;
    let mut s = h2raw::connect(e.http, &[(4, 0)]);
    let block = h2raw::get("/a/download?bytes=20000000");
    let mut out = Vec::new();
    for i in 0..STREAMS {
        out.extend(h2raw::frame(h2raw::HEADERS, h2raw::END, 2 * i + 1, &block));
    }
    s.write_all(&out).unwrap();
    // Every download has started at the backend, and had time to fill whatever it could.
    assert!(
        eventually(Duration::from_secs(20), || async {
            target.requests() >= u64::from(STREAMS)
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = e.peak_rss().saturating_sub(before);
    eprintln!(
        "{STREAMS} stalled 20 MB downloads grew the peak RSS by {} KiB",
        grown / 1024
    );
    assert!(
        grown < 100 << 20,
        "{STREAMS} stalled downloads grew memory by {} MiB",
        grown >> 20
    );
    watcher.finish().await;
    let _ = h2raw::WINDOW_UPDATE;
    drop(s);
}

/// Sets the process's file-size limit (the `ulimit -f` a full disk looks like to a
/// writer: writes past it fail with EFBIG).
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    let soft = bytes.map_or("unlimited".to_string(), |b| b.to_string());
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--fsize={soft}:unlimited"),
        ])
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success());
}

async fn counted(e: &Enforcer) -> u64 {
    manage(e, Method::GET, "/v4/abs/metrics?api=shop", None).await["req_resp_summary"]
        ["total_requests"]
        .as_u64()
        .unwrap()
}

async fn persistence(e: &Enforcer) -> Value {
    manage(e, Method::GET, "/v4/ase/status", None).await["persistence"].clone()
}

/// The data directory stops taking writes (the file-size limit is reached, as on a full
/// disk): every request is still served and counted in memory, the condition shows in
/// status and the log, and when space returns the store catches up: a restart brings the
/// whole count back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_records_in_memory_and_catches_up() {
    let b = Backend::start("shop").await;
    let setup = Setup::inline()
        .set("store_flush_interval", "100ms")
        .api("shop", api("/shop", "*", &[b.addr]));
    let dir = setup.write();
    let mut e = Enforcer::start_in(dir.path());
    let c = client();
    let file = dir.path().join("data/enforcer.redb");
    assert!(eventually(Duration::from_secs(10), || async { file.exists() }).await);

    limit_file_size(e.pid(), Some(std::fs::metadata(&file).unwrap().len()));
    // Distinct paths and agents make new records, so the store must grow to hold them.
    let mut sent = 0u64;
    let mut round = 0;
    while persistence(&e).await["healthy"] == true {
        round += 1;
        assert!(round < 200, "the store never hit the limit");
        for i in 0..100 {
            let r = c
                .get(e.url(&format!("/shop/item/{round}/{i}")))
                .header("user-agent", format!("agent-{round}-{i}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still serving and counting while the disk is full.
    for i in 0..50 {
        let r = c
            .get(e.url(&format!("/shop/full/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        sent += 1;
    }
    assert_eq!(counted(&e).await, sent);
    let p = persistence(&e).await;
    assert!(p["errors"].as_u64().unwrap() >= 1, "{p}");
    assert!(
        p["last_error"].as_str().unwrap_or("").contains("large"),
        "{p}"
    );
    assert!(e.wait_for_log("cannot write the store", Duration::from_secs(10)));

    // Space comes back: the next flush writes everything that waited.
    limit_file_size(e.pid(), None);
    assert!(
        eventually(Duration::from_secs(10), || async {
            persistence(&e).await["healthy"] == true
        })
        .await,
        "the store never recovered: {}",
        persistence(&e).await
    );
    assert!(e.wait_for_log("store writes work again", Duration::from_secs(10)));
    e.signal("KILL");
    let _ = e.wait(Duration::from_secs(10));
    let e2 = Enforcer::start_in(dir.path());
    assert_eq!(
        counted(&e2).await,
        sent,
        "records written after the disk came back"
    );
}
