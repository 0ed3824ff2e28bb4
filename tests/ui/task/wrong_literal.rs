#[qtasks::task(priority = "high", max_time = "long", name = 5)]
async fn one() -> u8 {
    1
}

fn main() {}
