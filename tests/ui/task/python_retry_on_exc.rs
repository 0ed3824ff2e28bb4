#[qtasks::task(retry = 5, retry_on_exc = [std::io::Error])]
fn risky() -> Result<u8, std::io::Error> {
    Ok(1)
}

fn main() {}
