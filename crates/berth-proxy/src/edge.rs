//! Answers given before any routing: ACME HTTP-01 challenges, the redirect from plain HTTP
//! to HTTPS when TLS is on, and 421 for a request whose host is not the one its TLS
//! connection was opened for (a client reusing a connection across hosts).

use hyper::header::{HeaderValue, LOCATION};
use hyper::{Request, Response, StatusCode};

use crate::host::strip_port;
use crate::ingress::{ClientConn, Ingress};
use crate::response::{text, Body};

const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

pub(crate) fn answer<B>(
    ingress: &Ingress,
    client: &ClientConn,
    req: &Request<B>,
) -> Option<Response<Body>> {
    let host = crate::route::request_host(req);
    if let (Some(challenges), Some(token)) = (
        &ingress.acme_challenges,
        req.uri().path().strip_prefix(ACME_PREFIX),
    ) {
        return Some(match challenges.answer(token) {
            Some(key_authorization) => text(StatusCode::OK, key_authorization),
            None => text(StatusCode::NOT_FOUND, "no such ACME challenge\n".into()),
        });
    }
    if client.scheme == "http" {
        if let Some(https_port) = ingress.https_port {
            return Some(redirect_to_https(host, https_port, req));
        }
    }
    if let Some(sni) = &client.server_name {
        let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        if !host.is_empty() && &name != sni {
            return Some(text(
                StatusCode::MISDIRECTED_REQUEST,
                format!("this connection is for {sni}, not {name}; open a new connection\n"),
            ));
        }
    }
    None
}

fn redirect_to_https<B>(host: &str, https_port: u16, req: &Request<B>) -> Response<Body> {
    let name = strip_port(host);
    let authority = match https_port {
        443 => name.to_string(),
        port => format!("{name}:{port}"),
    };
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = format!("https://{authority}{target}");
    // 308 keeps the method and body, unlike 301.
    let mut resp = text(
        StatusCode::PERMANENT_REDIRECT,
        format!("this ingress serves HTTPS: {location}\n"),
    );
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            resp.headers_mut().insert(LOCATION, v);
            resp
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "malformed Host header\n".into()),
    }
}
