//! Readings from `/proc`: a process's CPU time (`utime + stime` of `/proc/<pid>/stat`, which
//! covers all its threads), its resident memory (`VmRSS`), and the whole machine's busy time
//! (`/proc/stat`), to tell how much CPU other users of the machine took meanwhile.

use anyhow::{bail, Context};

/// CPU time of process `pid` (all threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime(14) stime(15): indices 11 and 12 here.
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("short /proc/{pid}/stat");
    };
    Ok(utime.parse::<u64>()? + stime.parse::<u64>()?)
}

/// Resident memory of process `pid` (`VmRSS`), KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("empty VmRSS line")?
        .parse()?)
}

/// Clock ticks the machine spent running tasks (user + nice + system, all CPUs), as the
/// shared harness counts them; interrupt time is left out since it is not charged to tasks.
pub fn machine_task_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let nums: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    Ok(nums.iter().sum())
}
