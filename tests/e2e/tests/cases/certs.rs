//! The two certificate sources besides berth's own CA, with real clients and servers: an
//! operator's wildcard certificate (served, then replaced on disk and served again without a
//! restart), and ACME against Debian's `pebble` test CA, answering its HTTP-01 challenge on
//! the plain listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::testapp_spec;
use super::tls::{with_tls_server, Curl};
use crate::common::harness::Env;
use crate::common::server::{PodNetwork, DOMAIN};
use crate::common::{command_output, free_port, poll, random_hex, Context, Res};
use crate::ensure;

/// A CA and a leaf it signed for `names` (DNS names, or IP:addr), made with openssl in `dir`:
/// returns (ca.pem, leaf chain .pem, leaf .key).
fn make_cert(dir: &Path, tag: &str, names: &[&str]) -> Res<(PathBuf, PathBuf, PathBuf)> {
    let san = names
        .iter()
        .map(|n| match n.strip_prefix("IP:") {
            Some(ip) => format!("IP:{ip}"),
            None => format!("DNS:{n}"),
        })
        .collect::<Vec<_>>()
        .join(",");
    let script = format!(
        r#"set -e
cd {dir}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {tag}-ca.key -out {tag}-ca.pem -days 2 -subj "/CN=berth test CA {tag}" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {tag}.key -out {tag}.csr -subj "/CN={tag}" 2>/dev/null
printf 'subjectAltName={san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > {tag}.ext
openssl x509 -req -in {tag}.csr -CA {tag}-ca.pem -CAkey {tag}-ca.key -CAcreateserial -out {tag}.pem -days 2 -extfile {tag}.ext 2>/dev/null
"#,
        dir = dir.display()
    );
    command_output("sh", &["-c", &script])?;
    Ok((
        dir.join(format!("{tag}-ca.pem")),
        dir.join(format!("{tag}.pem")),
        dir.join(format!("{tag}.key")),
    ))
}

pub fn operator_certificate_served_and_reloaded(env: &Env) -> Res<()> {
    const NET: PodNetwork = PodNetwork {
        bridge: "berthtest6",
        subnet_v4: "10.219.0.0/16",
        subnet_v6: None,
    };
    let dir = tempfile::tempdir().ctx("tempdir")?;
    let wildcard = format!("*.{DOMAIN}");
    let (ca1, cert1, key1) = make_cert(dir.path(), "first", &[&wildcard, DOMAIN])?;
    let (ca2, cert2, key2) = make_cert(dir.path(), "second", &[&wildcard, DOMAIN])?;
    let cert = dir.path().join("served.pem");
    let key = dir.path().join("served.key");
    std::fs::copy(&cert1, &cert).ctx("copy cert")?;
    std::fs::copy(&key1, &key).ctx("copy key")?;
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    with_tls_server(
        env,
        NET,
        &["--tls-cert", &cert_s, "--tls-key", &key_s],
        |server, api, tls| {
            let pod = api.launch(testapp_spec(env, &["http", "8080"]))?;
            let c = api.wait_running(&pod.id)?;
            let url = c.urls.first().cloned().ok_or("no URL")?;
            ensure!(url.starts_with("https://"), "the URL is {url}");
            let first = Curl {
                ca: ca1.clone(),
                tls,
                plain: server.ingress,
            };
            poll(Duration::from_secs(30), Duration::from_millis(200), || {
                first
                    .run(&url, &[])
                    .ok()
                    .filter(|b| b.contains("hello from testapp"))
            })
            .ok_or_else(|| format!("{url} was not served with the operator's certificate"))?;

            // A renewal on disk: key first, then the certificate, as certbot's deploy would.
            std::fs::copy(&key2, &key).ctx("replace key")?;
            std::fs::copy(&cert2, &cert).ctx("replace cert")?;
            let second = Curl {
                ca: ca2.clone(),
                tls,
                plain: server.ingress,
            };
            poll(Duration::from_secs(15), Duration::from_millis(300), || {
                second
                    .run(&url, &[])
                    .ok()
                    .filter(|b| b.contains("hello from testapp"))
            })
            .ok_or("the replaced certificate was never served")?;
            ensure!(
                first.run(&url, &[]).is_err(),
                "the old certificate is still served after the reload"
            );
            Ok(())
        },
    )
}

/// Debian's pebble (ACME server) and pebble-challtestsrv (its DNS, answering 127.0.0.1 for
/// every name), on loopback ports; killed when dropped.
struct Pebble {
    children: Vec<Child>,
    directory: String,
    /// The CA of pebble's own HTTPS (for the directory).
    https_ca: PathBuf,
    management: SocketAddr,
}

impl Pebble {
    fn start(dir: &Path, http_port: u16) -> Res<Pebble> {
        let (https_ca, cert, key) = make_cert(dir, "pebble", &["localhost", "IP:127.0.0.1"])?;
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let management = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = serde_json::json!({"pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": free_port()?,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).ctx("write pebble config")?;
        let log = |name: &str| -> Res<Stdio> {
            Ok(std::fs::File::create(dir.join(name))
                .ctx("pebble log")?
                .into())
        };
        let mut children = vec![Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &dns.to_string(),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ])
            .args([
                "-management",
                &SocketAddr::from(([127, 0, 0, 1], free_port()?)).to_string(),
            ])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("challtestsrv.log")?)
            .stderr(log("challtestsrv.err")?)
            .spawn()
            .ctx("start pebble-challtestsrv (apt install pebble)")?];
        let pebble = Command::new("pebble")
            .args([
                "-config",
                &config_path.display().to_string(),
                "-dnsserver",
                &dns.to_string(),
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .current_dir(dir)
            .stdout(log("pebble.log")?)
            .stderr(log("pebble.err")?)
            .spawn();
        match pebble {
            Ok(child) => children.push(child),
            Err(e) => {
                for mut c in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(format!("start pebble: {e}"));
            }
        }
        let me = Pebble {
            children,
            directory: format!("https://{listen}/dir"),
            https_ca,
            management,
        };
        poll(Duration::from_secs(20), Duration::from_millis(200), || {
            std::net::TcpStream::connect(listen).ok().map(|_| ())
        })
        .ok_or("pebble did not start listening")?;
        Ok(me)
    }

    /// The root pebble issues under (it makes a new one each start).
    fn issuing_root(&self, dir: &Path) -> Res<PathBuf> {
        let pem = command_output(
            "curl",
            &[
                "-sS",
                "--noproxy",
                "*",
                "--cacert",
                &self.https_ca.display().to_string(),
                &format!("https://{}/roots/0", self.management),
            ],
        )?;
        ensure!(pem.contains("BEGIN CERTIFICATE"), "pebble's root: {pem}");
        let path = dir.join("pebble-root.pem");
        std::fs::write(&path, pem).ctx("write pebble root")?;
        Ok(path)
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn acme_certificate_from_pebble(env: &Env) -> Res<()> {
    const NET: PodNetwork = PodNetwork {
        bridge: "berthtest7",
        subnet_v4: "10.220.0.0/16",
        subnet_v6: None,
    };
    let dir = tempfile::tempdir().ctx("tempdir")?;
    // pebble validates HTTP-01 on this port of whatever the name resolves to (127.0.0.1):
    // the berth server's plain listener.
    let plain = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let pebble = Pebble::start(dir.path(), plain.port())?;
    let (plain_s, https_ca) = (plain.to_string(), pebble.https_ca.display().to_string());
    let email = format!("ops-{}@example.org", random_hex(3));
    let result = with_tls_server(
        env,
        NET,
        &[
            "--ingress-listen",
            &plain_s,
            "--acme-email",
            &email,
            "--acme-directory",
            &pebble.directory,
            "--acme-directory-ca",
            &https_ca,
        ],
        |server, api, tls| {
            let pod = api.launch(testapp_spec(env, &["http", "8080"]))?;
            let c = api.wait_running(&pod.id)?;
            let url = c.urls.first().cloned().ok_or("no URL")?;
            let root = pebble.issuing_root(dir.path())?;
            let curl = Curl {
                ca: root,
                tls,
                plain: server.ingress,
            };
            // The first handshake orders the certificate; pebble checks the challenge on the
            // plain listener before it issues.
            let body = poll(Duration::from_secs(60), Duration::from_millis(500), || {
                curl.run(&url, &[])
                    .ok()
                    .filter(|b| b.contains("hello from testapp"))
            })
            .ok_or_else(|| {
                let log =
                    std::fs::read_to_string(dir.path().join("pebble.log")).unwrap_or_default();
                let tail: Vec<_> = log.lines().rev().take(15).collect();
                format!(
                    "{url} was never served with a certificate from pebble; pebble's log:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })?;
            ensure!(body.contains("hello from testapp"), "{body}");
            let log = std::fs::read_to_string(dir.path().join("pebble.log")).unwrap_or_default();
            ensure!(
                log.contains("validated")
                    || log.contains("Issued certificate")
                    || log.contains("issued"),
                "pebble's log shows no validation or issuance:\n{log}"
            );
            // Kept in the state directory for the next start.
            let stored = server
                .state_dir
                .join("acme")
                .join(format!("{}-8080.{DOMAIN}.json", c.stub_id));
            ensure!(
                stored.is_file(),
                "no stored certificate at {}",
                stored.display()
            );
            Ok(())
        },
    );
    drop(pebble);
    result
}
