use super::*;
use crate::core::events::IndexedEvent;
use crate::core::store::Command;
use crate::core::testkit::{node, service, Harness};

/// Applies `command` and records its events as the Raft actor would batch them.
fn step(h: &mut Harness, history: &mut EventHistory, command: Command) {
    let after_index = h.index;
    let events = h.apply(command);
    let batch = EventBatch {
        after_index,
        through_index: h.index,
        events: events
            .into_iter()
            .map(|event| IndexedEvent {
                index: h.index,
                event,
            })
            .collect(),
        lossy: false,
    };
    history.record(&batch, &h.store, 99_000);
}

fn all_after(history: &EventHistory, after: u64) -> EventPage {
    history.page(&EventQuery {
        after_index: Some(after),
        ..EventQuery::default()
    })
}

fn summary(page: &EventPage) -> Vec<(String, String, Option<String>)> {
    page.records
        .iter()
        .map(|r| {
            (
                r.kind.clone(),
                r.action.clone(),
                r.attributes.get("name").cloned(),
            )
        })
        .collect()
}

#[test]
fn records_say_what_changed_with_its_index_and_name_even_after_removal() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    let mut history = EventHistory::at(h.index, 100);
    let start = h.index;
    step(
        &mut h,
        &mut history,
        Command::CreateService(service("s1", "web", 1)),
    );
    step(
        &mut h,
        &mut history,
        Command::RemoveService {
            service_id: "s1".into(),
        },
    );
    let page = all_after(&history, start);
    assert_eq!(
        summary(&page),
        vec![
            ("service".into(), "create".into(), Some("web".into())),
            ("service".into(), "remove".into(), Some("web".into())),
        ]
    );
    assert_eq!(page.records[0].index, start + 1);
    assert_eq!(page.records[1].index, start + 2);
    assert_eq!(page.through_index, h.index);
    assert_eq!(page.missed_through, None);
    // Asking again from where the page ended gives nothing new.
    assert!(all_after(&history, page.through_index).records.is_empty());
}

#[test]
fn a_first_question_without_an_index_learns_where_the_history_stands() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    let mut history = EventHistory::at(h.index, 100);
    step(
        &mut h,
        &mut history,
        Command::CreateService(service("s1", "web", 1)),
    );
    let page = history.page(&EventQuery::default());
    assert!(page.records.is_empty());
    assert_eq!(page.through_index, h.index);
}

#[test]
fn filters_match_one_value_per_key_and_every_key() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    let mut history = EventHistory::at(h.index, 100);
    let start = h.index;
    step(
        &mut h,
        &mut history,
        Command::CreateService(service("s1", "web", 1)),
    );
    step(
        &mut h,
        &mut history,
        Command::CreateService(service("s2", "db", 1)),
    );
    step(&mut h, &mut history, Command::UpsertNode(node("n2")));
    let query = |filters: &[(&str, &str)]| {
        history.page(&EventQuery {
            after_index: Some(start),
            since_ms: None,
            filters: filters
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    };
    assert_eq!(query(&[("type", "service")]).records.len(), 2);
    assert_eq!(
        query(&[("type", "service"), ("type", "node")])
            .records
            .len(),
        3
    );
    let db = query(&[("type", "service"), ("name", "db")]);
    assert_eq!(
        summary(&db),
        vec![("service".into(), "create".into(), Some("db".into()))]
    );
    assert!(query(&[("type", "task"), ("name", "db")])
        .records
        .is_empty());
    assert_eq!(query(&[("service", "s1")]).records.len(), 1);
    assert!(check_filters(&[("colour".into(), "red".into())]).is_err());
    assert!(check_filters(&[("type".into(), "node".into())]).is_ok());
}

#[test]
fn records_pushed_out_or_lost_are_reported_missed_never_silently_skipped() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    let mut history = EventHistory::at(h.index, 2);
    let start = h.index;
    for (id, name) in [("s1", "a"), ("s2", "b"), ("s3", "c")] {
        step(
            &mut h,
            &mut history,
            Command::CreateService(service(id, name, 1)),
        );
    }
    let page = all_after(&history, start);
    assert_eq!(
        page.missed_through,
        Some(start + 1),
        "the first record was pushed out"
    );
    assert_eq!(summary(&page).len(), 2);
    assert_eq!(all_after(&history, start + 1).missed_through, None);

    // A lossy batch (a snapshot was restored) loses what it covers.
    let through = h.index;
    history.record(
        &EventBatch {
            after_index: through,
            through_index: through + 10,
            events: Vec::new(),
            lossy: true,
        },
        &h.store,
        0,
    );
    let page = all_after(&history, through);
    assert_eq!(page.missed_through, Some(through + 10));
    assert_eq!(page.through_index, through + 10);

    // And a manager knows nothing from before it started.
    let fresh = EventHistory::at(50, 10);
    assert_eq!(all_after(&fresh, 10).missed_through, Some(50));
}

#[test]
fn a_full_page_ends_between_indexes_and_the_next_one_continues() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    let mut history = EventHistory::at(h.index, PAGE_RECORDS_MAX * 3);
    let start = h.index;
    for i in 0..(PAGE_RECORDS_MAX + 20) {
        let id = format!("s{i}");
        step(
            &mut h,
            &mut history,
            Command::CreateService(service(&id, &id, 0)),
        );
    }
    let first = all_after(&history, start);
    assert_eq!(first.records.len(), PAGE_RECORDS_MAX);
    assert_eq!(
        first.through_index,
        first.records.last().map_or(0, |r| r.index)
    );
    let second = all_after(&history, first.through_index);
    assert_eq!(second.records.len(), 20);
    assert_eq!(second.through_index, h.index);
}
