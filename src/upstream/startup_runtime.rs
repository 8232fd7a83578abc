//! Startup work that needs a runtime before the server has one: the first lookup of
//! upstream names, so a pool has its targets before the first request.

use std::future::Future;

/// Runs `future` to completion on a runtime of its own, on another thread when the
/// caller is already inside a runtime (which a nested one may not block).
pub fn block_on<F>(future: F) -> std::io::Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let run = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| runtime.block_on(future))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(run)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_outside_and_inside_a_runtime() {
        assert_eq!(super::block_on(async { 1 }).expect("runtime"), 1);
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let inside = outer.block_on(async { super::block_on(async { 2 }).expect("runtime") });
        assert_eq!(inside, 2);
    }
}
