#[qtasks::task(retry = 3, retry_on = [Invoice])]
async fn fetch(url: String) -> Result<String, std::io::Error> {
    Ok(url)
}

/// Not an error type.
struct Invoice;

fn main() {}
