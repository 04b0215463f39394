fn main() {
    std::process::exit(sonde::cli::main());
}
