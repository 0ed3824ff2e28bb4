#[qtasks::task(retry = 3, retry_backoff = "linear")]
async fn one() -> u8 {
    1
}

#[qtasks::task(retry = 3, retry_backoff = "fixed", retry_delay = 1, retry_jitter = true, retry_max_delay = 9)]
async fn two() -> u8 {
    2
}

fn main() {}
