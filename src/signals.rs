//! The signals that stop a run: Ctrl-C (SIGINT), SIGTERM (what `timeout`, `docker stop`
//! and CI cancellation send) and SIGHUP (a closed terminal). Each stops the running
//! nodes, kills their process groups, flushes the tracers, and exits 128 + its number.

/// A signal that stops a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    pub name: &'static str,
    pub exit_code: i32,
}

pub const SIGINT: Signal = Signal {
    name: "SIGINT",
    exit_code: 130,
};
pub const SIGTERM: Signal = Signal {
    name: "SIGTERM",
    exit_code: 143,
};
pub const SIGHUP: Signal = Signal {
    name: "SIGHUP",
    exit_code: 129,
};

/// Handlers for SIGINT, SIGTERM and SIGHUP, installed before the run starts so that no
/// signal can arrive while the default action (ending the process at once) still holds.
pub struct Listener {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Listener {
    /// Installs the handlers; call it inside the runtime, before starting the run.
    pub fn install() -> std::io::Result<Listener> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Listener {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the first of them.
    pub async fn first(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => SIGINT,
            _ = self.term.recv() => SIGTERM,
            _ = self.hup.recv() => SIGHUP,
        }
    }
}
