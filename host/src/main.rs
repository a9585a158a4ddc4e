fn main() {
    println!("wardgate");
}
