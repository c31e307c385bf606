// Loading a big flow makes many small allocations; mimalloc makes them about a third
// cheaper than the system allocator (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Like other command-line tools: when a reader such as `head` closes the pipe, stop
    // quietly instead of failing to print.
    // SAFETY: setting a signal disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(illumo::main(std::env::args_os()));
}
