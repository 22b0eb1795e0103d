//! Polling with a deadline: the API server is eventually consistent from a
//! test's point of view (controllers, the scheduler and kwok act
//! asynchronously).

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::{Instant, sleep};

/// Polls `check` every 100 ms until it returns `Ok(true)`, giving up after
/// `timeout`. Errors from `check` are retried too; the last one is reported
/// if time runs out.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}"),
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
}
