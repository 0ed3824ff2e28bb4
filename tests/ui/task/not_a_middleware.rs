struct Timing;

#[qtasks::task(middlewares_before = [Timing])]
async fn one() -> u8 {
    1
}

fn main() {}
