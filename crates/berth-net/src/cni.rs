//! Calling CNI plugin binaries as the CNI spec describes: the command and container in
//! environment variables, the network configuration on stdin, the result on stdout.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::{NetConfig, NetError};

const CNI_VERSION: &str = "1.0.0";
const NETWORK_NAME: &str = "berth";

pub struct Cni<'a> {
    config: &'a NetConfig,
}

impl<'a> Cni<'a> {
    pub fn new(config: &'a NetConfig) -> Self {
        Cni { config }
    }

    fn loopback_conf(&self) -> Value {
        json!({"cniVersion": CNI_VERSION, "name": "berth-lo", "type": "loopback"})
    }

    fn bridge_conf(&self) -> Value {
        let mut ranges = vec![json!([{"subnet": self.config.subnet_v4.to_string()}])];
        let mut routes = vec![json!({"dst": "0.0.0.0/0"})];
        if let Some(v6) = self.config.subnet_v6 {
            ranges.push(json!([{"subnet": v6.to_string()}]));
            routes.push(json!({"dst": "::/0"}));
        }
        json!({
            "cniVersion": CNI_VERSION,
            "name": NETWORK_NAME,
            "type": "bridge",
            "bridge": self.config.bridge,
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": false,
            "ipam": {
                "type": "host-local",
                "ranges": ranges,
                "routes": routes,
                "dataDir": self.config.state_dir.join("ipam"),
            }
        })
    }

    pub fn add_loopback(&self, id: &str, netns: &Path) -> Result<Value, NetError> {
        self.exec(
            "loopback",
            "ADD",
            id,
            Some(netns),
            "lo",
            self.loopback_conf(),
        )
    }

    pub fn add_bridge(&self, id: &str, netns: &Path) -> Result<Value, NetError> {
        self.exec("bridge", "ADD", id, Some(netns), "eth0", self.bridge_conf())
    }

    pub fn del_bridge(
        &self,
        id: &str,
        netns: Option<&Path>,
        prev: Option<Value>,
    ) -> Result<(), NetError> {
        let mut conf = self.bridge_conf();
        if let Some(prev) = prev {
            conf["prevResult"] = prev;
        }
        self.exec("bridge", "DEL", id, netns, "eth0", conf)
            .map(drop)
    }

    pub fn del_loopback(&self, id: &str, netns: Option<&Path>) -> Result<(), NetError> {
        // Loopback needs no cleanup once the namespace is gone.
        match netns {
            Some(ns) => self
                .exec("loopback", "DEL", id, Some(ns), "lo", self.loopback_conf())
                .map(drop),
            None => Ok(()),
        }
    }

    fn exec(
        &self,
        plugin: &str,
        command: &str,
        id: &str,
        netns: Option<&Path>,
        ifname: &str,
        conf: Value,
    ) -> Result<Value, NetError> {
        let err = |message: String| NetError::Plugin {
            plugin: plugin.to_string(),
            message,
        };
        let mut child = Command::new(self.config.cni_bin_dir.join(plugin))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env(
                "CNI_NETNS",
                netns.map(|p| p.display().to_string()).unwrap_or_default(),
            )
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.config.cni_bin_dir)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot run it: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(conf.to_string().as_bytes())
                .map_err(|e| err(format!("writing its config: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("waiting for it: {e}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            // Plugins report errors as JSON {code, msg, details} on stdout.
            let message = serde_json::from_str::<Value>(&stdout)
                .ok()
                .and_then(|v| {
                    let msg = v.get("msg")?.as_str()?.to_string();
                    let details = v.get("details").and_then(Value::as_str).unwrap_or("");
                    Some(if details.is_empty() {
                        msg
                    } else {
                        format!("{msg}: {details}")
                    })
                })
                .unwrap_or_else(|| format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
            return Err(err(format!("{command} failed: {}", message.trim())));
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout).map_err(|e| err(format!("unreadable result: {e}")))
    }
}

/// The host end of the pod's veth pair: the result's interface outside any sandbox that is
/// not the bridge.
pub fn host_interface(result: &Value, bridge: &str) -> Option<String> {
    result["interfaces"].as_array()?.iter().find_map(|i| {
        let name = i["name"].as_str()?;
        let in_sandbox = i
            .get("sandbox")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        (!in_sandbox && name != bridge).then(|| name.to_string())
    })
}

/// The pod's IPv4 and IPv6 addresses from a CNI result.
pub fn addresses(result: &Value) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let mut v4 = None;
    let mut v6 = None;
    for ip in result["ips"].as_array().into_iter().flatten() {
        let Some(cidr) = ip["address"].as_str() else {
            continue;
        };
        let addr = cidr.split('/').next().unwrap_or_default();
        if let Ok(a) = addr.parse::<Ipv4Addr>() {
            v4.get_or_insert(a);
        } else if let Ok(a) = addr.parse::<Ipv6Addr>() {
            v6.get_or_insert(a);
        }
    }
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_address_families() {
        let result = json!({"cniVersion": "1.0.0", "ips": [
            {"address": "10.213.0.5/16", "gateway": "10.213.0.1", "interface": 2},
            {"address": "fd62:6572:7468::5/64", "interface": 2}
        ]});
        let (v4, v6) = addresses(&result);
        assert_eq!(v4, Some("10.213.0.5".parse().expect("ip")));
        assert_eq!(v6, Some("fd62:6572:7468::5".parse().expect("ip")));
    }

    #[test]
    fn finds_the_host_end_of_the_veth() {
        let result = json!({"interfaces": [
            {"name": "berth0", "mac": "x"},
            {"name": "veth1234", "mac": "y"},
            {"name": "eth0", "mac": "z", "sandbox": "/run/netns/berth-a"}
        ]});
        assert_eq!(
            host_interface(&result, "berth0").as_deref(),
            Some("veth1234")
        );
        assert_eq!(host_interface(&json!({}), "berth0"), None);
    }

    #[test]
    fn bridge_config_is_dual_stack_with_masquerade() {
        let config = NetConfig {
            bridge: "berth0".into(),
            subnet_v4: "10.213.0.0/16".parse().expect("net"),
            subnet_v6: Some("fd62:6572:7468::/64".parse().expect("net")),
            cni_bin_dir: "/usr/lib/cni".into(),
            state_dir: "/var/lib/berth/net".into(),
        };
        let conf = Cni::new(&config).bridge_conf();
        assert_eq!(conf["ipMasq"], true);
        assert_eq!(conf["ipam"]["ranges"].as_array().map(Vec::len), Some(2));
        assert_eq!(conf["ipam"]["dataDir"], "/var/lib/berth/net/ipam");
    }
}
