//! `flotilla events`: the changes the manager addressed applies, as they come (SPEC §11). The
//! CLI pages through the manager's history by Raft index, so a slow reader resumes where it
//! stopped; a gap the manager no longer holds is said on stderr, never skipped in silence.

use std::time::Duration;

use flotilla::client::{Client, ClientError};
use flotilla::core::event_history::{check_filters, EventPage, EventQuery, EventRecord};
use flotilla::core::spec::parse_duration_ms;
use flotilla::net::admin::{rfc3339, AdminReply, AdminRequest};

use crate::args::{parse_kv, Format};
use crate::now_ms;

/// How often the CLI asks for new records when the last page was empty.
const POLL_INTERVAL_MS: u64 = 200;

#[derive(clap::Args)]
pub(crate) struct EventsArgs {
    /// Start after this Raft index, or at this long ago (e.g. 10m); default: from now.
    #[arg(long)]
    since: Option<String>,
    /// type=service|node|task|secret|config|cluster, event=create|update|remove|rotate,
    /// id=, name=, service=, node= (repeatable; one value per key suffices, every key must
    /// match).
    #[arg(long, value_parser = parse_kv)]
    filter: Vec<(String, String)>,
    /// Output format (json: one object per line).
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

enum Since {
    Index(u64),
    Ago(u64),
}

fn parse_since(text: &str) -> Result<Since, ClientError> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Since::Index)
            .map_err(|_| ClientError::Remote(format!("invalid --since {text:?}: too large")));
    }
    parse_duration_ms(text)
        .map(Since::Ago)
        .map_err(|error| ClientError::Remote(format!("invalid --since {text:?}: {error}")))
}

pub(crate) async fn events(client: &Client, args: EventsArgs) -> Result<(), ClientError> {
    check_filters(&args.filter).map_err(ClientError::Remote)?;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let (mut after_index, since_ms) = match since {
        Some(Since::Index(index)) => (Some(index), None),
        Some(Since::Ago(ago_ms)) => (Some(0), Some(now_ms().saturating_sub(ago_ms))),
        None => (None, None),
    };
    let json = matches!(args.format, Format::Json);
    loop {
        let query = EventQuery {
            after_index,
            since_ms,
            filters: args.filter.clone(),
        };
        let page = match client.control(AdminRequest::Events(query)).await? {
            AdminReply::Events(page) => page,
            other => return Err(ClientError::unexpected(other)),
        };
        print_page(&page, after_index, since_ms.is_some(), json);
        let empty = page.records.is_empty() && after_index == Some(page.through_index);
        after_index = Some(page.through_index);
        if empty {
            tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
    }
}

fn print_page(page: &EventPage, after_index: Option<u64>, by_time: bool, json: bool) {
    if let (Some(missed), Some(after)) = (page.missed_through, after_index) {
        // `--since 10m` asks for what the history holds; a gap in it is no surprise.
        if !by_time || after > 0 {
            eprintln!(
                "warning: the events after index {after} up to index {missed} are no longer held by this manager; continuing after {missed}"
            );
        }
    }
    for record in &page.records {
        if json {
            match serde_json::to_string(record) {
                Ok(line) => println!("{line}"),
                Err(error) => eprintln!("warning: cannot print event {}: {error}", record.index),
            }
        } else {
            println!("{}", line(record));
        }
    }
}

/// `2026-12-01T10:00:00.123Z service update gwdawjoayar2 (name=demo, index=42)`.
fn line(record: &EventRecord) -> String {
    let mut attributes: Vec<String> = Vec::new();
    if let Some(name) = record.attributes.get("name") {
        attributes.push(format!("name={name}"));
    }
    attributes.extend(
        record
            .attributes
            .iter()
            .filter(|(key, _)| key.as_str() != "name")
            .map(|(key, value)| format!("{key}={value}")),
    );
    attributes.push(format!("index={}", record.index));
    format!(
        "{} {} {} {} ({})",
        rfc3339(record.time_ms),
        record.kind,
        record.action,
        flotilla::client::format::short_id(&record.id),
        attributes.join(", ")
    )
}
