struct Fast;

#[qtasks::task(executor = Fast)]
async fn one() -> u8 {
    1
}

fn main() {}
