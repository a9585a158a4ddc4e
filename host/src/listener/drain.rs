//! Shutdown's drain. On `SIGTERM` every open connection is asked to finish
//! (HTTP/1.1 closes after the response in flight, HTTP/2 gets GOAWAY); new
//! connections are still accepted for `connectionMinTerminationDeadline`,
//! while load balancers stop sending here, and served one request each.
//! Then the workers wait for what is still open (requests, streams,
//! WebSocket tunnels) until `connectionTerminationDeadline` after the
//! signal, and close whatever is left: a process that waited on a stream
//! without end would be killed by its supervisor anyway, less cleanly.
//! The key names and defaults are agentgateway's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::schema::Settings;

/// Used when neither the config nor `TERMINATION_GRACE_PERIOD_SECONDS` says.
pub const DEFAULT_TERMINATION_DEADLINE: Duration = Duration::from_secs(5);

/// How long shutdown may take; read from the config current at `SIGTERM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Termination {
    /// Keep accepting this long after the signal.
    pub min: Duration,
    /// Close every connection still open this long after the signal.
    pub max: Duration,
}

impl Termination {
    /// The settings' deadlines, or their defaults; `Err((config path, message))`.
    pub fn from_settings(settings: &Settings) -> Result<Termination, (String, String)> {
        let max = match &settings.connection_termination_deadline {
            Some(d) => d.0,
            None => {
                let grace = std::env::var("TERMINATION_GRACE_PERIOD_SECONDS").ok();
                deadline_within(grace.as_deref())
                    .map_err(|e| ("config.connectionTerminationDeadline".to_string(), e))?
            }
        };
        let min = settings
            .connection_min_termination_deadline
            .as_ref()
            .map_or(Duration::ZERO, |d| d.0);
        if min > max {
            return Err((
                "config.connectionMinTerminationDeadline".to_string(),
                format!(
                    "{min:?} is longer than connectionTerminationDeadline ({max:?}): \
                     connections are closed at that deadline, so nothing would be \
                     accepted after it"
                ),
            ));
        }
        Ok(Termination { min, max })
    }
}

/// The default deadline within a supervisor's grace period (in whole
/// seconds, as Kubernetes counts it): a few seconds short of it, so the
/// gateway closes what is left itself (a clean close or GOAWAY rather than
/// the reset a SIGKILL leaves).
fn deadline_within(grace_period: Option<&str>) -> Result<Duration, String> {
    let Some(text) = grace_period else {
        return Ok(DEFAULT_TERMINATION_DEADLINE);
    };
    let secs: u64 = text.trim().parse().map_err(|_| {
        format!(
            "not set, and TERMINATION_GRACE_PERIOD_SECONDS='{text}' (its default) is not \
             a whole number of seconds"
        )
    })?;
    let margin = if secs > 10 { 5 } else { 1 };
    Ok(Duration::from_secs(secs.saturating_sub(margin).max(1)))
}

/// What the main runtime tells the workers: `None` while serving, then the
/// instant past which nothing is left open.
pub type DrainSignal = watch::Receiver<Option<Instant>>;

/// Wait until the worker serves no connection (`open` counts them and the
/// tunnels they became), or `deadline` passes: then `Err` with how many are
/// still open. Polled: this runs once, at shutdown, and a wake-up on every
/// connection's close would cost the requests that never see a shutdown.
pub async fn until_closed(open: &AtomicUsize, deadline: Option<Instant>) -> Result<(), usize> {
    let closed = async {
        while open.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    match deadline {
        None => {
            closed.await;
            Ok(())
        }
        Some(at) => tokio::time::timeout_at(at, closed)
            .await
            .map_err(|_| open.load(Ordering::Relaxed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::DurationStr;

    #[test]
    fn the_default_deadline_stays_inside_the_grace_period() {
        let secs = |s| deadline_within(Some(s)).unwrap().as_secs();
        assert_eq!(deadline_within(None).unwrap(), DEFAULT_TERMINATION_DEADLINE);
        assert_eq!(secs("30"), 25);
        assert_eq!(secs("11"), 6);
        assert_eq!(secs("10"), 9);
        assert_eq!(secs("2"), 1);
        // Never 0: a connection in flight gets at least a second.
        assert_eq!(secs("1"), 1);
        assert_eq!(secs("0"), 1);
        let e = deadline_within(Some("30s")).unwrap_err();
        assert!(e.contains("TERMINATION_GRACE_PERIOD_SECONDS='30s'"), "{e}");
    }

    #[test]
    fn the_minimum_may_not_pass_the_deadline() {
        let settings = |min: u64, max: u64| Settings {
            connection_min_termination_deadline: Some(DurationStr(Duration::from_secs(min))),
            connection_termination_deadline: Some(DurationStr(Duration::from_secs(max))),
            ..Settings::default()
        };
        assert_eq!(
            Termination::from_settings(&settings(2, 2)).unwrap(),
            Termination {
                min: Duration::from_secs(2),
                max: Duration::from_secs(2)
            }
        );
        let (path, message) = Termination::from_settings(&settings(3, 2)).unwrap_err();
        assert_eq!(path, "config.connectionMinTerminationDeadline");
        assert!(message.contains("3s is longer than connectionTerminationDeadline (2s)"));
    }

    #[tokio::test]
    async fn the_wait_ends_when_the_last_connection_closes_or_at_the_deadline() {
        let open = std::sync::Arc::new(AtomicUsize::new(2));
        let closer = open.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            closer.fetch_sub(2, Ordering::Relaxed);
        });
        let started = Instant::now();
        assert_eq!(until_closed(&open, None).await, Ok(()));
        assert!(started.elapsed() >= Duration::from_millis(50));

        open.store(3, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_millis(100);
        assert_eq!(until_closed(&open, Some(deadline)).await, Err(3));
        assert!(Instant::now() >= deadline);
    }
}
