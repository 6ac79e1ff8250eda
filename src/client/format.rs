//! Docker-style output: aligned tables and human durations ("Running 5 seconds ago").
//! Pure functions over strings, so the CLI's output is tested without a cluster.

/// Renders rows under headers the way the docker CLI does: columns left-aligned, separated by
/// at least three spaces, no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows.iter()) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Docker's `HumanDuration`: "Less than a second", "5 seconds", "About a minute", "3 hours"...
pub fn human_duration(elapsed_ms: u64) -> String {
    let seconds = elapsed_ms / 1000;
    let minutes = seconds / 60;
    // Docker rounds to the nearest hour from here on.
    let hours = (elapsed_ms + 1_800_000) / 3_600_000;
    match () {
        _ if seconds < 1 => "Less than a second".to_string(),
        _ if seconds == 1 => "1 second".to_string(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_string(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", elapsed_ms / 3_600_000 / 24 / 365),
    }
}

/// "Running 5 seconds ago": a task state, capitalized, and how long it has been in it.
pub fn state_since(state: &str, since_ms: u64, now_ms: u64) -> String {
    let mut chars = state.chars();
    let capitalized = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
        None => String::new(),
    };
    format!(
        "{capitalized} {} ago",
        human_duration(now_ms.saturating_sub(since_ms))
    )
}

/// The first 12 characters of an ID, as tables show them (unless `--no-trunc`).
pub fn short_id(id: &str) -> &str {
    match id.char_indices().nth(12) {
        Some((end, _)) => &id[..end],
        None => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_docker() {
        let text = table(
            &["ID", "NAME", "REPLICAS"],
            &[
                vec!["abc".into(), "demo".into(), "5/5".into()],
                vec!["abcdef".into(), "x".into(), "0/1".into()],
            ],
        );
        assert_eq!(
            text,
            "ID       NAME   REPLICAS\nabc      demo   5/5\nabcdef   x      0/1\n"
        );
    }

    #[test]
    fn durations_read_like_docker() {
        let cases = [
            (0, "Less than a second"),
            (999, "Less than a second"),
            (1_000, "1 second"),
            (5_400, "5 seconds"),
            (60_000, "About a minute"),
            (150_000, "2 minutes"),
            (3_600_000, "About an hour"),
            (7_200_000, "2 hours"),
            (3 * 86_400_000, "3 days"),
            (3 * 7 * 86_400_000, "3 weeks"),
        ];
        for (ms, text) in cases {
            assert_eq!(human_duration(ms), text, "{ms} ms");
        }
        assert_eq!(
            state_since("running", 1_000, 6_000),
            "Running 5 seconds ago"
        );
    }

    #[test]
    fn ids_are_cut_to_twelve() {
        assert_eq!(short_id("0123456789abcdefghijklmno"), "0123456789ab");
        assert_eq!(short_id("short"), "short");
    }
}
