//! `node inspect`: the node records with each node's gossip view under `gossip` (the string
//! `"unavailable"` when the node did not answer), as JSON or, with `--pretty`, as text.

use serde_json::Value;

use crate::core::gossip::{GossipView, MemberState};
use crate::core::model::Node;
use crate::net::admin::NodeGossip;

/// What `gossip` says of a node whose view could not be had.
pub const GOSSIP_UNAVAILABLE: &str = "unavailable";

fn view_of<'a>(node: &Node, gossip: &'a [NodeGossip]) -> Option<&'a GossipView> {
    gossip
        .iter()
        .find(|entry| entry.node_id == node.id)
        .and_then(|entry| entry.view.as_ref())
}

/// The JSON array `node inspect` prints.
pub fn json(nodes: &[Node], gossip: &[NodeGossip]) -> String {
    let rows: Vec<Value> = nodes
        .iter()
        .map(|node| {
            let mut row = serde_json::to_value(node).unwrap_or(Value::Null);
            let view = match view_of(node, gossip) {
                Some(view) => serde_json::to_value(view).unwrap_or(Value::Null),
                None => Value::String(GOSSIP_UNAVAILABLE.to_string()),
            };
            if let Value::Object(fields) = &mut row {
                fields.insert("gossip".to_string(), view);
            }
            row
        })
        .collect();
    crate::client::render::json(&rows)
}

fn state_word(state: MemberState) -> &'static str {
    match state {
        MemberState::Alive => "alive",
        MemberState::Suspect => "suspect",
        MemberState::Down => "down",
    }
}

/// `node inspect --pretty`: a few lines per node.
pub fn pretty(nodes: &[Node], gossip: &[NodeGossip]) -> String {
    let mut out = String::new();
    for node in nodes {
        out.push_str(&format!("ID:\t\t\t{}\n", node.id));
        out.push_str(&format!("Hostname:\t\t{}\n", node.hostname));
        out.push_str(&format!("Address:\t\t{}\n", node.addr));
        let Some(view) = view_of(node, gossip) else {
            out.push_str(&format!("Gossip:\t\t\t{GOSSIP_UNAVAILABLE}\n\n"));
            continue;
        };
        out.push_str("Gossip:\n");
        let version = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
        out.push_str(&format!(
            " Table Version:\t\t{}\n",
            version(view.table_version)
        ));
        out.push_str(&format!(
            " Announced Version:\t{}\n",
            version(view.announced_version)
        ));
        out.push_str(&format!(" Suspected:\t\t{}\n", view.suspected.len()));
        out.push_str(" Members:\n");
        for member in &view.members {
            out.push_str(&format!(
                "  {}\t{}\t{}\n",
                member.node_id,
                member.addr,
                state_word(member.state)
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::gossip::MemberView;

    fn node(id: &str) -> Node {
        crate::core::testkit::node(id)
    }

    #[test]
    fn a_node_without_a_view_is_unavailable_and_others_show_theirs() {
        let view = GossipView {
            node_id: "a".into(),
            members: vec![MemberView {
                node_id: "b".into(),
                addr: "127.0.0.1:2".into(),
                state: MemberState::Suspect,
            }],
            suspected: vec!["b".into()],
            table_version: Some(7),
            announced_version: Some(7),
        };
        let gossip = vec![
            NodeGossip {
                node_id: "a".into(),
                view: Some(view),
            },
            NodeGossip {
                node_id: "b".into(),
                view: None,
            },
        ];
        let nodes = [node("a"), node("b")];
        let rows: Vec<Value> = serde_json::from_str(&json(&nodes, &gossip)).expect("json");
        assert_eq!(rows[0]["gossip"]["members"][0]["state"], "suspect");
        assert_eq!(rows[0]["gossip"]["table_version"], 7);
        assert_eq!(rows[1]["gossip"], GOSSIP_UNAVAILABLE);
        let text = pretty(&nodes, &gossip);
        assert!(text.contains("Table Version:\t\t7"), "{text}");
        assert!(text.contains("127.0.0.1:2\tsuspect"), "{text}");
        assert!(text.contains("Gossip:\t\t\tunavailable"), "{text}");
    }
}
