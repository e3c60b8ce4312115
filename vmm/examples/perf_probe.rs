//! Prints which perf backend `Auto` picks on this host, and why.
fn main() {
    match vmm::perf::select(vmm::perf::BackendChoice::Hardware) {
        Ok(s) => println!("hardware: {}", s.reason),
        Err(e) => println!("hardware refused: {e}"),
    }
    let s = vmm::perf::select(vmm::perf::BackendChoice::Auto).expect("auto never fails");
    println!("auto -> {}: {}", s.backend.name(), s.reason);
    for l in s.backend.limitations() {
        println!("  - {l}");
    }
}
