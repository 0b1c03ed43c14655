//! `berth node list`.

use anyhow::Result;
use berth_api::NodeInfo;

use crate::cli::{DeploymentListArgs, Format, NodeIdArg};
use crate::client::Client;
use crate::commands::container::human;

pub async fn list(args: DeploymentListArgs) -> Result<()> {
    let nodes = Client::from_env()?.nodes().await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&nodes)?),
        Format::Text => print!(
            "{}",
            table(&nodes, time::OffsetDateTime::now_utc().unix_timestamp())
        ),
    }
    Ok(())
}

pub async fn delete(args: NodeIdArg) -> Result<()> {
    Client::from_env()?.delete_node(&args.id).await?;
    println!(
        "=> Deleted node {}; its certificate no longer works",
        args.id
    );
    Ok(())
}

fn table(nodes: &[NodeInfo], now: i64) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.id.clone(),
                n.hostname.clone(),
                n.status.to_string(),
                format!(
                    "{} / {}",
                    cores(n.cpu_requested_millis),
                    cores(n.cpu_millis)
                ),
                format!("{} / {} MiB", n.memory_requested_mib, n.memory_mib),
                n.pods.to_string(),
                n.runtimes.join(","),
                n.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                format!("{} ago", human(now - n.heartbeat_at)),
            ]
        })
        .collect();
    crate::commands::table::render(
        &[
            "ID",
            "Hostname",
            "Status",
            "CPU",
            "Memory",
            "Pods",
            "Runtimes",
            "Labels",
            "Heartbeat",
        ],
        &rows,
    )
}

/// Thousandths of a core as cores: `2`, `0.5`, `1.25`.
fn cores(millis: u64) -> String {
    let text = format!("{}.{:03}", millis / 1000, millis % 1000);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_api::NodeStatus;

    use super::*;

    #[test]
    fn a_node_row_shows_use_of_capacity() {
        let node = NodeInfo {
            id: "node-0123456789ab".into(),
            hostname: "box".into(),
            status: NodeStatus::Ready,
            cpu_millis: 2000,
            memory_mib: 23_936,
            runtimes: vec!["runc".into(), "gvisor".into()],
            labels: BTreeMap::from([("pool".into(), "a".into())]),
            pods: 3,
            cpu_requested_millis: 1250,
            memory_requested_mib: 1152,
            started_at: 0,
            heartbeat_at: 98,
        };
        let out = table(&[node], 100);
        let row = out.lines().nth(3).expect("a row");
        for cell in [
            "node-0123456789ab",
            "READY",
            "1.25 / 2",
            "1152 / 23936 MiB",
            "runc,gvisor",
            "pool=a",
            "2 seconds ago",
        ] {
            assert!(row.contains(cell), "{cell:?} not in {row:?}");
        }
        assert_eq!(cores(500), "0.5");
        assert_eq!(cores(0), "0");
    }
}
