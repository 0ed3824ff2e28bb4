#[qtasks::task(echo = 1)]
async fn one() -> u8 {
    1
}

fn main() {}
