//! Hollow workers (`flotilla-node sim`): many real nodes in one process, for scale tests.

use std::net::SocketAddr;

use crate::node::daemon::{DaemonError, NodeOptions, RunningNode};
use crate::node::join::join;

/// Joins `count` hollow workers (`flotilla-node sim`): each is a real node to the managers,
/// with its own identity, certificate, endpoint, heartbeats and status reports, running the
/// sim runtime. Node `i` listens on `base.ip():base.port()+i` with state under
/// `state_dir/hollow-i`. Joins run a few at a time.
pub async fn hollow_nodes(
    template: NodeOptions,
    token: &str,
    manager: SocketAddr,
    count: usize,
) -> Result<Vec<RunningNode>, DaemonError> {
    const JOINS_IN_FLIGHT: usize = 8;
    let mut nodes = Vec::with_capacity(count);
    let indexes: Vec<usize> = (0..count).collect();
    for batch in indexes.chunks(JOINS_IN_FLIGHT) {
        let joins = batch.iter().map(|i| {
            let port = template.listen.port().checked_add(*i as u16);
            let mut options = template.clone();
            options.runtime = "sim".to_string();
            options.hostname = Some(format!("hollow-{i}"));
            options.state_dir = template.state_dir.join(format!("hollow-{i}"));
            async move {
                let port = port.ok_or_else(|| {
                    DaemonError::StateDir("not enough ports above the base port".into())
                })?;
                options.listen = SocketAddr::new(template.listen.ip(), port);
                join(options, token, manager).await
            }
        });
        for joined in futures::future::join_all(joins).await {
            nodes.push(joined?);
        }
    }
    Ok(nodes)
}
