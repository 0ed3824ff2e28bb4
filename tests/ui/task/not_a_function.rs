#[qtasks::task]
struct Job;

fn main() {}
