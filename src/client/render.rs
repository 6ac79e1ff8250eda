//! Docker-style tables and JSON for the control replies.

use serde::Serialize;

use crate::client::format::{human_duration, short_id, state_since, table};
use crate::core::secrets::SecretKind;
use crate::net::admin::{NodeView, SecretView, ServiceView, TaskView};

/// `table` or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns with Docker's headers.
    Table,
    /// One JSON array.
    Json,
}

/// Pretty JSON of anything the CLI prints (`inspect`, `--format json`).
pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("\"cannot render: {e}\""))
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `node ls`.
pub fn nodes(rows: &[NodeView], format: OutputFormat) -> String {
    if format == OutputFormat::Json {
        return json(&rows);
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|node| {
            let id = if node.is_self {
                format!("{} *", node.id)
            } else {
                node.id.clone()
            };
            vec![
                id,
                node.hostname.clone(),
                capitalized(&node.status),
                capitalized(&node.availability),
                node.manager_status
                    .as_deref()
                    .map(capitalized)
                    .unwrap_or_default(),
                node.engine_version.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "HOSTNAME",
            "STATUS",
            "AVAILABILITY",
            "MANAGER STATUS",
            "ENGINE VERSION",
        ],
        &body,
    )
}

/// `service ls`.
pub fn services(rows: &[ServiceView], format: OutputFormat) -> String {
    if format == OutputFormat::Json {
        return json(&rows);
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|service| {
            vec![
                short_id(&service.id).to_string(),
                service.name.clone(),
                service.mode.clone(),
                format!("{}/{}", service.replicas_running, service.replicas_desired),
                service.image.clone(),
                service.ports.join(","),
            ]
        })
        .collect();
    table(&["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"], &body)
}

/// `secret ls` (ID NAME VERSION CREATED UPDATED) and `config ls` (ID NAME CREATED UPDATED,
/// as Docker's).
pub fn secrets(kind: SecretKind, rows: &[SecretView], format: OutputFormat, now_ms: u64) -> String {
    if format == OutputFormat::Json {
        return json(&rows);
    }
    let ago = |ms: u64| format!("{} ago", human_duration(now_ms.saturating_sub(ms)));
    let is_secret = kind == SecretKind::Secret;
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut cells = vec![row.id.clone(), row.name.clone()];
            if is_secret {
                cells.push(row.version.to_string());
            }
            cells.extend([ago(row.created_at_ms), ago(row.updated_at_ms)]);
            cells
        })
        .collect();
    if is_secret {
        table(&["ID", "NAME", "VERSION", "CREATED", "UPDATED"], &body)
    } else {
        table(&["ID", "NAME", "CREATED", "UPDATED"], &body)
    }
}

/// `service ps` / `node ps`: the newest task of each slot, then its history as ` \_ ` rows.
pub fn tasks(rows: &[TaskView], format: OutputFormat, no_trunc: bool, now_ms: u64) -> String {
    if format == OutputFormat::Json {
        return json(&rows);
    }
    let mut previous_name: Option<&str> = None;
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|task| {
            let history = previous_name == Some(task.name.as_str());
            previous_name = Some(task.name.as_str());
            let name = if history {
                format!(" \\_ {}", task.name)
            } else {
                task.name.clone()
            };
            let id = if no_trunc {
                task.id.clone()
            } else {
                short_id(&task.id).to_string()
            };
            let error = task.error.clone().unwrap_or_default();
            let error = if no_trunc || error.chars().count() <= 30 {
                error
            } else {
                format!("\"{}…\"", error.chars().take(28).collect::<String>())
            };
            vec![
                id,
                name,
                task.image.clone(),
                task.node_hostname.clone().unwrap_or_default(),
                capitalized(&task.desired_state),
                state_since(&task.current_state, task.state_since_ms, now_ms),
                error,
                task.ports.join(","),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "IMAGE",
            "NODE",
            "DESIRED STATE",
            "CURRENT STATE",
            "ERROR",
            "PORTS",
        ],
        &body,
    )
}
