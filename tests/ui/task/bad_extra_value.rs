#[qtasks::task(mark = 'x', big = 99999999999999999999, sig = b"raw")]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn main() {}
