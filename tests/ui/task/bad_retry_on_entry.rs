#[qtasks::task(retry = 3, retry_on = ["io"])]
async fn fetch(url: String) -> Result<String, std::io::Error> {
    Ok(url)
}

fn main() {}
