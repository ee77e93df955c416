//! Sideband authentication endpoints: `/v5/ase/sideband/authentication` and
//! `/v5/ase/sideband/token` (also under `/v4/ase/sideband/`).

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::wire::{Ack, TokenBody, TokenCreated, Tokens};
use super::{Body, Query, bad_parameter, body, error, json, not_allowed};
use crate::app::App;
use crate::sideband::tokens::TokenError;

/// Handles `<prefix>/sideband/<rest>`.
pub(super) async fn handle(
    app: Arc<App>,
    method: &Method,
    rest: &str,
    query: &Query,
    req: Request<Incoming>,
) -> Response<Body> {
    match (method, rest) {
        (&Method::GET, "authentication") => sideband_authentication(&app),
        (&Method::POST, "authentication") => match query.get("status") {
            Some(s @ ("enable" | "disable")) => {
                let on = s == "enable";
                match durably(&app, app.sideband.tokens.set_required(on)).await {
                    Ok(()) => sideband_authentication(&app),
                    Err(e) => token_error(e),
                }
            }
            _ => bad_parameter("status", "status: use enable or disable".into()),
        },
        (_, "authentication") => not_allowed("GET, POST"),
        (&Method::GET, "token") => json(
            StatusCode::OK,
            &Tokens {
                tokens: app.sideband.tokens.list(),
            },
        ),
        (&Method::POST, "token") => match durably(&app, app.sideband.tokens.create()).await {
            Ok(token) => json(
                StatusCode::OK,
                &TokenCreated {
                    status: "token_created".into(),
                    token,
                },
            ),
            Err(e) => token_error(e),
        },
        (&Method::PUT | &Method::DELETE, "token") => {
            let token = match token_body(req).await {
                Ok(t) => t,
                Err(resp) => return resp,
            };
            let importing = method == Method::PUT;
            let changed = if importing {
                app.sideband.tokens.import(&token)
            } else {
                app.sideband.tokens.delete(&token)
            };
            let done = durably(&app, changed).await;
            let verb = if importing { "imported" } else { "deleted" };
            match done {
                Ok(()) => json(
                    StatusCode::OK,
                    &Ack::success(format!("Sideband token {token} {verb}.")),
                ),
                Err(e) => token_error(e),
            }
        }
        (_, "token") => not_allowed("GET, POST, PUT, DELETE"),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no sideband endpoint {rest}"),
        ),
    }
}

fn sideband_authentication(app: &App) -> Response<Body> {
    let state = if app.sideband.tokens.required() {
        "enabled"
    } else {
        "disabled"
    };
    json(
        StatusCode::OK,
        &Ack {
            status: state.into(),
            status_message: format!("Sideband authentication is {state}"),
        },
    )
}

fn token_error(e: TokenError) -> Response<Body> {
    let (status, code) = match &e {
        TokenError::Invalid => (StatusCode::BAD_REQUEST, "invalid_token"),
        TokenError::Exists(_) => (StatusCode::CONFLICT, "token_exists"),
        TokenError::NotFound(_) => (StatusCode::NOT_FOUND, "unknown_token"),
        TokenError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_failed"),
    };
    error(status, code, e.to_string())
}

/// The `{"token": "..."}` body of a token import or delete.
async fn token_body(req: Request<Incoming>) -> Result<String, Response<Body>> {
    let bytes = body(req).await?;
    serde_json::from_slice::<TokenBody>(&bytes)
        .map(|b| b.token)
        .map_err(|e| bad_parameter("token", format!("expected {{\"token\": \"...\"}}: {e}")))
}

/// Makes an applied change durable before it is acknowledged.
async fn durably<T>(app: &App, changed: Result<T, TokenError>) -> Result<T, TokenError> {
    let value = changed?;
    app.durable().await.map_err(TokenError::Store)?;
    Ok(value)
}
