// Loading a big flow makes many small allocations; mimalloc makes them about a third
// cheaper than the system allocator (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // SIGPIPE stays ignored (Rust's default): a child that closes its stdin or a collector
    // that closes its socket is an error to report, not a reason to die. A reader that
    // closes stdout ends the process quietly (`illumo::emit`).
    std::process::exit(illumo::main(std::env::args_os()));
}
