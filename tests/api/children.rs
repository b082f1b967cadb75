//! Processes a test starts never outlive it: they are killed when their
//! guard drops (the test passed, failed or panicked), and die with the test
//! process if it is killed outright. scripts/test.sh checks that none is
//! left, by the mark each carries.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// The environment variable scripts/test.sh marks the processes of one run
/// with (kept by commands that clear their environment).
const RUN_MARK: &str = "AMPLIFIER_TEST_RUN";

pub trait DiesWithTest {
    /// Kills the process when the thread that started it ends
    /// (`PR_SET_PDEATHSIG`; a test's thread lives as long as the test), and
    /// marks it for scripts/test.sh's check for leftovers.
    fn dies_with_test(&mut self) -> &mut Self;
}

impl DiesWithTest for Command {
    fn dies_with_test(&mut self) -> &mut Self {
        if let Ok(mark) = std::env::var(RUN_MARK) {
            self.env(RUN_MARK, mark);
        }
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            self.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before prctl took effect.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("the test process is gone"));
                }
                Ok(())
            });
        }
        self
    }
}

/// A started process, killed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    pub fn spawn(command: &mut Command) -> Self {
        Self(command.dies_with_test().spawn().expect("start a process"))
    }

    /// Sends `signal` (e.g. SIGSTOP to make a server hang, SIGCONT).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child, which we have not reaped.
        let sent = unsafe { libc::kill(self.0.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "signal {signal} to {}", self.0.id());
    }

    /// Kills and reaps it now.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}
