fn main() {
    println!("vpmu: in progress");
}
