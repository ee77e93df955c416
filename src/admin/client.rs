//! The management API client the CLI uses to talk to a running instance.
//!
//! The instance is found from its config directory: the management address comes from
//! `ase.conf` (`management_bind_address`, where `0.0.0.0` means loopback, and
//! `management_port`). When the port is `0` (a free port was picked at start), the address
//! the instance actually bound is read from `<data_dir>/instance.json`, which the running
//! instance writes once it is ready. The credentials come from `ase.conf`
//! (`management_access_key`, `management_secret_key`) unless the caller gives others, and
//! with `management_tls=true` the connection is TLS, verified against
//! `management_ca_cert_path` (or the Mozilla roots).
//!
//! Each endpoint the CLI uses has a method here that sends the request body and reads the
//! answer as the structs of [`wire`](super::wire) the handlers serialise; an answer that
//! is not a success is a [`ClientError::Refused`] carrying the server's message.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::wire::{
    Ack, Added, ApiList, ClusterView, ErrorBody, ListChange, ListView, Reload, Removed,
    SecretChange, Status, TokenBody, TokenCreated, Tokens,
};
use crate::config::{ConfigError, Settings};
use crate::enforce::lists::{ListKind, Source};

/// What a running instance records about itself in `<data_dir>/instance.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Instance {
    pub pid: u32,
    pub mode: String,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub management: SocketAddr,
}

impl Instance {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("instance.json")
    }
}

/// Why the CLI could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "no running enforcer found for this config: management_port is 0 and {} does not exist",
        file.display()
    )]
    NoInstance { file: PathBuf },
    #[error("{}: {reason}", file.display())]
    BadInstanceFile { file: PathBuf, reason: String },
    #[error("cannot reach enforcer's management API at {addr}: {reason} (is it running?)")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("management API at {addr}: {reason}")]
    Protocol { addr: SocketAddr, reason: String },
    /// The management API answered, but not with a success.
    #[error("{status}: {message}")]
    Refused { status: StatusCode, message: String },
    #[error("the management API answered something that is not JSON: {reason}")]
    NotJson { reason: String },
}

/// A client for one instance's management API.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    access_key: String,
    secret_key: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    /// Finds the instance that runs from config directory `dir`.
    pub fn for_config(dir: &Path) -> Result<Client, ClientError> {
        let settings = Settings::load(&dir.join("ase.conf"), &mut Vec::new())?;
        let tls = if settings.management_tls {
            let config = crate::tls::upstream_config(settings.management_ca_cert_path.as_deref())
                .map_err(|e| ClientError::BadInstanceFile {
                file: e.file.clone(),
                reason: e.to_string(),
            })?;
            Some(config)
        } else {
            None
        };
        let client = |addr| Client {
            addr,
            access_key: settings.management_access_key.clone(),
            secret_key: settings.management_secret_key.expose().to_string(),
            tls: tls.clone(),
        };
        if settings.management_port != 0 {
            let ip = match settings.management_bind_address {
                IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
                IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                ip => ip,
            };
            return Ok(client(SocketAddr::new(ip, settings.management_port)));
        }
        let file = Instance::path(&settings.data_dir);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ClientError::NoInstance { file });
            }
            Err(e) => {
                return Err(ClientError::BadInstanceFile {
                    file,
                    reason: e.to_string(),
                });
            }
        };
        let instance: Instance =
            serde_json::from_str(&text).map_err(|e| ClientError::BadInstanceFile {
                file: file.clone(),
                reason: e.to_string(),
            })?;
        Ok(client(instance.management))
    }

    /// Uses these credentials instead of the config's, where given.
    pub fn with_credentials(
        mut self,
        access_key: Option<String>,
        secret_key: Option<String>,
    ) -> Client {
        if let Some(a) = access_key {
            self.access_key = a;
        }
        if let Some(s) = secret_key {
            self.secret_key = s;
        }
        self
    }

    /// `GET path_and_query`; returns the status and the body.
    pub fn get(&self, path_and_query: &str) -> Result<(StatusCode, Bytes), ClientError> {
        self.send(Method::GET, path_and_query, Bytes::new())
    }

    /// Sends one request and waits for the whole answer (a one-shot connection).
    pub fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let addr = self.addr;
        let protocol = |reason: String| ClientError::Protocol { addr, reason };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| protocol(format!("cannot start a runtime: {e}")))?;
        let req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(http::header::HOST, addr.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(super::ACCESS_KEY, &self.access_key)
            .header(super::SECRET_KEY, &self.secret_key)
            .body(Full::new(body))
            .map_err(|e| protocol(e.to_string()))?;
        let tls = self.tls.clone();
        rt.block_on(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
                ClientError::Unreachable {
                    addr,
                    reason: e.to_string(),
                }
            })?;
            match tls {
                None => exchange(stream, req, addr).await,
                Some(config) => {
                    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                    let stream = tokio_rustls::TlsConnector::from(config)
                        .connect(name, stream)
                        .await
                        .map_err(|e| ClientError::Unreachable {
                            addr,
                            reason: format!("TLS: {e}"),
                        })?;
                    exchange(stream, req, addr).await
                }
            }
        })
    }
}

/// The endpoints the CLI uses, typed.
impl Client {
    /// Sends one request and reads a successful answer as `T`.
    pub fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<T, ClientError> {
        let body = success(self.send(method, path_and_query, body)?)?;
        serde_json::from_slice(&body).map_err(|e| ClientError::NotJson {
            reason: e.to_string(),
        })
    }

    /// Sends `body` as JSON and reads a successful answer as `T`.
    fn call_with<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Protocol {
            addr: self.addr,
            reason: format!("cannot encode the request: {e}"),
        })?;
        self.call(method, path_and_query, bytes.into())
    }

    /// `GET path_and_query`: a successful answer's body as text (reports are printed as
    /// the server wrote them).
    pub fn get_text(&self, path_and_query: &str) -> Result<String, ClientError> {
        let body = success(self.get(path_and_query)?)?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET /v4/ase/status`.
    pub fn status(&self) -> Result<Status, ClientError> {
        self.call(Method::GET, "/v4/ase/status", Bytes::new())
    }

    /// `GET /v4/ase/cluster` of a node in cluster mode.
    pub fn cluster(&self) -> Result<ClusterView, ClientError> {
        self.call(Method::GET, "/v4/ase/cluster", Bytes::new())
    }

    /// `GET /v4/ase/api`: the APIs in service.
    pub fn apis(&self) -> Result<ApiList, ClientError> {
        self.call(Method::GET, "/v4/ase/api", Bytes::new())
    }

    /// `GET /v4/ase/api?api_id=ID`: the API's definition document, as its file holds it.
    pub fn api(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, &api_path(id), Bytes::new())
    }

    /// `POST` (`create`) or `PUT /v4/ase/api?api_id=ID` with the definition's JSON text.
    pub fn put_api(&self, id: &str, definition: String, create: bool) -> Result<Ack, ClientError> {
        let method = if create { Method::POST } else { Method::PUT };
        self.call(method, &api_path(id), definition.into())
    }

    /// `DELETE /v4/ase/api?api_id=ID`.
    pub fn delete_api(&self, id: &str) -> Result<Ack, ClientError> {
        self.call(Method::DELETE, &api_path(id), Bytes::new())
    }

    /// `POST /v4/ase/reload`.
    pub fn reload(&self) -> Result<Reload, ClientError> {
        self.call(Method::POST, "/v4/ase/reload", Bytes::new())
    }

    /// `GET /v4/ase/blacklist` (or `whitelist`).
    pub fn list_view(&self, kind: ListKind) -> Result<ListView, ClientError> {
        self.call(Method::GET, &list_path(kind), Bytes::new())
    }

    /// `POST /v4/ase/blacklist` (or `whitelist`): adds the change's identifiers.
    pub fn list_add(&self, kind: ListKind, change: &ListChange) -> Result<Added, ClientError> {
        self.call_with(Method::POST, &list_path(kind), change)
    }

    /// `DELETE /v4/ase/blacklist` (or `whitelist`): removes the change's identifiers.
    pub fn list_remove(&self, kind: ListKind, change: &ListChange) -> Result<Removed, ClientError> {
        self.call_with(Method::DELETE, &list_path(kind), change)
    }

    /// `DELETE /v4/ase/blacklist?all=true[&source=S]` (or `whitelist`).
    pub fn list_clear(
        &self,
        kind: ListKind,
        source: Option<Source>,
    ) -> Result<Removed, ClientError> {
        let query = source.map_or(String::new(), |s| format!("&source={}", s.as_str()));
        let path = format!("{}?all=true{query}", list_path(kind));
        self.call(Method::DELETE, &path, Bytes::new())
    }

    /// `GET /v5/ase/sideband/token`.
    pub fn tokens(&self) -> Result<Tokens, ClientError> {
        self.call(Method::GET, TOKEN_PATH, Bytes::new())
    }

    /// `POST /v5/ase/sideband/token`: a new random token.
    pub fn create_token(&self) -> Result<TokenCreated, ClientError> {
        self.call(Method::POST, TOKEN_PATH, Bytes::new())
    }

    /// `PUT /v5/ase/sideband/token`: adds a token chosen elsewhere.
    pub fn import_token(&self, token: &str) -> Result<Ack, ClientError> {
        let body = TokenBody {
            token: token.to_string(),
        };
        self.call_with(Method::PUT, TOKEN_PATH, &body)
    }

    /// `DELETE /v5/ase/sideband/token`.
    pub fn delete_token(&self, token: &str) -> Result<Ack, ClientError> {
        let body = TokenBody {
            token: token.to_string(),
        };
        self.call_with(Method::DELETE, TOKEN_PATH, &body)
    }

    /// `POST /v5/ase/sideband/authentication?status=enable|disable` with `Some(on)`, or
    /// `GET` the setting with `None`.
    pub fn sideband_authentication(&self, set: Option<bool>) -> Result<Ack, ClientError> {
        let path = "/v5/ase/sideband/authentication";
        match set {
            None => self.call(Method::GET, path, Bytes::new()),
            Some(on) => {
                let status = if on { "enable" } else { "disable" };
                self.call(
                    Method::POST,
                    &format!("{path}?status={status}"),
                    Bytes::new(),
                )
            }
        }
    }

    /// `PUT /v5/ase/credentials`: changes the management secret key.
    pub fn set_secret(&self, secret_key: &str) -> Result<Ack, ClientError> {
        let body = SecretChange {
            secret_key: secret_key.to_string(),
        };
        self.call_with(Method::PUT, "/v5/ase/credentials", &body)
    }
}

const TOKEN_PATH: &str = "/v5/ase/sideband/token";

/// `/v4/ase/api?api_id=ID`.
fn api_path(id: &str) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("api_id", id);
    format!("/v4/ase/api?{}", q.finish())
}

/// `/v4/ase/blacklist` or `/v4/ase/whitelist` (ASE's words for the lists).
fn list_path(kind: ListKind) -> String {
    match kind {
        ListKind::Deny => "/v4/ase/blacklist".into(),
        ListKind::Allow => "/v4/ase/whitelist".into(),
    }
}

/// The body of a successful answer; otherwise [`ClientError::Refused`] with the error
/// body's `message` (or the body itself).
fn success((status, body): (StatusCode, Bytes)) -> Result<Bytes, ClientError> {
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_slice::<ErrorBody>(&body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
    Err(ClientError::Refused { status, message })
}

/// One HTTP/1.1 request and its whole answer over `io`.
async fn exchange<I>(
    io: I,
    req: Request<Full<Bytes>>,
    addr: SocketAddr,
) -> Result<(StatusCode, Bytes), ClientError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let protocol = |reason: String| ClientError::Protocol { addr, reason };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| protocol(e.to_string()))?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| protocol(e.to_string()))?
        .to_bytes();
    Ok((status, body))
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credentials.
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}
