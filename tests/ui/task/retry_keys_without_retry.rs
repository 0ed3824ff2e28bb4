#[qtasks::task(retry_on = [std::io::Error], retry_delay = 1)]
async fn fetch(url: String) -> Result<String, std::io::Error> {
    Ok(url)
}

fn main() {}
