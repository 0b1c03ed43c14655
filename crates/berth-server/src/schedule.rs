//! Placement: which node a new pod runs on. Only nodes that are up, take pods and offer
//! the pod's runtime are considered; of those with room for its CPU and memory requests,
//! the one left with the most room (by its scarcer resource) gets it, so pods spread.
//! When none has room the roomiest takes it anyway: a pod's requests are its limits, not a
//! reservation, and one machine alone has always run more pods than it has cores.

use std::collections::BTreeMap;

use crate::store::{NodeRow, NodeUsage};

/// What a pod asks of its node.
#[derive(Debug, Clone)]
pub struct Ask {
    pub cpu_millis: u64,
    pub memory_mib: u64,
    /// `None`: the node's default runtime will do.
    pub runtime: Option<String>,
    /// Set when the pod can only run on the control plane's machine, with why.
    pub control_plane_only: Option<&'static str>,
}

/// A node as placement sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: NodeRow,
    pub used: NodeUsage,
    /// Its heartbeat is recent and the control plane reaches it.
    pub reachable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("no node that takes pods offers the {runtime} runtime; they offer {offered}")]
    NoRuntime { runtime: String, offered: String },
    #[error("no node takes pods now: {0}")]
    NoNode(String),
}

/// Where a pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node_id: String,
    /// No node had room: this one is the roomiest.
    pub overcommitted: bool,
}

/// Where `ask` goes; `own_id` is the control plane's own machine.
pub fn place(candidates: &[Candidate], own_id: &str, ask: &Ask) -> Result<Placement, PlaceError> {
    let up: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.reachable && c.node.schedulable)
        .filter(|c| ask.control_plane_only.is_none() || c.node.id == own_id)
        .collect();
    if up.is_empty() {
        let why = match ask.control_plane_only {
            Some(what) => {
                format!("{what} runs on the control plane's machine only, and it takes no pods")
            }
            None => "no worker is ready, and the control plane's machine takes no pods".into(),
        };
        return Err(PlaceError::NoNode(why));
    }
    let offering: Vec<&Candidate> = match &ask.runtime {
        Some(runtime) => up
            .iter()
            .copied()
            .filter(|c| c.node.runtimes.iter().any(|r| r == runtime))
            .collect(),
        None => up.clone(),
    };
    if offering.is_empty() {
        let mut offered: Vec<&str> = up
            .iter()
            .flat_map(|c| c.node.runtimes.iter().map(String::as_str))
            .collect();
        offered.sort_unstable();
        offered.dedup();
        return Err(PlaceError::NoRuntime {
            runtime: ask.runtime.clone().unwrap_or_default(),
            offered: offered.join(", "),
        });
    }
    let free = |c: &Candidate| {
        (
            c.node.cpu_millis.saturating_sub(c.used.cpu_millis),
            c.node.memory_mib.saturating_sub(c.used.memory_mib),
        )
    };
    // The share of the scarcer resource left once the pod is there, in millionths.
    let left_after = |c: &Candidate| {
        let (cpu, memory) = free(c);
        let share =
            |left: u64, ask: u64, total: u64| (left - ask).saturating_mul(1_000_000) / total.max(1);
        share(cpu, ask.cpu_millis, c.node.cpu_millis).min(share(
            memory,
            ask.memory_mib,
            c.node.memory_mib,
        ))
    };
    let best = offering
        .iter()
        .filter(|c| {
            let (cpu, memory) = free(c);
            cpu >= ask.cpu_millis && memory >= ask.memory_mib
        })
        .max_by(|a, b| {
            left_after(a)
                .cmp(&left_after(b))
                .then(b.used.pods.cmp(&a.used.pods))
                .then(b.node.id.cmp(&a.node.id))
        });
    if let Some(c) = best {
        return Ok(Placement {
            node_id: c.node.id.clone(),
            overcommitted: false,
        });
    }
    let roomiest = offering
        .iter()
        .max_by(|a, b| {
            let (a_cpu, a_memory) = free(a);
            let (b_cpu, b_memory) = free(b);
            a_memory
                .cmp(&b_memory)
                .then(a_cpu.cmp(&b_cpu))
                .then(b.node.id.cmp(&a.node.id))
        })
        .map(|c| c.node.id.clone())
        .unwrap_or_default();
    Ok(Placement {
        node_id: roomiest,
        overcommitted: true,
    })
}

/// The candidates from the store's nodes and usage.
pub fn candidates(
    nodes: Vec<NodeRow>,
    mut usage: BTreeMap<String, NodeUsage>,
    reachable: impl Fn(&NodeRow) -> bool,
) -> Vec<Candidate> {
    nodes
        .into_iter()
        .map(|node| Candidate {
            used: usage.remove(&node.id).unwrap_or_default(),
            reachable: reachable(&node),
            node,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, cpu_millis: u64, memory_mib: u64, runtimes: &[&str]) -> Candidate {
        Candidate {
            node: NodeRow {
                id: id.into(),
                hostname: id.into(),
                cpu_millis,
                memory_mib,
                runtimes: runtimes.iter().map(|r| r.to_string()).collect(),
                labels: BTreeMap::new(),
                started_at: 0,
                heartbeat_at: 0,
                agent_address: None,
                schedulable: true,
            },
            used: NodeUsage::default(),
            reachable: true,
        }
    }

    fn ask(cpu_millis: u64, memory_mib: u64) -> Ask {
        Ask {
            cpu_millis,
            memory_mib,
            runtime: None,
            control_plane_only: None,
        }
    }

    #[test]
    fn pods_spread_over_nodes_with_room() {
        let mut nodes = vec![
            node("a", 2000, 4096, &["runc"]),
            node("b", 2000, 4096, &["runc"]),
        ];
        let mut placed = Vec::new();
        for _ in 0..4 {
            let id = place(&nodes, "a", &ask(500, 1024)).expect("placed").node_id;
            let c = nodes.iter_mut().find(|c| c.node.id == id).expect("node");
            c.used.pods += 1;
            c.used.cpu_millis += 500;
            c.used.memory_mib += 1024;
            placed.push(id);
        }
        placed.sort();
        assert_eq!(placed, ["a", "a", "b", "b"]);
        // Both are now half full: a pod bigger than what is left goes on the roomiest.
        nodes[1].used.memory_mib += 1;
        let full = place(&nodes, "a", &ask(1500, 1024)).expect("placed");
        assert_eq!(
            full,
            Placement {
                node_id: "a".into(),
                overcommitted: true
            }
        );
    }

    #[test]
    fn runtime_reachability_and_the_control_plane_are_respected() {
        let mut nodes = vec![
            node("cp", 8000, 32768, &["runc"]),
            node("w1", 2000, 4096, &["runc", "gvisor"]),
            node("w2", 4000, 8192, &["runc"]),
        ];
        let gvisor = Ask {
            runtime: Some("gvisor".into()),
            ..ask(100, 128)
        };
        assert_eq!(
            place(&nodes, "cp", &gvisor).map(|p| p.node_id).as_deref(),
            Ok("w1")
        );
        assert_eq!(
            place(&nodes, "cp", &ask(100, 128))
                .map(|p| p.node_id)
                .as_deref(),
            Ok("cp")
        );
        let code = Ask {
            control_plane_only: Some("uploaded code"),
            ..ask(100, 128)
        };
        assert_eq!(
            place(&nodes, "cp", &code).map(|p| p.node_id).as_deref(),
            Ok("cp")
        );

        nodes[0].node.schedulable = false;
        assert_eq!(
            place(&nodes, "cp", &ask(100, 128))
                .map(|p| p.node_id)
                .as_deref(),
            Ok("w2")
        );
        assert!(matches!(
            place(&nodes, "cp", &code),
            Err(PlaceError::NoNode(_))
        ));
        nodes[1].reachable = false;
        assert_eq!(
            place(&nodes, "cp", &gvisor),
            Err(PlaceError::NoRuntime {
                runtime: "gvisor".into(),
                offered: "runc".into()
            })
        );
        nodes[2].reachable = false;
        assert!(matches!(
            place(&nodes, "cp", &ask(1, 1)),
            Err(PlaceError::NoNode(_))
        ));
    }
}
