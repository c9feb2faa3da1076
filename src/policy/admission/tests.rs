use std::cell::Cell;
use std::future::{pending, ready, Future, Ready};
use std::time::Duration;

use tokio::time::{advance, timeout, Instant};

use super::*;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

/// A pool slot in these tests.
type Slot = u32;

fn no_pool() -> Option<Ready<Result<Slot, &'static str>>> {
    None
}

fn pool_answers(answer: Result<Slot, &'static str>) -> Option<Ready<Result<Slot, &'static str>>> {
    Some(ready(answer))
}

/// A pool whose slot frees up after `wait`.
fn pool_frees_after(wait: Duration) -> Option<impl Future<Output = Result<Slot, &'static str>>> {
    Some(async move {
        tokio::time::sleep(wait).await;
        Ok(7)
    })
}

fn delay(d: Duration) -> FaultAction {
    FaultAction {
        delay: Some(d),
        abort: None,
    }
}

/// Guards each admission so a bug fails in seconds (of paused time).
async fn run<G, O>(admission: impl Future<Output = Admission<G, O>>) -> Admission<G, O> {
    timeout(SEC * 3600, admission)
        .await
        .expect("admission finished")
}

#[tokio::test(start_paused = true)]
async fn no_ready_endpoint_is_refused_before_any_fault() {
    let start = Instant::now();
    let fault = FaultAction {
        delay: Some(SEC * 5),
        abort: Some(Abort::Http(418)),
    };
    let a = run(admit(0, fault, Some(SEC), pool_answers(Ok(1)))).await;
    assert_eq!(a.verdict, Err(Refusal::NoEndpoints));
    assert!(!a.delayed, "no delay, no DI");
    assert_eq!(a.deadline, Deadline::NONE);
    assert_eq!(Instant::now(), start, "no time spent");
}

#[tokio::test(start_paused = true)]
async fn without_faults_or_limits_the_request_passes_at_once() {
    let start = Instant::now();
    let a = run(admit(3, FaultAction::default(), None, no_pool())).await;
    assert_eq!(a.verdict, Ok(None));
    assert!(!a.delayed);
    assert_eq!(a.deadline, Deadline::NONE);
    assert_eq!(Instant::now(), start);
}

#[tokio::test(start_paused = true)]
async fn fault_delay_comes_before_the_abort() {
    let start = Instant::now();
    let polled = Cell::new(false);
    let pool = Some(async {
        polled.set(true);
        Ok::<Slot, &str>(1)
    });
    let fault = FaultAction {
        delay: Some(SEC * 2),
        abort: Some(Abort::Grpc(14)),
    };
    let a = run(admit(1, fault, Some(SEC), pool)).await;
    assert_eq!(a.verdict, Err(Refusal::FaultAbort(Abort::Grpc(14))));
    assert!(a.delayed, "DI and FI both apply");
    assert_eq!(
        Instant::now() - start,
        SEC * 2,
        "the delay ran in full first"
    );
    assert_eq!(
        a.deadline,
        Deadline::NONE,
        "an aborted request starts no deadline"
    );
    assert!(!polled.get(), "an aborted request never asks the pool");
}

#[tokio::test(start_paused = true)]
async fn abort_without_delay_is_immediate() {
    let start = Instant::now();
    let fault = FaultAction {
        delay: None,
        abort: Some(Abort::Http(503)),
    };
    let a = run(admit(1, fault, None, no_pool())).await;
    assert_eq!(a.verdict, Err(Refusal::FaultAbort(Abort::Http(503))));
    assert!(!a.delayed);
    assert_eq!(Instant::now(), start);
}

#[tokio::test(start_paused = true)]
async fn route_deadline_starts_after_the_fault_delay() {
    let start = Instant::now();
    let a = run(admit(1, delay(SEC), Some(SEC * 3), no_pool())).await;
    assert_eq!(a.verdict, Ok(None));
    assert!(a.delayed);
    assert_eq!(a.deadline.at(), Some(start + SEC * 4), "delay + timeout");
    assert_eq!(a.deadline.remaining(Instant::now()), Some(SEC * 3));
    advance(SEC * 3).await;
    assert!(a.deadline.expired(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn a_free_pool_slot_is_held_for_the_request() {
    let a = run(admit(
        1,
        FaultAction::default(),
        Some(SEC),
        pool_answers(Ok(42)),
    ))
    .await;
    assert_eq!(a.verdict, Ok(Some(42)));
}

#[tokio::test(start_paused = true)]
async fn a_full_pool_and_queue_overflow() {
    let a = run(admit(
        1,
        FaultAction::default(),
        Some(SEC),
        pool_answers(Err("pending")),
    ))
    .await;
    assert_eq!(a.verdict, Err(Refusal::Overflow("pending")));
    // The deadline had started: the proxy records it either way.
    assert!(a.deadline.at().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_gets_the_slot_freed_before_the_deadline() {
    let start = Instant::now();
    let a = run(admit(
        1,
        FaultAction::default(),
        Some(SEC),
        pool_frees_after(MS * 400),
    ))
    .await;
    assert_eq!(a.verdict, Ok(Some(7)));
    assert_eq!(Instant::now() - start, MS * 400);
    assert_eq!(a.deadline.remaining(Instant::now()), Some(MS * 600));
}

#[tokio::test(start_paused = true)]
async fn queueing_past_the_deadline_times_out() {
    let start = Instant::now();
    let never = Some(pending::<Result<Slot, &str>>());
    let a = run(admit(1, FaultAction::default(), Some(SEC * 2), never)).await;
    assert_eq!(a.verdict, Err(Refusal::DeadlineWhileQueued));
    assert_eq!(
        Instant::now() - start,
        SEC * 2,
        "gave up exactly at the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn the_fault_delay_does_not_shorten_the_queueing_time() {
    // The deadline starts after the delay, so a 1 s delay does not shorten
    // a 2 s timeout: the wait for a slot still gets 2 s.
    let start = Instant::now();
    let a = run(admit(
        1,
        delay(SEC),
        Some(SEC * 2),
        pool_frees_after(MS * 2500),
    ))
    .await;
    assert_eq!(a.verdict, Err(Refusal::DeadlineWhileQueued));
    assert_eq!(Instant::now() - start, SEC * 3);
}

#[tokio::test(start_paused = true)]
async fn without_a_route_timeout_a_queued_request_waits_for_its_slot() {
    let start = Instant::now();
    let a = run(admit(
        1,
        FaultAction::default(),
        None,
        pool_frees_after(SEC * 600),
    ))
    .await;
    assert_eq!(a.verdict, Ok(Some(7)));
    assert_eq!(Instant::now() - start, SEC * 600);
}

/// A `maxRetries` budget as the pool keeps it: a slot per retry in flight.
#[derive(Debug)]
struct Budget {
    max: u32,
    in_flight: Cell<u32>,
}

#[derive(Debug)]
struct BudgetSlot<'a>(&'a Budget);

impl PartialEq for BudgetSlot<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for BudgetSlot<'_> {}

impl Drop for BudgetSlot<'_> {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
    }
}

impl Budget {
    fn new(max: u32) -> Self {
        Self {
            max,
            in_flight: Cell::new(0),
        }
    }

    fn take(&self) -> Result<BudgetSlot<'_>, &'static str> {
        if self.in_flight.get() >= self.max {
            return Err("retry");
        }
        self.in_flight.set(self.in_flight.get() + 1);
        Ok(BudgetSlot(self))
    }
}

#[test]
fn max_retries_caps_concurrent_retries_and_flags_urx() {
    let budget = Budget::new(1);
    let first = admit_retry(RetryDecision::Retry, || budget.take());
    assert!(matches!(first, RetryAdmission::Retry(_)));
    assert_eq!(
        admit_retry(RetryDecision::Retry, || budget.take()),
        RetryAdmission::NoRetry { urx: true },
        "the budget is spent while the first retry is in flight"
    );
    drop(first);
    assert!(
        matches!(
            admit_retry(RetryDecision::Retry, || budget.take()),
            RetryAdmission::Retry(_)
        ),
        "a finished retry returns its slot"
    );
    assert_eq!(budget.in_flight.get(), 0);
}

#[test]
fn the_budget_is_only_asked_when_the_policy_retries() {
    let ask = || -> Result<(), ()> { panic!("budget consulted") };
    assert_eq!(
        admit_retry(RetryDecision::NotRetriable, ask),
        RetryAdmission::NoRetry { urx: false }
    );
    assert_eq!(
        admit_retry(RetryDecision::GiveUp { urx: true }, ask),
        RetryAdmission::NoRetry { urx: true }
    );
    assert_eq!(
        admit_retry(RetryDecision::GiveUp { urx: false }, ask),
        RetryAdmission::NoRetry { urx: false }
    );
}

#[test]
fn no_budget_limit_always_admits() {
    let unlimited = || Ok::<_, ()>(None::<Slot>);
    assert_eq!(
        admit_retry(RetryDecision::Retry, unlimited),
        RetryAdmission::Retry(None)
    );
}
