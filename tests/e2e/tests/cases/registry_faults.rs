//! A registry that misbehaves mid-pull: each fault fails that create clearly, leaves no
//! partial blob or layer in the store, and a retry fetches only what was not verified yet.

use std::time::Duration;

use serde_json::json;

use crate::common::client::Api;
use crate::common::fault_proxy::{Fault, FaultProxy};
use crate::common::harness::{finish_own_server, own_server_dir, Env};
use crate::common::images::{busybox_with_page, no_partial_files};
use crate::common::server::{PodNetwork, Server};
use crate::common::Res;
use crate::ensure;

const NETWORK: PodNetwork = PodNetwork {
    bridge: "berthtest10",
    subnet_v4: "10.225.0.0/16",
    subnet_v6: None,
};

pub fn broken_and_corrupt_blobs_fail_clearly(env: &Env) -> Res<()> {
    let cut = FaultProxy::start(env.registry.addr, Fault::CutHalfway)?;
    let corrupt = FaultProxy::start(env.registry.addr, Fault::Corrupt)?;
    let dir = own_server_dir(env, &NETWORK, "faults")?;
    let server = Server::start_with_args(
        &dir,
        &env.registry.host(),
        NETWORK,
        &[
            "--insecure-registry".to_string(),
            cut.host(),
            "--insecure-registry".to_string(),
            corrupt.host(),
        ],
    )?;
    let api = Api::new(&server)?;
    let outcome = faults(env, &server, &api, &cut, &corrupt);
    finish_own_server(&server, &api, &NETWORK, outcome)
}

fn faults(
    env: &Env,
    server: &Server,
    api: &Api,
    cut: &FaultProxy,
    corrupt: &FaultProxy,
) -> Res<()> {
    let store = server.state_dir.join("images");

    // A corrupt layer: the digest check names it.
    env.registry
        .push("faulty-corrupt", "latest", &busybox_with_page("corrupt")?)?;
    let image = format!("{}/faulty-corrupt:latest", corrupt.host());
    let reason = api.create_failing(
        &json!({"image": image, "ports": [8080]}),
        Duration::from_secs(60),
    )?;
    ensure!(
        reason.contains("arrived with digest"),
        "a corrupt layer from {image} should fail on its digest; the reason is: {reason}"
    );
    ensure!(
        corrupt
            .served()
            .iter()
            .any(|s| s.fault == Some(Fault::Corrupt)),
        "the proxy corrupted nothing: {:?}",
        corrupt.served()
    );
    no_partial_files(&store)?;

    // A download cut halfway: the create fails saying so, and nothing half-written stays.
    let cut_image = busybox_with_page("cut through")?;
    env.registry.push("faulty-cut", "latest", &cut_image)?;
    let layer_paths: Vec<String> = cut_image
        .layers
        .iter()
        .map(|l| format!("/v2/faulty-cut/blobs/{}", l.digest))
        .collect();
    let image = format!("{}/faulty-cut:latest", cut.host());
    let reason = api.create_failing(
        &json!({"image": image, "ports": [8080]}),
        Duration::from_secs(60),
    )?;
    ensure!(
        reason.contains("broke"),
        "a layer download cut halfway from {image} should say it broke; the reason is: {reason}"
    );
    no_partial_files(&store)?;
    let first = cut.served();
    let cut_path = first
        .iter()
        .find(|s| s.fault == Some(Fault::CutHalfway))
        .map(|s| s.path.clone())
        .ok_or_else(|| format!("the proxy cut nothing: {first:?}"))?;

    // The retry succeeds, fetching the cut layer again but no layer it already verified
    // (the manifest and config are read again: they say what the image is).
    let pod = api.launch(json!({"image": image, "ports": [8080]}))?;
    api.wait_running(&pod.id)?;
    let body = pod.wait_http_ok(8080, "/")?;
    ensure!(
        body.contains("cut through"),
        "the retried image answered {body:?}"
    );
    let retry: Vec<_> = cut.served().into_iter().skip(first.len()).collect();
    let layers = |served: &[crate::common::fault_proxy::Served]| -> Vec<String> {
        served
            .iter()
            .filter(|s| s.method == "GET" && layer_paths.contains(&s.path))
            .map(|s| s.path.clone())
            .collect()
    };
    let (before, again) = (layers(&first), layers(&retry));
    ensure!(
        before.len() == 2,
        "the first attempt should have asked for both layers: {before:?}"
    );
    ensure!(
        again.contains(&cut_path),
        "the retry did not fetch the cut layer {cut_path} again: {again:?}"
    );
    let refetched: Vec<&String> = again
        .iter()
        .filter(|p| **p != cut_path && before.contains(p))
        .collect();
    ensure!(
        refetched.is_empty(),
        "the retry fetched layers the first attempt had already verified: {refetched:?}\n\
         first attempt: {before:?}\nretry: {again:?}"
    );
    Ok(())
}
