//! CPU time of threads and of the machine, read from `/proc`, for the simulator's benchmarks.

#![allow(dead_code)] // each example uses its own part

/// This thread's `/proc` stat file.
pub fn thread_stat_path() -> String {
    match std::fs::read_link("/proc/thread-self") {
        Ok(p) => format!("/proc/{}/stat", p.display()),
        Err(_) => String::new(),
    }
}

/// The stat file of this process's thread named `name`.
pub fn find_thread(name: &str) -> Option<String> {
    let mut found = None;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            found = Some(entry.path().join("stat").display().to_string());
        }
    }
    found
}

/// CPU seconds used by the thread or process whose stat file this is (user + system).
pub fn cpu(stat_path: &str) -> f64 {
    let (user, system) = cpu_split(stat_path);
    user + system
}

/// (user, system) CPU seconds of the thread or process whose stat file this is, at the usual
/// 100 ticks per second.
pub fn cpu_split(stat_path: &str) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(stat_path) else {
        return (0.0, 0.0);
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return (0.0, 0.0);
    };
    let field = |i: usize| {
        rest.split_whitespace()
            .nth(i)
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (field(11), field(12))
}

/// CPU seconds the whole machine spent busy (everything but idle and iowait), steal included.
pub fn machine_busy() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    busy / 100.0
}
