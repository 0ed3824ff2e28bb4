#[qtasks::task]
async fn name() -> &'static str {
    "qtasks"
}

#[qtasks::task]
fn names() -> Result<&'static [u8], std::io::Error> {
    Ok(b"qtasks")
}

fn main() {}
