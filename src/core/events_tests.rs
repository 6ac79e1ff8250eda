use super::*;

fn created(id: &str) -> Event {
    Event::ServiceCreated {
        service_id: id.to_string(),
    }
}

fn ids(delivery: Delivery<'_>) -> Vec<String> {
    match delivery {
        Delivery::Events(events) => events
            .into_iter()
            .map(|event| match event {
                Event::ServiceCreated { service_id } => service_id.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect(),
        other => panic!("expected events, got {other:?}"),
    }
}

#[test]
fn continuous_batches_are_delivered_in_order_with_their_indexes() {
    let mut log = EventLog::at(10);
    let mut cursor = EventCursor::at(10);
    assert_eq!(log.take(), None, "nothing applied, nothing published");
    log.applied(11, &[created("a")]);
    log.applied(12, &[]);
    log.applied(13, &[created("b"), created("c")]);
    let batch = log.take().unwrap();
    assert_eq!((batch.after_index, batch.through_index), (10, 13));
    assert_eq!(
        batch.events.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![11, 13, 13]
    );
    assert_eq!(ids(cursor.accept(&batch)), vec!["a", "b", "c"]);
    assert_eq!(cursor.seen_through(), 13);
    // The same batch again (a duplicate delivery) is nothing new.
    assert_eq!(cursor.accept(&batch), Delivery::Nothing);
}

#[test]
fn a_dropped_batch_makes_the_next_one_a_reconcile() {
    let mut log = EventLog::at(0);
    let mut cursor = EventCursor::at(0);
    log.applied(1, &[created("a")]);
    let first = log.take().unwrap();
    log.applied(2, &[created("b")]);
    let _dropped = log.take().unwrap();
    log.applied(3, &[created("c")]);
    let third = log.take().unwrap();
    assert_eq!(ids(cursor.accept(&first)), vec!["a"]);
    // The second batch never arrived (a full mailbox): the third does not continue the view.
    assert_eq!(
        cursor.accept(&third),
        Delivery::Reconcile { missed_from: 2 }
    );
    assert_eq!(cursor.seen_through(), 3);
    log.applied(4, &[created("d")]);
    assert_eq!(ids(cursor.accept(&log.take().unwrap())), vec!["d"]);
}

#[test]
fn a_watcher_that_read_the_store_mid_batch_gets_only_what_it_has_not_seen() {
    let mut log = EventLog::at(0);
    log.applied(1, &[created("a")]);
    log.applied(2, &[created("b")]);
    // The watcher read the store after entry 1 was applied, before the batch went out.
    let mut cursor = EventCursor::at(1);
    assert_eq!(ids(cursor.accept(&log.take().unwrap())), vec!["b"]);
}

#[test]
fn a_restored_snapshot_or_an_overflow_is_lossy() {
    let mut log = EventLog::at(5);
    let mut cursor = EventCursor::at(5);
    log.applied(6, &[created("a")]);
    log.restored(40);
    let batch = log.take().unwrap();
    assert!(batch.lossy);
    assert!(batch.events.is_empty());
    assert_eq!(
        cursor.accept(&batch),
        Delivery::Reconcile { missed_from: 6 }
    );
    assert_eq!(cursor.seen_through(), 40);

    let mut log = EventLog::with_limit(0, 2);
    log.applied(1, &[created("x"), created("y")]);
    log.applied(2, &[created("z")]);
    let batch = log.take().unwrap();
    assert!(batch.lossy && batch.events.is_empty(), "{batch:?}");
    assert_eq!(batch.through_index, 2);
    // The next batch is whole again.
    log.applied(3, &[created("w")]);
    assert!(!log.take().unwrap().lossy);
}

#[test]
fn a_replayed_entry_does_not_move_the_log_back() {
    let mut log = EventLog::at(10);
    log.applied(8, &[created("old")]);
    assert_eq!(
        log.take(),
        None,
        "re-applying old entries publishes no range"
    );
    let mut cursor = EventCursor::at(10);
    log.applied(11, &[created("new")]);
    assert_eq!(ids(cursor.accept(&log.take().unwrap())), vec!["new"]);
}
