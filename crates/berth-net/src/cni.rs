//! Calling CNI plugin binaries as the CNI spec describes: the command and container in
//! environment variables, the network configuration on stdin, the result on stdout.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::command::{self, CommandError};
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

    pub fn add_loopback(&self, id: &str, netns: &Path) -> Result<(), NetError> {
        self.exec(
            "loopback",
            "ADD",
            id,
            Some(netns),
            "lo",
            self.loopback_conf(),
        )
        .map(drop)
    }

    pub fn add_bridge(&self, id: &str, netns: &Path) -> Result<CniResult, NetError> {
        self.exec("bridge", "ADD", id, Some(netns), "eth0", self.bridge_conf())?
            .ok_or_else(|| NetError::Plugin {
                plugin: "bridge".into(),
                message: "ADD returned no result".into(),
            })
    }

    pub fn del_bridge(
        &self,
        id: &str,
        netns: Option<&Path>,
        prev: Option<&CniResult>,
    ) -> Result<(), NetError> {
        let mut conf = self.bridge_conf();
        if let Some(prev) = prev.and_then(|p| serde_json::to_value(p).ok()) {
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
    ) -> Result<Option<CniResult>, NetError> {
        let err = |message: String| NetError::Plugin {
            plugin: plugin.to_string(),
            message,
        };
        let netns = netns.map(Path::as_os_str).unwrap_or_default();
        let env: [(&str, &OsStr); 5] = [
            ("CNI_COMMAND", command.as_ref()),
            ("CNI_CONTAINERID", id.as_ref()),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", ifname.as_ref()),
            ("CNI_PATH", self.config.cni_bin_dir.as_os_str()),
        ];
        let stdout = command::run(
            self.config.cni_bin_dir.join(plugin),
            &[],
            &env,
            Some(conf.to_string().as_bytes()),
        )
        .map_err(|e| match e {
            CommandError::Failed { stdout, stderr, .. } => err(format!(
                "{command} failed: {}",
                plugin_error(&stdout, &stderr)
            )),
            spawn => err(spawn.to_string()),
        })?;
        if stdout.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&stdout)
            .map(Some)
            .map_err(|e| err(format!("unreadable result: {e}")))
    }
}

/// Plugins report errors as JSON `{code, msg, details}` on stdout; older ones print text.
fn plugin_error(stdout: &str, stderr: &str) -> String {
    #[derive(Deserialize)]
    struct PluginError {
        msg: String,
        #[serde(default)]
        details: String,
    }
    match serde_json::from_str::<PluginError>(stdout) {
        Ok(e) if e.details.is_empty() => e.msg,
        Ok(e) => format!("{}: {}", e.msg, e.details),
        Err(_) => format!("{stdout}{stderr}").trim().to_string(),
    }
}

/// The result of a CNI ADD (spec 1.0): the interfaces and addresses it made. Fields berth
/// does not read are kept as they came, since DEL gets the whole result back as
/// `prevResult`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<CniInterface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<CniIp>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniInterface {
    pub name: String,
    /// The namespace path for interfaces inside the pod; absent on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniIp {
    /// The address with its prefix length, like `10.213.0.5/16`.
    pub address: IpNet,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl CniResult {
    /// The host end of the pod's veth pair: the interface outside any sandbox that is not
    /// the bridge.
    pub fn host_interface(&self, bridge: &str) -> Option<&str> {
        self.interfaces
            .iter()
            .find(|i| i.sandbox.as_deref().is_none_or(str::is_empty) && i.name != bridge)
            .map(|i| i.name.as_str())
    }

    /// The pod's first IPv4 and first IPv6 address.
    pub fn addresses(&self) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        let mut v4 = None;
        let mut v6 = None;
        for ip in &self.ips {
            match ip.address.addr() {
                IpAddr::V4(a) => {
                    v4.get_or_insert(a);
                }
                IpAddr::V6(a) => {
                    v6.get_or_insert(a);
                }
            }
        }
        (v4, v6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_address_families() {
        let result: CniResult = serde_json::from_value(json!({"cniVersion": "1.0.0", "ips": [
            {"address": "10.213.0.5/16", "gateway": "10.213.0.1", "interface": 2},
            {"address": "fd62:6572:7468::5/64", "interface": 2}
        ]}))
        .expect("result");
        let (v4, v6) = result.addresses();
        assert_eq!(v4, Some("10.213.0.5".parse().expect("ip")));
        assert_eq!(v6, Some("fd62:6572:7468::5".parse().expect("ip")));
    }

    #[test]
    fn finds_the_host_end_of_the_veth() {
        let raw = json!({"cniVersion": "1.0.0", "interfaces": [
            {"name": "berth0", "mac": "x"},
            {"name": "veth1234", "mac": "y"},
            {"name": "eth0", "mac": "z", "sandbox": "/run/netns/berth-a"}
        ], "dns": {}});
        let result: CniResult = serde_json::from_value(raw.clone()).expect("result");
        assert_eq!(result.host_interface("berth0"), Some("veth1234"));
        let empty: CniResult = serde_json::from_value(json!({})).expect("result");
        assert_eq!(empty.host_interface("berth0"), None);
        // DEL gets the result back whole, fields berth does not read included.
        assert_eq!(serde_json::to_value(&result).expect("json"), raw);
    }

    #[test]
    fn plugin_errors_are_read_from_json_or_text() {
        assert_eq!(
            plugin_error(r#"{"code":7,"msg":"no IP","details":"range full"}"#, ""),
            "no IP: range full"
        );
        assert_eq!(plugin_error("", "plain failure\n"), "plain failure");
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
