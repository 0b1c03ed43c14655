//! The container state machine: the one place that says which transitions are legal.
//!
//! ```text
//! PENDING → PULLING/BUILDING → STARTING → RUNNING → STOPPING → STOPPED   (stop, idle)
//!                  │            │         └──────────────→ EXITED(code) | OOM_KILLED
//!                  └────────────┴────────────────────────→ FAILED(reason)
//! ```
//! A stop may arrive before the container runs: PENDING, PULLING/BUILDING and STARTING may move to
//! STOPPING, and the start then unwinds into STOPPED. Any state that has not ended may become
//! LOST, when the worker it is placed on stops heartbeating.

use berth_api::ContainerStatus::{self, *};

pub fn allowed(from: ContainerStatus, to: ContainerStatus) -> bool {
    matches!(
        (from, to),
        (Pending, Pulling | Building | Stopping | Failed | Lost)
            | (Pulling | Building, Starting | Stopping | Failed | Lost)
            | (Starting, Running | Stopping | Failed | Lost)
            | (Running, Stopping | Exited | OomKilled | Failed | Lost)
            | (Stopping, Stopped | Exited | OomKilled | Failed | Lost)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_are_final() {
        for from in ContainerStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in ContainerStatus::ALL {
                assert!(!allowed(from, to), "{from} → {to}");
            }
        }
    }

    #[test]
    fn the_happy_path_and_early_stop() {
        assert!(allowed(Pending, Pulling));
        assert!(allowed(Pulling, Starting));
        assert!(allowed(Starting, Running));
        assert!(allowed(Running, Stopping));
        assert!(allowed(Stopping, Stopped));
        assert!(allowed(Pulling, Stopping));
        assert!(!allowed(Running, Pulling));
        assert!(!allowed(Pending, Running));
        assert!(
            !allowed(Running, Stopped),
            "stopping is always recorded first"
        );
    }
}
