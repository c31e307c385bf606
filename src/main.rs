fn main() {
    std::process::exit(illumo::main(std::env::args_os()));
}
