//! `flotilla node ...`: one control request each, and what is printed for the answer.

use flotilla::client::{node_inspect, render};
use flotilla::client::{Client, ClientError};
use flotilla::core::model::NodeRole;
use flotilla::net::admin::{AdminReply, AdminRequest};

use crate::args::NodeCommand;
use crate::now_ms;

pub(crate) async fn node(client: &Client, command: NodeCommand) -> Result<(), ClientError> {
    match command {
        NodeCommand::Ls { format } => match client.control(AdminRequest::NodeList).await? {
            AdminReply::Nodes(nodes) => print!("{}", render::nodes(&nodes, format.into())),
            other => return Err(ClientError::unexpected(other)),
        },
        NodeCommand::Ps {
            node,
            format,
            no_trunc,
        } => match client.control(AdminRequest::NodeTasks { node }).await? {
            AdminReply::Tasks(tasks) => print!(
                "{}",
                render::tasks(&tasks, format.into(), no_trunc, now_ms())
            ),
            other => return Err(ClientError::unexpected(other)),
        },
        NodeCommand::Inspect { nodes, pretty } => {
            let nodes = match client.control(AdminRequest::NodeInspect { nodes }).await? {
                AdminReply::NodeDetails(nodes) => nodes,
                other => return Err(ClientError::unexpected(other)),
            };
            // The gossip views are extra: a manager that cannot give them (an older one, or
            // none in time) leaves them "unavailable" rather than failing the inspect.
            let ids = nodes.iter().map(|node| node.id.clone()).collect();
            let gossip = match client
                .control(AdminRequest::NodeGossip { nodes: ids })
                .await
            {
                Ok(AdminReply::NodeGossip(gossip)) => gossip,
                _ => Vec::new(),
            };
            if pretty {
                print!("{}", node_inspect::pretty(&nodes, &gossip));
            } else {
                println!("{}", node_inspect::json(&nodes, &gossip));
            }
        }
        NodeCommand::Update {
            availability,
            label_add,
            label_rm,
            node,
        } => {
            let request = AdminRequest::NodeUpdate {
                node: node.clone(),
                availability,
                labels_add: label_add.into_iter().collect(),
                labels_rm: label_rm,
            };
            client.control(request).await?;
            println!("{node}");
        }
        NodeCommand::Promote { nodes } | NodeCommand::Demote { nodes } if nodes.is_empty() => {}
        NodeCommand::Promote { nodes } => {
            client
                .control(AdminRequest::NodeSetRole {
                    nodes: nodes.clone(),
                    role: NodeRole::Manager,
                })
                .await?;
            for node in nodes {
                println!("Node {node} promoted to a manager in the swarm.");
            }
        }
        NodeCommand::Demote { nodes } => {
            client
                .control(AdminRequest::NodeSetRole {
                    nodes: nodes.clone(),
                    role: NodeRole::Worker,
                })
                .await?;
            for node in nodes {
                println!("Manager {node} demoted in the swarm.");
            }
        }
        NodeCommand::Rm { force, nodes } => {
            client
                .control(AdminRequest::NodeRemove {
                    nodes: nodes.clone(),
                    force,
                })
                .await?;
            for node in nodes {
                println!("{node}");
            }
        }
    }
    Ok(())
}
