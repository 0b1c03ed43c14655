//! Readies a request for the pod and sends it: hop-by-hop headers out, the forwarding
//! headers in (`X-Forwarded-For/Proto/Host/Prefix` and RFC 7239 `Forwarded`), and HTTP/2
//! requests turned into the HTTP/1.1 every pod speaks.

use std::net::SocketAddr;

use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, COOKIE, HOST};
use hyper::{Request, Response, Uri, Version};

use crate::upstream::UpstreamError;
use crate::{hop, Route};

/// What the pod receives: the client's body, cut off past the ingress's cap.
pub(crate) type ReqBody = Limited<Incoming>;

/// How the request reached the ingress, for the forwarding headers.
pub(crate) struct Origin<'a> {
    pub peer: SocketAddr,
    pub host: &'a str,
    pub scheme: &'static str,
    /// The path-style prefix (`/pod/<stub>/<port>`) removed from the path, if any.
    pub prefix: Option<&'a str>,
}

pub(crate) fn prepare<B>(req: &mut Request<B>, origin: &Origin<'_>, upgrading: bool) {
    hop::strip(req.headers_mut(), upgrading);
    to_http11(req);
    add_forwarded(req, origin);
}

/// HTTP/2 carries the host in the URI's authority and has no `Host` header; a pod speaking
/// HTTP/1.1 wants the header and an origin-form target.
fn to_http11<B>(req: &mut Request<B>) {
    if req.version() == Version::HTTP_11 {
        return;
    }
    if !req.headers().contains_key(HOST) {
        if let Some(authority) = req.uri().authority() {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                req.headers_mut().insert(HOST, v);
            }
        }
    }
    if req.uri().authority().is_some() {
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        if let Ok(uri) = target.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    join_cookies(req.headers_mut());
    *req.version_mut() = Version::HTTP_11;
}

/// HTTP/2 clients may split `Cookie` into one field per cookie (RFC 9113 §8.2.3); HTTP/1.1
/// servers expect one line, so they are joined with "; " before forwarding.
fn join_cookies(headers: &mut hyper::HeaderMap) {
    if headers.get_all(COOKIE).iter().count() < 2 {
        return;
    }
    let joined = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    headers.remove(COOKIE);
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(COOKIE, v);
    }
}

fn add_forwarded<B>(req: &mut Request<B>, origin: &Origin<'_>) {
    let headers = req.headers_mut();
    let ip = origin.peer.ip().to_canonical();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    if let Ok(v) = HeaderValue::from_str(origin.host) {
        headers.insert("x-forwarded-host", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(origin.scheme));
    match origin.prefix.and_then(|p| HeaderValue::from_str(p).ok()) {
        Some(prefix) => headers.insert("x-forwarded-prefix", prefix),
        None => headers.remove("x-forwarded-prefix"),
    };
    // RFC 7239: IPv6 addresses and hosts with a port are quoted.
    let node = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let host = if origin
        .host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        origin.host.to_string()
    } else {
        format!("\"{}\"", origin.host.replace(['"', '\\'], ""))
    };
    let element = format!("for={node};host={host};proto={}", origin.scheme);
    let forwarded = match headers.get("forwarded").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {element}"),
        None => element,
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.insert("forwarded", v);
    }
}

pub(crate) async fn send(
    sender: &mut SendRequest<ReqBody>,
    req: Request<ReqBody>,
    route: &Route,
    port: u16,
) -> Result<Response<Incoming>, UpstreamError> {
    sender.send_request(req).await.map_err(|source| {
        if body_over_limit(&source) {
            UpstreamError::BodyTooLarge
        } else {
            UpstreamError::Closed {
                container_id: route.container_id.clone(),
                port,
                source,
            }
        }
    })
}

/// Whether sending failed because the client's body passed the cap.
fn body_over_limit(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http2_requests_become_origin_form_with_a_host() {
        let mut req = Request::builder()
            .version(Version::HTTP_2)
            .uri("https://a-80.pods.test/x?y=1")
            .header("cookie", "a=1")
            .header("cookie", "_xsrf=2|x|y")
            .body(())
            .expect("request");
        let origin = Origin {
            peer: "[::ffff:10.0.0.9]:5000".parse().expect("addr"),
            host: "a-80.pods.test",
            scheme: "https",
            prefix: None,
        };
        prepare(&mut req, &origin, false);
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.uri(), "/x?y=1");
        assert_eq!(req.headers()["host"], "a-80.pods.test");
        assert_eq!(
            req.headers()["cookie"],
            "a=1; _xsrf=2|x|y",
            "one cookie line for HTTP/1.1"
        );
        assert_eq!(req.headers()["x-forwarded-for"], "10.0.0.9");
        assert_eq!(
            req.headers()["forwarded"],
            "for=10.0.0.9;host=a-80.pods.test;proto=https"
        );
    }

    #[test]
    fn forwarded_appends_and_quotes_ipv6() {
        let mut req = Request::builder()
            .uri("/")
            .header("forwarded", "for=192.0.2.1")
            .header("x-forwarded-prefix", "/spoofed")
            .body(())
            .expect("request");
        let origin = Origin {
            peer: "[2001:db8::1]:5000".parse().expect("addr"),
            host: "a-80.pods.test:8443",
            scheme: "https",
            prefix: Some("/pod/a/80"),
        };
        prepare(&mut req, &origin, false);
        assert_eq!(
            req.headers()["forwarded"],
            "for=192.0.2.1, for=\"[2001:db8::1]\";host=\"a-80.pods.test:8443\";proto=https"
        );
        assert_eq!(req.headers()["x-forwarded-prefix"], "/pod/a/80");
    }
}
