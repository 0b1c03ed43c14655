//! `berth ca`: where berth's local CA certificate is, and how to make clients trust it.

use std::path::PathBuf;

use anyhow::{bail, Result};
use berth_api::{default_profile_path, ClientProfile};

use crate::cli::CaArgs;

pub fn ca(args: CaArgs) -> Result<()> {
    let path = ca_path(&args.state_dir);
    if !path.is_file() {
        bail!(
            "no local CA at {}: start the server with --tls (it makes the CA on first start), or pass --state-dir",
            path.display()
        );
    }
    let p = path.display();
    println!("{p}");
    println!();
    println!("Pod URLs are served with certificates from this CA. To trust it:");
    println!("  this machine (curl, wget, Python, Go):");
    println!("    cp {p} /usr/local/share/ca-certificates/berth.crt && update-ca-certificates");
    println!("  Chromium and Firefox on Linux (NSS; apt install libnss3-tools):");
    println!("    certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n berth -i {p}");
    println!("  Python requests:  export REQUESTS_CA_BUNDLE={p}");
    println!("  curl once:        curl --cacert {p} https://...");
    println!("The berth CLI and the Python SDK on this machine trust it already.");
    Ok(())
}

/// The CA the client profile names, else the one in the state directory.
pub fn ca_path(state_dir: &std::path::Path) -> PathBuf {
    ClientProfile::load(&default_profile_path())
        .and_then(|p| p.ca_cert)
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join("tls").join("ca.pem"))
}
