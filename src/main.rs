fn main() {
    std::process::exit(sonde::cli_main());
}
