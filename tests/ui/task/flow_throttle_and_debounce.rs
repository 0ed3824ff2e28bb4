#[qtasks::task(debounce = 1.0, throttle = 60, concurrency = 0)]
async fn refresh(feed: String) -> String {
    feed
}

fn main() {}
