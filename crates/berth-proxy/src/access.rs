//! Access control for pods created with `authorized`: the request must carry a token the
//! [`Authorizer`] accepts, as `Authorization: Bearer`, as the `berth_token` cookie, or once
//! as `?berth_token=` (answered with the cookie and a redirect to the clean URL, so a link
//! opens in a browser). The token is taken off the request before it reaches the pod.

use hyper::header::{HeaderValue, AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};

use crate::response::{text, Body};

/// The query parameter and cookie that carry a token.
pub const TOKEN_PARAM: &str = "berth_token";

/// Decides which tokens open which pod ports.
pub trait Authorizer: Send + Sync + 'static {
    /// Whether `token` opens `port` of the pod `container_id`.
    fn allows(&self, token: &str, container_id: &str, port: u16) -> bool;
}

pub(crate) enum Access {
    Allowed,
    Respond(Response<Body>),
}

/// What the check needs to know about where the request is going.
pub(crate) struct Door<'a> {
    pub container_id: &'a str,
    pub port: u16,
    pub scheme: &'static str,
    /// The cookie's path: `/` for a pod host, the prefix for a path-style URL.
    pub cookie_path: &'a str,
}

pub(crate) fn check<B>(
    authorizer: Option<&dyn Authorizer>,
    door: &Door<'_>,
    req: &mut Request<B>,
) -> Access {
    let allows =
        |token: &str| authorizer.is_some_and(|a| a.allows(token, door.container_id, door.port));
    if let Some(token) = bearer(req) {
        if !allows(&token) {
            return Access::Respond(refused("the bearer token does not open this pod URL"));
        }
        req.headers_mut().remove(AUTHORIZATION);
        return Access::Allowed;
    }
    if let Some((token, clean)) = query_token(req) {
        if !allows(&token) || !cookie_safe(&token) {
            return Access::Respond(refused(
                "the berth_token in the URL does not open this pod URL",
            ));
        }
        return Access::Respond(with_cookie(&token, &clean, door));
    }
    match take_cookie(req) {
        Some(token) if allows(&token) => Access::Allowed,
        Some(_) => Access::Respond(refused(
            "the berth_token cookie no longer opens this pod URL (expired or revoked)",
        )),
        None => Access::Respond(refused(
            "this pod URL needs a token: send Authorization: Bearer <token>, or open it once with ?berth_token=<token>",
        )),
    }
}

fn bearer<B>(req: &Request<B>) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The token from the query, and the same target without it.
fn query_token<B>(req: &Request<B>) -> Option<(String, String)> {
    let query = req.uri().query()?;
    let mut token = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((TOKEN_PARAM, value)) => token = Some(value.to_string()),
            _ if pair == TOKEN_PARAM => token = Some(String::new()),
            _ => kept.push(pair),
        }
    }
    let token = token?;
    let path = req.uri().path();
    let clean = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    Some((token, clean))
}

/// Takes our cookie out of the `Cookie` header (the pod never sees it) and returns it.
fn take_cookie<B>(req: &mut Request<B>) -> Option<String> {
    let mut token = None;
    let mut kept = Vec::new();
    for value in req.headers().get_all(COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((TOKEN_PARAM, v)) => token = Some(v.trim_matches('"').to_string()),
                _ => kept.push(pair.to_string()),
            }
        }
    }
    token.as_ref()?;
    req.headers_mut().remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            req.headers_mut().insert(COOKIE, v);
        }
    }
    token
}

/// Tokens berth mints are URL- and cookie-safe; anything else is not one of ours.
fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

fn with_cookie(token: &str, clean: &str, door: &Door<'_>) -> Response<Body> {
    let mut resp = text(
        StatusCode::SEE_OTHER,
        format!("token accepted; continue at {clean}\n"),
    );
    // Host-only (no Domain), so it is sent to this pod host alone; HttpOnly keeps it from
    // the page's scripts; Lax still sends it on a link from elsewhere.
    let secure = if door.scheme == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{TOKEN_PARAM}={token}; Path={}; HttpOnly; SameSite=Lax{secure}",
        door.cookie_path
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_str(clean) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

fn refused(message: &str) -> Response<Body> {
    let mut resp = text(StatusCode::UNAUTHORIZED, format!("{message}\n"));
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"berth\""),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One;
    impl Authorizer for One {
        fn allows(&self, token: &str, container_id: &str, port: u16) -> bool {
            token == "good" && container_id == "pod-a" && port == 80
        }
    }

    const DOOR: Door<'static> = Door {
        container_id: "pod-a",
        port: 80,
        scheme: "https",
        cookie_path: "/",
    };

    fn status(access: Access) -> Option<StatusCode> {
        match access {
            Access::Allowed => None,
            Access::Respond(r) => Some(r.status()),
        }
    }

    #[test]
    fn a_bearer_token_opens_and_is_not_forwarded() {
        let mut req = Request::builder()
            .uri("/")
            .header("authorization", "Bearer good")
            .body(())
            .expect("req");
        assert!(status(check(Some(&One), &DOOR, &mut req)).is_none());
        assert!(!req.headers().contains_key("authorization"));
        let mut req = Request::builder()
            .uri("/")
            .header("authorization", "Bearer bad")
            .body(())
            .expect("req");
        assert_eq!(
            status(check(Some(&One), &DOOR, &mut req)),
            Some(StatusCode::UNAUTHORIZED)
        );
    }

    #[test]
    fn a_query_token_becomes_a_cookie_and_a_clean_redirect() {
        let mut req = Request::builder()
            .uri("/tree?a=1&berth_token=good&b=2")
            .body(())
            .expect("req");
        let Access::Respond(resp) = check(Some(&One), &DOOR, &mut req) else {
            panic!("expected a redirect");
        };
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers()["location"], "/tree?a=1&b=2");
        assert_eq!(
            resp.headers()["set-cookie"],
            "berth_token=good; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn the_cookie_opens_and_only_ours_is_removed() {
        let mut req = Request::builder()
            .uri("/")
            .header("cookie", "_xsrf=1; berth_token=good; other=2")
            .body(())
            .expect("req");
        assert!(status(check(Some(&One), &DOOR, &mut req)).is_none());
        assert_eq!(req.headers()["cookie"], "_xsrf=1; other=2");
        let mut none = Request::builder().uri("/").body(()).expect("req");
        assert_eq!(
            status(check(Some(&One), &DOOR, &mut none)),
            Some(StatusCode::UNAUTHORIZED)
        );
        let mut no_authorizer = Request::builder()
            .uri("/")
            .header("authorization", "Bearer good")
            .body(())
            .expect("req");
        assert_eq!(
            status(check(None, &DOOR, &mut no_authorizer)),
            Some(StatusCode::UNAUTHORIZED)
        );
    }
}
