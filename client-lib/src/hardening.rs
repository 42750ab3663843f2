//! Keeping a process's memory out of crash dumps and other users' debuggers.
//!
//! A client holds its identity keys, its store key and people's decrypted messages in memory;
//! a core dump writes all of that to disk in the clear, where the encrypted store does not
//! protect it. Applications built on this library decide for their own process (a library
//! does not change process-wide settings behind its caller's back); the `confide` command line
//! calls [`harden_process`] first thing.

/// Turns core dumps off for this process (`RLIMIT_CORE` 0, soft and hard, so it cannot be
/// raised again) and, on Linux, marks it not dumpable (`PR_SET_DUMPABLE` 0): no dump even
/// through a `core_pattern` pipe such as systemd-coredump, and other processes of the same
/// user cannot attach a debugger or read its memory through `/proc`. Does nothing on systems
/// without these controls.
///
/// # Errors
///
/// The system's error if it refuses either setting; the caller decides whether to go on.
pub fn harden_process() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, setrlimit};
        setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )?;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_hardened_process_writes_no_core_dump_and_is_not_dumpable() {
        harden_process().unwrap();
        let limit = rustix::process::getrlimit(rustix::process::Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            rustix::process::DumpableBehavior::NotDumpable
        );
    }
}
