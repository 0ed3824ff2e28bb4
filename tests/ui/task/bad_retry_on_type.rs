#[qtasks::task(retry = 3, retry_on = [String])]
async fn fetch(url: String) -> Result<String, std::io::Error> {
    Ok(url)
}

fn main() {}
