//! Helpers shared by the benchmark examples (`bench_copy`, `bench_seal`).

/// An environment setting, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` prints them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A progress line on stderr, tagged with the example's name.
pub fn log(message: impl AsRef<str>) {
    let name = std::env::args()
        .next()
        .and_then(|p| p.rsplit('/').next().map(str::to_string))
        .unwrap_or_else(|| "bench".into());
    eprintln!("[{name}] {}", message.as_ref());
}
