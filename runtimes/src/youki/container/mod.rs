//! Containers: each is its record (`container.json`, intent first), its overlay rootfs,
//! its bundle, and its processes in the pod's supervisor, which records its exit
//! (`exit.json`) before anyone hears of it.

mod create;
mod exec;
mod remove;
mod start;
mod status;
mod stop;
mod stream;

pub use create::Prepared;

use std::str::FromStr;

use nix::sys::signal::Signal;

use super::records::ExitRecord;

/// The signal StopContainer sends first: the image's `StopSignal` (`SIGQUIT`, `QUIT`,
/// `3`) or SIGTERM.
pub fn stop_signal(name: Option<&str>) -> Result<i32, String> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(Signal::SIGTERM as i32);
    };
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| format!("stop signal {name} is not a signal"));
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full)
        .map(|s| s as i32)
        .map_err(|_| format!("stop signal {name:?} is not a signal"))
}

/// CRI's reason for an exit: `Unknown` for one the supervisor did not live to see (as
/// containerd, and berth for a container its backend lost), with exit code 255.
pub fn reason(exit: &ExitRecord) -> &'static str {
    if exit.lost {
        "Unknown"
    } else if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn stop_signals_by_name_short_name_or_number() {
        assert_eq!(stop_signal(None), Ok(15));
        assert_eq!(stop_signal(Some("")), Ok(15));
        assert_eq!(stop_signal(Some("SIGQUIT")), Ok(3));
        assert_eq!(stop_signal(Some("quit")), Ok(3));
        assert_eq!(stop_signal(Some("9")), Ok(9));
        assert!(stop_signal(Some("SIGBOGUS"))
            .unwrap_err()
            .contains("SIGBOGUS"));
        assert!(stop_signal(Some("99")).is_err());
    }

    #[test]
    fn reasons_follow_cri() {
        let exit = |code, oom| ExitRecord {
            pid: 1,
            exit_code: code,
            started_at: None,
            finished_at: SystemTime::now(),
            oom_killed: oom,
            lost: false,
        };
        assert_eq!(reason(&exit(0, false)), "Completed");
        assert_eq!(reason(&exit(3, false)), "Error");
        assert_eq!(reason(&exit(137, true)), "OOMKilled");
        assert_eq!(reason(&ExitRecord::lost(None)), "Unknown");
    }
}
