//! Account phase: a client connection counts as one open connection against the container
//! its latest request went to, for as long as the client keeps it open, so a pod is not
//! stopped under an idle keep-alive connection.

use crate::{ActivityGuard, Route};

/// The count one client connection holds; dropping it (the connection closing) releases it.
#[derive(Debug, Default)]
pub(crate) struct Account(Option<(String, ActivityGuard)>);

impl Account {
    /// Whether the connection already counts against `route`'s container.
    pub(crate) fn counts(&self, route: &Route) -> bool {
        self.0.as_ref().map(|(id, _)| id) == Some(&route.container_id)
    }

    /// Counts the connection against `route`'s container; a connection that moves on to
    /// another container stops counting against the previous one.
    pub(crate) fn count(&mut self, route: &Route) {
        if !self.counts(route) {
            self.0 = Some((route.container_id.clone(), route.activity.connect()));
        }
    }
}
