fn as_text(n: u32) -> String {
    format!("answer: {n}")
}

#[qtasks::task(decode = as_text -> u32)]
async fn answer() -> u32 {
    42
}

fn main() {}
