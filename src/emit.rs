//! Writing to stdout and stderr without panicking (see the print macros in `lib.rs`).

use std::io::Write;

/// The exit code of a process that lost its stdout reader (as a shell reports SIGPIPE).
pub const EXIT_BROKEN_PIPE: i32 = 141;

pub fn out(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
    }
}

pub fn err(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}
