//! The inline request path on arbitrary bytes: hyper's HTTP/1.1 server parser, then
//! enforcer's handler with every capture on (routing, identities from cookie, bearer JWT,
//! API key and XFF, lists, decoy, flow control, detection, forwarding to a backend that
//! refuses, recording). Whatever the bytes, the connection ends with an answer or a
//! close, never a panic or a hang.

#![no_main]

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use enforcer::app::App;
use enforcer::proxy::{Conn, Inline};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    rt: tokio::runtime::Runtime,
    inline: Arc<Inline>,
    _dir: tempfile::TempDir,
}

/// An API definition using every capture, in front of a port nothing listens on.
fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    std::fs::write(
        dir.path().join("ase.conf"),
        format!(
            "mode=inline\nenable_xff=true\nstore=none\nupstream_timeout=200ms\n\
             tls_cert_path={}\ntls_key_path={}\n",
            certs.join("server.crt").display(),
            certs.join("server.key").display()
        ),
    )
    .expect("ase.conf");
    std::fs::create_dir_all(dir.path().join("api")).expect("api dir");
    std::fs::write(
        dir.path().join("api/shop.json"),
        format!(
            r#"{{"api_metadata":{{"protocol":"http","url":"/shop","hostname":"*",
            "cookie":"JSESSIONID","oauth2_access_token":true,"apikey_header":"x-api-key",
            "login_url":"/shop/login","enable_blocking":true,
            "jwt":{{"location":"h:authorization:bearer","username":"username","clientid":"client_id"}},
            
            "api_pattern_enforcement":{{"protocol_allowed":"","http_redirect":{{"response_code":"","response_def":"","https_url":""}},
              "methods_allowed":["GET","POST","PUT"],"content_type_allowed":"","error_code":"401",
              "error_def":"Unauthorized","error_message_body":"401 Unauthorized"}},
            "flow_control":{{"client_spike_threshold":"1000/second","server_connection_queueing":false}},
            "api_memory_size":"64mb",
            "decoy_config":{{"decoy_enabled":true,"response_code":200,"response_def":"OK","response_message":"","decoy_subpaths":["/admin"]}},
            "servers":[{{"host":"127.0.0.1","port":{}}}]}}}}"#,
            closed.port()
        ),
    )
    .expect("api file");
    let config = enforcer::config::Config::load(dir.path()).expect("config");
    let app = Arc::new(App::new(config).expect("app"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let inline = Arc::new(Inline::new(app));
    World {
        rt,
        inline,
        _dir: dir,
    }
}

fuzz_target!(|data: &[u8]| {
    static WORLD: OnceLock<World> = OnceLock::new();
    let w = WORLD.get_or_init(world);
    w.rt.block_on(async {
        let (drain, _keep) = tokio::sync::mpsc::channel(1);
        let Some(live) = w.inline.app.admit(drain) else {
            return;
        };
        let conn = Arc::new(Conn::new(
            w.inline.clone(),
            1,
            "10.9.8.7:4242".parse().expect("peer"),
            false,
            live,
        ));
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let svc = service_fn(move |req| {
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(enforcer::proxy::handler::handle(conn, req).await) }
        });
        let serve = http1::Builder::new().serve_connection(TokioIo::new(server), svc);
        let talk = async {
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
            answer
        };
        let both = async { tokio::join!(serve, talk) };
        let Ok((_, answer)) = tokio::time::timeout(Duration::from_secs(5), both).await else {
            panic!("no answer and no close within 5 s");
        };
        // Whatever was answered is HTTP.
        if !answer.is_empty() {
            assert!(answer.starts_with(b"HTTP/1."), "{:?}", String::from_utf8_lossy(&answer));
        }
    });
});
