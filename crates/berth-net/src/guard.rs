//! Keeps pods off the host's own services: traffic from the pod bridge to the host itself
//! is dropped unless it answers a connection the host opened (the ingress reaching a pod).
//! Pods still reach the outside world (forwarded, NATed) and IPv6 neighbour discovery still
//! works. One chain per bridge, hooked into INPUT; removed with the bridge.

use crate::{command, NetError};

/// Replies to connections the host opened (the ingress talking to a pod).
const REPLIES: &[&str] = &[
    "-m",
    "conntrack",
    "--ctstate",
    "ESTABLISHED,RELATED",
    "-j",
    "ACCEPT",
];
/// IPv6 neighbour discovery, without which pods cannot even find their gateway.
const NEIGHBOUR_DISCOVERY: &[&str] = &["-p", "ipv6-icmp", "-j", "ACCEPT"];

/// Each family's program and the traffic from pods it still accepts.
const FAMILIES: [(&str, &[&[&str]]); 2] = [
    ("iptables", &[REPLIES]),
    ("ip6tables", &[REPLIES, NEIGHBOUR_DISCOVERY]),
];

pub fn chain_name(bridge: &str) -> String {
    format!("BERTH-IN-{bridge}")
}

/// Installs the guard for `bridge` unless it is there already. IPv6 is guarded even when
/// pods have no IPv6 subnet, since link-local addresses still exist; only then may a host
/// without ip6tables support skip it.
pub fn install(bridge: &str, ipv6: bool) -> Result<(), NetError> {
    for (program, accepts) in FAMILIES {
        match install_family(program, accepts, bridge) {
            Err(e) if program == "ip6tables" && !ipv6 => {
                tracing::warn!("IPv6 host guard for {bridge} not installed: {e}");
            }
            other => other?,
        }
    }
    Ok(())
}

fn install_family(program: &str, accepts: &[&[&str]], bridge: &str) -> Result<(), NetError> {
    let chain = chain_name(bridge);
    if run(program, &["-C", "INPUT", "-i", bridge, "-j", &chain]).is_ok() {
        return Ok(());
    }
    // A chain left by a server that was killed is rebuilt from scratch.
    let _ = run(program, &["-N", &chain]);
    run(program, &["-F", &chain])?;
    for accept in accepts {
        let mut args = vec!["-A", chain.as_str()];
        args.extend_from_slice(accept);
        run(program, &args)?;
    }
    run(program, &["-A", &chain, "-j", "DROP"])?;
    run(program, &["-I", "INPUT", "-i", bridge, "-j", &chain])
}

/// Removes the guard; missing pieces are fine.
pub fn remove(bridge: &str) {
    let chain = chain_name(bridge);
    for (program, _) in FAMILIES {
        while run(program, &["-D", "INPUT", "-i", bridge, "-j", &chain]).is_ok() {}
        let _ = run(program, &["-F", &chain]);
        let _ = run(program, &["-X", &chain]);
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), NetError> {
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    command::run(program, &all, &[], None)
        .map(drop)
        .map_err(NetError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_fit_iptables() {
        // iptables allows 28 characters; bridge names are at most 15.
        assert!(chain_name("fifteen-chars-x").len() <= 28);
    }
}
