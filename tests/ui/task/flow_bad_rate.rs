#[qtasks::task(rate_limit = "50 per second")]
async fn call_api(path: String) -> String {
    path
}

fn main() {}
