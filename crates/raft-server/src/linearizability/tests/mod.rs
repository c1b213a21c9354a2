//! The checker's own tests on hand-written histories: it rejects the violations a
//! broken replicated store shows (stale read, lost write, double-successful
//! compare-and-swap) and accepts valid concurrent histories. Generated histories are in
//! `generated`.

mod generated;

use super::*;

const BUDGET: Duration = Duration::from_secs(10);

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn operation(client: u64, span: (u64, u64), kind: OpKind, outcome: Outcome) -> Operation {
    Operation {
        client,
        key: "k".to_owned(),
        call: span.0,
        returned: Some(span.1),
        kind,
        outcome,
    }
}

fn write(client: u64, span: (u64, u64), new: &str) -> Operation {
    operation(client, span, OpKind::Write(value(new)), Outcome::WriteOk)
}

fn read(client: u64, span: (u64, u64), seen: Option<&str>) -> Operation {
    operation(
        client,
        span,
        OpKind::Read,
        Outcome::ReadValue(seen.map(value)),
    )
}

fn delete(client: u64, span: (u64, u64)) -> Operation {
    operation(client, span, OpKind::Delete, Outcome::DeleteOk)
}

fn cas(
    client: u64,
    span: (u64, u64),
    expected: Option<&str>,
    new: &str,
    swapped: bool,
) -> Operation {
    let kind = OpKind::CompareAndSwap {
        expected: expected.map(value),
        new: value(new),
    };
    operation(client, span, kind, Outcome::CasResult(swapped))
}

/// An operation with no answer, called at `call`.
fn unknown(client: u64, call: u64, kind: OpKind) -> Operation {
    Operation {
        returned: None,
        outcome: Outcome::Unknown,
        ..operation(client, (call, call), kind, Outcome::Unknown)
    }
}

fn on_key(key: &str, mut operation: Operation) -> Operation {
    operation.key = key.to_owned();
    operation
}

fn verdict(history: &[Operation]) -> Verdict {
    check(history, BUDGET).verdict
}

fn assert_linearizable(history: &[Operation]) {
    let result = check(history, BUDGET);
    assert!(result.is_linearizable(), "{}", result.verdict);
}

/// Asserts a rejection and that the explanation names `stuck` as the stuck operation.
fn assert_rejected(history: &[Operation], stuck: usize) {
    match verdict(history) {
        Verdict::NotLinearizable {
            stuck_op,
            explanation,
            ..
        } => {
            assert_eq!(stuck_op, stuck, "{explanation}");
            assert!(explanation.contains(&format!("#{stuck} ")), "{explanation}");
        }
        other => panic!("expected a violation, got {other}"),
    }
}

// --- Violations -------------------------------------------------------------------

#[test]
fn rejects_a_stale_read() {
    // b overwrote a before the read began, yet the read returns a.
    let history = [
        write(1, (0, 10), "a"),
        write(1, (20, 30), "b"),
        read(2, (40, 50), Some("a")),
    ];
    assert_rejected(&history, 2);
    let Verdict::NotLinearizable {
        key,
        longest_prefix,
        explanation,
        ..
    } = verdict(&history)
    else {
        unreachable!()
    };
    assert_eq!(key, "k");
    assert_eq!(longest_prefix, vec![0, 1]);
    assert!(
        explanation.contains("register holds \"b\""),
        "{explanation}"
    );
}

#[test]
fn rejects_a_stale_read_of_an_absent_key() {
    let history = [write(1, (0, 10), "a"), read(2, (20, 30), None)];
    assert_rejected(&history, 1);
}

#[test]
fn rejects_a_lost_write() {
    // The write of b was acknowledged, then a read that began later sees a.
    let history = [
        write(1, (0, 10), "a"),
        read(2, (12, 18), Some("a")),
        write(3, (20, 30), "b"),
        read(2, (40, 50), Some("a")),
        read(1, (60, 70), Some("a")),
    ];
    assert_rejected(&history, 3);
}

#[test]
fn rejects_a_double_successful_compare_and_swap() {
    // Two concurrent swaps from a both succeed: only one can have seen a.
    let history = [
        write(1, (0, 10), "a"),
        cas(2, (20, 40), Some("a"), "b", true),
        cas(3, (25, 35), Some("a"), "c", true),
    ];
    assert!(matches!(verdict(&history), Verdict::NotLinearizable { .. }));
    // Each alone is fine.
    assert_linearizable(&history[..2]);
    assert_linearizable(&[history[0].clone(), history[2].clone()]);
}

#[test]
fn rejects_a_double_successful_create() {
    let history = [
        cas(1, (0, 20), None, "a", true),
        cas(2, (5, 25), None, "b", true),
    ];
    assert!(matches!(verdict(&history), Verdict::NotLinearizable { .. }));
}

#[test]
fn rejects_a_failed_compare_and_swap_that_should_have_succeeded() {
    let history = [
        write(1, (0, 10), "a"),
        cas(2, (20, 30), Some("a"), "b", false),
    ];
    assert_rejected(&history, 1);
}

#[test]
fn rejects_a_read_that_goes_back_in_time() {
    // Concurrent writes may land in either order, but once both are done the value
    // stays put: a then b then a again is impossible.
    let history = [
        write(1, (0, 100), "a"),
        write(2, (0, 100), "b"),
        read(3, (110, 120), Some("a")),
        read(3, (130, 140), Some("b")),
    ];
    assert_rejected(&history, 3);
}

#[test]
fn rejects_a_value_seen_before_its_unknown_write_was_called() {
    let history = [
        read(1, (0, 10), Some("b")),
        unknown(2, 20, OpKind::Write(value("b"))),
    ];
    assert_rejected(&history, 0);
}

#[test]
fn rejects_an_unknown_write_that_is_seen_then_unseen() {
    let history = [
        write(1, (0, 10), "a"),
        unknown(2, 20, OpKind::Write(value("b"))),
        read(3, (30, 40), Some("b")),
        read(3, (50, 60), Some("a")),
    ];
    assert_rejected(&history, 3);
}

#[test]
fn rejects_a_read_of_a_deleted_key() {
    let history = [
        write(1, (0, 10), "a"),
        delete(1, (20, 30)),
        read(2, (40, 50), Some("a")),
    ];
    assert_rejected(&history, 2);
}

#[test]
fn a_violation_on_one_key_is_found_among_valid_keys() {
    let history = [
        on_key("x", write(1, (0, 10), "a")),
        on_key("y", write(2, (0, 10), "a")),
        on_key("y", write(2, (20, 30), "b")),
        on_key("x", read(1, (40, 50), Some("a"))),
        on_key("y", read(3, (40, 50), Some("a"))),
        on_key("z", read(3, (40, 50), None)),
    ];
    let result = check(&history, BUDGET);
    let Verdict::NotLinearizable { key, stuck_op, .. } = &result.verdict else {
        panic!("expected a violation, got {}", result.verdict);
    };
    assert_eq!((key.as_str(), *stuck_op), ("y", 4));
    assert_eq!(result.keys_checked, 2, "x and y, in key order");
}

// --- Valid histories --------------------------------------------------------------

#[test]
fn accepts_an_empty_history() {
    let result = check(&[], BUDGET);
    assert_eq!(
        (result.verdict, result.keys_checked, result.ops),
        (Verdict::Linearizable, 0, 0)
    );
}

#[test]
fn accepts_a_read_of_an_absent_key() {
    assert_linearizable(&[read(1, (0, 10), None)]);
}

#[test]
fn accepts_reads_overlapping_a_write_in_either_order() {
    // A read concurrent with a write may see the old or the new value, and two reads
    // inside it may see old then new, but not new then old.
    assert_linearizable(&[write(1, (0, 100), "a"), read(2, (10, 20), Some("a"))]);
    assert_linearizable(&[write(1, (0, 100), "a"), read(2, (10, 20), None)]);
    assert_linearizable(&[
        write(1, (0, 100), "a"),
        read(2, (10, 20), None),
        read(2, (30, 40), Some("a")),
    ]);
    let history = [
        write(1, (0, 100), "a"),
        read(2, (10, 20), Some("a")),
        read(2, (30, 40), None),
    ];
    assert_rejected(&history, 2);
}

#[test]
fn accepts_concurrent_writes_in_either_order() {
    for last in ["a", "b"] {
        assert_linearizable(&[
            write(1, (0, 100), "a"),
            write(2, (10, 90), "b"),
            read(3, (110, 120), Some(last)),
            read(1, (130, 140), Some(last)),
        ]);
    }
}

#[test]
fn accepts_operations_that_touch_at_one_instant_as_concurrent() {
    assert_linearizable(&[write(1, (0, 10), "a"), read(2, (10, 20), None)]);
}

#[test]
fn accepts_an_unknown_write_that_took_effect_late() {
    assert_linearizable(&[
        write(1, (0, 10), "a"),
        unknown(2, 20, OpKind::Write(value("b"))),
        read(3, (30, 40), Some("a")),
        read(3, (1_000, 1_010), Some("a")),
        read(3, (5_000, 5_010), Some("b")),
    ]);
}

#[test]
fn accepts_an_unknown_write_that_never_took_effect() {
    assert_linearizable(&[
        write(1, (0, 10), "a"),
        unknown(2, 20, OpKind::Write(value("b"))),
        unknown(2, 25, OpKind::Delete),
        unknown(
            2,
            27,
            OpKind::CompareAndSwap {
                expected: Some(value("a")),
                new: value("c"),
            },
        ),
        read(3, (30, 40), Some("a")),
        read(3, (50, 60), Some("a")),
    ]);
}

#[test]
fn accepts_a_read_of_a_still_pending_write() {
    assert_linearizable(&[
        write(1, (0, 10), "a"),
        unknown(2, 20, OpKind::Write(value("b"))),
        read(3, (25, 30), Some("b")),
        read(1, (35, 40), Some("b")),
    ]);
}

#[test]
fn accepts_a_known_outcome_without_a_return_time() {
    // The answer arrived but its time was not recorded: it took effect after its call.
    let mut late_read = read(2, (20, 20), Some("b"));
    late_read.returned = None;
    assert_linearizable(&[
        write(1, (0, 10), "a"),
        late_read.clone(),
        read(3, (30, 40), Some("a")),
        write(3, (50, 60), "b"),
    ]);
    // ...but it did take effect, unlike a read with an unknown outcome.
    let history = [write(1, (0, 10), "a"), late_read];
    assert_rejected(&history, 1);
}

#[test]
fn drops_unknown_reads() {
    let failed_read = unknown(3, 30, OpKind::Read);
    let history = [write(1, (0, 10), "a"), failed_read];
    let result = check(&history, BUDGET);
    assert_eq!((result.verdict, result.ops), (Verdict::Linearizable, 1));
}

#[test]
fn accepts_deletes() {
    assert_linearizable(&[
        write(1, (0, 10), "a"),
        delete(2, (20, 30)),
        read(3, (40, 50), None),
        delete(2, (60, 70)),
        write(1, (80, 90), "b"),
        delete(2, (85, 95)),
        read(3, (100, 110), None),
    ]);
}

#[test]
fn accepts_compare_and_swaps() {
    assert_linearizable(&[
        cas(1, (0, 10), None, "a", true),
        cas(2, (20, 40), Some("a"), "b", true),
        cas(3, (25, 35), Some("a"), "c", false),
        cas(1, (50, 60), None, "d", false),
        read(2, (70, 80), Some("b")),
    ]);
}

#[test]
fn accepts_an_unknown_compare_and_swap_either_way() {
    let swap = || {
        unknown(
            2,
            20,
            OpKind::CompareAndSwap {
                expected: Some(value("a")),
                new: value("b"),
            },
        )
    };
    for seen in ["a", "b"] {
        assert_linearizable(&[
            write(1, (0, 10), "a"),
            swap(),
            read(3, (30, 40), Some(seen)),
        ]);
    }
}

#[test]
fn exhausted_budget_is_unknown() {
    let history = [
        on_key("x", write(1, (0, 10), "a")),
        on_key("y", write(1, (0, 10), "a")),
    ];
    let result = check(&history, Duration::ZERO);
    assert_eq!(
        result.verdict,
        Verdict::Unknown {
            keys: vec!["x".to_owned(), "y".to_owned()]
        }
    );
    assert!(!result.is_linearizable());
}

#[test]
#[should_panic(expected = "malformed history")]
fn a_read_told_write_ok_is_malformed() {
    check(
        &[operation(1, (0, 10), OpKind::Read, Outcome::WriteOk)],
        BUDGET,
    );
}

// --- The recorder -----------------------------------------------------------------

#[test]
fn history_records_calls_returns_and_unknowns() {
    let history = History::new();
    let write_id = history.invoke(1, "k", OpKind::Write(value("a")));
    let lost_id = history.invoke(2, "k", OpKind::Write(value("b")));
    history.complete(write_id, Outcome::WriteOk);
    history.complete(lost_id, Outcome::Unknown);
    let _never_completed = history.invoke(3, "k", OpKind::Delete);
    let read_id = history.clone().invoke(4, "k", OpKind::Read);
    history.complete(read_id, Outcome::ReadValue(Some(value("a"))));

    let operations = history.operations();
    assert_eq!(operations.len(), 4);
    let [write, lost, never, read] = &operations[..] else {
        unreachable!()
    };
    assert!(
        write
            .returned
            .is_some_and(|returned| returned >= write.call)
    );
    assert!(lost.call >= write.call);
    assert_eq!((lost.returned, &lost.outcome), (None, &Outcome::Unknown));
    assert_eq!((never.returned, &never.outcome), (None, &Outcome::Unknown));
    assert!(read.call >= write.returned.unwrap());
    assert!(history.check(BUDGET).is_linearizable());
}
