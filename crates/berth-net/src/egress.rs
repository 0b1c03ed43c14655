//! What a pod may reach beyond answering its own URL, enforced by firewall rules inside the
//! pod's network namespace: they live and die with the namespace (nothing to leak on the
//! host), and the pod cannot change them (it has no `CAP_NET_ADMIN`; under gVisor it uses
//! the namespace's kernel stack through `--network=host`, so the same rules apply).
//!
//! Rules hold for every pod, whatever its policy: no link-local or cloud metadata addresses
//! (169.254.0.0/16, fe80::/10 beyond neighbour discovery, fd00:ec2::254). The host's own
//! services and other pods are kept away on the host side (the INPUT guard, isolated bridge
//! ports).

use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{command, NetError};

/// A pod's egress policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Egress {
    /// The internet (NATed through the host), not the host or other pods.
    #[default]
    Open,
    /// Nothing, DNS included: the pod only answers connections made to it.
    Blocked,
    /// Only these networks.
    AllowList(Vec<IpNet>),
}

/// Link-local and metadata destinations no pod may reach, per family.
const FORBIDDEN_V4: &[&str] = &["169.254.0.0/16"];
const FORBIDDEN_V6: &[&str] = &["fd00:ec2::254/128", "fe80::/10"];

/// The `iptables-restore` input of one family's filter table for `egress`.
fn rules(egress: &Egress, v6: bool) -> String {
    let mut out =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    let mut add = |rule: &str| {
        out.push_str("-A OUTPUT ");
        out.push_str(rule);
        out.push('\n');
    };
    add("-o lo -j ACCEPT");
    // Answers to the connections the ingress (or anyone allowed) made to the pod.
    add("-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT");
    if v6 {
        // Neighbour discovery (router and neighbour solicitation/advertisement) finds the
        // gateway; without it the pod has no IPv6 at all.
        for icmp in [133, 135, 136] {
            add(&format!("-p ipv6-icmp --icmpv6-type {icmp} -j ACCEPT"));
        }
    }
    let reject = if v6 {
        "-j REJECT --reject-with icmp6-adm-prohibited"
    } else {
        "-j REJECT --reject-with icmp-admin-prohibited"
    };
    for net in if v6 { FORBIDDEN_V6 } else { FORBIDDEN_V4 } {
        add(&format!("-d {net} {reject}"));
    }
    match egress {
        Egress::Open => {}
        Egress::Blocked => add(reject),
        Egress::AllowList(nets) => {
            for net in nets.iter().filter(|n| matches!(n, IpNet::V6(_)) == v6) {
                add(&format!("-d {net} -j ACCEPT"));
            }
            add(reject);
        }
    }
    out.push_str("COMMIT\n");
    out
}

/// Installs `egress` in the namespace at `netns`. IPv6 rules are skipped only when the pod
/// has no IPv6 and the host cannot load them.
pub fn apply(netns: &Path, egress: &Egress, ipv6: bool) -> Result<(), NetError> {
    let ns = netns.to_string_lossy();
    for (program, v6) in [("iptables-restore", false), ("ip6tables-restore", true)] {
        let input = rules(egress, v6);
        let result = command::run(
            "nsenter",
            &[&format!("--net={ns}"), program, "--wait"],
            &[],
            Some(input.as_bytes()),
        );
        match result {
            Err(e) if v6 && !ipv6 => {
                tracing::warn!("IPv6 egress rules for {ns} not installed: {e}");
            }
            Err(e) => {
                return Err(NetError::Egress {
                    netns: ns.into_owned(),
                    message: e.to_string(),
                })
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_refuses_link_local_and_metadata() {
        for egress in [Egress::Open, Egress::Blocked, Egress::AllowList(vec![])] {
            let v4 = rules(&egress, false);
            assert!(v4.contains("-A OUTPUT -d 169.254.0.0/16 -j REJECT"), "{v4}");
            let v6 = rules(&egress, true);
            assert!(v6.contains("-d fd00:ec2::254/128 -j REJECT"), "{v6}");
            assert!(v6.contains("-d fe80::/10 -j REJECT"), "{v6}");
            // Neighbour discovery comes before the link-local refusal.
            assert!(
                v6.find("--icmpv6-type 135").unwrap_or(usize::MAX) < v6.find("fe80").unwrap_or(0)
            );
        }
    }

    #[test]
    fn blocked_refuses_everything_after_replies_and_allow_lists_pass_their_family() {
        let blocked = rules(&Egress::Blocked, false);
        assert!(
            blocked
                .trim_end()
                .ends_with("-A OUTPUT -j REJECT --reject-with icmp-admin-prohibited\nCOMMIT"),
            "{blocked}"
        );
        assert!(blocked.contains("--ctstate ESTABLISHED,RELATED -j ACCEPT"));
        let nets = vec![
            "10.9.0.0/16".parse().expect("net"),
            "2001:db8::/32".parse().expect("net"),
        ];
        let v4 = rules(&Egress::AllowList(nets.clone()), false);
        assert!(v4.contains("-A OUTPUT -d 10.9.0.0/16 -j ACCEPT"), "{v4}");
        assert!(!v4.contains("2001:db8"), "{v4}");
        let v6 = rules(&Egress::AllowList(nets), true);
        assert!(v6.contains("-A OUTPUT -d 2001:db8::/32 -j ACCEPT"), "{v6}");
        let open = rules(&Egress::Open, false);
        assert!(!open.contains("-A OUTPUT -j REJECT"), "{open}");
    }
}
