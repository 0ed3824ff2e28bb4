#[qtasks::task(priority = 1, retry = 2, priority = 3)]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn main() {}
