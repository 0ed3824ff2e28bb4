struct Summary(String);

fn summarize(n: u32) -> Summary {
    Summary(n.to_string())
}

#[qtasks::task(decode = summarize)]
async fn answer() -> u32 {
    42
}

fn main() {}
