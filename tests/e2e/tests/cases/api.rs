//! The API's own surface: health, OpenAPI document, metrics, unknown ids.

use berth_api::{ApiError, ErrorCode, Health};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::client::parse_json;
use crate::common::harness::Env;
use crate::common::Res;
use crate::ensure;

pub fn health_openapi_metrics(env: &Env) -> Res<()> {
    let api = &env.api;

    let (status, body) = api.send(
        api.request_with_token(Method::GET, "/healthz", None),
        "GET /healthz",
    )?;
    ensure!(
        status == StatusCode::OK,
        "GET /healthz without a token answered {status}: {body}"
    );
    let health: Health = parse_json(&body, "a health report")?;
    ensure!(
        !health.version.is_empty(),
        "GET /healthz reports an empty version: {body}"
    );

    let (status, body) = api.send(
        api.request(Method::GET, "/openapi.json"),
        "GET /openapi.json",
    )?;
    ensure!(
        status == StatusCode::OK,
        "GET /openapi.json answered {status}: {body}"
    );
    let doc: Value = parse_json(&body, "an OpenAPI document")?;
    ensure!(
        doc["openapi"].is_string(),
        "/openapi.json has no \"openapi\" version field"
    );
    let paths = doc["paths"]
        .as_object()
        .ok_or("/openapi.json has no \"paths\" object")?;
    for path in [
        "/v1/containers",
        "/v1/containers/{id}",
        "/v1/containers/{id}/stop",
        "/v1/containers/{id}/logs",
    ] {
        ensure!(
            paths.contains_key(path),
            "/openapi.json does not document {path}; it has {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }

    let (status, body) = api.send(api.request(Method::GET, "/metrics"), "GET /metrics")?;
    ensure!(
        status == StatusCode::OK,
        "GET /metrics answered {status}: {body}"
    );
    ensure!(
        body.lines().any(|l| l.starts_with("berth_")),
        "GET /metrics has no berth_* sample in Prometheus text format:\n{body}"
    );
    Ok(())
}

pub fn unknown_container(env: &Env) -> Res<()> {
    let api = &env.api;
    let id = "pod-doesnotexist-0badc0de";
    let checks = [
        (Method::GET, format!("/v1/containers/{id}")),
        (Method::POST, format!("/v1/containers/{id}/stop")),
        (Method::GET, format!("/v1/containers/{id}/logs")),
    ];
    for (method, path) in checks {
        let mut req = api.request(method.clone(), &path);
        if method == Method::POST {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body("{}");
        }
        let (status, body) = api.send(req, &format!("{method} {path}"))?;
        ensure!(
            status == StatusCode::NOT_FOUND,
            "{method} {path} answered {status}, expected 404: {body}"
        );
        let err: ApiError = parse_json(&body, "an API error")?;
        ensure!(
            err.error.code == ErrorCode::NotFound,
            "{method} {path} answered 404 with code {:?}, expected not_found",
            err.error.code
        );
    }
    Ok(())
}
