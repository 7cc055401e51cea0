//! The tokio runtime of a server process, sized to the CPUs it may use.

/// The runtime a server process runs on: a single thread when the process may use one
/// CPU, else one worker per CPU (or `TOKIO_WORKER_THREADS`). One CPU is what
/// [`std::thread::available_parallelism`] says for a process pinned to one core, or in
/// a pod whose CPU limit is under two cores (it rounds the cgroup's quota down), where
/// tokio would also run one worker. On one CPU the multi-thread scheduler runs the same
/// tasks on its one worker and only adds its hand-offs: the relay spent 17 to 25 % more
/// CPU per forwarded write on it (BENCHMARKS.md, "One CPU, one thread").
pub fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    if one_cpu {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_runtime_runs_tasks_timers_and_blocking_work() {
        let runtime = server_runtime().unwrap();
        let got = runtime.block_on(async {
            let task = tokio::spawn(async { 1 });
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let blocking = tokio::task::spawn_blocking(|| 2).await.unwrap();
            task.await.unwrap() + blocking
        });
        assert_eq!(got, 3);
    }
}
