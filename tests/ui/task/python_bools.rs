#[qtasks::task(echo = True, retry = 1, retry_jitter = False, beta = True, owner = None)]
async fn flags() {}

fn main() {}
