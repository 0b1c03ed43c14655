//! Refusing pod subnets that collide with the host's routes.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::{NetConfig, NetError};

struct Route {
    device: String,
    net: ipnet::IpNet,
}

pub fn check_overlap(config: &NetConfig) -> Result<(), NetError> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let routes = parse_v4(&v4).into_iter().chain(parse_v6(&v6));
    check(config, routes)
}

fn check(config: &NetConfig, routes: impl Iterator<Item = Route>) -> Result<(), NetError> {
    for route in routes {
        // Default routes cover everything; berth's own bridge routes are expected.
        if route.net.prefix_len() == 0 || route.device == config.bridge {
            continue;
        }
        let ours: Vec<ipnet::IpNet> = std::iter::once(ipnet::IpNet::V4(config.subnet_v4))
            .chain(config.subnet_v6.map(ipnet::IpNet::V6))
            .collect();
        for subnet in ours {
            if overlaps(&subnet, &route.net) {
                return Err(NetError::SubnetOverlap {
                    subnet: subnet.to_string(),
                    route: route.net.to_string(),
                    device: route.device,
                });
            }
        }
    }
    Ok(())
}

fn overlaps(a: &ipnet::IpNet, b: &ipnet::IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// `/proc/net/route`: Iface Destination Gateway Flags RefCnt Use Metric Mask ... (hex, little
/// endian).
fn parse_v4(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            let addr = Ipv4Addr::from(u32::from_be(dest));
            let prefix = u32::from_be(mask).count_ones() as u8;
            Some(Route {
                device: f[0].to_string(),
                net: ipnet::IpNet::V4(Ipv4Net::new(addr, prefix).ok()?),
            })
        })
        .collect()
}

/// `/proc/net/ipv6_route`: dest dest_prefix src src_prefix next_hop metric ref use flags iface.
fn parse_v6(text: &str) -> Vec<Route> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = u128::from_str_radix(f.first()?, 16).ok()?;
            let prefix = u8::from_str_radix(f.get(1)?, 16).ok()?;
            let device = f.get(9)?.to_string();
            let addr = Ipv6Addr::from(dest);
            // Link-local, multicast and loopback routes exist on every interface.
            if device == "lo"
                || addr.segments()[0] & 0xffc0 == 0xfe80
                || addr.segments()[0] >> 8 == 0xff
            {
                return None;
            }
            Some(Route {
                device,
                net: ipnet::IpNet::V6(Ipv6Net::new(addr, prefix).ok()?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v4: &str) -> NetConfig {
        NetConfig {
            bridge: "berth0".into(),
            subnet_v4: v4.parse().expect("subnet"),
            subnet_v6: Some("fd62:6572:7468::/64".parse().expect("subnet")),
            cni_bin_dir: "/usr/lib/cni".into(),
            state_dir: "/tmp/x".into(),
        }
    }

    const ROUTES: &str =
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
podman0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
berth0\t0000D50A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    #[test]
    fn parses_proc_routes() {
        let routes = parse_v4(ROUTES);
        assert_eq!(routes.len(), 4);
        assert_eq!(routes[1].net.to_string(), "192.0.2.0/24");
        assert_eq!(routes[2].net.to_string(), "10.88.0.0/16");
        let v6 = parse_v6("fd626572746800000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001   berth0\n");
        assert_eq!(v6[0].net.to_string(), "fd62:6572:7468::/64");
    }

    #[test]
    fn overlap_with_foreign_route_is_refused() {
        let err = check(&config("10.88.0.0/16"), parse_v4(ROUTES).into_iter())
            .expect_err("overlaps podman");
        assert!(err.to_string().contains("podman0"), "{err}");
        assert!(check(&config("10.213.0.0/16"), parse_v4(ROUTES).into_iter()).is_ok());
        assert!(check(&config("10.0.0.0/8"), parse_v4(ROUTES).into_iter()).is_err());
    }
}
