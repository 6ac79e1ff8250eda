//! Helpers shared by the benchmark examples (included with `#[path]`; not an example itself).

#![allow(dead_code)]

use std::time::Duration;

/// The value after `--name` on the command line, parsed, or `default`.
pub fn argument<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let arguments: Vec<String> = std::env::args().collect();
    match arguments.iter().position(|a| a == name) {
        Some(i) => Ok(arguments
            .get(i + 1)
            .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?
            .parse()?),
        None => Ok(default),
    }
}

/// The string after `--name`, if given.
pub fn string_argument(name: &str) -> anyhow::Result<Option<String>> {
    let arguments: Vec<String> = std::env::args().collect();
    match arguments.iter().position(|a| a == name) {
        Some(i) => Ok(Some(
            arguments
                .get(i + 1)
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?
                .clone(),
        )),
        None => Ok(None),
    }
}

/// The `p` quantile (0.0..=1.0, nearest rank) of sorted durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

/// A UDP port that was free a moment ago on 127.0.0.1 (the nodes share it on 127.0.0.x).
pub fn free_udp_port() -> anyhow::Result<u16> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(socket.local_addr()?.port())
}

/// Rounds to three decimals for printing.
pub fn round3(value: f64) -> f64 {
    (value * 1e3).round() / 1e3
}
