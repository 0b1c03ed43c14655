//! The node port's routes: `join` with a token, then `register` and `heartbeat` with the
//! certificate the join gave.

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use berth_api::{ApiError, ErrorCode};
use berth_cluster::{fingerprint, JoinRequest, JoinResponse, JoinToken, Registration};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};

use super::{now, Cluster, Peer};
use crate::api::response::{parse_body, Failure};
use crate::store::NodeRow;

/// Join, register and heartbeat bodies are small; a certificate request is about 1 KiB.
const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_LABELS: usize = 32;
/// What one node may say it offers: 1,024 cores, 64 TiB.
const MAX_CPU_MILLIS: u64 = 1_024_000;
const MAX_MEMORY_MIB: u64 = 64 * 1024 * 1024;

pub fn router(cluster: Cluster) -> Router {
    Router::new()
        .route("/v1/cluster/join", post(join))
        .route("/v1/cluster/register", post(register))
        .route("/v1/cluster/heartbeat", post(heartbeat))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(cluster)
}

fn unauthenticated(message: impl Into<String>) -> Failure {
    Failure(ApiError::new(ErrorCode::Unauthenticated, message))
}

async fn join(
    State(cluster): State<Cluster>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Bytes,
) -> Result<Json<JoinResponse>, Failure> {
    let req: JoinRequest = parse_body(&body)?;
    let unknown = || {
        unauthenticated(
            "the join token is not one this control plane minted (or it was mistyped): print \
             one with `berth server join-token`",
        )
    };
    let Some((secret_sha256, expires_at)) = cluster
        .store
        .join_token(&req.token_id)
        .await
        .map_err(Failure::internal)?
    else {
        return Err(unknown());
    };
    if secret_sha256 != JoinToken::secret_sha256(&req.secret) {
        return Err(unknown());
    }
    if expires_at < now() {
        return Err(unauthenticated(format!(
            "the join token expired {} s ago: print a new one with `berth server join-token`",
            now() - expires_at
        )));
    }
    let node_id = crate::nodes::new_node_id();
    let cert_pem = cluster
        .ca
        .sign_node(&req.csr_pem, &node_id)
        .map_err(|e| Failure(ApiError::invalid("csr_pem", e)))?;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(Failure::internal)?;
    cluster
        .store
        .insert_node_cert(&fingerprint(&der), &node_id, now())
        .await
        .map_err(Failure::internal)?;
    tracing::info!(node = %node_id, peer = %peer.addr, token = %req.token_id, "a worker joined");
    Ok(Json(JoinResponse {
        node_id,
        cert_pem,
        ca_pem: cluster.ca.cert_pem().to_string(),
    }))
}

/// The node whose certificate the connection showed.
async fn node_of(cluster: &Cluster, peer: &Peer) -> Result<String, Failure> {
    let Some(sha256) = &peer.cert_sha256 else {
        return Err(unauthenticated(
            "this needs the worker's certificate: join with a token first",
        ));
    };
    cluster
        .store
        .node_of_cert(sha256)
        .await
        .map_err(Failure::internal)?
        .ok_or_else(|| {
            unauthenticated("the certificate was not signed for a node of this control plane")
        })
}

async fn register(
    State(cluster): State<Cluster>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Bytes,
) -> Result<Json<Value>, Failure> {
    let node_id = node_of(&cluster, &peer).await?;
    let reg: Registration = parse_body(&body)?;
    check(&reg).map_err(Failure)?;
    let at = now();
    cluster
        .store
        .register_node(&NodeRow {
            id: node_id.clone(),
            hostname: reg.hostname,
            cpu_millis: reg.cpu_millis,
            memory_mib: reg.memory_mib,
            runtimes: reg.runtimes,
            labels: reg.labels,
            started_at: at,
            heartbeat_at: at,
            // The agent is at the address the worker's requests come from.
            agent_address: reg.agent_port.map(|port| {
                std::net::SocketAddr::new(peer.addr.ip().to_canonical(), port).to_string()
            }),
            schedulable: reg.agent_port.is_some(),
        })
        .await
        .map_err(Failure::internal)?;
    tracing::info!(node = %node_id, peer = %peer.addr, "a worker registered");
    cluster.registered.notify_waiters();
    Ok(Json(json!({ "node_id": node_id })))
}

async fn heartbeat(
    State(cluster): State<Cluster>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Result<Json<Value>, Failure> {
    let node_id = node_of(&cluster, &peer).await?;
    let known = cluster
        .store
        .heartbeat_node(&node_id, now())
        .await
        .map_err(Failure::internal)?;
    if !known {
        return Err(Failure(ApiError::new(
            ErrorCode::Conflict,
            format!("{node_id} has not registered: register first"),
        )));
    }
    Ok(Json(json!({ "node_id": node_id })))
}

/// What a worker says of itself, checked as any input at the edge.
fn check(reg: &Registration) -> Result<(), ApiError> {
    let host_ok = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
    if reg.hostname.is_empty() || reg.hostname.len() > 253 || !reg.hostname.bytes().all(host_ok) {
        return Err(ApiError::invalid(
            "hostname",
            "must be 1 to 253 of letters, digits, -, _ and .",
        ));
    }
    if !(1..=MAX_CPU_MILLIS).contains(&reg.cpu_millis) {
        return Err(ApiError::invalid(
            "cpu_millis",
            format!("must be 1 to {MAX_CPU_MILLIS}"),
        ));
    }
    if !(1..=MAX_MEMORY_MIB).contains(&reg.memory_mib) {
        return Err(ApiError::invalid(
            "memory_mib",
            format!("must be 1 to {MAX_MEMORY_MIB}"),
        ));
    }
    if reg.agent_port == Some(0) {
        return Err(ApiError::invalid("agent_port", "must be 1 to 65535"));
    }
    let known = |r: &String| matches!(r.as_str(), "runc" | "gvisor");
    if reg.runtimes.len() > 2 || !reg.runtimes.iter().all(known) {
        return Err(ApiError::invalid("runtimes", "may hold runc and gvisor"));
    }
    if reg.labels.len() > MAX_LABELS {
        return Err(ApiError::invalid("labels", format!("at most {MAX_LABELS}")));
    }
    for (key, value) in &reg.labels {
        berth_api::parse_node_label(&format!("{key}={value}"))
            .map_err(|e| ApiError::invalid("labels", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn registrations_are_checked() {
        let good = Registration {
            hostname: "worker-1.example".into(),
            cpu_millis: 2000,
            memory_mib: 4096,
            runtimes: vec!["runc".into(), "gvisor".into()],
            labels: BTreeMap::from([("pool".into(), "a".into())]),
            agent_port: Some(7444),
        };
        assert!(check(&good).is_ok());
        let bad = [
            Registration {
                hostname: "a/b".into(),
                ..good.clone()
            },
            Registration {
                hostname: String::new(),
                ..good.clone()
            },
            Registration {
                cpu_millis: 0,
                ..good.clone()
            },
            Registration {
                memory_mib: MAX_MEMORY_MIB + 1,
                ..good.clone()
            },
            Registration {
                agent_port: Some(0),
                ..good.clone()
            },
            Registration {
                runtimes: vec!["crun".into()],
                ..good.clone()
            },
            Registration {
                labels: BTreeMap::from([("Pool".into(), "a".into())]),
                ..good.clone()
            },
        ];
        for reg in bad {
            assert!(check(&reg).is_err(), "{reg:?} was accepted");
        }
    }
}
