#[qtasks::task(awaiting)]
fn one() -> u8 {
    1
}

fn main() {}
